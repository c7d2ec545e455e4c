"""The web UI's server limits against a real waitress on loopback (issue 9 item 7): half-sent
requests (slowloris) do not stop `/login` from answering, a request trickling in is cut at its
deadline, idle connections are closed, one address holds only so many connections, and the
forwarded scheme is believed from the trusted proxy alone.

Connections come from several loopback addresses (127.0.0.2, 127.0.0.3, ...) as from several
clients. Counts and waits are bounded; the shorter limits some tests need are set through
`make_server` in a server process of their own, the shipped ones through `linebox web`."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from firmware.store import Store, load_yaml
from tests.e2e.linebox import REPO_ROOT
from tests.e2e.sipp import free_port
from tests.webui.conftest import ADMIN_PASSWORD, OFFICE_YAML
from webui.security import ADMIN_PASSWORD_SETTING, hash_password

START_TIMEOUT_S = 15.0
ANSWER_BOUND_S = 5.0
HALF_SENT = b"GET /login HTTP/1.1\r\nHost: box\r\nUser-Agent: slow"  # never finished
SLOWLORIS_CONNECTIONS = 110  # the count: more than waitress's default limit of 100
# A server with short limits, so that a test sees them act within seconds.
SHORT_LIMITS_SERVER = """
import sys
from webui import create_app
from webui.serve import WebLimits, make_server
limits = WebLimits(head_timeout_s=2.0, channel_timeout_s=2, cleanup_interval_s=1,
                   connections_per_address=5)
server = make_server(create_app({"DB": sys.argv[1]}), "127.0.0.1", int(sys.argv[2]),
                     limits=limits, trusted_proxy=sys.argv[3] or None)
server.run()
"""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "box.db"
    with Store.open(path) as store:
        store.replace_config(load_yaml(OFFICE_YAML))
        store.put_setting(ADMIN_PASSWORD_SETTING, hash_password(ADMIN_PASSWORD))
    return path


@contextmanager
def web_process(command: list[str], port: int) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the web UI did not start"
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def linebox_web(db: Path) -> Iterator[int]:
    """`linebox web` as an admin starts it: the shipped limits."""
    port = free_port(tcp=True)
    with web_process([sys.executable, "-m", "firmware", "web", "--db", str(db), "--http",
                      f"127.0.0.1:{port}"], port):
        yield port


@contextmanager
def short_limits_web(db: Path, trusted_proxy: str = "") -> Iterator[int]:
    port = free_port(tcp=True)
    with web_process([sys.executable, "-c", SHORT_LIMITS_SERVER, str(db), str(port),
                      trusted_proxy], port):
        yield port


def connect(port: int, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_BOUND_S,
                                    source_address=(source, 0))
    return sock


def half_sent(stack: ExitStack, port: int, source: str) -> socket.socket:
    sock = stack.enter_context(connect(port, source))
    sock.sendall(HALF_SENT)
    return sock


def get(port: int, path: str, source: str = "127.0.0.1",
        headers: str = "") -> tuple[int, str]:
    """One whole GET within the bound: (status, the answer's head)."""
    with connect(port, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: box\r\n{headers}Connection: close\r\n\r\n"
                     .encode())
        data = b""
        deadline = time.monotonic() + ANSWER_BOUND_S
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 "), f"no answer to GET {path}: {data!r}"
    return int(head.split()[1]), head


def closed_by_server(sock: socket.socket, within_s: float, *, trickle: bytes = b"") -> bool:
    """Whether the server closes `sock` within `within_s` (while we send `trickle` a byte at a
    time every 0.2 s, if given)."""
    deadline = time.monotonic() + within_s
    sock.settimeout(0.2)
    position = 0
    while time.monotonic() < deadline:
        try:
            if position < len(trickle):
                sock.send(trickle[position:position + 1])
                position += 1
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:  # reset: closed as well
            return True
    return False


def test_half_sent_requests_do_not_stop_login_from_answering(db: Path) -> None:
    with linebox_web(db) as port, ExitStack() as stack:
        sources = [f"127.0.0.{2 + n // 20}" for n in range(SLOWLORIS_CONNECTIONS)]
        for source in sources:
            half_sent(stack, port, source)
        started = time.monotonic()
        status, _head = get(port, "/login")
        assert status == 200
        assert time.monotonic() - started < ANSWER_BOUND_S


def test_one_address_holds_only_so_many_connections(db: Path) -> None:
    from webui.serve import DEFAULT_LIMITS

    limit = DEFAULT_LIMITS.connections_per_address
    with linebox_web(db) as port, ExitStack() as stack:
        socks = [half_sent(stack, port, "127.0.0.9") for _ in range(limit + 6)]
        time.sleep(1.5)  # waitress looks at new connections on its next turn (≤ 1 s)
        closed = [sock for sock in socks if closed_by_server(sock, 0.3)]
        assert len(closed) == 6
        assert get(port, "/login", source="127.0.0.10")[0] == 200


def test_a_request_trickling_in_is_cut_at_its_deadline(db: Path) -> None:
    with short_limits_web(db) as port, ExitStack() as stack:
        sock = stack.enter_context(connect(port, "127.0.0.2"))
        # A byte every 0.2 s keeps the connection busy forever for waitress's idle timeout;
        # the head deadline (2 s) ends it.
        trickle = b"GET /login HTTP/1.1\r\nHost: box\r\n" + b"X-Padding: " + b"a" * 200
        assert closed_by_server(sock, 6.0, trickle=trickle)
        assert get(port, "/login")[0] == 200


def test_idle_connections_are_closed_after_the_channel_timeout(db: Path) -> None:
    with short_limits_web(db) as port, ExitStack() as stack:
        idle = stack.enter_context(connect(port, "127.0.0.2"))
        started = time.monotonic()
        assert closed_by_server(idle, 8.0)
        assert time.monotonic() - started >= 1.5  # not before the timeout (2 s)


def test_a_whole_request_is_answered_under_the_short_limits(db: Path) -> None:
    with short_limits_web(db) as port:
        assert get(port, "/login")[0] == 200


def login_cookie(port: int, source: str, headers: str) -> str:
    """Log in as the admin over raw HTTP; the Set-Cookie of the answer."""
    status, head = get(port, "/login", source, headers)
    assert status == 200
    cookie = re.search(r"Set-Cookie: (session=[^;]+)", head)
    assert cookie
    with connect(port, source) as sock:
        sock.sendall(f"GET /login HTTP/1.1\r\nHost: box\r\nCookie: {cookie.group(1)}\r\n"
                     f"{headers}Connection: close\r\n\r\n".encode())
        page = b""
        while chunk := sock.recv(65536):
            page += chunk
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert token
    body = (f"user=admin&password={ADMIN_PASSWORD.replace(' ', '+')}&csrf_token="
            f"{token.group(1).decode()}")
    with connect(port, source) as sock:
        sock.sendall(f"POST /login HTTP/1.1\r\nHost: box\r\nCookie: {cookie.group(1)}\r\n"
                     f"{headers}Content-Type: application/x-www-form-urlencoded\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
                     .encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 302"), head
    found = re.search(r"Set-Cookie: (session=[^\r\n]+)", head)
    assert found
    return found.group(1)


def test_the_cookie_is_secure_when_the_trusted_proxy_says_https(db: Path) -> None:
    forwarded = "X-Forwarded-Proto: https\r\nX-Forwarded-For: 192.0.2.7\r\n"
    with short_limits_web(db, trusted_proxy="127.0.0.1") as port:
        assert "; Secure" in login_cookie(port, "127.0.0.1", forwarded)
        # The same header from anyone but the proxy is dropped.
        assert "; Secure" not in login_cookie(port, "127.0.0.2", forwarded)


def test_without_a_trusted_proxy_a_forwarded_proto_is_ignored(db: Path) -> None:
    with short_limits_web(db) as port:
        cookie = login_cookie(port, "127.0.0.1", "X-Forwarded-Proto: https\r\n")
        assert "; Secure" not in cookie and "HttpOnly" in cookie
