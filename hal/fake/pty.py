"""A pseudo-terminal that plays a USB serial port: a slave path, an optional by-id symlink, and
a master end the fake device reads and writes without blocking.

Unplugging closes the master (the client's next read fails with EIO, as a vanished ttyUSB
does) and removes the symlink; a new FakePort is the replug, usually on another /dev/pts number,
the way ttyUSB renumbering moves a stick.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tty
from pathlib import Path

LOGGER = logging.getLogger(__name__)

READ_CHUNK_BYTES = 4096


class FakePort:
    """One pty pair. The device side keeps the slave open too, so the pty stays alive (and its
    settings stick) while no client has the port open — a real port exists before it is opened."""

    def __init__(self, link: Path | None = None) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no line discipline: the device, not the kernel, echoes
        os.set_blocking(self.master, False)
        self.slave_path = os.ttyname(self._slave)
        self.link = link
        if link is not None:
            link.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(self.slave_path)
        self.closed = False

    @property
    def path(self) -> str:
        """What a client opens: the symlink when there is one (like /dev/serial/by-id)."""
        return str(self.link) if self.link is not None else self.slave_path

    def read(self) -> bytes:
        """What the client wrote since the last read (b"" when nothing)."""
        try:
            return os.read(self.master, READ_CHUNK_BYTES)
        except BlockingIOError:
            return b""
        except OSError as error:
            if error.errno == errno.EIO:  # Linux: no slave open at this instant
                return b""
            raise

    def write(self, data: bytes) -> int:
        """Writes what fits now; returns how many bytes went (the rest is the caller's)."""
        try:
            return os.write(self.master, data)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        """Unplug: the master goes (the client sees EIO), the symlink goes."""
        if self.closed:
            return
        self.closed = True
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        os.close(self.master)
        os.close(self._slave)
