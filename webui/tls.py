"""HTTPS for the web UI: the box's certificate, and TLS on waitress's connections.

The box may face the office network or the internet, and its pages carry the admin's password
and session. At the first start with HTTPS it makes a self-signed certificate of its own (an
EC P-256 key, ten years, with the `openssl` command line: the `cryptography` package is not a
dependency, and OpenSSL is on the box anyway for Python's `ssl`), kept beside the database on
the data partition, the key readable by the box's user alone (0600). The admin may upload a
certificate and key of the office's own (`webui/tls_page.py`); they are checked (the key matches
the certificate, the certificate has not expired) and replace the made ones at once.

waitress has no TLS of its own (its maintainers leave it to a proxy), so `TlsChannel` wraps each
accepted socket in a non-blocking `ssl.SSLSocket` and lets waitress's loop drive the handshake
through its reads: OpenSSL completes a server handshake inside the first `SSL_read`. What one
read decrypts may hold more than waitress asked for (a TLS record is up to 16 KB), and poll()
would not wake for data already in OpenSSL's buffer, so a read drains `pending()` as well.
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from .serve import GuardedChannel

LOGGER = logging.getLogger("linebox.web")

CERT_NAME = "web-certificate.pem"
KEY_NAME = "web-key.pem"
SELF_SIGNED_DAYS = 3650
OPENSSL_TIMEOUT_S = 30.0  # key generation on a Pi 3 takes well under a second
MAX_PEM_BYTES = 64 * 1024  # a certificate chain and its key: a few KB


class CertificateError(ValueError):
    """An uploaded certificate or key the box refuses, with the reason in the message."""


def tls_directory(db_path: str | Path) -> Path:
    """Where the web UI's certificate lives: beside the database, on the data partition."""
    return Path(db_path).resolve().parent / "tls"


def _openssl(*args: str, input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is not installed: no certificate can be made")
    return subprocess.run([openssl, *args], input=input_bytes, capture_output=True,
                          timeout=OPENSSL_TIMEOUT_S, check=False)


def ensure_certificate(directory: Path, host_names: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """The certificate and key in `directory`, made (self-signed) when there are none."""
    cert, key = directory / CERT_NAME, directory / KEY_NAME
    if cert.exists() and key.exists():
        return cert, key
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    names = ["DNS:linebox.local", "DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    names += [f"IP:{name}" if name.replace(".", "").isdigit() or ":" in name else f"DNS:{name}"
              for name in host_names if name and name not in ("0.0.0.0", "::")]
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        new_cert, new_key = Path(scratch) / "cert.pem", Path(scratch) / "key.pem"
        result = _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", str(SELF_SIGNED_DAYS), "-subj", "/O=Linebox/CN=linebox.local",
            "-addext", "subjectAltName=" + ",".join(dict.fromkeys(names)),
            "-keyout", str(new_key), "-out", str(new_cert))
        if result.returncode != 0:
            raise RuntimeError("openssl could not make the web UI's certificate: "
                               + result.stderr.decode(errors="replace").strip())
        install(directory, new_cert.read_bytes(), new_key.read_bytes())
    LOGGER.info("web UI: made a self-signed certificate in %s", directory)
    return cert, key


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def install(directory: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Put a checked pair in place: each written whole beside its place, then renamed over
    it (a power cut leaves the old pair or the new, never half a file)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in ((KEY_NAME, key_pem), (CERT_NAME, cert_pem)):
        temporary = directory / f".{name}.new"
        _write_private(temporary, data)
        temporary.replace(directory / name)


def check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """Raise CertificateError unless `key_pem` is the private key of `cert_pem` (the first
    certificate of the chain) and that certificate is valid now."""
    if not cert_pem.strip() or not key_pem.strip():
        raise CertificateError("both the certificate and the key are needed")
    if len(cert_pem) > MAX_PEM_BYTES or len(key_pem) > MAX_PEM_BYTES:
        raise CertificateError("a certificate or key file is larger than 64 KB")
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise CertificateError("the certificate is not a PEM certificate")
    if b"PRIVATE KEY-----" not in key_pem or b"ENCRYPTED" in key_pem:
        raise CertificateError("the key is not an unencrypted PEM private key")
    with tempfile.TemporaryDirectory() as scratch:
        cert, key = Path(scratch) / "cert.pem", Path(scratch) / "key.pem"
        cert.write_bytes(cert_pem)
        _write_private(key, key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as error:
            if "KEY_VALUES_MISMATCH" in str(error) or "key values mismatch" in str(error):
                raise CertificateError("the key does not belong to the certificate") from None
            raise CertificateError(f"the certificate or key is unreadable ({error.reason})"
                                   ) from None
        # -checkend 0: exit 1 when the certificate has expired by now.
        expired = _openssl("x509", "-noout", "-checkend", "0", "-in", str(cert))
        if expired.returncode != 0:
            raise CertificateError("the certificate has expired")


def describe(cert: Path) -> dict[str, Any]:
    """Subject, issuer, names and end of validity of a PEM certificate, for the admin."""
    result = _openssl("x509", "-noout", "-subject", "-issuer", "-enddate", "-nameopt",
                      "oneline", "-ext", "subjectAltName", "-in", str(cert))
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode(errors="replace").strip() or "unreadable")
    lines = result.stdout.decode(errors="replace").splitlines()
    facts: dict[str, Any] = {"subject": "", "issuer": "", "not_after": "", "names": ""}
    for number, line in enumerate(lines):
        key, _, value = line.partition("=")
        if key in ("subject", "issuer"):
            facts[key] = value.strip()
        elif key == "notAfter":
            facts["not_after"] = value.strip()
        elif "Subject Alternative Name" in line and number + 1 < len(lines):
            facts["names"] = lines[number + 1].strip()
    facts["self_signed"] = facts["subject"] == facts["issuer"]
    return facts


def server_context(directory: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(directory / CERT_NAME, directory / KEY_NAME)
    return context


@dataclass
class TlsState:
    """The context new connections are wrapped with; replaced whole when a new pair is
    installed (connections already open keep theirs)."""

    directory: Path
    context: ssl.SSLContext

    def reload(self) -> None:
        self.context = server_context(self.directory)
        LOGGER.info("web UI: certificate in %s loaded", self.directory)


class TlsChannel(GuardedChannel):
    """waitress's connection (with our guards) over TLS."""

    tls: ClassVar[TlsState]

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        sock = self.tls.context.wrap_socket(sock, server_side=True,
                                            do_handshake_on_connect=False)
        super().__init__(server, sock, addr, adj, map=map)

    def handle_read(self) -> None:
        while True:
            try:
                data = self.socket.recv(self.adj.recv_bytes)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return  # the handshake (or a record) needs more from the client
            except (ssl.SSLError, OSError) as error:
                # Plain HTTP on the HTTPS port, a client refusing our certificate, a reset.
                LOGGER.debug("web UI: TLS connection from %s closed: %s", self.addr, error)
                self.handle_close()
                return
            if not data:
                self.handle_close()
                return
            self.last_activity = time.time()  # waitress's idle timeout counts from here
            self.received(data)
            if self.will_close or not self.socket.pending():
                return

    def send(self, data: bytes, do_close: bool = True) -> int:
        try:
            return int(self.socket.send(data))
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return 0
        except (ssl.SSLError, OSError) as error:
            LOGGER.debug("web UI: TLS send to %s failed: %s", self.addr, error)
            if do_close:
                self.handle_close()
            return 0


# The box's own processes (the update's health probe, an SSH tunnel's end): their requests never
# leave the machine, and they could read the database anyway.
BOX_ITSELF = frozenset({"127.0.0.1", "::1"})


def redirect_app(https_port: int, local_app: Any = None) -> Any:
    """A WSGI app answering every request with a redirect to the same path over HTTPS; with
    `local_app`, requests from the box itself (BOX_ITSELF) are served by it instead."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if local_app is not None and environ.get("REMOTE_ADDR") in BOX_ITSELF:
            return local_app(environ, start_response)
        host = str(environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or "localhost")
        # Drop the port the request came to: [v6]:port, v6 bare, name:port, name.
        if host.startswith("["):
            host = host[:host.index("]") + 1] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        port = "" if https_port == 443 else f":{https_port}"
        path = quote(str(environ.get("PATH_INFO") or "/"), safe="/-_.~!$&'()*+,;=:@%")
        query = str(environ.get("QUERY_STRING") or "")
        location = f"https://{host}{port}{path}" + (f"?{query}" if query else "")
        start_response("301 Moved Permanently", [("Location", location),
                                                 ("Content-Type", "text/plain"),
                                                 ("Content-Length", "0")])
        return [b""]

    return app
