"""The System update page where RAUC is absent (this development machine: no
/etc/rauc/system.conf), its access and its size bound; the installation itself is tested end to
end in tests/image/test_rauc.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.e2e.linebox import LineboxProcess
from tests.webui.conftest import admin_of, post


@pytest.fixture(autouse=True)
def no_rauc_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LINEBOX_RAUC_SYSTEM_CONF", str(tmp_path / "absent" / "system.conf"))


def test_without_rauc_the_page_says_so_plainly(box: LineboxProcess) -> None:
    page = admin_of(box.db).get("/system/update").get_data(as_text=True)
    assert 'id="update-unavailable"' in page
    assert "this system has no RAUC" in page
    assert 'name="bundle"' not in page


def test_without_rauc_an_upload_installs_nothing_and_says_why(box: LineboxProcess) -> None:
    admin = admin_of(box.db)
    response = post(admin, "/system/update", {"bundle": (io.BytesIO(b"x" * 5000), "a.raucb")},
                    form_page="/system/update", content_type="multipart/form-data")
    assert response.status_code == 409
    assert "RAUC is not installed on this system" in response.get_data(as_text=True)


def test_the_page_is_for_the_administrator_only(client: FlaskClient) -> None:
    response = client.get("/system/update")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_an_upload_over_the_size_bound_is_refused(box: LineboxProcess) -> None:
    admin = admin_of(box.db)
    admin.application.config["UPDATE_BUNDLE_MAX_BYTES"] = 64 * 1024
    response = post(admin, "/system/update",
                    {"bundle": (io.BytesIO(b"x" * 200 * 1024), "big.raucb")},
                    form_page="/system/update", content_type="multipart/form-data")
    assert response.status_code == 413
    assert "larger than" in response.get_data(as_text=True)
    assert not (box.db.parent / "update" / "upload.raucb").exists()
