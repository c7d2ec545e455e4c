"""Fixtures for the store tests: a fresh database per test and a valid config to break."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from firmware.store import Store, load_yaml

# The tables a configuration is stored in, parents first.
CONFIG_ROW_TABLES = (
    "extensions", "departments", "department_members", "trunks", "numbers", "settings",
)

VALID_YAML = """\
extensions:
  - number: "101"
    name: Анна Смирнова
    password: s3cret-anna
  - number: "102"
    name: Борис Иванов
    password: s3cret-boris
  - number: "103"
    name: Вера Кузнецова
    password: s3cret-vera
departments:
  - number: "200"
    name: Отдел продаж
    strategy: ring_all
    ring_timeout_s: 20
    members:
      - "101"
      - extension: "102"
        ring_time_s: 15
        rank: 2
  - number: "300"
    name: Бухгалтерия
    strategy: in_order
    ring_timeout_s: 30
    step_delay_s: 5
    members: ["103", "101"]
trunks:
  - name: provider
    host: sip.example.ru
    username: "74951234567"
    password: trunk-secret
    channels: 4
  - name: backup
    host: 203.0.113.7
    port: 5080
    transport: tcp
    register: false
    channels: 3
    from_domain: example.ru
numbers:
  - number: "+74951234567"
    trunk: provider
    channels: 4
    destination: "200"
  - number: "84957654321"
    trunk: backup
    channels: 3
    destination: "103"
security:
  rate_limit_requests: 20
  ban_s: 600
sip:
  realm: office
"""


def valid_config_data() -> dict[str, Any]:
    """A fresh, mutable copy of a config that passes validation, for tests to break."""
    data: dict[str, Any] = yaml.safe_load(VALID_YAML)
    return data


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "linebox.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    opened = Store.open(db_path)
    yield opened
    opened.close()


def write_config_as_older_firmware(path: Path, yaml_text: str) -> None:
    """Store `yaml_text` in the database at `path`, whose schema is an older version, the way
    the firmware of that version wrote it: today's store writes it into a scratch database,
    and only the columns the older tables have are copied over."""
    scratch = path.with_name(f"{path.stem}-scratch.db")
    with Store.open(scratch) as store:
        store.replace_config(load_yaml(yaml_text))
    conn = sqlite3.connect(path)
    try:
        conn.execute("ATTACH DATABASE ? AS scratch", (str(scratch),))
        for table in CONFIG_ROW_TABLES:
            columns = ", ".join(
                row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")
            )
            conn.execute(
                f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM scratch.{table}"
            )
        conn.commit()
        conn.execute("DETACH DATABASE scratch")
    finally:
        conn.close()
