"""The system page: version, service state, the configuration backup (as `linebox config
export`), its restore (checked as `linebox config import`; a broken file changes nothing and
says why), and the daemon's recent log lines."""

from __future__ import annotations

import importlib.metadata
import io
import re
from pathlib import Path

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from firmware.store import Store, dump_yaml
from tests.e2e.linebox import LineboxProcess
from tests.webui.conftest import ADMIN_PASSWORD, OFFICE_YAML, admin_of, csrf_of, post, store_config
from webui.system import LOG_LINES, tail_lines


def revision(app: Flask) -> int:
    store = Store.open(app.config["DB"])
    try:
        return store.config_revision()
    finally:
        store.close()


def upload(client: FlaskClient, content: bytes, filename: str = "backup.yaml") -> TestResponse:
    return client.post("/system/restore", data={
        "csrf_token": csrf_of(client, "/system"),
        "file": (io.BytesIO(content), filename),
    }, content_type="multipart/form-data")


def log_file(app: Flask) -> Path:
    return Path(app.config["DB"]).with_suffix(".log")


# --- the page ----------------------------------------------------------------------------------


def test_the_page_shows_the_version_service_and_configuration(admin: FlaskClient) -> None:
    response = admin.get("/system")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'<dd id="version">Linebox {importlib.metadata.version("linebox")}</dd>' in html
    assert '<span class="error">not running</span>' in html
    assert "3 employees, 1 departments, 1 numbers, 1 trunks" in html


def test_the_page_is_in_russian_by_default(client: FlaskClient) -> None:
    post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    html = client.get("/system").get_data(as_text=True)
    for text in ("Резервная копия", "Скачать настройки", "Восстановление", "не запущена",
                 "Журнала пока нет"):
        assert text in html


def test_the_system_pages_are_for_the_admin_only(client: FlaskClient) -> None:
    assert client.get("/system/backup").headers["Location"].startswith("/login")
    post(client, "/login", {"user": "101", "password": "pw-101-secret"})
    assert client.get("/system").status_code == 403
    assert client.get("/system/backup").status_code == 403
    response = client.post("/system/restore", data={
        "csrf_token": csrf_of(client, "/me"), "file": (io.BytesIO(b"x"), "b.yaml")})
    assert response.status_code == 403


# --- backup ------------------------------------------------------------------------------------


def test_the_backup_is_what_linebox_config_export_prints(admin: FlaskClient, app: Flask) -> None:
    response = admin.get("/system/backup")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert re.fullmatch(r'attachment; filename="linebox-config-\d{8}-\d{4}\.yaml"',
                        response.headers["Content-Disposition"])
    assert response.get_data(as_text=True) == dump_yaml(store_config(app))
    assert "pw-101-secret" in response.get_data(as_text=True)  # the whole configuration


# --- restore -----------------------------------------------------------------------------------


def test_a_backup_restores_the_whole_configuration(admin: FlaskClient, app: Flask) -> None:
    backup = admin.get("/system/backup").get_data(as_text=True)
    data = yaml.safe_load(backup)
    data["extensions"].append({"number": "104", "name": "Пётр", "password": "pw-104-secret"})
    data["departments"][0]["name"] = "Продажи"
    response = upload(admin, yaml.safe_dump(data, allow_unicode=True).encode())
    assert response.status_code == 302
    html = admin.get("/system").get_data(as_text=True)
    assert "The configuration was restored from backup.yaml." in html
    config = store_config(app)
    assert [e.number for e in config.extensions] == ["101", "102", "103", "104"]
    assert config.departments[0].name == "Продажи"


def test_restoring_the_backup_as_it_was_round_trips(admin: FlaskClient, app: Flask) -> None:
    backup = admin.get("/system/backup").get_data()
    assert upload(admin, backup).status_code == 302
    assert admin.get("/system/backup").get_data() == backup


@pytest.mark.parametrize(("content", "message"), [
    (OFFICE_YAML.replace("port: 5060", "port: 0").encode(),
     "Nothing was changed: trunks[0].port: must be between 1 and 65535, got 0"),
    (OFFICE_YAML.replace('number: "103"', 'number: "1x3"').encode(),
     "Nothing was changed: extensions[2].number: must be 2 to 8 digits"),
    (b"extensions: [", "Nothing was changed: YAML syntax error at line 1, column 14"),
    (b"", "Nothing was changed: the file is empty"),
    (b"foo: 1\n", "Nothing was changed: foo: unknown key"),
    ("extensions: []\n# Привет".encode("cp1251"),
     "Nothing was changed: the file is not UTF-8 text."),
])
def test_a_broken_backup_changes_nothing_and_says_why(
    admin: FlaskClient, app: Flask, content: bytes, message: str,
) -> None:
    before = (revision(app), dump_yaml(store_config(app)))
    response = upload(admin, content)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    match = re.search(r'<p class="error" id="e-file">([^<]*)</p>', html)
    assert match and match.group(1).startswith(message), match and match.group(1)
    assert (revision(app), dump_yaml(store_config(app))) == before


def test_a_restore_without_a_file_asks_for_one(admin: FlaskClient) -> None:
    response = post(admin, "/system/restore", {}, form_page="/system")
    assert response.status_code == 400
    assert ('<p class="error" id="e-file">Choose the backup file (.yaml) to restore.</p>'
            in response.get_data(as_text=True))


def test_a_file_over_the_size_limit_is_refused_and_changes_nothing(
    admin: FlaskClient, app: Flask,
) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 4096
    before = revision(app)
    response = upload(admin, b"# padding\n" * 1000)
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert ('<p class="error" id="e-file">Nothing was changed: the file is larger than 4 KB'
            in html)
    assert revision(app) == before


def test_a_restore_without_the_forms_token_is_refused(admin: FlaskClient, app: Flask) -> None:
    before = revision(app)
    response = admin.post("/system/restore", data={"file": (io.BytesIO(b"x: 1"), "b.yaml")},
                          content_type="multipart/form-data")
    assert response.status_code == 400
    assert revision(app) == before


# --- the log -----------------------------------------------------------------------------------


def test_without_a_log_file_the_page_says_there_is_none_yet(admin: FlaskClient,
                                                            app: Flask) -> None:
    html = admin.get("/system").get_data(as_text=True)
    assert 'id="no-log"' in html and "There is no log yet" in html
    assert str(log_file(app)) in html


def test_the_page_shows_the_last_200_log_lines(admin: FlaskClient, app: Flask) -> None:
    log_file(app).write_text("".join(f"2026-05-04 10:00:00 INFO line {i} <b>\n"
                                     for i in range(1, 251)), encoding="utf-8")
    html = admin.get("/system").get_data(as_text=True)
    log = html[html.index('<pre class="ops-log" id="log">'):html.index("</pre>")]
    assert log.count("\n") == LOG_LINES - 1
    assert "INFO line 51 &lt;b&gt;" in log and "INFO line 250 &lt;b&gt;" in log
    assert "line 50 " not in log
    assert f"The last {LOG_LINES} lines of" in html


def test_an_empty_log_says_so(admin: FlaskClient, app: Flask) -> None:
    log_file(app).write_bytes(b"")
    assert "The log is empty." in admin.get("/system").get_data(as_text=True)


def test_the_tail_reads_only_the_end_of_a_large_log(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_bytes(b"".join(b"%06d " % i + b"x" * 90 + b"\n" for i in range(30_000)))
    lines = tail_lines(path, count=200, max_bytes=64 * 1024)
    assert lines is not None and len(lines) == 200
    assert lines[0].startswith("029800 ") and lines[-1].startswith("029999 ")
    few = tail_lines(path, count=5000, max_bytes=64 * 1024)
    assert few is not None and 0 < len(few) < 5000  # never more than max_bytes read
    assert all(len(line) == 97 for line in few)  # whole lines only


def test_the_tail_of_a_log_without_a_final_newline_or_in_another_encoding(
    tmp_path: Path,
) -> None:
    path = tmp_path / "odd.log"
    path.write_bytes("первая\nвторая\n".encode() + b"\xff\xfe broken\nlast")
    assert tail_lines(path, count=3) == ["вторая", "\ufffd\ufffd broken", "last"]
    assert tail_lines(tmp_path / "none.log") is None


# --- with a real daemon ------------------------------------------------------------------------


def test_a_restore_reaches_the_running_daemon_and_its_log_shows(box: LineboxProcess) -> None:
    client = admin_of(box.db)
    html = client.get("/system").get_data(as_text=True)
    assert re.search(r"running \(process \d+, SIP on 127\.0\.0\.1:\d+\)", html)

    data = yaml.safe_load(client.get("/system/backup").get_data(as_text=True))
    data["extensions"][0]["name"] = "Анна"
    assert upload(client, yaml.safe_dump(data, allow_unicode=True).encode()).status_code \
        == 302
    box.wait_for(lambda: any(a["name"] == "Анна" for a in box.status()["agents"]), 10,
                 "the daemon to apply the restored configuration")
    html = client.get("/system").get_data(as_text=True)
    assert 'id="log"' in html and "configuration revision" in html
