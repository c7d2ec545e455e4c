"""Schema version 10 (issue 12): the line each call used (`calls.line`) and the lines' events
(`line_events`: state changes and failover switches), in the store and from the daemon's
recorder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from firmware.core.events import FailoverSwitched, LineStateChanged
from firmware.daemon import SqliteRecorder
from firmware.store import Store, new_call_id
from firmware.store.db import MIGRATIONS, apply_migrations
from tests.core.network import RING_ALL_DID, office


def call(source: str = "trunk:provider", **fields: Any) -> dict[str, Any]:
    return {
        "id": new_call_id(), "started_at": 1000.0, "ended_at": 1020.0, "direction": "inbound",
        "source": source, "caller": "+74950000000", "dialed": "+74951234567",
        "number": "+74951234567", "department": "200", "end_cause": "ring timeout",
        "outcome": "missed", "sip_call_id": "a@b",
    } | fields


def insert_v9_call(db: Database, row: dict[str, Any]) -> None:
    db.execute(f"INSERT INTO calls ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
               list(row.values()))


# --- calls.line ------------------------------------------------------------------------------


def test_a_call_keeps_the_line_it_used(store: Store) -> None:
    store.record_finished_calls([(call("gsm:mts", line="mts"), [])])
    assert store.recent_calls()[0]["line"] == "mts"


def test_a_call_between_office_phones_has_no_line(store: Store) -> None:
    store.record_finished_calls([(call("ext:101", direction="internal"), [])])
    assert store.recent_calls()[0]["line"] is None


def test_recent_calls_by_line(store: Store) -> None:
    store.record_finished_calls([
        (call("trunk:provider", line="provider", started_at=1.0), []),
        (call("gsm:mts", line="mts", started_at=2.0, outcome="answered"), []),
        (call("gsm:mts", line="mts", started_at=3.0), []),
    ])
    assert [c["started_at"] for c in store.recent_calls(line="mts")] == [3.0, 2.0]
    assert [c["started_at"] for c in store.recent_calls(line="mts", outcomes={"missed"})
            ] == [3.0]
    assert store.recent_calls(line="city") == []
    assert len(store.recent_calls()) == 3


def test_a_version_9_database_reads_each_calls_line_from_its_source(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(db_path)
    apply_migrations(db, MIGRATIONS[:9])
    sources = {"trunk:provider": "provider", "gsm:mts": "mts", "fxo:city": "city",
               "ext:101": None, "trunk:": None, "callback": None, "gsmx:odd": None,
               "trunk:name:with:colons": "name:with:colons"}
    ids = {}
    for source in sources:
        row = call(source)
        ids[row["id"]] = source
        insert_v9_call(db, row)
    db.conn.commit()
    assert "line" not in db.table("calls").columns_dict
    db.close()
    with Store.open(db_path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 10
        found = {ids[row["id"]]: row["line"] for row in store.recent_calls(100)}
        assert "line_events" in store.db.table_names()
    assert found == sources


# --- line_events -----------------------------------------------------------------------------


def test_line_events_are_listed_newest_first(store: Store) -> None:
    store.add_line_event(at=10.0, kind="state", line="mts", state="up", reason="registered")
    store.add_line_event(at=20.0, kind="state", line="mts", state="down", old="up",
                         reason="port vanished")
    events = store.line_events()
    assert [(e["at"], e["kind"], e["line"], e["state"], e["old"], e["reason"])
            for e in events] == [
        (20.0, "state", "mts", "down", "up", "port vanished"),
        (10.0, "state", "mts", "up", None, "registered"),
    ]


def test_a_lines_events_include_the_switches_to_it_and_away_from_it(store: Store) -> None:
    store.add_line_event(at=1.0, kind="state", line="provider", state="down",
                         reason="no default route")
    store.add_line_event(at=2.0, kind="failover", line="mts", old="provider",
                         reason="provider down")
    store.add_line_event(at=3.0, kind="state", line="city", state="up")
    store.add_line_event(at=4.0, kind="failover", line=None, old="mts", reason="no line up")
    assert [e["at"] for e in store.line_events("provider")] == [2.0, 1.0]
    assert [e["at"] for e in store.line_events("mts")] == [4.0, 2.0]
    assert [e["at"] for e in store.line_events("city")] == [3.0]
    assert [e["at"] for e in store.line_events(limit=2)] == [4.0, 3.0]


def test_a_state_events_old_state_does_not_make_it_another_lines(store: Store) -> None:
    # "old" of a state event is a state ("up"), not a line: a line named "up" sees nothing.
    store.add_line_event(at=1.0, kind="state", line="mts", state="down", old="up")
    assert store.line_events("up") == []


def test_an_unknown_kind_or_a_state_event_without_its_line_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="kind"):
        store.add_line_event(at=1.0, kind="weather", line="mts")
    with pytest.raises(ValueError, match="state event"):
        store.add_line_event(at=1.0, kind="state", line=None, state="up")
    assert store.line_events() == []


def test_only_the_newest_line_events_are_kept(store: Store,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("firmware.store.db.LINE_EVENTS_KEPT", 3)
    for second in range(5):
        store.add_line_event(at=float(second), kind="state", line="mts", state="up")
    assert [e["at"] for e in store.line_events()] == [4.0, 3.0, 2.0]


def test_the_daemons_recorder_writes_line_events_in_wall_clock_time(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    Store.open(db_path).close()
    recorder = SqliteRecorder(db_path, wall_offset_s=1_700_000_000.0)
    recorder.line_event(LineStateChanged(name="mts", kind="gsm", state="up",
                                         reason="registered (home)", at=1.0))
    recorder.line_event(LineStateChanged(name="provider", kind="sip", state="down",
                                         reason="no default route", at=2.5))
    recorder.line_event(FailoverSwitched(old="provider", new="mts",
                                         reason="provider: no default route", at=2.5))
    recorder.line_event(LineStateChanged(name="mts", kind="gsm", state="down",
                                         reason="port vanished", at=4.0))
    recorder.close()
    with Store.open(db_path) as store:
        events = store.line_events()
    assert [(e["at"], e["kind"], e["line"], e["state"], e["old"], e["reason"])
            for e in events] == [
        (1_700_000_004.0, "state", "mts", "down", "up", "port vanished"),
        (1_700_000_002.5, "failover", "mts", None, "provider", "provider: no default route"),
        (1_700_000_002.5, "state", "provider", "down", None, "no default route"),
        (1_700_000_001.0, "state", "mts", "up", None, "registered (home)"),
    ]


# --- from the core's record of a call to the row ---------------------------------------------


def test_the_core_records_the_line_a_call_came_in_on(store: Store) -> None:
    # The sans-IO gateway on its fake network (tests/core/network.py): real call handling, the
    # row `call_row` makes, written as the daemon writes it.
    o = office()
    invite = o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.phones["102"].answer()
    o.net.advance(5.0)
    o.provider.bye(invite)
    o.net.advance(1.0)
    [(row, _legs)] = o.rows
    assert row["line"] == "provider"
    store.record_finished_calls(o.rows)
    [call] = store.recent_calls()
    assert (call["direction"], call["answered_by"], call["line"]) == (
        "inbound", "102", "provider")
