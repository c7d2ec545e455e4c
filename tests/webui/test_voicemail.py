"""Voicemail in the web UI: the messages page (player, download, heard/new, delete, a mailbox
filter, an unheard count in the navigation) with an agent limited to their own and their
departments' mailboxes; greetings uploaded as WAV and converted to what the box plays, or
removed; voicemail as a department's no-answer destination; the apology call of an expired
callback; the language of the voice prompts; and a mailbox as a schedule's after-hours
destination."""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import wave
from array import array
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from firmware.media.audio import wav_bytes
from firmware.media.tones import beep
from firmware.store import ConfigError, Store
from tests.webui.conftest import (
    ADMIN_PASSWORD,
    csrf_of,
    form_of,
    page,
    post,
    put_config,
    store_config,
)
from tests.webui.test_departments import department, new_department
from webui import configedit

MONDAY_NOON_MOSCOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC).timestamp()
SHORT_MESSAGE = wav_bytes(beep())


@pytest.fixture
def agent(client: FlaskClient) -> FlaskClient:
    """Extension 101 (a member of department 200) logged in, the UI in English."""
    response = post(client, "/login", {"user": "101", "password": "pw-101-secret"})
    assert response.status_code == 302
    post(client, "/language/en", {"back": "/voicemail"}, form_page="/voicemail")
    return client


def add_message(app: Flask, mailbox: str, *, caller: str = "79161234567",
                left_at: float = MONDAY_NOON_MOSCOW, duration_s: float = 7.4,
                audio: bytes = SHORT_MESSAGE) -> int:
    with Store.open(app.config["DB"]) as store:
        return store.add_voicemail(call_id=f"call-{mailbox}-{left_at}", mailbox=mailbox,
                                   caller=caller, left_at=left_at, duration_s=duration_s,
                                   audio=audio)


def messages(app: Flask) -> dict[int, dict[str, Any]]:
    with Store.open(app.config["DB"]) as store:
        return {row["id"]: row for row in store.voicemails(limit=1000)}


def greeting(app: Flask, mailbox: str) -> bytes | None:
    with Store.open(app.config["DB"]) as store:
        return store.greeting(mailbox)


def greetings(app: Flask) -> dict[str, dict[str, Any]]:
    with Store.open(app.config["DB"]) as store:
        return store.greetings()


def wav_file(*, rate: int, channels: int, seconds: float) -> bytes:
    """A 16-bit WAV file of a 440 Hz tone, as an office would upload it."""
    step = 2 * math.pi * 440 / rate
    samples = array("h", (int(8000 * math.sin(step * i)) for i in range(int(rate * seconds))))
    if channels == 2:
        samples = array("h", (sample for sample in samples for _channel in range(2)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return buffer.getvalue()


def upload_greeting(client: FlaskClient, mailbox: str, content: bytes,
                    filename: str = "greeting.wav") -> TestResponse:
    return client.post(f"/voicemail/greetings/{mailbox}", data={
        "csrf_token": csrf_of(client, "/voicemail"),
        "greeting": (io.BytesIO(content), filename),
    }, content_type="multipart/form-data")


def message_row(html: str, message_id: int) -> str:
    found = re.search(rf'<tr id="message-{message_id}"[^>]*>(.*?)</tr>', html, re.S)
    assert found is not None, html
    return found.group(1)


def field_error(html: str, field: str) -> str:
    found = re.search(rf'<p class="error" id="e-{re.escape(field)}">([^<]*)</p>', html)
    assert found is not None, html
    return found.group(1)


# --------------------------------------------------------------------------- the messages


def test_each_message_shows_its_mailbox_caller_local_time_length_and_state(
    admin: FlaskClient, app: Flask,
) -> None:
    message_id = add_message(app, "200", caller="79161234567", duration_s=67.4)

    row = message_row(page(admin, "/voicemail"), message_id)

    cells = [re.sub(r"<[^>]+>", "", cell).strip()
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells[:5] == ["200 — department Отдел продаж", "79161234567", "01.06.2026 12:00",
                         "1:07", "new"]


def test_times_are_in_the_sites_time_zone(admin: FlaskClient, app: Flask) -> None:
    put_config(app, lambda data: data.update(site={"timezone": "Asia/Novosibirsk"}))
    message_id = add_message(app, "101")

    assert "01.06.2026 16:00" in message_row(page(admin, "/voicemail"), message_id)


def test_the_admin_sees_every_mailbox_newest_first(admin: FlaskClient, app: Flask) -> None:
    older = add_message(app, "103", left_at=MONDAY_NOON_MOSCOW - 60)
    newer = add_message(app, "200")

    html = page(admin, "/voicemail")

    assert html.index(f'id="message-{newer}"') < html.index(f'id="message-{older}"')
    assert "103 — Ольга" in message_row(html, older)


def test_the_list_can_be_filtered_by_mailbox(admin: FlaskClient, app: Flask) -> None:
    kept = add_message(app, "101")
    other = add_message(app, "200")

    html = page(admin, "/voicemail?mailbox=101")

    assert f'id="message-{kept}"' in html and f'id="message-{other}"' not in html
    assert re.search(r'<option value="101" selected>101 — Мария: 1 new of 1</option>', html)


def test_a_message_has_a_player_from_this_app_and_a_download_link(admin: FlaskClient,
                                                                  app: Flask) -> None:
    message_id = add_message(app, "200")

    row = message_row(page(admin, "/voicemail"), message_id)

    assert (f'<audio controls preload="none" src="/voicemail/{message_id}/audio"></audio>'
            in row)
    assert f'href="/voicemail/{message_id}/download" download' in row


def test_the_player_gets_the_exact_wav_inline(admin: FlaskClient, app: Flask) -> None:
    message_id = add_message(app, "200")

    response = admin.get(f"/voicemail/{message_id}/audio")

    assert response.status_code == 200
    assert response.mimetype == "audio/wav"
    assert response.get_data() == SHORT_MESSAGE
    assert re.fullmatch(rf'inline; filename="voicemail-200-20260601-1200-{message_id}\.wav"',
                        response.headers["Content-Disposition"])


def test_the_player_may_ask_for_a_byte_range(admin: FlaskClient, app: Flask) -> None:
    message_id = add_message(app, "200")

    response = admin.get(f"/voicemail/{message_id}/audio", headers={"Range": "bytes=0-99"})

    assert response.status_code == 206
    assert response.get_data() == SHORT_MESSAGE[:100]


def test_the_download_is_the_same_wav_as_an_attachment(admin: FlaskClient, app: Flask) -> None:
    message_id = add_message(app, "200")

    response = admin.get(f"/voicemail/{message_id}/download")

    assert response.get_data() == SHORT_MESSAGE and response.mimetype == "audio/wav"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")


def test_listening_and_downloading_do_not_mark_a_message_heard(admin: FlaskClient,
                                                               app: Flask) -> None:
    message_id = add_message(app, "200")

    admin.get(f"/voicemail/{message_id}/audio")
    admin.get(f"/voicemail/{message_id}/download")

    assert messages(app)[message_id]["heard"] == 0


def test_a_message_is_marked_heard_and_new_again(admin: FlaskClient, app: Flask) -> None:
    message_id = add_message(app, "200")

    response = post(admin, f"/voicemail/{message_id}/heard", {"heard": "yes", "mailbox": "200"},
                    form_page="/voicemail")

    assert response.status_code == 302
    assert response.headers["Location"] == "/voicemail?mailbox=200"
    assert messages(app)[message_id]["heard"] == 1
    assert "Mark as new" in message_row(page(admin, "/voicemail"), message_id)
    post(admin, f"/voicemail/{message_id}/heard", {"heard": "no"}, form_page="/voicemail")
    assert messages(app)[message_id]["heard"] == 0


def test_a_deleted_message_is_gone(admin: FlaskClient, app: Flask) -> None:
    message_id = add_message(app, "200", caller="74950000000")
    kept = add_message(app, "101")

    response = post(admin, f"/voicemail/{message_id}/delete", form_page="/voicemail")

    assert response.status_code == 302
    assert list(messages(app)) == [kept]
    assert "The message from 74950000000 was deleted." in page(admin, "/voicemail")


def test_changes_without_the_forms_token_are_refused(admin: FlaskClient, app: Flask) -> None:
    message_id = add_message(app, "200")

    assert admin.post(f"/voicemail/{message_id}/delete").status_code == 400
    assert admin.post(f"/voicemail/{message_id}/heard", data={"heard": "yes"}).status_code == 400
    assert messages(app)[message_id]["heard"] == 0


def test_an_unknown_message_is_not_found(admin: FlaskClient) -> None:
    assert admin.get("/voicemail/999/audio").status_code == 404
    assert post(admin, "/voicemail/999/delete", form_page="/voicemail").status_code == 404


def test_an_empty_mailbox_says_so(admin: FlaskClient) -> None:
    assert '<p id="no-messages">No messages.</p>' in page(admin, "/voicemail")


def test_the_navigation_counts_the_unheard_messages(admin: FlaskClient, app: Flask) -> None:
    add_message(app, "200")
    add_message(app, "103")
    heard = add_message(app, "101")
    with Store.open(app.config["DB"]) as store:
        store.mark_voicemail_heard(heard)

    html = page(admin, "/departments")

    assert re.search(r'id="nav-voicemail">Voicemail <span class="nav-count"[^>]*>2</span>', html)


def test_the_page_needs_a_login(client: FlaskClient, app: Flask) -> None:
    message_id = add_message(app, "200")

    assert client.get("/voicemail").headers["Location"].startswith("/login")
    assert client.get(f"/voicemail/{message_id}/audio").headers["Location"].startswith("/login")


def test_the_page_is_in_russian_by_default(client: FlaskClient, app: Flask) -> None:
    add_message(app, "200")
    post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})

    html = page(client, "/voicemail")

    assert "Голосовая почта" in html and "Отметить прослушанным" in html


# --------------------------------------------------------------------------- an agent


def test_an_agent_sees_their_own_and_their_departments_mailboxes_only(agent: FlaskClient,
                                                                      app: Flask) -> None:
    own = add_message(app, "101")
    department_message = add_message(app, "200")
    colleague = add_message(app, "102")
    other = add_message(app, "103")

    html = page(agent, "/voicemail")

    assert f'id="message-{own}"' in html and f'id="message-{department_message}"' in html
    assert f'id="message-{colleague}"' not in html and f'id="message-{other}"' not in html
    assert re.findall(r'<option value="(\d+)"', html) == ["200", "101"]


def test_an_agent_cannot_reach_a_message_of_another_mailbox(agent: FlaskClient,
                                                            app: Flask) -> None:
    other = add_message(app, "103")

    assert agent.get(f"/voicemail/{other}/audio").status_code == 404
    assert agent.get(f"/voicemail/{other}/download").status_code == 404
    assert post(agent, f"/voicemail/{other}/heard", {"heard": "yes"},
                form_page="/voicemail").status_code == 404
    assert post(agent, f"/voicemail/{other}/delete", form_page="/voicemail").status_code == 404
    assert messages(app)[other]["heard"] == 0


def test_an_agent_plays_and_marks_a_message_of_their_department(agent: FlaskClient,
                                                                app: Flask) -> None:
    message_id = add_message(app, "200")

    assert agent.get(f"/voicemail/{message_id}/audio").get_data() == SHORT_MESSAGE
    post(agent, f"/voicemail/{message_id}/heard", {"heard": "yes"}, form_page="/voicemail")
    assert messages(app)[message_id]["heard"] == 1


def test_an_agent_may_not_filter_by_another_mailbox(agent: FlaskClient) -> None:
    assert agent.get("/voicemail?mailbox=103").status_code == 403


def test_an_agents_navigation_counts_their_mailboxes_only(agent: FlaskClient,
                                                          app: Flask) -> None:
    add_message(app, "101")
    add_message(app, "103")

    html = page(agent, "/voicemail")

    assert re.search(r'id="nav-voicemail">Voicemail <span class="nav-count"[^>]*>1</span>', html)


# --------------------------------------------------------------------------- greetings


def test_a_48_khz_stereo_greeting_is_stored_as_8_khz_mono(admin: FlaskClient,
                                                          app: Flask) -> None:
    response = upload_greeting(admin, "200", wav_file(rate=48000, channels=2, seconds=1.5))

    assert response.status_code == 302
    assert response.headers["Location"] == "/voicemail#greetings"
    stored = greeting(app, "200")
    assert stored is not None
    with wave.open(io.BytesIO(stored)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == 12000
    assert greetings(app)["200"]["duration_s"] == pytest.approx(1.5)


def test_a_greeting_larger_than_the_other_forms_limit_is_accepted(admin: FlaskClient,
                                                                  app: Flask) -> None:
    content = wav_file(rate=48000, channels=2, seconds=16.5)
    assert len(content) > app.config["MAX_CONTENT_LENGTH"]

    assert upload_greeting(admin, "101", content).status_code == 302

    assert greetings(app)["101"]["duration_s"] == pytest.approx(16.5)


def test_the_larger_limit_is_for_greetings_only(admin: FlaskClient, app: Flask) -> None:
    response = admin.post("/system/restore", data={
        "csrf_token": csrf_of(admin, "/system"),
        "file": (io.BytesIO(b"# padding\n" * 300_000), "backup.yaml"),
    }, content_type="multipart/form-data")

    assert response.status_code == 413


@pytest.mark.parametrize(("content", "reason"), [
    (b"ID3\x04 an mp3 file", "not a PCM WAV file"),
    (wav_file(rate=8000, channels=1, seconds=121), "121 s long: at most 120 s"),
    (wav_file(rate=96000, channels=1, seconds=0.1), "96000 Hz: use 8000 to 48000 Hz"),
], ids=["not-wav", "too-long", "wrong-rate"])
def test_a_file_the_box_cannot_play_is_refused_beside_its_field(
    admin: FlaskClient, app: Flask, content: bytes, reason: str,
) -> None:
    response = upload_greeting(admin, "200", content)

    assert response.status_code == 400
    message = field_error(response.get_data(as_text=True), "greeting-200")
    assert message.startswith("The file does not fit: ") and reason in message
    assert greetings(app) == {}


def test_a_bad_file_keeps_the_greeting_there_was(admin: FlaskClient, app: Flask) -> None:
    upload_greeting(admin, "200", wav_file(rate=8000, channels=1, seconds=1))
    before = greeting(app, "200")

    upload_greeting(admin, "200", b"not audio at all")

    assert greeting(app, "200") == before


def test_the_bad_file_message_is_in_russian_by_default(client: FlaskClient) -> None:
    post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})

    response = upload_greeting(client, "200", b"not audio at all")

    assert field_error(response.get_data(as_text=True), "greeting-200").startswith(
        "Файл не подходит: not a PCM WAV file")


def test_an_upload_without_a_file_asks_for_one(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/voicemail/greetings/200", form_page="/voicemail")

    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), "greeting-200") == "Choose a WAV file."


def test_a_greeting_over_the_upload_limit_gets_a_page_saying_so(admin: FlaskClient,
                                                                app: Flask) -> None:
    app.config["GREETING_MAX_CONTENT_LENGTH"] = 1024 * 1024

    response = upload_greeting(admin, "200", wav_file(rate=8000, channels=1, seconds=80))

    assert response.status_code == 413
    assert field_error(response.get_data(as_text=True), "greeting-200").startswith(
        "The file does not fit: it is larger than 1 MB. Nothing was changed")
    assert greetings(app) == {}


def test_the_greeting_now_is_shown_with_a_player(admin: FlaskClient, app: Flask) -> None:
    upload_greeting(admin, "200", wav_file(rate=16000, channels=1, seconds=2))

    html = page(admin, "/voicemail")

    row = re.search(r'<tr id="greeting-200">(.*?)</tr>', html, re.S)
    assert row is not None
    assert ('<audio controls preload="none" src="/voicemail/greetings/200/audio"></audio>'
            in row.group(1))
    assert "Remove (use the built-in greeting)" in row.group(1)
    assert admin.get("/voicemail/greetings/200/audio").get_data() == greeting(app, "200")
    assert "the built-in greeting" in html.split('<tr id="greeting-101">')[1]


def test_removing_the_greeting_brings_back_the_built_in_one(admin: FlaskClient,
                                                            app: Flask) -> None:
    upload_greeting(admin, "200", wav_file(rate=8000, channels=1, seconds=1))

    response = post(admin, "/voicemail/greetings/200/delete", form_page="/voicemail")

    assert response.status_code == 302
    assert greeting(app, "200") is None
    assert admin.get("/voicemail/greetings/200/audio").status_code == 404


def test_an_agent_changes_the_greeting_of_their_own_extension_only(agent: FlaskClient,
                                                                   app: Flask) -> None:
    content = wav_file(rate=8000, channels=1, seconds=1)

    assert upload_greeting(agent, "101", content).status_code == 302
    assert upload_greeting(agent, "200", content).status_code == 403
    assert post(agent, "/voicemail/greetings/200/delete",
                form_page="/voicemail").status_code == 403
    assert set(greetings(app)) == {"101"}


def test_a_greeting_for_an_unknown_mailbox_is_not_found(admin: FlaskClient) -> None:
    content = wav_file(rate=8000, channels=1, seconds=1)

    assert upload_greeting(admin, "999", content).status_code == 404


# --------------------------------------------------------------------------- departments


def test_no_answer_voicemail_takes_the_departments_own_mailbox(admin: FlaskClient,
                                                              app: Flask) -> None:
    response = post(admin, "/departments/new", new_department(no_answer="voicemail"))

    assert response.status_code == 302
    assert department(app, "300").extra == {"no_answer": {"action": "voicemail"}}


def test_no_answer_voicemail_may_take_another_mailbox(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/departments/new", new_department(no_answer="voicemail",
                                                   no_answer_mailbox="101"))

    assert department(app, "300").extra == {"no_answer": {"action": "voicemail", "to": "101"}}


def test_a_mailbox_not_in_the_list_is_refused(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/departments/new", new_department(no_answer="voicemail",
                                                              no_answer_mailbox="999"))

    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True),
                       "no_answer_mailbox") == "Choose a mailbox from the list."


def test_voicemail_is_offered_as_the_no_answer_action(admin: FlaskClient) -> None:
    html = page(admin, "/departments/200")

    assert '<option value="voicemail" >voicemail: the caller leaves a message</option>' in html
    assert '<option value="voicemail:101">' in html  # suggested for a step


@pytest.mark.parametrize("stored", [
    {"no_answer": {"action": "voicemail"}},
    {"no_answer": {"action": "voicemail", "to": "103"}},
    {"no_answer": {"steps": [{"to": "103", "time_s": 15}, {"to": "voicemail"}]}},
    {"no_answer": {"steps": [{"to": "79161234567"}, {"to": "voicemail:101"}],
                   "reserve": "voicemail:103"}},
    {"queue": {"callback": {"apology": False}}},
    {"queue": {"callback": {"key": "2", "apology": True}}},
], ids=["own-mailbox", "other-mailbox", "last-step", "step-and-reserve", "apology-off",
        "apology-written"])
def test_a_stored_voicemail_setting_is_shown_and_saved_unchanged(
    admin: FlaskClient, app: Flask, stored: dict[str, Any],
) -> None:
    put_config(app, lambda data: data["departments"][0].update(stored))
    before = store_config(app)
    form = form_of(admin, "/departments/200", "department-form")

    response = post(admin, "/departments/200", form | {"action": "save"})

    assert response.status_code == 302, response.get_data(as_text=True)
    assert store_config(app) == before


def test_the_form_shows_a_stored_voicemail_action_and_mailbox(admin: FlaskClient,
                                                              app: Flask) -> None:
    put_config(app, lambda data: data["departments"][0].update(
        no_answer={"action": "voicemail", "to": "103"}))

    form = form_of(admin, "/departments/200", "department-form")

    assert (form["no_answer"], form["no_answer_mailbox"]) == ("voicemail", "103")


def test_voicemail_as_the_last_step_is_saved(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/departments/new", new_department(no_answer="steps", **{
        "s-0-to": "102", "s-0-time_s": "20", "s-1-to": "Voicemail:101", "s-1-time_s": ""}))

    assert department(app, "300").extra == {"no_answer": {"steps": [
        {"to": "102", "time_s": 20}, {"to": "voicemail:101"}]}}


def test_voicemail_before_the_last_step_is_refused_beside_that_step(admin: FlaskClient,
                                                                   app: Flask) -> None:
    response = post(admin, "/departments/new", new_department(no_answer="steps", **{
        "s-0-to": "voicemail", "s-0-time_s": "", "s-1-to": "102", "s-1-time_s": ""}))

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert field_error(html, "s-0-to") == "Voicemail answers the call, so it must be the last step."
    assert [d.number for d in store_config(app).departments] == ["200"]


def test_an_unknown_mailbox_in_a_step_is_refused(admin: FlaskClient) -> None:
    response = post(admin, "/departments/new", new_department(no_answer="steps", **{
        "s-0-to": "voicemail:999", "s-0-time_s": ""}))

    assert field_error(response.get_data(as_text=True), "s-0-to").startswith(
        "There is no mailbox &#34;999&#34;")


def test_a_step_the_configuration_refuses_is_marked_beside_that_step(
    admin: FlaskClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(draft: configedit.Draft) -> None:
        raise ConfigError("departments[1].no_answer.steps[0].to",
                          "voicemail answers the call, so it must be the last step")

    monkeypatch.setattr(configedit, "save", refuse)

    response = post(admin, "/departments/new", new_department(no_answer="steps", **{
        "s-0-to": "102", "s-0-time_s": ""}))

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert field_error(html, "s-0-to") == (
        "Not saved: voicemail answers the call, so it must be the last step")
    assert "Not saved: check the fields marked in red." in html


def test_a_department_whose_mailbox_gets_calls_is_not_deleted(admin: FlaskClient,
                                                              app: Flask) -> None:
    post(admin, "/departments/new", new_department(number="400", name="Склад"))
    post(admin, "/departments/new", new_department(no_answer="steps", **{
        "s-0-to": "voicemail:400", "s-0-time_s": ""}))

    html = post(admin, "/departments/400/delete", form_page="/departments/400").get_data(
        as_text=True)

    assert "<li>Department 300 Продажи sends its unanswered calls here.</li>" in html
    assert [d.number for d in store_config(app).departments] == ["200", "400", "300"]


def test_the_apology_call_is_on_by_default_and_not_written(admin: FlaskClient,
                                                           app: Flask) -> None:
    assert form_of(admin, "/departments/new", "department-form")["callback_apology"] == "on"

    post(admin, "/departments/new", new_department(queue="on", callback="on"))

    assert department(app, "300").extra == {"queue": {"callback": True}}


def test_turning_the_apology_call_off_is_saved(admin: FlaskClient, app: Flask) -> None:
    form = new_department(queue="on", callback="on")
    form.pop("callback_apology")

    post(admin, "/departments/new", form)

    assert department(app, "300").extra == {"queue": {"callback": {"apology": False}}}


# --------------------------------------------------------------------------- site and rules


def test_the_prompt_language_is_saved(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/rules/site", {"timezone": "Europe/Moscow", "language": "en"},
                    form_page="/rules")

    assert response.status_code == 302
    assert store_config(app).site.language == "en"
    assert "The voice prompts are now in English." in page(admin, "/rules")


def test_the_prompt_language_is_offered_in_its_own_name(admin: FlaskClient,
                                                        app: Flask) -> None:
    put_config(app, lambda data: data.update(site={"timezone": "Europe/Moscow",
                                                   "language": "en"}))

    html = page(admin, "/rules")

    assert '<option value="ru" >Русский</option>' in html
    assert '<option value="en" selected>English</option>' in html


def test_an_unknown_prompt_language_is_refused(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/rules/site", {"timezone": "Europe/Moscow", "language": "de"},
                    form_page="/rules")

    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True),
                       "language") == "Choose a language from the list."
    assert store_config(app).site.language == "ru"


def test_saving_the_time_zone_keeps_the_prompt_language(admin: FlaskClient,
                                                        app: Flask) -> None:
    put_config(app, lambda data: data.update(site={"timezone": "Europe/Moscow",
                                                   "language": "en"}))

    post(admin, "/rules/site", {"timezone": "Asia/Omsk"}, form_page="/rules")

    site = store_config(app).site
    assert (site.timezone, site.language) == ("Asia/Omsk", "en")


def test_a_schedule_may_send_calls_to_a_mailbox_after_hours(admin: FlaskClient,
                                                            app: Flask) -> None:
    response = post(admin, "/rules/schedules/new", {
        "name": "office", "timezone": "", "holidays": "", "after_hours": "voicemail:200",
        "hours_mon": "09:00-18:00", **{f"hours_{day}": "" for day in
                                        ("tue", "wed", "thu", "fri", "sat", "sun")}})

    assert response.status_code == 302, response.get_data(as_text=True)
    assert store_config(app).schedules[0].after_hours == "voicemail:200"
