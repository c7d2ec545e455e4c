"""Start a real Linebox daemon (a subprocess, as `linebox run` would) for end-to-end tests.

The daemon gets its own database in a temporary directory, a YAML configuration imported with
`--config`, and a free port on 127.0.0.1. `LineboxProcess.status()` asks it over the control
socket exactly as `linebox status --json` does. Only loopback addresses are used.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.sipp import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

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
    def __init__(self, workdir: Path, config: dict[str, Any], *, port: int | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.db = workdir / "linebox.db"
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        self.log_path = workdir / "linebox.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "firmware",
                    "run",
                    "--db",
                    str(self.db),
                    "--sip",
                    self.address,
                    "--config",
                    str(self.config_path),
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

    def wait_for(self, predicate: Any, timeout_s: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def calls(self) -> list[dict[str, Any]]:
        """Finished calls from the database (the daemon writes them once a second)."""
        import sqlite3

        with sqlite3.connect(self.db) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT * FROM calls ORDER BY started_at").fetchall()
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
def running_linebox(workdir: Path, config: dict[str, Any]) -> Iterator[LineboxProcess]:
    process = LineboxProcess(workdir, config)
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
