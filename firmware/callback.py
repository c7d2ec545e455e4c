"""Queue callback: a waiting caller asks to be called back and keeps their place in the queue;
when their turn comes and a member is free, the box calls the member first, then the caller, and
joins the two.

This is third-party call control (RFC 3725 §4, flow I): the member's phone is sent an INVITE
without SDP, so its 200 OK carries the offer; that offer goes in the INVITE to the customer, and
the customer's answer goes back in the ACK to the member. Until the customer answers, the
member's 2xx is left unacknowledged — which is why the customer may ring for less than the
64*T1 = 32 s after which the member's phone gives up on the ACK (RFC 3261 §13.3.1.4). If the
customer does not answer, the member's 2xx is acknowledged with an answer that declines every
stream (RFC 3264 §6: port 0) and the member is hung up on.

Each attempt is one `CallbackCall` with a call record of its own (direction "callback"); the
gateway decides when to try, how often, and when the request expires.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .calls import Call, CallState
from .legs import Leg, LegAnswered, LegFailed, LegSetup, SessionDescription

LOGGER = logging.getLogger(__name__)

CONNECTING = CallState.CONNECTING  # the member answered; the customer's phone rings


@dataclass(eq=False, slots=True, kw_only=True)
class CallbackCall(Call):
    """One attempt to call a waiting caller back (its caller is `NobodyCalling`: nobody waits
    on the line while the member's phone rings)."""

    origin_call_id: str  # the call on which the callback was asked for
    customer: str  # the number to call back
    customer_trunk: str | None  # the line they came in on (None: an office extension)
    expires_at: float
    attempt: int = 1
    # Set by the gateway: place the customer leg (or report failure), and hear how it ended.
    dial_customer: Callable[[CallbackCall, float], None] | None = None
    customer_unreached: Callable[[CallbackCall, float], None] | None = None
    customer_leg: Leg | None = None
    member_offer: SessionDescription | None = None

    # ------------------------------------------------------------------ the member side
    def leg_setup(self, leg: Leg) -> LegSetup:
        if leg is self.customer_leg:
            # The customer sees the office's number, and gets the member's offer.
            return LegSetup(caller_number=self.info.number or self.info.dialed,
                            offer=self.member_offer)
        # RFC 3725 flow I: no SDP to the member, whose 2xx will make the offer. The member's
        # phone shows who is being called back.
        return LegSetup(caller_number=self.customer, display=f"Callback {self.customer}")

    def fail(self, status: int, cause: str, now: float, *, outcome: str,
             reason: str | None = None) -> None:
        if self.state == CONNECTING:
            self._release_member(now)
        Call.fail(self, status, cause, now, outcome=outcome, reason=reason)

    def _leg_answered(self, event: LegAnswered, now: float) -> None:
        leg = event.leg
        if leg is self.customer_leg:
            self._customer_answered(event, now)
            return
        offer = event.media if isinstance(event.media, SessionDescription) else None
        if self.state != CallState.RINGING or self.winner is not None or not (
            offer is not None and offer.body
        ):
            # Lost the race, or answered without the offer flow I needs: ACK and hang up.
            useless = self.state == CallState.RINGING and self.winner is None
            if useless:
                LOGGER.warning("callback %s: %s answered without SDP", self.id, leg.label)
            self._refuse_answer(leg, now, result="failed" if useless else "cancelled",
                                status=event.status)
            if useless:
                self._after_leg_failure(now)
            return
        leg.record.answered_at = now
        leg.record.result = "answered"
        leg.record.sip_status = event.status
        self.winner = leg
        self.answered_by = leg.label
        self.member_offer = offer
        self._connect("b", leg)
        for other in self.legs:
            if other is not leg and other.active:
                self._cancel_leg(other, now, result="cancelled")
        self._cancel_timers()
        self.move_to(CONNECTING)
        assert self.dial_customer is not None
        self.dial_customer(self, now)

    # ------------------------------------------------------------------ the customer side
    def ring_customer(self, leg: Leg, ring_s: float, now: float) -> None:
        """The member is on the line: ring the customer with the member's offer."""
        self.customer_leg = leg
        self.start_leg(leg, now)
        self.timers.append(self.services.call_at(now + ring_s, self._customer_rang_out))

    def customer_unavailable(self, cause: str, now: float) -> None:
        """The customer cannot be called at all (no channel, not registered)."""
        self._customer_failed(cause, now)

    def _customer_rang_out(self, now: float) -> None:
        leg = self.customer_leg
        if self.state != CONNECTING or leg is None or not leg.active:
            return
        self._cancel_leg(leg, now, result="no_answer")
        self._customer_failed("customer did not answer", now)

    def _leg_failed(self, event: LegFailed, now: float) -> None:
        Call._leg_failed(self, event, now)
        if event.leg is self.customer_leg and self.state == CONNECTING:
            self._customer_failed(f"customer {event.result} ({event.status})", now)

    def _customer_answered(self, event: LegAnswered, now: float) -> None:
        leg = event.leg
        if self.state != CONNECTING:
            # Too late (the customer rang out, or the member hung up): hang up.
            self._refuse_answer(leg, now, result=leg.record.result or "cancelled",
                                status=event.status)
            return
        leg.record.answered_at = now
        leg.record.result = "answered"
        leg.record.sip_status = event.status
        # The customer's answer completes the member's offer/answer exchange (in the ACK).
        assert self.winner is not None
        answer = event.media if isinstance(event.media, SessionDescription) else None
        self.winner.complete_answer(answer, now)
        self._cancel_timers()
        self.move_to(CallState.ANSWERED)
        self.answered_at = now
        self._connect("a", leg)

    def _customer_failed(self, cause: str, now: float) -> None:
        if self.state != CONNECTING:
            return
        self._release_member(now)
        self._finish(now, cause, "missed")
        if self.customer_unreached is not None:
            self.customer_unreached(self, now)

    def _release_member(self, now: float) -> None:
        """Hang up on the member: their 2xx is first acknowledged with an answer declining
        every stream (RFC 3725 §4)."""
        if self.winner is not None:
            self.winner.hang_up(now)

    # ------------------------------------------------------------------ inside the call
    def party_hung_up(self, side: str, now: float) -> None:
        if self.state == CONNECTING:
            # The member hung up before the customer answered.
            leg = self.customer_leg
            if leg is not None and leg.active:
                self._cancel_leg(leg, now)
            self._finish(now, "member hung up before the customer answered", "missed")
            if self.customer_unreached is not None:
                self.customer_unreached(self, now)
            return
        Call.party_hung_up(self, side, now)

    def hang_up(self, now: float, cause: str) -> None:
        if self.state == CONNECTING:
            leg = self.customer_leg
            if leg is not None and leg.active:
                self._cancel_leg(leg, now)
            self.fail(480, cause, now, outcome="missed")
            return
        Call.hang_up(self, now, cause)
