"""The system page's restore against hostile files (issue 9 item 8): each is answered with the
page and the reason (400), never an internal error, and changes nothing."""

from __future__ import annotations

import html
import io
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware.store import Store, dump_yaml
from tests.store.hostile import HOSTILE_FILES
from tests.webui.conftest import csrf_of, store_config


def stored(app: Flask) -> tuple[int, str]:
    with Store.open(app.config["DB"]) as store:
        return store.config_revision(), dump_yaml(store_config(app))


@pytest.mark.parametrize("name", list(HOSTILE_FILES))
def test_a_hostile_backup_is_refused_with_the_reason_and_changes_nothing(
    admin: FlaskClient, app: Flask, name: str,
) -> None:
    content, message = HOSTILE_FILES[name]
    if name == "bytes that are not UTF-8":
        message = "not UTF-8 text"  # the page reads the upload as UTF-8 itself
    before = stored(app)
    response = admin.post("/system/restore", data={
        "csrf_token": csrf_of(admin, "/system"), "file": (io.BytesIO(content), "backup.yaml"),
    }, content_type="multipart/form-data")
    assert response.status_code == 400
    error = re.search(r'<p class="error" id="e-file">([^<]*)</p>',
                      response.get_data(as_text=True))
    assert error is not None
    assert error.group(1).startswith("Nothing was changed: ")
    assert message in html.unescape(error.group(1))
    assert stored(app) == before
