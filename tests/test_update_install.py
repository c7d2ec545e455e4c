"""`Updater`'s install (firmware/update.py) when rauc misbehaves: a stand-in for rauc that
sleeps past the timeout, or prints a line longer than the pipe reader takes, ends the install
as failed with the reason, and the process is killed and reaped (no zombie, nothing left
running). The stand-in is a real executable shell script run as a real process: it exercises
our handling of the process and its output, not RAUC itself (tests/image/test_rauc.py does that
with the real rauc)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from firmware import update
from firmware.update_files import BUNDLE_NAME

WAIT_S = 10.0
POLL_S = 0.02


def stand_in(tmp_path: Path, body: str) -> Path:
    """An executable `rauc` that writes its pid to `rauc.pid` first, then does `body`."""
    script = tmp_path / "bin" / "rauc"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\necho $$ > "{tmp_path}/rauc.pid"\n{body}\n')
    script.chmod(0o755)
    return script


async def install(tmp_path: Path, script: Path) -> update.InstallState:
    update_dir = tmp_path / "update"
    update_dir.mkdir()
    (update_dir / BUNDLE_NAME).write_bytes(b"not a bundle")
    updater = update.Updater(update_dir, command=[str(script)])
    assert updater.start_install(update_dir / BUNDLE_NAME) == {"ok": True}
    deadline = time.monotonic() + WAIT_S
    while updater.state.phase == "installing":
        assert time.monotonic() < deadline, "the install never ended"
        await asyncio.sleep(POLL_S)
    return updater.state


def reaped(tmp_path: Path) -> bool:
    pid = int((tmp_path / "rauc.pid").read_text())
    return not Path(f"/proc/{pid}").exists()  # a zombie still has its /proc entry


def test_a_rauc_that_runs_past_the_timeout_is_killed_reaped_and_the_install_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(update, "INSTALL_TIMEOUT_S", 0.5)
    script = stand_in(tmp_path, 'echo "10% Checking bundle"\nexec sleep 60')
    state = asyncio.run(install(tmp_path, script))
    assert state.phase == "failed" and "timed out" in state.error
    assert state.percent == 10 and state.finished_at is not None
    assert reaped(tmp_path)


def test_a_line_longer_than_the_reader_takes_ends_the_install_as_failed(tmp_path: Path) -> None:
    # 100 kB without a newline: asyncio's readline gives up at 64 KiB (ValueError).
    script = stand_in(tmp_path, "head -c 100000 /dev/zero | tr '\\0' x\necho\nexec sleep 60")
    state = asyncio.run(install(tmp_path, script))
    assert state.phase == "failed" and "ValueError" in state.error
    assert reaped(tmp_path)
    assert not (tmp_path / "update" / BUNDLE_NAME).exists()  # refused: the upload is gone
