"""The gateway end to end, sans-IO: scripted phones and a provider talk to it through bytes.

Every datagram the gateway emits is parsed and handed to the peer it is addressed to; the peers
answer like real phones (ring at once, answer when told, 200 to BYE and CANCEL, 487 after a
CANCEL) and the provider ACKs what it gets. Time only moves when a test steps it, and whenever
it does every gateway timer due on the way is run at its own deadline (aioquic's
tests/test_connection.py style), so "the INVITE goes out exactly at 10 s" is checkable.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from firmware.core import Gateway, MemoryRecorder
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

Message = Request | Response
_branches = itertools.count(1)


def new_branch() -> str:
    return f"z9hG4bKtest{next(_branches)}{secrets.token_hex(4)}"


def request(method: str, uri: str, headers: list[tuple[str, str]], body: bytes = b"") -> Request:
    return Request(method, parse_uri(uri), Headers(headers), body)


# --------------------------------------------------------------------------------------------
# The network: the gateway, its clock, and the peers it talks to


class Network:
    def __init__(self, config: dict[str, object] | None = None) -> None:
        self.now = 0.0
        self.recorder = MemoryRecorder()
        self.gateway = Gateway(
            parse_config(config or CONFIG), local=GATEWAY, trunk_addresses={"provider": PROVIDER},
            recorder=self.recorder, key=b"k" * 32, now=0.0,
        )
        self.peers: dict[Address, Peer] = {}
        self.lost: list[tuple[Message, Address]] = []
        self._to_gateway: deque[tuple[bytes, Address]] = deque()

    def send(self, peer: Peer, message: Message) -> None:
        self._to_gateway.append((message.to_bytes(), peer.address))
        self.pump()

    def pump(self) -> None:
        """Deliver everything in flight, in order, until the wire is quiet."""
        for _ in range(10_000):
            outgoing = self.gateway.datagrams_to_send()
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


@pytest.fixture
def o() -> Office:
    return office()


def leg_results(legs: list[dict[str, object]]) -> dict[object, object]:
    return {leg["target"]: leg["result"] for leg in legs}


# --------------------------------------------------------------------------------------------
# Registration


def test_phone_registers_with_digest_credentials(o: Office) -> None:
    registrations = o.net.status()["registrations"]
    assert isinstance(registrations, list)
    assert sorted(r["extension"] for r in registrations) == ["101", "102", "103"]


def test_register_with_a_wrong_password_is_forbidden() -> None:
    net = Network()
    phone = Peer(net, PHONE_ADDRESSES["101"], "101")
    assert phone.register(password="not-the-password").status == 403
    assert net.status()["registrations"] == []


# --------------------------------------------------------------------------------------------
# ring_all


def test_provider_call_rings_every_registered_member_of_a_ring_all_department(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    assert len(o.phones["101"].invites()) == 1
    assert len(o.phones["102"].invites()) == 1
    assert o.phones["103"].invites() == []


def test_unregistered_member_is_not_rung() -> None:
    o = office(registered=("101",))
    o.provider.call(RING_ALL_DID)
    assert len(o.phones["101"].invites()) == 1
    assert o.phones["102"].received == []


def test_ringing_is_relayed_to_the_caller_once(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    assert [r.status for r in o.provider.responses()] == [100, 180]


def test_first_answer_wins_and_the_caller_gets_200(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.advance(3.0)
    o.phones["102"].answer()
    assert o.provider.final_statuses() == [200]
    [call] = o.net.calls()
    assert call["answered_by"] == "102"


def test_the_other_ringing_leg_gets_cancel_when_one_answers(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.advance(3.0)
    o.phones["102"].answer()
    assert len(o.phones["101"].requests("CANCEL")) == 1
    assert o.phones["102"].requests("CANCEL") == []


def test_a_second_answer_that_lost_the_race_is_hung_up(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    late = o.phones["102"]
    invite = late.ringing_invite()
    late.silent = True  # our CANCEL crosses its 200 on the wire
    o.phones["101"].answer()
    late.silent = False
    late.reply(invite, 200)
    assert len(late.requests("BYE")) == 1
    assert o.provider.final_statuses() == [200]


def test_caller_cancel_is_answered_487(o: Office) -> None:
    invite = o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.provider.cancel(invite)
    assert o.provider.final_statuses("CANCEL") == [200]
    assert o.provider.final_statuses() == [487]


def test_caller_cancel_cancels_every_ringing_leg(o: Office) -> None:
    invite = o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.provider.cancel(invite)
    assert len(o.phones["101"].requests("CANCEL")) == 1
    assert len(o.phones["102"].requests("CANCEL")) == 1


def test_department_gives_up_after_ring_timeout_with_480(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.run_until(RING_ALL_TIMEOUT_S - 0.01)
    assert o.provider.final_statuses() == []
    o.net.run_until(RING_ALL_TIMEOUT_S)
    assert o.provider.final_statuses() == [480]


def test_give_up_cancels_every_ringing_leg(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.run_until(RING_ALL_TIMEOUT_S)
    assert len(o.phones["101"].requests("CANCEL")) == 1
    assert len(o.phones["102"].requests("CANCEL")) == 1


def test_every_leg_busy_is_answered_486(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.phones["101"].decline_busy()
    assert o.provider.final_statuses() == []
    o.phones["102"].decline_busy()
    assert o.provider.final_statuses() == [486]


def test_department_without_a_registered_member_answers_480_at_once() -> None:
    o = office(registered=())
    o.provider.call(RING_ALL_DID)
    assert o.provider.final_statuses() == [480]


# --------------------------------------------------------------------------------------------
# in_order


def test_in_order_rings_only_the_first_member_at_first(o: Office) -> None:
    o.provider.call(IN_ORDER_DID)
    assert len(o.phones["101"].invites()) == 1
    assert o.phones["102"].invites() == []


def test_in_order_rings_the_second_member_exactly_when_the_first_ring_time_ends(
    o: Office,
) -> None:
    o.provider.call(IN_ORDER_DID)
    o.net.run_until(FIRST_RING_TIME_S - 0.001)
    assert o.phones["102"].invites() == []
    o.net.run_until(FIRST_RING_TIME_S)
    assert len(o.phones["102"].invites()) == 1


def test_in_order_cancels_the_first_member_when_the_second_starts(o: Office) -> None:
    o.provider.call(IN_ORDER_DID)
    o.net.run_until(FIRST_RING_TIME_S - 0.001)
    assert o.phones["101"].requests("CANCEL") == []
    o.net.run_until(FIRST_RING_TIME_S)
    assert len(o.phones["101"].requests("CANCEL")) == 1


def test_a_hunt_schedules_its_next_step_only(o: Office) -> None:
    o.provider.call(IN_ORDER_DID)
    (call,) = o.net.gateway.calls.values()
    pending = sorted(t.when for t in call.timers if not t.cancelled)  # type: ignore[attr-defined]
    assert pending == [FIRST_RING_TIME_S, FIRST_RING_TIME_S + IN_ORDER_TIMEOUT_S]  # 102, give up
    o.net.run_until(FIRST_RING_TIME_S)
    pending = [t.when for t in call.timers  # type: ignore[attr-defined]
               if not t.cancelled and t.when > o.net.now]  # type: ignore[attr-defined]
    assert pending == [FIRST_RING_TIME_S + IN_ORDER_TIMEOUT_S]  # the last member: give up only


def test_in_order_busy_member_moves_to_the_next_at_once(o: Office) -> None:
    o.provider.call(IN_ORDER_DID)
    o.net.advance(1.0)
    o.phones["101"].decline_busy()
    assert len(o.phones["102"].invites()) == 1
    assert o.provider.final_statuses() == []


def test_in_order_gives_up_after_the_last_ring_time(o: Office) -> None:
    o.provider.call(IN_ORDER_DID)
    o.net.run_until(FIRST_RING_TIME_S + IN_ORDER_TIMEOUT_S - 0.01)
    assert o.provider.final_statuses() == []
    o.net.run_until(FIRST_RING_TIME_S + IN_ORDER_TIMEOUT_S)
    assert o.provider.final_statuses() == [480]
    assert len(o.phones["102"].requests("CANCEL")) == 1


# --------------------------------------------------------------------------------------------
# Channel capacity


def test_the_fourth_concurrent_call_on_three_channels_is_busy_at_once(o: Office) -> None:
    for _ in range(3):
        o.provider.call(RING_ALL_DID)
    invites_before = len(o.phones["101"].invites())
    fourth = o.provider.call(RING_ALL_DID)
    statuses = [r.status for r in o.provider.responses() if r.call_id == fourth.call_id]
    assert [s for s in statuses if s >= 200] == [486]
    assert len(o.phones["101"].invites()) == invites_before


def test_a_call_over_capacity_is_recorded_as_such(o: Office) -> None:
    for _ in range(4):
        o.provider.call(RING_ALL_DID)
    [(row, legs)] = o.rows
    assert (row["outcome"], legs) == ("over_capacity", [])


def test_a_channel_is_free_again_once_a_call_ends(o: Office) -> None:
    calls = [o.provider.call(RING_ALL_DID) for _ in range(3)]
    o.provider.cancel(calls[0])
    fourth = o.provider.call(RING_ALL_DID)
    statuses = [r.status for r in o.provider.responses() if r.call_id == fourth.call_id]
    assert 486 not in statuses


def test_channels_are_counted_per_number_and_per_trunk(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.provider.call(IN_ORDER_DID)
    assert o.net.channels_in_use() == {
        f"number:{RING_ALL_DID}": 1, f"number:{IN_ORDER_DID}": 1, f"number:{SLOW_DID}": 0,
        "trunk:provider": 2,
    }


# --------------------------------------------------------------------------------------------
# Every way a call ends: channels, call records, transactions


@dataclass(frozen=True)
class Ending:
    name: str
    drive: Callable[[Office], None]
    outcome: str
    end_cause: str
    legs: dict[str, str]


def _answer_then_caller_hangs_up(o: Office) -> None:
    invite = o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.phones["101"].answer()
    o.net.advance(30.0)
    o.provider.bye(invite)


def _answer_then_callee_hangs_up(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.phones["101"].answer()
    o.net.advance(30.0)
    o.phones["101"].hang_up()


def _caller_cancels(o: Office) -> None:
    invite = o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.provider.cancel(invite)


def _every_leg_busy(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.phones["101"].decline_busy()
    o.phones["102"].decline_busy()


def _nobody_answers(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.advance(RING_ALL_TIMEOUT_S + 1)


def _leg_never_responds(o: Office) -> None:
    # Timer B: the only member's phone is gone without unregistering.
    o.phones["103"].silent = True
    o.provider.call(SLOW_DID)
    o.net.advance(TIMEOUT_S + 1)


def _caller_never_acks(o: Office) -> None:
    o.provider.acks_2xx = False
    o.provider.call(RING_ALL_DID)
    o.phones["101"].answer()
    o.net.advance(TIMEOUT_S + 1)


ENDINGS = [
    Ending("answered, caller hangs up", _answer_then_caller_hangs_up, "answered",
           "hangup by caller", {"101": "answered", "102": "cancelled"}),
    Ending("answered, callee hangs up", _answer_then_callee_hangs_up, "answered",
           "hangup by callee", {"101": "answered", "102": "cancelled"}),
    Ending("caller cancels", _caller_cancels, "missed", "caller cancelled",
           {"101": "cancelled", "102": "cancelled"}),
    Ending("every leg busy", _every_leg_busy, "missed", "no answer",
           {"101": "busy", "102": "busy"}),
    Ending("nobody answers", _nobody_answers, "missed", "no answer",
           {"101": "no_answer", "102": "no_answer"}),
    Ending("leg never responds", _leg_never_responds, "missed", "no answer",
           {"103": "failed"}),
    Ending("caller never ACKs", _caller_never_acks, "answered", "no ACK from caller",
           {"101": "answered", "102": "cancelled"}),
]
ENDING_IDS = [e.name for e in ENDINGS]


@pytest.mark.parametrize("ending", ENDINGS, ids=ENDING_IDS)
def test_channels_return_to_zero_when_a_call_ends(o: Office, ending: Ending) -> None:
    ending.drive(o)
    assert set(o.net.channels_in_use().values()) == {0}
    assert o.net.calls() == []


@pytest.mark.parametrize("ending", ENDINGS, ids=ENDING_IDS)
def test_exactly_one_call_row_is_recorded_when_a_call_ends(o: Office, ending: Ending) -> None:
    ending.drive(o)
    o.net.advance(AFTER_EVERY_TIMER_S)
    [(row, legs)] = o.rows
    assert (row["outcome"], row["end_cause"]) == (ending.outcome, ending.end_cause)
    assert leg_results(legs) == ending.legs
    assert all(leg["call_id"] == row["id"] for leg in legs)


@pytest.mark.parametrize("ending", ENDINGS, ids=ENDING_IDS)
def test_no_transaction_is_left_once_every_timer_has_run(o: Office, ending: Ending) -> None:
    ending.drive(o)
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert o.net.transactions() == 0


def test_answered_call_row_names_who_answered_and_the_department(o: Office) -> None:
    _answer_then_caller_hangs_up(o)
    [(row, _)] = o.rows
    assert (row["direction"], row["source"], row["number"], row["department"],
            row["answered_by"], row["caller"]) == (
        "inbound", "trunk:provider", RING_ALL_DID, "200", "101", "79161234567",
    )


def test_caller_bye_is_relayed_to_the_answering_phone(o: Office) -> None:
    _answer_then_caller_hangs_up(o)
    assert len(o.phones["101"].requests("BYE")) == 1
    assert o.provider.final_statuses("BYE") == [200]


def test_callee_bye_is_relayed_to_the_caller(o: Office) -> None:
    _answer_then_callee_hangs_up(o)
    assert len(o.provider.requests("BYE")) == 1
    assert o.phones["101"].final_statuses("BYE") == [200]


def test_leg_without_any_response_times_out_and_the_caller_gets_480(o: Office) -> None:
    o.phones["103"].silent = True
    o.provider.call(SLOW_DID)
    o.net.run_until(TIMEOUT_S - 0.01)
    assert o.provider.final_statuses() == []
    o.net.run_until(TIMEOUT_S)
    assert o.provider.final_statuses() == [480]


def test_caller_that_never_acks_the_200_is_hung_up_on_both_sides(o: Office) -> None:
    o.provider.acks_2xx = False
    o.provider.call(RING_ALL_DID)
    o.phones["101"].answer()
    o.net.run_until(TIMEOUT_S - 0.01)
    assert o.phones["101"].requests("BYE") == []
    o.net.run_until(TIMEOUT_S)
    assert len(o.phones["101"].requests("BYE")) == 1
    assert len(o.provider.requests("BYE")) == 1


def test_a_ringing_leg_that_goes_silent_after_cancel_leaves_no_transaction(o: Office) -> None:
    # RFC 3261 §9.1: without a final response 64*T1 after the CANCEL, the UAC considers the
    # INVITE cancelled and destroys its client transaction.
    invite = o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.phones["102"].silent = True  # rang, then lost power
    o.provider.cancel(invite)
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert o.net.transactions() == 0


def test_idle_gateway_has_no_transactions_once_registrations_settle(o: Office) -> None:
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert o.net.transactions() == 0


# --------------------------------------------------------------------------------------------
# Robustness


def _break_the_registrar(o: Office, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> Response:
        raise RuntimeError("bug in the registrar")

    monkeypatch.setattr(o.net.gateway.registrar, "register", broken)


def test_an_internal_error_in_a_handler_does_not_escape_receive(
    o: Office, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _break_the_registrar(o, monkeypatch)
    o.phones["101"].register()  # raises here if the error escapes
    assert o.net.stats()["internal_errors"] == 1


def test_a_request_whose_handler_fails_is_answered_500(monkeypatch: pytest.MonkeyPatch) -> None:
    o = office(registered=())
    _break_the_registrar(o, monkeypatch)
    phone = o.phones["101"]
    phone.register()
    assert [r.status for r in phone.responses("REGISTER")] == [401, 500]


def test_a_request_whose_handler_fails_leaves_no_transaction(
    o: Office, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _break_the_registrar(o, monkeypatch)
    o.phones["101"].register()
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert o.net.transactions() == 0


def test_the_gateway_keeps_working_after_an_internal_error(
    o: Office, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as patch:
        _break_the_registrar(o, patch)
        o.phones["101"].register()
    o.provider.call(RING_ALL_DID)
    assert len(o.phones["101"].invites()) == 1


def test_rfc2543_caller_without_contact_is_connected_and_released(o: Office) -> None:
    # RFC 4475 §3.4.1 (inv2543): an old client may leave Contact out; the box still takes the
    # call, reaching the caller at its From address / source, and frees everything after BYE.
    invite = o.provider.call(RING_ALL_DID, contact=False)
    o.phones["101"].answer()
    assert o.provider.final_statuses() == [200]
    o.provider.bye(invite)
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert set(o.net.channels_in_use().values()) == {0}
    assert o.net.transactions() == 0


def test_scanner_named_in_another_case_in_the_config_is_dropped() -> None:
    config = dict(CONFIG, security={"scanner_user_agents": ["SIPVicious"]})
    net = Network(config)
    scanner = Peer(net, Address("udp", "198.51.100.66", 5060), "100")
    scanner.call("100", extra=[("User-Agent", "sipvicious 0.3.4")])
    assert scanner.received == []
    assert net.stats()["dropped_scanner"] == 1


# --------------------------------------------------------------------------------------------
# Live status (what the web UI's monitor shows)


def test_status_says_how_long_each_extension_has_rung_and_since_when_the_call_is_answered(
    o: Office,
) -> None:
    o.provider.call(IN_ORDER_DID)
    o.net.advance(3.0)
    [call] = o.net.calls()
    assert call["ringing"] == ["101"] and call["ringing_s"] == {"101": 3.0}
    assert call["answered_s"] is None
    o.net.run_until(FIRST_RING_TIME_S + 2.0)
    [call] = o.net.calls()
    assert call["ringing_s"] == {"102": 2.0}
    o.phones["102"].answer()
    o.net.advance(5.0)
    [call] = o.net.calls()
    assert call["answered_s"] == 5.0 and call["ringing_s"] == {}


def agents_by_extension(net: Network) -> dict[str, dict[str, object]]:
    agents = net.status()["agents"]
    assert isinstance(agents, list)
    return {str(a["extension"]): a for a in agents}


def test_status_says_how_long_ago_each_agent_ended_a_call() -> None:
    departments = CONFIG["departments"]
    assert isinstance(departments, list)
    with_wrap_up = [dict(departments[0], wrap_up_s=30), *departments[1:]]
    o = office(config=dict(CONFIG, departments=with_wrap_up))
    assert agents_by_extension(o.net)["101"]["call_ended_s"] is None
    o.provider.call(RING_ALL_DID)
    o.phones["101"].answer()
    o.net.advance(10.0)
    o.phones["101"].hang_up()
    o.net.advance(4.0)
    agents = agents_by_extension(o.net)
    assert agents["101"]["call_ended_s"] == 4.0 and agents["101"]["wrap_up_s"] == 26.0
    assert agents["102"]["call_ended_s"] is None
