"""SIP over TCP (RFC 3261 §18.3) with every resource a peer can hold bounded.

A peer on a stream holds a file descriptor, a read buffer, a write buffer and a place in the
event loop for as long as it likes unless the box says otherwise. So: connections are limited
in total and per source address (the excess is closed at once); a connection that completes no
message (or RFC 5626 keep-alive ping) for `idle_s` is closed unless a live registration uses
it; a message begun must be complete within `message_timeout_s` (slowloris); the framer bounds
a message's head and body; reading stops while the peer leaves our answers unread, and a peer
that lets the write buffer pass a hard cap is dropped. The total is further capped so that a
reserve of file descriptors always stays free for what calls need (RTP sockets, SQLite, the
control socket): a flood of connections must not cost a call its media port.

The timing decisions are pure (`ConnectionTimes`, `now` passed in); the asyncio side holds the
sockets, sweeps the connections every `SWEEP_INTERVAL_S` and logs refusals at a bounded rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from ..sip.errors import SipError
from ..sip.message import StreamFramer, error_response_bytes
from ..sip.transaction import Address

LOGGER = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 0.5
# Above the high mark the peer is not reading our answers: stop reading its requests until the
# buffer drains below the low mark (asyncio's pause_writing/resume_writing).
WRITE_BUFFER_HIGH_BYTES = 64 * 1024
WRITE_BUFFER_LOW_BYTES = 16 * 1024
# What the box itself sends (requests to a phone) still lands while reading is paused; a peer
# that lets this much pile up is dropped rather than held in memory.
WRITE_BUFFER_MAX_BYTES = 512 * 1024
# A closed connection waits for its last answer to leave; a peer that never reads it is cut.
CLOSE_GRACE_S = 5.0
LOG_INTERVAL_S = 10.0
# Descriptors kept free beside one per RTP port: the database with its WAL and shared-memory
# files (two connections), the log, stdio, the listening sockets, control-socket clients,
# webhook and CRM requests in worker threads, the event loop's own.
FD_RESERVE_BASE = 128
# Where the hard limit is "unlimited" the kernel still caps a process (fs.nr_open, 2**20 by
# default); asking for more fails.
FD_SOFT_LIMIT_MAX = 1 << 20

IDLE = "idle"
SLOW_MESSAGE = "message incomplete"
STUCK_CLOSING = "last answer not taken"


@dataclass(frozen=True, kw_only=True)
class TcpLimits:
    """The bounds of SIP over TCP (the `security.tcp_*` settings)."""

    max_connections: int
    max_per_address: int
    idle_s: float
    message_timeout_s: float


@dataclass(slots=True, kw_only=True)
class ConnectionTimes:
    """When a connection last showed life, and the verdict of the sweep (`overdue`)."""

    active_at: float
    partial_since: float | None = None
    closing_since: float | None = None

    def received(self, now: float, *, messages: int, pings: int, pending: bool) -> None:
        # Only complete messages and complete CRLFCRLF pings are activity: a byte a second
        # is not (RFC 5626 §3.5.1 defines the ping as the double CRLF).
        if messages or pings:
            self.active_at = now
        if not pending:
            self.partial_since = None
        elif messages or self.partial_since is None:
            self.partial_since = now  # the clock of a message starts with its first byte

    def sent(self, now: float) -> None:
        self.active_at = now

    def closing(self, now: float) -> None:
        if self.closing_since is None:
            self.closing_since = now

    def overdue(self, now: float, limits: TcpLimits) -> str | None:
        if self.closing_since is not None:
            return STUCK_CLOSING if now - self.closing_since > CLOSE_GRACE_S else None
        if self.partial_since is not None and now - self.partial_since > limits.message_timeout_s:
            return SLOW_MESSAGE
        if now - self.active_at > limits.idle_s:
            return IDLE
        return None


class RateLimitedLog:
    """One INFO line per `interval_s` for a kind of event a flood repeats (refused and cut
    connections): the first is logged with its details, later ones are counted into the next."""

    def __init__(self, what: str, interval_s: float = LOG_INTERVAL_S) -> None:
        self.what = what
        self.interval_s = interval_s
        self._next_at = float("-inf")
        self._unlogged = 0

    def event(self, now: float, peer: str, reason: str) -> bool:
        """Log (or count) one event; True when a line was written."""
        if now < self._next_at:
            self._unlogged += 1
            return False
        more = f" ({self._unlogged} more since the last report)" if self._unlogged else ""
        LOGGER.info("%s TCP connection from %s: %s%s", self.what, peer, reason, more)
        self._unlogged = 0
        self._next_at = now + self.interval_s
        return True


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (no privilege needed); the soft limit
    in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_SOFT_LIMIT_MAX if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            LOGGER.warning("cannot raise the open-file limit from %d to %d: %s", soft, target,
                           exc)
    return FD_SOFT_LIMIT_MAX if soft == resource.RLIM_INFINITY else soft


def descriptors_open() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: the reserve alone must cover what is open
        return 0


def descriptor_reserve(rtp_ports: int) -> int:
    """Descriptors to keep free for calls: one per RTP port the box may open, and the rest."""
    return FD_RESERVE_BASE + rtp_ports


def connection_cap(soft_limit: int, open_now: int, reserve: int) -> int:
    """How many TCP connections fit under the open-file limit with `reserve` left over."""
    return max(0, soft_limit - open_now - reserve)


class SipStreamConnection(asyncio.Protocol):
    """One TCP connection: frames what arrives, hands messages to the owner, writes answers."""

    def __init__(self, owner: TcpTransport, *, outbound: Address | None = None) -> None:
        self.owner = owner
        self.outbound = outbound
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Address | None = outbound
        self.pending: list[bytes] = []  # what the box sends before an outbound connect is done
        self.backlog: deque[bytes] = deque()  # framed, not yet handed out (peer not reading)
        self.writing_paused = False
        self.times = ConnectionTimes(active_at=owner.loop.time())
        self.counted_host: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        stream = self.transport = cast(asyncio.Transport, transport)
        host, port = stream.get_extra_info("peername")[:2]
        self.peer = Address("tcp", host, port)
        if self.outbound is None:
            refusal = self.owner.refusal(host)
            if refusal is not None:
                self.owner.refused_log.event(self.owner.loop.time(), host, refusal)
                stream.abort()
                return
        stream.set_write_buffer_limits(high=WRITE_BUFFER_HIGH_BYTES, low=WRITE_BUFFER_LOW_BYTES)
        self.owner.add(self, (host, port))
        pending, self.pending = self.pending, []
        for data in pending:
            self.send(data)

    def data_received(self, data: bytes) -> None:
        stream, peer = self.transport, self.peer
        assert stream is not None and peer is not None
        if stream.is_closing():
            return
        messages = self.framer.feed(data)
        pings, self.framer.keepalive_pings = self.framer.keepalive_pings, 0
        now = self.owner.loop.time()
        self.times.received(now, messages=len(messages), pings=pings,
                            pending=self.framer.pending_bytes > 0)
        if pings:
            self.send(b"\r\n" * pings)  # RFC 5626 §4.4.1: a CRLF pong for each ping
        self.backlog.extend(messages)
        self._deliver()

    def _deliver(self) -> None:
        """Hand framed messages to the owner while the peer reads our answers. One segment may
        hold hundreds of pipelined requests: answering them all at once would pile answers up
        for a peer that does not read them, so the rest wait until the write buffer drains
        (at most one segment's worth, as reading stops meanwhile)."""
        stream, peer = self.transport, self.peer
        assert stream is not None and peer is not None
        while self.backlog and not self.writing_paused and not stream.is_closing():
            self.owner.on_message(self.backlog.popleft(), peer)
        error = self.framer.error
        if error is not None and not self.backlog and not stream.is_closing():
            # RFC 3261 §18.3: the stream cannot be re-synchronised; answer if we can, then close.
            try:
                reply = error_response_bytes(error.partial, error.status_hint)
            except SipError as exc:  # the writer refused what the peer sent: close unanswered
                LOGGER.warning("no %d answer to %s: %s", error.status_hint, peer.host, exc)
                reply = None
            if reply is not None:
                stream.write(reply)
            now = self.owner.loop.time()
            self.owner.cut_log.event(now, peer.host, str(error))
            self.close(now)

    def pause_writing(self) -> None:
        # The peer is not reading our answers: stop reading its requests until it does.
        self.writing_paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.transport is None or self.transport.is_closing():
            return
        self._deliver()
        if not self.writing_paused and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.remove(self)

    def send(self, data: bytes) -> None:
        stream = self.transport
        if stream is None:
            if sum(map(len, self.pending)) + len(data) <= WRITE_BUFFER_MAX_BYTES:
                self.pending.append(data)
            return
        if stream.is_closing():
            return
        stream.write(data)
        self.times.sent(self.owner.loop.time())
        if stream.get_write_buffer_size() > WRITE_BUFFER_MAX_BYTES:
            self.owner.cut_log.event(self.owner.loop.time(), self.peer.host if self.peer else "?",
                                     f"more than {WRITE_BUFFER_MAX_BYTES} bytes left unread")
            stream.abort()

    def close(self, now: float) -> None:
        if self.transport is not None:
            self.times.closing(now)
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class TcpTransport:
    """The box's TCP connections: the listening server, outbound connections for what the core
    sends over TCP, and the limits over all of them."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, on_message: Callable[[bytes, Address], None],
        limits: TcpLimits, in_use: Callable[[Address], bool], reserve_descriptors: int,
    ) -> None:
        self.loop = loop
        self.on_message = on_message
        self.limits = limits
        # Whether something the core holds (a registration) still needs a connection with that
        # peer: the idle timeout then leaves it open.
        self.in_use = in_use
        self.reserve_descriptors = reserve_descriptors
        self.descriptor_cap: int | None = None
        self.connections: dict[tuple[str, int], SipStreamConnection] = {}
        self._per_host: Counter[str] = Counter()
        self._open: set[SipStreamConnection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed_waiters: list[asyncio.Future[None]] = []  # woken when a connection goes
        self.refused_log = RateLimitedLog("refused")
        self.cut_log = RateLimitedLog("closed")

    @property
    def max_connections(self) -> int:
        if self.descriptor_cap is None:
            return self.limits.max_connections
        return min(self.limits.max_connections, self.descriptor_cap)

    async def serve(self, host: str, port: int) -> asyncio.AbstractServer:
        soft = raise_descriptor_limit()
        self.descriptor_cap = connection_cap(soft, descriptors_open(), self.reserve_descriptors)
        if self.descriptor_cap < self.limits.max_connections:
            LOGGER.warning(
                "open-file limit %d leaves room for %d TCP connections (%d descriptors kept "
                "for calls); raise the limit (ulimit -n) for more", soft, self.descriptor_cap,
                self.reserve_descriptors)
        server = await self.loop.create_server(
            lambda: SipStreamConnection(self), host, port, reuse_address=True)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)
        LOGGER.info("SIP over TCP: at most %d connections, %d per address; idle %g s, "
                    "message %g s", self.max_connections, self.limits.max_per_address,
                    self.limits.idle_s, self.limits.message_timeout_s)
        return server

    def refusal(self, host: str) -> str | None:
        """Why a new inbound connection from `host` is refused (None: it is admitted)."""
        if len(self._open) >= self.max_connections:
            return f"{self.max_connections} connections open"
        if self._per_host[host] >= self.limits.max_per_address:
            return f"{self.limits.max_per_address} connections open from this address"
        return None

    def count(self, host: str | None = None) -> int:
        return len(self._open) if host is None else self._per_host[host]

    def add(self, connection: SipStreamConnection, key: tuple[str, int]) -> None:
        self.connections[key] = connection
        if connection not in self._open:
            self._open.add(connection)
            connection.counted_host = key[0]
            self._per_host[key[0]] += 1

    def remove(self, connection: SipStreamConnection) -> None:
        for key in [k for k, c in self.connections.items() if c is connection]:
            del self.connections[key]
        if connection in self._open:
            self._open.discard(connection)
            host = connection.counted_host
            if host is not None:
                self._per_host[host] -= 1
                if self._per_host[host] <= 0:
                    del self._per_host[host]
            waiters, self._closed_waiters = self._closed_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def send(self, data: bytes, address: Address) -> None:
        """Over the connection with `address`, opening one if there is none (RFC 3261 §18.1.1:
        the box's own requests to a phone's listening port). Outbound connections count
        towards the total but are never refused: the core sends only to peers it knows."""
        connection = self.connections.get((address.host, address.port))
        if connection is not None:
            connection.send(data)
            return
        connection = SipStreamConnection(self, outbound=address)
        connection.pending.append(data)
        self.add(connection, (address.host, address.port))
        task = self.loop.create_task(self._connect(connection, address))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, connection: SipStreamConnection, address: Address) -> None:
        try:
            await self.loop.create_connection(lambda: connection, address.host, address.port)
        except OSError as exc:
            LOGGER.warning("TCP connection to %s:%d failed: %s", address.host, address.port, exc)
            self.remove(connection)

    def _sweep(self) -> None:
        now = self.loop.time()
        try:
            for connection in list(self._open):
                if connection.transport is None or connection.peer is None:
                    continue  # an outbound connect still under way
                reason = connection.times.overdue(now, self.limits)
                if reason == IDLE and self.in_use(connection.peer):
                    connection.times.active_at = now
                    continue
                if reason == IDLE:
                    LOGGER.debug("closing idle TCP connection from %s:%d", connection.peer.host,
                                 connection.peer.port)
                    connection.close(now)
                elif reason is not None:
                    self.cut_log.event(now, connection.peer.host, reason)
                    connection.abort()
        finally:
            self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in self._connecting:
            task.cancel()
        for connection in list(self._open):
            if connection.transport is not None:
                connection.transport.close()

    async def close_when_sent(self, timeout_s: float) -> None:
        """Close every connection once what the box sent on it is written (the BYEs and the
        un-REGISTER of a shutdown), within `timeout_s`; a connection still open then is cut.
        Connections the box is opening get the same time to connect and send."""
        deadline = self.loop.time() + timeout_s
        if self._connecting:
            await asyncio.wait(set(self._connecting), timeout=timeout_s)
        self.close_all()
        for connection in list(self._open):
            if connection.transport is None:  # its connect failed or was cancelled
                self.remove(connection)
        # A closing transport writes what it holds, then calls connection_lost (→ remove, which
        # wakes the waiter): one wake-up per connection at most.
        for _ in range(len(self._open)):
            remaining = deadline - self.loop.time()
            if not self._open or remaining <= 0:
                break
            closed = self.loop.create_future()
            self._closed_waiters.append(closed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed, remaining)
        for connection in list(self._open):
            connection.abort()
            self.remove(connection)
