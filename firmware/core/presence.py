"""Busy lamps: the dialog event package (RFC 4235) over SUBSCRIBE/NOTIFY (RFC 6665).

A phone's BLF key for an extension is a subscription: the phone SUBSCRIBEs with `Event:
dialog` to the extension (Request-URI user), digest-authenticated like anything else a phone
sends; the box answers 200 and at once NOTIFYs the full state (§4.1 of RFC 6665: the
SUBSCRIBE's 2xx and an immediate NOTIFY make the subscription), then again whenever the
extension's calls change: a call ringing it is an `early` dialog (direction recipient, with the
ringing leg's Call-ID and tags, so a press on the lamp can pick it up with an INVITE with
Replaces), a call it talks on `confirmed`, a call gone `terminated` once, then nothing (idle).
A call the extension placed shows `confirmed` with direction initiator from its first moment
(the lamp says busy; it does not flash as if it could be picked up).

The state is computed from the calls the core holds (`Gateway.calls`), only for extensions
someone watches, after every batch of events (`refresh`, from the gateway's `_drain_events`):
with no subscriber it costs one check of an empty dict. Only one NOTIFY per subscription is in
flight at a time; a change meanwhile is sent when its answer comes, so NOTIFYs cannot overtake
each other on UDP. A NOTIFY answered 481 (or any code of RFC 6665 §4.1.3 that ends a
subscription) or unanswered ends the subscription. Expiry runs on the core's timers with `now`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from ..calls import Call, Timer
from ..legs import LegState
from ..sip.dialog import Dialog, DialogId
from ..sip.dialog_info import CONTENT_TYPE, DialogView, dialog_info_xml
from ..sip.errors import RemoteProtocolError
from ..sip.message import Request, Response, make_response
from ..sip.transaction import Address, new_branch, new_tag
from ..sip.uri import SipUri
from ..sip_legs import SipCaller, SipLeg

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

EVENT_PACKAGES = ("dialog",)
ALLOW_EVENTS = ", ".join(EVENT_PACKAGES)
# RFC 4235 §3.2: an hour when the SUBSCRIBE names no Expires; the bounds are the registrar's.
DEFAULT_EXPIRES_S = 3600
MIN_EXPIRES_S = 60
MAX_EXPIRES_S = 3600
# RFC 6665 §4.1.3: a NOTIFY answered with one of these ends the subscription.
ENDING_STATUSES = frozenset({404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604})
ACCEPTABLE = frozenset({CONTENT_TYPE, "application/*", "*/*"})
# Calls an extension places itself (its dialog with the box has it as initiator).
PLACED_DIRECTIONS = frozenset({"internal", "outbound"})


@dataclass(eq=False, slots=True, kw_only=True)
class Subscription:
    """One busy lamp: who watches (`subscriber`), which extension (`entity`), and the
    subscription's dialog (RFC 6665 §4.1: made by the SUBSCRIBE and our 2xx)."""

    subscriber: str
    entity: str
    entity_uri: str
    dialog: Dialog
    destination: Address
    expires_at: float
    timer: Timer | None = None
    version: int = 0  # RFC 4235 §4.1.2: counts the documents of this subscription from 0
    sent: tuple[DialogView, ...] = ()  # the dialogs the last NOTIFY reported as not ended
    in_flight: bool = False
    pending: bool = False
    ended: bool = False


@dataclass(slots=True)
class _Watched:
    subscriptions: list[Subscription] = field(default_factory=list)
    state: tuple[DialogView, ...] = ()


def _event_package(request: Request) -> str | None:
    value = request.headers.get("Event")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower()


def _accepts_dialog_info(request: Request) -> bool:
    accept = [a.split(";")[0].strip().lower() for a in request.headers.get_list("Accept")]
    return not accept or bool(ACCEPTABLE & set(accept))


def parse_replaces(value: str) -> tuple[str, set[str | None], bool]:
    """Call-ID, the pair of tags, and early-only of a Replaces header (RFC 3891 §6.1)."""
    call_id, *params = [part.strip() for part in value.split(";")]
    if not call_id:
        raise ValueError("no call-id")
    named: dict[str, str] = {}
    for param in params:
        name, _, param_value = param.partition("=")
        named[name.strip().lower()] = param_value.strip().strip('"')
    if "to-tag" not in named or "from-tag" not in named:
        raise ValueError("to-tag and from-tag are required")
    return call_id, {named["to-tag"], named["from-tag"]}, "early-only" in named


def extension_dialogs(calls: Iterable[Call], watched: Iterable[str], host: str
                      ) -> dict[str, list[DialogView]]:
    """Each watched extension's dialogs (RFC 4235 §4.1.1) in the calls in progress: ringing
    legs `early`, answered legs and the calls it placed `confirmed`."""
    wanted = set(watched)
    found: dict[str, list[DialogView]] = {}
    for call in calls:
        info = call.info
        caller = call.caller
        if (info.caller in wanted and info.direction in PLACED_DIRECTIONS
                and isinstance(caller, SipCaller)):
            found.setdefault(info.caller, []).append(DialogView(
                id=caller.invite.call_id, state="confirmed", direction="initiator",
                call_id=caller.invite.call_id, local_tag=caller.invite.from_.tag,
                remote_tag=caller.to_tag, local_identity=f"sip:{info.caller}@{host}",
                remote_identity=f"sip:{info.dialed}@{host}",
            ))
        for leg in call.legs:
            if (not isinstance(leg, SipLeg) or leg.target.kind != "extension"
                    or leg.label not in wanted or leg.invite is None):
                continue
            if leg.state is LegState.RINGING:
                # Not before the phone's 18x: until then it does not ring (and the tags a
                # pickup needs are not known yet).
                state = "early"
                phone_tag, box_tag = leg.remote_tag, leg.invite.from_.tag
            elif leg.state is LegState.ANSWERED and leg.dialog is not None:
                state = "confirmed"
                phone_tag, box_tag = leg.dialog.remote_tag, leg.dialog.local_tag
            else:
                continue
            found.setdefault(leg.label, []).append(DialogView(
                id=leg.invite.call_id, state=state, direction="recipient",
                call_id=leg.invite.call_id, local_tag=phone_tag, remote_tag=box_tag,
                local_identity=f"sip:{leg.label}@{host}",
                remote_identity=f"sip:{info.caller}@{host}", remote_display=info.display,
            ))
    return found


class Presence:
    """The subscriptions to the extensions' dialog state, and their NOTIFYs."""

    def __init__(self, core: Gateway) -> None:
        self.core = core
        self.subscriptions: dict[DialogId, Subscription] = {}
        self._watched: dict[str, _Watched] = {}

    # ------------------------------------------------------------------ SUBSCRIBE
    def on_subscribe(self, tx_id: str, request: Request, source: Address, now: float) -> None:
        core = self.core
        if request.to.tag is not None:
            self._on_refresh(tx_id, request, source, now)
            return
        package = _event_package(request)
        if package is None:
            raise RemoteProtocolError("SUBSCRIBE without Event", status_hint=400)
        if package not in EVENT_PACKAGES:
            # RFC 6665 §4.2.1: an event package we do not know, with those we do.
            core.reply(tx_id, request, 489, now, headers=[("Allow-Events", ALLOW_EVENTS)])
            return
        if not _accepts_dialog_info(request):
            core.reply(tx_id, request, 406, now, headers=[("Accept", CONTENT_TYPE)])
            return
        admitted = self._admit(tx_id, request, source, now)
        if admitted is None:
            return
        expires, username = admitted
        uri = request.uri
        entity = uri.user_unescaped if isinstance(uri, SipUri) else None
        if entity is None or entity not in core.extensions:
            core.reply(tx_id, request, 404, now)
            return
        local_tag = new_tag()
        dialog = Dialog.as_uas(request, local_tag=local_tag, local_contact=self._contact(source))
        self._accept(tx_id, request, source, expires, now, to_tag=local_tag)
        sub = Subscription(
            subscriber=username, entity=entity,
            entity_uri=f"sip:{entity}@{core.local_host}", dialog=dialog, destination=source,
            expires_at=now + expires,
        )
        watched = self._watched.get(entity)
        if watched is None:
            watched = self._watched[entity] = _Watched()
            watched.state = self._state_of(entity)
        if expires == 0:
            # RFC 6665 §4.2.1: a fetch — the state once, and the subscription ends at once.
            self._end(sub, now, "terminated;reason=timeout", watched.state)
            if not watched.subscriptions:
                del self._watched[entity]
            return
        LOGGER.info("%s watches extension %s for %d s", username, entity, expires)
        self.subscriptions[dialog.id] = sub
        watched.subscriptions.append(sub)
        sub.timer = core.call_at(sub.expires_at, partial(self._expired, sub))
        self._notify(sub, now)

    def _admit(self, tx_id: str, request: Request, source: Address, now: float
               ) -> tuple[int, str] | None:
        """The duration granted and the authenticated subscriber, or None when the request
        was answered here (423, or the digest challenge / 403)."""
        expires = self._granted_expires(tx_id, request, now)
        if expires is None:
            return None
        username = self.core.edge.authenticate(tx_id, request, source, now,
                                               header="Authorization", status=401)
        return None if username is None else (expires, username)

    def _accept(self, tx_id: str, request: Request, source: Address, expires: int,
                now: float, *, to_tag: str | None = None) -> None:
        self.core.send_response(tx_id, make_response(request, 200, to_tag=to_tag, headers=[
            ("Expires", str(expires)), ("Contact", self._contact(source)),
            ("User-Agent", self.core.user_agent),
        ]), now)

    def _granted_expires(self, tx_id: str, request: Request, now: float) -> int | None:
        """The duration granted (RFC 6665 §4.2.1.1: the notifier may shorten, never lengthen);
        too short is a 423 with Min-Expires (§4.2.1.1), answered here (None)."""
        requested = request.expires
        if request.headers.get("Expires") is not None and requested is None:
            raise RemoteProtocolError("bad Expires", status_hint=400)
        expires = DEFAULT_EXPIRES_S if requested is None else requested
        if 0 < expires < MIN_EXPIRES_S:
            self.core.reply(tx_id, request, 423, now,
                            headers=[("Min-Expires", str(MIN_EXPIRES_S))])
            return None
        return min(expires, MAX_EXPIRES_S)

    def _on_refresh(self, tx_id: str, request: Request, source: Address, now: float) -> None:
        """A SUBSCRIBE inside a subscription: a refresh, or Expires 0 to end it (§4.1.2)."""
        core = self.core
        key = (request.call_id, request.to.tag or "", request.from_.tag)
        sub = self.subscriptions.get(key)
        if sub is None or _event_package(request) not in EVENT_PACKAGES:
            core.reply(tx_id, request, 481, now)  # RFC 6665 §4.2.1.2
            return
        admitted = self._admit(tx_id, request, source, now)
        if admitted is None:
            return
        expires, username = admitted
        if username != sub.subscriber:
            core.reply(tx_id, request, 403, now)
            return
        sub.dialog.receive_request(request)  # CSeq order (RFC 3261 §12.2.2): 500 otherwise
        sub.destination = source
        self._accept(tx_id, request, source, expires, now)
        if expires == 0:
            LOGGER.info("%s stops watching extension %s", sub.subscriber, sub.entity)
            self._remove(sub)
            self._end(sub, now, "terminated", self._watched_state(sub.entity))
            return
        sub.expires_at = now + expires
        if sub.timer is not None:
            sub.timer.cancel()
        sub.timer = core.call_at(sub.expires_at, partial(self._expired, sub))
        # RFC 6665 §4.2.1.2: a refresh is answered with a NOTIFY of the current state.
        self._notify(sub, now)

    def _contact(self, toward: Address) -> str:
        transport = ";transport=tcp" if toward.reliable else ""
        return f"<sip:linebox@{self.core.local_host}:{self.core.local_port}{transport}>"

    # ------------------------------------------------------------------ state and NOTIFY
    def _state_of(self, entity: str) -> tuple[DialogView, ...]:
        found = extension_dialogs(self.core.calls.values(), (entity,), self.core.local_host)
        return tuple(found.get(entity, ()))

    def _watched_state(self, entity: str) -> tuple[DialogView, ...]:
        watched = self._watched.get(entity)
        return watched.state if watched is not None else self._state_of(entity)

    def refresh(self, now: float) -> None:
        """After events: NOTIFY the watchers of every extension whose dialogs changed."""
        if not self._watched:
            return
        core = self.core
        for entity in [e for e in self._watched if e not in core.extensions]:
            for sub in list(self._watched[entity].subscriptions):
                self._remove(sub)
                # RFC 6665 §4.2.2: the resource is gone (the extension was removed).
                self._end(sub, now, "terminated;reason=noresource", ())
        found = extension_dialogs(core.calls.values(), self._watched, core.local_host)
        for entity, watched in self._watched.items():
            state = tuple(found.get(entity, ()))
            if state == watched.state:
                continue
            watched.state = state
            for sub in list(watched.subscriptions):
                self._notify(sub, now)

    def _notify(self, sub: Subscription, now: float) -> None:
        if sub.in_flight:
            sub.pending = True  # sent when the NOTIFY in flight is answered
            return
        remaining = max(0, round(sub.expires_at - now))
        self._send(sub, now, f"active;expires={remaining}", self._watched_state(sub.entity))

    def _end(self, sub: Subscription, now: float, subscription_state: str,
             state: tuple[DialogView, ...]) -> None:
        """The last NOTIFY of a subscription (RFC 6665 §4.2.2: Subscription-State
        terminated); nothing more is sent after it."""
        sub.ended = True
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        self._send(sub, now, subscription_state, state)

    def _send(self, sub: Subscription, now: float, subscription_state: str,
              state: tuple[DialogView, ...]) -> None:
        current = {view.id for view in state}
        # A dialog reported before and gone now is reported once as terminated (RFC 4235
        # §3.7.1), so the lamp sees the call end; after that it is left out (idle).
        gone = [view.terminated() for view in sub.sent if view.id not in current]
        body = dialog_info_xml(sub.entity_uri, sub.version, [*state, *gone])
        sub.version += 1
        sub.sent = state
        core = self.core
        via = (f"SIP/2.0/{sub.destination.transport.upper()} {core.local_host}:"
               f"{core.local_port};branch={new_branch()};rport")
        notify = sub.dialog.create_request("NOTIFY", via=via, headers=[
            ("Event", "dialog"), ("Subscription-State", subscription_state),
            ("Content-Type", CONTENT_TYPE), ("User-Agent", core.user_agent),
        ], body=body)
        sub.in_flight = True
        sub.pending = False
        core.send_request(notify, sub.destination, now,
                          on_response=partial(self._notify_answered, sub),
                          on_timeout=partial(self._notify_timed_out, sub))

    def _notify_answered(self, sub: Subscription, tx_id: str, response: Response,
                         now: float) -> None:
        if response.status < 200:
            return
        sub.in_flight = False
        if sub.ended:
            return
        if response.status in ENDING_STATUSES:
            # RFC 6665 §4.1.3: the subscriber no longer has the subscription.
            LOGGER.info("%s's lamp for %s ended: NOTIFY answered %d", sub.subscriber,
                        sub.entity, response.status)
            self._remove(sub)
            return
        if sub.pending:
            self._notify(sub, now)

    def _notify_timed_out(self, sub: Subscription, tx_id: str, now: float) -> None:
        sub.in_flight = False
        if not sub.ended:
            LOGGER.info("%s's lamp for %s ended: NOTIFY unanswered", sub.subscriber,
                        sub.entity)
            self._remove(sub)

    def _expired(self, sub: Subscription, now: float) -> None:
        if sub.ended:
            return
        LOGGER.info("%s's lamp for %s expired", sub.subscriber, sub.entity)
        self._remove(sub)
        # RFC 6665 §4.2.2: a subscription that ran out ends with reason timeout.
        self._end(sub, now, "terminated;reason=timeout", self._watched_state(sub.entity))

    def _remove(self, sub: Subscription) -> None:
        sub.ended = True
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        self.subscriptions.pop(sub.dialog.id, None)
        watched = self._watched.get(sub.entity)
        if watched is not None:
            if sub in watched.subscriptions:
                watched.subscriptions.remove(sub)
            if not watched.subscriptions:
                del self._watched[sub.entity]

    # ------------------------------------------------------------------ a press on the lamp
    def on_replaces(self, tx_id: str, request: Request, source: Address, picker: str,
                    now: float) -> None:
        """An INVITE with Replaces (RFC 3891) from `picker`'s phone, naming the ringing dialog
        a lamp showed (its call-id, local-tag, remote-tag): the picker takes that call
        (firmware/core/pickup.py). Phones differ in which tag they put where, so the two tags
        are matched as a pair either way round."""
        try:
            call_id, tags, early_only = parse_replaces(request.headers.get("Replaces") or "")
        except ValueError as exc:
            raise RemoteProtocolError(f"bad Replaces: {exc}", status_hint=400) from exc
        for call in list(self.core.calls.values()):
            for leg in call.legs:
                if (not isinstance(leg, SipLeg) or leg.invite is None
                        or leg.invite.call_id != call_id):
                    continue
                box_tag = leg.invite.from_.tag
                ringing_tags = {leg.remote_tag, box_tag}
                talking_tags = ({leg.dialog.remote_tag, leg.dialog.local_tag}
                                if leg.dialog is not None else set())
                if leg.state is LegState.RINGING and tags == ringing_tags:
                    LOGGER.info("%s presses the lamp of %s: picks call %s up", picker,
                                leg.label, call.id)
                    self.core.pickup.pick(call, tx_id, request, source, picker, now)
                    return
                if leg.state is LegState.ANSWERED and tags == talking_tags:
                    self._confirmed(call, "b", tx_id, request, source, picker, early_only,
                                    now)
                    return
        found = self.core.transfer.attended.dialog_named(call_id, tags)
        if found is not None:  # a conversation the phone placed itself
            self._confirmed(*found, tx_id, request, source, picker, early_only, now)
            return
        self.core.reply(tx_id, request, 481, now)  # RFC 3891 §3: no such dialog

    def _confirmed(self, call: Call, side: str, tx_id: str, request: Request, source: Address,
                   picker: str, early_only: bool, now: float) -> None:
        """RFC 3891 §3, a confirmed dialog: early-only asked, 486; the member itself on
        another phone (§6.1) takes the call over (firmware/core/attended.py); a lamp press
        does not barge into a colleague's conversation: 486 too."""
        if not early_only and self.core.transfer.attended.may_replace(call, side, picker):
            self.core.transfer.attended.replace_party(call, side, tx_id, request, source, now)
            return
        reason = None if early_only else "Busy Here (already answered)"
        self.core.reply(tx_id, request, 486, now, reason=reason)

    def statuses(self) -> list[dict[str, object]]:
        """The busy lamps now: who watches which extension."""
        return [{"subscriber": s.subscriber, "extension": s.entity}
                for s in self.subscriptions.values()]
