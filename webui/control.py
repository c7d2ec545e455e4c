"""Asking the running daemon over its control socket (the same JSON lines `linebox status` and
`linebox agent` use). The socket lives beside the database."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from flask import current_app


class DaemonUnavailable(Exception):
    """The daemon is not running (or not answering) on this database."""


def socket_path(db_path: str | Path) -> Path:
    return Path(db_path).with_suffix(".sock")


def ask(request: dict[str, Any], *, db_path: str | Path | None = None,
        timeout_s: float | None = None) -> dict[str, Any]:
    """Send one request and return the daemon's answer; `DaemonUnavailable` if none comes."""
    path = socket_path(db_path or current_app.config["DB"])
    timeout = timeout_s if timeout_s is not None else current_app.config["CONTROL_TIMEOUT_S"]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
    except OSError as error:
        raise DaemonUnavailable(str(error)) from error
    try:
        answer: dict[str, Any] = json.loads(data)
    except ValueError as error:
        raise DaemonUnavailable(f"unreadable answer: {error}") from error
    return answer


def status() -> dict[str, Any]:
    answer = ask({"command": "status"})
    if not answer.get("ok"):
        raise DaemonUnavailable(str(answer.get("error", "no status")))
    result: dict[str, Any] = answer["status"]
    return result
