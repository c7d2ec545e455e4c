"""An employee's optional `mobile` and `skills`: validated with key paths, exported only when
set, kept exactly through YAML and the database, added to older databases by migration 4, and
used by the `skills` strategy when a department does not set the member's own skills."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlite_utils import Database

from firmware.store import ConfigError, Store, config_to_dict, dump_yaml, load_yaml, parse_config
from firmware.store.db import MIGRATIONS, apply_migrations
from tests.core.network import Network
from tests.store.conftest import VALID_YAML, valid_config_data, write_config_as_older_firmware

Data = dict[str, Any]


def with_keys(**keys: object) -> Data:
    data = valid_config_data()
    data["extensions"][1].update(keys)
    return data


def error_after(change: Callable[[Data], object]) -> ConfigError:
    data = valid_config_data()
    change(data)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value


def test_mobile_and_skills_are_parsed() -> None:
    config = parse_config(with_keys(mobile="+79161234567", skills=["lang:en", "product:crm"]))

    employee = config.extensions[1]
    assert employee.mobile == "+79161234567"
    assert employee.skills == ("lang:en", "product:crm")


def test_without_them_an_employee_has_no_mobile_and_no_skills() -> None:
    employee = parse_config(valid_config_data()).extensions[0]

    assert employee.mobile is None
    assert employee.skills == ()


def test_export_leaves_them_out_when_not_set() -> None:
    exported = config_to_dict(parse_config(valid_config_data()))

    assert exported["extensions"][0] == {
        "number": "101", "name": "Анна Смирнова", "password": "s3cret-anna"}


def test_export_of_an_empty_skill_list_leaves_it_out() -> None:
    exported = config_to_dict(parse_config(with_keys(skills=[])))

    assert "skills" not in exported["extensions"][1]


def test_export_writes_them_when_set() -> None:
    exported = config_to_dict(parse_config(with_keys(mobile="89161234567", skills=["lang:en"])))

    assert exported["extensions"][1] == {
        "number": "102", "name": "Борис Иванов", "password": "s3cret-boris",
        "mobile": "89161234567", "skills": ["lang:en"]}


def test_yaml_round_trip_is_exact() -> None:
    config = parse_config(with_keys(mobile="+79161234567", skills=["lang:en", "lang:de"]))

    assert load_yaml(dump_yaml(config)) == config


def test_database_round_trip_is_exact(store: Store) -> None:
    config = parse_config(with_keys(mobile="+79161234567", skills=["lang:en", "lang:de"]))

    store.replace_config(config)

    assert store.load_config() == config
    row = next(store.db.query("SELECT extra FROM extensions WHERE number = '102'"))
    assert yaml.safe_load(row["extra"]) == {"mobile": "+79161234567",
                                           "skills": ["lang:en", "lang:de"]}


def test_employees_without_them_store_an_empty_extra(store: Store) -> None:
    store.replace_config(load_yaml(VALID_YAML))

    extras = {row["extra"] for row in store.db.query("SELECT extra FROM extensions")}
    assert extras == {"{}"}


def test_removing_them_is_stored(store: Store) -> None:
    store.replace_config(parse_config(with_keys(mobile="+79161234567", skills=["lang:en"])))

    store.replace_config(load_yaml(VALID_YAML))

    assert store.load_config() == load_yaml(VALID_YAML)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("12", 'must be an optional "+" and 3 to 15 digits, got "12"'),
        ("+7916-123", 'must be an optional "+" and 3 to 15 digits, got "+7916-123"'),
        ("1234567890123456", 'must be an optional "+" and 3 to 15 digits'),
        ("", "must not be empty"),
        (79161234567, "must be written in quotes"),
        (["79161234567"], "must be text, got a list"),
    ],
)
def test_a_bad_mobile_is_refused_at_its_key(value: object, message: str) -> None:
    error = error_after(lambda d: d["extensions"][2].update(mobile=value))

    assert error.path == "extensions[2].mobile"
    assert message in error.message


def test_skills_must_be_a_list() -> None:
    error = error_after(lambda d: d["extensions"][0].update(skills="lang:en"))

    assert (error.path, error.message) == ("extensions[0].skills", "must be a list")


@pytest.mark.parametrize(
    ("skill", "message"),
    [
        ("english", 'must be key:value without spaces, e.g. "lang:en", got "english"'),
        ("lang: en", 'got "lang: en"'),
        ("lang:en:us", 'got "lang:en:us"'),
        (":en", 'got ":en"'),
        ("lang:", 'got "lang:"'),
        ("lang:en,de", 'got "lang:en,de"'),
        (7, "must be text, got number 7"),
        ("", "must not be empty"),
    ],
)
def test_a_bad_skill_is_refused_at_its_index(skill: object, message: str) -> None:
    error = error_after(lambda d: d["extensions"][1].update(skills=["lang:ru", skill]))

    assert error.path == "extensions[1].skills[1]"
    assert message in error.message


def test_a_skill_listed_twice_is_refused() -> None:
    error = error_after(lambda d: d["extensions"][0].update(skills=["lang:en", "lang:en"]))

    assert error.path == "extensions[0].skills[1]"
    assert error.message == 'duplicate skill "lang:en" (already at extensions[0].skills[0])'


def test_other_unknown_keys_are_still_refused() -> None:
    error = error_after(lambda d: d["extensions"][0].update(email="a@example.ru"))

    assert error.path == "extensions[0].email"
    assert "allowed: number, name, password, mobile, skills" in error.message


# --- migration 4 ---------------------------------------------------------------------------------


def make_v3_database(path: Path) -> None:
    """A database left by firmware with migrations 1 to 3, holding the example config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(path)
    db.enable_wal()
    apply_migrations(db, MIGRATIONS[:3])
    db.close()
    write_config_as_older_firmware(path, VALID_YAML)


def test_a_version_3_database_gains_the_column_and_keeps_its_config(db_path: Path) -> None:
    make_v3_database(db_path)
    old = Database(db_path)
    assert "extra" not in old.table("extensions").columns_dict
    old.close()

    with Store.open(db_path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 10
        assert "extra" in store.db.table("extensions").columns_dict
        assert store.load_config() == load_yaml(VALID_YAML)


def test_an_upgraded_database_stores_mobile_and_skills(db_path: Path) -> None:
    make_v3_database(db_path)
    config = parse_config(with_keys(mobile="+79161234567", skills=["lang:en"]))

    with Store.open(db_path) as store:
        store.replace_config(config)
    with Store.open(db_path) as store:
        assert store.load_config() == config


# --- the skills strategy -------------------------------------------------------------------------


def skills_of(config_data: Data) -> dict[str, frozenset[str]]:
    gateway = Network(config_data).gateway
    department = gateway.departments["200"]
    return {m.extension: m.skills for m in gateway.distribution.snapshot(department, 0.0).members}


def test_a_member_without_own_skills_has_the_employees_skills() -> None:
    data = valid_config_data()
    data["extensions"][0]["skills"] = ["lang:en"]

    assert skills_of(data)["101"] == frozenset({"lang:en"})


def test_the_members_own_skills_in_the_department_come_first() -> None:
    data = valid_config_data()
    data["extensions"][1]["skills"] = ["lang:en"]
    data["departments"][0]["members"][1]["skills"] = ["lang:de"]

    assert skills_of(data)["102"] == frozenset({"lang:de"})


def test_an_empty_member_skill_list_overrides_the_employees() -> None:
    data = valid_config_data()
    data["extensions"][1]["skills"] = ["lang:en"]
    data["departments"][0]["members"][1]["skills"] = []

    assert skills_of(data)["102"] == frozenset()
