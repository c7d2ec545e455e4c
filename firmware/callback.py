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

from .calls import ALLOW, Call, CallState, OriginatedCall, OutboundLeg, Target
from .sip.dialog import Dialog
from .sip.message import Request, Response, make_response
from .sip.transaction import new_tag

LOGGER = logging.getLogger(__name__)

CONNECTING = CallState.CONNECTING  # the member answered; the customer's phone rings


@dataclass(eq=False, slots=True, kw_only=True)
class CallbackCall(OriginatedCall):
    """One attempt to call a waiting caller back. `invite` is the caller's original INVITE
    (who they are, how they reached us)."""

    origin_call_id: str  # the call on which the callback was asked for
    customer: str  # the number to call back
    customer_trunk: str | None  # the trunk they came in on (None: an office extension)
    expires_at: float
    attempt: int = 1
    # Set by the gateway: place the customer leg (or report failure), and hear how it ended.
    dial_customer: Callable[[CallbackCall, float], None] | None = None
    customer_unreached: Callable[[CallbackCall, float], None] | None = None
    customer_leg: OutboundLeg | None = None
    member_offer: Response | None = None

    # ------------------------------------------------------------------ the member side
    def _build_leg_invite(self, target: Target) -> Request:
        invite = Call._build_leg_invite(self, target)
        if self.state == CONNECTING:
            # The customer sees the office's number, and gets the member's offer.
            assert self.member_offer is not None
            office = self.info.number or self.info.dialed
            invite.headers.set("From", f"<sip:{office}@{self.services.local_host}>;tag="
                                       f"{new_tag()}")
            invite.headers.set("Content-Type",
                               self.member_offer.headers.get("Content-Type") or "application/sdp")
            invite.body = self.member_offer.body
            return invite
        # RFC 3725 flow I: no SDP to the member, whose 2xx will make the offer. The member's
        # phone shows who is being called back.
        invite.headers.remove("Content-Type")
        invite.headers.remove("Content-Disposition")
        invite.headers.set("From", f"\"Callback {self.customer}\" <sip:{self.customer}@"
                                   f"{self.services.local_host}>;tag={new_tag()}")
        invite.body = b""
        return invite

    def fail(self, status: int, cause: str, now: float, *, outcome: str,
             reason: str | None = None) -> None:
        if self.state == CONNECTING:
            self._release_member(now)
        OriginatedCall.fail(self, status, cause, now, outcome=outcome, reason=reason)

    def _on_leg_answer(self, leg: OutboundLeg, response: Response, now: float) -> None:
        if leg.dialog is not None:
            if leg.ack is not None:  # a retransmitted 2xx we have acknowledged: again
                self.services.send_stateless(leg.ack, leg.target.destination)
            return  # the member's 2xx again while the customer rings: the ACK comes later
        if leg is self.customer_leg:
            self._on_customer_answer(leg, response, now)
            return
        if self.state != CallState.RINGING or self.winner is not None or not response.body:
            # Lost the race, or answered without the offer flow I needs: ACK and hang up.
            useless = self.state == CallState.RINGING and self.winner is None
            if useless:
                LOGGER.warning("callback %s: %s answered without SDP", self.id, leg.target.label)
            self._ack_and_hang_up(leg, response, now, result="failed" if useless else "cancelled")
            if useless:
                self._after_leg_failure(now)
            return
        local_contact = leg.invite.headers.get("Contact") or ""
        leg.dialog = Dialog.as_uac(leg.invite, response, local_contact=local_contact)
        leg.state = "answered"
        leg.record.answered_at = now
        leg.record.result = "answered"
        leg.record.sip_status = response.status
        self.winner = leg
        self.answered_by = leg.target.label
        self.member_offer = response
        self.services.dialog_opened(leg.dialog, self, "b")
        for other in self.legs.values():
            if other is not leg and other.active:
                self._cancel_leg(other, now, result="cancelled")
        self._cancel_timers()
        self.move_to(CONNECTING)
        assert self.dial_customer is not None
        self.dial_customer(self, now)

    def _ack_and_hang_up(
        self, leg: OutboundLeg, response: Response, now: float, *, result: str
    ) -> None:
        offer = response.body if not leg.invite.body else b""  # the 2xx made the offer
        dialog = self._confirm_leg(leg, response, answer=declined_answer(offer) if offer else b"")
        leg.state = "done"
        leg.record.result = result
        leg.record.sip_status = response.status
        leg.record.ended_at = now
        self._send_bye(dialog, leg.target.destination, now)

    # ------------------------------------------------------------------ the customer side
    def ring_customer(self, target: Target, ring_s: float, now: float) -> None:
        """The member is on the line: ring the customer with the member's offer."""
        self.source = target.destination
        self._start_leg(target, now)
        self.customer_leg = next(
            leg for leg in self.legs.values() if leg.target is target and leg.active
        )
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

    def _leg_done(self, leg: OutboundLeg, result: str, status: int, now: float) -> None:
        Call._leg_done(self, leg, result, status, now)
        if leg is self.customer_leg and self.state == CONNECTING:
            self._customer_failed(f"customer {result} ({status})", now)

    def _on_customer_answer(self, leg: OutboundLeg, response: Response, now: float) -> None:
        if self.state != CONNECTING:
            # Too late (the customer rang out, or the member hung up): ACK and hang up.
            self._ack_and_hang_up(leg, response, now, result=leg.record.result or "cancelled")
            return
        dialog = self._confirm_leg(leg, response)
        leg.state = "answered"
        leg.record.answered_at = now
        leg.record.result = "answered"
        leg.record.sip_status = response.status
        # The customer's answer completes the member's offer/answer exchange in the ACK.
        self._ack_member(response.body, response.headers.get("Content-Type"))
        self._cancel_timers()
        self.inbound_dialog = dialog
        self.move_to(CallState.ANSWERED)
        self.answered_at = now
        self.services.dialog_opened(dialog, self, "a")

    def _customer_failed(self, cause: str, now: float) -> None:
        if self.state != CONNECTING:
            return
        self._release_member(now)
        self._finish(now, cause, "missed")
        if self.customer_unreached is not None:
            self.customer_unreached(self, now)

    def _release_member(self, now: float) -> None:
        """ACK the member's 2xx with an answer declining every stream, then BYE (RFC 3725 §4)."""
        member = self.winner
        if member is None or member.dialog is None:
            return
        if member.ack is None:
            offer = self.member_offer.body if self.member_offer is not None else b""
            self._ack_member(declined_answer(offer), "application/sdp" if offer else None)
        self._send_bye(member.dialog, member.target.destination, now)

    def _ack_member(self, body: bytes, content_type: str | None) -> None:
        member = self.winner
        assert member is not None and member.dialog is not None
        ack = member.dialog.create_ack(member.invite.cseq.seq,
                                       via=self._via(member.target.destination))
        if body:
            ack.body = body
            ack.headers.set("Content-Type", content_type or "application/sdp")
        member.ack = ack
        self.services.send_stateless(ack, member.target.destination)

    # ------------------------------------------------------------------ inside the call
    def in_dialog_request(self, side: str, request: Request, tx_id: str, now: float) -> None:
        if self.state == CONNECTING:
            # Only the member has a dialog yet; the customer's phone is still ringing.
            if request.method == "BYE":
                self.services.send_response(tx_id, make_response(request, 200), now)
                leg = self.customer_leg
                if leg is not None and leg.active:
                    self._cancel_leg(leg, now)
                self._finish(now, "member hung up before the customer answered", "missed")
                if self.customer_unreached is not None:
                    self.customer_unreached(self, now)
                return
            status = 491 if request.method == "INVITE" else 200
            headers = [("Allow", ALLOW)] if status == 200 and request.method == "OPTIONS" else []
            self.services.send_response(tx_id, make_response(request, status, headers=headers),
                                        now)
            return
        Call.in_dialog_request(self, side, request, tx_id, now)

    def hang_up(self, now: float, cause: str) -> None:
        if self.state == CONNECTING:
            leg = self.customer_leg
            if leg is not None and leg.active:
                self._cancel_leg(leg, now)
            self.fail(480, cause, now, outcome="missed")
            return
        Call.hang_up(self, now, cause)


def declined_answer(offer: bytes) -> bytes:
    """An SDP answer that declines every stream of `offer` (RFC 3264 §6: port zero), so a
    member whose 2xx must be acknowledged is not left expecting media."""
    lines = offer.decode("utf-8", "replace").splitlines()
    out: list[str] = []
    for line in lines:
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) >= 3:
                line = f"m={parts[0]} 0 {' '.join(parts[2:])}"
        elif line.startswith(("a=sendrecv", "a=sendonly", "a=recvonly")):
            continue
        out.append(line)
    return ("\r\n".join(out) + "\r\n").encode() if out else b""
