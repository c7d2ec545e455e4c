"""Numbers and provider page: provider accounts (trunks) with their live registration state,
inbound numbers with channel capacity, destination, schedule and webhook; every validation
error shown next to its field with nothing saved."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware.store import Store, load_yaml
from tests.e2e.linebox import base_config, running_linebox
from tests.e2e.sipp import free_port
from tests.webui.conftest import (
    ADMIN_PASSWORD,
    OFFICE_YAML,
    admin_of,
    page,
    post,
    store_config,
    with_config,
)
from webui import configedit

TRUNK_FORM = {"name": "reserve", "host": "203.0.113.7", "port": "5070", "transport": "tcp",
              "username": "", "password": "", "expires_s": "3600", "channels": "3",
              "from_domain": ""}
NUMBER_FORM = {"number": "+74957654321", "trunk": "provider", "channels": "4",
               "destination": "101", "schedule": "", "webhook": "", "webhook_timeout_s": ""}
PROVIDER_IP = "127.0.0.2"
RESPONDER_TIMEOUT_S = 10.0


def with_schedule(app: Flask) -> None:
    """Give the office a schedule named "office", for the number's schedule select."""
    with_config(app, """\
schedules:
  - {name: office, hours: {mon: ["09:00-18:00"]}}
""")


# --------------------------------------------------------------------------- the page


def test_page_lists_trunks_and_numbers_and_says_the_daemon_is_not_running(
    admin: FlaskClient,
) -> None:
    text = page(admin, "/numbers")
    assert 'id="trunk-provider"' in text and "127.0.0.2:5060" in text
    assert 'id="number-74951234567"' in text and "200 — department Отдел продаж" in text
    assert 'id="daemon-down"' in text and "The gateway daemon is not running" in text
    assert "Unavailable: the daemon is not running" in text
    assert "provider-pw" not in text  # the provider password is never shown


def test_page_is_in_russian_by_default(client: FlaskClient) -> None:
    post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    text = page(client, "/numbers")
    assert "Учётные записи провайдера" in text and "Входящие номера" in text
    assert "Недоступно: демон не запущен" in text


def test_an_agent_may_not_open_the_page(client: FlaskClient) -> None:
    post(client, "/login", {"user": "101", "password": "pw-101-secret"})
    assert client.get("/numbers").status_code == 403
    assert client.get("/numbers/new").status_code == 403


def test_unknown_trunk_or_number_is_not_found(admin: FlaskClient) -> None:
    assert admin.get("/numbers/trunks/nope/edit").status_code == 404
    assert admin.get("/numbers/70000000000/edit").status_code == 404
    assert post(admin, "/numbers/70000000000/delete", form_page="/numbers").status_code == 404
    assert post(admin, "/numbers/trunks/nope/delete", form_page="/numbers").status_code == 404


# --------------------------------------------------------------------------- trunks


def test_add_a_trunk(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/numbers/trunks/new", {**TRUNK_FORM, "from_domain": "example.ru"})
    assert response.status_code == 302 and response.headers["Location"] == "/numbers#trunks"
    trunk = store_config(app).trunks[1]
    assert (trunk.name, trunk.host, trunk.port, trunk.transport, trunk.register,
            trunk.expires_s, trunk.channels, trunk.from_domain) == (
        "reserve", "203.0.113.7", 5070, "tcp", False, 3600, 3, "example.ru")
    assert "Provider account reserve saved." in page(admin, "/numbers")


def test_trunk_channels_out_of_range_are_refused_and_nothing_saved(
    admin: FlaskClient, app: Flask,
) -> None:
    for channels in ("2", "101"):
        response = post(admin, "/numbers/trunks/new", {**TRUNK_FORM, "channels": channels})
        assert response.status_code == 400
        text = response.get_data(as_text=True)
        assert '<p class="error" id="e-channels">Enter a whole number from 3 to 100.</p>' in text
        assert [t.name for t in store_config(app).trunks] == ["provider"]


def test_every_trunk_field_is_checked(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/numbers/trunks/new", {
        "name": "bad name!", "host": "sip example", "port": "0", "transport": "sctp",
        "username": "", "register": "on", "expires_s": "59", "channels": "x",
        "from_domain": "a b"})
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    expected = {
        "name": "1 to 32 Latin letters, digits, -, _ or .",
        "host": "Enter the provider&#39;s host name or IP address, without spaces.",
        "port": "Enter a whole number from 1 to 65535.",
        "transport": "Choose UDP or TCP.",
        "username": "The user name is needed to register with the provider.",
        "expires_s": "Enter a whole number from 60 to 86400.",
        "channels": "Enter a whole number from 3 to 100.",
        "from_domain": "A domain name without spaces, or leave it empty.",
    }
    for field, message in expected.items():
        assert f'id="e-{field}">{message}' in text, field
    assert len(store_config(app).trunks) == 1


def test_a_trunk_name_is_unique(admin: FlaskClient) -> None:
    response = post(admin, "/numbers/trunks/new", {**TRUNK_FORM, "name": "provider"})
    assert response.status_code == 400
    assert 'id="e-name">Another provider account already has this name.' in \
        response.get_data(as_text=True)


def test_an_empty_password_keeps_the_current_one(admin: FlaskClient, app: Flask) -> None:
    form = page(admin, "/numbers/trunks/provider/edit")
    assert "leave empty to keep the current one" in form and "provider-pw" not in form
    edit = {**TRUNK_FORM, "name": "provider", "host": "sip.example.ru", "username": "box",
            "register": "on"}
    response = post(admin, "/numbers/trunks/provider/edit", edit)
    assert response.status_code == 302
    trunk = store_config(app).trunks[0]
    assert (trunk.host, trunk.register, trunk.password) == ("sip.example.ru", True,
                                                            "provider-pw")
    post(admin, "/numbers/trunks/provider/edit", {**edit, "password": "new-secret"})
    assert store_config(app).trunks[0].password == "new-secret"


def test_renaming_a_trunk_keeps_its_numbers(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/numbers/trunks/provider/edit",
                    {**TRUNK_FORM, "name": "main", "host": "127.0.0.2"})
    assert response.status_code == 302
    config = store_config(app)
    assert [t.name for t in config.trunks] == ["main"]
    assert [n.trunk for n in config.numbers] == ["main"]


def test_a_trunk_in_use_is_not_deleted(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/numbers/trunks/provider/delete", form_page="/numbers")
    assert response.status_code == 400
    assert ('id="e-form">Provider account provider is used by the numbers 74951234567: move '
            "or delete them first.") in response.get_data(as_text=True)
    assert [t.name for t in store_config(app).trunks] == ["provider"]


def test_delete_a_trunk(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/numbers/trunks/new", TRUNK_FORM)
    response = post(admin, "/numbers/trunks/reserve/delete", form_page="/numbers")
    assert response.status_code == 302
    assert [t.name for t in store_config(app).trunks] == ["provider"]


# --------------------------------------------------------------------------- numbers


def test_add_a_number_with_schedule_and_webhook(admin: FlaskClient, app: Flask) -> None:
    with_schedule(app)
    form = page(admin, "/numbers/new")
    assert '<option value="200" >200 — department Отдел продаж</option>' in form
    assert '<option value="office" >office</option>' in form
    response = post(admin, "/numbers/new", {
        **NUMBER_FORM, "schedule": "office", "webhook": "https://crm.example.ru/route",
        "webhook_timeout_s": "1,5"})
    assert response.status_code == 302 and response.headers["Location"] == "/numbers#numbers"
    number = store_config(app).numbers[1]
    assert (number.number, number.trunk, number.channels, number.destination, number.schedule,
            number.webhook, number.webhook_timeout_s) == (
        "+74957654321", "provider", 4, "101", "office", "https://crm.example.ru/route", 1.5)
    text = page(admin, "/numbers")
    assert "Number +74957654321 saved." in text and "https://crm.example.ru/route" in text
    assert 'href="/numbers/+74957654321/edit"' in text
    form = page(admin, "/numbers/+74957654321/edit")
    assert 'value="+74957654321"' in form and 'value="1.5"' in form


def test_number_channels_out_of_range_are_refused_and_nothing_saved(
    admin: FlaskClient, app: Flask,
) -> None:
    for channels in ("2", "101"):
        response = post(admin, "/numbers/new", {**NUMBER_FORM, "channels": channels})
        assert response.status_code == 400
        text = response.get_data(as_text=True)
        assert '<p class="error" id="e-channels">Enter a whole number from 3 to 100.</p>' in text
        assert f'name="channels" type="text" value="{channels}"' in text  # kept for fixing
        assert [n.number for n in store_config(app).numbers] == ["74951234567"]
    for channels in ("2", "101"):  # editing an existing number too
        response = post(admin, "/numbers/74951234567/edit",
                        {**NUMBER_FORM, "number": "74951234567", "channels": channels})
        assert response.status_code == 400
        assert 'id="e-channels"' in response.get_data(as_text=True)
        assert store_config(app).numbers[0].channels == 3


def test_an_unknown_destination_is_refused(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/numbers/new", {**NUMBER_FORM, "destination": "999"})
    assert response.status_code == 400
    assert ('id="e-destination">Unknown destination &#34;999&#34;: choose an extension or a '
            "department.") in response.get_data(as_text=True)
    response = post(admin, "/numbers/new", {**NUMBER_FORM, "destination": ""})
    assert 'id="e-destination">Choose where the calls go' in response.get_data(as_text=True)
    assert len(store_config(app).numbers) == 1


def test_every_number_field_is_checked(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/numbers/new", {
        "number": "12", "trunk": "nope", "channels": "", "destination": "101",
        "schedule": "night", "webhook": "ftp://x", "webhook_timeout_s": "11"})
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    expected = {
        "number": "3 to 15 digits, optionally starting with +, e.g. 74951234567.",
        "trunk": "Choose a provider account from the list.",
        "channels": "Enter a whole number from 3 to 100.",
        "schedule": "Choose a schedule from the list.",
        "webhook": "Enter an address starting with http:// or https://, without spaces.",
        "webhook_timeout_s": "Enter a number of seconds above 0 and up to 10, e.g. 2 or 1.5.",
    }
    for field, message in expected.items():
        assert f'id="e-{field}">{message}' in text, field
    assert "e-destination" not in text
    response = post(admin, "/numbers/new", {**NUMBER_FORM, "webhook": "http://a",
                                            "webhook_timeout_s": "0"})
    assert 'id="e-webhook_timeout_s"' in response.get_data(as_text=True)
    assert len(store_config(app).numbers) == 1


def test_a_number_is_unique(admin: FlaskClient) -> None:
    response = post(admin, "/numbers/new", {**NUMBER_FORM, "number": "74951234567"})
    assert response.status_code == 400
    assert 'id="e-number">This number is already in the list.' in \
        response.get_data(as_text=True)


def test_edit_and_delete_a_number(admin: FlaskClient, app: Flask) -> None:
    form = page(admin, "/numbers/74951234567/edit")
    assert 'value="74951234567"' in form
    response = post(admin, "/numbers/74951234567/edit", {
        **NUMBER_FORM, "number": "74951234567", "channels": "100", "destination": "200",
        "webhook": "http://127.0.0.1:9/route"})
    assert response.status_code == 302
    number = store_config(app).numbers[0]
    assert (number.channels, number.destination, number.webhook, number.webhook_timeout_s) == (
        100, "200", "http://127.0.0.1:9/route", 2.0)
    # Clearing the webhook drops its timeout too.
    post(admin, "/numbers/74951234567/edit", {**NUMBER_FORM, "number": "74951234567"})
    assert store_config(app).numbers[0].webhook is None
    response = post(admin, "/numbers/74951234567/delete", form_page="/numbers")
    assert response.status_code == 302
    assert store_config(app).numbers == ()
    assert "Number 74951234567 deleted." in page(admin, "/numbers")


def test_a_number_needs_a_trunk_first(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/numbers/74951234567/delete", form_page="/numbers")
    post(admin, "/numbers/trunks/provider/delete", form_page="/numbers")
    text = page(admin, "/numbers")
    assert "Add a provider account first" in text and "/numbers/new" not in text
    response = post(admin, "/numbers/new", NUMBER_FORM, form_page="/numbers")
    assert 'id="e-trunk">Add a provider account first.' in response.get_data(as_text=True)


def test_a_change_saved_meanwhile_elsewhere_is_not_overwritten(
    admin: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_load = configedit.load

    def load_while_someone_else_saves() -> configedit.Draft:
        draft = real_load()
        store = Store.open(app.config["DB"])  # another admin saves after this form loaded
        try:
            store.replace_config(load_yaml(OFFICE_YAML))
        finally:
            store.close()
        return draft

    monkeypatch.setattr(configedit, "load", load_while_someone_else_saves)
    response = post(admin, "/numbers/new", NUMBER_FORM)
    assert response.status_code == 400
    assert ('id="e-form">Not saved: someone else changed the settings at the same time.'
            in response.get_data(as_text=True))
    assert [n.number for n in store_config(app).numbers] == ["74951234567"]


# --------------------------------------------------------------------------- live state


@contextmanager
def refusing_provider(port: int) -> Iterator[None]:
    """A provider on 127.0.0.2 that answers every REGISTER with 403 Forbidden."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((PROVIDER_IP, port))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, source = sock.recvfrom(65536)
            except TimeoutError:
                continue
            lines = data.decode(errors="replace").split("\r\n")
            copied = [line for line in lines if line.split(":", 1)[0].lower() in (
                "via", "from", "to", "call-id", "cseq")]
            reply = "\r\n".join(["SIP/2.0 403 Forbidden", *copied, "Content-Length: 0", "", ""])
            sock.sendto(reply.encode(), source)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(RESPONDER_TIMEOUT_S)
        sock.close()


def test_live_registration_state_and_channels_from_the_running_daemon(tmp_path: Path) -> None:
    port = free_port(PROVIDER_IP)
    config: dict[str, Any] = base_config()
    config["trunks"].append({"name": "refusing", "host": PROVIDER_IP, "port": port,
                             "username": "box", "password": "pw", "register": True,
                             "channels": 5})
    with refusing_provider(port), running_linebox(tmp_path / "linebox", config) as linebox:
        linebox.wait_for(lambda: any(t["state"] == "failed" for t in linebox.status()["trunks"]),
                         5, "the refused registration")
        client = admin_of(linebox.db)
        text = page(client, "/numbers")
    assert 'id="daemon-down"' not in text
    provider = text.split('id="trunk-provider"')[1].split("</tr>")[0]
    assert "state-static" in provider and "No registration" in provider
    assert "the provider sends calls to this box&#39;s address" in provider
    assert "0 / 10" in provider  # the trunk's channels in use / allowed
    refusing = text.split('id="trunk-refusing"')[1].split("</tr>")[0]
    assert "state-failed" in refusing and "Registration failed" in refusing
    assert "the provider answered: 403 Forbidden" in refusing
    number = text.split('id="number-74951234567"')[1].split("</tr>")[0]
    assert '<td class="num channels-in-use">0 / 3</td>' in number
