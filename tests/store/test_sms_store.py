"""The `sms` table (schema version 9, issue 12): messages of the GSM lines, kept and listed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlite_utils import Database

from firmware.store import Store
from firmware.store.db import MIGRATIONS, apply_migrations


def test_a_received_message_is_kept_with_its_line_sender_and_time(store: Store) -> None:
    sms_id = store.add_sms(line="mts", direction="in", number="+79161234567",
                           text="Привет! Перезвоните, пожалуйста", at=1_760_000_000.0)
    assert store.sms() == [{
        "id": sms_id, "line": "mts", "direction": "in", "number": "+79161234567",
        "text": "Привет! Перезвоните, пожалуйста", "at": 1_760_000_000.0, "complete": True,
    }]


def test_messages_come_newest_first_by_their_time(store: Store) -> None:
    store.add_sms(line="mts", direction="in", number="MTS", text="second", at=200.0)
    store.add_sms(line="mts", direction="in", number="MTS", text="first", at=100.0)
    store.add_sms(line="mts", direction="in", number="MTS", text="third", at=300.0)
    assert [row["text"] for row in store.sms()] == ["third", "second", "first"]


def test_listing_by_line_and_by_direction(store: Store) -> None:
    store.add_sms(line="mts", direction="in", number="+79160000001", text="a", at=1.0)
    store.add_sms(line="beeline", direction="in", number="+79030000002", text="b", at=2.0)
    store.add_sms(line="mts", direction="out", number="+79160000003", text="c", at=3.0)
    assert [row["text"] for row in store.sms("mts")] == ["c", "a"]
    assert [row["text"] for row in store.sms("mts", direction="in")] == ["a"]
    assert [row["text"] for row in store.sms(direction="out")] == ["c"]
    assert store.sms("nowhere") == []


def test_the_limit_keeps_the_newest(store: Store) -> None:
    for second in range(5):
        store.add_sms(line="mts", direction="in", number="900", text=str(second), at=second)
    assert [row["text"] for row in store.sms(limit=2)] == ["4", "3"]


def test_an_incomplete_long_message_is_kept_and_marked(store: Store) -> None:
    store.add_sms(line="mts", direction="in", number="+79161234567", text="Часть пер",
                  at=5.0, complete=False)
    assert store.sms()[0]["complete"] is False


def test_a_direction_other_than_in_or_out_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="direction"):
        store.add_sms(line="mts", direction="sideways", number="1", text="x", at=1.0)
    assert store.sms() == []


def test_only_the_newest_messages_are_kept(store: Store, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setattr("firmware.store.db.SMS_KEPT", 3)
    for second in range(5):
        store.add_sms(line="mts", direction="in", number="900", text=str(second), at=second)
    assert [row["text"] for row in store.sms()] == ["4", "3", "2"]


def test_a_version_8_database_gains_the_sms_table(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(db_path)
    apply_migrations(db, MIGRATIONS[:8])
    assert "sms" not in db.table_names()
    db.close()
    with Store.open(db_path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        store.add_sms(line="mts", direction="in", number="MTS", text="Баланс 100 р.", at=1.0)
        assert store.sms()[0]["text"] == "Баланс 100 р."
