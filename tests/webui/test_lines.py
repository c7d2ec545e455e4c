"""The reserve lines page (issue 12): GSM and FXO lines added and edited with the serial device
chosen from those plugged in, a line's page with its state, SMS inbox, send form and balance
button, and the failover and LED pin settings."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware.store import Store, load_yaml
from tests.test_cli_sms import BALANCE_REPLY, ControlServer, drivers
from tests.webui.conftest import (
    ADMIN_PASSWORD,
    OFFICE_YAML,
    log_in_as_admin,
    page,
    post,
    store_config,
)
from webui import create_app
from webui.security import ADMIN_PASSWORD_SETTING, hash_password

BY_ID = "/dev/serial/by-id/usb-HUAWEI_Mobile_E1550-if00-port0"
BY_ID_AUDIO = "/dev/serial/by-id/usb-HUAWEI_Mobile_E1550-if01-port0"
PLUGGED_IN = [BY_ID, BY_ID_AUDIO, "/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/ttyACM0"]
IMEI = "861234567890127"
LINES_YAML = f"""\
  - {{name: mts, type: gsm, port: "{BY_ID}", modem: huawei, imei: "{IMEI}", pin: "5829",
     number: "+79161234567"}}
  - {{name: city, type: fxo, port: /dev/ttyACM0}}
"""


def fake_glob(pattern: str) -> list[str]:
    return [path for path in PLUGGED_IN if fnmatch.fnmatch(path, pattern)]


def make_app(db: Path, yaml_text: str) -> Flask:
    with Store.open(db) as store:
        store.replace_config(load_yaml(yaml_text))
        store.put_setting(ADMIN_PASSWORD_SETTING, hash_password(ADMIN_PASSWORD))
    return create_app({"DB": str(db), "TESTING": True, "SECRET_KEY": "test",
                       "SERIAL_GLOB": fake_glob, "CONTROL_TIMEOUT_S": 5.0})


def with_lines(yaml_text: str = OFFICE_YAML) -> str:
    return yaml_text.replace("numbers:\n", LINES_YAML + "numbers:\n", 1)


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app(tmp_path / "linebox.db", with_lines())


@pytest.fixture
def admin(app: Flask) -> FlaskClient:
    return log_in_as_admin(app.test_client())


@pytest.fixture
def daemon(app: Flask) -> Iterator[ControlServer]:
    status = {"lines": [{"name": "mts", "kind": "gsm", "state": "up",
                         "reason": "registered (home)", "signal_dbm": -71,
                         "operator": "MTS RUS", "registration": "home", "imei": IMEI,
                         "sim": "ready"}]}
    with ControlServer(Path(app.config["DB"]), drivers(), status) as server:
        yield server


def trunk(app: Flask, name: str) -> object:
    return next(t for t in store_config(app).trunks if t.name == name)


# --------------------------------------------------------------------------- the list page


def test_the_list_shows_the_modem_lines_and_says_the_daemon_is_down(admin: FlaskClient
                                                                    ) -> None:
    html = page(admin, "/lines")
    assert 'id="line-mts"' in html and 'id="line-city"' in html
    assert BY_ID in html and "+79161234567" in html
    assert 'id="daemon-down"' in html


def test_the_list_shows_each_lines_state_from_the_daemon(admin: FlaskClient,
                                                         daemon: ControlServer) -> None:
    html = page(admin, "/lines")
    assert "registered (home)" in html and 'id="daemon-down"' not in html


def test_the_navigation_leads_to_the_reserve_lines(admin: FlaskClient) -> None:
    assert 'href="/lines"' in page(admin, "/monitor")


def test_the_numbers_page_lists_sip_accounts_only(admin: FlaskClient) -> None:
    html = page(admin, "/numbers")
    assert 'id="trunk-provider"' in html and 'id="trunk-mts"' not in html


def test_the_sip_form_sends_a_modem_line_to_its_own_form(admin: FlaskClient) -> None:
    response = admin.get("/numbers/trunks/mts/edit")
    assert response.status_code == 302
    assert response.headers["Location"] == "/lines/mts/edit"


# --------------------------------------------------------------------------- the line form


def test_the_gsm_form_offers_the_plugged_in_devices_by_id_first(admin: FlaskClient) -> None:
    html = page(admin, "/lines/new?type=gsm")
    offered = [path for path in PLUGGED_IN if f'<option value="{path}"' in html]
    assert offered == PLUGGED_IN
    assert html.index(BY_ID) < html.index("/dev/ttyUSB0")
    assert 'name="imei"' in html and 'name="pin"' in html and 'name="audio_port"' in html


def test_the_fxo_form_has_no_sim_imei_or_audio_port(admin: FlaskClient) -> None:
    html = page(admin, "/lines/new?type=fxo")
    assert 'name="imei"' not in html and 'name="pin"' not in html
    assert 'name="audio_port"' not in html
    assert '<option value="v253" selected>' in html


def test_a_gsm_line_is_added_with_a_chosen_device(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/lines/new?type=gsm", {
        "name": "beeline", "port": "/dev/ttyUSB0", "audio_port": "/dev/ttyUSB1",
        "modem": "auto", "imei": "", "pin": "4321", "number": "+7 (903) 123-45-67",
        "gain_db": "-3"})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == "/lines/beeline"
    line = store_config(app).trunks[-1]
    assert (line.name, line.type, line.device, line.audio_device, line.modem, line.pin,
            line.number, line.gain_db) == ("beeline", "gsm", "/dev/ttyUSB0", "/dev/ttyUSB1",
                                           "auto", "4321", "+79031234567", -3.0)


def test_an_fxo_line_is_added_with_a_typed_path(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/lines/new?type=fxo", {
        "name": "office2", "port": "", "port_typed": "/dev/ttyACM3", "modem": "usr5637",
        "number": "", "gain_db": "0"})
    assert response.status_code == 302, response.get_data(as_text=True)
    line = store_config(app).trunks[-1]
    assert (line.type, line.device, line.modem, line.channels) == (
        "fxo", "/dev/ttyACM3", "usr5637", 1)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("gain_db", "12.5", "Enter a number from -12 to 12."),
    ("gain_db", "loud", "Enter a number from -12 to 12."),
    ("imei", "861234567890123", "An IMEI is 15 digits, the last one a check digit"),
    ("pin", "12", "The SIM&#39;s PIN is 4 to 8 digits."),
    ("port", "ttyUSB0", "Choose the modem&#39;s serial device, or type its path"),
    ("name", "mts", "Another line or provider account already has this name."),
    ("number", "12ab", "3 to 15 digits, optionally starting with +"),
    ("modem", "usr5637", "Choose a modem from the list."),
])
def test_a_wrong_field_is_refused_beside_it(admin: FlaskClient, app: Flask, field: str,
                                            value: str, message: str) -> None:
    form = {"name": "beeline", "port": "/dev/ttyUSB0", "modem": "auto", "gain_db": "0",
            field: value}
    response = post(admin, "/lines/new?type=gsm", form, form_page="/lines/new?type=gsm")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'id="e-{field}"' in html and message in html
    assert all(t.name != "beeline" for t in store_config(app).trunks)


def test_editing_keeps_the_pin_when_left_empty(admin: FlaskClient, app: Flask) -> None:
    html = page(admin, "/lines/mts/edit")
    assert "5829" not in html  # the PIN is never shown back
    response = post(admin, "/lines/mts/edit", {
        "name": "mts", "port": BY_ID, "modem": "huawei", "imei": IMEI, "pin": "",
        "number": "+79161234567", "gain_db": "2"})
    assert response.status_code == 302, response.get_data(as_text=True)
    line = trunk(app, "mts")
    assert (line.pin, line.gain_db) == ("5829", 2.0)  # type: ignore[attr-defined]


def test_the_pin_can_be_removed(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/lines/mts/edit", {"name": "mts", "port": BY_ID, "modem": "huawei",
                                    "clear_pin": "on", "gain_db": "0"})
    assert trunk(app, "mts").pin == ""  # type: ignore[attr-defined]


def test_a_renamed_line_keeps_its_place_in_the_failover_order(tmp_path: Path) -> None:
    app = make_app(tmp_path / "box.db", with_lines() + "failover: {order: [provider, mts]}\n")
    admin = log_in_as_admin(app.test_client())
    post(admin, "/lines/mts/edit", {"name": "mts2", "port": BY_ID, "modem": "huawei",
                                    "gain_db": "0"})
    assert store_config(app).failover.order == ("provider", "mts2")


def test_a_line_is_deleted_and_leaves_the_failover_order(tmp_path: Path) -> None:
    app = make_app(tmp_path / "box.db", with_lines() + "failover: {order: [provider, city]}\n")
    admin = log_in_as_admin(app.test_client())
    response = post(admin, "/lines/city/delete", {}, form_page="/lines")
    assert response.status_code == 302
    config = store_config(app)
    assert all(t.name != "city" for t in config.trunks)
    assert config.failover.order == ("provider",)


def test_a_sip_account_has_no_line_form(admin: FlaskClient) -> None:
    assert admin.get("/lines/provider/edit").status_code == 404
    assert admin.get("/lines/provider").status_code == 404


# --------------------------------------------------------------------------- numbers


def test_a_number_on_a_gsm_line_takes_one_channel(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/numbers/new", {"number": "+79161234567", "trunk": "mts",
                                            "channels": "1", "destination": "200"})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert store_config(app).numbers[-1].channels == 1
    refused = post(admin, "/numbers/new", {"number": "+79160000000", "trunk": "mts",
                                           "channels": "3", "destination": "200"},
                   form_page="/numbers/new")
    assert refused.status_code == 400
    assert "Enter a whole number from 1 to 1." in refused.get_data(as_text=True)


# --------------------------------------------------------------------------- a line's page


def test_the_line_page_shows_the_state_the_daemon_reports(admin: FlaskClient,
                                                          daemon: ControlServer) -> None:
    html = page(admin, "/lines/mts")
    for shown in ("-71 dBm", "MTS RUS", "home", IMEI, "ready", "registered (home)"):
        assert shown in html


def test_the_line_page_without_the_daemon_says_so(admin: FlaskClient) -> None:
    assert 'id="daemon-down"' in page(admin, "/lines/mts")


def test_the_inbox_lists_the_lines_messages_from_the_store(admin: FlaskClient, app: Flask
                                                          ) -> None:
    with Store.open(app.config["DB"]) as store:
        store.add_sms(line="mts", direction="in", number="+79035550000",
                      text="Перезвоните <b>мне</b>", at=1_760_000_000.0)
        store.add_sms(line="other", direction="in", number="1", text="not this line", at=2.0)
    html = page(admin, "/lines/mts")
    assert "+79035550000" in html and "Перезвоните &lt;b&gt;мне&lt;/b&gt;" in html
    assert "09.10.2025 11:53" in html  # the site's zone: Europe/Moscow
    assert "not this line" not in html


def test_an_fxo_line_page_has_no_sms_or_balance(admin: FlaskClient) -> None:
    html = page(admin, "/lines/city")
    assert 'id="sms-form"' not in html and 'id="ussd-form"' not in html


def test_an_sms_is_sent_through_the_daemon(admin: FlaskClient, daemon: ControlServer) -> None:
    response = post(admin, "/lines/mts/sms", {"number": "+7 916 000-00-01",
                                              "text": "Договор готов"}, form_page="/lines/mts")
    assert response.status_code == 302, response.get_data(as_text=True)
    assert daemon.lines["mts"].sent == [("+79160000001", "Договор готов")]


def test_an_sms_without_text_is_refused_before_the_daemon(admin: FlaskClient,
                                                          daemon: ControlServer) -> None:
    response = post(admin, "/lines/mts/sms", {"number": "+79160000001", "text": " "},
                    form_page="/lines/mts")
    assert response.status_code == 400
    assert "Write the message." in response.get_data(as_text=True)
    assert daemon.lines["mts"].sent == []


def test_an_sms_with_the_daemon_down_says_nothing_was_sent(admin: FlaskClient) -> None:
    response = post(admin, "/lines/mts/sms", {"number": "+79160000001", "text": "hi"},
                    form_page="/lines/mts")
    assert response.status_code == 400
    assert "nothing was sent" in response.get_data(as_text=True)


def test_the_balance_button_shows_the_operators_reply(admin: FlaskClient,
                                                      daemon: ControlServer) -> None:
    response = post(admin, "/lines/mts/ussd", {"code": "*100#"}, form_page="/lines/mts")
    assert response.status_code == 200
    assert BALANCE_REPLY in response.get_data(as_text=True)
    assert {"command": "ussd", "line": "mts", "code": "*100#"} in daemon.requests


def test_a_modem_error_is_shown(tmp_path: Path) -> None:
    app = make_app(tmp_path / "box.db", with_lines().replace("name: mts", "name: broken"))
    admin = log_in_as_admin(app.test_client())
    with ControlServer(tmp_path / "box.db", drivers()):
        response = post(admin, "/lines/broken/ussd", {"code": "*100#"},
                        form_page="/lines/broken")
    assert response.status_code == 400
    assert "Not done: broken: no answer to *100#: +CMS ERROR: 500" in response.get_data(
        as_text=True)


# --------------------------------------------------------------------------- failover, LEDs


def test_failover_settings_are_saved(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/lines/failover", {"order": "provider, mts, city",
                                               "probe_interval_s": "2,5", "down_after": "3",
                                               "up_after": "4"}, form_page="/lines")
    assert response.status_code == 302, response.get_data(as_text=True)
    failover = store_config(app).failover
    assert (failover.order, failover.probe_interval_s, failover.down_after,
            failover.up_after) == (("provider", "mts", "city"), 2.5, 3, 4)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("probe_interval_s", "0.5", "Enter a number from 1 to 300."),
    ("probe_interval_s", "301", "Enter a number from 1 to 300."),
    ("down_after", "0", "Enter a whole number from 1 to 20."),
    ("up_after", "101", "Enter a whole number from 1 to 100."),
    ("order", "provider, tele2", "No line or provider account is named tele2."),
    ("order", "mts, mts", "A line is listed twice."),
])
def test_failover_out_of_range_is_refused(admin: FlaskClient, app: Flask, field: str,
                                          value: str, message: str) -> None:
    form = {"order": "", "probe_interval_s": "5", "down_after": "2", "up_after": "3",
            field: value}
    response = post(admin, "/lines/failover", form, form_page="/lines")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert f'id="e-{field}"' in html and message in html
    assert store_config(app).failover.order == ()


def test_led_pins_are_saved(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/lines/leds", {"led_power": "5", "led_gsm": "27",
                                           "led_internet": ""}, form_page="/lines")
    assert response.status_code == 302, response.get_data(as_text=True)
    assert store_config(app).hardware.leds == {"power": 5, "gsm": 27}


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"led_power": "28"}, "led_power", "Enter a whole number from 0 to 27."),
    ({"led_power": "5", "led_calls": "5"}, "led_calls", "Another LED already uses GPIO 5."),
])
def test_led_pins_out_of_range_or_shared_are_refused(admin: FlaskClient, form: dict[str, str],
                                                     field: str, message: str) -> None:
    response = post(admin, "/lines/leds", form, form_page="/lines")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert f'id="e-{field}"' in html and message in html


def test_the_pages_open_in_russian(app: Flask) -> None:
    client = app.test_client()
    post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    assert "Резервные линии" in page(client, "/lines")
    assert "Новая GSM-линия" in page(client, "/lines/new?type=gsm")
