"""The live monitor: each employee's light derived from the daemon's status, the page and its
JSON poll rendered from a status, the notice when the daemon is not running, and the monitor
following a real daemon and a real call without a reload."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware.store import Store
from tests.e2e.linebox import LineboxProcess
from tests.webui.conftest import admin_of, post
from webui import monitor
from webui.monitor import Activity, Light, activities, clock, light

DID = "74951234567"


def agent(**fields: Any) -> dict[str, Any]:
    """An agent of the daemon's status: registered, On line, idle, unless `fields` say."""
    return {"extension": "101", "name": "Мария", "status": "on_line", "reason": "",
            "since_s": 600.0, "registered": True, "on_call": False, "wrap_up_s": 0,
            "call_ended_s": None} | fields


def call(**fields: Any) -> dict[str, Any]:
    """A call of the daemon's status: an inbound call ringing nobody yet, unless `fields` say."""
    return {"id": "c1", "state": "ringing", "direction": "inbound", "caller": "+79161234567",
            "dialed": DID, "department": "200", "answered_by": None, "duration_s": 9.0,
            "answered_s": None, "ringing": [], "ringing_s": {}} | fields


# --- the light of one employee (pure) -----------------------------------------------------------


def test_an_idle_registered_agent_on_line_is_free_since_the_status_was_set() -> None:
    assert light(agent()) == Light("free", 600.0)


def test_an_agent_is_free_since_the_last_call_ended_when_that_is_later() -> None:
    assert light(agent(call_ended_s=75.0)) == Light("free", 75.0)
    assert light(agent(since_s=30.0, call_ended_s=75.0)) == Light("free", 30.0)


def test_an_agent_whose_phone_is_not_registered_is_offline_since_an_unknown_time() -> None:
    assert light(agent(registered=False)) == Light("offline", None)


def test_a_logged_out_agent_is_offline_since_logging_out() -> None:
    assert light(agent(status="logged_out", since_s=42.0)) == Light("offline", 42.0)


@pytest.mark.parametrize("status", ["break", "dnd", "outbound"])
def test_break_dnd_and_outbound_show_as_set_with_their_since(status: str) -> None:
    assert light(agent(status=status, since_s=120.0)) == Light(status, 120.0)


def test_an_unregistered_agent_on_break_is_offline() -> None:
    assert light(agent(status="break", registered=False)).state == "offline"


def test_wrap_up_after_an_answered_call_counts_from_the_calls_end() -> None:
    assert light(agent(wrap_up_s=20.0, call_ended_s=10.0)) == Light("wrap_up", 10.0)


def test_wrap_up_does_not_hide_a_break() -> None:
    assert light(agent(status="break", wrap_up_s=20.0, since_s=5.0)) == Light("break", 5.0)


def test_an_agent_who_answered_a_call_is_talking_since_the_answer() -> None:
    doing = activities([call(state="answered", answered_by="101", answered_s=33.0)])
    assert doing["101"] == Activity("talking", 33.0, "+79161234567")
    assert light(agent(on_call=True), doing["101"]) == Light("talking", 33.0)


def test_an_agent_rung_by_a_call_is_ringing_for_as_long_as_it_rang_them() -> None:
    doing = activities([call(ringing=["101", "102"], ringing_s={"101": 7.0, "102": 2.0})])
    assert light(agent(), doing["101"]) == Light("ringing", 7.0)
    assert doing["102"] == Activity("ringing", 2.0, "+79161234567")


def test_ringing_wins_over_the_agents_status_and_registration() -> None:
    doing = activities([call(ringing=["101"], ringing_s={"101": 1.0})])
    assert light(agent(status="dnd", registered=False), doing["101"]).state == "ringing"


def test_an_agent_talking_on_one_call_and_rung_by_another_is_talking() -> None:
    doing = activities([
        call(id="a", ringing=["101"], ringing_s={"101": 3.0}),
        call(id="b", state="answered", answered_by="101", answered_s=50.0),
    ])
    assert light(agent(on_call=True), doing["101"]) == Light("talking", 50.0)


def test_an_agent_placing_a_call_is_talking_with_the_number_dialled() -> None:
    doing = activities([call(direction="outbound", caller="101", dialed="84951112233",
                             state="ringing", duration_s=4.0)])
    assert doing["101"] == Activity("talking", 4.0, "84951112233")
    assert light(agent(on_call=True), doing["101"]).state == "talking"


def test_an_internal_call_makes_both_colleagues_talk() -> None:
    doing = activities([call(direction="internal", caller="101", dialed="102",
                             state="answered", answered_by="102", answered_s=12.0,
                             duration_s=15.0)])
    assert doing["101"] == Activity("talking", 15.0, "102")
    assert doing["102"] == Activity("talking", 12.0, "101")


def test_on_call_without_a_listed_call_is_talking_since_an_unknown_time() -> None:
    assert light(agent(on_call=True)) == Light("talking", None)


def test_a_status_without_the_newer_fields_still_gives_lights() -> None:
    old = {"extension": "101", "name": "Мария", "status": "on_line", "registered": True,
           "on_call": False}
    assert light(old) == Light("free", None)
    doing = activities([{"answered_by": "101", "caller": "x", "duration_s": 8}])
    assert light(old | {"on_call": True}, doing["101"]) == Light("talking", 8.0)


def test_durations_read_as_minutes_and_seconds_then_hours() -> None:
    assert [clock(s) for s in (None, 0, 7.9, 65, 3600, 3725)] == [
        "—", "0:00", "0:07", "1:05", "1:00:00", "1:02:05"]


# --- the page and the poll, rendered from a status ---------------------------------------------


def office_status() -> dict[str, Any]:
    """The small office of conftest.OFFICE_YAML at a busy moment."""
    return {
        "agents": [
            agent(extension="101", on_call=True),
            agent(extension="102", name="Иван", status="break", reason="обед", since_s=300.0),
            agent(extension="103", name="Ольга", registered=False),
        ],
        "calls": [call(state="answered", answered_by="101", answered_s=42.0, duration_s=50.0)],
        "queues": [{"department": "200", "waiting": [
            {"position": 1, "caller": "+79035550001", "wait_s": 12.3, "vip": True,
             "callback": False},
            {"position": 2, "caller": "+79035550002", "wait_s": 61.0, "vip": False,
             "callback": True},
        ]}],
        "channels": [{"key": f"number:{DID}", "in_use": 3, "capacity": 3},
                     {"key": "trunk:provider", "in_use": 3, "capacity": 10}],
        "trunks": [{"name": "provider", "state": "registered"}],
    }


def employee_row(html: str, extension: str) -> str:
    match = re.search(rf'<tr data-extension="{extension}" data-state="(\w+)">(.*?)</tr>', html,
                      re.S)
    assert match, f"no row for {extension}"
    return f"{match.group(1)}|{' '.join(re.sub(r'<[^>]+>', ' ', match.group(2)).split())}"


def test_the_page_shows_every_employee_queue_channel_and_call(app: Flask) -> None:
    with app.test_request_context("/monitor"):
        html = monitor.render_page(office_status())
    assert employee_row(html, "101") == "talking|Разговаривает 101 Мария 0:42 +79161234567"
    assert employee_row(html, "102") == "break|Перерыв 102 Иван 5:00 обед"
    assert employee_row(html, "103") == "offline|Не в сети 103 Ольга —"
    assert 'data-count="talking"' in html and "<b>1</b>" in html
    queue = html[html.index('data-queue="200"'):]
    assert "200 — Отдел продаж, в очереди: 2" in queue
    assert "+79035550001" in queue and "VIP" in queue and "0:12" in queue
    assert "Просит перезвонить" in queue and "1:01" in queue
    assert f'<tr data-channel="number:{DID}" class="ops-full">' in html
    assert "3 / 10" in html and "Зарегистрирован" in html
    calls = html[html.index('data-call="c1"'):]
    assert "Входящий" in calls and "200 — Отдел продаж" in calls and "101 Мария" in calls


def test_the_page_has_no_inline_script_and_polls_the_data_endpoint(app: Flask) -> None:
    with app.test_request_context("/monitor"):
        html = monitor.render_page(office_status())
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/operations.js">']
    assert 'data-poll-url="/monitor/data"' in html
    assert ' style="' not in html


def test_the_poll_carries_the_board_as_data_and_as_html(app: Flask) -> None:
    with app.test_request_context("/monitor/data"):
        response, code = monitor.render_data(office_status())
    data = response.get_json()
    assert code == 200 and data["ok"] and data["running"]
    assert [(e["extension"], e["state"], e["since_s"]) for e in data["employees"]] == [
        ("101", "talking", 42.0), ("102", "break", 300.0), ("103", "offline", None)]
    assert data["counts"]["talking"] == 1 and data["counts"]["free"] == 0
    assert data["queues"][0]["waiting"][1]["callback"] is True
    assert data["channels"][0] == {"kind": "number", "name": DID, "in_use": 3, "capacity": 3,
                                   "trunk_state": ""}
    assert '<tr data-extension="102" data-state="break">' in data["html"]
    assert "<html" not in data["html"]  # only the part the page replaces


def test_an_empty_office_says_so(app: Flask) -> None:
    with app.test_request_context("/monitor"):
        html = monitor.render_page({"agents": [], "calls": [], "queues": [], "channels": []})
    for text in ("Сотрудников пока нет.", "Никто не ждёт.", "Сейчас нет звонков."):
        assert text in html


# --- without a daemon -------------------------------------------------------------------------


def test_without_the_daemon_the_page_says_the_service_is_not_running(
    admin: FlaskClient,
) -> None:
    response = admin.get("/monitor")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert 'id="daemon-down"' in text
    assert "The Linebox service is not running" in text
    assert "data-extension" not in text


def test_without_the_daemon_the_poll_says_so_with_503(admin: FlaskClient) -> None:
    response = admin.get("/monitor/data")
    assert response.status_code == 503
    data = response.get_json()
    assert data["ok"] is False and data["running"] is False
    assert "The Linebox service is not running" in data["html"]
    assert response.headers["Cache-Control"] == "no-store"


def test_the_monitor_is_for_the_admin_only(client: FlaskClient) -> None:
    assert client.get("/monitor/data").headers["Location"].startswith("/login")
    post(client, "/login", {"user": "101", "password": "pw-101-secret"})
    assert client.get("/monitor").status_code == 403
    assert client.get("/monitor/data").status_code == 403


# --- with a real daemon ----------------------------------------------------------------------


def poll_until(client: FlaskClient, extension: str, state: str,
               timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        data = client.get("/monitor/data").get_json()
        row = next(e for e in data["employees"] if e["extension"] == extension)
        if row["state"] == state:
            return dict(row)
        seen = row["state"]
        time.sleep(0.1)
    raise AssertionError(f"{extension} never became {state} (last {seen})")


def test_the_monitor_shows_the_running_daemons_agents_and_channels(box: LineboxProcess) -> None:
    client = admin_of(box.db)
    box.control({"command": "agent", "extension": "103", "status": "logged_out",
                 "reason": "", "source": "cli"})
    page = client.get("/monitor").get_data(as_text=True)
    assert employee_row(page, "101").startswith("offline|Offline 101 Agent 101 —")
    assert employee_row(page, "103").startswith("offline|Offline 103 Agent 103 0:0")
    assert f'data-channel="number:{DID}"' in page and "0 / 3" in page
    assert 'data-channel="trunk:provider"' in page and "Without registration" in page
    data = client.get("/monitor/data").get_json()
    assert data["running"] and len(data["employees"]) == 9
    assert data["counts"]["offline"] == 9


def test_the_monitor_follows_a_real_call_from_ringing_to_talking(
    box: LineboxProcess, tmp_path: Path,
) -> None:
    from tests.e2e.test_calls import provider_call, start_agent

    client = admin_of(box.db)
    trace = tmp_path / "sipp"
    first = start_agent(box, "101", trace, variables={"answer_delay_ms": 3000})
    poll_until(client, "101", "free")
    caller = provider_call(box, trace, service=DID, variables={"hold_ms": 3000}).start()
    try:
        ringing = poll_until(client, "101", "ringing")
        assert ringing["party"].endswith("79990000001")
        talking = poll_until(client, "101", "talking", timeout_s=15.0)
        assert talking["since_s"] is not None and talking["since_s"] < 3.0
        page = client.get("/monitor").get_data(as_text=True)
        assert 'data-extension="101" data-state="talking"' in page
        assert "Talking" in page[page.index("ops-calls"):]
    finally:
        assert caller.wait().ok
        assert first.wait().ok
    poll_until(client, "101", "free")


# --- security notices -------------------------------------------------------------------------


def test_the_page_lists_the_refused_external_calls_newest_first(admin: FlaskClient,
                                                                app: Flask) -> None:
    with Store.open(app.config["DB"]) as store:
        store.add_security_event(at=1_767_258_000.0, kind="outbound_not_allowed",
                                 extension="101", number="0088213374455",
                                 detail="international")
        store.add_security_event(at=1_767_258_060.0, kind="outbound_extension_limit",
                                 extension="102", number="89161234567", detail="mobile",
                                 repeated=7)
    html = admin.get("/monitor").get_data(as_text=True)
    rows = re.findall(r'<tr data-extension="(\d+)">(.*?)</tr>',
                      html.split('id="security-notices"')[1], re.S)
    cells = [[re.sub(r"<[^>]+>", "", cell).strip()
              for cell in re.findall(r"<td>(.*?)</td>", row, re.S)] for _, row in rows]
    assert cells == [
        ["01.01.2026 12:01", "102", "89161234567", "Mobile",
         "The employee&#39;s hourly limit of external calls reached "
         "(7 more of the same before it, not listed)"],
        ["01.01.2026 12:00", "101", "0088213374455", "International",
         "Not allowed for this employee"],
    ]


def test_without_refusals_the_notices_say_so_in_russian(client: FlaskClient) -> None:
    post(client, "/login", {"user": "admin", "password": "correct horse battery"})
    html = client.get("/monitor").get_data(as_text=True)
    assert "Предупреждения безопасности" in html
    assert 'id="no-notices">Отклонённых внешних звонков нет.' in html
