"""SIP parties of a call: the caller's INVITE server side (`SipCaller`), the legs the box rings
(`SipLeg`, an INVITE client transaction and its dialog), and what happens inside an answered
call between SIP parties (re-INVITEs, INFO, BYE — `in_dialog_request`, `ack_received`).

These implement the interfaces of firmware/legs.py; the call (firmware/calls.py) sees only
those. Behaviour is RFC 3261's: CANCEL only after a provisional response (§9.1), every 2xx
acknowledged (§13.2.2.4) and hung up on when nobody wants it any more (§15), credentials
answered once on 401/407 (§22.2), a retransmitted 2xx ACKed again; requests inside the call are
relayed to the other party, or answered by the box for the side whose session it holds
(RFC 3264 §8), 491 for a re-INVITE crossing another (§14.1).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol

from .callerid import quoted_display
from .legs import (
    BoxHeldMedia,
    LegAnswered,
    LegFailed,
    LegListener,
    LegRecord,
    LegRinging,
    LegSetup,
    LegState,
    LegStates,
    ListenerRef,
    SessionDescription,
    result_of,
)
from .sip.dialog import Dialog
from .sip.errors import RemoteProtocolError
from .sip.message import Headers, Request, Response, make_response
from .sip.transaction import Address, new_branch, new_tag
from .sip.uri import SipUri, parse_uri

if TYPE_CHECKING:
    from .calls import Call

LOGGER = logging.getLogger(__name__)

# Methods a party to a call may send (in the dialog); REGISTER is for the registrar.
ALLOW = ("INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, MESSAGE, NOTIFY, "
         "SUBSCRIBE, REFER")
RELAYED_IN_DIALOG = frozenset({"INFO", "UPDATE", "MESSAGE", "NOTIFY", "OPTIONS"})
COPIED_INVITE_HEADERS = ("Content-Type", "Content-Disposition", "Supported", "Allow")
# RFC 3891 §6: the box takes REFERs with Replaces and INVITEs with Replaces; phones offer an
# attended transfer (rather than a blind one after the consultation) only to a party that
# says so (firmware/core/attended.py).
SUPPORTED_EXTENSION = "replaces"
DEFAULT_MAX_FORWARDS = 70

ResponseHandler = Callable[[str, Response, float], None]
TimeoutHandler = Callable[[str, float], None]


class SipServices(Protocol):
    """What the gateway provides to SIP parties: sending, and the trunk's credentials."""

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

    def invite_authorization(
        self, target: Target, challenge: Response, request: Request
    ) -> tuple[str, str] | None: ...

    def hold_offered(self, call: Call, side: str, request: Request, tx_id: str,
                     now: float) -> bool: ...

    def session_changed(self, call: Call, now: float) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where a SIP leg goes: an extension's registered contact, or a number at a provider."""

    kind: str  # "extension" | "external"
    label: str  # extension number or dialled external number
    request_uri: str
    destination: Address
    to_uri: str
    trunk: str | None = None
    employee: str | None = None  # whose phone an external number is (a member's mobile)


@dataclass(slots=True, kw_only=True)
class PendingRelay:
    """A request relayed from one side to the other, waiting for the other side's answer."""

    from_side: str
    server_tx: str
    request: Request
    client_tx: str | None = None
    invite_cseq: int | None = None
    final_2xx_seen: bool = False


def _via(services: SipServices, destination: Address) -> str:
    return (f"SIP/2.0/{destination.transport.upper()} {services.local_host}:"
            f"{services.local_port};branch={new_branch()};rport")


def _contact(services: SipServices, toward: Address) -> str:
    transport = ";transport=tcp" if toward.reliable else ""
    return f"<sip:linebox@{services.local_host}:{services.local_port}{transport}>"


def _body_headers(message: Response | Request) -> list[tuple[str, str]]:
    value = message.headers.get("Content-Type")
    return [("Content-Type", value)] if value and message.body else []


def _media_of(message: Response | Request) -> SessionDescription | None:
    if not message.body:
        return None
    return SessionDescription(body=message.body,
                              content_type=message.headers.get("Content-Type")
                              or "application/sdp")


def _send_bye(services: SipServices, dialog: Dialog, destination: Address, now: float) -> None:
    bye = dialog.create_request("BYE", via=_via(services, destination))
    bye.headers.add("User-Agent", services.user_agent)
    services.send_request(bye, destination, now, on_response=lambda tx, r, t: None,
                          on_timeout=lambda tx, t: None)


# ---------------------------------------------------------------------------- the caller
@dataclass(eq=False, slots=True, kw_only=True)
class SipCaller:
    """The caller's side: their INVITE's server transaction, then the dialog our 2xx made."""

    services: SipServices
    invite: Request
    invite_tx: str
    source: Address
    to_tag: str = field(default_factory=new_tag)
    dialog: Dialog | None = None
    relays: dict[str, PendingRelay] = field(default_factory=dict)  # keyed by client tx
    _answer_dialog: Dialog | None = None

    @property
    def offer(self) -> SessionDescription | None:
        return _media_of(self.invite)

    @property
    def hints(self) -> Mapping[str, str]:
        hints = {name: value for name in COPIED_INVITE_HEADERS
                 if (value := self.invite.headers.get(name)) is not None}
        max_forwards = self.invite.headers.get("Max-Forwards")
        if max_forwards is not None:
            hints["Max-Forwards"] = max_forwards
        return hints

    @property
    def destination(self) -> Address:
        return self.source

    @property
    def our_contact(self) -> str:
        return _contact(self.services, self.source)

    def ringing(self, early_media: SessionDescription | None, now: float) -> None:
        if early_media is None:
            self.respond(180, now)
        else:
            self.respond(183, now, body=early_media.body,
                         headers=[("Content-Type", early_media.content_type)])

    def respond(self, status: int, now: float, *, body: bytes = b"",
                headers: list[tuple[str, str]] | None = None) -> None:
        extra = [("Contact", self.our_contact)] if status < 300 else []
        self.services.send_response(self.invite_tx, make_response(
            self.invite, status, to_tag=self.to_tag, headers=extra + (headers or []), body=body,
        ), now)

    def answerable(self) -> bool:
        try:
            self._answer_dialog = Dialog.as_uas(self.invite, local_tag=self.to_tag,
                                                local_contact=self.our_contact)
        except RemoteProtocolError:
            LOGGER.warning("caller's INVITE cannot establish a dialog")
            return False
        return True

    def answer(self, media: SessionDescription, now: float) -> None:
        assert self._answer_dialog is not None, "answer() without answerable()"
        self.dialog = self._answer_dialog
        headers = [("Contact", self.our_contact), ("Allow", ALLOW),
                   ("Supported", SUPPORTED_EXTENSION), ("User-Agent", self.services.user_agent)]
        if media.body:
            headers.append(("Content-Type", media.content_type))
        self.services.send_response(self.invite_tx, make_response(
            self.invite, 200, to_tag=self.to_tag, headers=headers, body=media.body), now)

    def reject(self, status: int, reason: str | None, now: float) -> None:
        self.services.send_response(self.invite_tx, make_response(
            self.invite, status, reason, to_tag=self.to_tag,
            headers=[("User-Agent", self.services.user_agent)]), now)

    def hang_up(self, now: float) -> None:
        if self.dialog is not None:
            _send_bye(self.services, self.dialog, self.source, now)


# ---------------------------------------------------------------------------- a leg
@dataclass(eq=False, slots=True, kw_only=True)
class SipLeg(LegStates):
    """A party the box rings over SIP: our INVITE client transaction, then its dialog."""

    services: SipServices
    target: Target
    channel: str | None = None
    employee: str | None = None
    record: LegRecord = field(init=False)
    invite: Request | None = None
    tx_id: str = ""
    dialog: Dialog | None = None
    ack: Request | None = None
    remote_tag: str | None = None  # the phone's To tag from its 18x (a busy lamp shows it)
    remote_sdp: bytes = b""  # the SDP in its 2xx (a transfer offers it to the target)
    relays: dict[str, PendingRelay] = field(default_factory=dict)
    _state: LegState = LegState.CALLING
    _listener: ListenerRef = field(default_factory=ListenerRef)
    _provisional_seen: bool = False
    _cancel_pending: bool = False
    _auth_retried: bool = False
    _late_offer: bool = False  # started without SDP: the 2xx makes the offer (RFC 3725 §4)
    _offer_in_2xx: bytes = b""

    def __post_init__(self) -> None:
        if self.employee is None:
            self.employee = self.target.employee
        self.record = LegRecord(target=self.target.label, contact=self.target.request_uri,
                                started_at=0.0)

    @property
    def label(self) -> str:
        return self.target.label

    @property
    def destination(self) -> Address:
        return self.target.destination

    @property
    def our_contact(self) -> str:
        return self.invite.headers.get("Contact") or "" if self.invite is not None else ""

    # ------------------------------------------------------------------ start
    def start(self, setup: LegSetup, listener: LegListener, now: float) -> None:
        self._listener = ListenerRef(listener)
        self.record.started_at = now
        self._late_offer = setup.offer is None
        self.invite = self._build_invite(setup)
        self._send_invite(now)

    def _build_invite(self, setup: LegSetup) -> Request:
        services = self.services
        target = self.target
        from_host = services.local_host
        transport = ";transport=tcp" if target.destination.reliable else ""
        from_value = f"<sip:{setup.caller_number}@{from_host}>;tag={new_tag()}"
        if setup.display:
            from_value = f"{quoted_display(setup.display)} {from_value}"
        max_forwards = setup.hints.get("Max-Forwards", "")
        hops = (min(int(max_forwards) - 1, DEFAULT_MAX_FORWARDS) if max_forwards.isdigit()
                else DEFAULT_MAX_FORWARDS)
        headers = Headers([
            ("Via", _via(services, target.destination)),
            ("Max-Forwards", str(hops)),
            ("From", from_value),
            ("To", f"<{target.to_uri}>"),
            ("Call-ID", f"{secrets.token_hex(12)}@{from_host}"),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:linebox@{from_host}:{services.local_port}{transport}>"),
            ("User-Agent", services.user_agent),
        ])
        # The caller's own offer goes with its headers; an offer of the box's (it holds the
        # media) is described afresh, and a leg without an offer carries no body at all.
        offer = setup.offer
        for name in COPIED_INVITE_HEADERS:
            value = setup.hints.get(name)
            if value is not None:
                headers.add(name, value)
        supported = [o.strip() for o in (headers.get("Supported") or "").split(",") if o.strip()]
        if SUPPORTED_EXTENSION not in (o.lower() for o in supported):
            headers.set("Supported", ", ".join([*supported, SUPPORTED_EXTENSION]))
        if offer is None:
            headers.remove("Content-Type")
            headers.remove("Content-Disposition")
        elif headers.get("Content-Type") != offer.content_type:
            headers.set("Content-Type", offer.content_type)
        uri = parse_uri(target.request_uri)
        if not isinstance(uri, SipUri):
            raise ValueError(f"not a SIP URI: {target.request_uri}")
        return Request("INVITE", uri, headers, offer.body if offer is not None else b"")

    def _send_invite(self, now: float) -> None:
        assert self.invite is not None
        self.tx_id = self.services.send_request(
            self.invite, self.target.destination, now,
            on_response=self._on_response, on_timeout=self._on_timeout,
        )

    def _emit(self, event: LegRinging | LegAnswered | LegFailed, now: float) -> None:
        self._listener.tell(event, now)

    # ------------------------------------------------------------------ responses
    def _on_response(self, tx_id: str, response: Response, now: float) -> None:
        status = response.status
        if status < 200:
            self._on_provisional(response, now)
        elif status < 300:
            self._on_answer(response, now)
        else:
            self._on_failure(response, now)

    def _on_provisional(self, response: Response, now: float) -> None:
        self._provisional_seen = True
        if self._cancel_pending:
            self._send_cancel(now)
            return
        if response.status == 100 or not self.active:
            return
        self.remote_tag = response.to.tag or self.remote_tag
        if self._state is LegState.CALLING:
            self._move(LegState.RINGING)
            self.record.ringing_at = now
        self._emit(LegRinging(leg=self, early_media=_media_of(response)), now)

    def _on_answer(self, response: Response, now: float) -> None:
        if self.dialog is not None:
            # A retransmission: our ACK was lost (RFC 3261 §13.2.2.4), it goes again. A late
            # offer's ACK waits for the answer; nothing to repeat yet.
            if self.ack is not None:
                self.services.send_stateless(self.ack, self.target.destination)
            return
        assert self.invite is not None
        self.dialog = Dialog.as_uac(self.invite, response, local_contact=self.our_contact)
        if self._late_offer:
            self._offer_in_2xx = response.body
        else:
            self._send_ack(b"", None)
        if not self.active:
            # Cancelled, but the 2xx crossed our CANCEL (§15): acknowledged, and hung up on.
            if self.record.result is None:
                self.record.result = "cancelled"
            self.record.ended_at = now
            self._end_dialog(now)
            return
        self._move(LegState.ANSWERED)
        self.record.sip_status = response.status
        self.remote_sdp = response.body
        media = _media_of(response) or SessionDescription(body=b"")
        self._emit(LegAnswered(leg=self, media=media, status=response.status), now)

    def _send_ack(self, body: bytes, content_type: str | None) -> None:
        assert self.dialog is not None and self.invite is not None
        ack = self.dialog.create_ack(self.invite.cseq.seq,
                                     via=_via(self.services, self.target.destination))
        if body:
            ack.body = body
            ack.headers.set("Content-Type", content_type or "application/sdp")
        self.ack = ack
        self.services.send_stateless(ack, self.target.destination)

    def complete_answer(self, answer: SessionDescription | None, now: float) -> None:
        """The ACK of a late offer's 2xx carries the answer (RFC 3264 §5, RFC 3725 §4)."""
        if self.dialog is None or self.ack is not None:
            return
        if answer is None:
            offer = self._offer_in_2xx
            self._send_ack(declined_answer(offer), "application/sdp" if offer else None)
        else:
            self._send_ack(answer.body, answer.content_type)

    def _on_failure(self, response: Response, now: float) -> None:
        status = response.status
        if status in (401, 407) and not self._auth_retried and self.target.trunk:
            assert self.invite is not None
            credentials = self.services.invite_authorization(self.target, response, self.invite)
            if credentials is not None and self.active and not self._cancel_pending:
                # RFC 3261 §22.2: the same INVITE again with credentials, CSeq +1, new branch.
                self._auth_retried = True
                invite = self.invite
                invite.headers.set("Via", _via(self.services, self.target.destination))
                invite.headers.set("CSeq", f"{invite.cseq.seq + 1} INVITE")
                invite.headers.set(*credentials)
                self._send_invite(now)
                return
        self._failed(result_of(status), status, now)

    def _on_timeout(self, tx_id: str, now: float) -> None:
        if self._state is LegState.ANSWERED:
            return
        self._failed("no_answer" if self._provisional_seen else "failed", 408, now)

    def _failed(self, result: str, status: int, now: float) -> None:
        was_active = self.active
        if was_active:
            self._move(LegState.DONE)
        if self.record.result is None:
            self.record.result = result
        self.record.sip_status = status
        self.record.ended_at = now
        if was_active:
            self._emit(LegFailed(leg=self, status=status, result=self.record.result), now)

    # ------------------------------------------------------------------ ending it
    def cancel(self, now: float, *, result: str = "cancelled") -> None:
        if not self.active:
            return
        self.record.result = result
        self._move(LegState.DONE)
        self.record.ended_at = now
        if self._provisional_seen:
            self._send_cancel(now)
        else:
            # RFC 3261 §9.1: no CANCEL before a provisional response; send it when one comes.
            self._cancel_pending = True

    def _send_cancel(self, now: float) -> None:
        self._cancel_pending = False
        invite = self.invite
        assert invite is not None
        headers = Headers([
            ("Via", invite.headers.get("Via") or ""),
            ("Max-Forwards", str(DEFAULT_MAX_FORWARDS)),
            ("From", invite.headers.get("From") or ""),
            ("To", invite.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.seq} CANCEL"),
            ("User-Agent", self.services.user_agent),
        ])
        for route in invite.headers.get_all("Route"):
            headers.add("Route", route)
        cancel = Request("CANCEL", invite.uri, headers)
        self.services.send_request(cancel, self.target.destination, now,
                                   on_response=lambda tx, r, t: None,
                                   on_timeout=lambda tx, t: None)
        self.services.cancel_sent(self.tx_id, now)

    def hang_up(self, now: float) -> None:
        if self.dialog is None:
            self.cancel(now)
            return
        if self._state is not LegState.DONE:
            self._move(LegState.DONE)
        if self.record.ended_at is None:
            self.record.ended_at = now
        self._end_dialog(now)

    def _end_dialog(self, now: float) -> None:
        """BYE; a late offer's 2xx is first acknowledged with an answer that declines every
        stream, so the phone is not left expecting media (RFC 3725 §4)."""
        assert self.dialog is not None
        if self.ack is None:
            self.complete_answer(None, now)
        _send_bye(self.services, self.dialog, self.target.destination, now)


def declined_answer(offer: bytes) -> bytes:
    """An SDP answer that declines every stream of `offer` (RFC 3264 §6: port zero), so a
    party whose 2xx must be acknowledged is not left expecting media."""
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


# ---------------------------------------------------------------------------- inside a call
SipParty = SipCaller | SipLeg


def sip_party(call: Call, side: str) -> SipParty | None:
    party = call.connected.get(side)
    # A transferred caller (firmware/core/transfer.py) is the SIP party it wraps.
    party = getattr(party, "sip_party", party)
    return party if isinstance(party, SipCaller | SipLeg) else None


def in_dialog_request(call: Call, side: str, request: Request, tx_id: str,
                      services: SipServices, now: float) -> None:
    """A request inside the answered call from side "a" (caller) or "b" (answerer)."""
    method = request.method
    me = sip_party(call, side)
    if me is not None and me.dialog is not None:
        me.dialog.receive_request(request)
    if call.state == "connecting":
        # A callback: only the member has a dialog yet; the customer's phone still rings.
        if method == "BYE":
            services.send_response(tx_id, make_response(request, 200), now)
            call.party_hung_up(side, now)
            return
        status = 491 if method == "INVITE" else 200
        headers = [("Allow", ALLOW)] if status == 200 and method == "OPTIONS" else []
        services.send_response(tx_id, make_response(request, status, headers=headers), now)
        return
    if call.state != "answered":
        services.send_response(tx_id, make_response(request, 200 if method == "BYE" else 481),
                               now)
        return
    if method == "BYE":
        services.send_response(tx_id, make_response(request, 200), now)
        call.party_hung_up(side, now)
        return
    local = call.local
    if local is not None:
        _local_request(call, side, request, tx_id, services, now)
        return
    anchor = call.anchor
    if anchor is not None and _changes_the_session(request):
        # Each party's session is with the box, which answers for that side alone.
        _answer_offer(call, side, request, tx_id, services, now,
                      current=anchor.caller_answer if side == "a" else anchor.leg_offer(),
                      renegotiate=partial(anchor.renegotiate, side))
        services.session_changed(call, now)  # a hold or a resume: music (core/hold.py)
        return
    other = sip_party(call, "b" if side == "a" else "a")
    holder = call.connected.get("b" if side == "a" else "a")
    if other is None and isinstance(holder, BoxHeldMedia):
        _held_request(call, side, request, tx_id, holder, services, now)
        return
    if other is not None and other.dialog is not None and (
        method == "INVITE" or method in RELAYED_IN_DIALOG
    ):
        pending_invite = any(r.request.method == "INVITE" for party in (me, other)
                             if party is not None for r in party.relays.values())
        if method == "INVITE" and pending_invite:
            services.send_response(tx_id, make_response(request, 491), now)  # §14.1
            return
        if method == "INVITE" and services.hold_offered(call, side, request, tx_id, now):
            return  # the box steps into the media to play music on hold (core/hold.py)
        _relay(side, request, tx_id, me, other, services, now)
        return
    services.send_response(tx_id, make_response(request, 501, headers=[("Allow", ALLOW)]),
                           now)


def _held_request(call: Call, side: str, request: Request, tx_id: str, holder: BoxHeldMedia,
                  services: SipServices, now: float) -> None:
    """A request toward a party whose session the box holds (a modem line): hold or a new
    address is answered by the box (RFC 3264 §8), a key (INFO) goes to the line."""
    method = request.method
    if _changes_the_session(request):
        _answer_offer(call, side, request, tx_id, services, now, current=holder.current_sdp,
                      renegotiate=holder.renegotiate)
        return
    if method in ("INFO", "UPDATE", "OPTIONS", "NOTIFY", "MESSAGE"):
        headers = [("Allow", ALLOW)] if method == "OPTIONS" else []
        services.send_response(tx_id, make_response(request, 200, headers=headers), now)
        key = dtmf_key(request) if method == "INFO" else None
        if key is not None:
            holder.key_pressed(key, now)
        return
    services.send_response(tx_id, make_response(request, 501, headers=[("Allow", ALLOW)]),
                           now)


def _local_request(call: Call, side: str, request: Request, tx_id: str,
                   services: SipServices, now: float) -> None:
    """A request from the party the box talks to (RFC 3261 §12.2.2 inside the dialog)."""
    local = call.local
    assert local is not None
    method = request.method
    if _changes_the_session(request):
        # Hold, a new address, or a session refresh (RFC 3264 §8).
        answer = _answer_offer(call, side, request, tx_id, services, now,
                               current=call.local_answer, renegotiate=local.renegotiate)
        if answer is not None and request.body:
            call.local_answer = answer
        return
    if method in ("INFO", "UPDATE", "OPTIONS", "NOTIFY", "MESSAGE"):
        headers = [("Allow", ALLOW)] if method == "OPTIONS" else []
        services.send_response(tx_id, make_response(request, 200, headers=headers), now)
        key = dtmf_key(request) if method == "INFO" else None
        if key is not None:
            local.key_pressed(key, now)
        return
    services.send_response(tx_id, make_response(request, 501, headers=[("Allow", ALLOW)]),
                           now)


def _answer_offer(
    call: Call, side: str, request: Request, tx_id: str, services: SipServices, now: float,
    *, current: bytes, renegotiate: Callable[[bytes], bytes],
) -> bytes | None:
    """A re-INVITE (or an UPDATE with an offer) to a session the box holds with `side`:
    answered by the box itself (RFC 3264 §8), 488 when the offer is unusable. Without an
    offer the box's `current` SDP goes in the 2xx; the ACK's answer changes nothing it needs
    (the party keeps its address). The SDP sent, or None."""
    body = current
    if request.body:
        try:
            body = renegotiate(request.body)
        except ValueError as exc:
            LOGGER.info("call %s: %s refused: %s", call.id, request.method, exc)
            services.send_response(tx_id, make_response(request, 488), now)
            return None
    me = sip_party(call, side)
    contact = me.our_contact if me is not None else ""
    services.send_response(tx_id, make_response(
        request, 200, headers=[("Contact", contact), ("Allow", ALLOW),
                               ("Content-Type", "application/sdp")], body=body), now)
    return body


def _relay(side: str, request: Request, tx_id: str, me: SipParty | None, other: SipParty,
           services: SipServices, now: float) -> None:
    assert other.dialog is not None
    relayed = other.dialog.create_request(request.method, via=_via(services, other.destination),
                                          headers=_body_headers(request), body=request.body)
    relay = PendingRelay(from_side=side, server_tx=tx_id, request=request)
    if request.method == "INVITE":
        relay.invite_cseq = relayed.cseq.seq
    holder = other.relays
    relay.client_tx = services.send_request(
        relayed, other.destination, now,
        on_response=partial(_on_relay_response, relay, holder, me, services),
        on_timeout=partial(_on_relay_timeout, relay, holder, services),
    )
    holder[relay.client_tx] = relay


def _on_relay_response(relay: PendingRelay, holder: dict[str, PendingRelay],
                       me: SipParty | None, services: SipServices, tx_id: str,
                       response: Response, now: float) -> None:
    if response.status == 100:
        return
    if response.status >= 200:
        if relay.final_2xx_seen:
            return  # a retransmitted 2xx: the ACK goes when the originator sends it
        relay.final_2xx_seen = response.status < 300
        if relay.request.method != "INVITE" or response.status >= 300:
            assert relay.client_tx is not None
            holder.pop(relay.client_tx, None)
    extra: list[tuple[str, str]] = list(_body_headers(response))
    if relay.request.method == "INVITE" and response.status < 300:
        extra.append(("Contact", me.our_contact if me is not None else ""))
    services.send_response(relay.server_tx, make_response(
        relay.request, response.status, response.reason, headers=extra, body=response.body,
    ), now)


def _on_relay_timeout(relay: PendingRelay, holder: dict[str, PendingRelay],
                      services: SipServices, tx_id: str, now: float) -> None:
    assert relay.client_tx is not None
    holder.pop(relay.client_tx, None)
    services.send_response(relay.server_tx, make_response(relay.request, 408), now)


def ack_received(call: Call, side: str, ack: Request, services: SipServices,
                 now: float) -> None:
    """An ACK for a 2xx from `side`: relay it when it completes a relayed re-INVITE."""
    local = call.local
    if local is not None:
        if ack.body:  # our 200 made the offer (RFC 3264 §5): the ACK brings the answer
            local.answer_received(ack.body, now)
        return
    winner = call.winner
    if side == "a" and call.caller.offer is None and winner is not None:
        # The caller made no offer: the answering party's 2xx made it, and the caller's ACK
        # carries the answer (RFC 3264 §5), which completes the party's own exchange.
        winner.complete_answer(SessionDescription(
            body=ack.body, content_type=ack.headers.get("Content-Type") or "application/sdp"),
            now)
    other = sip_party(call, "b" if side == "a" else "a")
    if other is None or other.dialog is None:
        return
    for tx, relay in list(other.relays.items()):
        if relay.from_side == side and relay.request.method == "INVITE":
            if relay.invite_cseq is not None:
                relayed_ack = other.dialog.create_ack(relay.invite_cseq,
                                                      via=_via(services, other.destination))
                if ack.body:
                    relayed_ack.body = ack.body
                    relayed_ack.headers.set("Content-Type", ack.headers.get("Content-Type")
                                            or "application/sdp")
                services.send_stateless(relayed_ack, other.destination)
            del other.relays[tx]


def send_reinvite(party: SipParty, body: bytes, services: SipServices, now: float,
                  on_answer: Callable[[Response | None, float], None], *,
                  headers: list[tuple[str, str]] | None = None) -> None:
    """The box's own re-INVITE to `party` with the offer `body` (RFC 3261 §14.1): a 2xx is
    ACKed, retransmissions too (§13.2.2.4); `on_answer` hears the final response once (None:
    none came, Timer B). `headers` go with it (a transfer's P-Asserted-Identity)."""
    dialog = party.dialog
    assert dialog is not None
    destination = party.destination
    invite = dialog.create_request("INVITE", via=_via(services, destination), headers=[
        ("Allow", ALLOW), ("User-Agent", services.user_agent), *(headers or []),
        ("Content-Type", "application/sdp")], body=body)
    answered: list[bool] = []

    def on_response(tx_id: str, response: Response, now: float) -> None:
        if response.status < 200:
            return
        if response.status < 300:
            services.send_stateless(dialog.create_ack(invite.cseq.seq,
                                                      via=_via(services, destination)),
                                    destination)
        if not answered:
            answered.append(True)
            on_answer(response, now)

    def on_timeout(tx_id: str, now: float) -> None:
        if not answered:
            answered.append(True)
            on_answer(None, now)

    services.send_request(invite, destination, now, on_response=on_response,
                          on_timeout=on_timeout)


def _changes_the_session(request: Request) -> bool:
    """A re-INVITE, or an UPDATE carrying an offer (RFC 3311 §5.2)."""
    return request.method == "INVITE" or request.method == "UPDATE" and bool(request.body)


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
