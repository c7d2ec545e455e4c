"""Opening the database: directory creation, pragmas in effect, migrations, two processes."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlite_utils import Database

from firmware.store import SchemaTooNewError, Store, load_yaml, new_call_id
from firmware.store.db import MIGRATIONS, apply_migrations
from tests.store.conftest import VALID_YAML

EXPECTED_TABLES = {
    "extensions",
    "departments",
    "department_members",
    "trunks",
    "numbers",
    "settings",
    "calls",
    "call_legs",
    "agent_status",
    "agent_status_log",
}


def pragma(store: Store, name: str) -> object:
    return store.db.execute(f"PRAGMA {name}").fetchone()[0]


def test_open_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "linebox.db"

    with Store.open(path):
        pass

    assert path.is_file()


def test_open_creates_every_table(store: Store) -> None:
    assert set(store.db.table_names()) >= EXPECTED_TABLES


def test_call_tables_are_indexed_by_time_and_call(store: Store) -> None:
    assert ["started_at"] in [index.columns for index in store.db.table("calls").indexes]
    assert ["call_id"] in [index.columns for index in store.db.table("call_legs").indexes]


def test_user_version_is_the_number_of_migrations(store: Store) -> None:
    assert pragma(store, "user_version") == len(MIGRATIONS)


def test_reopening_does_not_rerun_migrations_or_lose_data(db_path: Path) -> None:
    with Store.open(db_path) as first:
        first.replace_config(load_yaml(VALID_YAML))

    with Store.open(db_path) as second:
        assert pragma(second, "user_version") == len(MIGRATIONS)
        assert second.load_config() == load_yaml(VALID_YAML)


def test_each_migration_runs_exactly_once(tmp_path: Path) -> None:
    runs: list[int] = []
    migrations = [lambda db: runs.append(1), lambda db: runs.append(2)]
    db = Database(tmp_path / "m.db")

    apply_migrations(db, migrations)
    apply_migrations(db, migrations)
    apply_migrations(db, [*migrations, lambda db: runs.append(3)])

    assert runs == [1, 2, 3]
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3


def test_failed_migration_is_rolled_back_and_not_recorded(tmp_path: Path) -> None:
    def create_then_fail(db: Database) -> None:
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("migration bug")

    db = Database(tmp_path / "m.db")

    with pytest.raises(RuntimeError):
        apply_migrations(db, [lambda db: None, create_then_fail])

    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "half_done" not in db.table_names()


def test_database_from_newer_firmware_is_refused(db_path: Path) -> None:
    with Store.open(db_path) as store:
        store.db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")

    with pytest.raises(SchemaTooNewError):
        Store.open(db_path)


def test_journal_mode_is_wal(store: Store) -> None:
    assert pragma(store, "journal_mode") == "wal"


def test_wal_mode_persists_for_other_connections(store: Store, db_path: Path) -> None:
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_synchronous_is_full(store: Store) -> None:
    full = 2
    assert pragma(store, "synchronous") == full


def test_foreign_keys_are_enforced(store: Store) -> None:
    assert pragma(store, "foreign_keys") == 1
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute(
            "INSERT INTO call_legs (call_id, target, contact, started_at) VALUES (?, ?, ?, ?)",
            ("no-such-call", "101", "sip:101@10.0.0.5", 1.0),
        )


def test_busy_timeout_is_5_seconds(store: Store) -> None:
    assert pragma(store, "busy_timeout") == 5000


def test_writer_waits_for_the_other_process_instead_of_failing(store: Store, db_path: Path) -> None:
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO settings (key, value) VALUES ('held', '1')")
    releaser = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    releaser.start()
    try:
        started = time.monotonic()
        store.record_finished_calls([(
            {
                "id": new_call_id(),
                "started_at": 1.0,
                "direction": "internal",
                "source": "sip",
                "caller": "101",
                "dialed": "102",
                "outcome": "missed",
            },
            [],
        )])
        waited_s = time.monotonic() - started
    finally:
        releaser.join()
        other.close()

    assert waited_s >= 0.2
    assert len(store.recent_calls()) == 1


def test_two_stores_on_one_file_write_concurrently_without_locking_errors(db_path: Path) -> None:
    Store.open(db_path).close()
    rounds = 40
    errors: list[BaseException] = []
    config = load_yaml(VALID_YAML)

    def daemon() -> None:
        try:
            with Store.open(db_path) as store:
                for round_number in range(rounds):
                    call_id = new_call_id()
                    call = {
                        "id": call_id,
                        "started_at": float(round_number),
                        "direction": "inbound",
                        "source": "trunk:provider",
                        "caller": "+74950000000",
                        "dialed": "+74951234567",
                        "outcome": "missed",
                    }
                    leg = {
                        "call_id": call_id,
                        "target": "101",
                        "contact": "sip:101@10.0.0.5",
                        "started_at": 1.0,
                        "ended_at": 2.0,
                        "result": "no_answer",
                    }
                    store.record_finished_calls([(call, [leg])])
                    store.load_config()
        except BaseException as error:  # noqa: BLE001 - reported to the main thread
            errors.append(error)

    def web_ui() -> None:
        try:
            with Store.open(db_path) as store:
                for _ in range(rounds):
                    revision = store.config_revision()
                    store.replace_config(config, expected_revision=revision)
                    store.recent_calls()
        except BaseException as error:  # noqa: BLE001 - reported to the main thread
            errors.append(error)

    threads = [threading.Thread(target=daemon), threading.Thread(target=web_ui)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with Store.open(db_path) as store:
        assert store.config_revision() == rounds
        assert len(store.recent_calls(limit=1000)) == rounds
