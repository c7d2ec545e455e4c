"""RTP ports for the box's own media sessions.

A session takes an even port (RFC 3550 §11: RTP on an even port, RTCP on the next odd one)
from a configured range. `PortRange` only does the bookkeeping; the daemon's `SocketPorts`
(in firmware.daemon) binds a UDP socket on each port it hands out and skips ports something
else holds.
"""

from __future__ import annotations

from typing import Protocol

DEFAULT_FIRST_PORT = 10000
DEFAULT_LAST_PORT = 10999


class MediaPorts(Protocol):
    def open(self) -> int | None:
        """A free RTP port, now in use; None when none is left."""

    def close(self, port: int) -> None: ...


class PortRange:
    def __init__(self, first: int = DEFAULT_FIRST_PORT, last: int = DEFAULT_LAST_PORT) -> None:
        if first % 2:
            first += 1
        if not 1024 <= first < last <= 65535:
            raise ValueError(f"bad RTP port range {first}-{last}")
        self.first = first
        self.last = last
        self.in_use: set[int] = set()
        self._next = first

    def candidates(self) -> list[int]:
        """Free ports, starting after the last one handed out (a port just closed is not
        reused at once: late packets of the old session would land in the new one)."""
        ports = list(range(self.first, self.last, 2))
        start = (self._next - self.first) // 2
        return [p for p in ports[start:] + ports[:start] if p not in self.in_use]

    def take(self, port: int) -> None:
        self.in_use.add(port)
        self._next = port + 2 if port + 2 < self.last else self.first

    def open(self) -> int | None:
        for port in self.candidates():
            self.take(port)
            return port
        return None

    def close(self, port: int) -> None:
        self.in_use.discard(port)
