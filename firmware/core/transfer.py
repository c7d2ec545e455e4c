"""Transfer: a party of an answered call sends REFER (RFC 3515) naming an extension, a
department or an outside number (blind, RFC 5589 §6), or naming a second call of its own with
an embedded Replaces (attended, RFC 5589 §7, RFC 3891), and the box connects the other party
there.

The call stays one call. The referrer's side is released: its dialog leaves the call and is
kept here only to carry the implicit subscription's NOTIFYs (`Event: refer`, a
`message/sipfrag` body: `SIP/2.0 100 Trying`, then the final status, RFC 3515 §2.4.4–2.4.5),
after which the referrer is hung up unless it sent BYE itself.

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

Attended: B talks with A in this call and with C in a consultation; B's REFER here names the
consultation (Refer-To: <C?Replaces=...>). C leaves the consultation (which ends, B hung up on
there) and takes B's side of this call; A and C are joined through a bridge in the box
(`_media_plan`): the port that faced B when the box holds the media (A keeps its session),
a modem line's port, else two new ports with both re-INVITEd. Relaying SDP between A and C
instead would need both re-INVITEs to succeed in the right order with the answer of one as
the offer of the other; in the box, each party's session is its own. The final NOTIFY waits
for the re-INVITEs' answers. What the transferee's INVITE with Replaces would meet at C (RFC
3891 §3) is what the NOTIFY reports: no such dialog 481, early-only on a confirmed one 486, not
the referrer's dialog 403; a consultation that still rings is given up (487) and the
transferee transferred blind to the number it called.

When the target does not answer (or is busy), the referrer is told the status in the final
NOTIFY and the transferee is hung up; the record says the call was answered, ending with
`transfer to TARGET failed: ...` (ringing the referrer back is not done).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ..calls import Call, CallState, MediaAnchor
from ..legs import LegRecord, NobodyCalling, SessionDescription
from ..media import sdp
from ..media.bridge import BridgeSide, MediaBridge
from ..sip.dialog import Dialog
from ..sip.errors import RemoteProtocolError
from ..sip.message import Request, Response
from ..sip.transaction import Address, new_branch
from ..sip.uri import OtherUri, SipUri, parse_name_addr
from ..sip_legs import SipCaller, SipLeg, send_reinvite
from .admission import DIALLABLE_RE
from .hold import HeldMedia
from .modem_lines import LineMedia, ModemCaller
from .presence import parse_replaces

if TYPE_CHECKING:
    from ..calls import Timer
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

SIPFRAG = "message/sipfrag;version=2.0"
# How long the implicit subscription lasts (RFC 3515 §2.4.4 lets the notifier choose).
SUBSCRIPTION_S = 60
# After the final NOTIFY the referrer usually hangs up itself (RFC 5589 §6.1); if it has not
# within this time, the box sends the BYE.
REFERRER_BYE_GRACE_S = 2.0
NOT_TRANSFERABLE = "This call cannot be transferred"
NOT_YOUR_DIALOG = "The dialog to replace is not the referrer's"
BAD_REPLACES = "Bad Replaces in Refer-To"

SipParty = SipCaller | SipLeg
Transferee = SipCaller | SipLeg | ModemCaller


def _via(core: Gateway, destination: Address) -> str:
    return (f"SIP/2.0/{destination.transport.upper()} {core.local_host}:{core.local_port};"
            f"branch={new_branch()};rport")


def refer_target(request: Request) -> str:
    """The user part of the one Refer-To URI (RFC 3515 §2.4.1: exactly one, else 400); an
    attended transfer's embedded Replaces is refused by the caller of this function."""
    values = request.headers.get_all("Refer-To")
    if len(values) != 1:
        raise RemoteProtocolError("REFER needs exactly one Refer-To", status_hint=400)
    uri = parse_name_addr(values[0]).uri
    user = uri.user_unescaped if isinstance(uri, SipUri | OtherUri) else None
    if not user:
        raise RemoteProtocolError("Refer-To names no number", status_hint=400)
    return user


def embeds_replaces(request: Request) -> bool:
    value = request.headers.get("Refer-To") or ""
    uri = parse_name_addr(value).uri
    return isinstance(uri, SipUri) and "replaces=" in uri.headers.lower()


def embedded_replaces(request: Request) -> str:
    """The Replaces header embedded in the Refer-To URI (RFC 3515 §2.1, RFC 3891 §7.1: an
    escaped URI header, `?Replaces=callid%3Bto-tag%3D...%3Bfrom-tag%3D...`)."""
    uri = parse_name_addr(request.headers.get("Refer-To") or "").uri
    headers = uri.headers if isinstance(uri, SipUri) else ""
    for header in headers.split("&"):
        name, _, value = header.partition("=")
        if name.strip().lower() == "replaces":
            return unquote(value)
    return ""


def party_sdp(party: SipParty) -> bytes:
    """The SDP `party` gave for the call's session: its INVITE's offer, or its 2xx."""
    if isinstance(party, SipLeg):
        return party.remote_sdp
    offer = party.offer
    return offer.body if offer is not None else b""


@dataclass(eq=False, slots=True, kw_only=True)
class Referral:
    """One REFER: the referrer's dialog (for the NOTIFYs), and what became of it."""

    core: Gateway
    referrer: SipParty
    target: str
    notify: bool = True  # False with `Refer-Sub: false` (RFC 4488)
    final_status: int | None = None
    referrer_gone: bool = False
    bye_timer: Timer | None = None

    @property
    def dialog(self) -> Dialog:
        assert self.referrer.dialog is not None
        return self.referrer.dialog

    def send_notify(self, status: int, reason: str, now: float) -> None:
        """A NOTIFY with the target's progress as a sipfrag status line (RFC 3515 §2.4.5)."""
        final = status >= 200
        if not self.notify or self.referrer_gone:
            return
        state = "terminated;reason=noresource" if final else f"active;expires={SUBSCRIPTION_S}"
        notify = self.dialog.create_request(
            "NOTIFY", via=_via(self.core, self.referrer.destination),
            headers=[("Event", "refer"), ("Subscription-State", state),
                     ("Content-Type", SIPFRAG), ("User-Agent", self.core.user_agent)],
            body=f"SIP/2.0 {status} {reason}\r\n".encode())
        self.core.send_request(notify, self.referrer.destination, now,
                               on_response=_ignore_response, on_timeout=_ignore_timeout)

    def finished(self, status: int, reason: str, now: float) -> None:
        """The target answered or failed: the final NOTIFY, then the referrer is hung up
        unless it does that itself within the grace time."""
        if self.final_status is not None:
            return
        self.final_status = status
        self.send_notify(status, reason, now)
        if not self.referrer_gone:
            self.bye_timer = self.core.call_at(now + REFERRER_BYE_GRACE_S, self.hang_up_referrer)

    def hang_up_referrer(self, now: float) -> None:
        if self.referrer_gone:
            return
        self.referrer_gone = True
        self.referrer.hang_up(now)
        self.core.transfer.forget(self)

    def referrer_hung_up(self, now: float) -> None:
        self.referrer_gone = True
        if self.bye_timer is not None:
            self.bye_timer.cancel()
        self.core.transfer.forget(self)


def _ignore_response(tx: str, response: Response, now: float) -> None:
    pass


def _ignore_timeout(tx: str, now: float) -> None:
    pass


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
            "INVITE", via=_via(self.core, self.party.destination),
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
                                         via=_via(self.core, self.party.destination))
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
        self.referral.finished(status, reason or _REASONS.get(status, "Failed"), now)
        self.hang_up(now)

    def hang_up(self, now: float) -> None:
        if not self.gone:
            self.gone = True
            self.party.hang_up(now)


_REASONS = {480: "Temporarily Unavailable", 486: "Busy Here", 487: "Request Terminated",
            603: "Decline", 408: "Request Timeout", 404: "Not Found", 503: "Service Unavailable"}


class Transfer:
    """The REFERs of the office's calls, and the referrers' dialogs while they last."""

    def __init__(self, core: Gateway) -> None:
        self.core = core
        # The referrers' dialogs, out of the call, until they are hung up.
        self.referrers: dict[tuple[str, str, str | None], Referral] = {}

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
            self._on_attended(call, side, tx_id, request, referrer, now)
            return
        self._blind(call, side, tx_id, request, referrer, refer_target(request), now)

    def _blind(self, call: Call, side: str, tx_id: str, request: Request, referrer: SipParty,
               target: str, now: float) -> None:
        core = self.core
        other_side = "b" if side == "a" else "a"
        transferee = call.connected.get(other_side)
        direct = (call.anchor is None and isinstance(transferee, SipCaller | SipLeg)
                  and transferee.dialog is not None and bool(party_sdp(transferee)))
        held = None if direct or call.local is not None else _held_plan(core, call, side)
        if not direct and held is None:
            # Voicemail, no port left for the box's media, or the transferee's SDP unknown:
            # not transferred, the call goes on.
            core.reply(tx_id, request, 403, now, reason=NOT_TRANSFERABLE)
            return
        assert isinstance(transferee, SipCaller | SipLeg | ModemCaller)
        referrer_ext = self._member(call, side)
        if not self._valid_target(tx_id, request, target, referrer_ext, now):
            return
        referral = self._accept(call, side, tx_id, request, referrer, target, now)
        LOGGER.info("call %s: %s transfers %s to %s%s", call.id, referrer_ext or side,
                    other_side, target, " (the box holds the media)" if held else "")
        self._release_referrer(call, side, referrer, referrer_ext, referral, now)
        party = TransferredParty(
            core=core, party=transferee, referral=referral, call=weakref.ref(call),
            sdp=party_sdp(transferee) if isinstance(transferee, SipCaller | SipLeg) else b"")
        if held is not None:
            # The target is offered the box's port that faced the referrer (or the line's);
            # its answer joins the bridge (`TransferAnchor`), the transferee stays put.
            if side == "a":
                _swap_sides(call)
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

    def _accept(self, call: Call, side: str, tx_id: str, request: Request, referrer: SipParty,
                target: str, now: float) -> Referral:
        """202 Accepted (RFC 3515 §2.4.2) and the first NOTIFY, 100 Trying (§2.4.4)."""
        notify = (request.headers.get("Refer-Sub") or "true").strip().lower() != "false"
        headers = [] if notify else [("Refer-Sub", "false")]
        self.core.reply(tx_id, request, 202, now, headers=headers)
        referral = Referral(core=self.core, referrer=referrer, target=target, notify=notify)
        referral.send_notify(100, "Trying", now)
        return referral

    # ------------------------------------------------------------------ attended transfer
    def _on_attended(self, call: Call, side: str, tx_id: str, request: Request,
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
        referrer_ext = self._member(call, side)
        found = self._consultation(call_id, tags)
        if (found is not None and found[0] is not call and found[1] == "a"
                and found[0].state in (CallState.ROUTING, CallState.QUEUED, CallState.RINGING)
                and referrer_ext is not None and self._member(found[0], "a") == referrer_ext):
            # The referrer transfers while its consultation still rings (RFC 5589 §7.3, the
            # phones' "semi-attended" transfer): its own INVITE is given up (487) and the
            # transferee is transferred blind to the number it called.
            consultation = found[0]
            LOGGER.info("call %s: transferred to %s while the consultation %s rings", call.id,
                        consultation.info.dialed, consultation.id)
            consultation.fail(487, "transferred before the answer", now, outcome="missed")
            self._blind(call, side, tx_id, request, referrer, consultation.info.dialed, now)
            return
        referral = self._accept(call, side, tx_id, request, referrer, target, now)
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
        if referrer_ext is None or self._member(consultation, consult_side) != referrer_ext:
            return 403, NOT_YOUR_DIALOG
        survivor, survivor_side, ending, ending_side = _roles(call, side, consultation,
                                                              consult_side)
        target = ending.connected.get("b" if ending_side == "a" else "a")
        if (ending.local is not None or not isinstance(target, SipCaller | SipLeg)
                or target.dialog is None):
            return 403, NOT_TRANSFERABLE  # voicemail, or a line the box holds the audio of
        if survivor.local is not None or not _plannable(self.core, survivor, survivor_side):
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
        target = consultation.connected[target_side]
        assert isinstance(target, SipCaller | SipLeg) and target.dialog is not None
        label = (self._member(consultation, target_side)
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
            self._release_referrer(consultation, consult_side, referrer, referrer_ext,
                                   referral, now)
            del consultation.connected[consult_side]
            consultation.hang_up(now, "attended transfer")
            self._leave(call, side, referrer_ext, now)
        else:
            consultation.hang_up(now, "attended transfer")  # BYE (RFC 5589 §7.1)
            self._release_referrer(call, side, referrer, referrer_ext, referral, now)
        plan = _media_plan(core, call, side)
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
        transferee = call.connected.get("b" if side == "a" else "a")
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
        self._settle(call, side, party, member, now)

    def _reconnect(self, call: Call, side: str, plan: MediaPlan, referral: Referral,
                   now: float, identity: list[tuple[str, str]]) -> None:
        """Re-INVITE the parties whose media changes with the box's offers; the final NOTIFY
        when all answered, the call ended when one refused (it would be left silent)."""
        waiting = {s for s, _ in plan.moves}

        def done(moved_side: str, ok: bool, status: int, now: float) -> None:
            waiting.discard(moved_side)
            if call.state == CallState.ENDED or referral.final_status is not None:
                return
            if not ok:
                LOGGER.warning("call %s: the transfer's re-INVITE was refused (%d)", call.id,
                               status)
                referral.finished(status, _REASONS.get(status, "Failed"), now)
                call.hang_up(now, f"transfer failed: re-INVITE refused ({status})")
                return
            if not waiting:
                referral.finished(200, "OK", now)
            self.core.hold.refresh(call, now)

        for moved_side, offer in plan.moves:
            party = call.connected.get(moved_side)
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
        return self._member(call, side) == extension

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
            answer, reinvite = _answer_replacement(core, call, side, request.body)
        except sdp.SdpError as exc:
            LOGGER.info("call %s: the replacing INVITE's SDP is unusable: %s", call.id, exc)
            core.reply(tx_id, request, 488, now)
            return
        LOGGER.info("call %s: %s moves to another phone (Replaces)", call.id,
                    self._member(call, side))
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
            target=self._member(call, side) or "", contact=_contact_of(new), started_at=now,
            answered_at=now, result="answered", sip_status=200))
        if reinvite is not None:
            other = "b" if side == "a" else "a"
            party = call.connected.get(other)
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

    def _member(self, call: Call, side: str) -> str | None:
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

    def _release_referrer(self, call: Call, side: str, referrer: SipParty,
                          member: str | None, referral: Referral, now: float) -> None:
        """The referrer leaves the call: its talk time so far counts for it, its dialog
        carries only the NOTIFYs from now on."""
        assert referrer.dialog is not None
        key = referrer.dialog.id
        self.core.dialogs.pop(key, None)
        self.referrers[key] = referral
        self._settle(call, side, referrer, member, now)

    def _settle(self, call: Call, side: str, referrer: SipParty, member: str | None,
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


def transferee_number(call: Call, transferee: Transferee) -> str:
    """The number of an answered leg (the outside number or the extension it rang)."""
    if isinstance(transferee, SipLeg):
        return transferee.label
    return call.info.dialed


def _contact_of(party: SipParty) -> str:
    if isinstance(party, SipLeg):
        return party.target.request_uri
    contacts = party.invite.contacts
    return str(contacts[0].uri) if contacts else ""


@dataclass(slots=True)
class MediaPlan:
    """How a call's parties get their media through the box after one side changed hands:
    the offers to send (side, SDP) and what each answer joins."""

    moves: list[tuple[str, bytes]]
    accept: dict[str, Callable[[bytes], None]]


def _media_plan(core: Gateway, call: Call, side: str) -> MediaPlan | None:
    """The box's media for the party about to take `side` of `call` (the transferee keeps
    the other side): the modem line's port when the transferee is a line (its `LineMedia`),
    the port of the call's bridge that faced the referrer when the box already holds the
    media (a hold, the queue's early media: `HeldMedia`, `CallMedia`), else a bridge the box
    opens now, both parties re-INVITEd to it (RFC 3264 §8). Chosen over relaying SDP between
    the two: the transferee's session usually stays where it is (no re-INVITE it could
    refuse), and its music on hold stops the moment the target's answer joins the bridge.
    None when there is no way (no free port)."""
    held = _held_plan(core, call, side)
    if held is not None:
        return held
    other = "b" if side == "a" else "a"
    transferee = call.connected.get(other)
    if (call.anchor is not None or not isinstance(transferee, SipCaller | SipLeg)
            or transferee.dialog is None):
        return None
    ports: dict[str, int] = {}
    for s in (other, side):
        opened = core.open_media_port()
        if opened is None:
            for port in ports.values():
                core.close_media(port)
            return None
        ports[s] = opened
    bridge = MediaBridge(BridgeSide(ports["a"], sdp.awaiting_answer()),
                         BridgeSide(ports["b"], sdp.awaiting_answer()))
    offers = {s: sdp.offer(host=core.local_host, port=ports[s]) for s in ports}
    media = HeldMedia(core, ports, bridge, dict(offers))
    for port in ports.values():
        core.route_media(port, media.receiver(port))
    call.anchor = media
    return MediaPlan(moves=[(other, offers[other]), (side, offers[side])],
                     accept={s: _joiner(bridge, ports[s], core) for s in ports})


def _held_plan(core: Gateway, call: Call, side: str) -> MediaPlan | None:
    """The box's offer to whoever takes `side` of a call whose media the box holds already
    (a modem line's port, or the port of its bridge that faced `side`); None otherwise."""
    other = "b" if side == "a" else "a"
    transferee = call.connected.get(other)
    line_media = getattr(transferee, "media", None)
    if isinstance(line_media, LineMedia):
        if line_media.port is None or side != "b":
            return None
        line_port = line_media.port

        def join_line(answer: bytes) -> None:
            line_media.accept_answer(answer)
            core._rtp_owners.pop(line_port, None)
        return MediaPlan(moves=[(side, line_media.offer())], accept={side: join_line})
    found = core.hold.bridge_of(call)
    if found is not None and (side == "b" or isinstance(call.anchor, HeldMedia)):
        held_bridge, held_ports = found
        codec = held_bridge.sides[held_ports[other]].choice.codec
        return MediaPlan(moves=[(side, sdp.offer(host=core.local_host, port=held_ports[side],
                                                 first=codec))],
                         accept={side: _joiner(held_bridge, held_ports[side], core)})
    return None


def _plannable(core: Gateway, call: Call, side: str) -> bool:
    """Whether `_media_plan` can join a new party on `side` (without opening anything)."""
    transferee = call.connected.get("b" if side == "a" else "a")
    line_media = getattr(transferee, "media", None)
    if isinstance(line_media, LineMedia):
        return line_media.port is not None
    if core.hold.bridge_of(call) is not None:
        return True
    return (call.anchor is None and isinstance(transferee, SipCaller | SipLeg)
            and transferee.dialog is not None)


def _joiner(bridge: MediaBridge, port: int, core: Gateway) -> Callable[[bytes], None]:
    def join(answer: bytes) -> None:
        bridge.update(port, sdp.accept_answer(answer))
        # Another party sends to this port now: its first packet takes the port at once
        # (the box latches a port to the host it hears first, gateway.receive_rtp).
        core._rtp_owners.pop(port, None)
    return join


def _swap_sides(call: Call) -> None:
    """The transferee on side "b" becomes the caller ("a") of the transferred call: the box's
    ports of a `HeldMedia` (and its music) follow it."""
    media = call.anchor
    assert isinstance(media, HeldMedia)
    media.ports["a"], media.ports["b"] = media.ports["b"], media.ports["a"]
    media.bodies["a"], media.bodies["b"] = media.bodies["b"], media.bodies["a"]
    media.told_held["a"], media.told_held["b"] = media.told_held["b"], media.told_held["a"]
    media.reinviting = {"b" if s == "a" else "a" for s in media.reinviting}
    players = media.core.hold.players_of(call)
    if players is not None:
        swapped = {("b" if s == "a" else "a"): player for s, player in players.items()}
        players.clear()
        players.update(swapped)


@dataclass(eq=False, slots=True, kw_only=True)
class TransferAnchor:
    """The call's `MediaAnchor` while the target rings, when the box holds the media: the
    legs are offered the box's port that faced the referrer (or a modem line's port), and the
    answer joins it to the bridge; afterwards the call's own anchor (`inner`) is back."""

    inner: MediaAnchor | None
    offer: bytes
    accept: Callable[[bytes], None]

    @property
    def caller_answer(self) -> bytes:
        return b""  # nothing to send the transferee: it is answered, and stays where it is

    def leg_offer(self) -> bytes:
        return self.offer

    def connect(self, answer: bytes, now: float) -> bool:
        try:
            self.accept(answer)
        except sdp.SdpError as exc:
            LOGGER.warning("the transfer target's SDP is unusable: %s", exc)
            return False
        if isinstance(self.inner, HeldMedia):
            self.inner.bodies["b"] = self.offer
            self.inner.told_held["b"] = False
        return True

    def renegotiate(self, side: str, offer: bytes) -> bytes:
        raise sdp.SdpError("the call is being transferred")

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


def _answer_replacement(core: Gateway, call: Call, side: str, offer: bytes
                        ) -> tuple[bytes, tuple[bytes, Callable[[bytes], None]] | None]:
    """The box's answer to a replacing party's offer on `side`, from the port that faced the
    replaced party (or the line's), and the re-INVITE the other party needs (its offer and
    what its answer joins) when the box steps into a direct call's media only now."""
    other = "b" if side == "a" else "a"
    line_media = getattr(call.connected.get(other), "media", None)
    if isinstance(line_media, LineMedia) and line_media.port is not None:
        core._rtp_owners.pop(line_media.port, None)
        return line_media.answer_offer(offer), None
    found = core.hold.bridge_of(call)
    if found is None:
        plan = _media_plan(core, call, side)
        if plan is None:
            raise sdp.SdpError("no media port free")
        found = core.hold.bridge_of(call)
        assert found is not None
        reinvite: tuple[bytes, Callable[[bytes], None]] | None = (
            plan.moves[0][1], plan.accept[other])
    else:
        reinvite = None
    bridge, ports = found
    body, choice = sdp.answer(offer, host=core.local_host, port=ports[side])
    bridge.update(ports[side], choice)
    core._rtp_owners.pop(ports[side], None)
    if isinstance(call.anchor, HeldMedia):
        call.anchor.bodies[side] = body
        call.anchor.told_held[side] = False
    return body, reinvite


def _roles(call: Call, side: str, named: Call, named_side: str) -> tuple[Call, str, Call, str]:
    """Which of the referrer's two calls goes on (and its side there) and which ends: the
    REFER's own call, unless it is the internal consultation and the named one is a
    customer's (RFC 5589 §7 lets the phone send the REFER in either dialog; the customer's
    call stays the one call of its record)."""
    if call.info.direction == "internal" and named.info.direction != "internal":
        return named, named_side, call, side
    return call, side, named, named_side
