"""An agent's own page: their light and status from the daemon, changing the status through the
control socket, the form's errors, and what happens without a daemon."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware.routing.model import AGENT_STATUSES
from firmware.store import Store, config_to_dict, parse_config
from tests.e2e.linebox import AGENT_PASSWORDS, LineboxProcess
from tests.webui.conftest import app_over, post, store_config
from webui.agent import MAX_REASON, STATUS_LABELS


@pytest.fixture
def agent(client: FlaskClient) -> FlaskClient:
    """Extension 101 logged in with its phone password, the UI in English."""
    response = post(client, "/login", {"user": "101", "password": "pw-101-secret"})
    assert response.headers["Location"] == "/me"
    post(client, "/language/en", {"back": "/me"}, form_page="/me")
    return client


def agent_statuses(app: Flask) -> dict[str, dict[str, object]]:
    store = Store.open(app.config["DB"])
    try:
        return store.agent_statuses()
    finally:
        store.close()


def test_the_form_offers_the_daemons_five_statuses() -> None:
    assert tuple(STATUS_LABELS) == AGENT_STATUSES


def test_an_admin_visiting_the_agent_page_is_sent_to_the_monitor(admin: FlaskClient) -> None:
    response = admin.get("/me")
    assert response.status_code == 302 and response.headers["Location"] == "/monitor"


def test_the_agent_page_needs_a_login(client: FlaskClient) -> None:
    assert client.get("/me").headers["Location"].startswith("/login")


# --- without a daemon -------------------------------------------------------------------------


def test_without_the_daemon_the_page_says_so_and_shows_no_state(agent: FlaskClient) -> None:
    response = agent.get("/me")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "101 — Мария" in html
    assert ('<p class="error form-error" id="e-form">The Linebox service is not running, so '
            "your status can be neither shown nor changed.") in html
    assert 'id="my-state"' not in html


def test_without_the_daemon_a_change_is_refused_and_nothing_changes(
    agent: FlaskClient, app: Flask,
) -> None:
    response = post(agent, "/me", {"status": "break", "reason": "lunch"})
    assert response.status_code == 503
    assert "The Linebox service is not running" in response.get_data(as_text=True)
    assert agent_statuses(app) == {}


def test_the_message_is_in_russian_by_default(client: FlaskClient) -> None:
    post(client, "/login", {"user": "101", "password": "pw-101-secret"})
    html = client.get("/me").get_data(as_text=True)
    assert "Служба Linebox не запущена" in html and "Мой статус" in html


# --- the form's errors (checked before the daemon is asked) ------------------------------------


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"status": "lunch", "reason": ""}, "status", "Choose a status from the list."),
    ({"reason": "x"}, "status", "Choose a status from the list."),
    ({"status": "break", "reason": "x" * (MAX_REASON + 1)}, "reason",
     f"At most {MAX_REASON} characters."),
    ({"status": "break", "reason": "lunch\x07"}, "reason",
     "Letters, digits, spaces and punctuation only."),
])
def test_a_wrong_form_is_refused_with_the_message_next_to_the_field(
    agent: FlaskClient, app: Flask, data: dict[str, str], field: str, message: str,
) -> None:
    response = post(agent, "/me", data)
    assert response.status_code == 400
    assert f'<p class="error" id="e-{field}">{message}</p>' in response.get_data(as_text=True)
    assert agent_statuses(app) == {}


def test_a_change_without_the_forms_token_is_refused(agent: FlaskClient) -> None:
    assert agent.post("/me", data={"status": "break"}).status_code == 400


# --- with a real daemon ------------------------------------------------------------------------


def test_an_agent_sees_and_changes_their_status_through_the_daemon(
    box: LineboxProcess,
) -> None:
    app = app_over(box.db)
    client = app.test_client()
    post(client, "/login", {"user": "102", "password": AGENT_PASSWORDS["102"]})
    post(client, "/language/en", {"back": "/me"}, form_page="/me")
    html = client.get("/me").get_data(as_text=True)
    assert "102 — Agent 102" in html
    assert 'id="my-state" data-state="offline" data-status="on_line"' in html  # no phone yet
    assert '<option value="on_line" selected>On line</option>' in html

    response = post(client, "/me", {"status": "break", "reason": "обед"})
    assert response.status_code == 302 and response.headers["Location"] == "/me"
    agents = {a["extension"]: a for a in box.status()["agents"]}
    assert (agents["102"]["status"], agents["102"]["reason"]) == ("break", "обед")
    html = client.get("/me").get_data(as_text=True)
    assert "Your status is now: Break." in html
    assert "Status: <b>Break</b> — обед" in html
    assert '<option value="break" selected>Break</option>' in html

    def status_log() -> list[Any]:
        # Written by the daemon's record writer, a moment after the change took effect.
        store = Store.open(box.db)
        try:
            return list(store.agent_status_log("102"))
        finally:
            store.close()

    log = box.wait_for(status_log, what="the status change in the log")
    assert (log[-1]["status"], log[-1]["reason"], log[-1]["source"]) == ("break", "обед", "web")
    assert agents["101"]["status"] == "on_line"  # only their own

    # The administrator removes extension 102 while its agent is still logged in.
    data = config_to_dict(store_config(app))
    data["extensions"] = [e for e in data["extensions"] if e["number"] != "102"]
    for department in data["departments"]:
        department["members"] = [m for m in department["members"]
                                 if (m if isinstance(m, str) else m["extension"]) != "102"]
    store = Store.open(box.db)
    try:
        store.replace_config(parse_config(data))
    finally:
        store.close()
    box.wait_for(lambda: all(a["extension"] != "102" for a in box.status()["agents"]), 10,
                 "the daemon to apply the configuration without 102")
    # Its login was that extension's password: the session ends with the extension.
    response = client.get("/me")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/me"
