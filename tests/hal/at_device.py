"""A tiny scripted AT device on the master side of a real pty, for the AT channel and serial
tests: it reads command lines (CR-ended; a PDU ends with Ctrl-Z), asks the test's `answer`
function what to say, and says it after the answer's delay — in order, as a real modem does one
command at a time, so a slow answer delays every answer after it. Unplugging closes the master:
the client's next read fails with EIO, as a vanished ttyUSB does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable
from pathlib import Path

# What the device says to a line: bytes now, (delay_s, bytes) later, or None for silence.
Answer = bytes | tuple[float, bytes] | None


class ScriptedModem:
    """Must be made inside a running loop; `close()` (or `unplug()`) when done."""

    def __init__(self, answer: Callable[[str], Answer], *, link: Path | None = None) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.slave_path = os.ttyname(self._slave)
        self.link = link
        if link is not None:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(self.slave_path)
        self.answer = answer
        self.received: list[str] = []
        self.closed = False
        self._buffer = b""
        self._loop = asyncio.get_running_loop()
        self._busy_until = 0.0  # the modem answers one line after another
        self._loop.add_reader(self.master, self._readable)

    @property
    def path(self) -> str:
        return str(self.link) if self.link is not None else self.slave_path

    def send(self, data: bytes) -> None:
        if not self.closed:
            os.write(self.master, data)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        self._buffer += data
        while True:
            ends = [i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\x1a")) if i >= 0]
            if not ends:
                return
            end = min(ends)
            keep_ctrl_z = self._buffer[end:end + 1] == b"\x1a"
            raw = self._buffer[: end + 1 if keep_ctrl_z else end]
            self._buffer = self._buffer[end + 1:]
            line = raw.decode("ascii", "replace").strip()
            if not line:
                continue
            self.received.append(line)
            self._schedule(self.answer(line))

    def _schedule(self, answer: Answer) -> None:
        if answer is None:
            return
        delay_s, data = (0.0, answer) if isinstance(answer, bytes) else answer
        at = max(self._loop.time() + delay_s, self._busy_until)
        self._busy_until = at
        self._loop.call_at(at, self.send, data)

    def unplug(self) -> None:
        """The stick is pulled: master and slave go, the symlink goes."""
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self.master)
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        os.close(self.master)
        os.close(self._slave)

    close = unplug


def ok_to_everything(line: str) -> Answer:
    return b"\r\nOK\r\n"
