"""Security events (schema version 8): what the toll guard refused, kept for the web UI."""

from __future__ import annotations

from pathlib import Path

from sqlite_utils import Database

from firmware.daemon import SqliteRecorder
from firmware.routing.tollguard import NOT_ALLOWED, OutboundCallRefused
from firmware.store import Store, load_yaml
from firmware.store.db import MIGRATIONS, SECURITY_EVENTS_KEPT, apply_migrations
from tests.store.conftest import VALID_YAML, write_config_as_older_firmware


def test_an_event_is_kept_and_listed_newest_first(store: Store) -> None:
    store.add_security_event(at=100.0, kind="outbound_not_allowed", extension="101",
                             number="0088213374455", detail="international")
    store.add_security_event(at=200.0, kind="outbound_extension_limit", extension="102",
                             number="89161234567", detail="mobile", repeated=4)
    events = store.security_events()
    assert [(e["kind"], e["extension"], e["number"], e["detail"], e["repeated"], e["at"])
            for e in events] == [
        ("outbound_extension_limit", "102", "89161234567", "mobile", 4, 200.0),
        ("outbound_not_allowed", "101", "0088213374455", "international", 0, 100.0),
    ]


def test_only_the_newest_events_are_kept(store: Store) -> None:
    for index in range(SECURITY_EVENTS_KEPT + 5):
        store.add_security_event(at=float(index), kind="outbound_box_limit", extension="101",
                                 number="89161234567", detail="mobile")
    count = store.db.execute("SELECT count(*) FROM security_events").fetchone()[0]
    assert count == SECURITY_EVENTS_KEPT
    events = store.security_events(limit=SECURITY_EVENTS_KEPT)
    assert events[0]["at"] == SECURITY_EVENTS_KEPT + 4
    assert events[-1]["at"] == 5.0


def test_a_version_7_database_gains_the_table_and_keeps_its_config(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    seven = Database(db_path)
    apply_migrations(seven, MIGRATIONS[:7])
    seven.close()
    write_config_as_older_firmware(db_path, VALID_YAML)
    config = load_yaml(VALID_YAML)
    old = Database(db_path)
    assert "security_events" not in old.table_names()
    apply_migrations(old, MIGRATIONS)
    assert "security_events" in old.table_names()
    old.close()
    with Store.open(db_path) as store:
        assert store.load_config() == config
        assert store.security_events() == []


def test_the_daemons_recorder_writes_a_refusal_in_wall_clock_time(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    Store.open(db_path).close()
    recorder = SqliteRecorder(db_path, wall_offset_s=1_700_000_000.0)
    recorder.security_event(OutboundCallRefused(
        at=12.5, kind=NOT_ALLOWED, extension="101", number="0088213374455",
        number_class="international", repeated=3))
    recorder.close()
    with Store.open(db_path) as store:
        (event,) = store.security_events()
    assert (event["at"], event["kind"], event["extension"], event["number"], event["detail"],
            event["repeated"]) == (1_700_000_012.5, NOT_ALLOWED, "101", "0088213374455",
                                   "international", 3)
