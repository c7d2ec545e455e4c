"""`Store.replace_config` is all or nothing, bumps the revision, and refuses invalid input."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils.db import Table

from firmware.store import (
    ConfigError,
    RevisionConflictError,
    Store,
    load_yaml,
)
from tests.store.conftest import VALID_YAML

CONFIG_TABLES = ("extensions", "departments", "department_members", "trunks", "numbers", "settings")


def snapshot(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {table: list(store.db.query(f"SELECT * FROM {table}")) for table in CONFIG_TABLES}


def test_fresh_database_is_at_revision_0_and_empty(store: Store) -> None:
    assert store.config_revision() == 0
    assert store.load_config() == load_yaml("extensions: []")


def test_every_replace_bumps_the_revision_by_one(store: Store) -> None:
    config = load_yaml(VALID_YAML)

    store.replace_config(config)
    store.replace_config(config)

    assert store.config_revision() == 2


def test_replace_removes_what_the_new_config_no_longer_has(store: Store) -> None:
    store.replace_config(load_yaml(VALID_YAML))
    smaller = load_yaml('extensions:\n  - {number: "150", name: Гость, password: guest-pass}\n')

    store.replace_config(smaller)

    assert store.load_config() == smaller
    assert store.db.execute("SELECT count(*) FROM trunks").fetchone()[0] == 0


def test_broken_yaml_leaves_the_database_untouched(store: Store) -> None:
    store.replace_config(load_yaml(VALID_YAML))
    before = snapshot(store)

    with pytest.raises(ConfigError):
        store.replace_config(load_yaml(VALID_YAML.replace("channels: 4\n", "channels: [4\n", 1)))

    assert snapshot(store) == before


def test_invalid_config_object_is_refused_before_anything_is_written(store: Store) -> None:
    store.replace_config(load_yaml(VALID_YAML))
    before = snapshot(store)
    config = load_yaml(VALID_YAML)
    broken = dataclasses.replace(
        config, departments=(dataclasses.replace(config.departments[0], ring_timeout_s=1),)
    )

    with pytest.raises(ConfigError) as caught:
        store.replace_config(broken)

    assert caught.value.path == "departments[0].ring_timeout_s"
    assert snapshot(store) == before


def test_database_error_midway_rolls_back_everything(store: Store) -> None:
    store.replace_config(load_yaml(VALID_YAML))
    store.db.execute(
        "CREATE TRIGGER refuse_numbers BEFORE INSERT ON numbers "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    before = snapshot(store)

    with pytest.raises(sqlite3.IntegrityError):
        store.replace_config(load_yaml(VALID_YAML.replace("Анна Смирнова", "Анна Петрова")))

    assert snapshot(store) == before
    assert store.config_revision() == 1


def test_exception_midway_rolls_back_everything(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.replace_config(load_yaml(VALID_YAML))
    before = snapshot(store)
    real_insert_all = Table.insert_all

    def insert_all_failing_on_trunks(self: Table, *args: Any, **kwargs: Any) -> Table:
        if self.name == "trunks":
            raise RuntimeError("power cut simulation")
        return real_insert_all(self, *args, **kwargs)

    monkeypatch.setattr(Table, "insert_all", insert_all_failing_on_trunks)

    with pytest.raises(RuntimeError):
        store.replace_config(load_yaml(VALID_YAML.replace("Анна Смирнова", "Анна Петрова")))

    assert snapshot(store) == before


def test_store_stays_usable_after_a_failed_replace(store: Store) -> None:
    store.db.execute(
        "CREATE TRIGGER refuse_trunks BEFORE INSERT ON trunks BEGIN SELECT RAISE(ABORT, 'x'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        store.replace_config(load_yaml(VALID_YAML))
    store.db.execute("DROP TRIGGER refuse_trunks")

    store.replace_config(load_yaml(VALID_YAML))

    assert store.load_config() == load_yaml(VALID_YAML)


def test_stale_expected_revision_is_refused_and_changes_nothing(store: Store) -> None:
    store.replace_config(load_yaml(VALID_YAML))
    before = snapshot(store)

    with pytest.raises(RevisionConflictError):
        store.replace_config(load_yaml("extensions: []"), expected_revision=0)

    assert snapshot(store) == before


def test_current_expected_revision_is_accepted(store: Store) -> None:
    store.replace_config(load_yaml(VALID_YAML), expected_revision=0)

    assert store.config_revision() == 1


def test_replace_keeps_settings_it_does_not_own(store: Store) -> None:
    store.db.execute("INSERT INTO settings (key, value) VALUES ('webui', '{\"theme\": \"dark\"}')")

    store.replace_config(load_yaml(VALID_YAML))

    assert store.db.execute("SELECT value FROM settings WHERE key = 'webui'").fetchone() == (
        '{"theme": "dark"}',
    )


def test_config_change_is_visible_to_another_store_on_the_same_file(
    store: Store, db_path: Path
) -> None:
    with Store.open(db_path) as other:
        store.replace_config(load_yaml(VALID_YAML))

        assert other.config_revision() == 1
        assert other.load_config() == load_yaml(VALID_YAML)
