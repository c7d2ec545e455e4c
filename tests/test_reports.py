"""Call reports: by day, by hour, by manager, missed calls, conversion — and `linebox report`."""

from __future__ import annotations

import csv
import io
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from firmware import reports
from firmware.reports import DailyRow, HourlyRow, ManagerRow, MissedCall
from firmware.store import Store, load_yaml, new_call_id
from tests.store.conftest import VALID_YAML

REPO_ROOT = Path(__file__).resolve().parents[1]
MOSCOW = "Europe/Moscow"
MAY_4 = date(2026, 5, 4)


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def record(
    store: Store,
    started_at: float,
    outcome: str = "answered",
    *,
    legs: Sequence[dict[str, Any]] = (),
    **fields: Any,
) -> str:
    """Write one finished call as the daemon does; answered calls: 5 s to answer, 60 s talk."""
    call_id = str(fields.pop("id", new_call_id()))
    call: dict[str, Any] = {
        "id": call_id,
        "started_at": started_at,
        "ended_at": started_at + 20.0,
        "direction": "inbound",
        "source": "trunk:provider",
        "caller": "+74950000000",
        "dialed": "+74951234567",
        "number": "+74951234567",
        "department": "200",
        "end_cause": "test",
        "outcome": outcome,
        "sip_call_id": call_id,
    }
    if outcome == "answered":
        call.update(answered_at=started_at + 5.0, ended_at=started_at + 65.0, answered_by="101")
    call.update(fields)
    store.record_finished_calls([(
        call,
        [
            {"call_id": call_id, "contact": f"sip:{leg['target']}@10.0.0.1",
             "started_at": started_at, **leg}
            for leg in legs
        ],
    )])
    return call_id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "linebox.db")
    opened.replace_config(load_yaml(VALID_YAML))  # 101 Анна Смирнова, 102 Борис Иванов, 103
    yield opened
    opened.close()


# --- the period and time zones -------------------------------------------------------------------


def test_call_at_2330_utc_belongs_to_the_next_local_day_in_moscow(store: Store) -> None:
    record(store, utc(2026, 5, 4, 23, 30))

    rows = reports.daily(store, date(2026, 5, 4), date(2026, 5, 5), MOSCOW)

    assert [(row.day, row.received) for row in rows] == [
        (date(2026, 5, 4), 0),
        (date(2026, 5, 5), 1),
    ]


def test_the_same_call_falls_on_the_local_day_of_the_zone_asked(store: Store) -> None:
    record(store, utc(2026, 5, 4, 23, 30))

    new_york = reports.daily(store, MAY_4, date(2026, 5, 5), "America/New_York")

    assert [row.received for row in new_york] == [1, 0]


def test_period_runs_from_local_midnight_to_local_midnight_both_days_included(
    store: Store,
) -> None:
    record(store, utc(2026, 5, 3, 21, 0) - 0.001)  # 23:59:59.999 on May 3 in Moscow
    record(store, utc(2026, 5, 3, 21, 0))  # 00:00 on May 4
    record(store, utc(2026, 5, 5, 20, 59, 59))  # 23:59:59 on May 5
    record(store, utc(2026, 5, 5, 21, 0))  # 00:00 on May 6

    rows = reports.daily(store, MAY_4, date(2026, 5, 5), MOSCOW)

    assert [row.received for row in rows] == [1, 1]


def test_days_across_a_daylight_saving_change_are_whole_local_days(store: Store) -> None:
    # Berlin moves from UTC+1 to UTC+2 at 01:00 UTC on 29 March 2026.
    record(store, utc(2026, 3, 28, 23, 30))  # 00:30 CET, 29 March
    record(store, utc(2026, 3, 29, 21, 30))  # 23:30 CEST, 29 March
    record(store, utc(2026, 3, 29, 22, 30))  # 00:30 CEST, 30 March

    days = reports.daily(store, date(2026, 3, 29), date(2026, 3, 30), "Europe/Berlin")
    hours = reports.hourly(store, date(2026, 3, 29), date(2026, 3, 30), "Europe/Berlin")

    assert [row.received for row in days] == [2, 1]
    assert (hours[0].received, hours[23].received) == (2, 1)


def test_offset_segments_split_at_the_transition_second() -> None:
    berlin = reports.zone("Europe/Berlin")
    lo = reports.local_midnight(date(2026, 3, 1), berlin)
    hi = reports.local_midnight(date(2026, 4, 1), berlin)

    assert reports._offset_segments(lo, hi, berlin) == [
        (lo, utc(2026, 3, 29, 1, 0), 3600),
        (utc(2026, 3, 29, 1, 0), hi, 7200),
    ]


def test_period_ending_before_it_starts_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="before it starts"):
        reports.daily(store, date(2026, 5, 5), MAY_4, MOSCOW)


def test_default_period_is_the_last_seven_days_to_today_in_the_zone() -> None:
    late_evening_utc = datetime(2026, 5, 4, 22, 0, tzinfo=UTC)  # already May 5 in Moscow

    assert reports.period(None, None, MOSCOW, now=late_evening_utc) == (
        date(2026, 4, 29),
        date(2026, 5, 5),
    )


# --- by day --------------------------------------------------------------------------------------


def test_daily_sorts_outcomes_into_answered_missed_after_hours_and_other(store: Store) -> None:
    at = utc(2026, 5, 4, 9, 0)
    for outcome in (
        "answered", "answered",
        "missed", "abandoned", "busy", "over_capacity", "voicemail", "callback",
        "closed", "closed",
        "failed", "cancelled", "blacklisted", "forwarded",
    ):
        record(store, at, outcome)

    (row,) = reports.daily(store, MAY_4, MAY_4, MOSCOW)

    assert (row.received, row.answered, row.missed, row.closed, row.other) == (14, 2, 6, 2, 4)


def test_daily_lists_every_day_of_the_period_even_without_calls(store: Store) -> None:
    rows = reports.daily(store, MAY_4, date(2026, 5, 10), MOSCOW)

    assert [row.day.day for row in rows] == [4, 5, 6, 7, 8, 9, 10]
    assert rows[0] == DailyRow(day=MAY_4, received=0, answered=0, missed=0, closed=0, other=0,
                               mean_wait_s=None)


def test_internal_and_outbound_calls_are_not_reported(store: Store) -> None:
    at = utc(2026, 5, 4, 9, 0)
    record(store, at, direction="internal", caller="101", dialed="200")
    record(store, at, direction="outbound", caller="101", dialed="+74957654321")

    assert reports.daily(store, MAY_4, MAY_4, MOSCOW)[0].received == 0


def test_mean_wait_uses_the_recorded_wait_else_the_time_to_answer(store: Store) -> None:
    at = utc(2026, 5, 4, 9, 0)
    record(store, at, "answered", waited_s=10.0)
    record(store, at, "answered")  # recorded before waits were: answered after 5 s
    record(store, at, "abandoned", waited_s=30.0)
    record(store, at, "busy")  # turned away at once: no wait
    record(store, at, "over_capacity", waited_s=0.0)

    (row,) = reports.daily(store, MAY_4, MAY_4, MOSCOW)

    assert row.mean_wait_s == pytest.approx((10.0 + 5.0 + 30.0) / 3)


def test_missed_call_without_a_recorded_wait_waited_until_it_ended(store: Store) -> None:
    record(store, utc(2026, 5, 4, 9, 0), "missed", ended_at=utc(2026, 5, 4, 9, 0) + 25.0)

    assert reports.daily(store, MAY_4, MAY_4, MOSCOW)[0].mean_wait_s == pytest.approx(25.0)


# --- by hour -------------------------------------------------------------------------------------


def test_hourly_has_a_row_for_every_hour_of_the_day(store: Store) -> None:
    rows = reports.hourly(store, MAY_4, MAY_4, MOSCOW)

    assert [row.hour for row in rows] == list(range(24))
    assert rows[5] == HourlyRow(hour=5, received=0, answered=0, missed=0, mean_wait_s=None)


def test_hourly_buckets_by_local_hour_and_sums_the_same_hour_over_days(store: Store) -> None:
    record(store, utc(2026, 5, 4, 7, 15), "answered")  # 10:15 in Moscow
    record(store, utc(2026, 5, 5, 7, 45), "abandoned", waited_s=40.0)  # 10:45 next day
    record(store, utc(2026, 5, 4, 11, 0), "missed")  # 14:00

    rows = reports.hourly(store, MAY_4, date(2026, 5, 5), MOSCOW)

    assert rows[10] == HourlyRow(hour=10, received=2, answered=1, missed=1,
                                 mean_wait_s=pytest.approx(22.5))
    assert (rows[14].received, rows[14].missed) == (1, 1)
    assert sum(row.received for row in rows) == 3


# --- by manager ----------------------------------------------------------------------------------


def test_an_offer_to_two_phones_of_one_extension_counts_once(store: Store) -> None:
    record(store, utc(2026, 5, 4, 9, 0), "answered", answered_by="101", legs=[
        {"target": "101", "contact": "sip:101@desk", "result": "answered"},
        {"target": "101", "contact": "sip:101@mobile", "result": "cancelled"},
    ])

    (row,) = reports.per_manager(store, MAY_4, MAY_4, MOSCOW)

    assert (row.extension, row.offered, row.answered, row.missed_offers) == ("101", 1, 1, 0)


def test_ringing_an_extension_again_later_in_a_call_is_another_offer(store: Store) -> None:
    at = utc(2026, 5, 4, 9, 0)
    record(store, at, "missed", legs=[
        {"target": "101", "started_at": at, "result": "no_answer"},
        {"target": "101", "started_at": at + 20.0, "result": "no_answer"},
    ])

    (row,) = reports.per_manager(store, MAY_4, MAY_4, MOSCOW)

    assert (row.offered, row.missed_offers) == (2, 2)


def test_missed_offers_are_the_ones_that_rang_out_or_were_declined(store: Store) -> None:
    at = utc(2026, 5, 4, 9, 0)
    for result in ("no_answer", "declined", "busy", "cancelled", "failed", "unavailable"):
        record(store, at, "missed", legs=[{"target": "102", "result": result}])

    (row,) = reports.per_manager(store, MAY_4, MAY_4, MOSCOW)

    assert (row.offered, row.answered, row.missed_offers) == (6, 0, 2)


def test_an_offer_answered_on_one_phone_is_not_missed_on_the_other(store: Store) -> None:
    record(store, utc(2026, 5, 4, 9, 0), "answered", answered_by="101", legs=[
        {"target": "101", "contact": "sip:101@desk", "result": "declined"},
        {"target": "101", "contact": "sip:101@mobile", "result": "answered"},
    ])

    assert reports.per_manager(store, MAY_4, MAY_4, MOSCOW)[0].missed_offers == 0


def test_talk_time_uses_the_recorded_talk_else_answer_to_end(store: Store) -> None:
    at = utc(2026, 5, 4, 9, 0)
    record(store, at, "answered", answered_by="101", talk_s=100.0)
    record(store, at, "answered", answered_by="101")  # 60 s from answer to end

    (row,) = reports.per_manager(store, MAY_4, MAY_4, MOSCOW)

    assert (row.answered, row.talk_s) == (2, pytest.approx(160.0))


def test_manager_rows_carry_the_extension_name_and_a_blank_one_once_deleted(
    store: Store,
) -> None:
    at = utc(2026, 5, 4, 9, 0)
    record(store, at, "answered", answered_by="102")
    record(store, at, "answered", answered_by="199")  # an extension since removed

    rows = reports.per_manager(store, MAY_4, MAY_4, MOSCOW)

    assert [(row.extension, row.name) for row in rows] == [("102", "Борис Иванов"), ("199", "")]


def mark_calls(store: Store, extension: str, *, target: int, sales: int, plain: int) -> None:
    """`extension` answers `target` target calls of which `sales` are sales, and `plain` other
    calls; one a minute from 09:00 Moscow time on May 4."""
    at = utc(2026, 5, 4, 6, 0)
    for number in range(target + plain):
        call_id = record(store, at + 60.0 * number, "answered", answered_by=extension,
                         legs=[{"target": extension, "result": "answered"}])
        if number < target:
            store.mark_call(call_id, target=True, sale=number < sales, by="owner")


def test_conversion_is_sales_over_target_calls_answered_37_vs_28_percent(store: Store) -> None:
    mark_calls(store, "101", target=27, sales=10, plain=5)
    mark_calls(store, "102", target=25, sales=7, plain=12)

    anna, boris = reports.per_manager(store, MAY_4, MAY_4, MOSCOW)

    assert (anna.answered, anna.target_answered, anna.sales) == (32, 27, 10)
    assert (boris.answered, boris.target_answered, boris.sales) == (37, 25, 7)
    assert anna.conversion == pytest.approx(10 / 27)  # 37 %
    assert boris.conversion == pytest.approx(0.28)
    table = reports.format_table("managers", [anna, boris])
    assert "37%" in table.splitlines()[3] and "28%" in table.splitlines()[4]


def test_conversion_is_none_without_target_calls(store: Store) -> None:
    record(store, utc(2026, 5, 4, 9, 0), "answered", answered_by="101")

    (row,) = reports.per_manager(store, MAY_4, MAY_4, MOSCOW)

    assert (row.target_answered, row.sales, row.conversion) == (0, 0, None)


def test_a_sale_without_the_target_mark_does_not_count(store: Store) -> None:
    record(store, utc(2026, 5, 4, 9, 0), "answered", answered_by="101", sale=1, target_call=0)

    assert reports.per_manager(store, MAY_4, MAY_4, MOSCOW)[0].sales == 0


def test_target_calls_nobody_answered_count_for_no_manager(store: Store) -> None:
    call_id = record(store, utc(2026, 5, 4, 9, 0), "missed",
                     legs=[{"target": "101", "result": "no_answer"}])
    store.mark_call(call_id, target=True, sale=None, by="owner")

    (row,) = reports.per_manager(store, MAY_4, MAY_4, MOSCOW)

    assert (row.extension, row.target_answered, row.conversion) == ("101", 0, None)


def test_conversion_by_manager_agrees_with_the_report(store: Store) -> None:
    mark_calls(store, "101", target=27, sales=10, plain=5)
    mark_calls(store, "102", target=25, sales=7, plain=12)
    record(store, utc(2026, 5, 4, 9, 0), "answered", answered_by="103")  # no target calls

    figures = reports.conversion_by_manager(store, utc(2026, 5, 4), utc(2026, 5, 5))

    assert figures == {"101": pytest.approx(10 / 27), "102": pytest.approx(0.28)}
    assert figures == {
        row.extension: row.conversion
        for row in reports.per_manager(store, MAY_4, MAY_4, "UTC")
        if row.conversion is not None
    }


def test_conversion_by_manager_counts_calls_started_in_since_until(store: Store) -> None:
    since, until = utc(2026, 5, 4, 9, 0), utc(2026, 5, 4, 10, 0)
    for at, sale in ((since - 1, True), (since, True), (until - 1, False), (until, True)):
        call_id = record(store, at, "answered", answered_by="101")
        store.mark_call(call_id, target=True, sale=sale, by="owner")

    assert reports.conversion_by_manager(store, since, until) == {"101": 0.5}


# --- missed calls --------------------------------------------------------------------------------


def test_missed_calls_are_listed_oldest_first_with_local_time_and_callback_state(
    store: Store,
) -> None:
    later = record(store, utc(2026, 5, 4, 12, 0), "callback", caller="+74951110000",
                   waited_s=45.0, callback_state="requested")
    earlier = record(store, utc(2026, 5, 4, 8, 0), "abandoned", caller="+74952220000",
                     waited_s=70.0)
    record(store, utc(2026, 5, 4, 9, 0), "answered")
    record(store, utc(2026, 5, 4, 20, 0), "closed")  # after hours: not a missed call

    rows = reports.missed_calls(store, MAY_4, MAY_4, MOSCOW)

    assert [row.id for row in rows] == [earlier, later]
    assert rows[1] == MissedCall(
        id=later, started_at=utc(2026, 5, 4, 12, 0),
        local_time=datetime(2026, 5, 4, 15, 0, tzinfo=reports.zone(MOSCOW)),
        caller="+74951110000", number="+74951234567", department="200", outcome="callback",
        waited_s=45.0, callback_state="requested", line=None,
    )


def test_a_callback_done_later_shows_in_the_missed_list(store: Store) -> None:
    call_id = record(store, utc(2026, 5, 4, 8, 0), "missed")
    store.set_callback_state(call_id, "done")

    (row,) = reports.missed_calls(store, MAY_4, MAY_4, MOSCOW)

    assert row.callback_state == "done"


# --- output --------------------------------------------------------------------------------------


def test_display_width_counts_characters_not_bytes() -> None:
    assert reports.display_width("Анна Смирнова") == 13
    assert reports.display_width("Андреи\u0306") == 6  # «й» written as и + combining breve
    assert reports.display_width("王芳") == 4


def test_table_columns_align_with_russian_names() -> None:
    rows = [
        ManagerRow(extension="101", name="Анна Смирнова", offered=10, answered=9,
                   missed_offers=1, talk_s=3725.0, target_answered=3, sales=1, conversion=1 / 3),
        ManagerRow(extension="1002", name="Ли", offered=2, answered=0, missed_offers=2,
                   talk_s=0.0, target_answered=0, sales=0, conversion=None),
    ]

    lines = reports.format_table("managers", rows).splitlines()

    assert lines[0] == "Managers"
    widths = {reports.display_width(line) for line in lines[1:]}
    assert len(widths) == 1  # every line as wide as the header: right columns line up
    assert "1:02:05" in lines[3] and "33%" in lines[3]
    assert lines[4].startswith("1002  Ли   ") and lines[4].endswith("-")


def test_every_field_of_every_report_is_a_column() -> None:
    for kind, row_type in (("daily", DailyRow), ("hourly", HourlyRow),
                           ("managers", ManagerRow), ("missed", MissedCall)):
        columns = [column.field for column in reports.COLUMNS[kind][1]]
        assert sorted(columns) == sorted(
            f.name for f in fields(row_type) if f.name != "started_at"
        ), kind


def test_csv_has_field_names_and_plain_values() -> None:
    rows = [DailyRow(day=MAY_4, received=3, answered=2, missed=1, closed=0, other=0,
                     mean_wait_s=12.345)]

    assert reports.format_csv("daily", rows) == (
        "day,received,answered,missed,closed,other,mean_wait_s\n"
        "2026-05-04,3,2,1,0,0,12.3\n"
    )


# --- the command line ----------------------------------------------------------------------------


def linebox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware", *args], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=60, check=False,
    )


@pytest.fixture
def report_db(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    """A database with two managers' marked calls on May 4 and a missed call on May 5."""
    path = tmp_path / "box.db"
    with Store.open(path) as store:
        store.replace_config(load_yaml(VALID_YAML))
        mark_calls(store, "101", target=27, sales=10, plain=5)
        mark_calls(store, "102", target=25, sales=7, plain=12)
        record(store, utc(2026, 5, 4, 23, 30), "abandoned", id="f" * 32, caller="+74953330000",
               waited_s=61.0)
        yield str(path), store


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_cli_report_prints_every_table_by_default(report_db: tuple[str, Store]) -> None:
    db, _ = report_db

    result = linebox("report", "--db", db, "--from", "2026-05-04", "--to", "2026-05-05")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Inbound calls 2026-05-04 … 2026-05-05 (Europe/Moscow)")
    for title in ("Calls by day", "Calls by hour of day", "Managers", "Missed calls"):
        assert f"\n{title}\n" in out
    anna = next(line for line in out.splitlines() if "Анна Смирнова" in line)
    boris = next(line for line in out.splitlines() if "Борис Иванов" in line)
    assert anna.endswith("37%") and boris.endswith("28%")
    assert len(anna) == len(boris)  # same widths in characters, whatever the bytes
    assert "+74953330000" in out and "f" * 32 in out


def test_cli_report_csv_prints_the_chosen_report(report_db: tuple[str, Store]) -> None:
    db, _ = report_db

    result = linebox("report", "--db", db, "--csv", "--kind", "managers",
                     "--from", "2026-05-04", "--to", "2026-05-04")

    assert result.returncode == 0, result.stderr
    rows = csv_rows(result.stdout)
    assert [(r["extension"], r["name"], r["target_answered"], r["sales"], r["conversion"])
            for r in rows] == [
        ("101", "Анна Смирнова", "27", "10", "0.3704"),
        ("102", "Борис Иванов", "25", "7", "0.2800"),
    ]


def test_cli_report_csv_defaults_to_the_daily_report(report_db: tuple[str, Store]) -> None:
    db, _ = report_db

    result = linebox("report", "--db", db, "--csv", "--from", "2026-05-04", "--to",
                     "2026-05-05")

    assert result.returncode == 0, result.stderr
    assert [(r["day"], r["received"], r["answered"], r["missed"]) for r in
            csv_rows(result.stdout)] == [("2026-05-04", "69", "69", "0"),
                                         ("2026-05-05", "1", "0", "1")]


def test_cli_report_time_zone_moves_calls_between_days(report_db: tuple[str, Store]) -> None:
    db, _ = report_db

    result = linebox("report", "--db", db, "--csv", "--tz", "UTC", "--from", "2026-05-04",
                     "--to", "2026-05-05")

    assert [r["received"] for r in csv_rows(result.stdout)] == ["70", "0"]


def test_cli_report_hourly_and_missed_as_csv(report_db: tuple[str, Store]) -> None:
    db, _ = report_db
    period = ("--from", "2026-05-04", "--to", "2026-05-05")

    hourly = csv_rows(linebox("report", "--db", db, "--csv", "--kind", "hourly", *period).stdout)
    missed = csv_rows(linebox("report", "--db", db, "--csv", "--kind", "missed", *period).stdout)

    assert len(hourly) == 24 and hourly[2]["missed"] == "1" and hourly[9]["received"] == "69"
    assert [(r["local_time"], r["outcome"], r["waited_s"]) for r in missed] == [
        ("2026-05-05 02:30:00", "abandoned", "61.0")
    ]


def test_cli_report_default_period_is_the_last_seven_days(tmp_path: Path) -> None:
    db = tmp_path / "box.db"
    with Store.open(db) as store:
        record(store, time.time() - 3600.0)
        record(store, time.time() - 9 * 86_400.0)

    result = linebox("report", "--db", str(db), "--csv")

    rows = csv_rows(result.stdout)
    assert len(rows) == 7
    assert sum(int(r["received"]) for r in rows) == 1


def test_cli_report_csv_of_all_reports_is_refused(report_db: tuple[str, Store]) -> None:
    result = linebox("report", "--db", report_db[0], "--csv", "--kind", "all")

    assert result.returncode == 2 and "--kind" in result.stderr


def test_cli_report_of_a_missing_database_fails_without_creating_one(tmp_path: Path) -> None:
    db = tmp_path / "none.db"

    result = linebox("report", "--db", str(db))

    assert result.returncode == 1 and "no database" in result.stderr
    assert not db.exists()


def test_cli_report_refuses_an_unknown_time_zone(report_db: tuple[str, Store]) -> None:
    result = linebox("report", "--db", report_db[0], "--tz", "Mars/Olympus")

    assert result.returncode == 2 and "unknown time zone" in result.stderr


def test_cli_report_reads_while_the_daemon_holds_the_write_lock(
    report_db: tuple[str, Store],
) -> None:
    db, _ = report_db
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM calls")  # not committed: the report must not see it

        result = linebox("report", "--db", db, "--csv", "--from", "2026-05-04", "--to",
                         "2026-05-04")
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    assert result.returncode == 0, result.stderr
    assert csv_rows(result.stdout)[0]["received"] == "69"


def test_cli_call_mark_sets_marks_that_the_report_counts(tmp_path: Path) -> None:
    db = tmp_path / "box.db"
    with Store.open(db) as store:
        call_id = record(store, utc(2026, 5, 4, 9, 0), "answered", answered_by="101")

    marked = linebox("call", "mark", call_id, "--sale", "--by", "Ольга", "--db", str(db))
    report = linebox("report", "--db", str(db), "--csv", "--kind", "managers", "--from",
                     "2026-05-04", "--to", "2026-05-04")

    assert marked.returncode == 0, marked.stderr
    assert marked.stdout == f"{call_id}: target call yes, sale yes (marked by Ольга)\n"
    assert csv_rows(report.stdout)[0]["conversion"] == "1.0000"


def test_cli_call_mark_no_target_clears_the_marks(tmp_path: Path) -> None:
    db = tmp_path / "box.db"
    with Store.open(db) as store:
        call_id = record(store, utc(2026, 5, 4, 9, 0))
        store.mark_call(call_id, target=True, sale=True, by="owner")

    result = linebox("call", "mark", call_id, "--no-target", "--by", "owner", "--db", str(db))

    assert result.stdout == f"{call_id}: target call no, sale no (marked by owner)\n"


def test_cli_call_mark_of_an_unknown_call_fails(tmp_path: Path) -> None:
    db = tmp_path / "box.db"
    Store.open(db).close()

    result = linebox("call", "mark", "0" * 32, "--target", "--db", str(db))

    assert result.returncode == 1 and "no call with id" in result.stderr


def test_cli_call_mark_without_a_mark_is_refused(tmp_path: Path) -> None:
    result = linebox("call", "mark", "0" * 32, "--db", str(tmp_path / "box.db"))

    assert result.returncode == 2 and "nothing to mark" in result.stderr


def test_cli_call_list_shows_ids_newest_first_and_can_show_only_missed(tmp_path: Path) -> None:
    db = tmp_path / "box.db"
    with Store.open(db) as store:
        answered = record(store, utc(2026, 5, 4, 9, 0), "answered")
        missed = record(store, utc(2026, 5, 4, 10, 0), "missed")

    everything = linebox("call", "list", "--db", str(db))
    only_missed = linebox("call", "list", "--missed", "--limit", "5", "--db", str(db))

    assert everything.returncode == 0, everything.stderr
    lines = everything.stdout.splitlines()
    assert lines[3].startswith(missed) and "2026-05-04 13:00:00" in lines[3]
    assert lines[4].startswith(answered) and "0:01:00" in lines[4]
    assert [line.split()[0] for line in only_missed.stdout.splitlines()[3:]] == [missed]


def test_reports_default_to_the_site_time_zone_of_the_config(store: Store) -> None:
    assert reports.site_zone(store) == reports.zone(store.load_config().site.timezone)
    assert reports.DEFAULT_TZ == "Europe/Moscow"
