"""Web UI tests with the Flask test client over a temporary database (flaskr's fixtures)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware.store import Store, load_yaml
from webui import create_app
from webui.security import ADMIN_PASSWORD_SETTING, hash_password

ADMIN_PASSWORD = "correct horse battery"
OFFICE_YAML = """\
extensions:
  - {number: "101", name: "Мария", password: "pw-101-secret"}
  - {number: "102", name: "Иван", password: "pw-102-secret"}
  - {number: "103", name: "Ольга", password: "pw-103-secret"}
departments:
  - {number: "200", name: "Отдел продаж", strategy: ring_all, ring_timeout_s: 20,
     members: ["101", "102"]}
trunks:
  - {name: provider, type: sip, host: 127.0.0.2, port: 5060, username: box,
     password: provider-pw, register: false, channels: 10}
numbers:
  - {number: "74951234567", trunk: provider, channels: 3, destination: "200"}
"""
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "linebox.db"


@pytest.fixture
def app(db_path: Path) -> Iterator[Flask]:
    """An app over a store holding a small office, with the admin password set."""
    store = Store.open(db_path)
    store.replace_config(load_yaml(OFFICE_YAML))
    store.put_setting(ADMIN_PASSWORD_SETTING, hash_password(ADMIN_PASSWORD))
    store.close()
    yield create_app({"DB": str(db_path), "TESTING": True, "SECRET_KEY": "test"})


@pytest.fixture
def fresh_app(tmp_path: Path) -> Flask:
    """An app over an empty database: the first run."""
    return create_app({"DB": str(tmp_path / "fresh.db"), "TESTING": True, "SECRET_KEY": "t"})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_of(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token of the client's session, as a page's form carries it."""
    page = client.get(path)
    match = _CSRF_RE.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, *,
         form_page: str | None = None, **kwargs: Any) -> Any:
    """POST a form the way a browser would: with the CSRF token of the page it came from."""
    token = csrf_of(client, form_page or path)
    return client.post(path, data={**(data or {}), "csrf_token": token}, **kwargs)


@pytest.fixture
def admin(client: FlaskClient) -> FlaskClient:
    """A client logged in as the admin (in English, so tests read the messages as written)."""
    response = post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    post(client, "/language/en", {"back": "/"}, form_page="/monitor")
    return client


def store_config(app: Flask) -> Any:
    store = Store.open(app.config["DB"])
    try:
        return store.load_config()
    finally:
        store.close()
