"""The system page's Notifications section (issue 15): the e-mails and SMS given up on, with
their last error, and how many wait to be sent, in English and Russian."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from firmware.store import Store
from firmware.store.outbox import Outbox, Outgoing
from tests.webui.conftest import ADMIN_PASSWORD, post


def outgoing(key: str) -> Outgoing:
    return Outgoing(key=key, kind="missed", channel="email", recipient="boss@office.test",
                    subject="Missed call", body="...")


def fill_outbox(app: Flask) -> None:
    with Store.open(app.config["DB"]) as store:
        outbox = Outbox(store)
        outbox.add([outgoing("a"), outgoing("b")], at=1_767_268_800.0)
        failed, _ = outbox.rows()
        outbox.failed(int(failed["id"]), error="SMTPRecipientsRefused: 550 no such user")


def test_failed_notifications_are_listed_with_their_error(app: Flask,
                                                          admin: FlaskClient) -> None:
    fill_outbox(app)
    html = admin.get("/system").get_data(as_text=True)
    section = html[html.index('id="notifications"'):html.index("Recent log lines")]
    assert "boss@office.test" in section and "550 no such user" in section
    assert "missed (email)" in section
    assert "1 waiting to be sent or retried." in section


def test_the_section_is_in_russian(app: Flask, client: FlaskClient) -> None:
    fill_outbox(app)
    post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    html = client.get("/system").get_data(as_text=True)
    for text in ("Уведомления", "Последняя ошибка", "Ждут отправки или повтора: 1."):
        assert text in html


def test_with_nothing_configured_the_page_says_so(admin: FlaskClient) -> None:
    html = admin.get("/system").get_data(as_text=True)
    assert "No e-mail or SMS notifications are configured" in html
