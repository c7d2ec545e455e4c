"""The web UI over HTTPS (issue 16): `linebox web --https` serves the pages over TLS with a
certificate the box made at its first start (key 0600 beside the database), the plain HTTP
port redirects there, the session cookie is Secure, and an admin's upload of a certificate and
key replaces it for the next connection — after checking the key matches and the certificate is
valid. The server is the real one (waitress with webui/tls.py's channel) on loopback."""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.e2e.linebox import REPO_ROOT
from tests.e2e.sipp import free_port
from tests.webui.conftest import ADMIN_PASSWORD, csrf_of, log_in_as_admin
from tests.webui.test_serve import web_process
from webui.tls import CERT_NAME, KEY_NAME, CertificateError, check_pair, tls_directory

ANSWER_TIMEOUT_S = 5.0


def make_pair(directory: Path, name: str, *, faketime: str | None = None,
              days: int = 30) -> tuple[bytes, bytes]:
    """A self-signed EC certificate and its key, made by openssl (under faketime for one
    made in the past)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    prefix = ["faketime", faketime] if faketime else []
    subprocess.run([*prefix, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", str(days), "-subj",
                    f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return cert.read_bytes(), key.read_bytes()


def der_of(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


# ------------------------------------------------------------------ the checks of an upload
def test_a_matching_valid_pair_passes(tmp_path: Path) -> None:
    check_pair(*make_pair(tmp_path, "office"))


def test_a_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    cert, _ = make_pair(tmp_path, "office")
    _, other_key = make_pair(tmp_path, "other")
    with pytest.raises(CertificateError, match="does not belong"):
        check_pair(cert, other_key)


def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    if shutil.which("faketime") is None:
        pytest.fail("faketime is missing: apt-get install faketime (make test does)")
    cert, key = make_pair(tmp_path, "old", faketime="2020-01-01 12:00:00", days=30)
    with pytest.raises(CertificateError, match="expired"):
        check_pair(cert, key)


def test_garbage_is_refused_with_a_reason(tmp_path: Path) -> None:
    cert, key = make_pair(tmp_path, "office")
    with pytest.raises(CertificateError, match="PEM certificate"):
        check_pair(b"hello", key)
    with pytest.raises(CertificateError, match="needed"):
        check_pair(cert, b"")


# ------------------------------------------------------------------ the upload page
def upload(client: FlaskClient, cert: bytes, key: bytes, *, csrf: str | None) -> object:
    data: dict[str, object] = {"certificate": (cert_io(cert), "office.crt"),
                               "key": (cert_io(key), "office.key")}
    if csrf is not None:
        data["csrf_token"] = csrf
    return client.post("/system/https", data=data, content_type="multipart/form-data")


def cert_io(data: bytes) -> object:
    import io

    return io.BytesIO(data)


def test_the_upload_page_is_for_the_admin_alone(client: FlaskClient) -> None:
    response = client.get("/system/https")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_an_upload_without_the_form_token_changes_nothing(app: Flask, tmp_path: Path) -> None:
    admin = log_in_as_admin(app.test_client())
    cert, key = make_pair(tmp_path / "made", "office")
    response = upload(admin, cert, key, csrf=None)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert not (tls_directory(app.config["DB"]) / CERT_NAME).exists()


def test_a_refused_pair_leaves_the_certificate_in_place(app: Flask, tmp_path: Path) -> None:
    admin = log_in_as_admin(app.test_client())
    cert, key = make_pair(tmp_path / "made", "first")
    assert upload(admin, cert, key, csrf=csrf_of(admin, "/system/https")
                  ).status_code == 302  # type: ignore[attr-defined]
    _, wrong_key = make_pair(tmp_path / "made", "second")
    other, _ = make_pair(tmp_path / "made", "third")
    response = upload(admin, other, wrong_key, csrf=csrf_of(admin, "/system/https"))
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "does not belong" in response.get_data(as_text=True)  # type: ignore[attr-defined]
    directory = tls_directory(app.config["DB"])
    assert (directory / CERT_NAME).read_bytes() == cert
    assert stat.S_IMODE((directory / KEY_NAME).stat().st_mode) == 0o600


# ------------------------------------------------------------------ the real server
@contextmanager
def linebox_web_https(db: Path) -> Iterator[tuple[int, int]]:
    """`linebox web` with HTTPS; both ports are bound before it serves either."""
    http_port, https_port = free_port(tcp=True), free_port(tcp=True)
    with web_process([sys.executable, "-m", "firmware", "web", "--db", str(db), "--http",
                      f"127.0.0.1:{http_port}", "--https", f"127.0.0.1:{https_port}"],
                     https_port):
        yield http_port, https_port


def insecure() -> ssl.SSLContext:
    # The box's own certificate is self-signed: the test compares it, it does not trust it.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def https(port: int) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, context=insecure(),
                                       timeout=ANSWER_TIMEOUT_S)


def served_certificate(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S) as raw, \
            insecure().wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = "linebox-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
             .encode() for name, value in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
              f'filename="{name}.pem"\r\nContent-Type: application/x-pem-file\r\n\r\n'.encode()
              + data + b"\r\n" for name, data in files.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def test_https_with_the_made_certificate_redirect_secure_cookie_and_upload(
        app: Flask, tmp_path: Path) -> None:
    db_path = Path(app.config["DB"])  # a small office with the admin's password
    with linebox_web_https(db_path) as (http_port, https_port):
        directory = tls_directory(db_path)
        made = (directory / CERT_NAME).read_bytes()
        assert stat.S_IMODE((directory / KEY_NAME).stat().st_mode) == 0o600
        assert served_certificate(https_port) == der_of(made)

        # Plain HTTP from another address: a redirect to the same path over HTTPS.
        plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=ANSWER_TIMEOUT_S,
                                           source_address=("127.0.0.2", 0))
        plain.request("GET", "/login?next=/system")
        answer = plain.getresponse()
        assert answer.status == 301
        assert answer.getheader("Location") == (
            f"https://127.0.0.1:{https_port}/login?next=/system")

        answer.read()
        # The box itself (the update's health probe) is served over plain HTTP.
        local = http.client.HTTPConnection("127.0.0.1", http_port, timeout=ANSWER_TIMEOUT_S)
        local.request("GET", "/login")
        assert local.getresponse().status == 200

        # Plain HTTP sent to the HTTPS port is dropped; the server goes on.
        with socket.create_connection(("127.0.0.1", https_port),
                                      timeout=ANSWER_TIMEOUT_S) as raw:
            raw.sendall(b"GET /login HTTP/1.1\r\nHost: box\r\n\r\n")
            try:
                reply = raw.recv(4096)
            except ConnectionResetError:  # closed with our bytes unread: a reset
                reply = b""
            assert not reply.startswith(b"HTTP/")

        # The login page over HTTPS: its session cookie is Secure, HttpOnly, SameSite=Strict.
        conn = https(https_port)
        conn.request("GET", "/login")
        page = conn.getresponse()
        body = page.read().decode()
        assert page.status == 200
        cookie = page.getheader("Set-Cookie") or ""
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        session = cookie.split(";", 1)[0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', body)
        assert token is not None
        conn.request("POST", "/login", body=(
            f"csrf_token={token.group(1)}&user=admin&password={ADMIN_PASSWORD}").encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": session})
        logged_in = conn.getresponse()
        logged_in.read()
        assert logged_in.status == 302, logged_in.status
        session = (logged_in.getheader("Set-Cookie") or session).split(";", 1)[0]

        # The admin uploads the office's own pair; the next connection is served with it.
        conn.request("GET", "/system/https", headers={"Cookie": session})
        form = conn.getresponse()
        form_body = form.read().decode()
        assert form.status == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', form_body)
        assert token is not None
        cert, key = make_pair(tmp_path / "office", "office.example")
        body_bytes, content_type = multipart({"csrf_token": token.group(1)},
                                             {"certificate": cert, "key": key})
        conn.request("POST", "/system/https", body=body_bytes,
                     headers={"Content-Type": content_type, "Cookie": session})
        uploaded = conn.getresponse()
        uploaded.read()
        assert uploaded.status == 302, uploaded.status
        conn.close()
        assert served_certificate(https_port) == der_of(cert)
        assert (directory / CERT_NAME).read_bytes() == cert
        assert stat.S_IMODE((directory / KEY_NAME).stat().st_mode) == 0o600


def test_without_openssl_the_web_ui_stays_reachable_over_plain_http(app: Flask) -> None:
    db = Path(app.config["DB"])
    http_port, https_port = free_port(tcp=True), free_port(tcp=True)
    # No openssl on PATH: no certificate can be made.
    process = subprocess.Popen(
        [sys.executable, "-m", "firmware", "web", "--db", str(db), "--http",
         f"127.0.0.1:{http_port}", "--https", f"127.0.0.1:{https_port}"],
        cwd=REPO_ROOT, env={"PATH": "/nonexistent", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20.0
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                plain = http.client.HTTPConnection("127.0.0.1", http_port,
                                                   timeout=ANSWER_TIMEOUT_S)
                plain.request("GET", "/login")
                answer = plain.getresponse()
                break
            except OSError:
                assert time.monotonic() < deadline, "the web UI did not start"
                time.sleep(0.1)
        assert answer.status == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "no HTTPS" in output and "openssl" in output
    assert not (tls_directory(db) / KEY_NAME).exists()
