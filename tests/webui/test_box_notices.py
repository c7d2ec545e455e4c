"""The box's own notices (issue 16) at the top of the admin's pages until dismissed: a database
recovered from a backup or started empty, calls cut off by a power cut."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from firmware.store import Store
from firmware.store.recovery import NOTICE_CUT_OFF, NOTICE_RESTORED, add_box_notice
from tests.webui.conftest import ADMIN_PASSWORD, page, post


def noticed(app: Flask, notice: dict[str, object]) -> None:
    with Store.open(app.config["DB"]) as store:
        add_box_notice(store, notice, at=1_780_000_000.0)


def test_a_restored_database_is_told_on_every_admin_page(app: Flask,
                                                          admin: FlaskClient) -> None:
    noticed(app, {"kind": NOTICE_RESTORED, "detail": "file is not a database",
                  "backup": "linebox-2026-12-02.db", "moved_to": "/data/linebox.db.broken-1"})
    for path in ("/monitor", "/employees"):
        text = page(admin, path)
        assert 'id="box-notices"' in text
        assert "started from the automatic backup linebox-2026-12-02.db" in text
        assert "/data/linebox.db.broken-1" in text


def test_cut_off_calls_are_told_and_a_dismissed_notice_goes(app: Flask,
                                                            admin: FlaskClient) -> None:
    noticed(app, {"kind": NOTICE_CUT_OFF, "detail": "3"})
    assert "3 calls in progress were recorded as cut off" in page(admin, "/monitor")

    response = post(admin, "/notices/dismiss", {"next": "/monitor"}, form_page="/monitor")

    assert response.status_code == 302 and response.headers["Location"] == "/monitor"
    assert 'id="box-notices"' not in page(admin, "/monitor")


def test_the_notice_is_in_russian_by_default(app: Flask, client: FlaskClient) -> None:
    noticed(app, {"kind": NOTICE_CUT_OFF, "detail": "2"})
    post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    assert "2 идущих звонков записаны как прерванные" in page(client, "/monitor")


def test_no_notice_for_a_logged_out_visitor(app: Flask, client: FlaskClient) -> None:
    noticed(app, {"kind": NOTICE_CUT_OFF, "detail": "2"})
    assert 'id="box-notices"' not in client.get("/login").get_data(as_text=True)


def test_a_call_cut_off_by_a_power_cut_says_so_in_the_call_list_and_on_its_page(
        app: Flask, admin: FlaskClient) -> None:
    from firmware.store.durable import mark_cut_off_calls, record_answered_calls

    call = {"id": "c0ff", "started_at": 1_780_000_000.0, "answered_at": 1_780_000_004.0,
            "direction": "inbound", "source": "trunk:provider", "caller": "79161234567",
            "dialed": "74951234567", "department": "200", "answered_by": "101",
            "outcome": None}
    with Store.open(app.config["DB"]) as store:
        record_answered_calls(store, [(call, [])])
        mark_cut_off_calls(store)
    row = page(admin, "/calls").split('id="call-c0ff"', 1)[1].split("</tr>", 1)[0]
    assert "answered" in row and "(cut off)" in row
    assert "(cut off)" in page(admin, "/calls/c0ff")
