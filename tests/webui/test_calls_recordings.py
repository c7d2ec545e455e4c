"""The calls pages of the web UI: a recorded call can be listened to and downloaded by the admin
and by the members of the call's department — not by an agent of another department, nor by
someone logged out; the quota's use is shown to the admin, with a warning from 90 %."""

from __future__ import annotations

import io
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from firmware.core.events import RecordingAudio, RecordingFinished, RecordingStarted
from firmware.media.recorder import HEADER_BYTES
from firmware.media.recorder_files import RecordingFiles
from firmware.recording import RecordingSettings
from firmware.store import Store, config_to_dict, load_yaml, parse_config
from tests.webui.conftest import OFFICE_YAML, app_over, log_in_as_admin, page, post

STARTED = 1_780_000_000.0
SECOND_STEREO = b"\xd5\x2a" * 8000
# 103 is in no department; 101 and 102 are in 200. A second department (300, 103 alone) takes
# the call that 101 must not hear.
OFFICE = OFFICE_YAML.replace('members: ["101", "102"]}', '''members: ["101", "102"]}
  - {number: "300", name: "Склад", strategy: ring_all, ring_timeout_s: 20, members: ["103"]}''')


def add_call(store: Store, call_id: str, department: str | None) -> None:
    store.record_finished_calls([({
        "id": call_id, "started_at": STARTED, "answered_at": STARTED + 5,
        "ended_at": STARTED + 65, "direction": "inbound", "source": "trunk:provider",
        "caller": "79161234567", "dialed": "74951234567", "number": "74951234567",
        "department": department, "answered_by": "101", "end_cause": "caller hung up",
        "outcome": "answered", "sip_call_id": f"sip-{call_id}"}, [])])


def record(db: Path, call_id: str, seconds: int, quota_mb: int = 10) -> None:
    writer = RecordingFiles(db, settings=lambda: RecordingSettings(quota_mb=quota_mb,
                                                                   min_free_mb=1))
    writer.perform(RecordingStarted(call_id=call_id, codec="PCMA", channels=2,
                                    wall_time=STARTED))
    for _ in range(seconds):
        writer.perform(RecordingAudio(call_id=call_id, data=SECOND_STEREO))
    writer.perform(RecordingFinished(call_id=call_id, duration_s=float(seconds)))
    writer.close()


def office_app(tmp_path: Path) -> Flask:
    db = tmp_path / "linebox.db"
    with Store.open(db) as store:
        store.replace_config(load_yaml(OFFICE))
        add_call(store, "sales-call", "200")
        add_call(store, "store-call", "300")
    record(db, "sales-call", 2)
    record(db, "store-call", 1)
    return app_over(db)


def agent(app: Flask, extension: str) -> FlaskClient:
    client = app.test_client()
    response = post(client, "/login", {"user": extension, "password": f"pw-{extension}-secret"})
    assert response.status_code == 302
    return client


def test_the_admin_lists_the_calls_and_plays_and_downloads_a_recording(tmp_path: Path) -> None:
    admin = log_in_as_admin(office_app(tmp_path).test_client())
    listing = page(admin, "/calls")
    assert 'src="/calls/sales-call/recording"' in listing
    assert 'href="/calls/store-call/recording/download"' in listing
    call = page(admin, "/calls/sales-call")
    assert "<audio" in call and "caller on the left" in call
    played = admin.get("/calls/sales-call/recording")
    assert played.status_code == 200 and played.mimetype == "audio/wav"
    assert played.headers["Content-Disposition"].startswith("inline")
    assert len(played.data) == HEADER_BYTES + 2 * len(SECOND_STEREO)
    assert played.data[:4] == b"RIFF"
    downloaded = admin.get("/calls/sales-call/recording/download")
    assert downloaded.headers["Content-Disposition"].startswith("attachment")
    assert downloaded.data == played.data
    ranged = admin.get("/calls/sales-call/recording", headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and len(ranged.data) == 100


def test_a_range_request_gets_exactly_the_bytes_asked_for(tmp_path: Path) -> None:
    admin = log_in_as_admin(office_app(tmp_path).test_client())
    whole = admin.get("/calls/sales-call/recording").data
    assert len(whole) == HEADER_BYTES + 2 * len(SECOND_STEREO)
    # A browser seeking to the middle of the call, then to its end.
    middle = admin.get("/calls/sales-call/recording", headers={"Range": "bytes=16001-20000"})
    assert middle.status_code == 206 and middle.mimetype == "audio/wav"
    assert middle.data == whole[16001:20001]
    assert middle.headers["Content-Range"] == f"bytes 16001-20000/{len(whole)}"
    assert middle.headers["Content-Length"] == "4000"
    assert middle.headers["Content-Disposition"].startswith("inline")
    assert middle.headers["Cache-Control"] == "private, no-store"
    tail = admin.get("/calls/sales-call/recording/download", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == whole[-10:]
    assert tail.headers["Content-Disposition"].startswith("attachment")
    beyond = admin.get("/calls/sales-call/recording", headers={"Range": f"bytes={len(whole)}-"})
    assert beyond.status_code == 416


def test_a_member_of_the_calls_department_may_listen_others_may_not(tmp_path: Path) -> None:
    app = office_app(tmp_path)
    member = agent(app, "101")
    assert member.get("/calls/sales-call/recording").status_code == 200
    assert member.get("/calls/sales-call/recording/download").status_code == 200
    listing = page(member, "/calls")
    assert "sales-call" in listing and "store-call" not in listing
    # Another department's call: as if it did not exist.
    assert member.get("/calls/store-call").status_code == 404
    assert member.get("/calls/store-call/recording").status_code == 404
    assert member.get("/calls/store-call/recording/download").status_code == 404
    outsider = agent(app, "103")
    assert outsider.get("/calls/sales-call/recording").status_code == 404
    assert outsider.get("/calls/store-call/recording").status_code == 200
    nobody = app.test_client()
    assert nobody.get("/calls/sales-call/recording").status_code == 302  # to the login


def test_a_call_without_a_recording_says_so(tmp_path: Path) -> None:
    db = tmp_path / "linebox.db"
    with Store.open(db) as store:
        store.replace_config(load_yaml(OFFICE))
        add_call(store, "plain", "200")
    admin = log_in_as_admin(app_over(db).test_client())
    assert 'id="no-recording"' in page(admin, "/calls/plain")
    assert admin.get("/calls/plain/recording").status_code == 404
    assert admin.get("/calls/nothing-here").status_code == 404


def test_the_admin_is_warned_from_ninety_percent_of_the_quota(tmp_path: Path) -> None:
    db = tmp_path / "linebox.db"
    with Store.open(db) as store:
        config = load_yaml(OFFICE)
        store.replace_config(config)
        add_call(store, "big", "200")
    record(db, "big", 120)  # 1.83 MB: 92 % of 2 MB
    with Store.open(db) as store:
        data = config_to_dict(store.load_config())
        data["recording"] = {"quota_mb": 10}
        store.replace_config(parse_config(data))
    admin = log_in_as_admin(app_over(db).test_client())
    assert 'id="quota-warning"' not in page(admin, "/calls")
    with Store.open(db) as store:
        data = config_to_dict(store.load_config())
        data["recording"] = {"quota_mb": 2}
        store.replace_config(parse_config(data))
    listing = page(admin, "/calls")
    assert 'id="quota-warning"' in listing and "oldest recordings are deleted" in listing
    # In Russian too.
    post(admin, "/language/ru", {"back": "/calls"}, form_page="/calls")
    assert "самые старые записи удаляются" in page(admin, "/calls")


def test_the_admin_replaces_the_warning_per_language_and_a_bad_file_changes_nothing(
    tmp_path: Path,
) -> None:
    from firmware.media import tones
    from firmware.media.audio import wav_bytes
    from firmware.recording import warning_greeting

    db = tmp_path / "linebox.db"
    with Store.open(db) as store:
        store.replace_config(load_yaml(OFFICE))
    app = app_over(db)
    admin = log_in_as_admin(app.test_client())
    listing = page(admin, "/calls")
    # The warning's section once, in the page's body: not in <title> or <head> as well.
    assert listing.count('id="recording-warning"') == 1
    title = listing.split("<title>", 1)[1].split("</title>", 1)[0]
    assert "<" not in title and "Calls" in title
    built_in = admin.get("/calls/warning/ru.wav")
    assert built_in.status_code == 200 and built_in.data[:4] == b"RIFF"
    upload = wav_bytes(tones.beep() * 20)
    response = post(admin, "/calls/warning/ru", {"greeting": (io.BytesIO(upload), "w.wav")},
                    form_page="/calls", content_type="multipart/form-data")
    assert response.status_code == 302
    with Store.open(db) as store:
        assert store.greeting(warning_greeting("ru")) is not None
        assert store.greeting(warning_greeting("en")) is None
    assert admin.get("/calls/warning/ru.wav").data != built_in.data
    bad = post(admin, "/calls/warning/en", {"greeting": (io.BytesIO(b"not a wav"), "x.wav")},
               form_page="/calls", content_type="multipart/form-data")
    assert bad.status_code == 400 and "does not fit" in bad.get_data(as_text=True)
    with Store.open(db) as store:
        assert store.greeting(warning_greeting("en")) is None
    post(admin, "/calls/warning/ru/delete", form_page="/calls")
    with Store.open(db) as store:
        assert store.greeting(warning_greeting("ru")) is None
    assert admin.get("/calls/warning/xx.wav").status_code == 404
    member = agent(app, "101")
    assert member.get("/calls/warning/ru.wav").status_code == 403
