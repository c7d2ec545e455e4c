"""A broken database at start and the daily backups it is recovered from (issue 16)."""

from __future__ import annotations

import datetime
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from firmware.store import Store, load_yaml, new_call_id
from firmware.store.backup import (
    BACKUP_KEEP_DAYS,
    backup_folder,
    backup_if_due,
    backups,
    is_sound,
    make_backup,
)
from firmware.store.errors import DatabaseUnavailableError
from firmware.store.recovery import (
    NOTICE_EMPTY,
    NOTICE_RESTORED,
    add_box_notice,
    box_notices,
    recover_if_broken,
)
from tests.store.conftest import VALID_YAML
from tests.store.test_call_records import call_row

TODAY = datetime.date(2026, 12, 3)


def configured(db_path: Path) -> None:
    with Store.open(db_path) as store:
        store.replace_config(load_yaml(VALID_YAML))
        store.record_finished_calls([(call_row(new_call_id()), [])])


def garbage(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database at all " * 200)


def truncated(db_path: Path) -> None:
    data = db_path.read_bytes()
    db_path.write_bytes(data[: len(data) // 3])


def damaged_pages(db_path: Path) -> None:
    """A sound header, but every page after the first overwritten: quick_check fails."""
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db_path.read_bytes())
    for offset in range(page_size, len(data), 7):
        data[offset] = 0xA5
    db_path.write_bytes(bytes(data))


def test_a_sound_database_is_left_alone(db_path: Path) -> None:
    configured(db_path)
    assert is_sound(db_path) == ""
    assert recover_if_broken(db_path) is None
    assert recover_if_broken(db_path.with_name("absent.db")) is None


def test_a_backup_is_a_sound_copy_kept_seven_days(db_path: Path) -> None:
    configured(db_path)
    for days_ago in range(10, -1, -1):
        make_backup(db_path, TODAY - datetime.timedelta(days=days_ago))
    kept = backups(db_path)
    assert [day for day, _ in kept] == [TODAY - datetime.timedelta(days=n)
                                        for n in range(BACKUP_KEEP_DAYS)]
    with Store.open(kept[0][1]) as copy:
        assert copy.load_config() == load_yaml(VALID_YAML)
        assert len(copy.recent_calls()) == 1
    assert not list(backup_folder(db_path).glob("*.partial"))


def test_a_backup_is_made_once_a_day(db_path: Path) -> None:
    configured(db_path)
    assert backup_if_due(db_path, TODAY) is not None
    assert backup_if_due(db_path, TODAY) is None
    assert backup_if_due(db_path, TODAY + datetime.timedelta(days=1)) is not None


@pytest.mark.parametrize("damage", [garbage, truncated, damaged_pages])
def test_a_broken_database_is_moved_aside_and_the_newest_backup_takes_its_place(
        db_path: Path, damage: object) -> None:
    configured(db_path)
    make_backup(db_path, TODAY - datetime.timedelta(days=1))
    with Store.open(db_path) as store:  # a change the backup does not have
        store.record_finished_calls([(call_row(new_call_id()), [])])
    damage(db_path)  # type: ignore[operator]

    recovered = recover_if_broken(db_path)

    assert recovered is not None and recovered.backup is not None
    assert recovered.notice["kind"] == NOTICE_RESTORED
    assert recovered.moved_to.exists() and recovered.moved_to.name.startswith("linebox.db.broken-")
    with Store.open(db_path) as store:
        assert store.load_config() == load_yaml(VALID_YAML)
        assert len(store.recent_calls()) == 1


def test_a_broken_backup_is_skipped_for_an_older_sound_one(db_path: Path) -> None:
    configured(db_path)
    make_backup(db_path, TODAY - datetime.timedelta(days=2))
    newest = make_backup(db_path, TODAY - datetime.timedelta(days=1))
    garbage(newest)
    garbage(db_path)

    recovered = recover_if_broken(db_path)

    assert recovered is not None and recovered.backup is not None
    assert recovered.backup.name == f"linebox-{TODAY - datetime.timedelta(days=2)}.db"


def test_with_no_backup_the_box_starts_empty(db_path: Path) -> None:
    configured(db_path)
    garbage(db_path)

    recovered = recover_if_broken(db_path)

    assert recovered is not None and recovered.backup is None
    assert recovered.notice["kind"] == NOTICE_EMPTY
    assert not db_path.exists()
    with Store.open(db_path) as store:
        assert store.load_config().extensions == ()
        add_box_notice(store, recovered.notice, at=1000.0)
        (notice,) = box_notices(store)
        assert notice["kind"] == NOTICE_EMPTY and notice["at"] == 1000.0


# ------------------------------------------------------------------ not damage: never moved aside


def broken_aside(db_path: Path) -> list[Path]:
    return list(db_path.parent.glob(f"{db_path.name}.broken-*"))


def locked_by_another_process(db_path: Path) -> sqlite3.Connection:
    """Another connection (the web UI) holding the database locked against readers too."""
    # Released from a timer's thread in one test.
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("INSERT INTO settings (key, value) VALUES ('lock-holder', '1')")
    return conn


def test_a_database_locked_at_start_is_waited_for_then_the_start_fails_and_it_stays(
        db_path: Path) -> None:
    configured(db_path)
    make_backup(db_path, TODAY - datetime.timedelta(days=1))
    holder = locked_by_another_process(db_path)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="locked by another process") as info:
            recover_if_broken(db_path, busy_wait_s=1.0)
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert info.value.busy
    assert 1.0 <= waited < 5.0
    assert broken_aside(db_path) == []
    with Store.open(db_path) as store:  # the very file, with what the backup does not have
        assert store.load_config() == load_yaml(VALID_YAML)
        assert len(store.recent_calls()) == 1


def test_a_lock_released_while_the_start_waits_lets_it_go_on(db_path: Path) -> None:
    configured(db_path)
    holder = locked_by_another_process(db_path)
    released = threading.Timer(0.5, lambda: (holder.execute("ROLLBACK"), holder.close()))
    released.start()
    try:
        assert recover_if_broken(db_path, busy_wait_s=10.0) is None
    finally:
        released.join(5.0)
    assert broken_aside(db_path) == []


def test_a_database_that_cannot_be_opened_is_an_error_saying_so_not_a_recovery(
        db_path: Path) -> None:
    db_path.mkdir(parents=True)  # there, but nothing SQLite can open (like a file it may not read)
    with pytest.raises(DatabaseUnavailableError, match="cannot be opened") as info:
        recover_if_broken(db_path, busy_wait_s=1.0)
    assert not info.value.busy
    assert db_path.is_dir() and broken_aside(db_path) == []


@pytest.mark.parametrize("damage", [garbage, truncated, damaged_pages])
def test_damage_is_still_damage_and_is_told_at_once(db_path: Path, damage: object) -> None:
    configured(db_path)
    damage(db_path)  # type: ignore[operator]
    started = time.monotonic()
    assert is_sound(db_path)
    recovered = recover_if_broken(db_path, busy_wait_s=10.0)
    assert time.monotonic() - started < 2.0  # damage is not waited on like a lock
    assert recovered is not None and recovered.moved_to in broken_aside(db_path)
