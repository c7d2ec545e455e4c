"""Attended transfer (RFC 5589 §7): B talks with A in one call and with C in a second, the
consultation, and sends a REFER whose Refer-To embeds a Replaces naming the other dialog (RFC
3515 §2.1, RFC 3891). C leaves the consultation, which ends (B hung up on there), and takes
B's side of the customer's call — the REFER's own call, or the named one when the REFER came
in the consultation — joined to A through the box (transfer_media.py); B hears 100 Trying
then 200 OK once both re-INVITEs are answered, and is hung up in the call it left. What A's
INVITE with Replaces would meet at C (RFC 3891 §3) is what the NOTIFY reports, both calls going
on: no such dialog 481, early-only on a confirmed one 486, not the referrer's dialog 403. A
consultation that still rings is given up (487) and A transferred blind to the number it
called (RFC 5589 §7.3, "semi-attended").

Also here, an INVITE with Replaces naming a confirmed dialog (RFC 3891 §3): from the same
member on another phone (§6.1) the call moves to that phone; from anyone else it is 486
(firmware/core/presence.py hands such INVITEs over).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..calls import Call, CallState
from ..legs import LegRecord, NobodyCalling, SessionDescription
from ..media import sdp
from ..sip.message import Request, Response
from ..sip.transaction import Address
from ..sip_legs import SipCaller, SipLeg, send_reinvite
from .hold import HeldMedia
from .modem_lines import ModemCaller
from .presence import parse_replaces
from .referral import (
    NOT_TRANSFERABLE,
    REASONS,
    Referral,
    SipParty,
    embedded_replaces,
    refer_target,
    transferee_number,
    unwrapped,
)
from .transfer_media import MediaPlan, answer_replacement, media_plan, plannable

if TYPE_CHECKING:
    from .gateway import Gateway
    from .transfer import Transfer

LOGGER = logging.getLogger(__name__)

NOT_YOUR_DIALOG = "The dialog to replace is not the referrer's"
BAD_REPLACES = "Bad Replaces in Refer-To"


class Attended:
    """Attended transfers and Replaces, on behalf of the `Transfer` room (its `attended`)."""

    def __init__(self, core: Gateway, transfer: Transfer) -> None:
        self.core = core
        self.transfer = transfer

    # ------------------------------------------------------------------ attended transfer
    def on_refer(self, call: Call, side: str, tx_id: str, request: Request,
                     referrer: SipParty, now: float) -> None:
        """REFER with Refer-To: <C?Replaces=consultation> (RFC 5589 §7): the referrer B talks
        with A in `call` and with C in a second call (the consultation); A and C are joined
        in `call`, B leaves both. What the transferee's INVITE with Replaces would meet at C
        (RFC 3891 §3) is what the REFER's NOTIFY reports: 481 for no such dialog, 486 for a
        confirmed one marked early-only, 403 for a dialog that is not the referrer's."""
        core = self.core
        try:
            call_id, tags, early_only = parse_replaces(embedded_replaces(request))
        except ValueError:
            core.reply(tx_id, request, 400, now, reason=BAD_REPLACES)
            return
        target = refer_target(request)
        referrer_ext = self.transfer.member(call, side)
        found = self._consultation(call_id, tags)
        if (found is not None and found[0] is not call and found[1] == "a"
                and found[0].state in (CallState.ROUTING, CallState.QUEUED, CallState.RINGING)
                and referrer_ext is not None
                and self.transfer.member(found[0], "a") == referrer_ext):
            # The referrer transfers while its consultation still rings (RFC 5589 §7.3, the
            # phones' "semi-attended" transfer): its own INVITE is given up (487) and the
            # transferee is transferred blind to the number it called.
            consultation = found[0]
            LOGGER.info("call %s: transferred to %s while the consultation %s rings", call.id,
                        consultation.info.dialed, consultation.id)
            consultation.fail(487, "transferred before the answer", now, outcome="missed")
            self.transfer.blind(call, side, tx_id, request, referrer, consultation.info.dialed, now)
            return
        referral = self.transfer.accept(call, side, tx_id, request, referrer, target, now)
        refusal = self._refusal(call, side, found, early_only, referrer_ext)
        if refusal is not None:
            status, reason = refusal
            LOGGER.info("call %s: attended transfer refused: %d %s", call.id, status, reason)
            referral.send_notify(status, reason, now)  # the call goes on as it was
            return
        assert found is not None
        survivor, survivor_side, ending, ending_side = _roles(call, side, *found)
        self._join(survivor, survivor_side, referrer, referrer_ext, ending, ending_side,
                   referral, now, refer_call=call)

    def _consultation(self, call_id: str, tags: set[str | None]) -> tuple[Call, str] | None:
        """The call and side of the dialog a Replaces names, its two tags matched either way
        round (phones differ in which they call to-tag)."""
        for (dialog_call_id, local, remote), (call, side) in self.core.dialogs.items():
            if dialog_call_id == call_id and {local, remote} == tags:
                return call, side
        return None

    def _refusal(self, call: Call, side: str, found: tuple[Call, str] | None,
                 early_only: bool, referrer_ext: str | None) -> tuple[int, str] | None:
        if found is None:
            return 481, "Call/Transaction Does Not Exist"
        consultation, consult_side = found
        if consultation is call:
            return 403, NOT_YOUR_DIALOG
        if consultation.state != CallState.ANSWERED:
            return 481, "Call/Transaction Does Not Exist"  # RFC 3891 §3: not our early one
        if early_only:
            return 486, "Busy Here"  # RFC 3891 §3: a confirmed dialog, early-only asked
        # RFC 3891 §6.1: only a party of the replaced dialog may have it replaced.
        if referrer_ext is None or self.transfer.member(consultation, consult_side) != referrer_ext:
            return 403, NOT_YOUR_DIALOG
        survivor, survivor_side, ending, ending_side = _roles(call, side, consultation,
                                                              consult_side)
        target = unwrapped(ending.connected.get("b" if ending_side == "a" else "a"))
        if (ending.local is not None or not isinstance(target, SipCaller | SipLeg)
                or target.dialog is None):
            return 403, NOT_TRANSFERABLE  # voicemail, or a line the box holds the audio of
        if survivor.local is not None or not plannable(self.core, survivor, survivor_side):
            return 403, NOT_TRANSFERABLE
        return None

    def _join(self, call: Call, side: str, referrer: SipParty, referrer_ext: str | None,
              consultation: Call, consult_side: str, referral: Referral, now: float, *,
              refer_call: Call) -> None:
        """The target leaves the consultation (which ends, the referrer hung up on) and takes
        the referrer's side of `call`; its media is joined to the transferee's in the box.
        The REFER came in one of the two (`refer_call`): the referrer's dialog there carries
        the NOTIFYs, its other one is hung up."""
        core = self.core
        target_side = "b" if consult_side == "a" else "a"
        target = unwrapped(consultation.connected[target_side])
        assert isinstance(target, SipCaller | SipLeg) and target.dialog is not None
        label = (self.transfer.member(consultation, target_side)
                 or (target.label if isinstance(target, SipLeg) else consultation.info.caller))
        LOGGER.info("call %s: %s transfers it to %s (attended, consultation %s)", call.id,
                    referrer_ext, label, consultation.id)
        # The consultation lets the target go: its dialog, its line channels now the call's.
        del consultation.connected[target_side]
        keys = core._dialog_keys.get(consultation.id, [])
        if target.dialog.id in keys:
            keys.remove(target.dialog.id)
        if isinstance(target, SipLeg) and target.channel is not None:
            call.channels.append(target.channel)
            target.channel = None
        call.channels.extend(consultation.channels)
        consultation.channels = []
        if refer_call is consultation:
            # The REFER came in the consultation: that dialog stays for the NOTIFYs, and the
            # referrer's conversation in the call it leaves ends with the box's BYE.
            self.transfer.release_referrer(consultation, consult_side, referrer, referrer_ext,
                                   referral, now)
            del consultation.connected[consult_side]
            consultation.hang_up(now, "attended transfer")
            self._leave(call, side, referrer_ext, now)
        else:
            consultation.hang_up(now, "attended transfer")  # BYE (RFC 5589 §7.1)
            self.transfer.release_referrer(call, side, referrer, referrer_ext, referral, now)
        plan = media_plan(core, call, side)
        assert plan is not None
        # The target is the call's member on that side now, a leg of its record.
        call.connected[side] = target
        if isinstance(target, SipLeg):
            call.legs.append(target)  # its lamp shows it talking (presence.py)
        if side == "b":
            call.winner = target if isinstance(target, SipLeg) else None
            call.answered_by = label
            call.member_since = now
        else:
            call.caller = NobodyCalling()  # the referrer's INVITE is nobody's now
        call.leg_records.append(LegRecord(
            target=label, contact=_contact_of(target), started_at=now, answered_at=now,
            result="answered", sip_status=200))
        core.party_connected(call, side, target)
        # Who the target talks to now (RFC 3325 §9.1; phones show it, as they show a new
        # call's From): the transferee's number.
        transferee = unwrapped(call.connected.get("b" if side == "a" else "a"))
        shown = call.info.caller
        if side == "a" and isinstance(transferee, SipCaller | SipLeg | ModemCaller):
            shown = transferee_number(call, transferee)
        identity = [("P-Asserted-Identity", f"<sip:{shown}@{core.local_host}>")]
        self._reconnect(call, side, plan, referral, now, identity)

    def _leave(self, call: Call, side: str, member: str | None, now: float) -> None:
        """The referrer's own side of `call` ends: BYE, its figures settled."""
        party = call.connected.get(side)
        if not isinstance(party, SipCaller | SipLeg) or party.dialog is None:
            return
        self.core.dialogs.pop(party.dialog.id, None)
        party.hang_up(now)
        self.transfer.settle(call, side, party, member, now)

    def _reconnect(self, call: Call, side: str, plan: MediaPlan, referral: Referral,
                   now: float, identity: list[tuple[str, str]]) -> None:
        """Re-INVITE the parties whose media changes with the box's offers; the final NOTIFY
        when all answered, the call ended when one refused (it would be left silent)."""
        waiting = {s for s, _ in plan.moves}

        def done(moved_side: str, ok: bool, status: int, now: float) -> None:
            waiting.discard(moved_side)
            if referral.final_status is not None:
                return
            if call.state == CallState.ENDED:
                # A party hung up before the transfer completed: the referrer hears so, and
                # its dialog is let go like after any final NOTIFY.
                referral.finished(487, REASONS[487], now)
                return
            if not ok:
                LOGGER.warning("call %s: the transfer's re-INVITE was refused (%d)", call.id,
                               status)
                referral.finished(status, REASONS.get(status, "Failed"), now)
                call.hang_up(now, f"transfer failed: re-INVITE refused ({status})")
                return
            if not waiting:
                referral.finished(200, "OK", now)
            self.core.hold.refresh(call, now)

        for moved_side, offer in plan.moves:
            party = unwrapped(call.connected.get(moved_side))
            assert isinstance(party, SipCaller | SipLeg)
            self._reinvite(call, moved_side, party, offer, plan.accept[moved_side], done, now,
                           identity if moved_side == side else [])

    def _reinvite(self, call: Call, side: str, party: SipParty, offer: bytes,
                  accept: Callable[[bytes], None],
                  done: Callable[[str, bool, int, float], None], now: float,
                  headers: list[tuple[str, str]]) -> None:
        media = call.anchor if isinstance(call.anchor, HeldMedia) else None
        if media is not None:
            # While it is pending, the side counts as neither holding nor held (hold.py).
            media.reinviting.add(side)
            media.bodies[side] = offer
            media.told_held[side] = False

        def answered(response: Response | None, now: float) -> None:
            if media is not None:
                media.reinviting.discard(side)
            status = response.status if response is not None else 408
            ok = response is not None and status < 300
            if ok and response is not None:
                try:
                    accept(response.body)
                except sdp.SdpError as exc:
                    LOGGER.warning("call %s: %s answered unusable SDP: %s", call.id, side, exc)
                    ok, status = False, 488
            done(side, ok, status, now)

        send_reinvite(party, offer, self.core, now, answered, headers=headers)

    # ------------------------------------------------------------------ INVITE with Replaces
    def dialog_named(self, call_id: str, tags: set[str | None]) -> tuple[Call, str] | None:
        """The answered call and side whose dialog a Replaces header names (RFC 3891 §3)."""
        found = self._consultation(call_id, tags)
        if found is None or found[0].state != CallState.ANSWERED:
            return None
        return found

    def may_replace(self, call: Call, side: str, extension: str) -> bool:
        """RFC 3891 §6.1: the replaced party itself may replace its dialog (the same
        extension, from another of its phones)."""
        return self.transfer.member(call, side) == extension

    def replace_party(self, call: Call, side: str, tx_id: str, request: Request,
                      source: Address, now: float) -> None:
        """An INVITE with Replaces naming `side`'s confirmed dialog, from the same member on
        another phone: the new phone takes that side (answered 200 with the box's SDP, the
        media joined through the box as for a transfer), the old dialog gets a BYE (RFC 3891
        §3: "shuts down the replaced dialog")."""
        core = self.core
        old = call.connected.get(side)
        if (call.local is not None or not isinstance(old, SipCaller | SipLeg)
                or old.dialog is None):
            core.reply(tx_id, request, 403, now, reason=NOT_TRANSFERABLE)
            return
        if not request.body:
            core.reply(tx_id, request, 488, now, reason="Replaces needs an SDP offer")
            return
        new = SipCaller(services=core, invite=request, invite_tx=tx_id, source=source)
        if not new.answerable():
            core.reply(tx_id, request, 400, now)
            return
        try:
            answer, reinvite = answer_replacement(core, call, side, request.body)
        except sdp.SdpError as exc:
            LOGGER.info("call %s: the replacing INVITE's SDP is unusable: %s", call.id, exc)
            core.reply(tx_id, request, 488, now)
            return
        LOGGER.info("call %s: %s moves to another phone (Replaces)", call.id,
                    self.transfer.member(call, side))
        new.answer(SessionDescription(body=answer), now)
        keys = core._dialog_keys.setdefault(call.id, [])
        if old.dialog.id in keys:
            keys.remove(old.dialog.id)
        core.dialogs.pop(old.dialog.id, None)
        call.connected[side] = new
        assert new.dialog is not None
        core.dialogs[new.dialog.id] = (call, side)
        keys.append(new.dialog.id)
        old.hang_up(now)
        call.leg_records.append(LegRecord(
            target=self.transfer.member(call, side) or "", contact=_contact_of(new), started_at=now,
            answered_at=now, result="answered", sip_status=200))
        if reinvite is not None:
            other = "b" if side == "a" else "a"
            party = unwrapped(call.connected.get(other))
            assert isinstance(party, SipCaller | SipLeg)
            body, accept = reinvite

            def done(moved: str, ok: bool, status: int, now: float) -> None:
                if not ok and call.state == CallState.ANSWERED:
                    call.hang_up(now, f"re-INVITE after Replaces refused ({status})")
                else:
                    core.hold.refresh(call, now)

            self._reinvite(call, other, party, body, accept, done, now, [])
        else:
            core.hold.refresh(call, now)


def _contact_of(party: SipParty) -> str:
    if isinstance(party, SipLeg):
        return party.target.request_uri
    contacts = party.invite.contacts
    return str(contacts[0].uri) if contacts else ""

def _roles(call: Call, side: str, named: Call, named_side: str) -> tuple[Call, str, Call, str]:
    """Which of the referrer's two calls goes on (and its side there) and which ends: the
    REFER's own call, unless it is the internal consultation and the named one is a
    customer's (RFC 5589 §7 lets the phone send the REFER in either dialog; the customer's
    call stays the one call of its record)."""
    if call.info.direction == "internal" and named.info.direction != "internal":
        return named, named_side, call, side
    return call, side, named, named_side
