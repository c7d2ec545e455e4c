"""Transfer: a party of an answered call sends REFER (RFC 3515) naming an extension, a
department or an outside number (blind, RFC 5589 §6), and the box connects the other party
there; a REFER naming a second call of the referrer's with an embedded Replaces (attended,
RFC 5589 §7) goes to firmware/core/attended.py. The REFER itself and its NOTIFYs are
firmware/core/referral.py's; the media of a party taking a side, transfer_media.py's.

The call stays one call. The referrer's side is released: its dialog leaves the call and is
kept here only to carry the implicit subscription's NOTIFYs, after which the referrer is hung
up unless it sent BYE itself; its talk time so far counts for it.

Blind: the other party, the transferee, becomes the call's caller (a `TransferredParty`) and
the call rings again (firmware/calls.py: ANSWERED → TRANSFERRING → RINGING) through
`Distribution.route_internal` as any call to that destination: an extension's phones, a
department's ring plan with its queue and no-answer scheme, or a line out. Between two SIP
parties talking directly the target is offered the transferee's own SDP (the offer or answer
it gave when the call was set up, an address it still listens on) and, once it answers, the
transferee is re-INVITEd with the target's SDP (RFC 3264 §8): no RTP through the box for the
common case of G.711 phones. When the box holds the media already — the referrer had put the
caller on hold (hold.py), the caller came through the queue's early media (anchor.py), or it
is a GSM/FXO line (modem_lines.py) — the transferee's session stays where it is: the target
is offered the box's port that faced the referrer (or the line's port) and its answer joins
the bridge (`TransferAnchor`); a held caller hears the music until then and is taken off hold.

When the target does not answer (or is busy), the referrer is told the status in the final
NOTIFY and the transferee is hung up; the record says the call was answered, ending with
`transfer to TARGET failed: ...` (ringing the referrer back is not done).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..calls import Call, CallState
from ..legs import SessionDescription
from ..media import sdp
from ..sip.errors import RemoteProtocolError
from ..sip.message import Request, Response
from ..sip_legs import SipCaller, SipLeg
from .admission import DIALLABLE_RE
from .attended import Attended
from .modem_lines import ModemCaller
from .referral import (
    NOT_TRANSFERABLE,
    REASONS,
    Referral,
    SipParty,
    Transferee,
    embeds_replaces,
    refer_target,
    transferee_number,
    unwrapped,
    via_header,
)
from .transfer_media import TransferAnchor, held_plan, swap_sides

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)


def party_sdp(party: SipParty) -> bytes:
    """The SDP `party` gave for the call's session: its INVITE's offer, or its 2xx."""
    if isinstance(party, SipLeg):
        return party.remote_sdp
    offer = party.offer
    return offer.body if offer is not None else b""


@dataclass(eq=False, slots=True, kw_only=True)
class TransferredParty:
    """The transferee as the caller of the call ringing the target (a `CallerParty`): it is
    answered already, so ringing is not relayed, an answer is a re-INVITE with the target's
    SDP — or, when the box holds the media (`held`), the target's answer joined to the box's
    bridge and the transferee left where it is — and a failure hangs it up; every outcome is
    reported to the referral."""

    core: Gateway
    party: Transferee
    sdp: bytes
    referral: Referral
    call: weakref.ref[Call]
    held: TransferAnchor | None = None
    gone: bool = False
    reinvite: Request | None = None
    ack: Request | None = None
    hints: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def wrapped(self) -> Transferee:
        """The party itself (a later transfer of the call wraps it anew)."""
        return self.party

    @property
    def sip_party(self) -> SipParty | None:
        """The SIP party behind (firmware/sip_legs.py relays requests in its dialog)."""
        return self.party if isinstance(self.party, SipCaller | SipLeg) else None

    # A modem line's caller transferred: the box answers the target's requests for it
    # (firmware/sip_legs.py `_held_request`, the `BoxHeldMedia` of firmware/legs.py).
    @property
    def current_sdp(self) -> bytes:
        return self.party.current_sdp if isinstance(self.party, ModemCaller) else b""

    def renegotiate(self, offer: bytes) -> bytes:
        if not isinstance(self.party, ModemCaller):
            raise sdp.SdpError("no session of the box's with this party")
        return self.party.renegotiate(offer)

    def key_pressed(self, key: str, now: float) -> None:
        if isinstance(self.party, ModemCaller):
            self.party.key_pressed(key, now)

    @property
    def offer(self) -> SessionDescription | None:
        return SessionDescription(body=self.sdp)

    def ringing(self, early_media: SessionDescription | None, now: float) -> None:
        pass  # the transferee's call is answered: no 18x is left to send

    def answerable(self) -> bool:
        return not self.gone

    def answer(self, media: SessionDescription, now: float) -> None:
        """The target answered with `media`: the transferee gets it as a new offer (when
        the box holds the media, the answer has joined the bridge already)."""
        call = self.call()
        if call is not None:
            self.core.transfer.completed(call, now)
        self.referral.finished(200, "OK", now)
        if self.held is not None and call is not None:
            call.anchor = self.held.inner
            # Off hold if the referrer had held it: the hold room re-INVITEs it sendrecv
            # and stops the music (it finds the party on its side of the call).
            call.connected.setdefault("a", self)
            self.core.hold.refresh(call, now)
            return
        if media.body and media.body != self.sdp:
            self._send_reinvite(media, now)

    def _send_reinvite(self, media: SessionDescription, now: float) -> None:
        assert isinstance(self.party, SipCaller | SipLeg)
        dialog = self.party.dialog
        assert dialog is not None
        self.reinvite = dialog.create_request(
            "INVITE", via=via_header(self.core, self.party.destination),
            headers=[("Content-Type", media.content_type), ("User-Agent", self.core.user_agent)],
            body=media.body)
        self.core.send_request(self.reinvite, self.party.destination, now,
                               on_response=self._on_reinvite_response,
                               on_timeout=self._on_reinvite_timeout)

    def _on_reinvite_response(self, tx: str, response: Response, now: float) -> None:
        if response.status < 200 or not isinstance(self.party, SipCaller | SipLeg):
            return
        dialog = self.party.dialog
        if response.status >= 300:
            # The transferee keeps its old session, toward the referrer: the transfer cannot
            # give it a voice path, so the call ends rather than stay silent.
            LOGGER.warning("transferee refused the target's SDP: %d", response.status)
            self._end_call(now, f"transferee refused the new media ({response.status})")
            return
        if dialog is None or self.reinvite is None:
            return
        if self.ack is None:
            dialog.update_from_response(response)
            self.ack = dialog.create_ack(self.reinvite.cseq.seq,
                                         via=via_header(self.core, self.party.destination))
        self.core.send_stateless(self.ack, self.party.destination)  # again for a retransmission

    def _on_reinvite_timeout(self, tx: str, now: float) -> None:
        self._end_call(now, "transferee did not answer the re-INVITE")

    def _end_call(self, now: float, cause: str) -> None:
        call = self.call()
        if call is not None:
            call.hang_up(now, cause)

    def reject(self, status: int, reason: str | None, now: float) -> None:
        """The target did not answer (or the call could not ring it): the referrer hears the
        status, the transferee is hung up (its call was answered: a BYE, not a response)."""
        self.referral.finished(status, reason or REASONS.get(status, "Failed"), now)
        self.hang_up(now)

    def hang_up(self, now: float) -> None:
        if not self.gone:
            self.gone = True
            self.party.hang_up(now)


class Transfer:
    """The REFERs of the office's calls, and the referrers' dialogs while they last."""

    def __init__(self, core: Gateway) -> None:
        self.core = core
        # The referrers' dialogs, out of the call, until they are hung up.
        self.referrers: dict[tuple[str, str, str | None], Referral] = {}
        self.attended = Attended(core, self)  # REFER with Replaces, INVITE with Replaces

    # ------------------------------------------------------------------ requests
    def on_request(self, call: Call, side: str, tx_id: str, request: Request,
                   now: float) -> bool:
        """A request in a dialog of `call`: True when it was REFER, or came from the
        transferee while the target rings (the call is not answered then)."""
        if request.method == "REFER":
            self._on_refer(call, side, tx_id, request, now)
            return True
        caller = call.caller
        if not isinstance(caller, TransferredParty) or call.state == CallState.ANSWERED:
            return False
        if call.state == CallState.ENDED:
            return False
        party = caller.sip_party
        if party is not None and party.dialog is not None:
            try:
                party.dialog.receive_request(request)
            except RemoteProtocolError as exc:
                self.core.reply(tx_id, request, exc.status_hint, now)
                return True
        if request.method == "BYE":
            # The transferee hung up while the target rang (RFC 3261 §15.1.2).
            self.core.reply(tx_id, request, 200, now)
            caller.gone = True
            call.caller_cancelled(now)
        elif request.method == "INVITE":
            self.core.reply(tx_id, request, 491, now)  # §14.1: the session is about to change
        else:
            self.core.reply(tx_id, request, 200, now)
        return True

    def on_released_request(self, tx_id: str, request: Request, now: float) -> bool:
        """A request in a referrer's dialog after the transfer started: BYE ends it (the
        referrer hangs up once it heard the outcome); anything else is answered 200."""
        key = (request.call_id, request.to.tag or "", request.from_.tag)
        referral = self.referrers.get(key)
        if referral is None:
            return False
        try:
            referral.dialog.receive_request(request)
        except RemoteProtocolError as exc:
            self.core.reply(tx_id, request, exc.status_hint, now)
            return True
        if request.method == "INVITE":
            self.core.reply(tx_id, request, 488, now)  # the call left this dialog
            return True
        self.core.reply(tx_id, request, 200, now)
        if request.method == "BYE":
            referral.referrer_hung_up(now)
        return True

    def _on_refer(self, call: Call, side: str, tx_id: str, request: Request,
                  now: float) -> None:
        core = self.core
        referrer = call.connected.get(side)
        if (call.state != CallState.ANSWERED or not isinstance(referrer, SipCaller | SipLeg)
                or referrer.dialog is None):
            core.reply(tx_id, request, 481, now)  # no answered dialog to refer in
            return
        referrer.dialog.receive_request(request)
        if embeds_replaces(request):
            self.attended.on_refer(call, side, tx_id, request, referrer, now)
            return
        self.blind(call, side, tx_id, request, referrer, refer_target(request), now)

    def blind(self, call: Call, side: str, tx_id: str, request: Request, referrer: SipParty,
               target: str, now: float) -> None:
        core = self.core
        other_side = "b" if side == "a" else "a"
        transferee = unwrapped(call.connected.get(other_side))
        direct = (call.anchor is None and isinstance(transferee, SipCaller | SipLeg)
                  and transferee.dialog is not None and bool(party_sdp(transferee)))
        held = None if direct or call.local is not None else held_plan(core, call, side)
        if not direct and held is None:
            # Voicemail, no port left for the box's media, or the transferee's SDP unknown:
            # not transferred, the call goes on.
            core.reply(tx_id, request, 403, now, reason=NOT_TRANSFERABLE)
            return
        assert isinstance(transferee, SipCaller | SipLeg | ModemCaller)
        referrer_ext = self.member(call, side)
        if not self._valid_target(tx_id, request, target, referrer_ext, now):
            return
        referral = self.accept(call, side, tx_id, request, referrer, target, now)
        LOGGER.info("call %s: %s transfers %s to %s%s", call.id, referrer_ext or side,
                    other_side, target, " (the box holds the media)" if held else "")
        self.release_referrer(call, side, referrer, referrer_ext, referral, now)
        party = TransferredParty(
            core=core, party=transferee, referral=referral, call=weakref.ref(call),
            sdp=party_sdp(transferee) if isinstance(transferee, SipCaller | SipLeg) else b"")
        if held is not None:
            # The target is offered the box's port that faced the referrer (or the line's);
            # its answer joins the bridge (`TransferAnchor`), the transferee stays put.
            if side == "a":
                swap_sides(call)
            party.held = TransferAnchor(inner=call.anchor, offer=held.moves[0][1],
                                        accept=held.accept[held.moves[0][0]])
        if isinstance(transferee, SipCaller | SipLeg) and transferee.dialog is not None:
            core.dialogs[transferee.dialog.id] = (call, "a")
        # Who the target sees calling: the transferee (the call's caller, or the number the
        # referrer had called).
        shown = call.info.caller if other_side == "a" else transferee_number(call, transferee)
        exclude = frozenset({referrer_ext}) if referrer_ext else frozenset()
        call.start_transfer(party, target, now, shown_caller=shown)
        if party.held is not None:
            call.anchor = party.held
        core.distribution.route_internal(call, target, exclude=exclude, now=now)

    def accept(self, call: Call, side: str, tx_id: str, request: Request, referrer: SipParty,
                target: str, now: float) -> Referral:
        """202 Accepted (RFC 3515 §2.4.2) and the first NOTIFY, 100 Trying (§2.4.4)."""
        notify = (request.headers.get("Refer-Sub") or "true").strip().lower() != "false"
        headers = [] if notify else [("Refer-Sub", "false")]
        self.core.reply(tx_id, request, 202, now, headers=headers)
        referral = Referral(core=self.core, referrer=referrer, target=target, notify=notify)
        referral.send_notify(100, "Trying", now)
        return referral


    def member(self, call: Call, side: str) -> str | None:
        """The office member on `side` of the call (None: an outside party)."""
        if side == "b":
            member = call.answered_by
        else:
            member = call.info.caller if call.info.direction in ("internal", "outbound") else None
        return member if member in self.core.extensions else None

    def _valid_target(self, tx_id: str, request: Request, target: str, referrer: str | None,
                      now: float) -> bool:
        core = self.core
        if target in core.extensions or target in core.departments:
            return True
        if not DIALLABLE_RE.fullmatch(target) or target.startswith("*"):
            core.reply(tx_id, request, 404, now)
            return False
        # An outside number: the toll guard judges the referrer as if it dialled it.
        refusal = core.toll_guard.admit(core.config, referrer or "", target, now)
        if refusal is not None:
            core.reply(tx_id, request, 403, now, reason=refusal.reason)
            return False
        if core.lines.outbound(now) is None:
            core.reply(tx_id, request, 503, now)
            return False
        return True

    def release_referrer(self, call: Call, side: str, referrer: SipParty,
                          member: str | None, referral: Referral, now: float) -> None:
        """The referrer leaves the call: its talk time so far counts for it, its dialog
        carries only the NOTIFYs from now on."""
        assert referrer.dialog is not None
        key = referrer.dialog.id
        self.core.dialogs.pop(key, None)
        self.referrers[key] = referral
        self.settle(call, side, referrer, member, now)

    def settle(self, call: Call, side: str, referrer: SipParty, member: str | None,
                now: float) -> None:
        """The member on `side` is done with `call`: its leg ends, its talk time so far and
        its wrap-up count for it now (not again when the call ends)."""
        if isinstance(referrer, SipLeg) or side == "b":
            record = getattr(referrer, "record", None)
            if record is not None and record.ended_at is None:
                record.ended_at = now
        if member is not None:
            since = call.member_since if call.member_since is not None else call.answered_at
            talk_s = now - since if since is not None else 0.0
            department = self.core.departments.get(call.info.department or "")
            wrap_up_s = (self.core.distribution.settings(department).wrap_up_s
                         if department is not None and side == "b" else 0.0)
            self.core.agents.call_ended(member, now, talk_s=talk_s, wrap_up_s=wrap_up_s)
            call.transferred_by.append(member)

    def completed(self, call: Call, now: float) -> None:
        """The target answered: it is the call's member now (a member who transferred the call
        earlier and answers it again counts again)."""
        if call.answered_by in call.transferred_by:
            call.transferred_by.remove(call.answered_by)

    def forget(self, referral: Referral) -> None:
        for key, known in list(self.referrers.items()):
            if known is referral:
                del self.referrers[key]


