"""SIP over UDP with each datagram's wait in the receive queue: the socket, read by the event
loop, hands every datagram on with how long it sat in the kernel's queue (SO_TIMESTAMPNS), the
overload control's signal (firmware/core/overload.py).

asyncio's own datagram transport reads with recvfrom, which drops the kernel's timestamp, so
the socket is read here with recvmsg; a wake-up drains a bounded batch, so a flood cannot hold
the loop from its timers and the TCP connections. Sends go straight to the socket: a full send
buffer loses the datagram as the network would, and SIP's retransmissions cover it
(RFC 3261 §17.1.1.2) — nothing piles up in memory behind a peer that is not reading.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable

from ..sip.transaction import Address

LOGGER = logging.getLogger(__name__)

# Linux's SO_TIMESTAMPNS (asm-generic/socket.h; SCM_TIMESTAMPNS is the same number): the time
# the datagram reached the socket, as a struct timespec in the ancillary data. Python's socket
# module does not name it.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")  # time_t, long: the kernel's "old" timespec, native sizes
MAX_DATAGRAM_BYTES = 65_535
# Datagrams read per wake-up: enough to drain a burst cheaply, few enough that a timer or a
# TCP message waits at most a few milliseconds behind them.
BATCH = 32

Receiver = Callable[[bytes, Address, "float | None"], None]


class UdpEndpoint:
    """The SIP UDP socket: `on_datagram(data, source, waited_s)` for each datagram read
    (`waited_s` None where the kernel gives no timestamp), `send` for what the core sends."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 on_datagram: Receiver, *, after_batch: Callable[[], None]) -> None:
        self.loop = loop
        self.sock = sock
        self.on_datagram = on_datagram
        self.after_batch = after_batch
        self.dropped_sends = 0
        self._ancillary = socket.CMSG_SPACE(_TIMESPEC.size)
        self.timestamps = False
        if sys.platform.startswith("linux"):
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self.timestamps = True
            except OSError as exc:
                LOGGER.warning("no receive timestamps on the SIP socket (%s): no overload "
                               "control", exc)
        sock.setblocking(False)
        self._family = sock.family
        loop.add_reader(sock.fileno(), self._readable)
        self._open = True

    def _readable(self) -> None:
        try:
            for _ in range(BATCH):
                try:
                    data, ancdata, _flags, address = self.sock.recvmsg(
                        MAX_DATAGRAM_BYTES, self._ancillary)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # ICMP port unreachable and friends: timers cover it
                    LOGGER.debug("UDP error: %s", exc)
                    continue
                waited_s: float | None = None
                for level, kind, value in ancdata:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and \
                            len(value) >= _TIMESPEC.size:
                        seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                        # The stamp is wall-clock; so is this (overload.py drops a sample
                        # that spans a clock step).
                        waited_s = time.time() - (seconds + nanoseconds * 1e-9)
                try:
                    self.on_datagram(data, Address("udp", address[0], address[1]), waited_s)
                except Exception:  # one datagram must not stop the socket being read
                    LOGGER.exception("handling a datagram from %s failed", address[:2])
        finally:
            self.after_batch()

    def send(self, data: bytes, destination: tuple[str, int]) -> None:
        if not self._open:
            return
        try:
            self.sock.sendto(data, destination)
        except (BlockingIOError, InterruptedError):
            self.dropped_sends += 1  # the send buffer is full: lost like on the wire
        except OSError as exc:  # unreachable, or an address of the other family
            LOGGER.debug("UDP to %s: %s", destination, exc)

    def close(self) -> None:
        """Stop reading and close; what was sent is in the kernel already."""
        if not self._open:
            return
        self._open = False
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
