"""The SIP UDP endpoint (firmware/transport/udp.py) on a real loopback socket: the kernel's
receive timestamp becomes each datagram's wait, `screen` sees every datagram first and what it
keeps is never handled, and a burst larger than one batch is handled whole, in order."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from firmware.core.overload import FIRST, HANDLED, LATER
from firmware.sip.transaction import Address
from firmware.transport import udp
from firmware.transport.udp import SO_TIMESTAMPNS, WORK_BATCH, WORK_SLICE_S, UdpEndpoint

DEADLINE_S = 5.0


async def _arrival_stamps_on(server: socket.socket, client: socket.socket) -> None:
    """Wait until the kernel stamps datagrams when they arrive. Linux turns its timestamping on
    through deferred work (net_enable_timestamp), so right after the first socket asks, a
    datagram may still be stamped at the read — in a full test run, where no other socket
    holds stamps on, that made a datagram that had waited 50 ms look as if it had not. A probe
    that waits 20 ms before its read shows when the stamps are taken at arrival."""
    server.setblocking(False)
    for _ in range(50):  # at most about a second
        client.sendto(b"probe", server.getsockname())
        await asyncio.sleep(0.02)
        _, ancdata, _, _ = server.recvmsg(64, socket.CMSG_SPACE(16))
        read_at = time.time()
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack_from("@ll", value)
                if read_at - (seconds + nanoseconds * 1e-9) >= 0.015:
                    return
    raise AssertionError("the kernel never stamped a datagram at its arrival")


async def exchange(datagrams: list[bytes], *, screened: frozenset[bytes] = frozenset(),
                   first: frozenset[bytes] = frozenset(), delay_before_read_s: float = 0.0,
                   handle_s: float = 0.0, marks: list[int] | None = None,
                   ) -> tuple[list[bytes], list[tuple[bytes, float | None]], int]:
    """`handle_s`: how long handling each datagram takes; `marks`: how many were handled at
    each batch's end."""
    loop = asyncio.get_running_loop()
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    # Timestamps on from the socket's start, as the daemon's SIP socket has them: the kernel
    # stamps a datagram when it arrives only while some socket asks for stamps (otherwise it
    # stamps at the read, and a datagram that waited would look as if it had not).
    server.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    await _arrival_stamps_on(server, client)
    handled: list[bytes] = []
    seen: list[tuple[bytes, float | None]] = []
    batches = 0
    done = asyncio.Event()
    expected = len(datagrams) - len(screened)

    def screen(data: bytes, source: Address, waited_s: float | None) -> str:
        assert source == Address("udp", "127.0.0.1", client.getsockname()[1])
        seen.append((data, waited_s))
        return HANDLED if data in screened else FIRST if data in first else LATER

    def on_datagram(data: bytes, source: Address) -> None:
        time.sleep(handle_s)  # the work a call's setup takes, on the loop as in the daemon
        handled.append(data)
        if len(handled) == expected:
            done.set()

    def after_batch() -> None:
        nonlocal batches
        batches += 1
        if marks is not None:
            marks.append(len(handled))

    for data in datagrams:  # queued in the kernel before the endpoint reads anything
        client.sendto(data, server.getsockname())
    await asyncio.sleep(delay_before_read_s)
    endpoint = UdpEndpoint(loop, server, on_datagram, screen=screen, after_batch=after_batch)
    try:
        await asyncio.wait_for(done.wait(), DEADLINE_S)
        endpoint.send(b"pong", client.getsockname())
        client.settimeout(DEADLINE_S)
        assert client.recvfrom(100)[0] == b"pong"
    finally:
        endpoint.close()
        client.close()
    return handled, seen, batches


def loopback_pair() -> tuple[socket.socket, socket.socket]:
    """The box's socket and a peer's, both on loopback."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    return server, client


def test_each_datagram_is_screened_with_how_long_it_waited_in_the_socket() -> None:
    handled, seen, _ = asyncio.run(exchange([b"one", b"two"], delay_before_read_s=0.05))
    assert handled == [b"one", b"two"]
    for _, waited in seen:
        assert waited is not None and 0.04 <= waited < DEADLINE_S


def test_what_screen_keeps_is_never_handled() -> None:
    handled, seen, _ = asyncio.run(exchange([b"a", b"shed", b"b"], screened=frozenset({b"shed"})))
    assert [data for data, _ in seen] == [b"a", b"shed", b"b"]
    assert handled == [b"a", b"b"]


def test_a_burst_is_handled_whole_in_order_over_several_batches() -> None:
    burst = [f"m{i}".encode() for i in range(WORK_BATCH * 3 + 5)]
    handled, _, batches = asyncio.run(exchange(burst))
    assert handled == burst
    assert batches >= 4  # the loop got back to its other work between batches


def test_slow_work_is_handled_in_slices_so_the_socket_is_read_again_soon() -> None:
    """Each datagram takes a millisecond to handle: a batch ends once WORK_SLICE_S has gone
    by, far short of WORK_BATCH, and the loop reads the socket again (where the excess is told
    503) after a few milliseconds, not after 32 calls' setups."""
    marks: list[int] = []
    burst = [f"m{i}".encode() for i in range(12)]
    handled, _, _ = asyncio.run(exchange(burst, handle_s=0.001, marks=marks))
    assert handled == burst
    sizes = [after - before for before, after in zip([0, *marks], marks, strict=False)]
    per_slice = int(WORK_SLICE_S / 0.001) + 1  # the one that crosses the slice's end
    assert max(sizes) <= per_slice < WORK_BATCH, sizes


def test_what_must_be_served_goes_ahead_of_strangers_new_work() -> None:
    burst = [f"new{i}".encode() for i in range(WORK_BATCH * 2)] + [b"bye", b"ack"]
    handled, _, _ = asyncio.run(exchange(burst, first=frozenset({b"bye", b"ack"})))
    assert handled[:2] == [b"bye", b"ack"]  # read in the same wake-up, handled before the rest
    assert handled[2:] == burst[:-2]


def test_past_a_full_queue_new_work_is_dropped_and_the_reading_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udp, "MAX_QUEUED", 4)
    monkeypatch.setattr(udp, "MAX_FIRST", 6)

    async def run() -> tuple[list[bytes], int, int]:
        loop = asyncio.get_running_loop()
        server, client = loopback_pair()
        handled: list[bytes] = []
        screened = 0

        def screen(data: bytes, source: Address, waited_s: float | None) -> str:
            nonlocal screened
            screened += 1
            return FIRST if data.startswith(b"bye") else LATER

        for i in range(8):
            client.sendto(f"new{i}".encode(), server.getsockname())
        for i in range(4):
            client.sendto(f"bye{i}".encode(), server.getsockname())
        endpoint = UdpEndpoint(loop, server, lambda data, source: handled.append(data),
                               screen=screen, after_batch=lambda: None)
        try:
            deadline = loop.time() + DEADLINE_S
            while len(handled) < 6 and loop.time() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            return handled, screened, endpoint.dropped_queue_full
        finally:
            endpoint.close()
            client.close()

    handled, screened, dropped = asyncio.run(run())
    # Every datagram was read and screened; the four that found the queue full were
    # screened again (the screen here says the same, as a box with no overload control would).
    assert screened == 16
    # Four new ones fill the queue, four more are dropped; what is always served still
    # queues up to MAX_FIRST (six in all) and goes first.
    assert handled == [b"bye0", b"bye1", b"new0", b"new1", b"new2", b"new3"]
    assert dropped == 6


def test_a_full_queue_is_reported_and_what_it_would_drop_is_screened_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While the box looks fine everything goes in one lane; once that lane is full the
    transport says so, and the second look (the overload control now on) answers the
    stranger (HANDLED) or sends what is always served ahead (FIRST) instead of dropping it."""
    monkeypatch.setattr(udp, "MAX_QUEUED", 4)

    async def run() -> tuple[list[bytes], list[bytes], int, int]:
        loop = asyncio.get_running_loop()
        server, client = loopback_pair()
        handled: list[bytes] = []
        answered: list[bytes] = []
        full = 0

        def screen(data: bytes, source: Address, waited_s: float | None) -> str:
            if not full:
                return LATER
            if data.startswith(b"new"):
                answered.append(data)
                return HANDLED
            return FIRST

        def on_full() -> None:
            nonlocal full
            full += 1

        for i in range(6):
            client.sendto(f"new{i}".encode(), server.getsockname())
        client.sendto(b"bye0", server.getsockname())
        endpoint = UdpEndpoint(loop, server, lambda data, source: handled.append(data),
                               screen=screen, after_batch=lambda: None, on_full=on_full)
        try:
            deadline = loop.time() + DEADLINE_S
            while len(handled) + len(answered) < 7 and loop.time() < deadline:
                await asyncio.sleep(0.01)
            return handled, answered, full, endpoint.dropped_queue_full
        finally:
            endpoint.close()
            client.close()

    handled, answered, full, dropped = asyncio.run(run())
    assert full == 1  # new4 found the queue full; from then on the first look sheds
    assert answered == [b"new4", b"new5"]  # new4 on its second look: answered, not dropped
    assert handled == [b"bye0", b"new0", b"new1", b"new2", b"new3"]
    assert dropped == 0
