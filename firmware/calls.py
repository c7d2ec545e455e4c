"""The B2BUA: one call is an inbound leg paired with outbound legs that never share SIP state.

The inbound leg (the caller's INVITE server transaction and later its dialog) and each outbound
leg (our INVITE client transaction and dialog toward a phone or the provider) exchange call-control
events — try, ring, connect, disconnect, fail — in the manner of sippy's B2BUA. The ring plan comes
from `firmware.routing`; this module only carries it out: it starts and cancels legs on time,
relays provisional responses, lets the first 2xx win and cancels the rest (RFC 3261 §16.7-like
forking done by a UAC), relays re-INVITEs and BYE, and releases the call's channels on every way a
call can end. SDP is relayed unchanged, unless the box holds the call's media: once it has
answered the caller's SDP itself (early media in a queue, `anchor`) the legs get the box's own
offer and re-INVITEs are answered per side; or the box is the far end (voicemail, `local`).

Sans-IO like the rest of the core: every entry point takes `now`; sending and timers go through
the `Services` protocol that the gateway implements.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Protocol

from .callerid import quoted_display
from .routing.plan import RingPlan, RingStep
from .sip.dialog import Dialog
from .sip.errors import RemoteProtocolError
from .sip.message import Headers, Request, Response, make_response
from .sip.transaction import Address, new_branch, new_tag
from .sip.uri import SipUri, parse_uri

LOGGER = logging.getLogger(__name__)

# Methods a party to a call may send (in the dialog); REGISTER is for the registrar.
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, MESSAGE, NOTIFY"
RELAYED_IN_DIALOG = frozenset({"INFO", "UPDATE", "MESSAGE", "NOTIFY", "OPTIONS"})
COPIED_INVITE_HEADERS = ("Content-Type", "Content-Disposition", "Supported", "Allow")


class Timer(Protocol):
    def cancel(self) -> None: ...


ResponseHandler = Callable[[str, Response, float], None]
TimeoutHandler = Callable[[str, float], None]


class Services(Protocol):
    """What the gateway provides to calls: sending, timers, records."""

    local_host: str
    local_port: int
    user_agent: str

    def send_request(
        self, request: Request, destination: Address, now: float, *,
        on_response: ResponseHandler, on_timeout: TimeoutHandler,
    ) -> str: ...

    def send_response(self, transaction_id: str, response: Response, now: float) -> None: ...

    def send_stateless(self, message: Request, destination: Address) -> None: ...

    def cancel_sent(self, transaction_id: str, now: float) -> None: ...

    def call_at(self, when: float, callback: Callable[[float], None]) -> Timer: ...

    def call_finished(self, call: Call, now: float) -> None: ...

    def release_channel(self, key: str) -> None: ...

    def dialog_opened(self, dialog: Dialog, call: Call, side: str) -> None: ...

    def invite_authorization(
        self, target: Target, challenge: Response, request: Request
    ) -> tuple[str, str] | None: ...


class LocalEnd(Protocol):
    """The box itself at one end of a call (voicemail, a prompt): see firmware.voicemail."""

    @property
    def outcome(self) -> str: ...

    def key_pressed(self, key: str, now: float) -> None: ...

    def renegotiate(self, offer: bytes) -> bytes: ...

    def answer_received(self, body: bytes, now: float) -> None: ...

    def remote_hung_up(self, now: float) -> None: ...

    def close(self) -> None: ...


class MediaAnchor(Protocol):
    """The box holds the call's media (firmware.anchor.CallMedia): legs get its offer, the
    answer joins the two sides, re-INVITEs are answered by it."""

    @property
    def caller_answer(self) -> bytes: ...

    def leg_offer(self) -> bytes: ...

    def connect(self, answer: bytes, now: float) -> bool: ...

    def renegotiate(self, side: str, offer: bytes) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Someone to ring: an extension's registered contact, or an external number via a trunk."""

    kind: str  # "extension" | "external"
    label: str  # extension number or dialled external number
    request_uri: str
    destination: Address
    to_uri: str
    trunk: str | None = None
    employee: str | None = None  # whose phone an external number is (a member's mobile)


@dataclass(slots=True, kw_only=True)
class LegRecord:
    target: str
    contact: str
    started_at: float
    ringing_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    result: str | None = None
    sip_status: int | None = None


@dataclass(slots=True, kw_only=True)
class OutboundLeg:
    target: Target
    invite: Request
    tx_id: str
    record: LegRecord
    state: str = "calling"  # calling → ringing → answered → done
    provisional_seen: bool = False
    cancel_pending: bool = False
    dialog: Dialog | None = None
    ack: Request | None = None
    auth_retried: bool = False
    channel: str | None = None  # a trunk channel held for this leg alone (a fork to mobiles)

    @property
    def active(self) -> bool:
        return self.state in ("calling", "ringing")


@dataclass(slots=True, kw_only=True)
class PendingRelay:
    """A request relayed from one side to the other, waiting for the other side's answer."""

    from_side: str
    server_tx: str
    request: Request
    client_tx: str | None = None
    acked_dialog: Dialog | None = None
    invite_cseq: int | None = None
    final_2xx_seen: bool = False


class CallState(StrEnum):
    """Where a call is in its life (a StrEnum: the status JSON and the web UI read the value)."""

    ROUTING = "routing"  # admitted; a webhook, the CRM or the plan decides where it goes
    QUEUED = "queued"  # nobody free: waiting in the department's queue
    RINGING = "ringing"  # legs are ringing
    CONNECTING = "connecting"  # a callback: the member answered, the customer's phone rings
    ANSWERED = "answered"  # two parties (or the box itself) are talking
    ENDED = "ended"


_S = CallState
# Every move a call may make (h2's stream.py shape): a move not in the table is a bug in the box
# and raises, instead of leaving a call in a state nothing expects.
CALL_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    _S.ROUTING: frozenset({_S.RINGING, _S.QUEUED, _S.ANSWERED, _S.ENDED}),
    _S.QUEUED: frozenset({_S.RINGING, _S.QUEUED, _S.ANSWERED, _S.ENDED}),
    _S.RINGING: frozenset({_S.RINGING, _S.QUEUED, _S.CONNECTING, _S.ANSWERED, _S.ENDED}),
    _S.CONNECTING: frozenset({_S.ANSWERED, _S.ENDED}),
    _S.ANSWERED: frozenset({_S.ENDED}),
    _S.ENDED: frozenset(),
}


class IllegalTransition(Exception):
    """A call was told to move where its table does not let it (a bug in the box)."""


@dataclass(slots=True, kw_only=True)
class CallInfo:
    """The facts recorded about a call; written once when it ends."""

    direction: str
    source: str
    caller: str
    dialed: str
    number: str | None = None
    department: str | None = None
    strategy: str | None = None
    display: str | None = None  # the caller's name, plain text (firmware.callerid.display_name)
    line: str | None = None  # the line the call came in on (None: one of the office's phones)


@dataclass(eq=False, slots=True, kw_only=True)
class Call:
    services: Services
    invite: Request
    invite_tx: str
    source: Address
    info: CallInfo
    started_at: float
    channels: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    to_tag: str = field(default_factory=new_tag)
    state: CallState = CallState.ROUTING
    legs: dict[str, OutboundLeg] = field(default_factory=dict)
    winner: OutboundLeg | None = None
    inbound_dialog: Dialog | None = None
    plan: RingPlan | None = None
    resolve: Callable[[str], list[Target]] | None = None
    step_index: int = 0
    ring_started_at: float = 0.0  # the plan's step times count from here
    timers: list[Timer] = field(default_factory=list)
    leg_records: list[LegRecord] = field(default_factory=list)
    answered_at: float | None = None
    answered_by: str | None = None
    ended_at: float | None = None
    end_cause: str = ""
    outcome: str = ""
    final_status: int | None = None
    relays: dict[str, PendingRelay] = field(default_factory=dict)  # keyed by client tx
    relayed_18x: bool = False
    # What to do when the current plan or targets do not answer (the department's queue and
    # no-answer scheme, decided by the gateway); None: the caller hears the mapped failure.
    on_no_answer: Callable[[Call, float], None] | None = None
    context: object = None  # the gateway's routing state for this call
    queued_since: float | None = None
    waited_s: float = 0.0
    callback_state: str | None = None  # "requested" when the caller asked to be called back
    # The box answered the call itself (voicemail); `local_side` is the party it talks to.
    local: LocalEnd | None = None
    local_side: str = "a"
    # Our SDP for that party (in our 200, or our INVITE's offer), again for a re-INVITE
    # without an offer.
    local_answer: bytes = b""
    # The box answered the caller's SDP itself (early media in a queue): it holds the media.
    anchor: MediaAnchor | None = None

    # ------------------------------------------------------------------ ringing the targets
    def move_to(self, state: CallState) -> None:
        if state not in CALL_TRANSITIONS[self.state]:
            raise IllegalTransition(f"call {self.id}: {self.state} → {state}")
        self.state = state

    def ring(
        self, plan: RingPlan, resolve: Callable[[str], list[Target]], now: float, *,
        on_no_answer: Callable[[Call, float], None] | None = None,
    ) -> None:
        """Carry out a department/extension ring plan; its times count from `now`. A call may
        be rung again (from the queue, or at the next no-answer step)."""
        self._cancel_timers()
        self._leave_queue(now)
        self.plan = plan
        self.resolve = resolve
        self.step_index = 0
        self.on_no_answer = on_no_answer
        if plan.is_empty:
            self._no_answer(now, "no member available")
            return
        self.move_to(CallState.RINGING)
        self.ring_started_at = now
        self.timers.append(self.services.call_at(now + plan.give_up_at_s, self._give_up))
        self._schedule_step(0, now)

    def _schedule_step(self, index: int, now: float) -> None:
        """Run step `index` when its time comes (at once if it has come). Steps are scheduled
        one at a time, each when the one before runs: a hunt through 100 members is answered
        within its first few steps, and needs no 100 timers."""
        assert self.plan is not None
        if index >= len(self.plan.steps):
            return
        when = self.ring_started_at + self.plan.steps[index].at_s
        if when <= now:
            self._run_step(index, now)
        else:
            self.timers.append(self.services.call_at(when, partial(self._run_step, index)))

    def ring_targets(
        self, targets: list[Target], give_up_after_s: float, now: float, *,
        on_no_answer: Callable[[Call, float], None] | None = None,
        channels: list[str] | None = None,
    ) -> None:
        """Ring an explicit list of targets at once (a direct or an external call);
        `channels[i]`, if given, is a trunk channel held for target i's leg alone."""
        self._cancel_timers()
        self._leave_queue(now)
        self.plan = None
        self.on_no_answer = on_no_answer
        if not targets:
            self._no_answer(now, "not registered")
            return
        self.move_to(CallState.RINGING)
        self.timers.append(self.services.call_at(now + give_up_after_s, self._give_up))
        for index, target in enumerate(targets):
            self._start_leg(target, now, channel=channels[index] if channels else None)

    def wait_in_queue(self, now: float) -> None:
        """Nobody is free: the caller waits (hearing ringback) until the gateway rings again."""
        self._cancel_timers()
        if self.queued_since is None:
            self.queued_since = now
        self.move_to(CallState.QUEUED)
        if not self.relayed_18x:
            self.relayed_18x = True
            self._respond(180, now)

    def start_early_media(self, anchor: MediaAnchor, body: bytes, now: float) -> None:
        """183 with the box's SDP (early media, RFC 3960): from now on the box holds the
        call's media, and relays no ringing of the legs (the box plays it)."""
        self.anchor = anchor
        self.relayed_18x = True
        self._respond(183, now, body=body, headers=[("Content-Type", "application/sdp")])

    def _leave_queue(self, now: float) -> None:
        if self.queued_since is not None:
            self.waited_s += now - self.queued_since
            self.queued_since = None

    def _no_answer(self, now: float, cause: str) -> None:
        if self.on_no_answer is not None:
            self.on_no_answer(self, now)
        else:
            self.fail(self.failure_status(), cause, now, outcome="missed")

    def _run_step(self, index: int, now: float) -> None:
        if self.state != CallState.RINGING or self.plan is None or index < self.step_index:
            return
        self.step_index = index + 1
        step: RingStep = self.plan.steps[index]
        for member in step.stop:
            for leg in self.legs.values():
                if leg.target.label == member and leg.active:
                    # Their turn is over: for the agent's statistics this offer rang out.
                    self._cancel_leg(leg, now, result="no_answer")
        assert self.resolve is not None
        for member in step.start:
            for target in self.resolve(member):
                self._start_leg(target, now)
        # An earlier run (a step advanced when every leg failed) leaves its timer behind; it
        # finds step_index past it and does nothing.
        self._schedule_step(index + 1, now)
        if self.state == CallState.RINGING and not any(leg.active for leg in self.legs.values()):
            self._after_leg_failure(now)

    def _start_leg(self, target: Target, now: float, *, channel: str | None = None) -> None:
        invite = self._build_leg_invite(target)
        record = LegRecord(target=target.label, contact=target.request_uri, started_at=now)
        self.leg_records.append(record)
        leg = OutboundLeg(target=target, invite=invite, tx_id="", record=record, channel=channel)
        self._send_leg_invite(leg, now)

    def _release_leg_channel(self, leg: OutboundLeg) -> None:
        if leg.channel is not None:
            self.services.release_channel(leg.channel)
            leg.channel = None

    def _send_leg_invite(self, leg: OutboundLeg, now: float) -> None:
        leg.tx_id = self.services.send_request(
            leg.invite, leg.target.destination, now,
            on_response=partial(self._on_leg_response, leg),
            on_timeout=partial(self._on_leg_timeout, leg),
        )
        self.legs[leg.tx_id] = leg

    def _build_leg_invite(self, target: Target) -> Request:
        services = self.services
        caller = self.info.caller
        display = self.info.display
        from_host = services.local_host
        transport = ";transport=tcp" if target.destination.reliable else ""
        from_value = f"<sip:{caller}@{from_host}>;tag={new_tag()}"
        if display:
            from_value = f"{quoted_display(display)} {from_value}"
        max_forwards = self.invite.headers.get("Max-Forwards")
        hops = min(int(max_forwards) - 1, 70) if max_forwards and max_forwards.isdigit() else 70
        headers = Headers([
            ("Via", self._via(target.destination)),
            ("Max-Forwards", str(hops)),
            ("From", from_value),
            ("To", f"<{target.to_uri}>"),
            ("Call-ID", f"{secrets.token_hex(12)}@{from_host}"),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:linebox@{from_host}:{services.local_port}{transport}>"),
            ("User-Agent", services.user_agent),
        ])
        for name in COPIED_INVITE_HEADERS:
            value = self.invite.headers.get(name)
            if value is not None:
                headers.add(name, value)
        request_uri = _parse_sip_uri(target.request_uri)
        if self.anchor is not None:
            # The box holds the caller's media: the leg gets the box's own offer.
            headers.set("Content-Type", "application/sdp")
            headers.remove("Content-Disposition")
            return Request("INVITE", request_uri, headers, self.anchor.leg_offer())
        return Request("INVITE", request_uri, headers, self.invite.body)

    def _via(self, destination: Address) -> str:
        return (
            f"SIP/2.0/{destination.transport.upper()} {self.services.local_host}:"
            f"{self.services.local_port};branch={new_branch()};rport"
        )

    # ------------------------------------------------------------------ leg responses
    def _on_leg_response(
        self, leg: OutboundLeg, tx_id: str, response: Response, now: float
    ) -> None:
        status = response.status
        if status < 200:
            self._on_leg_provisional(leg, response, now)
        elif status < 300:
            self._on_leg_answer(leg, response, now)
        else:
            self._on_leg_failure(leg, response, now)

    def _on_leg_provisional(self, leg: OutboundLeg, response: Response, now: float) -> None:
        leg.provisional_seen = True
        if leg.cancel_pending:
            self._send_cancel(leg, now)
            return
        if response.status == 100 or not leg.active:
            return
        if leg.state == "calling":
            leg.state = "ringing"
            leg.record.ringing_at = now
        if self.state != CallState.RINGING or self.anchor is not None:
            return
        # Relay ringing once, and early media whenever it carries SDP (RFC 3261 §13.3.1.1).
        if response.body or not self.relayed_18x:
            self.relayed_18x = True
            relay_status = response.status if response.status in (180, 183) else 180
            self._respond(relay_status, now, body=response.body, headers=self._body_headers(
                response
            ))

    def _on_leg_answer(self, leg: OutboundLeg, response: Response, now: float) -> None:
        dialog = self._accept_answer(leg, response, now)
        if dialog is None:
            return
        if self.anchor is not None and not self.anchor.connect(response.body, now):
            leg.state = "done"
            self._release_leg_channel(leg)
            leg.record.result = "failed"
            leg.record.sip_status = 488
            leg.record.ended_at = now
            self._send_bye(dialog, leg.target.destination, now)
            self._after_leg_failure(now)
            return
        try:
            inbound_dialog = Dialog.as_uas(
                self.invite, local_tag=self.to_tag, local_contact=self._contact_for_caller()
            )
        except RemoteProtocolError:
            # The caller's INVITE cannot make a dialog; end it before anyone is connected.
            LOGGER.warning("caller's INVITE cannot establish a dialog; hanging up %s",
                           leg.target.label)
            leg.state = "done"
            self._send_bye(dialog, leg.target.destination, now)
            self.fail(400, "caller's INVITE cannot establish a dialog", now, outcome="failed")
            return
        # Answered on a member's mobile: the member answered (talk time, reports).
        self.answered_by = leg.target.employee or leg.target.label
        self._mark_answered(leg, response, dialog, now)
        if self.anchor is not None:  # the same answer as in our 183 (RFC 3261 §13.2.1)
            body = self.anchor.caller_answer
            body_headers = [("Content-Type", "application/sdp")]
        else:
            body, body_headers = response.body, self._body_headers(response)
        response_to_caller = make_response(
            self.invite, 200, to_tag=self.to_tag,
            headers=[("Contact", self._contact_for_caller()), ("Allow", ALLOW),
                     ("User-Agent", self.services.user_agent), *body_headers],
            body=body,
        )
        self.inbound_dialog = inbound_dialog
        self.services.dialog_opened(self.inbound_dialog, self, "a")
        self.services.send_response(self.invite_tx, response_to_caller, now)

    def _accept_answer(self, leg: OutboundLeg, response: Response, now: float) -> Dialog | None:
        """A leg's 2xx, acknowledged; None when there is nothing more to do: a retransmission
        (our ACK was lost, RFC 3261 §13.2.2.4: it goes again), or a leg that lost the race to
        another or to the caller's hang-up (it is hung up on)."""
        if leg.dialog is not None:
            if leg.ack is not None:
                self.services.send_stateless(leg.ack, leg.target.destination)
            return None
        dialog = self._confirm_leg(leg, response)
        if self.state != CallState.RINGING or self.winner is not None:
            leg.state = "done"
            leg.record.result = "cancelled"
            leg.record.ended_at = now
            self._release_leg_channel(leg)
            self._send_bye(dialog, leg.target.destination, now)
            return None
        return dialog

    def _mark_answered(self, leg: OutboundLeg, response: Response, dialog: Dialog,
                       now: float) -> None:
        """`leg` won: the call is answered, every other leg stops ringing."""
        leg.state = "answered"
        leg.record.answered_at = now
        leg.record.result = "answered"
        leg.record.sip_status = response.status
        self.winner = leg
        self.move_to(CallState.ANSWERED)
        self.answered_at = now
        self.services.dialog_opened(dialog, self, "b")
        for other in self.legs.values():
            if other is not leg and other.active:
                self._cancel_leg(other, now, result="cancelled")
        self._cancel_timers()

    def _confirm_leg(self, leg: OutboundLeg, response: Response, *,
                     answer: bytes = b"") -> Dialog:
        """The leg's dialog from its 2xx (RFC 3261 §12.1.2), acknowledged at once (§13.2.2.4);
        `answer` is the SDP answer the ACK carries when the 2xx made the offer."""
        local_contact = leg.invite.headers.get("Contact") or ""
        dialog = Dialog.as_uac(leg.invite, response, local_contact=local_contact)
        leg.dialog = dialog
        leg.ack = dialog.create_ack(leg.invite.cseq.seq, via=self._via(leg.target.destination))
        if answer:
            leg.ack.body = answer
            leg.ack.headers.set("Content-Type", "application/sdp")
        self.services.send_stateless(leg.ack, leg.target.destination)
        return dialog

    def _on_leg_failure(self, leg: OutboundLeg, response: Response, now: float) -> None:
        if response.status in (401, 407) and not leg.auth_retried and leg.target.trunk:
            credentials = self.services.invite_authorization(leg.target, response, leg.invite)
            if credentials is not None and leg.active and not leg.cancel_pending:
                # RFC 3261 §22.2: the same INVITE again with credentials, CSeq +1, new branch.
                leg.auth_retried = True
                self.legs.pop(leg.tx_id, None)
                invite = leg.invite
                invite.headers.set("Via", self._via(leg.target.destination))
                invite.headers.set("CSeq", f"{invite.cseq.seq + 1} INVITE")
                invite.headers.set(*credentials)
                self._send_leg_invite(leg, now)
                return
        self._leg_done(leg, _result_of(response.status), response.status, now)

    def _on_leg_timeout(self, leg: OutboundLeg, tx_id: str, now: float) -> None:
        if leg.state == "answered":
            return
        self._leg_done(leg, "no_answer" if leg.provisional_seen else "failed", 408, now)

    def _leg_done(self, leg: OutboundLeg, result: str, status: int, now: float) -> None:
        was_active = leg.active
        leg.state = "done"
        self._release_leg_channel(leg)
        if leg.record.result is None:
            leg.record.result = result
        leg.record.sip_status = status
        leg.record.ended_at = now
        if was_active and self.state == CallState.RINGING:
            self._after_leg_failure(now)

    def _after_leg_failure(self, now: float) -> None:
        if any(leg.active for leg in self.legs.values()):
            return
        plan = self.plan
        if plan is not None and self.step_index < len(plan.steps):
            if plan.advance_on_failure:
                self._run_step(self.step_index, now)
            return  # ring_all-like plans wait for their next timed step
        self._cancel_timers()
        self._no_answer(now, "no answer")

    def failure_status(self) -> int:
        results = [r.sip_status for r in self.leg_records if r.sip_status]
        if len(self.leg_records) == 1 and self.leg_records[0].sip_status and self.plan is None:
            status = self.leg_records[0].sip_status
            # An external call: pass the provider's answer on, but never an auth challenge.
            return 403 if status in (401, 407) else status
        if results and all(s in (486, 600) for s in results):
            return 486
        if any(s in (603,) for s in results):
            return 603
        return 480

    def _give_up(self, now: float) -> None:
        if self.state != CallState.RINGING:
            return
        for leg in self.legs.values():
            if leg.active:
                self._cancel_leg(leg, now, result="no_answer")
        self._cancel_timers()
        self._no_answer(now, "no answer")

    # ------------------------------------------------------------------ cancelling legs
    def _cancel_leg(self, leg: OutboundLeg, now: float, *, result: str = "cancelled") -> None:
        if not leg.active:
            return
        leg.record.result = result
        leg.state = "done"
        leg.record.ended_at = now
        self._release_leg_channel(leg)
        if leg.provisional_seen:
            self._send_cancel(leg, now)
        else:
            # RFC 3261 §9.1: no CANCEL before a provisional response; send it when one comes.
            leg.cancel_pending = True

    def _send_cancel(self, leg: OutboundLeg, now: float) -> None:
        leg.cancel_pending = False
        invite = leg.invite
        headers = Headers([
            ("Via", invite.headers.get("Via") or ""),
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", invite.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.seq} CANCEL"),
            ("User-Agent", self.services.user_agent),
        ])
        for route in invite.headers.get_all("Route"):
            headers.add("Route", route)
        cancel = Request("CANCEL", invite.uri, headers)
        self.services.send_request(
            cancel, leg.target.destination, now,
            on_response=lambda tx, r, t: None, on_timeout=lambda tx, t: None,
        )
        self.services.cancel_sent(leg.tx_id, now)

    # ------------------------------------------------------------------ caller side
    def caller_cancelled(self, now: float) -> None:
        """CANCEL from the caller (RFC 3261 §9.2): 487 to the INVITE, cancel every leg."""
        if self.state not in (CallState.ROUTING, CallState.RINGING, CallState.QUEUED):
            return
        abandoned = self.state == CallState.QUEUED
        self.fail(487, "caller hung up in the queue" if abandoned else "caller cancelled", now,
                  outcome="abandoned" if abandoned else "missed")

    def fail(self, status: int, cause: str, now: float, *, outcome: str,
             reason: str | None = None) -> None:
        """End an unanswered call with a final response to the caller."""
        if self.state in (CallState.ANSWERED, CallState.ENDED):
            return
        self._stop_ringing(now)
        self.final_status = status
        self.services.send_response(
            self.invite_tx,
            make_response(self.invite, status, reason, to_tag=self.to_tag,
                          headers=[("User-Agent", self.services.user_agent)]),
            now,
        )
        self._finish(now, cause, outcome)

    def _stop_ringing(self, now: float) -> None:
        """Out of the queue, and every leg still ringing cancelled."""
        self._leave_queue(now)
        for leg in self.legs.values():
            if leg.active:
                self._cancel_leg(leg, now)

    def _respond(
        self, status: int, now: float, *, body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        extra = [("Contact", self._contact_for_caller())] if status < 300 else []
        self.services.send_response(
            self.invite_tx,
            make_response(self.invite, status, to_tag=self.to_tag,
                          headers=extra + (headers or []), body=body),
            now,
        )

    def _contact_for_caller(self) -> str:
        transport = ";transport=tcp" if self.source.reliable else ""
        return f"<sip:linebox@{self.services.local_host}:{self.services.local_port}{transport}>"

    @staticmethod
    def _body_headers(message: Response | Request) -> list[tuple[str, str]]:
        value = message.headers.get("Content-Type")
        return [("Content-Type", value)] if value and message.body else []

    # ------------------------------------------------------------------ answered by the box
    def answer_locally(self, local: LocalEnd, body: bytes, now: float) -> bool:
        """The box answers the caller itself (voicemail): 200 with our SDP `body`. False when
        the caller's INVITE cannot make a dialog (the call has then failed with 400)."""
        try:
            dialog = Dialog.as_uas(self.invite, local_tag=self.to_tag,
                                   local_contact=self._contact_for_caller())
        except RemoteProtocolError:
            local.close()
            self.fail(400, "caller's INVITE cannot establish a dialog", now, outcome="failed")
            return False
        self._stop_ringing(now)
        self._cancel_timers()
        self.local = local
        self.local_side = "a"
        self.local_answer = body
        self.move_to(CallState.ANSWERED)
        self.inbound_dialog = dialog
        self.services.dialog_opened(dialog, self, "a")
        self.services.send_response(self.invite_tx, make_response(
            self.invite, 200, to_tag=self.to_tag,
            headers=[("Contact", self._contact_for_caller()), ("Allow", ALLOW),
                     ("User-Agent", self.services.user_agent),
                     ("Content-Type", "application/sdp")],
            body=body,
        ), now)
        return True

    def _local_peer(self) -> tuple[Dialog, Address] | None:
        if self.local_side == "a":
            return (self.inbound_dialog, self.source) if self.inbound_dialog else None
        winner = self.winner
        if winner is None or winner.dialog is None:
            return None
        return winner.dialog, winner.target.destination

    def _local_request(self, request: Request, tx_id: str, now: float) -> None:
        """A request from the party the box talks to (RFC 3261 §12.2.2 inside the dialog)."""
        local = self.local
        assert local is not None
        method = request.method
        if method == "BYE":
            self.services.send_response(tx_id, make_response(request, 200), now)
            local.remote_hung_up(now)
            self._finish(now, "hangup by caller" if self.local_side == "a" else
                         "hangup by callee", local.outcome)
            return
        if _changes_the_session(request):
            # Hold, a new address, or a session refresh (RFC 3264 §8).
            answer = self._answer_offer(self.local_side, request, tx_id, now,
                                        current=self.local_answer, renegotiate=local.renegotiate)
            if answer is not None and request.body:
                self.local_answer = answer
            return
        if method in ("INFO", "UPDATE", "OPTIONS", "NOTIFY", "MESSAGE"):
            headers = [("Allow", ALLOW)] if method == "OPTIONS" else []
            self.services.send_response(tx_id, make_response(request, 200, headers=headers),
                                        now)
            key = dtmf_key(request) if method == "INFO" else None
            if key is not None:
                local.key_pressed(key, now)
            return
        self.services.send_response(
            tx_id, make_response(request, 501, headers=[("Allow", ALLOW)]), now
        )

    def hang_up_local(self, now: float) -> None:
        """The box is done with the call (the message is saved): BYE, and the end."""
        local = self.local
        if local is None or self.state != CallState.ANSWERED:
            return
        peer = self._local_peer()
        if peer is not None:
            self._send_bye(peer[0], peer[1], now)
        local.close()
        self._finish(now, "hangup by the box", local.outcome)

    # ------------------------------------------------------------------ established call
    def other_side(self, side: str) -> tuple[Dialog, Address] | None:
        if self.winner is None or self.winner.dialog is None or self.inbound_dialog is None:
            return None
        if side == "a":
            return self.winner.dialog, self.winner.target.destination
        return self.inbound_dialog, self.source

    def in_dialog_request(self, side: str, request: Request, tx_id: str, now: float) -> None:
        """A request inside the established call from side "a" (caller) or "b" (answerer)."""
        method = request.method
        if self.state != CallState.ANSWERED:
            status = 200 if method == "BYE" else 481
            self.services.send_response(tx_id, make_response(request, status), now)
            return
        if self.local is not None:
            self._local_request(request, tx_id, now)
            return
        peer = self.other_side(side)
        assert peer is not None
        dialog, destination = peer
        if method == "BYE":
            self.services.send_response(tx_id, make_response(request, 200), now)
            self._send_bye(dialog, destination, now)
            self._finish(now, f"hangup by {'caller' if side == 'a' else 'callee'}", "answered")
            return
        anchor = self.anchor
        if anchor is not None and _changes_the_session(request):
            # Each party's session is with the box, which answers for that side alone.
            self._answer_offer(
                side, request, tx_id, now,
                current=anchor.caller_answer if side == "a" else anchor.leg_offer(),
                renegotiate=partial(anchor.renegotiate, side))
            return
        if method == "INVITE" or method in RELAYED_IN_DIALOG:
            pending_invite = any(r.request.method == "INVITE" for r in self.relays.values())
            if method == "INVITE" and pending_invite:
                self.services.send_response(tx_id, make_response(request, 491), now)  # §14.1
                return
            self._relay(side, request, tx_id, dialog, destination, now)
            return
        self.services.send_response(
            tx_id, make_response(request, 501, headers=[("Allow", ALLOW)]), now
        )

    def _answer_offer(
        self, side: str, request: Request, tx_id: str, now: float, *, current: bytes,
        renegotiate: Callable[[bytes], bytes],
    ) -> bytes | None:
        """A re-INVITE (or an UPDATE with an offer) to a session the box holds with `side`:
        answered by the box itself (RFC 3264 §8), 488 when the offer is unusable. Without an
        offer the box's `current` SDP goes in the 2xx; the ACK's answer changes nothing it
        needs (the party keeps its address). The SDP sent, or None."""
        body = current
        if request.body:
            try:
                body = renegotiate(request.body)
            except ValueError as exc:
                LOGGER.info("call %s: %s refused: %s", self.id, request.method, exc)
                self.services.send_response(tx_id, make_response(request, 488), now)
                return None
        if side == "a" or self.winner is None:
            contact = self._contact_for_caller()
        else:
            contact = self.winner.invite.headers.get("Contact") or ""
        self.services.send_response(tx_id, make_response(
            request, 200, headers=[("Contact", contact), ("Allow", ALLOW),
                                   ("Content-Type", "application/sdp")], body=body), now)
        return body

    def _relay(
        self, side: str, request: Request, tx_id: str, dialog: Dialog, destination: Address,
        now: float,
    ) -> None:
        headers = self._body_headers(request)
        relayed = dialog.create_request(
            request.method, via=self._via(destination), headers=headers, body=request.body
        )
        relay = PendingRelay(from_side=side, server_tx=tx_id, request=request)
        if request.method == "INVITE":
            relay.invite_cseq = relayed.cseq.seq
            relay.acked_dialog = dialog
        relay.client_tx = self.services.send_request(
            relayed, destination, now,
            on_response=partial(self._on_relay_response, relay),
            on_timeout=partial(self._on_relay_timeout, relay),
        )
        self.relays[relay.client_tx] = relay

    def _on_relay_response(
        self, relay: PendingRelay, tx_id: str, response: Response, now: float
    ) -> None:
        if response.status == 100:
            return
        if response.status >= 200:
            if relay.final_2xx_seen:
                return  # a retransmitted 2xx: the ACK goes when the originator sends it
            relay.final_2xx_seen = response.status < 300
            if relay.request.method != "INVITE" or response.status >= 300:
                assert relay.client_tx is not None
                self.relays.pop(relay.client_tx, None)
        extra: list[tuple[str, str]] = list(self._body_headers(response))
        if relay.request.method == "INVITE" and response.status < 300:
            if relay.from_side == "a":
                contact = self._contact_for_caller()
            else:
                assert self.winner is not None
                contact = self.winner.invite.headers.get("Contact") or ""
            extra.append(("Contact", contact))
        self.services.send_response(
            relay.server_tx,
            make_response(relay.request, response.status, response.reason, headers=extra,
                          body=response.body),
            now,
        )

    def _on_relay_timeout(self, relay: PendingRelay, tx_id: str, now: float) -> None:
        assert relay.client_tx is not None
        self.relays.pop(relay.client_tx, None)
        self.services.send_response(relay.server_tx, make_response(relay.request, 408), now)

    def ack_received(self, side: str, ack: Request, now: float) -> None:
        """An ACK for a 2xx from `side`: relay it when it completes a relayed re-INVITE."""
        if self.local is not None:
            if ack.body:  # our 200 made the offer (RFC 3264 §5): the ACK brings the answer
                self.local.answer_received(ack.body, now)
            return
        for tx, relay in list(self.relays.items()):
            if relay.from_side == side and relay.request.method == "INVITE":
                peer = self.other_side(side)
                if peer is not None and relay.invite_cseq is not None:
                    dialog, destination = peer
                    relayed_ack = dialog.create_ack(relay.invite_cseq, via=self._via(destination))
                    if ack.body:
                        relayed_ack.body = ack.body
                        relayed_ack.headers.set("Content-Type", ack.headers.get("Content-Type")
                                                or "application/sdp")
                    self.services.send_stateless(relayed_ack, destination)
                del self.relays[tx]

    def hang_up(self, now: float, cause: str) -> None:
        """End the call from our side: BYE to both parties, or a final answer if unanswered."""
        if self.local is not None and self.state == CallState.ANSWERED:
            self.hang_up_local(now)
            return
        if self.state == CallState.ANSWERED:
            for side in ("a", "b"):
                peer = self.other_side("b" if side == "a" else "a")
                if peer is not None:
                    self._send_bye(peer[0], peer[1], now)
            self._finish(now, cause, "answered")
        elif self.state in (CallState.ROUTING, CallState.RINGING, CallState.QUEUED):
            self.fail(480, cause, now, outcome="failed")

    def _send_bye(self, dialog: Dialog, destination: Address, now: float) -> None:
        bye = dialog.create_request("BYE", via=self._via(destination))
        bye.headers.add("User-Agent", self.services.user_agent)
        self.services.send_request(
            bye, destination, now, on_response=lambda tx, r, t: None,
            on_timeout=lambda tx, t: None,
        )

    # ------------------------------------------------------------------ the end
    def _cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    def _finish(self, now: float, cause: str, outcome: str) -> None:
        if self.state == CallState.ENDED:
            return
        self.move_to(CallState.ENDED)
        self.ended_at = now
        self.end_cause = cause
        self.outcome = outcome
        self._cancel_timers()
        if self.local is not None:
            self.local.close()
        if self.anchor is not None:
            self.anchor.close()
        for leg in self.legs.values():
            self._release_leg_channel(leg)
        for record in self.leg_records:
            if record.ended_at is None:
                record.ended_at = now
        self.services.call_finished(self, now)


@dataclass(eq=False, slots=True, kw_only=True)
class OriginatedCall(Call):
    """A call the box places itself (a callback, an apology): `invite` is the original
    caller's INVITE, kept for the record; there is no server transaction to answer."""

    def _respond(
        self, status: int, now: float, *, body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        """Nobody is on the line yet: there is no caller to tell about ringing."""

    def fail(self, status: int, cause: str, now: float, *, outcome: str,
             reason: str | None = None) -> None:
        if self.state in (CallState.ANSWERED, CallState.ENDED):
            return
        self._stop_ringing(now)
        self._finish(now, cause, outcome)


def _changes_the_session(request: Request) -> bool:
    """A re-INVITE, or an UPDATE carrying an offer (RFC 3311 §5.2)."""
    return request.method == "INVITE" or request.method == "UPDATE" and bool(request.body)


def _result_of(status: int) -> str:
    if status in (486, 600):
        return "busy"
    if status == 603:
        return "declined"
    if status == 487:
        return "cancelled"
    if status in (404, 410, 480):
        return "unavailable"
    if status == 408:
        return "no_answer"
    return "failed"


def _parse_sip_uri(text: str) -> SipUri:
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise ValueError(f"not a SIP URI: {text}")
    return uri


def dtmf_key(request: Request) -> str | None:
    """The key in a SIP INFO DTMF body: `application/dtmf-relay` ("Signal=5") or
    `application/dtmf` ("5"); None for anything else."""
    content_type = (request.content_type or "").lower()
    text = request.body.decode("ascii", "replace").strip()
    if content_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                text = value.strip()
                break
        else:
            return None
    elif content_type != "application/dtmf":
        return None
    return text if len(text) == 1 and text in "0123456789*#ABCD" else None
