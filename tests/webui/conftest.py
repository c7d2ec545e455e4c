"""Web UI tests with the Flask test client over a temporary database (flaskr's fixtures)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware.store import Store, config_to_dict, load_yaml, parse_config
from tests.e2e.linebox import LineboxProcess, base_config, running_linebox
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

Form = dict[str, Any]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "linebox.db"


def app_over(db: Path) -> Flask:
    """An app over the database at `db` as it is, with the admin password set."""
    with Store.open(db) as store:
        store.put_setting(ADMIN_PASSWORD_SETTING, hash_password(ADMIN_PASSWORD))
    return create_app({"DB": str(db), "TESTING": True, "SECRET_KEY": "test"})


@pytest.fixture
def app(db_path: Path) -> Flask:
    """An app over a store holding a small office, with the admin password set."""
    with Store.open(db_path) as store:
        store.replace_config(load_yaml(OFFICE_YAML))
    return app_over(db_path)


@pytest.fixture
def fresh_app(tmp_path: Path) -> Flask:
    """An app over an empty database: the first run."""
    return create_app({"DB": str(tmp_path / "fresh.db"), "TESTING": True, "SECRET_KEY": "t"})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def setup_code_of(app: Flask) -> str:
    """The first-run setup code, read from the box's store as `linebox status` reads it."""
    with Store.open(app.config["DB"]) as store:
        code = store.setup_code()
    assert code is not None, "no setup code: an administrator exists"
    return code


def finish_first_step(client: FlaskClient, app: Flask,
                      password: str = "long enough") -> FlaskClient:
    """The first-run wizard's step 1 as the box's owner does it: setup code and password."""
    response = post(client, "/setup", {"code": setup_code_of(app), "password": password,
                                       "confirm": password})
    assert response.headers["Location"] == "/setup/provider", response.get_data(as_text=True)
    return client


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


def log_in_as_admin(client: FlaskClient) -> FlaskClient:
    """Log `client` in as the admin, the UI in English (so tests read the messages as written)."""
    response = post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    post(client, "/language/en", {"back": "/"}, form_page="/monitor")
    return client


@pytest.fixture
def admin(client: FlaskClient) -> FlaskClient:
    """A client logged in as the admin (in English, so tests read the messages as written)."""
    return log_in_as_admin(client)


def admin_of(db: Path) -> FlaskClient:
    """A logged-in admin (UI in English) of a web UI over the database at `db`, such as a
    running daemon's."""
    return log_in_as_admin(app_over(db).test_client())


@pytest.fixture
def box(tmp_path: Path) -> Iterator[LineboxProcess]:
    """A running Linebox daemon with the end-to-end tests' base configuration."""
    with running_linebox(tmp_path / "box", base_config()) as linebox:
        yield linebox


def page(client: FlaskClient, path: str) -> str:
    """The page at `path`, which must open (200)."""
    response = client.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


def store_config(app: Flask) -> Any:
    store = Store.open(app.config["DB"])
    try:
        return store.load_config()
    finally:
        store.close()


def put_config(app: Flask, change: Callable[[dict[str, Any]], Any]) -> None:
    """Change the stored configuration directly (as an import would)."""
    store = Store.open(app.config["DB"])
    try:
        data = config_to_dict(store.load_config())
        change(data)
        store.replace_config(parse_config(data))
    finally:
        store.close()


def with_config(app: Flask, extra_yaml: str) -> None:
    """Store the small office with `extra_yaml` added to it."""
    store = Store.open(app.config["DB"])
    try:
        store.replace_config(load_yaml(OFFICE_YAML + extra_yaml))
    finally:
        store.close()


class _FormReader(HTMLParser):
    """The fields a browser would submit from the form with id `form_id`, as first shown."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.fields: dict[str, list[str]] = {}
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = attr.get("id") == self.form_id
        if not self.inside:
            return
        name = attr.get("name")
        if tag == "input" and name:
            kind = attr.get("type", "text")
            if kind == "checkbox":
                if "checked" in attr:
                    self.fields.setdefault(name, []).append(attr.get("value") or "on")
            elif kind != "submit":
                self.fields.setdefault(name, []).append(attr.get("value", ""))
        elif tag == "select" and name:
            self._select, self._options = name, []
        elif tag == "option" and self._select is not None:
            self._options.append((attr.get("value", ""), "selected" in attr))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select is not None:
            chosen = [value for value, selected in self._options if selected]
            self.fields[self._select] = chosen[:1] or [self._options[0][0]]
            self._select = None


def form_fields(html: str, form_id: str) -> Form:
    """The form with id `form_id` in `html` as a browser would submit it unchanged (without the
    CSRF token)."""
    reader = _FormReader(form_id)
    reader.feed(html)
    fields: Form = {name: values if len(values) > 1 else values[0]
                    for name, values in reader.fields.items()}
    fields.pop("csrf_token", None)
    return fields


def form_of(client: FlaskClient, path: str, form_id: str) -> Form:
    """The form on `path` as a browser would submit it unchanged (without the CSRF token)."""
    return form_fields(client.get(path).get_data(as_text=True), form_id)
