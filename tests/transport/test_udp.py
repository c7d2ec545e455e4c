"""The SIP UDP endpoint (firmware/transport/udp.py) on a real loopback socket: the kernel's
receive timestamp becomes each datagram's wait, `screen` sees every datagram first and what it
keeps is never handled, and a burst larger than one batch is handled whole, in order."""

from __future__ import annotations

import asyncio
import socket

from firmware.core.overload import FIRST, HANDLED, LATER
from firmware.sip.transaction import Address
from firmware.transport.udp import WORK_BATCH, UdpEndpoint

DEADLINE_S = 5.0


async def exchange(datagrams: list[bytes], *, screened: frozenset[bytes] = frozenset(),
                   first: frozenset[bytes] = frozenset(), delay_before_read_s: float = 0.0
                   ) -> tuple[list[bytes], list[tuple[bytes, float | None]], int]:
    loop = asyncio.get_running_loop()
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
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
        handled.append(data)
        if len(handled) == expected:
            done.set()

    def after_batch() -> None:
        nonlocal batches
        batches += 1

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


def test_what_must_be_served_goes_ahead_of_strangers_new_work() -> None:
    burst = [f"new{i}".encode() for i in range(WORK_BATCH * 2)] + [b"bye", b"ack"]
    handled, _, _ = asyncio.run(exchange(burst, first=frozenset({b"bye", b"ack"})))
    assert handled[:2] == [b"bye", b"ack"]  # read in the same wake-up, handled before the rest
    assert handled[2:] == burst[:-2]
