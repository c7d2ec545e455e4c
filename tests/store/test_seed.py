"""`seed_default` gives a fresh box one department with one extension, exactly once."""

from __future__ import annotations

from pathlib import Path

from firmware.store import Department, Extension, Member, Store, load_yaml, seed_default
from tests.store.conftest import VALID_YAML


def test_seed_creates_sales_department_with_extension_101(store: Store) -> None:
    password = seed_default(store, password_factory=lambda: "first-boot-pw")

    config = store.load_config()
    assert password == "first-boot-pw"
    assert config.extensions == (
        Extension(number="101", name="Сотрудник 101", password="first-boot-pw"),
    )
    assert config.departments == (
        Department(
            number="200",
            name="Отдел продаж",
            strategy="ring_all",
            ring_timeout_s=20,
            members=(Member(extension="101"),),
        ),
    )


def test_seed_returns_none_the_second_time_and_changes_nothing(store: Store) -> None:
    seed_default(store, password_factory=lambda: "first-boot-pw")
    revision = store.config_revision()

    assert seed_default(store, password_factory=lambda: "other-password") is None
    assert store.config_revision() == revision
    assert store.load_config().extensions[0].password == "first-boot-pw"


def test_seed_leaves_a_configured_box_alone(store: Store) -> None:
    store.replace_config(load_yaml(VALID_YAML))

    assert seed_default(store) is None
    assert store.load_config() == load_yaml(VALID_YAML)


def test_default_seed_password_is_12_random_characters(store: Store, tmp_path: Path) -> None:
    password = seed_default(store)
    with Store.open(tmp_path / "other.db") as other:
        other_password = seed_default(other)

    assert password is not None and len(password) == 12
    assert other_password != password
