"""The fake network the sans-IO gateway tests run on: scripted phones and a provider talk to it
through bytes.

Every datagram the gateway emits is parsed and handed to the peer it is addressed to; the peers
answer like real phones (ring at once, answer when told, 200 to BYE and CANCEL, 487 after a
CANCEL) and the provider ACKs what it gets. Time only moves when a test steps it, and whenever
it does every gateway timer due on the way is run at its own deadline (aioquic's
tests/test_connection.py style), so "the INVITE goes out exactly at 10 s" is checkable.

This is the one place the tests build a `Gateway`; `office()` gives a ready office (phones
101..103 registered, the provider) and tests/core/conftest.py the `o` fixture of one.
"""

from __future__ import annotations

import copy
import itertools
import random
import secrets
from collections import deque
from dataclasses import dataclass, field

from firmware.agents import StatusChanged
from firmware.core import Gateway, MemoryRecorder, WebhookRequested, write_record
from firmware.core.events import (
    DatagramToSend,
    FailoverSwitched,
    LineStateChanged,
    MenuGreetingRecorded,
    ModemCommandRequested,
    RecordingAudio,
    RecordingFinished,
    RecordingStarted,
    RtpToSend,
)
from firmware.sip.auth import build_authorization, choose_challenge
from firmware.sip.message import Headers, Request, Response, make_response, parse_message
from firmware.sip.transaction import T1_S, Address
from firmware.sip.uri import parse_uri
from firmware.store.config import parse_config

GATEWAY = Address("udp", "192.0.2.1", 5060)
PROVIDER = Address("udp", "127.0.0.2", 5060)
TIMEOUT_S = 64 * T1_S  # Timers B, F, H, J, L, M
AFTER_EVERY_TIMER_S = 200.0  # long enough for every transaction timer to have run out

PASSWORDS = {"101": "secret-101-pw", "102": "secret-102-pw", "103": "secret-103-pw"}
PHONE_ADDRESSES = {
    "101": Address("udp", "10.0.0.11", 5060),
    "102": Address("udp", "10.0.0.12", 5060),
    "103": Address("udp", "10.0.0.13", 5060),
}
# DIDs at the provider and the department each one reaches.
RING_ALL_DID = "+74950000200"  # department 200: ring_all 101 + 102, 20 s
IN_ORDER_DID = "+74950000300"  # department 300: in_order 101 (10 s) then 102 (40 s)
SLOW_DID = "+74950000400"  # department 400: ring_all 103, 60 s (longer than Timer B)
RING_ALL_TIMEOUT_S = 20
FIRST_RING_TIME_S = 10
IN_ORDER_TIMEOUT_S = 40

CONFIG = {
    "extensions": [
        {"number": number, "name": f"Phone {number}", "password": password}
        for number, password in PASSWORDS.items()
    ],
    "departments": [
        {"number": "200", "name": "Sales", "strategy": "ring_all",
         "ring_timeout_s": RING_ALL_TIMEOUT_S, "members": ["101", "102"]},
        {"number": "300", "name": "Accounts", "strategy": "in_order",
         "ring_timeout_s": IN_ORDER_TIMEOUT_S,
         "members": [{"extension": "101", "ring_time_s": FIRST_RING_TIME_S}, "102"]},
        {"number": "400", "name": "Warehouse", "strategy": "ring_all", "ring_timeout_s": 60,
         "members": ["103"]},
    ],
    "trunks": [{"name": "provider", "host": "sip.example.ru", "register": False,
                "channels": 10}],
    "numbers": [
        {"number": RING_ALL_DID, "trunk": "provider", "channels": 3, "destination": "200"},
        {"number": IN_ORDER_DID, "trunk": "provider", "channels": 3, "destination": "300"},
        {"number": SLOW_DID, "trunk": "provider", "channels": 3, "destination": "400"},
    ],
    "sip": {"digest_algorithms": ["MD5", "SHA-256"]},
}


def config_with(departments: list[dict[str, object]], numbers: list[dict[str, object]],
                **extra: object) -> dict[str, object]:
    """CONFIG plus more departments and numbers (and other top-level keys replaced)."""
    config = copy.deepcopy(CONFIG)
    config["departments"] = [*config["departments"], *departments]  # type: ignore[misc]
    config["numbers"] = [*config["numbers"], *numbers]  # type: ignore[misc]
    config.update(extra)
    return config


Message = Request | Response
_branches = itertools.count(1)


def new_branch() -> str:
    return f"z9hG4bKtest{next(_branches)}{secrets.token_hex(4)}"


def request(method: str, uri: str, headers: list[tuple[str, str]], body: bytes = b"") -> Request:
    return Request(method, parse_uri(uri), Headers(headers), body)


# --------------------------------------------------------------------------------------------
# The network: the gateway, its clock, and the peers it talks to


class Network:
    def __init__(self, config: dict[str, object] | None = None, *, seed: int | None = None
                 ) -> None:
        self.now = 0.0
        self._recorder = MemoryRecorder()
        self.gateway = Gateway(
            parse_config(config or CONFIG), local=GATEWAY, trunk_addresses={"provider": PROVIDER},
            key=b"k" * 32, now=0.0,
            rng=random.Random(seed) if seed is not None else None,
        )
        self.peers: dict[Address, Peer] = {}
        self.lost: list[tuple[Message, Address]] = []
        # What the core asked the daemon for, besides SIP and records (see pump).
        self.rtp_out: list[tuple[int, bytes, tuple[str, int]]] = []
        self.webhook_requests: list[WebhookRequested] = []
        self.status_changes: list[StatusChanged] = []
        self.line_changes: list[LineStateChanged] = []
        self.modem_commands: list[ModemCommandRequested] = []
        self.failover_switches: list[FailoverSwitched] = []
        self.recording_events: list[RecordingStarted | RecordingAudio | RecordingFinished] = []
        self.menu_greetings: list[MenuGreetingRecorded] = []  # greetings recorded by phone
        self._to_gateway: deque[tuple[bytes, Address]] = deque()

    def send(self, peer: Peer, message: Message) -> None:
        self._to_gateway.append((message.to_bytes(), peer.address))
        self.pump()

    def pump(self) -> None:
        """Deliver everything in flight, in order, until the wire is quiet."""
        for _ in range(10_000):
            outgoing = self._perform_events()
            for data, destination in outgoing:
                message = parse_message(data)
                peer = self.peers.get(destination)
                if peer is None:
                    self.lost.append((message, destination))
                else:
                    peer.deliver(message)
            if self._to_gateway:
                data, source = self._to_gateway.popleft()
                self.gateway.receive(data, source, self.now)
            elif not outgoing:
                return
        raise AssertionError("the wire never went quiet")

    def _perform_events(self) -> list[tuple[bytes, Address]]:
        """Do what the daemon does with the core's events; the SIP datagrams to deliver."""
        datagrams: list[tuple[bytes, Address]] = []
        while (event := self.gateway.next_event()) is not None:
            if isinstance(event, DatagramToSend):
                datagrams.append((event.data, event.destination))
            elif isinstance(event, RtpToSend):
                self.rtp_out.append((event.port, event.data, event.destination))
            elif isinstance(event, WebhookRequested):
                self.webhook_requests.append(event)
            elif isinstance(event, StatusChanged):
                self.status_changes.append(event)
            elif isinstance(event, LineStateChanged):
                self.line_changes.append(event)
            elif isinstance(event, ModemCommandRequested):
                self.modem_commands.append(event)
            elif isinstance(event, FailoverSwitched):
                self.failover_switches.append(event)
            elif isinstance(event, RecordingStarted | RecordingAudio | RecordingFinished):
                self.recording_events.append(event)
            elif isinstance(event, MenuGreetingRecorded):
                self.menu_greetings.append(event)
            else:
                assert write_record(self._recorder, event), f"unexpected event {event!r}"
        return datagrams

    @property
    def recorder(self) -> MemoryRecorder:
        """The records written so far: everything the core has emitted, as the daemon would
        have performed it right after the call that caused it."""
        self.pump()
        return self._recorder

    def rtp_to_send(self) -> list[tuple[int, bytes, tuple[str, int]]]:
        """(local port, datagram, destination) the box sent from its own RTP ports so far."""
        self.pump()
        out, self.rtp_out = self.rtp_out, []
        return out

    def run_until(self, until: float) -> None:
        """Step time to `until`, running each gateway timer at its own deadline on the way."""
        for _ in range(100_000):
            when = self.gateway.get_timer()
            if when is None or when > until:
                break
            self.now = max(self.now, when)
            self.gateway.handle_timer(self.now)
            self.pump()
        else:
            raise AssertionError("timers never settled")
        self.now = until

    def advance(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def status(self) -> dict[str, object]:
        return self.gateway.status(self.now)

    def channels_in_use(self) -> dict[str, int]:
        channels = self.status()["channels"]
        assert isinstance(channels, list)
        return {c["key"]: c["in_use"] for c in channels}

    def calls(self) -> list[dict[str, object]]:
        calls = self.status()["calls"]
        assert isinstance(calls, list)
        return calls

    def transactions(self) -> int:
        count = self.status()["transactions"]
        assert isinstance(count, int)
        return count

    def stats(self) -> dict[str, int]:
        stats = self.status()["stats"]
        assert isinstance(stats, dict)
        return stats


# --------------------------------------------------------------------------------------------
# Peers: phones and the provider


@dataclass
class _Incoming:
    """An INVITE this peer received and what it answered."""

    invite: Request
    tag: str
    last: Response | None = None

    @property
    def final(self) -> int | None:
        return self.last.status if self.last is not None and self.last.status >= 200 else None


@dataclass
class _Outgoing:
    """An INVITE this peer sent and the dialog it got."""

    invite: Request
    answer: Response | None = None
    cseq: int = 1


@dataclass
class Peer:
    net: Network
    address: Address
    user: str
    silent: bool = False  # receives everything, answers nothing (unplugged, crashed)
    rings: bool = True  # answer a new INVITE with 180 at once
    acks_2xx: bool = True
    received: list[Message] = field(default_factory=list)
    incoming: dict[str, _Incoming] = field(default_factory=dict)  # by INVITE branch
    outgoing: list[_Outgoing] = field(default_factory=list)
    _cseq: int = 0

    def __post_init__(self) -> None:
        self.net.peers[self.address] = self
        self.call_id_prefix = secrets.token_hex(6)

    # --- what arrives --------------------------------------------------------------------

    def deliver(self, message: Message) -> None:
        self.received.append(message)
        if self.silent:
            return
        if isinstance(message, Request):
            self._on_request(message)
        else:
            self._on_response(message)

    def _on_request(self, req: Request) -> None:
        if req.method == "INVITE":
            branch = req.top_via.branch or ""
            known = self.incoming.get(branch)
            if known is not None:
                if known.last is not None:
                    self.net.send(self, known.last)  # a retransmission: repeat ourselves
                return
            self.incoming[branch] = _Incoming(invite=req, tag=secrets.token_hex(4))
            if self.rings:
                self.reply(req, 180)
        elif req.method == "CANCEL":
            self.send(make_response(req, 200))
            pending = self.incoming.get(req.top_via.branch or "")
            if pending is not None and pending.final is None:
                self.reply(pending.invite, 487)
        elif req.method != "ACK":  # BYE and anything else inside a call: accepted
            self.send(make_response(req, 200))

    def _on_response(self, response: Response) -> None:
        if response.cseq.method != "INVITE" or response.status < 200:
            return
        for call in self.outgoing:
            if call.invite.call_id != response.call_id:
                continue
            if response.status >= 300:
                self.send(self._ack_for_failure(call.invite, response))
            else:
                call.answer = response
                if self.acks_2xx:
                    self.send(self._ack_for_2xx(call, response))

    # --- sending -------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        self.net.send(self, message)

    def reply(self, invite: Request, status: int) -> Response:
        entry = self.incoming[invite.top_via.branch or ""]
        headers = []
        if status < 300:
            headers.append(("Contact", f"<sip:{self.user}@{self.address.host}:"
                                       f"{self.address.port}>"))
        response = make_response(invite, status, to_tag=entry.tag, headers=headers)
        entry.last = response
        self.send(response)
        return response

    def via(self) -> str:
        return f"SIP/2.0/UDP {self.address.host}:{self.address.port};branch={new_branch()}"

    # --- inspection ----------------------------------------------------------------------

    def requests(self, method: str) -> list[Request]:
        return [m for m in self.received if isinstance(m, Request) and m.method == method]

    def invites(self) -> list[Request]:
        """INVITEs received, retransmissions left out."""
        seen: dict[str, Request] = {}
        for invite in self.requests("INVITE"):
            seen.setdefault(invite.top_via.branch or "", invite)
        return list(seen.values())

    def responses(self, method: str = "INVITE") -> list[Response]:
        return [
            m for m in self.received if isinstance(m, Response) and m.cseq.method == method
        ]

    def final_statuses(self, method: str = "INVITE") -> list[int]:
        statuses: list[int] = []
        for response in self.responses(method):
            if response.status >= 200 and response.status not in statuses:
                statuses.append(response.status)
        return statuses

    # --- the phone's side ----------------------------------------------------------------

    def ringing_invite(self) -> Request:
        pending = [e.invite for e in self.incoming.values() if e.final is None]
        assert pending, f"{self.user} has no INVITE waiting for an answer"
        return pending[-1]

    def answer(self) -> Response:
        return self.reply(self.ringing_invite(), 200)

    def decline_busy(self) -> Response:
        return self.reply(self.ringing_invite(), 486)

    def hang_up(self) -> Request:
        """BYE inside the dialog this phone answered (as the UAS of the leg)."""
        answered = [e for e in self.incoming.values() if e.final == 200]
        assert answered, f"{self.user} answered no call"
        entry = answered[-1]
        invite = entry.invite
        contact = invite.contacts[0].uri
        bye = request("BYE", str(contact), [
            ("Via", self.via()),
            ("Max-Forwards", "70"),
            ("From", f"{invite.headers.get('To')};tag={entry.tag}"),
            ("To", invite.headers.get("From") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", "1 BYE"),
        ])
        self.send(bye)
        return bye

    def register(self, *, password: str | None = None, expires: int = 3600) -> Response:
        """REGISTER, answer the digest challenge, return the final response."""
        call_id = f"reg-{self.call_id_prefix}@{self.address.host}"
        aor = f"sip:{self.user}@{GATEWAY.host}"

        def build(authorization: str | None) -> Request:
            self._cseq += 1
            headers = [
                ("Via", self.via()),
                ("Max-Forwards", "70"),
                ("From", f"<{aor}>;tag=reg-{self.user}"),
                ("To", f"<{aor}>"),
                ("Call-ID", call_id),
                ("CSeq", f"{self._cseq} REGISTER"),
                ("Contact", f"<sip:{self.user}@{self.address.host}:{self.address.port}>"),
                ("Expires", str(expires)),
                ("User-Agent", "TestPhone/1.0"),
            ]
            if authorization is not None:
                headers.append(("Authorization", authorization))
            return request("REGISTER", f"sip:{GATEWAY.host}", headers)

        self.send(build(None))
        challenge = self.responses("REGISTER")[-1]
        assert challenge.status == 401, challenge
        chosen = choose_challenge(challenge.headers.get_all("WWW-Authenticate"))
        assert chosen is not None
        authorization = build_authorization(
            chosen, method="REGISTER", uri=f"sip:{GATEWAY.host}", username=self.user,
            password=password or PASSWORDS[self.user], cnonce=secrets.token_hex(4), nc=1,
        )
        self.send(build(authorization))
        return self.responses("REGISTER")[-1]

    # --- the caller's side ---------------------------------------------------------------

    def call(self, dialed: str, *, extra: list[tuple[str, str]] | None = None,
             contact: bool = True, sdp: bytes = b"") -> Request:
        headers = [
            ("Via", self.via()),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{self.user}@{self.address.host}>;tag={secrets.token_hex(4)}"),
            ("To", f"<sip:{dialed}@{GATEWAY.host}>"),
            ("Call-ID", f"{secrets.token_hex(8)}@{self.address.host}"),
            ("CSeq", "1 INVITE"),
        ]
        if contact:
            headers.append(("Contact", f"<sip:{self.user}@{self.address.host}:"
                                       f"{self.address.port}>"))
        if sdp:
            headers.append(("Content-Type", "application/sdp"))
        invite = request("INVITE", f"sip:{dialed}@{GATEWAY.host}", headers + (extra or []),
                         sdp)
        self.outgoing.append(_Outgoing(invite=invite))
        self.send(invite)
        return invite

    def cancel(self, invite: Request) -> None:
        self.send(request("CANCEL", str(invite.uri), [
            ("Via", invite.headers.get_list("Via")[0]),
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", invite.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.seq} CANCEL"),
        ]))

    def bye(self, invite: Request) -> None:
        call = next(c for c in self.outgoing if c.invite is invite)
        assert call.answer is not None, "the call was not answered"
        call.cseq += 1
        self.send(request("BYE", str(call.answer.contacts[0].uri), [
            ("Via", self.via()),
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", call.answer.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{call.cseq} BYE"),
        ]))

    def _ack_for_2xx(self, call: _Outgoing, response: Response) -> Request:
        # §13.2.2.4: a new transaction-less request to the remote target, its own branch.
        return request("ACK", str(response.contacts[0].uri), [
            ("Via", self.via()),
            ("Max-Forwards", "70"),
            ("From", call.invite.headers.get("From") or ""),
            ("To", response.headers.get("To") or ""),
            ("Call-ID", call.invite.call_id),
            ("CSeq", f"{call.invite.cseq.seq} ACK"),
        ])

    @staticmethod
    def _ack_for_failure(invite: Request, response: Response) -> Request:
        # §17.1.1.3: same branch as the INVITE, To from the response.
        return request("ACK", str(invite.uri), [
            ("Via", invite.headers.get_list("Via")[0]),
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", response.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.seq} ACK"),
        ])


@dataclass
class Office:
    net: Network
    provider: Peer
    phones: dict[str, Peer]

    @property
    def rows(self) -> list[tuple[dict[str, object], list[dict[str, object]]]]:
        return self.net.recorder.calls


def office(registered: tuple[str, ...] = ("101", "102", "103"),
           config: dict[str, object] | None = None) -> Office:
    net = Network(config)
    provider = Peer(net, PROVIDER, "79161234567")
    phones = {number: Peer(net, address, number) for number, address in PHONE_ADDRESSES.items()}
    for number in registered:
        assert phones[number].register().status == 200
    return Office(net=net, provider=provider, phones=phones)


def answer_with_sdp(peer: Peer, sdp: bytes) -> Response:
    """`peer` answers its ringing INVITE 200 with `sdp` (a late offer's answer or its own)."""
    invite = peer.ringing_invite()
    entry = peer.incoming[invite.top_via.branch or ""]
    response = make_response(invite, 200, to_tag=entry.tag, headers=[
        ("Contact", f"<sip:{peer.user}@{peer.address.host}:{peer.address.port}>"),
        ("Content-Type", "application/sdp"),
    ], body=sdp)
    entry.last = response
    peer.send(response)
    return response


def press(peer: Peer, invite: Request, key: str, *,
          content_type: str = "application/dtmf-relay") -> int:
    """Send DTMF as INFO in the early dialog of `invite` (To tag from our 180); return the
    INFO's final status."""
    ringing = [r for r in peer.responses() if r.call_id == invite.call_id and r.status == 180]
    assert ringing, "no early dialog: the caller has not heard ringing"
    body = f"Signal={key}\r\nDuration=160\r\n" if content_type.endswith("relay") else key
    info = request("INFO", f"sip:linebox@{GATEWAY.host}:{GATEWAY.port}", [
        ("Via", peer.via()),
        ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""),
        ("To", ringing[-1].headers.get("To") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", "2 INFO"),
        ("Content-Type", content_type),
    ], body.encode())
    before = len(peer.responses("INFO"))
    peer.send(info)
    replies = peer.responses("INFO")[before:]
    assert replies, "INFO unanswered"
    return replies[-1].status


def authorised_call(phone: Peer, dialed: str, *, password: str | None = None,
                    sdp: bytes = b"", extra: list[tuple[str, str]] | None = None,
                    ) -> tuple[Request, Response]:
    """A phone's INVITE (with `sdp` as its offer), challenged and sent again with
    Proxy-Authorization (RFC 3261 §22.3); returns the second INVITE and the last response to
    it. The phone's ACK of a 2xx and its BYE belong to the second INVITE."""
    first = phone.call(dialed, sdp=sdp, extra=extra)
    challenge = phone.responses()[-1]
    assert challenge.status == 407, challenge
    chosen = choose_challenge(challenge.headers.get_all("Proxy-Authenticate"))
    assert chosen is not None
    authorization = build_authorization(
        chosen, method="INVITE", uri=str(first.uri), username=phone.user,
        password=password or PASSWORDS[phone.user], cnonce=secrets.token_hex(4), nc=1,
    )
    invite = request("INVITE", str(first.uri), [
        ("Via", phone.via()),
        *[(name, value) for name, value in first.headers
          if name not in ("Via", "CSeq", "Content-Length")],
        ("CSeq", "2 INVITE"),
        ("Proxy-Authorization", authorization),
    ], sdp)
    phone.outgoing[-1].invite = invite
    phone.send(invite)
    return invite, phone.responses()[-1]


# --------------------------------------------------------------------------------------------
# The callback office: department 800 offers a callback to its waiting callers (shared by the
# callback tests and the voicemail tests of the apology that follows an expired request)

CALLBACK_DID = "+74950000800"
CUSTOMER_RING_S = 5
RETRY_S = 10
EXPIRE_S = 60

CALLBACK = config_with(
    [{"number": "800", "name": "Service", "strategy": "ring_all", "ring_timeout_s": 15,
      "members": ["101"],
      "queue": {"max_callers": 5, "max_wait_s": 120, "retry_s": 5,
                "callback": {"key": "1", "expire_s": EXPIRE_S,
                             "customer_ring_s": CUSTOMER_RING_S, "attempts": 2,
                             "retry_s": RETRY_S}}}],
    [{"number": CALLBACK_DID, "trunk": "provider", "channels": 5, "destination": "800"}],
)


def waiting_with_request() -> tuple[Office, Request]:
    """Member 101 is on break; the customer calls, waits, and presses 1."""
    o = office(config=CALLBACK)
    o.net.gateway.set_agent_status("101", "break", source="cli", now=o.net.now)
    invite = o.provider.call(CALLBACK_DID)
    assert press(o.provider, invite, "1") == 200
    return o, invite

