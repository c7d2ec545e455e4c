"""Long life: a compressed soak of the sans-IO gateway core with a stepped clock (issue 16).

A box left alone for years must not grow. This drives the real core (`firmware.core.Gateway`,
SIP bytes in and out, nothing patched) with a simulated office on a simulated clock as fast as
the machine allows: the provider brings calls to three numbers, six phones answer after a few
seconds, refuse (486), do not answer, put callers on hold and take them back, transfer them
(REFER), hang up first or wait for the caller; callers give up while ringing or waiting, or
press 1 for a callback, and the box calls them back through the provider; phones call each
other and pick up ringing calls (*8) with digest authentication; a department queues its
callers and sends those nobody answered to voicemail; a small number overflows its channels
(refused); phones unregister and register again; midnight comes (`new_day`) every simulated
day. Every loop is bounded by a call count and a wall-clock budget.

At checkpoints it prints the size of every table the core keeps (every dict, list, set and
deque of the gateway, its rooms and their parts, the transaction layer's timer heap
included), tracemalloc's current total (with --tracemalloc) and the process's RSS, and the call
rate. After the warm-up every table must stay within a bound of its warm-up size and RSS within
RSS_GROWTH_LIMIT_MB: a table that keeps growing with the number of calls is a leak, and the
run fails naming it.

    python bench/soak.py [--calls 1000000] [--budget-s 180] [--tracemalloc] [--seed 1]

By default the run stops at --budget-s (about three minutes) and says how far it got and at
what rate; `--calls 1000000 --budget-s 0` runs the full million whatever it takes.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import itertools
import json
import os
import random
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from firmware.core import Gateway, MemoryRecorder, write_record  # noqa: E402
from firmware.core.events import DatagramToSend  # noqa: E402
from firmware.sip.auth import build_authorization, choose_challenge  # noqa: E402
from firmware.sip.message import (  # noqa: E402
    Headers,
    Request,
    Response,
    make_response,
    parse_message,
)
from firmware.sip.transaction import Address  # noqa: E402
from firmware.sip.uri import parse_uri  # noqa: E402
from firmware.store.config import parse_config  # noqa: E402

GATEWAY = Address("udp", "192.0.2.1", 5060)
PROVIDER = Address("udp", "127.0.0.2", 5060)
PHONES = {f"10{n}": Address("udp", f"10.0.0.{10 + n}", 5060) for n in range(1, 7)}
PASSWORD = "soak-secret-pw"
QUEUE_DID, HUNT_DID, SMALL_DID = "+74950000200", "+74950000300", "+74950000400"
CONFIG: dict[str, Any] = {
    "extensions": [{"number": n, "name": f"Phone {n}", "password": PASSWORD} for n in PHONES],
    "departments": [
        {"number": "200", "name": "Sales", "strategy": "ring_all", "ring_timeout_s": 15,
         "members": ["101", "102", "103"],
         "queue": {"max_callers": 10, "max_wait_s": 30,
                   "callback": {"key": "1", "expire_s": 600, "attempts": 2}},
         "no_answer": {"action": "voicemail"}},
        {"number": "300", "name": "Support", "strategy": "in_order", "ring_timeout_s": 20,
         "members": [{"extension": "104", "ring_time_s": 8}, "105", "106"]},
        {"number": "400", "name": "Small", "strategy": "ring_all", "ring_timeout_s": 10,
         "members": ["106"]},
    ],
    "trunks": [{"name": "provider", "host": "sip.example.ru", "register": False,
                "channels": 60}],
    "numbers": [
        {"number": QUEUE_DID, "trunk": "provider", "channels": 30, "destination": "200"},
        {"number": HUNT_DID, "trunk": "provider", "channels": 20, "destination": "300"},
        # Three channels for a department of one: callers beyond them are refused.
        {"number": SMALL_DID, "trunk": "provider", "channels": 3, "destination": "400"},
    ],
    "sip": {"digest_algorithms": ["MD5"]},
}
SDP_OFFER = (b"v=0\r\no=caller 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
             b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
             b"a=rtpmap:101 telephone-event/8000\r\n")


def phone_sdp(host: str, direction: str = "sendrecv") -> bytes:
    return (f"v=0\r\no=phone 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio 41000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n").encode()


ARRIVALS_PER_S = 2.0  # simulated calls a simulated second: ~40 in progress at once
# Customers calling again and again: per-caller tables (the caller's last agent, kept for a day)
# reach their working size in the warm-up.
CUSTOMERS = 500
DAY_S = 86400.0
CHECKPOINTS = 10
WARM_UP_SHARE = 0.2  # the first fifth of the run: queues and tables reach their working size
# A table may end at most this much above the largest size it had by the end of the warm-up
# (scaled) plus an absolute margin: random load swings, a leak grows with the calls.
TABLE_GROWTH_FACTOR = 2.0
TABLE_GROWTH_MARGIN = 200
RSS_GROWTH_LIMIT_MB = 25.0


def request(method: str, uri: str, headers: list[tuple[str, str]], body: bytes = b"") -> Request:
    if body:
        headers = [*headers, ("Content-Type", "application/sdp")]
    return Request(method, parse_uri(uri), Headers(headers), body)


_branch = itertools.count(1)


def branch() -> str:
    return f"z9hG4bKsoak{next(_branch)}"


@dataclass
class CallerLeg:
    """A call the provider brought: its INVITE, and its dialog once answered."""

    invite: Request
    answered: Response | None = None
    cseq: int = 1
    done: bool = False


@dataclass
class PhoneLeg:
    """An INVITE a phone received, and its dialog once it answered."""

    invite: Request
    tag: str
    answered: bool = False
    final: bool = False
    cseq: int = 1
    hold_invite: Request | None = None


@dataclass
class ProviderLeg:
    """A call the box placed to the provider (a callback's customer): its INVITE and our tag."""

    invite: Request
    tag: str
    answered: bool = False


@dataclass
class PhoneCall:
    """A call a phone placed itself (to a colleague, or *8 to pick up a ringing call)."""

    invite: Request
    dialed: str
    answered: Response | None = None
    cseq: int = 1


@dataclass
class Counts:
    started: int = 0
    answered_by_phone: int = 0
    caller_gave_up: int = 0
    finals: dict[int, int] = field(default_factory=dict)
    holds: int = 0
    unregistered: int = 0
    callback_requests: int = 0
    callbacks_answered: int = 0
    phone_calls: int = 0
    pickups: int = 0
    transfers: int = 0


class Soak:
    """The simulated office around one Gateway, on a clock of its own."""

    def __init__(self, seed: int, arrivals_per_s: float = ARRIVALS_PER_S) -> None:
        self.rng = random.Random(seed)
        self.arrivals_per_s = arrivals_per_s
        self.now = 0.0
        self.recorder = MemoryRecorder()
        self.gateway = Gateway(parse_config(CONFIG), local=GATEWAY,
                               trunk_addresses={"provider": PROVIDER}, key=b"k" * 32,
                               now=0.0, rng=random.Random(seed))
        self._seq = itertools.count()
        self._plan: list[tuple[float, int, Callable[[], object]]] = []
        self._wire: deque[tuple[bytes, Address]] = deque()
        self.callers: dict[str, CallerLeg] = {}  # by Call-ID
        self.phone_legs: dict[tuple[str, str], PhoneLeg] = {}  # (phone, Call-ID)
        self.early_to: dict[str, str] = {}  # a caller's early dialog: its To with the tag
        self.provider_legs: dict[str, ProviderLeg] = {}  # the box's calls to the provider
        self.phone_calls: dict[tuple[str, str], PhoneCall] = {}  # (phone, Call-ID)
        self.registered: set[str] = set()
        self.counts = Counts()
        self._reg_cseq = itertools.count(1)
        self._expires: dict[str, int] = {}  # what each phone's REGISTER asks for
        self.records = 0
        self.voicemails = 0

    # ------------------------------------------------------------------ time
    def at(self, delay_s: float, action: Callable[[], object]) -> None:
        heapq.heappush(self._plan, (self.now + delay_s, next(self._seq), action))

    def step(self) -> None:
        """Run the next thing due: the core's timer or the office's next action."""
        gateway_at = self.gateway.get_timer()
        if self._plan and (gateway_at is None or self._plan[0][0] < gateway_at):
            when, _, action = heapq.heappop(self._plan)
            self.now = max(self.now, when)
            action()
        else:
            assert gateway_at is not None
            self.now = max(self.now, gateway_at)
            self.gateway.handle_timer(self.now)
        self.pump()

    def pump(self) -> None:
        for _ in range(100_000):
            sent = False
            while (event := self.gateway.next_event()) is not None:
                if isinstance(event, DatagramToSend):
                    self.deliver(parse_message(event.data), event.destination)
                    sent = True
                elif write_record(self.recorder, event):
                    self._drain_recorder()
            if self._wire:
                data, source = self._wire.popleft()
                self.gateway.receive(data, source, self.now)
            elif not sent:
                return
        raise AssertionError("the wire never went quiet")

    def _drain_recorder(self) -> None:
        # The daemon writes records away; the soak counts them and keeps none.
        recorder = self.recorder
        self.records += len(recorder.calls)
        self.voicemails += len(recorder.voicemails)
        recorder.calls.clear()
        recorder.voicemails.clear()
        recorder.callback_states.clear()
        recorder.pending_callbacks.clear()

    def send(self, message: Request | Response, source: Address) -> None:
        self._wire.append((message.to_bytes(), source))

    # ------------------------------------------------------------------ the office's doings
    def arrival(self) -> None:
        self.counts.started += 1
        did = self.rng.choices((QUEUE_DID, HUNT_DID, SMALL_DID), (6, 3, 1))[0]
        caller = f"7916{self.rng.randrange(CUSTOMERS):07d}"  # customers call again
        call_id = f"c{self.counts.started}@127.0.0.2"
        invite = request("INVITE", f"sip:{did}@{GATEWAY.host}", [
            ("Via", f"SIP/2.0/UDP 127.0.0.2:5060;branch={branch()}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{caller}@127.0.0.2>;tag=p{self.counts.started}"),
            ("To", f"<sip:{did}@{GATEWAY.host}>"), ("Call-ID", call_id),
            ("CSeq", "1 INVITE"), ("Contact", "<sip:provider@127.0.0.2:5060>"),
        ], SDP_OFFER)
        self.callers[call_id] = CallerLeg(invite)
        self.send(invite, PROVIDER)
        # The next caller (arrivals planned one at a time, so the plan stays small).
        self.at(self.rng.expovariate(self.arrivals_per_s), self.arrival)
        roll = self.rng.random()
        if roll < 0.2:  # an impatient caller gives up if nobody has answered
            self.at(self.rng.uniform(3.0, 40.0), lambda: self.caller_gives_up(call_id))
        elif roll < 0.3 and did == QUEUE_DID:  # asks to be called back while waiting
            self.at(self.rng.uniform(3.0, 20.0), lambda: self.caller_presses_1(call_id))
        elif roll < 0.36:  # a colleague calls or picks up a ringing call
            self.at(self.rng.uniform(0.5, 5.0), self.phone_places_call)

    def caller_presses_1(self, call_id: str) -> None:
        leg = self.callers.get(call_id)
        to = self.early_to.get(call_id)
        if leg is None or leg.answered is not None or leg.done or to is None:
            return
        self.counts.callback_requests += 1
        leg.cseq += 1
        self.send(request("INFO", f"sip:linebox@{GATEWAY.host}", [
            ("Via", f"SIP/2.0/UDP 127.0.0.2:5060;branch={branch()}"), ("Max-Forwards", "70"),
            ("From", leg.invite.headers.get("From") or ""), ("To", to), ("Call-ID", call_id),
            ("CSeq", f"{leg.cseq} INFO"), ("Content-Type", "application/dtmf-relay")],
            b"Signal=1\r\nDuration=160\r\n"), PROVIDER)

    def phone_places_call(self) -> None:
        phone = self.rng.choice(sorted(self.registered or PHONES))
        others = [p for p in PHONES if p != phone]
        dialed = "*8" if self.rng.random() < 0.5 else self.rng.choice(others)
        self.counts.phone_calls += 1
        self.counts.pickups += dialed == "*8"
        self._phone_invite(phone, dialed, None)

    def _phone_invite(self, phone: str, dialed: str, authorization: str | None,
                      call_id: str | None = None) -> None:
        address = PHONES[phone]
        call_id = call_id or f"p{next(self._seq)}@{address.host}"
        headers = [
            ("Via", f"SIP/2.0/UDP {address.host}:5060;branch={branch()}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{phone}@{GATEWAY.host}>;tag=f{call_id.split('@')[0]}"),
            ("To", f"<sip:{dialed}@{GATEWAY.host}>"), ("Call-ID", call_id),
            ("CSeq", f"{2 if authorization else 1} INVITE"),
            ("Contact", f"<sip:{phone}@{address.host}:5060>")]
        if authorization is not None:
            headers.append(("Proxy-Authorization", authorization))
        invite = request("INVITE", f"sip:{dialed}@{GATEWAY.host}", headers,
                         phone_sdp(address.host))
        self.phone_calls[(phone, call_id)] = PhoneCall(invite, dialed)
        self.send(invite, address)

    def caller_gives_up(self, call_id: str) -> None:
        leg = self.callers.get(call_id)
        if leg is None or leg.answered is not None or leg.done:
            return
        self.counts.caller_gave_up += 1
        invite = leg.invite
        self.send(request("CANCEL", str(invite.uri), [
            ("Via", invite.headers.get_list("Via")[0]), ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""), ("To", invite.headers.get("To") or ""),
            ("Call-ID", call_id), ("CSeq", f"{invite.cseq.seq} CANCEL")]), PROVIDER)

    def caller_hangs_up(self, call_id: str) -> None:
        leg = self.callers.get(call_id)
        if leg is None or leg.answered is None or leg.done:
            return
        leg.done = True
        leg.cseq += 1
        answer = leg.answered
        self.send(request("BYE", str(answer.contacts[0].uri), [
            ("Via", f"SIP/2.0/UDP 127.0.0.2:5060;branch={branch()}"), ("Max-Forwards", "70"),
            ("From", leg.invite.headers.get("From") or ""), ("To", answer.headers.get("To") or ""),
            ("Call-ID", call_id), ("CSeq", f"{leg.cseq} BYE")]), PROVIDER)

    def register(self, phone: str, expires: int = 3600, authorization: str | None = None
                 ) -> None:
        aor = f"sip:{phone}@{GATEWAY.host}"
        address = PHONES[phone]
        self._expires[phone] = expires
        headers = [
            ("Via", f"SIP/2.0/UDP {address.host}:5060;branch={branch()}"),
            ("Max-Forwards", "70"), ("From", f"<{aor}>;tag=r{phone}"), ("To", f"<{aor}>"),
            ("Call-ID", f"reg-{phone}@{address.host}"),
            ("CSeq", f"{next(self._reg_cseq)} REGISTER"),
            ("Contact", f"<sip:{phone}@{address.host}:5060>"), ("Expires", str(expires))]
        if authorization is not None:
            headers.append(("Authorization", authorization))
        self.send(request("REGISTER", f"sip:{GATEWAY.host}", headers), address)

    def registrations_come_and_go(self) -> None:
        phone = self.rng.choice(sorted(PHONES))
        if phone in self.registered:
            self.counts.unregistered += 1
            self.registered.discard(phone)
            self.register(phone, expires=0)
            self.at(self.rng.uniform(10.0, 120.0), lambda: self.register(phone))
        self.at(self.rng.uniform(30.0, 90.0), self.registrations_come_and_go)

    def midnight(self) -> None:
        self.gateway.new_day()
        self.at(DAY_S, self.midnight)

    # ------------------------------------------------------------------ what arrives
    def deliver(self, message: Request | Response, destination: Address) -> None:
        if destination == PROVIDER:
            self.provider_gets(message)
            return
        phone = next((n for n, a in PHONES.items() if a == destination), None)
        if phone is not None:
            self.phone_gets(phone, message)

    def provider_gets(self, message: Request | Response) -> None:
        if isinstance(message, Request) and message.method == "INVITE" and "tag=" not in (
                message.headers.get("To") or ""):
            self.provider_called(message)
            return
        if isinstance(message, Request) and message.method == "CANCEL":
            self.send(make_response(message, 200), PROVIDER)
            called = self.provider_legs.pop(message.call_id, None)
            if called is not None and not called.answered:
                self.send(make_response(called.invite, 487, to_tag=called.tag), PROVIDER)
            return
        if isinstance(message, Request):
            if message.method == "BYE":
                self.provider_legs.pop(message.call_id, None)
            if message.method != "ACK":
                response = make_response(message, 200)
                if message.method == "INVITE":  # hold music's re-INVITE
                    response = make_response(message, 200, headers=[
                        ("Contact", "<sip:provider@127.0.0.2:5060>"),
                        ("Content-Type", "application/sdp")], body=SDP_OFFER)
                self.send(response, PROVIDER)
            if message.method == "BYE":
                leg = self.callers.pop(message.call_id, None)
                if leg is not None:
                    leg.done = True
            return
        if message.cseq.method == "INVITE" and 100 < message.status < 200:
            if message.call_id in self.callers:
                self.early_to[message.call_id] = message.headers.get("To") or ""
            return
        if message.cseq.method != "INVITE" or message.status < 200:
            if message.cseq.method == "BYE":
                self.callers.pop(message.call_id, None)
                self.early_to.pop(message.call_id, None)
            return
        self.early_to.pop(message.call_id, None)
        leg = self.callers.get(message.call_id)
        if leg is None:
            return
        self.counts.finals[message.status] = self.counts.finals.get(message.status, 0) + 1
        if message.status >= 300:
            invite = leg.invite
            self.send(request("ACK", str(invite.uri), [
                ("Via", invite.headers.get_list("Via")[0]), ("Max-Forwards", "70"),
                ("From", invite.headers.get("From") or ""),
                ("To", message.headers.get("To") or ""), ("Call-ID", message.call_id),
                ("CSeq", f"{invite.cseq.seq} ACK")]), PROVIDER)
            self.callers.pop(message.call_id, None)
            return
        first = leg.answered is None
        leg.answered = message
        self.send(request("ACK", str(message.contacts[0].uri), [
            ("Via", f"SIP/2.0/UDP 127.0.0.2:5060;branch={branch()}"), ("Max-Forwards", "70"),
            ("From", leg.invite.headers.get("From") or ""),
            ("To", message.headers.get("To") or ""), ("Call-ID", message.call_id),
            ("CSeq", f"{leg.invite.cseq.seq} ACK")]), PROVIDER)
        if first:  # talks (or leaves a message) and hangs up, unless the phone does first
            call_id = message.call_id
            # The box's own answer (voicemail) sends a frame every 20 ms: those callers are
            # kept short, or they would take most of the run.
            by_phone = b"o=phone" in message.body
            self.at(self.rng.uniform(3.0, 60.0) if by_phone else self.rng.uniform(1.0, 4.0),
                    lambda: self.caller_hangs_up(call_id))

    def provider_called(self, invite: Request) -> None:
        """The box calls a customer back: the customer's phone rings, is answered, and the
        customer hangs up after a while (unless the box does first)."""
        known = self.provider_legs.get(invite.call_id)
        if known is not None:
            return  # a retransmission: our answer is on its way
        called = ProviderLeg(invite, tag=f"cb{next(self._seq)}")
        self.provider_legs[invite.call_id] = called
        self.send(make_response(invite, 180, to_tag=called.tag), PROVIDER)

        def answer() -> None:
            if self.provider_legs.get(invite.call_id) is not called:
                return
            called.answered = True
            self.counts.callbacks_answered += 1
            self.send(make_response(invite, 200, to_tag=called.tag, headers=[
                ("Contact", "<sip:customer@127.0.0.2:5060>"),
                ("Content-Type", "application/sdp")], body=SDP_OFFER), PROVIDER)
            self.at(self.rng.uniform(5.0, 30.0), hang_up)

        def hang_up() -> None:
            if self.provider_legs.pop(invite.call_id, None) is None:
                return
            self.send(request("BYE", str(invite.contacts[0].uri), [
                ("Via", f"SIP/2.0/UDP 127.0.0.2:5060;branch={branch()}"),
                ("Max-Forwards", "70"),
                ("From", f"{invite.headers.get('To')};tag={called.tag}"),
                ("To", invite.headers.get("From") or ""), ("Call-ID", invite.call_id),
                ("CSeq", "1 BYE")]), PROVIDER)

        self.at(self.rng.uniform(1.0, 4.0), answer)

    def phone_call_answered(self, phone: str, message: Response) -> None:
        """A response to an INVITE the phone placed: the digest challenge, the answer, or a
        refusal."""
        key = (phone, message.call_id)
        call = self.phone_calls.get(key)
        if call is None:
            return
        invite = call.invite
        if message.status >= 300:
            self.send(request("ACK", str(invite.uri), [
                ("Via", invite.headers.get_list("Via")[0]), ("Max-Forwards", "70"),
                ("From", invite.headers.get("From") or ""),
                ("To", message.headers.get("To") or ""), ("Call-ID", message.call_id),
                ("CSeq", f"{invite.cseq.seq} ACK")]), PHONES[phone])
            del self.phone_calls[key]
            if message.status == 407 and invite.cseq.seq == 1:
                chosen = choose_challenge(message.headers.get_all("Proxy-Authenticate"))
                assert chosen is not None
                self._phone_invite(phone, call.dialed, build_authorization(
                    chosen, method="INVITE", uri=str(invite.uri), username=phone,
                    password=PASSWORD, cnonce="soak", nc=1), call_id=message.call_id)
            return
        first = call.answered is None
        call.answered = message
        address = PHONES[phone]
        self.send(request("ACK", str(message.contacts[0].uri), [
            ("Via", f"SIP/2.0/UDP {address.host}:5060;branch={branch()}"),
            ("Max-Forwards", "70"), ("From", invite.headers.get("From") or ""),
            ("To", message.headers.get("To") or ""), ("Call-ID", message.call_id),
            ("CSeq", f"{invite.cseq.seq} ACK")]), address)
        if first:
            self.at(self.rng.uniform(2.0, 30.0), lambda: self.phone_call_ends(phone, key))

    def phone_call_ends(self, phone: str, key: tuple[str, str]) -> None:
        call = self.phone_calls.pop(key, None)
        if call is None or call.answered is None:
            return
        call.cseq += 2
        address = PHONES[phone]
        self.send(request("BYE", str(call.answered.contacts[0].uri), [
            ("Via", f"SIP/2.0/UDP {address.host}:5060;branch={branch()}"),
            ("Max-Forwards", "70"), ("From", call.invite.headers.get("From") or ""),
            ("To", call.answered.headers.get("To") or ""), ("Call-ID", call.invite.call_id),
            ("CSeq", f"{call.cseq} BYE")]), address)

    def phone_gets(self, phone: str, message: Request | Response) -> None:
        address = PHONES[phone]
        if isinstance(message, Response):
            if message.cseq.method == "REGISTER" and message.status == 401:
                chosen = choose_challenge(message.headers.get_all("WWW-Authenticate"))
                assert chosen is not None
                self.register(phone, self._expires[phone], build_authorization(
                    chosen, method="REGISTER", uri=f"sip:{GATEWAY.host}", username=phone,
                    password=PASSWORD, cnonce="soak", nc=1))
            elif message.cseq.method == "REGISTER" and message.status == 200:
                if message.headers.get("Contact"):
                    self.registered.add(phone)
            elif message.cseq.method == "INVITE" and (phone, message.call_id) in self.phone_calls:
                if message.status >= 200:
                    self.phone_call_answered(phone, message)
            elif message.cseq.method == "INVITE" and message.status == 200:
                leg = self.phone_legs.get((phone, message.call_id))
                if leg is not None:  # the box answered our hold re-INVITE: ACK it
                    self.send(self._in_dialog(phone, leg, "ACK", cseq=leg.cseq), address)
            return
        key = (phone, message.call_id)
        if message.method == "INVITE":
            if "tag=" in (message.headers.get("To") or ""):  # a re-INVITE in a call: accepted
                self.send(make_response(message, 200, headers=[
                    ("Contact", f"<sip:{phone}@{address.host}:5060>"),
                    ("Content-Type", "application/sdp")], body=phone_sdp(address.host)),
                    address)
                return
            leg = self.phone_legs.get(key)
            if leg is not None:  # a retransmission: our answer is on its way
                return
            leg = PhoneLeg(message, tag=f"t{next(self._seq)}")
            self.phone_legs[key] = leg
            self.send(make_response(message, 180, to_tag=leg.tag), address)
            roll = self.rng.random()
            if roll < 0.7:
                self.at(self.rng.uniform(1.0, 12.0), lambda: self.phone_answers(phone, key))
            elif roll < 0.85:
                self.at(self.rng.uniform(0.5, 4.0), lambda: self.phone_refuses(phone, key))
            # else it rings until the box gives up on it
        elif message.method == "CANCEL":
            self.send(make_response(message, 200), address)
            leg = self.phone_legs.get(key)
            if leg is not None and not leg.final:
                leg.final = True
                self.send(make_response(leg.invite, 487, to_tag=leg.tag), address)
                self.at(40.0, lambda: self.phone_legs.pop(key, None))
        elif message.method == "BYE":
            self.send(make_response(message, 200), address)
            self.phone_legs.pop(key, None)
            self.phone_calls.pop(key, None)
        elif message.method != "ACK":
            self.send(make_response(message, 200), address)

    def phone_answers(self, phone: str, key: tuple[str, str]) -> None:
        leg = self.phone_legs.get(key)
        if leg is None or leg.final:
            return
        leg.final = leg.answered = True
        self.counts.answered_by_phone += 1
        address = PHONES[phone]
        self.send(make_response(leg.invite, 200, to_tag=leg.tag, headers=[
            ("Contact", f"<sip:{phone}@{address.host}:5060>"),
            ("Content-Type", "application/sdp")], body=phone_sdp(address.host)), address)
        roll = self.rng.random()
        if roll < 0.15:
            self.at(self.rng.uniform(1.0, 10.0), lambda: self.phone_holds(phone, key))
        elif roll < 0.22:
            self.at(self.rng.uniform(1.0, 10.0), lambda: self.phone_transfers(phone, key))
        elif roll < 0.45:
            self.at(self.rng.uniform(2.0, 40.0), lambda: self.phone_hangs_up(phone, key))

    def phone_refuses(self, phone: str, key: tuple[str, str]) -> None:
        leg = self.phone_legs.get(key)
        if leg is None or leg.final:
            return
        leg.final = True
        self.send(make_response(leg.invite, 486, to_tag=leg.tag), PHONES[phone])
        self.at(40.0, lambda: self.phone_legs.pop(key, None))

    def phone_holds(self, phone: str, key: tuple[str, str], direction: str = "sendonly"
                    ) -> None:
        leg = self.phone_legs.get(key)
        if leg is None:
            return
        leg.cseq += 1
        if direction == "sendonly":
            self.counts.holds += 1
            self.at(self.rng.uniform(2.0, 15.0), lambda: self.phone_holds(phone, key, "sendrecv"))
        self.send(self._in_dialog(phone, leg, "INVITE", cseq=leg.cseq,
                                  body=phone_sdp(PHONES[phone].host, direction)), PHONES[phone])

    def phone_transfers(self, phone: str, key: tuple[str, str]) -> None:
        """A blind transfer (RFC 3515): REFER to a colleague or the other department."""
        leg = self.phone_legs.get(key)
        if leg is None:
            return
        self.counts.transfers += 1
        leg.cseq += 1
        target = self.rng.choice([p for p in PHONES if p != phone] + ["300"])
        refer = self._in_dialog(phone, leg, "REFER", cseq=leg.cseq)
        refer.headers.add("Refer-To", f"<sip:{target}@{GATEWAY.host}>")
        refer.headers.add("Contact", f"<sip:{phone}@{PHONES[phone].host}:5060>")
        self.send(refer, PHONES[phone])

    def phone_hangs_up(self, phone: str, key: tuple[str, str]) -> None:
        leg = self.phone_legs.pop(key, None)
        if leg is None:
            return
        leg.cseq += 1
        self.send(self._in_dialog(phone, leg, "BYE", cseq=leg.cseq), PHONES[phone])

    def _in_dialog(self, phone: str, leg: PhoneLeg, method: str, *, cseq: int,
                   body: bytes = b"") -> Request:
        invite = leg.invite
        address = PHONES[phone]
        headers = [
            ("Via", f"SIP/2.0/UDP {address.host}:5060;branch={branch()}"),
            ("Max-Forwards", "70"),
            ("From", f"{invite.headers.get('To')};tag={leg.tag}"),
            ("To", invite.headers.get("From") or ""), ("Call-ID", invite.call_id),
            ("CSeq", f"{cseq} {method}")]
        if method == "INVITE":
            headers.append(("Contact", f"<sip:{phone}@{address.host}:5060>"))
        return request(method, str(invite.contacts[0].uri), headers, body)


# ---------------------------------------------------------------------- measuring
def tables(gateway: Gateway) -> dict[str, int]:
    """The size of every container the core keeps, two levels down from the gateway: its own
    attributes, its rooms' and their parts' (the transaction layer, the registrar, ...)."""
    sizes: dict[str, int] = {}
    seen: set[int] = set()

    def walk(obj: object, name: str, depth: int) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        attributes = getattr(obj, "__dict__", None)
        if attributes is None:
            slots = getattr(type(obj), "__slots__", ())
            attributes = {s: getattr(obj, s) for s in slots if hasattr(obj, s)}
        for attribute, value in attributes.items():
            label = f"{name}.{attribute}" if name else attribute
            if isinstance(value, dict | list | set | deque | frozenset | tuple) and not (
                    isinstance(value, tuple) and len(value) < 8):
                sizes[label] = len(value)
            elif depth < 2 and type(value).__module__.startswith("firmware."):
                walk(value, label, depth + 1)

    walk(gateway, "", 0)
    return sizes


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--budget-s", type=float, default=180.0,
                        help="stop after this much wall time (0: no limit)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--arrivals-per-s", type=float, default=ARRIVALS_PER_S,
                        help="simulated calls per simulated second (the office's load)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations (slows the run about 2x)")
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)
    if args.tracemalloc:
        tracemalloc.start()
    soak = Soak(args.seed, args.arrivals_per_s)
    for phone in PHONES:
        soak.register(phone)
    soak.pump()
    soak.at(1.0, soak.arrival)
    soak.at(30.0, soak.registrations_come_and_go)
    soak.at(DAY_S, soak.midnight)

    started = time.monotonic()
    budget = args.budget_s if args.budget_s > 0 else float("inf")
    # Checkpoints by wall time when the budget binds, else by calls.
    every_calls = max(1, args.calls // CHECKPOINTS)
    every_s = budget / CHECKPOINTS if budget != float("inf") else float("inf")
    rows: list[dict[str, Any]] = []
    next_calls, next_s = every_calls, every_s

    def checkpoint() -> None:
        gc.collect()
        elapsed = time.monotonic() - started
        row: dict[str, Any] = {"calls": soak.counts.started, "wall_s": round(elapsed, 1),
               "sim_s": round(soak.now), "rate": round(soak.counts.started / elapsed),
               "rss_mb": round(rss_mb(), 1), "records": soak.records,
               "tables": tables(soak.gateway)}
        if args.tracemalloc:
            row["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
        rows.append(row)
        big = sorted(row["tables"].items(), key=lambda kv: -kv[1])[:6]
        print(f"{row['calls']:>9,} calls  {row['wall_s']:>6.1f} s  {row['rate']:>5,}/s  "
              f"sim {row['sim_s'] / 3600:>6.1f} h  RSS {row['rss_mb']:>6.1f} MB"
              + (f"  traced {row['traced_mb']:>6.1f} MB" if args.tracemalloc else "")
              + "  largest: " + ", ".join(f"{k}={v}" for k, v in big), flush=True)

    checkpoint()
    steps = 0
    max_steps = args.calls * 400  # a call is a few dozen steps; this bounds a runaway loop
    while soak.counts.started < args.calls and steps < max_steps:
        steps += 1
        soak.step()
        if soak.counts.started >= next_calls or time.monotonic() - started >= next_s:
            checkpoint()
            next_calls += every_calls
            next_s += every_s
            if time.monotonic() - started >= budget:
                break
    checkpoint()
    return report(rows, soak, args)


def report(rows: list[dict[str, Any]], soak: Soak, args: argparse.Namespace) -> int:
    warm = [row for row in rows if row["calls"] <= rows[-1]["calls"] * WARM_UP_SHARE] or rows[:2]
    warm_max: dict[str, int] = {}
    for row in warm:
        for name, size in row["tables"].items():
            warm_max[name] = max(warm_max.get(name, 0), size)
    end = rows[-1]
    failures = []
    for name, size in end["tables"].items():
        bound = TABLE_GROWTH_FACTOR * warm_max.get(name, 0) + TABLE_GROWTH_MARGIN
        if size > bound:
            failures.append(f"table {name}: {size} after the warm-up's {warm_max.get(name, 0)}"
                            f" (bound {bound:.0f})")
    rss_growth = end["rss_mb"] - warm[-1]["rss_mb"]
    if rss_growth > RSS_GROWTH_LIMIT_MB:
        failures.append(f"RSS grew {rss_growth:.1f} MB after the warm-up "
                        f"(limit {RSS_GROWTH_LIMIT_MB} MB)")
    counts = soak.counts
    print(f"\nsoak: {counts.started:,} calls in {end['wall_s']} s ({end['rate']:,} calls/s; "
          f"{end['sim_s'] / 86400:.1f} simulated days); finals to the caller "
          f"{dict(sorted(counts.finals.items()))}, {counts.caller_gave_up:,} gave up, "
          f"{counts.holds:,} holds, {counts.transfers:,} transfers, "
          f"{counts.callback_requests:,} callback requests ({counts.callbacks_answered:,} "
          f"customers called back), {counts.phone_calls:,} phone calls ({counts.pickups:,} "
          f"*8 pickups), {counts.unregistered:,} unregistrations, "
          f"{soak.records:,} records, {soak.voicemails:,} voicemails")
    print(f"RSS after warm-up {warm[-1]['rss_mb']} MB, at the end {end['rss_mb']} MB "
          f"(growth {rss_growth:+.1f} MB, limit {RSS_GROWTH_LIMIT_MB} MB)")
    if not args.no_json:
        out = REPO_ROOT / "bench" / "results" / f"soak-{datetime.now():%Y%m%d-%H%M%S}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"checkpoints": rows, "failures": failures}, indent=1))
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print("PASS: every table and RSS flat after the warm-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
