"""Start a real Linebox daemon (a subprocess, as `linebox run` would) for end-to-end tests.

The daemon gets its own database in a temporary directory, a YAML configuration imported with
`--config` (or none, as `make run` starts it: then the first start creates extension 101 and
prints its password), and a free port on 127.0.0.1. `LineboxProcess.status()` asks it over the
control socket exactly as `linebox status --json` does. Only loopback addresses are used.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.sipp import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
# Bounds, not paces: each is polled and returns as soon as the daemon is there. A start is
# ~0.6 s on a quiet machine; on two cores shared with a full test run it was measured at 6 s,
# and at 8.4 s under libfaketime (which reads its file at every clock call: the clock-jump
# tests), so a 10 s bound failed now and then in clean-clone runs.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
# How long a test waits for the daemon to do or show what it is going to (a record, a queue
# entry, a stored message): the same kind of bound.
DAEMON_WAIT_S = 20.0

# What `linebox run` prints once when it seeds an empty database (firmware/cli.py).
FIRST_START_PASSWORD_RE = re.compile(r"^Extension 101 SIP password \(shown once\): (\S+)$",
                                     re.MULTILINE)
# What it prints at every start while the web UI has no administrator yet.
SETUP_CODE_RE = re.compile(r"^Web UI setup code \(the first-run page asks for it\): (\S+)$",
                           re.MULTILINE)

AGENT_PASSWORDS = {f"10{i}": f"secret-10{i}-pw" for i in range(1, 10)}


def base_config(**overrides: Any) -> dict[str, Any]:
    """Nine extensions (101..109), department 200 with 101 and 102, provider trunk at 127.0.0.2."""
    config: dict[str, Any] = {
        "extensions": [
            {"number": number, "name": f"Agent {number}", "password": password}
            for number, password in AGENT_PASSWORDS.items()
        ],
        "departments": [
            {
                "number": "200",
                "name": "Sales",
                "strategy": "ring_all",
                "ring_timeout_s": 20,
                "members": ["101", "102"],
            },
        ],
        "trunks": [
            {
                "name": "provider",
                "type": "sip",
                "host": "127.0.0.2",
                "port": 5060,
                "username": "box",
                "password": "provider-pw",
                "register": False,
                "channels": 10,
                # The tests' provider is several SIPp processes on 127.0.0.2, each on a port of
                # its own; test_security checks the default, address *and* port.
                "inbound_match": "address",
            },
        ],
        "numbers": [
            {"number": "74951234567", "trunk": "provider", "channels": 3, "destination": "200"},
        ],
        # Tests send bursts from 127.0.0.1 before anything is registered there.
        "security": {"rate_limit_requests": 10000, "rate_limit_window_s": 2.0, "ban_s": 300.0},
        "sip": {"digest_algorithms": ["MD5", "SHA-256"]},
    }
    config.update(overrides)
    return config


class LineboxProcess:
    def __init__(self, workdir: Path, config: dict[str, Any] | None, *, port: int | None = None,
                 http_port: int | None = None, extra_args: Sequence[str] = (),
                 sip_host: str = "127.0.0.1", command_prefix: Sequence[str] = ()) -> None:
        # `command_prefix` runs the daemon through another program (`nsenter -t PID -n --`: in
        # a network namespace the test made, where SIP may listen on `sip_host` there).
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.db = workdir / "linebox.db"
        self.port = port or free_port(tcp=True)  # the daemon binds SIP over UDP and TCP
        self.address = f"{sip_host}:{self.port}"
        self.config_path = workdir / "config.yaml"
        imported = []
        if config is not None:
            self.config_path.write_text(yaml.safe_dump(config, allow_unicode=True),
                                        encoding="utf-8")
            imported = ["--config", str(self.config_path)]
        # The daemon's stdout and stderr (its own log file, beside the database, is
        # linebox.log; it holds the same lines).
        self.log_path = workdir / "stdout.log"
        self.http_port = http_port
        http = ["--http", f"127.0.0.1:{http_port}"] if http_port is not None else []
        # Media ports of their own, apart from other tests' daemons and SIPp's media ports.
        first = random.randrange(20000, 30000, 100)
        self.rtp_ports = (first, first + 99)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [
                    *command_prefix,
                    sys.executable,
                    "-m",
                    "firmware",
                    "run",
                    "--db",
                    str(self.db),
                    "--sip",
                    self.address,
                    *imported,
                    "--rtp-ports",
                    f"{first}-{first + 99}",
                    *http,
                    *extra_args,
                ],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        sock_path = self.db.with_suffix(".sock")
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"linebox exited at start:\n{self.log()}")
            if sock_path.exists():
                try:
                    self.status()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"linebox did not start within {START_TIMEOUT_S} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def first_start_password(self) -> str:
        """Extension 101's SIP password as the first start on an empty database prints it."""
        match = FIRST_START_PASSWORD_RE.search(self.log())
        assert match, f"no first-start password printed:\n{self.log()[-3000:]}"
        return match.group(1)

    def setup_code(self) -> str:
        """The web UI's first-run setup code, as the daemon printed it on its console."""
        match = SETUP_CODE_RE.search(self.log())
        assert match, f"no setup code printed:\n{self.log()[-3000:]}"
        return match.group(1)

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.db.with_suffix(".sock")))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        answer: dict[str, Any] = json.loads(data)
        return answer

    def status(self) -> dict[str, Any]:
        answer = self.control({"command": "status"})
        assert answer["ok"], answer
        status: dict[str, Any] = answer["status"]
        return status

    def channels_in_use(self) -> dict[str, int]:
        return {c["key"]: c["in_use"] for c in self.status()["channels"]}

    def wait_for(self, predicate: Any, timeout_s: float = DAEMON_WAIT_S,
                 what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def calls(self, *, in_progress: bool = False) -> list[dict[str, Any]]:
        """Finished calls from the database. A call is written when it is answered too (issue
        16: record_state 'in_progress', outcome 'answered', no end yet) and completed when it
        ends, which on a loaded machine may come a moment after what the test waited for (a
        voicemail message stored first): those rows count only with `in_progress`."""
        import sqlite3

        finished = "" if in_progress else " WHERE record_state != 'in_progress'"
        with sqlite3.connect(self.db) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(f"SELECT * FROM calls{finished} ORDER BY started_at").fetchall()
            out = []
            for row in rows:
                legs = conn.execute(
                    "SELECT * FROM call_legs WHERE call_id = ? ORDER BY id", (row["id"],)
                ).fetchall()
                out.append({**dict(row), "legs": [dict(leg) for leg in legs]})
            return out

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


@contextmanager
def running_linebox(workdir: Path, config: dict[str, Any] | None, *,
                    http_port: int | None = None,
                    extra_args: Sequence[str] = (), port: int | None = None,
                    sip_host: str = "127.0.0.1",
                    command_prefix: Sequence[str] = ()) -> Iterator[LineboxProcess]:
    process = LineboxProcess(workdir, config, http_port=http_port, extra_args=extra_args,
                             port=port, sip_host=sip_host, command_prefix=command_prefix)
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, f"linebox exited with {code}:\n{process.log()[-3000:]}"
        assert "Traceback" not in process.log(), process.log()[-5000:]


_STAMP_RE = re.compile(r"^-+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", re.MULTILINE)


def message_log_events(path: Path) -> list[tuple[float, str, str]]:
    """(unix time, 'sent'|'received', first line) for every message in a SIPp -trace_msg log."""
    text = path.read_text(encoding="utf-8", errors="replace")
    events: list[tuple[float, str, str]] = []
    parts = _STAMP_RE.split(text)
    # split() yields [prefix, stamp1, body1, stamp2, body2, ...]
    for stamp, body in zip(parts[1::2], parts[2::2], strict=True):
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        lines = [line for line in body.splitlines() if line.strip()]
        if not lines:
            continue
        direction = "sent" if "sent" in lines[0] else "received"
        first = lines[1] if len(lines) > 1 else ""
        events.append((when, direction, first))
    return events


# ------------------------------------------------------------------ raw SIP over loopback sockets
# For tests that must control every byte (torture messages, scanners, floods): build a request,
# send it from a socket bound to a chosen 127.x address, read what comes back. Every read is
# bounded in time and in the number of messages.

# How long a raw request waits for its answer: reads end at the answer, so this bounds only a
# silence (tests that expect silence pass their own, shorter wait).
RAW_REPLY_TIMEOUT_S = 5.0
MAX_REPLIES_READ = 500
MAX_TCP_READ_BYTES = 1024 * 1024


class SipReply:
    """One message the gateway sent back: its bytes, status code (-1 if not a response) and
    header fields in order (names as written; compare them case-insensitively)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "surrogateescape").split("\r\n")
        self.start_line = lines[0]
        parts = self.start_line.split(" ", 2)
        is_response = len(parts) >= 2 and parts[0] == "SIP/2.0" and parts[1].isdigit()
        self.status = int(parts[1]) if is_response else -1
        self.reason = parts[2] if is_response and len(parts) == 3 else ""
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip(), value.strip()))

    def header_values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID")

    def __repr__(self) -> str:
        return f"<SipReply {self.start_line!r} Call-ID={self.call_id!r}>"


def udp_socket(host: str = "127.0.0.1") -> socket.socket:
    """A UDP socket bound to `host` on a free port (the gateway answers to the source)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def new_branch() -> str:
    return "z9hG4bK-e2e-" + os.urandom(8).hex()


def options_request(
    linebox: LineboxProcess, sock: socket.socket, *, call_id: str | None = None,
    user_agent: str = "linebox-e2e", transport: str = "UDP", method: str = "OPTIONS",
) -> tuple[bytes, str]:
    """An ordinary out-of-dialog request (OPTIONS unless `method` says otherwise) and its
    Call-ID. Via names the socket's own address, as a well-behaved phone's would."""
    host, port = sock.getsockname()[:2]
    call_id = call_id or f"e2e-{os.urandom(8).hex()}@{host}"
    lines = [
        f"{method} sip:{linebox.address} SIP/2.0",
        f"Via: SIP/2.0/{transport} {host}:{port};branch={new_branch()};rport",
        "Max-Forwards: 70",
        f"From: <sip:probe@{host}>;tag={os.urandom(4).hex()}",
        f"To: <sip:{linebox.address}>",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:probe@{host}:{port}>",
        "Accept: application/sdp",
        f"User-Agent: {user_agent}",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode(), call_id


def read_udp_replies(
    sock: socket.socket, timeout_s: float, *, stop: Any = None, limit: int = MAX_REPLIES_READ
) -> list[SipReply]:
    """Datagrams arriving within `timeout_s`; returns early once `stop(reply)` is true."""
    deadline = time.monotonic() + timeout_s
    replies: list[SipReply] = []
    while len(replies) < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            break
        reply = SipReply(data)
        replies.append(reply)
        if stop is not None and stop(reply):
            break
    return replies


def final_reply_to(call_id: str) -> Any:
    """A `stop` predicate: the final (>= 200) response carrying `call_id`."""
    return lambda reply: reply.status >= 200 and reply.call_id == call_id


def ask_udp(
    linebox: LineboxProcess, sock: socket.socket, data: bytes, call_id: str,
    timeout_s: float = RAW_REPLY_TIMEOUT_S,
) -> SipReply | None:
    """Send one request and return the final response with its Call-ID (None on silence)."""
    sock.sendto(data, ("127.0.0.1", linebox.port))
    replies = read_udp_replies(sock, timeout_s, stop=final_reply_to(call_id))
    return next((r for r in replies if r.status >= 200 and r.call_id == call_id), None)


def ask_options(
    linebox: LineboxProcess, host: str = "127.0.0.1", timeout_s: float = RAW_REPLY_TIMEOUT_S,
    *, retransmit: bool = False,
) -> SipReply | None:
    """A normal OPTIONS from a fresh socket on `host`: the final answer, or None on silence.

    With `retransmit`, sent again as a real UA does over UDP (RFC 3261 §17.1.2.2, Timer E:
    after 0.5 s, 1 s, 2 s, then every 4 s) until the answer or `timeout_s`: for a box that may
    drop a datagram of a burst as a full socket buffer would."""
    with udp_socket(host) as sock:
        data, call_id = options_request(linebox, sock)
        if not retransmit:
            return ask_udp(linebox, sock, data, call_id, timeout_s)
        deadline = time.monotonic() + timeout_s
        interval = 0.5
        while (remaining := deadline - time.monotonic()) > 0:
            sock.sendto(data, ("127.0.0.1", linebox.port))
            replies = read_udp_replies(sock, min(interval, remaining),
                                       stop=final_reply_to(call_id))
            final = next((r for r in replies if r.status >= 200 and r.call_id == call_id),
                         None)
            if final is not None:
                return final
            interval = min(interval * 2, 4.0)
        return None


def read_tcp_replies(
    conn: socket.socket, timeout_s: float, *, count: int | None = None
) -> tuple[list[SipReply], bool]:
    """Responses framed by Content-Length from a TCP connection, until `count` of them arrived,
    the peer closed (second value True), or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    buffer = b""
    replies: list[SipReply] = []
    closed = False
    while len(buffer) < MAX_TCP_READ_BYTES and (count is None or len(replies) < count):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        conn.settimeout(remaining)
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        buffer += chunk
        while b"\r\n\r\n" in buffer:
            head, _, rest = buffer.partition(b"\r\n\r\n")
            match = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head)
            length = int(match.group(1)) if match else 0
            if len(rest) < length:
                break
            replies.append(SipReply(head + b"\r\n\r\n" + rest[:length]))
            buffer = rest[length:]
    if buffer.strip():
        replies.append(SipReply(buffer))  # an unframed tail: shown in assertion messages
    return replies, closed


def tcp_connection(linebox: LineboxProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", linebox.port), timeout=RAW_REPLY_TIMEOUT_S)
