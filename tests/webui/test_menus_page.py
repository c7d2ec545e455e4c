"""The web UI's voice menus page: a menu added by name, its keys edited in place and saved through
the same validation as an import (an error beside the menu, nothing changed), its greeting
uploaded as a WAV file and stored as the box plays it, removed again; a menu something routes to
is not deleted; the page in Russian."""

from __future__ import annotations

import html
import io
import wave
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from firmware.store import Store
from tests.webui.conftest import csrf_of, page, post, put_config, store_config
from tests.webui.test_voicemail import wav_file


def with_menu(app: Flask) -> None:
    def change(data: dict[str, Any]) -> None:
        data["menus"] = [{"name": "main", "keys": {"1": "200"}}]
        data["numbers"][0]["destination"] = "menu:main"
    put_config(app, change)


def test_a_menu_is_added_by_name_and_listed(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/menus/new", {"name": "night"}, form_page="/menus")
    assert response.status_code == 302
    [menu] = store_config(app).menus
    assert (menu.name, dict(menu.keys)) == ("night", {"1": "200"})
    assert 'id="menu-night"' in page(admin, "/menus")


def test_keys_and_settings_are_edited_in_place(admin: FlaskClient, app: Flask) -> None:
    with_menu(app)
    response = post(admin, "/menus/main", {
        "key-1": "200", "key-2": "voicemail:200", "key-0": "101", "key-*": "repeat",
        "greeting": "menu_welcome, menu_choose", "timeout_s": "7", "repeats": "1",
        "timeout": "200", "direct_dial": "on"}, form_page="/menus")
    assert response.status_code == 302
    [menu] = store_config(app).menus
    assert dict(menu.keys) == {"0": "101", "1": "200", "2": "voicemail:200", "*": "repeat"}
    assert (menu.greeting, menu.timeout_s, menu.repeats, menu.timeout, menu.direct_dial) == (
        ("menu_welcome", "menu_choose"), 7.0, 1, "200", True)


def test_a_bad_destination_is_shown_beside_the_menu_and_nothing_changes(
    admin: FlaskClient, app: Flask,
) -> None:
    with_menu(app)
    response = post(admin, "/menus/main", {"key-1": "999"}, form_page="/menus")
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert 'id="e-menu-main"' in text and "menus[0].keys.1" in text
    assert dict(store_config(app).menus[0].keys) == {"1": "200"}


def test_a_menu_a_number_routes_to_is_not_deleted(admin: FlaskClient, app: Flask) -> None:
    with_menu(app)
    response = post(admin, "/menus/main/delete", form_page="/menus")
    assert response.status_code == 400
    assert 'unknown destination "menu:main"' in html.unescape(response.get_data(as_text=True))
    assert [m.name for m in store_config(app).menus] == ["main"]


def test_a_greeting_is_uploaded_as_8_khz_mono_and_removed(admin: FlaskClient, app: Flask) -> None:
    with_menu(app)
    response = admin.post("/menus/main/greeting", data={
        "csrf_token": csrf_of(admin, "/menus"),
        "greeting": (io.BytesIO(wav_file(rate=16000, channels=1, seconds=2.0)), "hello.wav"),
    }, content_type="multipart/form-data")
    assert response.status_code == 302
    with Store.open(app.config["DB"]) as store:
        stored = store.greeting("menu:main")
    assert stored is not None
    with wave.open(io.BytesIO(stored)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (1, 8000, 16000)
    assert admin.get("/menus/main/greeting.wav").status_code == 200
    post(admin, "/menus/main/greeting/delete", form_page="/menus")
    with Store.open(app.config["DB"]) as store:
        assert store.greeting("menu:main") is None


def test_the_page_speaks_russian_by_default(client: FlaskClient, app: Flask) -> None:
    with_menu(app)
    post(client, "/login", {"user": "admin", "password": "correct horse battery"})
    text = page(client, "/menus")
    assert "Голосовые меню" in text and "Куда идёт звонок" in text


def test_a_number_is_sent_to_a_menu_from_its_form(admin: FlaskClient, app: Flask) -> None:
    with_menu(app)
    form_page = "/numbers/74951234567/edit"
    assert '<option value="menu:main" selected>' in page(admin, form_page)
    response = post(admin, form_page, {"number": "74951234567", "trunk": "provider",
                                       "channels": "3", "destination": "200"})
    assert response.status_code == 302
    response = post(admin, form_page, {"number": "74951234567", "trunk": "provider",
                                       "channels": "3", "destination": "menu:main"})
    assert response.status_code == 302
    assert store_config(app).numbers[0].destination == "menu:main"


def test_the_page_shows_each_menus_number_and_how_to_record_by_phone(
    admin: FlaskClient, app: Flask,
) -> None:
    with_menu(app)
    text = html.unescape(page(admin, "/menus"))
    assert 'id="number-main"' in text and "*971" in text
    assert 'id="form-recorders"' in text


def test_who_may_record_by_phone_is_saved_and_an_unknown_extension_refused(
    admin: FlaskClient, app: Flask,
) -> None:
    with_menu(app)
    response = post(admin, "/menus/recorders", {"recorders": "101, 102"}, form_page="/menus")
    assert response.status_code == 302
    assert store_config(app).site.greeting_recorders == ("101", "102")
    response = post(admin, "/menus/recorders", {"recorders": "101 999"}, form_page="/menus")
    assert response.status_code == 400
    assert "no extension 999" in response.get_data(as_text=True)
    assert store_config(app).site.greeting_recorders == ("101", "102")
    post(admin, "/menus/recorders", {"recorders": ""}, form_page="/menus")
    assert store_config(app).site.greeting_recorders == ()


def test_a_new_menus_number_is_kept_when_an_earlier_menu_is_deleted(
    admin: FlaskClient, app: Flask,
) -> None:
    post(admin, "/menus/new", {"name": "first"}, form_page="/menus")
    post(admin, "/menus/new", {"name": "second"}, form_page="/menus")
    assert [(m.name, m.number) for m in store_config(app).menus] == [
        ("first", "1"), ("second", "2")]
    post(admin, "/menus/first/delete", form_page="/menus")
    assert [(m.name, m.number) for m in store_config(app).menus] == [("second", "2")]
