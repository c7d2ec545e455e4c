"""Call pickup: a phone takes a call that is ringing a colleague's phone (`*8`, group pickup),
or the call ringing one given extension (`**EXT`, directed pickup) — the codes are the site's
`pickup_code` and `directed_pickup_prefix` (docs/agents.md).

The picker's INVITE becomes the answering party of the ringing call: a `PickupLeg` (a `Leg`
of firmware/legs.py made of the picker's INVITE server side) joins the call and answers at once
with the picker's own SDP. From there the call does what it does for any answer
(firmware/calls.py): every other leg is cancelled, the caller is answered, the record says the
picker answered and the picker's agent figures count it. The picker's 200 carries what the
other leg would have been offered: the caller's offer, or the box's when it holds the media
(the anchor then joins the picker's SDP). When the caller made no offer (RFC 3264 §5, late
offer), the picker's SDP goes to the caller in the 200 and the picker's 200 waits for the
answer in the caller's ACK.

Which call: among calls whose legs are ringing a wanted extension (state RINGING; a queued
call rings nobody and is not picked), the one ringing longest. A callback being set up (the box
rings the member first, RFC 3725 flow I) is not picked: 480.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..callback import CallbackCall
from ..calls import Call, CallState
from ..legs import (
    LegAnswered,
    LegListener,
    LegRecord,
    LegSetup,
    LegState,
    LegStates,
    ListenerRef,
    SessionDescription,
)
from ..sip.message import Request, make_response
from ..sip.transaction import Address
from ..sip_legs import ALLOW, SipCaller

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

# Reason phrases the phones display (RFC 3261 §21.4.18: 480, the callee is not reachable now).
NOTHING_TO_PICK_UP = "Nothing to pick up"
CALLBACK_NOT_PICKED = "Nothing to pick up (a callback rings)"
NOT_A_COLLEAGUE = "Not in your department"
NO_OFFER = "Pickup needs an SDP offer"
TOO_LATE = "Call ended"


@dataclass(eq=False, slots=True, kw_only=True)
class PickupLeg(LegStates, SipCaller):
    """The picker's INVITE as a leg of the picked call: answered as soon as it starts, with
    the picker's own SDP; its 200 to the picker carries the call's side of the session. Being a
    `SipCaller` too, requests inside its dialog are relayed like any SIP party's
    (firmware/sip_legs.py `in_dialog_request`)."""

    extension: str
    employee: str | None = None
    channel: str | None = None
    record: LegRecord = field(init=False)
    _state: LegState = LegState.CALLING
    _listener: ListenerRef = field(default_factory=ListenerRef)
    _setup: LegSetup | None = None
    _ok_sent: bool = False

    def __post_init__(self) -> None:
        contacts = self.invite.contacts
        contact = str(contacts[0].uri) if contacts else ""
        self.record = LegRecord(target=self.extension, contact=contact, started_at=0.0)

    @property
    def label(self) -> str:
        return self.extension

    def start(self, setup: LegSetup, listener: LegListener, now: float) -> None:
        self._listener = ListenerRef(listener)
        self._setup = setup
        self.record.started_at = now

    def take(self, offer: SessionDescription, now: float) -> None:
        """Answer the call with the picker's `offer` (checked answerable by the caller of
        this method). The call decides whether this answer wins (firmware/calls.py)."""
        assert self._setup is not None, "take() before start()"
        self.dialog = self._answer_dialog  # the call files it when the answer wins
        self._move(LegState.ANSWERED)
        self._listener.tell(LegAnswered(leg=self, media=offer), now)
        if self._state is LegState.ANSWERED and self._setup.offer is not None:
            self._send_ok(self._setup.offer, now)

    def _send_ok(self, media: SessionDescription, now: float) -> None:
        self._ok_sent = True
        headers = [("Contact", self.our_contact), ("Allow", ALLOW),
                   ("User-Agent", self.services.user_agent)]
        if media.body:
            headers.append(("Content-Type", media.content_type))
        self.services.send_response(self.invite_tx, make_response(
            self.invite, 200, to_tag=self.to_tag, headers=headers, body=media.body), now)

    def complete_answer(self, answer: SessionDescription | None, now: float) -> None:
        """The caller made no offer: its ACK brings the answer to the picker's SDP, which the
        picker's 200 now carries (RFC 3264 §5)."""
        if self._ok_sent or self._state is not LegState.ANSWERED:
            return
        if answer is None or not answer.body:
            self._refuse(488, NO_OFFER, now)
            return
        self._send_ok(answer, now)

    def cancel(self, now: float, *, result: str = "cancelled") -> None:
        if not self.active:
            return
        self.record.result = result
        self._refuse(487, None, now)

    def hang_up(self, now: float) -> None:
        if self._ok_sent:
            if self._state is not LegState.DONE:
                self._move(LegState.DONE)
            if self.record.ended_at is None:
                self.record.ended_at = now
            SipCaller.hang_up(self, now)  # BYE in the picker's dialog
            return
        # The call went away before the picker's 200 (the caller hung up, or another answer
        # won): the picker's INVITE gets its final answer instead.
        self._refuse(480, TOO_LATE, now)

    def _refuse(self, status: int, reason: str | None, now: float) -> None:
        if self._state is not LegState.DONE:
            self._move(LegState.DONE)
        if self.record.ended_at is None:
            self.record.ended_at = now
        if not self._ok_sent:
            self._ok_sent = True  # one final answer only
            self.dialog = None
            self.reject(status, reason, now)


class Pickup:
    """The pickup codes dialled from a phone (admission hands them here)."""

    def __init__(self, core: Gateway) -> None:
        self.core = core

    def on_invite(self, tx_id: str, request: Request, source: Address, picker: str,
                  dialed: str, now: float) -> bool:
        """Handle `dialed` if it is a pickup code; False if it is not one."""
        site = self.core.config.site
        prefix = site.directed_pickup_prefix
        if dialed == site.pickup_code:
            wanted = self.colleagues(picker)
        elif dialed.startswith(prefix) and len(dialed) > len(prefix):
            extension = dialed[len(prefix):]
            if extension not in self.core.extensions:
                self.core.reply(tx_id, request, 404, now)
                return True
            if extension not in self.colleagues(picker):
                # Directed pickup is for colleagues sharing a department (or one's own phone).
                self.core.reply(tx_id, request, 403, now, reason=NOT_A_COLLEAGUE)
                return True
            wanted = frozenset({extension})
        else:
            return False
        call, callback_seen = self.ringing_call(wanted, picker)
        if call is None:
            reason = CALLBACK_NOT_PICKED if callback_seen else NOTHING_TO_PICK_UP
            self.core.reply(tx_id, request, 480, now, reason=reason)
            return True
        self.pick(call, tx_id, request, source, picker, now)
        return True

    def colleagues(self, extension: str) -> frozenset[str]:
        """The members of every department `extension` belongs to, and itself."""
        members = {extension}
        for department in self.core.departments.values():
            extensions = {m.extension for m in department.members}
            if extension in extensions:
                members |= extensions
        return frozenset(members)

    def ringing_call(self, wanted: frozenset[str], picker: str) -> tuple[Call | None, bool]:
        """The call ringing one of `wanted` longest (its earliest ringing leg for them), and
        whether a callback was passed over."""
        best: tuple[float, Call] | None = None
        callback_seen = False
        for call in self.core.calls.values():
            if call.state != CallState.RINGING:
                continue
            if call.info.direction != "inbound" and call.info.caller == picker:
                continue  # one's own call out is not picked up
            since = [leg.record.started_at for leg in call.legs
                     if leg.active and (leg.employee or leg.label) in wanted]
            if not since:
                continue
            if isinstance(call, CallbackCall):
                callback_seen = True
                continue
            if best is None or min(since) < best[0]:
                best = (min(since), call)
        return (best[1] if best is not None else None), callback_seen

    def pick(self, call: Call, tx_id: str, request: Request, source: Address, picker: str,
             now: float) -> bool:
        """The picker's INVITE answers the ringing `call`; whether it won it. Also for a busy
        lamp's press that names the call (an INVITE with Replaces)."""
        leg = PickupLeg(services=self.core, invite=request, invite_tx=tx_id, source=source,
                        extension=picker)
        offer = leg.offer
        if offer is None or not offer.body:
            # Without the picker's SDP there is nothing to answer the caller with now.
            leg.reject(488, NO_OFFER, now)
            return False
        if not leg.answerable():
            leg.reject(400, None, now)
            return False
        call.start_leg(leg, now)
        leg.take(offer, now)
        won = call.winner is leg
        LOGGER.info("call %s: %s by %s", call.id, "picked up" if won else "not picked up",
                    picker)
        return won
