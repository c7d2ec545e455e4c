"""A broken database at start and the daily backups it is recovered from (issue 16)."""

from __future__ import annotations

import datetime
import sqlite3
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
