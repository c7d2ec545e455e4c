"""The music on hold on the system page: the admin uploads a WAV file (converted to what the box
plays and kept as the greeting of mailbox "hold", which firmware/core/hold.py plays), listens to
it, removes it (the built-in tune again); a bad file changes nothing and says why; agents have no
say; the section reads in Russian."""

from __future__ import annotations

import io
import wave

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from firmware.core.hold import HOLD_MUSIC_MAILBOX
from tests.webui.conftest import ADMIN_PASSWORD, csrf_of, post
from tests.webui.test_voicemail import greeting, greetings, wav_file
from webui.system import HOLD_MUSIC_MAILBOX as PAGE_MAILBOX


def upload(client: FlaskClient, content: bytes) -> TestResponse:
    return client.post("/system/hold-music", data={
        "csrf_token": csrf_of(client, "/system"),
        "greeting": (io.BytesIO(content), "music.wav"),
    }, content_type="multipart/form-data")


def test_the_page_and_the_box_agree_on_where_the_music_is_kept() -> None:
    assert PAGE_MAILBOX == HOLD_MUSIC_MAILBOX


def test_without_an_upload_the_built_in_music_plays(admin: FlaskClient) -> None:
    html = admin.get("/system").get_data(as_text=True)
    assert 'id="hold-music-built-in"' in html and "Music on hold" in html


def test_an_uploaded_file_is_stored_as_8_khz_mono_and_shown_with_a_player(
    admin: FlaskClient, app: Flask,
) -> None:
    response = upload(admin, wav_file(rate=44100, channels=2, seconds=12.0))
    assert response.status_code == 302
    assert response.headers["Location"] == "/system#hold-music"
    stored = greeting(app, HOLD_MUSIC_MAILBOX)
    assert stored is not None
    with wave.open(io.BytesIO(stored)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == 96000
    html = admin.get("/system").get_data(as_text=True)
    assert "Uploaded music, 12 s" in html and 'src="/system/hold-music/audio"' in html
    assert admin.get("/system/hold-music/audio").data == stored


def test_removing_it_brings_back_the_built_in_music(admin: FlaskClient, app: Flask) -> None:
    upload(admin, wav_file(rate=8000, channels=1, seconds=2.0))
    assert post(admin, "/system/hold-music/delete", form_page="/system").status_code == 302
    assert HOLD_MUSIC_MAILBOX not in greetings(app)
    assert admin.get("/system/hold-music/audio").status_code == 404


def test_a_bad_file_changes_nothing_and_says_why(admin: FlaskClient, app: Flask) -> None:
    upload(admin, wav_file(rate=8000, channels=1, seconds=2.0))
    response = upload(admin, b"not a wav file at all")
    assert response.status_code == 400
    assert 'id="e-hold_music"' in response.get_data(as_text=True)
    assert greetings(app)[HOLD_MUSIC_MAILBOX]["duration_s"] == 2.0


def test_a_file_over_the_other_forms_limit_is_accepted(admin: FlaskClient, app: Flask) -> None:
    content = wav_file(rate=48000, channels=2, seconds=16.5)
    assert len(content) > app.config["MAX_CONTENT_LENGTH"]
    assert upload(admin, content).status_code == 302


def test_an_agent_cannot_change_the_music(client: FlaskClient, app: Flask) -> None:
    post(client, "/login", {"user": "101", "password": "pw-101-secret"})
    response = client.post("/system/hold-music", data={
        "csrf_token": csrf_of(client, "/voicemail"),
        "greeting": (io.BytesIO(wav_file(rate=8000, channels=1, seconds=1.0)), "music.wav"),
    }, content_type="multipart/form-data")
    assert response.status_code in (302, 403)
    assert HOLD_MUSIC_MAILBOX not in greetings(app)


def test_the_section_reads_in_russian(client: FlaskClient) -> None:
    post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    html = client.get("/system").get_data(as_text=True)
    assert "Музыка на удержании" in html and "Играет встроенная мелодия." in html
