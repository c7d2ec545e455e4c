"""A call: its caller, the legs it rings, and the state table it moves through.

The caller's side (a `CallerParty`) and each leg (a `Leg`) are known only by the interfaces of
firmware/legs.py — a SIP phone, the provider, a GSM or FXO modem alike — and report back as
call-control events (ringing, answered with media, failed, ended), in the manner of sippy's
B2BUA. The ring plan comes from `firmware.routing`; this module carries it out: it starts and
cancels legs on time, tells the caller of ringing, lets the first answer win and cancels the
rest, and releases the call's channels on every way a call can end. Media is passed through
unchanged, unless the box holds it: once it has answered the caller's offer itself (early media
in a queue, `anchor`) the legs get the box's own offer; or the box is the far end (voicemail,
`local`). Nothing here imports `firmware.sip` (firmware/sip_legs.py is the SIP side).

Sans-IO like the rest of the core: every entry point takes `now`; timers and the end of a call
go through the `CallServices` protocol that the gateway implements.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Protocol

from .legs import (
    CallerParty,
    Leg,
    LegAnswered,
    LegEnded,
    LegEvent,
    LegFailed,
    LegRecord,
    LegRinging,
    LegSetup,
    SessionDescription,
)
from .routing.plan import RingPlan, RingStep

LOGGER = logging.getLogger(__name__)

# The caller's headers that describe the caller's own offer: not passed on with the box's.
OFFER_HINTS = ("Content-Type", "Content-Disposition")


class Timer(Protocol):
    def cancel(self) -> None: ...


class CallServices(Protocol):
    """What the gateway provides to calls: timers, channels, and hearing of their parties and
    their end."""

    def call_at(self, when: float, callback: Callable[[float], None]) -> Timer: ...

    def call_finished(self, call: Call, now: float) -> None: ...

    def release_channel(self, key: str) -> None: ...

    def party_connected(self, call: Call, side: str, party: CallerParty | Leg) -> None: ...


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


class CallState(StrEnum):
    """Where a call is in its life (a StrEnum: the status JSON and the web UI read the value)."""

    ROUTING = "routing"  # admitted; a webhook, the CRM or the plan decides where it goes
    QUEUED = "queued"  # nobody free: waiting in the department's queue
    RINGING = "ringing"  # legs are ringing
    CONNECTING = "connecting"  # a callback: the member answered, the customer's phone rings
    ANSWERED = "answered"  # two parties (or the box itself) are talking
    TRANSFERRING = "transferring"  # a party referred the other elsewhere (REFER): routing again
    ENDED = "ended"


_S = CallState
# Every move a call may make (h2's stream.py shape): a move not in the table is a bug in the box
# and raises, instead of leaving a call in a state nothing expects.
CALL_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    _S.ROUTING: frozenset({_S.RINGING, _S.QUEUED, _S.ANSWERED, _S.ENDED}),
    _S.QUEUED: frozenset({_S.RINGING, _S.QUEUED, _S.ANSWERED, _S.ENDED}),
    _S.RINGING: frozenset({_S.RINGING, _S.QUEUED, _S.CONNECTING, _S.ANSWERED, _S.ENDED}),
    _S.CONNECTING: frozenset({_S.ANSWERED, _S.ENDED}),
    # An answered call never rings again by itself; a transfer (RFC 3515 REFER,
    # firmware/core/transfer.py) releases the referrer and routes the same call anew for the
    # other party: ringing the target, its queue, or the box's voicemail answering it.
    _S.ANSWERED: frozenset({_S.TRANSFERRING, _S.ENDED}),
    _S.TRANSFERRING: frozenset({_S.RINGING, _S.QUEUED, _S.ANSWERED, _S.ENDED}),
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
    # The line the call came in on, or for a call out the line it went out through (None: a
    # call between the office's phones).
    line: str | None = None


# weakref_slot: legs hold their call weakly (firmware/legs.py, ListenerRef).
@dataclass(eq=False, slots=True, kw_only=True, weakref_slot=True)
class Call:
    services: CallServices
    caller: CallerParty
    key: str  # what the gateway files the call under (the caller's INVITE transaction)
    signalling_id: str  # the caller's Call-ID, for the record
    info: CallInfo
    started_at: float
    channels: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: CallState = CallState.ROUTING
    legs: list[Leg] = field(default_factory=list)
    winner: Leg | None = None
    # The parties talking, by side: "a" the caller (or a callback's customer), "b" the winner.
    connected: dict[str, CallerParty | Leg] = field(default_factory=dict)
    plan: RingPlan | None = None
    resolve: Callable[[str], list[Leg]] | None = None
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
    relayed_ringing: bool = False
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
    # When the member talking now answered (answered_at stays the call's first answer).
    member_since: float | None = None
    # A transfer (firmware/core/transfer.py): where the call was referred, the number its
    # legs show as calling, and the members whose part (talk time) is counted already.
    transfer_target: str | None = None
    shown_caller: str | None = None
    transferred_by: list[str] = field(default_factory=list)
    rung_from: int = 0  # the leg records of the current ringing (a transfer's start after)

    # ------------------------------------------------------------------ ringing the legs
    def move_to(self, state: CallState) -> None:
        if state not in CALL_TRANSITIONS[self.state]:
            raise IllegalTransition(f"call {self.id}: {self.state} → {state}")
        self.state = state

    def ring(
        self, plan: RingPlan, resolve: Callable[[str], list[Leg]], now: float, *,
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

    def ring_legs(
        self, legs: list[Leg], give_up_after_s: float, now: float, *,
        on_no_answer: Callable[[Call, float], None] | None = None,
    ) -> None:
        """Ring an explicit list of legs at once (a direct or an external call); a leg's
        `channel`, if set, is a line channel held for it alone."""
        self._cancel_timers()
        self._leave_queue(now)
        self.plan = None
        self.on_no_answer = on_no_answer
        if not legs:
            self._no_answer(now, "not registered")
            return
        self.move_to(CallState.RINGING)
        self.timers.append(self.services.call_at(now + give_up_after_s, self._give_up))
        for leg in legs:
            self.start_leg(leg, now)

    def wait_in_queue(self, now: float) -> None:
        """Nobody is free: the caller waits (hearing ringback) until the gateway rings again."""
        self._cancel_timers()
        if self.queued_since is None:
            self.queued_since = now
        self.move_to(CallState.QUEUED)
        if not self.relayed_ringing:
            self.relayed_ringing = True
            self.caller.ringing(None, now)

    def start_early_media(self, anchor: MediaAnchor, body: bytes, now: float) -> None:
        """183 with the box's SDP (early media, RFC 3960): from now on the box holds the
        call's media, and relays no ringing of the legs (the box plays it)."""
        self.anchor = anchor
        self.relayed_ringing = True
        self.caller.ringing(SessionDescription(body=body), now)

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
            for leg in self.legs:
                if leg.label == member and leg.active:
                    # Their turn is over: for the agent's statistics this offer rang out.
                    self._cancel_leg(leg, now, result="no_answer")
        assert self.resolve is not None
        for member in step.start:
            for leg in self.resolve(member):
                self.start_leg(leg, now)
        # An earlier run (a step advanced when every leg failed) leaves its timer behind; it
        # finds step_index past it and does nothing.
        self._schedule_step(index + 1, now)
        if self.state == CallState.RINGING and not any(leg.active for leg in self.legs):
            self._after_leg_failure(now)

    def leg_setup(self, leg: Leg) -> LegSetup:
        """Who the leg's far end sees calling, and the media offered to it: the caller's own,
        or the box's when it holds the media."""
        caller = self.caller
        if self.anchor is not None:
            hints = {k: v for k, v in caller.hints.items() if k not in OFFER_HINTS}
            offer: SessionDescription | None = SessionDescription(body=self.anchor.leg_offer())
        else:
            hints = dict(caller.hints)
            offer = caller.offer
        if self.shown_caller is not None:
            return LegSetup(caller_number=self.shown_caller, offer=offer, hints=hints)
        return LegSetup(caller_number=self.info.caller, display=self.info.display, offer=offer,
                        hints=hints)

    def start_leg(self, leg: Leg, now: float) -> None:
        self.legs.append(leg)
        self.leg_records.append(leg.record)
        leg.start(self.leg_setup(leg), self, now)

    def _release_leg_channel(self, leg: Leg) -> None:
        if leg.channel is not None:
            self.services.release_channel(leg.channel)
            leg.channel = None

    # ------------------------------------------------------------------ what the legs say
    def leg_event(self, event: LegEvent, now: float) -> None:
        if isinstance(event, LegRinging):
            self._leg_ringing(event, now)
        elif isinstance(event, LegAnswered):
            self._leg_answered(event, now)
        elif isinstance(event, LegFailed):
            self._leg_failed(event, now)
        elif isinstance(event, LegEnded):
            side = next((s for s, p in self.connected.items() if p is event.leg), None)
            if side is not None:
                self.party_hung_up(side, now)

    def _leg_ringing(self, event: LegRinging, now: float) -> None:
        if self.state != CallState.RINGING or self.anchor is not None:
            return
        # Tell the caller of ringing once, and of early media whenever a leg sends it
        # (RFC 3261 §13.3.1.1).
        if event.early_media is not None or not self.relayed_ringing:
            self.relayed_ringing = True
            self.caller.ringing(event.early_media, now)

    def _leg_answered(self, event: LegAnswered, now: float) -> None:
        leg = event.leg
        media = event.media
        if self.state != CallState.RINGING or self.winner is not None:
            self._refuse_answer(leg, now, result="cancelled")
            return
        if not isinstance(media, SessionDescription):
            LOGGER.warning("call %s: %s answered with media this call cannot carry", self.id,
                           leg.label)
            self._refuse_answer(leg, now, result="failed", status=488)
            self._after_leg_failure(now)
            return
        if self.anchor is not None and not self.anchor.connect(media.body, now):
            self._refuse_answer(leg, now, result="failed", status=488)
            self._after_leg_failure(now)
            return
        if not self.caller.answerable():
            leg.hang_up(now)
            self.fail(400, "caller's INVITE cannot establish a dialog", now, outcome="failed")
            return
        # Answered on a member's mobile: the member answered (talk time, reports).
        self.answered_by = leg.employee or leg.label
        self._mark_answered(leg, event.status, now)
        if self.anchor is not None:  # the same answer as in our 183 (RFC 3261 §13.2.1)
            media = SessionDescription(body=self.anchor.caller_answer)
        self.caller.answer(media, now)
        self._connect("a", self.caller)

    def _refuse_answer(self, leg: Leg, now: float, *, result: str,
                       status: int | None = None) -> None:
        """An answer nobody can take (another leg won, the caller left, no common media)."""
        leg.record.result = result
        if status is not None:
            leg.record.sip_status = status
        leg.record.ended_at = now
        self._release_leg_channel(leg)
        leg.hang_up(now)

    def _mark_answered(self, leg: Leg, status: int, now: float) -> None:
        """`leg` won: the call is answered, every other leg stops ringing."""
        leg.record.answered_at = now
        leg.record.result = "answered"
        leg.record.sip_status = status
        self.winner = leg
        self.move_to(CallState.ANSWERED)
        if self.answered_at is None:
            self.answered_at = now
        self.member_since = now
        self._connect("b", leg)
        for other in self.legs:
            if other is not leg and other.active:
                self._cancel_leg(other, now, result="cancelled")
        self._cancel_timers()

    def _connect(self, side: str, party: CallerParty | Leg) -> None:
        self.connected[side] = party
        self.services.party_connected(self, side, party)

    def _leg_failed(self, event: LegFailed, now: float) -> None:
        self._release_leg_channel(event.leg)
        if self.state == CallState.RINGING:
            self._after_leg_failure(now)

    def _after_leg_failure(self, now: float) -> None:
        if any(leg.active for leg in self.legs):
            return
        plan = self.plan
        if plan is not None and self.step_index < len(plan.steps):
            if plan.advance_on_failure:
                self._run_step(self.step_index, now)
            return  # ring_all-like plans wait for their next timed step
        self._cancel_timers()
        self._no_answer(now, "no answer")

    def failure_status(self) -> int:
        records = self.leg_records[self.rung_from:]
        results = [r.sip_status for r in records if r.sip_status]
        if len(records) == 1 and records[0].sip_status and self.plan is None:
            status = records[0].sip_status
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
        for leg in self.legs:
            if leg.active:
                self._cancel_leg(leg, now, result="no_answer")
        self._cancel_timers()
        self._no_answer(now, "no answer")

    def _cancel_leg(self, leg: Leg, now: float, *, result: str = "cancelled") -> None:
        if not leg.active:
            return
        self._release_leg_channel(leg)
        leg.cancel(now, result=result)

    # ------------------------------------------------------------------ the caller
    def caller_cancelled(self, now: float) -> None:
        """The caller gave up before an answer (SIP: CANCEL, RFC 3261 §9.2): 487, and every
        leg cancelled."""
        if self.state not in (CallState.ROUTING, CallState.TRANSFERRING, CallState.RINGING,
                              CallState.QUEUED):
            return
        abandoned = self.state == CallState.QUEUED
        self.fail(487, "caller hung up in the queue" if abandoned else "caller cancelled", now,
                  outcome="abandoned" if abandoned else "missed")

    def fail(self, status: int, cause: str, now: float, *, outcome: str,
             reason: str | None = None) -> None:
        """End an unanswered call with a final answer to the caller."""
        if self.state in (CallState.ANSWERED, CallState.ENDED):
            return
        if self.transfer_target is not None:
            # The call was answered before it was referred: it stays an answered call.
            cause = f"transfer to {self.transfer_target} failed: {cause}"
            outcome = "answered"
        self._stop_ringing(now)
        self.final_status = status
        self.caller.reject(status, reason, now)
        self._finish(now, cause, outcome)

    def _stop_ringing(self, now: float) -> None:
        """Out of the queue, and every leg still ringing cancelled."""
        self._leave_queue(now)
        for leg in self.legs:
            if leg.active:
                self._cancel_leg(leg, now)

    def start_transfer(self, transferee: CallerParty, target: str, now: float, *,
                       shown_caller: str | None = None) -> None:
        """A party of the answered call referred the other to `target` (RFC 3515): the other
        party is the caller now, the winner is released, and the call is routed again (by the
        caller of this method) to `target`."""
        self.caller = transferee
        self.connected.clear()
        self.winner = None
        self.relayed_ringing = True
        self.transfer_target = target
        self.shown_caller = shown_caller
        self.rung_from = len(self.leg_records)
        self.move_to(CallState.TRANSFERRING)

    # ------------------------------------------------------------------ answered by the box
    def answer_locally(self, local: LocalEnd, body: bytes, now: float) -> bool:
        """The box answers the caller itself (voicemail) with our SDP `body`. False when the
        caller cannot be answered (the call has then failed with 400)."""
        if not self.caller.answerable():
            local.close()
            self.fail(400, "caller's INVITE cannot establish a dialog", now, outcome="failed")
            return False
        self._stop_ringing(now)
        self._cancel_timers()
        self.local = local
        self.local_side = "a"
        self.local_answer = body
        self.move_to(CallState.ANSWERED)
        self.caller.answer(SessionDescription(body=body), now)
        self._connect("a", self.caller)
        return True

    def hang_up_local(self, now: float) -> None:
        """The box is done with the call (the message is saved): the party is hung up on."""
        local = self.local
        if local is None or self.state != CallState.ANSWERED:
            return
        party = self.connected.get(self.local_side)
        if party is not None:
            party.hang_up(now)
        local.close()
        self._finish(now, "hangup by the box", local.outcome)

    # ------------------------------------------------------------------ the answered call
    def party_hung_up(self, side: str, now: float) -> None:
        """A party of the answered call hung up: the other one is hung up on."""
        if self.state != CallState.ANSWERED:
            return
        local = self.local
        if local is not None:
            local.remote_hung_up(now)
            self._finish(now, "hangup by caller" if self.local_side == "a" else
                         "hangup by callee", local.outcome)
            return
        other = self.connected.get("b" if side == "a" else "a")
        if other is not None:
            other.hang_up(now)
        self._finish(now, f"hangup by {'caller' if side == 'a' else 'callee'}", "answered")

    def hang_up(self, now: float, cause: str) -> None:
        """End the call from our side: both parties hung up on, or a final answer if
        unanswered."""
        if self.local is not None and self.state == CallState.ANSWERED:
            self.hang_up_local(now)
            return
        if self.state == CallState.ANSWERED:
            for side in ("a", "b"):
                party = self.connected.get(side)
                if party is not None:
                    party.hang_up(now)
            self._finish(now, cause, "answered")
        elif self.state in (CallState.ROUTING, CallState.TRANSFERRING, CallState.RINGING,
                            CallState.QUEUED):
            self.fail(480, cause, now, outcome="failed")

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
        for leg in self.legs:
            self._release_leg_channel(leg)
        for record in self.leg_records:
            if record.ended_at is None:
                record.ended_at = now
        self.services.call_finished(self, now)

