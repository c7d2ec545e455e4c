"""Reports by line (issue 12): every report, the conversion, the call list and their commands
narrowed to the calls of one line; `linebox line NAME events`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from firmware import reports
from firmware.store import Store, load_yaml
from hal.fake.gsm import FakeHuawei
from tests.e2e.linebox import running_linebox
from tests.e2e.test_gsm_e2e import gsm_config
from tests.store.conftest import VALID_YAML
from tests.test_reports import MOSCOW, csv_rows, linebox, record, utc

linebox_cli = linebox  # the command; `linebox` below is a running daemon

MAY_4 = date(2026, 5, 4)
# The example office (trunks provider and backup) with a GSM line as its reserve.
LINES_YAML = VALID_YAML.replace("numbers:\n", """\
  - name: mts
    type: gsm
    port: /dev/ttyUSB0
    modem: huawei
numbers:
""", 1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """May 4 in Moscow: three calls on the provider (one missed), two on the GSM line mts
    (one missed, one answered by 102 as a sale), one from before lines were recorded."""
    opened = Store.open(tmp_path / "box.db")
    opened.replace_config(load_yaml(LINES_YAML))
    for hour in (9, 10):
        record(opened, utc(2026, 5, 4, hour, 0), "answered", line="provider", answered_by="101",
               target_call=1, legs=[{"target": "101", "result": "answered"}])
    record(opened, utc(2026, 5, 4, 11, 0), "missed", line="provider", caller="+74950000001",
           legs=[{"target": "101", "result": "no_answer"}])
    record(opened, utc(2026, 5, 4, 12, 0), "answered", line="mts", source="gsm:mts",
           answered_by="102", target_call=1, sale=1,
           legs=[{"target": "101", "result": "no_answer"}, {"target": "102",
                                                             "result": "answered"}])
    record(opened, utc(2026, 5, 4, 13, 0), "abandoned", line="mts", source="gsm:mts",
           caller="+79160000002", waited_s=30.0)
    record(opened, utc(2026, 5, 4, 14, 0), "answered", line=None, source="trunk:old",
           answered_by="101")
    yield opened
    opened.close()


def test_calls_by_day_of_one_line(store: Store) -> None:
    (everything,) = reports.daily(store, MAY_4, MAY_4, MOSCOW)
    (mts,) = reports.daily(store, MAY_4, MAY_4, MOSCOW, line="mts")
    (provider,) = reports.daily(store, MAY_4, MAY_4, MOSCOW, line="provider")
    assert (everything.received, everything.answered, everything.missed) == (6, 4, 2)
    assert (mts.received, mts.answered, mts.missed, mts.mean_wait_s) == (2, 1, 1, 17.5)
    assert (provider.received, provider.answered, provider.missed) == (3, 2, 1)


def test_load_by_hour_of_one_line(store: Store) -> None:
    rows = reports.hourly(store, MAY_4, MAY_4, MOSCOW, line="mts")
    assert {row.hour: row.received for row in rows if row.received} == {15: 1, 16: 1}
    assert sum(row.received for row in reports.hourly(store, MAY_4, MAY_4, MOSCOW)) == 6


def test_managers_of_one_line(store: Store) -> None:
    rows = {row.extension: row for row in
            reports.per_manager(store, MAY_4, MAY_4, MOSCOW, line="mts")}
    assert set(rows) == {"101", "102"}
    assert (rows["101"].offered, rows["101"].answered, rows["101"].missed_offers) == (1, 0, 1)
    assert (rows["102"].answered, rows["102"].sales, rows["102"].conversion) == (1, 1, 1.0)
    provider = {row.extension: row for row in
                reports.per_manager(store, MAY_4, MAY_4, MOSCOW, line="provider")}
    assert set(provider) == {"101"}
    assert (provider["101"].offered, provider["101"].answered) == (3, 2)


def test_missed_calls_of_one_line_name_it(store: Store) -> None:
    (mts,) = reports.missed_calls(store, MAY_4, MAY_4, MOSCOW, line="mts")
    assert (mts.caller, mts.outcome, mts.line) == ("+79160000002", "abandoned", "mts")
    assert [row.line for row in reports.missed_calls(store, MAY_4, MAY_4, MOSCOW)] == [
        "provider", "mts"]


def test_conversion_of_one_line(store: Store) -> None:
    since, until = utc(2026, 5, 4, 0, 0), utc(2026, 5, 5, 0, 0)
    assert reports.conversion_by_manager(store, since, until) == {"101": 0.0, "102": 1.0}
    assert reports.conversion_by_manager(store, since, until, line="mts") == {"102": 1.0}
    assert reports.conversion_by_manager(store, since, until, line="provider") == {"101": 0.0}


def test_a_line_without_calls_has_empty_reports(store: Store) -> None:
    (day,) = reports.daily(store, MAY_4, MAY_4, MOSCOW, line="backup")
    assert day.received == 0
    assert reports.missed_calls(store, MAY_4, MAY_4, MOSCOW, line="backup") == []
    assert reports.per_manager(store, MAY_4, MAY_4, MOSCOW, line="backup") == []


def test_every_report_takes_the_line(store: Store) -> None:
    for kind, report in reports.REPORTS.items():
        narrowed = report(store, MAY_4, MAY_4, MOSCOW, line="mts")
        assert narrowed != report(store, MAY_4, MAY_4, MOSCOW), kind


def test_line_names_are_the_configured_then_the_recorded_ones(store: Store) -> None:
    store.add_line_event(at=1.0, kind="state", line="city", state="down")
    assert reports.line_names(store) == ["provider", "backup", "mts", "city"]


def test_the_text_report_says_which_line(store: Store) -> None:
    text = reports.text_report(store, ["daily"], MAY_4, MAY_4, MOSCOW, line="mts")
    assert text.startswith("Inbound calls on line mts 2026-05-04")


def test_a_line_event_in_words() -> None:
    assert reports.line_event_text(
        {"kind": "state", "line": "mts", "state": "down", "old": "up", "reason": "no SIM"}
    ) == "mts is down (was up): no SIM"
    assert reports.line_event_text(
        {"kind": "failover", "line": "mts", "state": None, "old": "provider",
         "reason": "provider silent"}
    ) == "failover: calls out go through mts (was provider): provider silent"
    assert reports.line_event_text(
        {"kind": "failover", "line": None, "state": None, "old": "mts", "reason": ""}
    ) == "failover: no line is up for calls out (was mts)"


# --- the command line ----------------------------------------------------------------------------


def test_cli_report_of_one_line(store: Store, tmp_path: Path) -> None:
    db = str(tmp_path / "box.db")
    period = ("--from", "2026-05-04", "--to", "2026-05-04")

    daily = linebox("report", "--db", db, "--csv", "--line", "mts", *period)
    missed = linebox("report", "--db", db, "--csv", "--kind", "missed", "--line", "mts",
                     *period)
    text = linebox("report", "--db", db, "--line", "provider", *period)

    assert daily.returncode == 0, daily.stderr
    assert [(r["received"], r["answered"], r["missed"]) for r in csv_rows(daily.stdout)] == [
        ("2", "1", "1")]
    assert [(r["caller"], r["line"]) for r in csv_rows(missed.stdout)] == [
        ("+79160000002", "mts")]
    assert text.stdout.startswith("Inbound calls on line provider 2026-05-04")


def test_cli_report_refuses_a_line_there_is_not(store: Store, tmp_path: Path) -> None:
    result = linebox("report", "--db", str(tmp_path / "box.db"), "--line", "mst")
    assert result.returncode == 2
    assert "no line named 'mst'; lines: provider, backup, mts" in result.stderr
    assert result.stdout == ""


def test_cli_call_list_shows_the_line_and_filters_by_it(store: Store, tmp_path: Path) -> None:
    db = str(tmp_path / "box.db")

    everything = linebox("call", "list", "--db", db)
    mts = linebox("call", "list", "--line", "mts", "--db", db)

    assert everything.returncode == 0, everything.stderr
    header = everything.stdout.splitlines()[1].split()
    assert header[:4] == ["Call", "id", "Time", "Dir"] and header[4] == "Line"
    lines = [row.split() for row in everything.stdout.splitlines()[3:]]
    assert [row[4] for row in lines] == ["-", "mts", "mts", "provider", "provider", "provider"]
    assert [row[4] for row in (r.split() for r in mts.stdout.splitlines()[3:])] == ["mts"] * 2


def test_cli_line_events_newest_first(store: Store, tmp_path: Path) -> None:
    store.add_line_event(at=utc(2026, 5, 4, 9, 0), kind="state", line="mts", state="up",
                         reason="registered (home)")
    store.add_line_event(at=utc(2026, 5, 4, 9, 5), kind="failover", line="mts",
                         old="provider", reason="provider: no default route")
    store.add_line_event(at=utc(2026, 5, 4, 9, 6), kind="state", line="backup", state="down")
    db = str(tmp_path / "box.db")

    text = linebox("line", "mts", "events", "--db", db)
    as_json = linebox("line", "mts", "events", "--json", "--db", db)

    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        "2026-05-04 12:05:00  failover: calls out go through mts (was provider): "
        "provider: no default route",
        "2026-05-04 12:00:00  mts is up: registered (home)",
    ]
    listed = json.loads(as_json.stdout)
    assert [(e["kind"], e["line"], e["old"], e["at"]) for e in listed] == [
        ("failover", "mts", "provider", "2026-05-04T12:05:00+03:00"),
        ("state", "mts", None, "2026-05-04T12:00:00+03:00"),
    ]


def test_cli_line_events_of_a_quiet_line_and_of_no_line(store: Store, tmp_path: Path) -> None:
    db = str(tmp_path / "box.db")
    quiet = linebox("line", "backup", "events", "--db", db)
    unknown = linebox("line", "nowhere", "events", "--db", db)
    assert (quiet.returncode, quiet.stdout) == (0, "no events of line backup yet\n")
    assert unknown.returncode == 2 and "no line named 'nowhere'" in unknown.stderr


# --- with the real daemon ------------------------------------------------------------------------


def test_the_daemon_keeps_the_lines_events_and_the_command_lists_them(tmp_path: Path) -> None:
    # The daemon with a fake Huawei on ptys and a provider nobody answers for (loopback only):
    # the GSM line comes up, the probes give the provider up, calls out switch to the GSM line.
    started = time.time()
    with FakeHuawei(link=tmp_path / "usb-HUAWEI_Mobile-if02-port0") as modem:
        config = gsm_config(modem, failover={"order": ["provider", "mts"],
                                             "probe_interval_s": 2, "down_after": 2})
        with running_linebox(tmp_path / "linebox", config) as linebox:
            linebox.wait_for(lambda: linebox.status()["outbound_line"] == "mts", 20,
                             "calls out through the GSM line")
            with Store.open(linebox.db) as store:
                events = linebox.wait_for(
                    lambda: [e for e in store.line_events() if e["kind"] == "failover"
                             and e["line"] == "mts"] and store.line_events(), 5,
                    "the switch to the GSM line recorded")
            db = str(linebox.db)
            listed = linebox_cli("line", "mts", "events", "--json", "--db", db)
    assert listed.returncode == 0, listed.stderr
    print("line events:", *(reports.line_event_text(e) for e in reversed(events)), sep="\n  ")
    [switch] = [e for e in events if e["kind"] == "failover" and e["line"] == "mts"]
    assert switch["old"] == "provider" and started <= switch["at"] <= time.time()
    assert [e["state"] for e in events if e["line"] == "mts" and e["kind"] == "state"][0] == "up"
    assert any(e["line"] == "provider" and e["state"] == "down" for e in events)
    mts_events = json.loads(listed.stdout)
    assert ("failover", "mts", "provider") in {(e["kind"], e["line"], e["old"])
                                               for e in mts_events}
    assert all(e["line"] == "mts" or e["old"] == "mts" for e in mts_events)
