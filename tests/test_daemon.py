"""The daemon keeps its slow work off the event loop (issue 11): a trunk host that takes long to
resolve holds up only the reload it belongs to, greetings are served from memory and follow
uploads, the prompts are read before the first call, and a shutdown waits for what it sends
instead of sleeping.

Each test runs a real `Daemon` in this process on loopback sockets; the peers are sockets of the
test's own (a phone sending OPTIONS, a provider's registrar over TCP). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from firmware import daemon as daemon_module
from firmware.core.events import CallAnswered, DatagramToSend
from firmware.daemon import Daemon
from firmware.media import prompts
from firmware.media.audio import wav_bytes
from firmware.sip.transaction import Address
from firmware.store import Config, Store, new_call_id, parse_config
from tests.e2e.linebox import SipReply, base_config, options_request
from tests.e2e.sipp import free_port
from tests.store.test_durable import answered_row

MAX_ANSWER_S = 0.050
OPTIONS_SENT = 20
REPLY_TIMEOUT_S = 2.0
# The daemon polls the store every 2 s (configuration, greetings): a change shows within this.
POLL_WAIT_S = 6.0
RESOLVE_HOLD_MAX_S = 10.0
TCP_READ_MAX_BYTES = 256 * 1024


class SlowResolver:
    """Looks the trunks up as 127.0.0.3, the first time at once (the daemon's start), later
    only once the test releases it (at most RESOLVE_HOLD_MAX_S): a DNS server that is slow."""

    def __init__(self) -> None:
        self.calls = 0
        self.waiting = threading.Event()
        self.release = threading.Event()

    def __call__(self, config: Config) -> dict[str, Address]:
        self.calls += 1
        if self.calls > 1:
            self.waiting.set()
            self.release.wait(RESOLVE_HOLD_MAX_S)
        return {t.name: Address(t.transport, "127.0.0.3", t.port) for t in config.trunks}


class Endpoint:
    """What `options_request` needs to address the daemon."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def running_daemon(tmp_path: Path, config: dict[str, Any],
                         **options: Any) -> AsyncIterator[tuple[Daemon, Store]]:
    db = tmp_path / "linebox.db"
    store = Store.open(db)
    store.replace_config(parse_config(config))
    first = random.randrange(30000, 40000, 100)
    daemon = Daemon(store, sip_host="127.0.0.1", sip_port=free_port(), db_path=db,
                    rtp_ports=(first, first + 99), **options)
    await daemon.start()
    try:
        yield daemon, store
    finally:
        await daemon.stop()
        store.close()


def run(scenario: Callable[[], Awaitable[None]], loop: str = "asyncio") -> None:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(scenario(), 60))


async def wait_until(predicate: Callable[[], bool], wait_s: float = POLL_WAIT_S) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def options_answer_s(daemon: Daemon, phone: socket.socket) -> float:
    """Send one OPTIONS from `phone` and return how long its 200 took."""
    loop = asyncio.get_running_loop()
    request, call_id = options_request(Endpoint(daemon.sip_port), phone)  # type: ignore[arg-type]
    sent = loop.time()
    await loop.sock_sendto(phone, request, ("127.0.0.1", daemon.sip_port))
    for _ in range(10):  # a stray answer to an earlier request is skipped
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(phone, 65535), REPLY_TIMEOUT_S)
        reply = SipReply(data)
        if reply.call_id == call_id and reply.status >= 200:
            assert reply.status == 200, reply
            return loop.time() - sent
    raise AssertionError(f"no answer to {call_id}")


# ------------------------------------------------------------------ DNS off the loop


def test_a_trunk_host_slow_to_resolve_holds_up_its_reload_and_not_sip(tmp_path: Path) -> None:
    resolver = SlowResolver()

    async def scenario() -> None:
        async with running_daemon(tmp_path, base_config(), resolve=resolver) as (daemon, store):
            before = daemon.config_revision
            moved = base_config()
            moved["trunks"][0]["port"] = 5070
            store.replace_config(parse_config(moved))
            assert await asyncio.to_thread(resolver.waiting.wait, POLL_WAIT_S), \
                "the reload never looked the trunk up"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
                phone.bind(("127.0.0.1", 0))
                phone.setblocking(False)
                answers = [await options_answer_s(daemon, phone) for _ in range(OPTIONS_SENT)]
            # Still under the running configuration while the look-up goes on.
            assert daemon.config_revision == before
            resolver.release.set()
            assert await wait_until(lambda: daemon.config_revision == before + 1)
            line = daemon.gateway.lines.named("provider")
            assert line is not None and line.address == Address("udp", "127.0.0.3", 5070)
            assert max(answers) < MAX_ANSWER_S, [round(s * 1000, 1) for s in answers]

    try:
        run(scenario)
    finally:
        resolver.release.set()


# ------------------------------------------------------------------ greetings from memory


def test_an_uploaded_greeting_is_served_from_memory_and_follows_uploads(
    tmp_path: Path,
) -> None:
    first, second = b"\x01\x00" * 800, b"\x02\x00" * 1600

    async def scenario() -> None:
        async with running_daemon(tmp_path, base_config()) as (daemon, store):
            assert daemon.gateway.greeting("200") is None
            store.set_greeting("200", wav_bytes(first), duration_s=0.1, at=time.time())
            assert await wait_until(lambda: daemon.gateway.greeting("200") == first)
            store.set_greeting("200", wav_bytes(second), duration_s=0.2, at=time.time() + 1)
            assert await wait_until(lambda: daemon.gateway.greeting("200") == second)
            store.set_greeting("200", None)
            assert await wait_until(lambda: daemon.gateway.greeting("200") is None)

    run(scenario)


def test_a_greeting_read_at_start_plays_from_the_first_call(tmp_path: Path) -> None:
    pcm = b"\x03\x00" * 800
    db = tmp_path / "linebox.db"
    with Store.open(db) as store:
        store.set_greeting("101", wav_bytes(pcm), duration_s=0.1, at=time.time())

    async def scenario() -> None:
        async with running_daemon(tmp_path, base_config()) as (daemon, _):
            assert daemon.gateway.greeting("101") == pcm

    run(scenario)


def test_an_unusable_greeting_is_reported_once_and_the_built_in_one_plays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with running_daemon(tmp_path, base_config()) as (daemon, store):
            store.set_greeting("200", b"not a WAV file", duration_s=1.0, at=time.time())
            for _ in range(3):  # as the poll does, three times over
                await daemon.refresh_greetings()
            assert daemon.gateway.greeting("200") is None

    with caplog.at_level(logging.WARNING, logger="firmware.daemon"):
        run(scenario)
    warnings = [r for r in caplog.records if "greeting of mailbox 200" in r.getMessage()]
    assert len(warnings) == 1, warnings


# ------------------------------------------------------------------ prompts read before calls


def test_every_prompt_is_in_memory_once_the_daemon_has_started(tmp_path: Path) -> None:
    prompts.prompt.cache_clear()

    async def scenario() -> None:
        async with running_daemon(tmp_path, base_config()):
            read = prompts.prompt.cache_info().currsize
            languages = [p for p in prompts.PROMPTS_DIR.iterdir() if p.is_dir()]
            names = {w.stem for language in languages for w in language.glob("*.wav")}
            assert read == len(languages) * len(names) > 0

    run(scenario)


# ------------------------------------------------------------------ shutdown without a sleep


class TcpRegistrar:
    """A provider's registrar on a TCP socket of its own: answers each REGISTER 200 and keeps
    every request it read, until the box closes the connection."""

    def __init__(self) -> None:
        self.requests: list[SipReply] = []
        self.closed_by_box = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        try:
            while len(buffer) < TCP_READ_MAX_BYTES:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    request = SipReply(head + b"\r\n\r\n")
                    length = int(request.header("Content-Length") or 0)
                    buffer = rest[length:]
                    self.requests.append(request)
                    writer.write(self._ok(request))
        finally:
            self.closed_by_box.set()
            writer.close()

    @staticmethod
    def _ok(request: SipReply) -> bytes:
        lines = ["SIP/2.0 200 OK"]
        lines += [f"Via: {via}" for via in request.header_values("Via")]
        for name in ("From", "Call-ID", "CSeq", "Contact"):
            lines += [f"{name}: {value}" for value in request.header_values(name)]
        lines += [f"To: {request.header('To')};tag=registrar",
                  f"Expires: {request.header('Expires')}", "Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    def unregistered(self) -> bool:
        return any(r.start_line.startswith("REGISTER") and r.header("Expires") == "0"
                   for r in self.requests)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_unregister_leaves_over_tcp_before_the_daemon_stops(tmp_path: Path,
                                                                loop: str) -> None:
    async def scenario() -> None:
        registrar = TcpRegistrar()
        port = await registrar.start()
        config = base_config()
        config["trunks"][0].update(host="127.0.0.1", port=port, transport="tcp",
                                   register=True)
        try:
            async with running_daemon(tmp_path, config) as (daemon, _):
                registration = next(iter(daemon.gateway.lines.registrations()))
                assert await wait_until(lambda: registration.state == "registered")
            # stop() has returned: what it sent is with the registrar, and it closed.
            assert await wait_until(registrar.closed_by_box.is_set, 1.0)
            assert registrar.unregistered(), registrar.requests
        finally:
            assert registrar.server is not None
            registrar.server.close()

    run(scenario, loop)


# ------------------------------------------------------------------ answers held for their record

VOICEMAIL_DID = "74951234567"  # department 200: nobody registered, so voicemail answers
HELD_CALL_WAIT_S = 5.0
OTHER_MESSAGE_MAX_S = 0.1  # far under ANSWER_RECORD_WAIT_S: not held behind the answer
# A cap for the test of the cap itself (the daemon's is the busy timeout, 5 s).
SHORT_CAP_S = 0.25
# A commit as slow as those seen under load (0.4-1.7 s), short of the cap.
SLOW_COMMIT_S = 1.5


def invite_request(daemon: Daemon, sock: socket.socket) -> tuple[bytes, str]:
    """A provider's INVITE (PCMU) to the voicemail number, and its Call-ID."""
    host, port = sock.getsockname()[:2]
    call_id = f"held-{random.getrandbits(64):x}@{host}"
    sdp = (f"v=0\r\no=provider 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
           f"m=audio {port + 2} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n").encode()
    head = "\r\n".join([
        f"INVITE sip:{VOICEMAIL_DID}@127.0.0.1:{daemon.sip_port} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{random.getrandbits(64):x};rport",
        "Max-Forwards: 70",
        f"From: <sip:79990000002@{host}>;tag={random.getrandbits(32):x}",
        f"To: <sip:{VOICEMAIL_DID}@127.0.0.1>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:79990000002@{host}:{port}>",
        "Content-Type: application/sdp",
        f"Content-Length: {len(sdp)}",
        "", "",
    ]).encode()
    return head + sdp, call_id


async def final_answer(sock: socket.socket, call_id: str, wait_s: float) -> SipReply:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535),
                                         max(0.01, deadline - loop.time()))
        reply = SipReply(data)
        if reply.call_id == call_id and reply.status >= 200:
            return reply


def voicemail_answers() -> dict[str, Any]:
    """Department 200 with nobody registered: its voicemail answers the provider's call."""
    config = base_config(site={"language": "en"})
    config["departments"][0]["no_answer"] = {"action": "voicemail"}
    return config


async def provider_calls(daemon: Daemon, provider: socket.socket) -> str:
    """The provider's INVITE from `provider` (bound on 127.0.0.2 here); its Call-ID."""
    provider.bind(("127.0.0.2", 0))
    provider.setblocking(False)
    invite, call_id = invite_request(daemon, provider)
    await asyncio.get_running_loop().sock_sendto(provider, invite,
                                                 ("127.0.0.1", daemon.sip_port))
    return call_id


def test_a_stuck_commit_holds_only_its_own_call_and_for_the_cap_at_most(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's 200 OK waits for its call's record (issue 16) — but only that call's
    messages wait: OPTIONS from a phone are answered at once meanwhile, and with the commit
    stuck (a disk that does not come back) the 200 OK goes out after ANSWER_RECORD_WAIT_S
    (shortened here to SHORT_CAP_S, so the test need not wait out the busy timeout)."""
    release = threading.Event()
    committing = threading.Event()
    record = daemon_module.record_answered_calls

    def stuck_commit(store: Store, answered: Any) -> None:
        committing.set()
        release.wait(HELD_CALL_WAIT_S)  # bounded: the writer thread never hangs the test
        record(store, answered)

    monkeypatch.setattr(daemon_module, "record_answered_calls", stuck_commit)
    monkeypatch.setattr(daemon_module, "ANSWER_RECORD_WAIT_S", SHORT_CAP_S)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with running_daemon(tmp_path, voicemail_answers()) as (daemon, store):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as provider, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
                phone.bind(("127.0.0.1", 0))
                phone.setblocking(False)
                call_id = await provider_calls(daemon, provider)
                # Answered: its record is being committed (and stays stuck there).
                assert await asyncio.to_thread(committing.wait, HELD_CALL_WAIT_S), \
                    "the call was never answered"
                held_at = loop.time()
                other = [await options_answer_s(daemon, phone) for _ in range(3)]
                answered = await final_answer(provider, call_id, HELD_CALL_WAIT_S)
                answered_after = loop.time() - held_at
                assert not release.is_set()
                release.set()  # the commit goes through: the call is on disk
                assert await wait_until(lambda: daemon.recorder.waiting == 0
                                        and bool(store.recent_calls()))
        assert answered.status == 200, answered
        assert max(other) < OTHER_MESSAGE_MAX_S, [round(s * 1000, 1) for s in other]
        assert sum(other) < answered_after, "the answer did not wait for its record"
        assert answered_after < 4 * daemon_module.ANSWER_RECORD_WAIT_S, answered_after

    try:
        run(scenario)
    finally:
        release.set()


def test_a_slow_commit_holds_the_answer_until_the_call_is_on_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit as slow as those a loaded machine showed (SLOW_COMMIT_S, over the former
    250 ms cap): the caller's 200 OK leaves only once the call's record is committed, so a
    kill after the caller saw it cannot lose the call (issue 16)."""
    committing = threading.Event()
    committed = threading.Event()
    record = daemon_module.record_answered_calls

    def slow_commit(store: Store, answered: Any) -> None:
        committing.set()
        time.sleep(SLOW_COMMIT_S)
        record(store, answered)
        committed.set()

    monkeypatch.setattr(daemon_module, "record_answered_calls", slow_commit)

    async def scenario() -> None:
        async with running_daemon(tmp_path, voicemail_answers()) as (daemon, store):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as provider:
                call_id = await provider_calls(daemon, provider)
                assert await asyncio.to_thread(committing.wait, HELD_CALL_WAIT_S), \
                    "the call was never answered"
                answered = await final_answer(provider, call_id, SLOW_COMMIT_S + 5.0)
                on_disk = committed.is_set()
                rows = store.recent_calls()
        assert answered.status == 200, answered
        assert on_disk, "the 200 OK left before the call's record was committed"
        assert [row["sip_call_id"] for row in rows] == [call_id]

    run(scenario)


def test_held_messages_are_bounded_the_oldest_call_going_first_in_its_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_HELD_DATAGRAMS the call answered first goes out (its messages in order), the
    others keep waiting for their record; what belongs to no waiting call is never held."""
    release = threading.Event()
    record = daemon_module.record_answered_calls

    def stuck_commit(store: Store, answered: Any) -> None:
        release.wait(HELD_CALL_WAIT_S)
        record(store, answered)

    monkeypatch.setattr(daemon_module, "record_answered_calls", stuck_commit)
    monkeypatch.setattr(daemon_module, "MAX_HELD_DATAGRAMS", 3)
    monkeypatch.setattr(daemon_module, "ANSWER_RECORD_WAIT_S", HELD_CALL_WAIT_S)

    def message(call_id: str, n: int) -> bytes:
        return (f"BYE sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: {call_id}\r\nCSeq: {n} BYE\r\n"
                f"Content-Length: 0\r\n\r\n").encode()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with running_daemon(tmp_path, base_config()) as (daemon, _):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.bind(("127.0.0.1", 0))
                peer.setblocking(False)
                to_peer = Address("udp", "127.0.0.1", peer.getsockname()[1])

                def send(call_id: str, n: int) -> None:
                    daemon._send(DatagramToSend(data=message(call_id, n), destination=to_peer))

                for call_id in ("first", "second"):
                    row = {**answered_row(new_call_id()), "sip_call_id": call_id}
                    daemon._hold_for(CallAnswered(call=row, legs=[]))
                send("first", 1)
                send("first", 2)
                send("other", 1)  # no waiting call's: out at once
                send("second", 1)
                send("second", 2)  # three held: the bound
                send("first", 3)  # over it: "first" goes, in its order, then this one
                assert daemon._held_count <= 3

                async def received(count: int) -> list[str]:
                    got = []
                    for _ in range(count):
                        data, _ = await asyncio.wait_for(loop.sock_recvfrom(peer, 65535),
                                                         REPLY_TIMEOUT_S)
                        reply = SipReply(data)
                        got.append(f"{reply.call_id} {reply.header('CSeq')}")
                    return got

                assert await received(4) == ["other 1 BYE", "first 1 BYE", "first 2 BYE",
                                             "first 3 BYE"]
                with pytest.raises(TimeoutError):  # "second" still waits for its record
                    await asyncio.wait_for(loop.sock_recvfrom(peer, 65535), 0.3)
                release.set()
                assert await received(2) == ["second 1 BYE", "second 2 BYE"]
                assert daemon._held_count == 0 and not daemon._held

    try:
        run(scenario)
    finally:
        release.set()
