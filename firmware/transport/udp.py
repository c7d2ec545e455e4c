"""SIP over UDP, read ahead of the work: the socket, read by the event loop, hands every
datagram on with how long it waited since it reached the socket (SO_TIMESTAMPNS), the overload
control's signal (firmware/core/overload.py).

Two stages. Each wake-up first reads what the socket holds (up to READ_AHEAD datagrams) and
shows each to `screen` with the wait ahead of it — the longer of its own time in the kernel's
queue and the age of the oldest datagram queued here, known the moment it is read — which is
the overload control's signal and first look, a few microseconds: while the box is behind, a
stranger's new call is answered 503 right there, so the excess hears its answer within
milliseconds instead of after the queue. What `screen` leaves is queued here in one of two lanes
and handled WORK_BATCH (or WORK_SLICE_S) at a time, the loop getting back to its timers, the TCP
connections and this socket between batches: while the box is behind, calls in progress and the
office's own phones and lines go ahead of strangers' admitted new work (the `first` lane).
The reading never stops for a full queue — its waits are what tells the overload control
that the box is behind, and its screen what sheds the excess. A full queue (MAX_QUEUED) is
reported (`on_full`: the overload control sheds from then on) and the datagram screened again;
what would still join it is dropped as a full socket buffer would drop it (SIP's
retransmissions cover it), what is always served only past MAX_FIRST.

asyncio's own datagram transport reads with recvfrom, which drops the kernel's timestamp; hence
recvmsg here. Sends go straight to the socket: a full send buffer loses the datagram as the
network would, and SIP's retransmissions cover it (RFC 3261 §17.1.1.2) — nothing piles up in
memory behind a peer that is not reading.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable

from ..core.overload import FIRST, HANDLED
from ..sip.transaction import Address

LOGGER = logging.getLogger(__name__)

# Linux's SO_TIMESTAMPNS (asm-generic/socket.h; SCM_TIMESTAMPNS is the same number): the time
# the datagram reached the socket, as a struct timespec in the ancillary data. Python's socket
# module does not name it.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")  # time_t, long: the kernel's "old" timespec, native sizes
MAX_DATAGRAM_BYTES = 65_535
# Datagrams read per wake-up (each screened: microseconds), and handled per loop turn (each
# up to a call's setup): at most WORK_BATCH, and no more once WORK_SLICE_S has gone by — the
# socket is read (and the excess told 503) again after at most one slice, however slow the
# machine (a Pi handles a few INVITEs in 2 ms, a PC a dozen; issue 16's target for the 503 is
# 10 ms), and a timer or a TCP message waits no longer behind them either.
READ_AHEAD = 256
WORK_BATCH = 32
WORK_SLICE_S = 0.002
# Read ahead of the work at most this many: a fraction of a second of a Pi's work — admitted
# work queued longer than T1 (500 ms) would be retransmitted before it is handled. What is
# always served may queue further.
MAX_QUEUED = 512
MAX_FIRST = 4 * MAX_QUEUED

Receiver = Callable[[bytes, Address], None]
Screen = Callable[[bytes, Address, "float | None"], str]


class UdpEndpoint:
    """The SIP UDP socket: `screen(data, source, waited_s)` first (HANDLED: dealt with, FIRST:
    ahead of the rest; `waited_s` None where the kernel gives no timestamp), then, in turn,
    `on_datagram(data, source)`; `after_batch()` after each stage's batch; `on_full()` when
    the queue is full (then the datagram is screened again); `send` for what the core
    sends."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 on_datagram: Receiver, *, screen: Screen,
                 after_batch: Callable[[], None],
                 on_full: Callable[[], None] = lambda: None) -> None:
        self.loop = loop
        self.sock = sock
        self.on_datagram = on_datagram
        self.screen = screen
        self.after_batch = after_batch
        self.on_full = on_full
        self.dropped_sends = 0
        # Read, not yet handled: (data, source, kernel timestamp in wall-clock seconds).
        self._first: deque[tuple[bytes, Address, float | None]] = deque()
        self._queue: deque[tuple[bytes, Address, float | None]] = deque()
        self._handling: asyncio.Handle | None = None
        self.dropped_queue_full = 0
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
        self._open = True
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            for _ in range(READ_AHEAD):
                try:
                    data, ancdata, _flags, address = self.sock.recvmsg(
                        MAX_DATAGRAM_BYTES, self._ancillary)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # ICMP port unreachable and friends: timers cover it
                    LOGGER.debug("UDP error: %s", exc)
                    continue
                stamp: float | None = None
                for level, kind, value in ancdata:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and \
                            len(value) >= _TIMESPEC.size:
                        seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                        stamp = seconds + nanoseconds * 1e-9
                source = Address("udp", address[0], address[1])
                waited_s: float | None = None
                if stamp is not None:
                    # Wall-clock stamps, wall-clock now (overload.py drops a sample that spans
                    # a clock step); the queue's head says how long the work ahead has waited.
                    heads = [lane[0][2] for lane in (self._first, self._queue) if lane]
                    oldest = min((h for h in heads if h is not None), default=stamp)
                    waited_s = time.time() - min(stamp, oldest)
                lane = self._screen(data, source, waited_s)
                if lane == HANDLED:
                    continue
                if lane != FIRST and self.queued >= MAX_QUEUED:
                    # Full: the box is behind whatever the waits say (a bursty flood drains
                    # the queue between its bursts). Told so, the overload control sheds,
                    # and this datagram is screened again: what is always served goes
                    # ahead, a stranger's new work hears 503 instead of nothing.
                    self.on_full()
                    lane = self._screen(data, source, waited_s)
                    if lane == HANDLED:
                        continue
                if self.queued >= (MAX_FIRST if lane == FIRST else MAX_QUEUED):
                    self.dropped_queue_full += 1  # as a full socket buffer would
                    continue
                (self._first if lane == FIRST else self._queue).append((data, source, stamp))
        finally:
            self.after_batch()  # the 503s leave now, not after the queue
        if self.queued and self._handling is None:
            self._handling = self.loop.call_soon(self._handle)

    @property
    def queued(self) -> int:
        return len(self._first) + len(self._queue)

    def _screen(self, data: bytes, source: Address, waited_s: float | None) -> str | None:
        try:
            return self.screen(data, source, waited_s)
        except Exception:  # one datagram must not stop the socket being read
            LOGGER.exception("screening a datagram from %s failed", source.host)
            return None

    def _handle(self) -> None:
        self._handling = None
        ends = time.perf_counter() + WORK_SLICE_S
        try:
            for _ in range(WORK_BATCH):
                lane = self._first or self._queue
                if not lane or time.perf_counter() >= ends:
                    break
                data, source, _ = lane.popleft()
                try:
                    self.on_datagram(data, source)
                except Exception:  # one datagram must not stop the others being handled
                    LOGGER.exception("handling a datagram from %s failed", source.host)
        finally:
            self.after_batch()
        if self.queued:
            self._handling = self.loop.call_soon(self._handle)

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
        self.loop.remove_reader(self.sock.fileno())
        self._open = False
        if self._handling is not None:
            self._handling.cancel()
        self._first.clear()
        self._queue.clear()
        self.sock.close()
