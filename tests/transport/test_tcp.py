"""SIP over TCP with bounded resources: the timing rules stepped by `now`, and the asyncio side
against real client sockets on loopback (connection limits, back-pressure, idle closing)."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from firmware.sip.transaction import Address
from firmware.transport.tcp import (
    CLOSE_GRACE_S,
    IDLE,
    SLOW_MESSAGE,
    STUCK_CLOSING,
    WRITE_BUFFER_MAX_BYTES,
    ConnectionTimes,
    RateLimitedLog,
    SipStreamConnection,
    TcpLimits,
    TcpTransport,
    connection_cap,
    descriptor_reserve,
    raise_descriptor_limit,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
LIMITS = TcpLimits(max_connections=8, max_per_address=3, idle_s=120.0, message_timeout_s=10.0)
WAIT_S = 3.0  # every wait on a socket is bounded by this

OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKtcp\r\n"
    b"From: <sip:probe@127.0.0.1>;tag=t1\r\n"
    b"To: <sip:127.0.0.1>\r\n"
    b"Call-ID: tcp-test@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


# ------------------------------------------------------------------ timing rules, stepped by now


def test_a_connection_completing_nothing_for_idle_s_is_idle() -> None:
    times = ConnectionTimes(active_at=0.0)
    assert times.overdue(119.0, LIMITS) is None
    assert times.overdue(121.0, LIMITS) == IDLE


def test_a_complete_message_or_ping_is_activity_and_stray_bytes_are_not() -> None:
    times = ConnectionTimes(active_at=0.0)
    times.received(100.0, messages=0, pings=0, pending=False)  # a lone CRLF
    assert times.overdue(121.0, LIMITS) == IDLE
    times.received(121.0, messages=0, pings=1, pending=False)
    assert times.overdue(200.0, LIMITS) is None
    times.received(200.0, messages=1, pings=0, pending=False)
    assert times.overdue(319.0, LIMITS) is None


def test_a_message_dribbled_in_is_cut_after_the_message_timeout() -> None:
    # Slowloris: a byte now and then keeps the message incomplete for ever.
    times = ConnectionTimes(active_at=0.0)
    for step in range(100):
        times.received(step * 0.1, messages=0, pings=0, pending=True)
    assert times.overdue(9.9, LIMITS) is None
    assert times.overdue(10.1, LIMITS) == SLOW_MESSAGE


def test_the_message_clock_starts_again_with_each_message() -> None:
    # Pipelined messages each leaving the start of the next one pending are progress.
    times = ConnectionTimes(active_at=0.0)
    for second in range(30):
        times.received(float(second), messages=1, pings=0, pending=True)
    assert times.overdue(30.0, LIMITS) is None
    times.received(31.0, messages=0, pings=0, pending=False)
    assert times.partial_since is None


def test_a_closing_connection_gets_a_grace_then_is_stuck() -> None:
    times = ConnectionTimes(active_at=0.0)
    times.closing(1.0)
    times.closing(2.0)  # the first close counts
    assert times.overdue(1.0 + CLOSE_GRACE_S, LIMITS) is None
    assert times.overdue(1.1 + CLOSE_GRACE_S, LIMITS) == STUCK_CLOSING


def test_refusals_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RateLimitedLog("refused", interval_s=10.0)
    with caplog.at_level(logging.INFO, logger="firmware.transport.tcp"):
        assert log.event(0.0, "127.0.0.9", "full")
        assert not any(log.event(t, "127.0.0.9", "full") for t in (1.0, 5.0, 9.9))
        assert log.event(10.0, "127.0.0.9", "full")
    assert len(caplog.records) == 2
    assert "3 more" in caplog.records[1].getMessage()


def test_the_connection_cap_leaves_the_reserve_free() -> None:
    assert connection_cap(4096, 40, descriptor_reserve(500)) == 4096 - 40 - 128 - 500
    assert connection_cap(256, 40, descriptor_reserve(500)) == 0


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY and soft == hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard // 2, hard))
        now_soft = raise_descriptor_limit()
        assert now_soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if hard != resource.RLIM_INFINITY:
            assert now_soft == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ------------------------------------------------------------------ real sockets on loopback


class Box:
    """A TcpTransport on 127.0.0.1 whose received messages are kept (and answered by `answer`,
    if given) — the daemon's role, without the SIP core."""

    def __init__(self, limits: TcpLimits, *, answer: bytes = b"", in_use: bool = False) -> None:
        self.received: list[tuple[bytes, Address]] = []
        # Whatever a callback raised (asyncio reports it to the loop's handler and closes the
        # transport): none of the scenarios may raise.
        self.errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: self.errors.append(context))
        self.answer = answer
        self.transport = TcpTransport(
            asyncio.get_running_loop(), on_message=self.on_message, limits=limits,
            in_use=lambda peer: in_use, reserve_descriptors=descriptor_reserve(0),
        )
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> Box:
        self.server = await self.transport.serve("127.0.0.1", 0)
        self.port = cast(asyncio.Server, self.server).sockets[0].getsockname()[1]
        return self

    def on_message(self, data: bytes, peer: Address) -> None:
        self.received.append((data, peer))
        if self.answer:
            self.transport.send(self.answer, peer)

    def connection(self, peer: tuple[str, int]) -> SipStreamConnection:
        return self.transport.connections[peer]

    async def close(self) -> None:
        self.transport.close_all()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


Runner = Callable[..., None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Runs a scenario against a started Box, on the standard event loop and on uvloop (which
    the daemon uses): flow control and pause/resume differ between their transports."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop

    def run_scenario(limits: TcpLimits, test: Callable[[Box], Awaitable[None]],
                     **box: Any) -> None:
        async def main() -> None:
            started = await Box(limits, **box).start()
            try:
                await asyncio.wait_for(test(started), 30)
            finally:
                await started.close()
            assert started.errors == []

        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())

    return run_scenario


async def connect(box: Box, host: str = "127.0.0.1") -> tuple[asyncio.StreamReader,
                                                               asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", box.port, local_addr=(host, 0))


async def closed_by_box(reader: asyncio.StreamReader, wait_s: float = 0.5) -> bool:
    """True when the box closed the connection within `wait_s` (EOF or reset); what it sent
    before closing is read and dropped."""
    try:
        await asyncio.wait_for(reader.read(), wait_s)  # up to EOF
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def wait_until(predicate: Callable[[], bool], wait_s: float = WAIT_S) -> bool:
    deadline = asyncio.get_running_loop().time() + wait_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def test_connections_beyond_the_per_address_limit_are_closed_at_once(run: Runner) -> None:
    async def scenario(box: Box) -> None:
        clients = [await connect(box, "127.0.0.2") for _ in range(5)]
        verdicts = [await closed_by_box(reader) for reader, _ in clients]
        assert verdicts.count(True) == 2 and verdicts.count(False) == 3, verdicts
        assert box.transport.count("127.0.0.2") == 3
        # Another address is not held back by the first one's limit.
        reader, writer = await connect(box, "127.0.0.3")
        writer.write(OPTIONS)
        assert await wait_until(lambda: len(box.received) == 1)
        assert box.received[0][1].host == "127.0.0.3"
        assert not await closed_by_box(reader, 0.2)
        for _, client in clients:
            client.close()

    run(LIMITS, scenario)


def test_connections_beyond_the_total_are_refused_until_one_closes(run: Runner) -> None:
    limits = replace(LIMITS, max_connections=3)

    async def scenario(box: Box) -> None:
        clients = [await connect(box, f"127.0.0.{10 + i}") for i in range(3)]
        assert await wait_until(lambda: box.transport.count() == 3)
        reader, _ = await connect(box, "127.0.0.20")
        assert await closed_by_box(reader)
        clients[0][1].close()
        assert await wait_until(lambda: box.transport.count() == 2)
        reader, writer = await connect(box, "127.0.0.20")
        assert not await closed_by_box(reader)
        writer.write(OPTIONS)
        assert await wait_until(lambda: len(box.received) == 1)

    run(limits, scenario)


def test_a_peer_not_reading_its_answers_is_no_longer_read(run: Runner) -> None:
    # Each request gets a 16 KiB answer the client never reads: once the kernel's buffers and
    # the write buffer's high mark are full, the box stops reading that peer's requests
    # instead of buffering answers without end.
    answer = b"SIP/2.0 200 OK\r\nContent-Length: 16384\r\n\r\n" + b"x" * 16384

    async def scenario(box: Box) -> None:
        reader, writer = await connect(box)
        writer.transport.set_write_buffer_limits(high=64 * 1024 * 1024)
        for _ in range(2000):
            writer.write(OPTIONS)
        assert await wait_until(lambda: bool(box.received))
        peer = box.received[0][1]
        connection = box.connection((peer.host, peer.port))
        stream = connection.transport
        assert stream is not None
        assert await wait_until(lambda: not stream.is_reading())
        await asyncio.sleep(0.3)
        taken = len(box.received)
        await asyncio.sleep(0.3)
        assert len(box.received) == taken < 2000
        assert stream.get_write_buffer_size() <= WRITE_BUFFER_MAX_BYTES
        # What the box sends on its own beyond the hard cap drops the peer.
        for _ in range(WRITE_BUFFER_MAX_BYTES // len(answer) + 2):
            box.transport.send(answer, peer)
        assert await wait_until(lambda: box.transport.count() == 0)
        writer.close()

    run(LIMITS, scenario, answer=answer)


def test_an_idle_connection_is_closed_unless_a_registration_uses_it(run: Runner) -> None:
    limits = replace(LIMITS, idle_s=0.3)

    async def idle(box: Box) -> None:
        reader, writer = await connect(box)
        writer.write(OPTIONS)
        assert await closed_by_box(reader, WAIT_S)

    async def registered(box: Box) -> None:
        reader, writer = await connect(box)
        writer.write(OPTIONS)
        assert not await closed_by_box(reader, 1.5)
        writer.write(OPTIONS)
        assert await wait_until(lambda: len(box.received) == 2)

    run(limits, idle)
    run(limits, registered, in_use=True)


def test_a_slow_message_is_cut_after_the_message_timeout(run: Runner) -> None:
    limits = replace(LIMITS, message_timeout_s=0.5)

    async def scenario(box: Box) -> None:
        reader, writer = await connect(box)
        closed = False
        for index in range(40):  # at most 4 s
            writer.write(OPTIONS[index : index + 1])
            if await closed_by_box(reader, 0.1):
                closed = True
                break
        assert closed and box.received == []

    run(limits, scenario)


def test_a_ping_is_answered_with_a_pong(run: Runner) -> None:
    async def scenario(box: Box) -> None:
        reader, writer = await connect(box)
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), WAIT_S) == b"\r\n"

    run(LIMITS, scenario)


def test_an_oversized_body_gets_413_and_the_connection_is_closed(run: Runner) -> None:
    async def scenario(box: Box) -> None:
        reader, writer = await connect(box)
        writer.write(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 1000000"))
        data = await asyncio.wait_for(reader.read(65536), WAIT_S)
        assert data.startswith(b"SIP/2.0 413 ")
        assert await closed_by_box(reader, WAIT_S)
        assert box.received == []

    run(LIMITS, scenario)


def test_an_unanswerable_broken_head_closes_its_connection_and_nothing_else(
    run: Runner,
) -> None:
    # A bare CR in a header of a head too large to frame: whatever answer can or cannot be
    # written from it (the writer refuses CR in a header), the box closes that connection and
    # goes on serving others.
    broken = OPTIONS.replace(b"Call-ID: tcp-test", b"Call-ID: tcp\rX-Evil: 1\rtest")
    broken = broken.replace(b"Content-Length: 0\r\n\r\n", b"Subject: " + b"x" * 20_000)

    async def scenario(box: Box) -> None:
        reader, writer = await connect(box)
        writer.write(broken)
        assert await closed_by_box(reader, WAIT_S)
        reader, writer = await connect(box)
        writer.write(OPTIONS)
        assert await wait_until(lambda: len(box.received) == 1)

    run(LIMITS, scenario)


def test_the_box_opens_a_connection_for_what_it_sends_and_reuses_it(run: Runner) -> None:
    async def scenario(box: Box) -> None:
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def phone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                got.put_nowait(data)

        server = await asyncio.start_server(phone, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            address = Address("tcp", "127.0.0.1", port)
            box.transport.send(OPTIONS, address)
            box.transport.send(OPTIONS, address)
            received = b""
            while len(received) < 2 * len(OPTIONS):
                received += await asyncio.wait_for(got.get(), WAIT_S)
            assert received == OPTIONS * 2
            assert box.transport.count() == 1
        finally:
            server.close()

    run(LIMITS, scenario)


# ------------------------------------------------------------------ the descriptor reserve

RESERVE_SERVER = r"""
import asyncio, json, resource, socket, sys
LIMIT, RESERVE, MEDIA = map(int, sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))
from firmware.transport.tcp import TcpLimits, TcpTransport

async def main():
    loop = asyncio.get_running_loop()
    limits = TcpLimits(max_connections=10000, max_per_address=10000, idle_s=120.0,
                       message_timeout_s=10.0)
    tcp = TcpTransport(loop, on_message=lambda data, peer: None, limits=limits,
                       in_use=lambda peer: False, reserve_descriptors=RESERVE)
    server = await tcp.serve("127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # the clients are connected
    media = []
    try:
        for _ in range(MEDIA):  # what calls need meanwhile: one UDP socket per RTP port
            media.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    except OSError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
    print(json.dumps({"open": tcp.count(), "cap": tcp.max_connections, "media": len(media)}),
          flush=True)

asyncio.run(main())
"""


def test_a_flood_of_connections_leaves_the_reserve_of_descriptors_to_calls() -> None:
    # The daemon's process with an open-file limit of 300 (hard: it cannot be raised) and 200
    # descriptors kept for calls; 250 connections arrive, then calls want 190 sockets.
    limit, reserve, media, clients = 300, 200, 190, 250
    server = subprocess.Popen(
        [sys.executable, "-c", RESERVE_SERVER, str(limit), str(reserve), str(media)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    sockets: list[socket.socket] = []
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        for _ in range(clients):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT_S))
        time.sleep(0.5)  # let the server accept (or refuse) them all
        server.stdin.write("go\n")
        server.stdin.flush()
        result = json.loads(server.stdout.readline())
    finally:
        for sock in sockets:
            sock.close()
        server.kill()
        server.wait(WAIT_S)
    assert "error" not in result, result
    assert result["media"] == media
    assert 0 < result["cap"] <= limit - reserve
    assert result["open"] == result["cap"]
