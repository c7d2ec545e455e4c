"""Run Debian's softphone, baresip (1.0.0), headless as a peer for end-to-end tests.

`Baresip` starts one baresip with a private config directory (`-f DIR`) holding a `config` that
loads only what a headless phone on loopback needs and an `accounts` file with one account. Its
microphone is a WAV file (the `aufile` source), what it hears is written to WAV files by the
`sndfile` filter (1.0.0 has no file player; `aubridge` stands in for the sound card), and the
test drives it over its `ctrl_tcp` socket: netstring-framed JSON commands (`dial`, `hangup`,
`quit`: the `menu` module's) and the events it sends to every client (`CALL_ESTABLISHED`, ...).
baresip's own `-t` ends it after a while, whatever happens to the test. Only loopback addresses
are used: SIP, RTP, the control socket, and DNS (pointed at 127.0.0.1, though numeric URIs need
none).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.sipp import free_port

BARESIP_EXE = "baresip"
BARESIP_MISSING_HINT = (
    "baresip is not installed (no `baresip` on PATH): install the Debian package baresip, "
    "e.g. `make deb-test` or `apt-get install baresip`"
)
BARESIP_MODULES_DIR = Path("/usr/lib/baresip/modules")
START_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
# baresip quits by itself after this long (`-t`), so a test that hangs leaves no phone behind.
LIFETIME_S = 120
MAX_EVENTS = 10_000

# `sip_listen` with port 0: UDP, TCP and TLS each on a port of their own (with a fixed port
# 1.0.0 also takes the next one for TLS). `net_interface` keeps the Contact and the SDP on
# 127.0.0.1 instead of the machine's first interface.
CONFIG_TEMPLATE = """\
poll_method epoll
sip_listen 127.0.0.1:0
net_interface 127.0.0.1
dns_server 127.0.0.1:53
call_local_timeout 60
audio_source aufile,{source}
audio_player aubridge,nil
audio_alert aubridge,nil
module_path {modules}
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{control_port}
snd_path {recordings}
"""


class BaresipMissingError(RuntimeError):
    """The `baresip` binary is not on PATH."""


def baresip_executable() -> str:
    """Full path of baresip, or BaresipMissingError saying how to install it."""
    path = shutil.which(BARESIP_EXE)
    if path is None:
        raise BaresipMissingError(BARESIP_MISSING_HINT)
    return path


def account_line(user: str, registrar: str, password: str, *, auto_answer: bool = False,
                 register_s: int = 60) -> str:
    """One line of baresip's `accounts` file: `user` at `registrar` (HOST:PORT), digest
    password `password`, re-registering every `register_s`; `auto_answer` picks up at once."""
    line = f"<sip:{user}@{registrar}>;auth_pass={password};regint={register_s}"
    return line + (";answermode=auto" if auto_answer else "")


def netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


def split_netstrings(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete netstrings at the front of `buffer`, and what is left of it."""
    payloads: list[bytes] = []
    while True:
        length, colon, rest = buffer.partition(b":")
        if not colon:
            return payloads, buffer
        if not length.isdigit():
            raise ValueError(f"not a netstring: {buffer[:40]!r}")
        size = int(length)
        if len(rest) < size + 1:
            return payloads, buffer
        if rest[size:size + 1] != b",":
            raise ValueError(f"netstring without its comma: {buffer[:40]!r}")
        payloads.append(rest[:size])
        buffer = rest[size + 1:]


class Baresip:
    """One baresip process with one account, driven over its control socket."""

    def __init__(self, workdir: Path, *, account: str, audio_source: Path,
                 lifetime_s: int = LIFETIME_S) -> None:
        self.workdir = workdir
        self.recordings_dir = workdir / "heard"
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        self.control_port = free_port(tcp=True)
        (workdir / "config").write_text(CONFIG_TEMPLATE.format(
            source=audio_source, modules=BARESIP_MODULES_DIR, control_port=self.control_port,
            recordings=self.recordings_dir), encoding="utf-8")
        (workdir / "accounts").write_text(account + "\n", encoding="utf-8")
        self.log_path = workdir / "baresip.log"
        self._events: list[dict[str, Any]] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._tokens = 0
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [baresip_executable(), "-f", str(workdir), "-t", str(lifetime_s)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            self._control = self._connect()
        except BaseException:
            self.stop()
            raise
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"baresip exited at start:\n{self.log()}")
            try:
                return socket.create_connection(("127.0.0.1", self.control_port), timeout=1.0)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"baresip's control socket did not open in {START_TIMEOUT_S} s:\n"
                           f"{self.log()}")

    def _read(self) -> None:
        buffer = b""
        self._control.settimeout(0.2)
        while True:
            try:
                chunk = self._control.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            payloads, buffer = split_netstrings(buffer + chunk)
            with self._changed:
                for payload in payloads:
                    message = json.loads(payload)
                    if message.get("response"):
                        self._responses[str(message.get("token"))] = message
                    elif message.get("event") and len(self._events) < MAX_EVENTS:
                        self._events.append(message)
                self._changed.notify_all()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def command(self, command: str, params: str = "") -> str:
        """Run one command and return its output; a command baresip refuses fails the test."""
        self._tokens += 1
        token = f"t{self._tokens}"
        request = {"command": command, "params": params, "token": token}
        self._control.sendall(netstring(json.dumps(request).encode()))
        with self._changed:
            answered = self._changed.wait_for(lambda: token in self._responses,
                                              COMMAND_TIMEOUT_S)
            response = self._responses.pop(token, None)
        assert answered and response is not None, (
            f"baresip did not answer {command!r} in {COMMAND_TIMEOUT_S} s:\n{self.log()}")
        assert response.get("ok"), f"baresip refused {command} {params}: {response}"
        return str(response.get("data", ""))

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._changed:
            return [e for e in self._events if kind is None or e.get("type") == kind]

    def wait_for_event(self, kind: str, timeout_s: float) -> dict[str, Any]:
        """The first event of this type (it may have come before the call)."""
        with self._changed:
            self._changed.wait_for(lambda: any(e.get("type") == kind for e in self._events),
                                   timeout_s)
        found = self.events(kind)
        assert found, (f"no {kind} from baresip in {timeout_s} s; events: "
                       f"{[e.get('type') for e in self.events()]}\n{self.log()[-3000:]}")
        return found[0]

    def recording(self, direction: str = "dec") -> Path:
        """The WAV file of the call: "dec" is what the phone heard, "enc" what it sent."""
        found = sorted(self.recordings_dir.glob(f"dump-*-{direction}.wav"))
        assert len(found) == 1, f"expected one {direction} recording, found {found}"
        return found[0]

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        control = getattr(self, "_control", None)
        if control is not None:
            control.close()
            self._reader.join(2)
        return self.popen.returncode


@contextmanager
def running_baresip(workdir: Path, *, account: str, audio_source: Path) -> Iterator[Baresip]:
    phone = Baresip(workdir, account=account, audio_source=audio_source)
    try:
        yield phone
    finally:
        phone.stop()
