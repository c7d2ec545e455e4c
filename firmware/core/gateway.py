"""The gateway core: SIP in, decisions, SIP out — sans-IO, driven by the daemon's event loop.

`Gateway.receive(data, source, now)` takes one datagram or one framed TCP message; the daemon then
drains `next_event()` (datagrams to send, webhook questions, records to write, status changes:
firmware/core/events.py) and re-arms one timer at `get_timer()`, calling `handle_timer(now)` when
it fires (the aioquic shape). The daemon never writes the core's attributes; results go back
through methods (`webhook_answered`, `set_agent_status`, ...). Inside, the transaction layer
matches retransmissions, the registrar keeps the phones' bindings, the rate limiter keeps
scanners out, and each new INVITE becomes a `Call` that the routing plan drives. Where a call
came from (a phone, a line) only matters at the edge; routing sees numbers.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import logging
import random
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from hal.modem.driver import ModemFact
from hal.modem.driver import StatusChanged as ModemStatusChanged

from ..agents import AgentBook, StatusChanged
from ..calls import Call, CallInfo
from ..failover import FailoverMonitor
from ..legs import CallerParty, Leg
from ..media import prompts
from ..media.ports import MediaPorts, PortRange
from ..registrar import Registrar
from ..routing.model import ON_LINE, RoutingMemory
from ..routing.rules import compile_rules
from ..routing.tollguard import TollGuard
from ..security import AuthGuard, RateLimiter, is_scanner
from ..sip.auth import DigestChallenger, build_authorization, choose_challenge
from ..sip.dialog import Dialog
from ..sip.errors import RemoteProtocolError
from ..sip.message import Request, Response, error_response_bytes, make_response, parse_message
from ..sip.transaction import (
    AckTimedOut,
    Address,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
)
from ..sip_legs import SipCaller, SipLeg, Target, TimeoutHandler, ack_received
from ..store.config import Config
from ..voicemail import VoicemailMessage
from .admission import Admission
from .box_media import BoxMedia
from .callbacks import Callbacks
from .distribution import Distribution
from .endings import Endings
from .events import (
    CallAnswered,
    DatagramToSend,
    Event,
    RtpToSend,
    VoicemailLeft,
)
from .failover_room import Failover
from .hold import Hold
from .lines import ChannelPool, Lines
from .lookups import Lookups
from .menu_greetings import MenuGreetings
from .menus import Menus
from .overload import FIRST, HANDLED, LATER, SERVE, SHED, OverloadControl, shed_response
from .pickup import Pickup
from .presence import Presence
from .recordings import Recordings
from .records import call_row, leg_row
from .sip_edge import RejectWith, SipEdge
from .status import gateway_status
from .transfer import Transfer

LOGGER = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 1.0
RTP_RELATCH_S = 2.0
ResponseCallback = Callable[[str, Response, float], None]


@dataclass(order=True, slots=True)
class _AppTimer:
    when: float
    seq: int
    callback: Callable[[float], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        # Drop the callback too: a cancelled timer waits in the heap until its time comes, and
        # must not keep a finished call (and its messages) alive until then.
        self.cancelled = True
        self.callback = _ignore


def _ignore(now: float) -> None:
    pass


def _no_greeting(mailbox: str) -> bytes | None:
    return None


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        local: Address,
        trunk_addresses: dict[str, Address],
        key: bytes | None = None,
        now: float,
        wall_offset_s: float = 0.0,
        media_ports: MediaPorts | None = None,
        greetings: Callable[[str], bytes | None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.local = local
        self.local_host = local.host
        self.local_port = local.port
        # The `random` strategy's only randomness; a test passes a seeded one.
        self.rng = rng or random.Random()
        self.key = key or secrets.token_bytes(32)
        self.layer = TransactionLayer()
        self.registrar = Registrar()
        self.channels = ChannelPool()
        self.toll_guard = TollGuard()  # not remade by apply_config: the hour's count stays
        self.calls: dict[str, Call] = {}  # by the caller's INVITE server transaction
        self.dialogs: dict[tuple[str, str, str | None], tuple[Call, str]] = {}
        # `now` is the monotonic clock; schedules and rules are wall-clock matters.
        self.wall_offset_s = wall_offset_s
        self.agents = AgentBook(started_at=now)
        self.queues: dict[str, list[Call]] = {}  # department → waiting calls, in turn order
        self.routing_memory: dict[str, RoutingMemory] = {}
        self.last_agent: dict[str, str] = {}  # caller → who answered them last (today)
        self.crm_owners: dict[str, str] = {}  # normalised phone → responsible extension
        self.conversion: dict[str, float] = {}  # extension → sales / target calls (rank: auto)
        self.storage_full = False  # the daemon cannot write records: voicemail takes none
        self._awaiting_webhook: dict[str, tuple[Call, str, bool]] = {}
        self._awaiting_crm: dict[str, Call] = {}
        self.stats: dict[str, int] = {
            "calls": 0, "answered": 0, "rejected_busy": 0, "parse_errors": 0,
            "dropped_scanner": 0, "dropped_banned": 0, "internal_errors": 0,
            "rtp_foreign": 0, "shed_overload": 0,
        }
        self._events: deque[Event] = deque()  # for the daemon, in order (next_event)
        # The box's own media (voicemail, prompts): sessions by local RTP port.
        self.media_ports: MediaPorts = media_ports or PortRange()
        self.greetings = greetings or _no_greeting
        # Who takes the datagrams arriving on each of the box's RTP ports in use.
        self.local_media: dict[int, Callable[[bytes, float], None]] = {}
        self._media_open: set[int] = set()
        self._rtp_owners: dict[int, tuple[str, float]] = {}  # port → owner host, last heard
        self._handlers: dict[str, tuple[ResponseCallback, TimeoutHandler]] = {}
        self._timers: list[_AppTimer] = []
        self._timer_seq = itertools.count()
        self._next_housekeeping = now
        self._dialog_keys: dict[str, list[tuple[str, str, str | None]]] = {}
        self.now = now
        # The rooms: each concern in a module of its own, sharing this core's state.
        self.edge = SipEdge(self)
        self.admission = Admission(self)
        self.lookups = Lookups(self)
        self.distribution = Distribution(self)
        self.callbacks = Callbacks(self)
        self.box_media = BoxMedia(self)
        self.menus = Menus(self)  # voice menus (IVR)
        self.menu_greetings = MenuGreetings(self)  # a menu's greeting recorded by phone
        self.presence = Presence(self)  # busy lamps (RFC 4235)
        self.pickup = Pickup(self)
        self.transfer = Transfer(self)  # REFER (RFC 3515)
        self.hold = Hold(self)  # music on hold
        self.recordings = Recordings(self)  # call recording
        self.lines = Lines(self)
        self.endings = Endings(self)
        self.failover = Failover(self)
        self.limiter = RateLimiter()
        self.overload = OverloadControl(now=now)  # 503 to strangers' new work when behind
        self.auth_guard = AuthGuard.of(config.security)
        self.apply_config(config, trunk_addresses, now)

    def apply_config(self, config: Config, trunk_addresses: dict[str, Address], now: float) -> None:
        self.config = config
        self.user_agent = config.sip.user_agent
        self.extensions = {e.number: e for e in config.extensions}
        self.departments = {d.number: d for d in config.departments}
        self.schedules = {schedule.name: schedule for schedule in config.schedules}
        self.rules = compile_rules(config.rules)
        self.timezone = config.site.timezone
        self.numbers = {n.number: n for n in config.numbers}
        self.lines.configure(config, trunk_addresses)
        self.failover.configure(config, now)
        self.challenger = DigestChallenger(
            config.sip.realm, key=self.key, algorithms=config.sip.digest_algorithms
        )
        security = config.security
        # Reconfigured in place: saving the configuration must not lift a ban.
        self.limiter.configure(
            requests=security.rate_limit_requests, window_s=security.rate_limit_window_s,
            ban_s=security.ban_s,
        )
        self.auth_guard.configure(
            per_source=security.auth_failures_per_source,
            per_extension=security.auth_failures_per_extension,
            window_s=security.auth_window_s, ban_s=security.ban_s,
        )
        self.scanners = tuple(s.lower() for s in security.scanner_user_agents)
        capacity = {f"number:{n.number}": n.channels for n in config.numbers}
        capacity.update({line.channel_key: line.channels for line in self.lines})
        self.channels.configure(capacity)
        for extension in list(self.registrar._bindings):
            if extension not in self.extensions:
                self.registrar.forget(extension)

    def receive(self, data: bytes, source: Address, now: float,
                waited_s: float | None = None, *, screened: bool = False) -> None:
        """One datagram or framed message; `waited_s`: how long it waited to be handled
        (from the kernel's timestamp; firmware/core/overload.py), when the transport knows;
        `screened`: `screen` has seen it already."""
        self.now = now
        host = source.host
        if self.auth_guard.source_banned(host, now) and not self.registrar.is_binding_source(
            source
        ):
            # A password guesser; phones registered from the same address (one office NAT)
            # keep their exact source and are still served.
            self.stats["dropped_banned"] += 1
            return
        trusted = (self.lines.by_address(source) is not None
                   or host in self.registrar.registered_hosts())
        if not trusted and not self.limiter.allow(host, now):
            self.stats["dropped_banned"] += 1
            return
        if waited_s is not None:
            self.overload.observe(waited_s, now)
        if not screened and self._shed(data, source, now) not in (None, SERVE, LATER):
            return
        try:
            message = parse_message(data, stream=source.reliable)
        except RemoteProtocolError as exc:
            self.stats["parse_errors"] += 1
            LOGGER.info("unparseable message from %s:%d: %s", host, source.port, exc)
            reply = error_response_bytes(data, exc.status_hint)
            if reply is not None:
                self.emit(DatagramToSend(data=reply, destination=source))
            return
        if isinstance(message, Request) and is_scanner(
            message.headers.get("User-Agent"), self.scanners
        ):
            self.stats["dropped_scanner"] += 1
            return
        if isinstance(message, Request) and self.edge.challenged_statelessly(message, source, now):
            return
        self.layer.receive(message, source, now)
        self._drain_events(now)

    def screen(self, data: bytes, source: Address, now: float,
               waited_s: float | None = None) -> str:
        """The overload control's first look, for a transport that reads datagrams ahead of
        handling them (firmware/transport/udp.py), so the excess is answered at once rather than
        after the queue. HANDLED: `data` was dealt with here (a stranger's new work answered
        503, the ACK of such a 503 dropped) and is not to be received; while the box is behind,
        FIRST for what is always served (calls in progress, the office's phones and lines),
        LATER for strangers' new work admitted — received after the FIRST ones; LATER for
        everything while it keeps up (one lane, in order). `waited_s`: how long the work ahead
        of it has waited (the queue's age: the overload control's signal). What a banned source
        sends is left to `receive`, which drops it without a word."""
        self.now = now
        if waited_s is not None:
            self.overload.observe(waited_s, now)
        host = source.host
        if self.auth_guard.source_banned(host, now) or self.limiter.is_banned(host, now):
            return LATER
        verdict = self._shed(data, source, now)
        if verdict is None or verdict == LATER:
            return LATER
        if verdict == SERVE:
            return FIRST
        # Shed or dropped here: counted as `receive` would count it, so a flooder is banned.
        if self.lines.by_address(source) is None and host not in self.registrar.registered_hosts():
            self.limiter.allow(host, now)
        return HANDLED

    def queue_full(self, now: float) -> None:
        """The transport's read-ahead queue is full (firmware/transport/udp.py): overloaded."""
        self.overload.queue_full(now)

    def _shed(self, data: bytes, source: Address, now: float) -> str | None:
        """None while the box keeps up; else the overload control's verdict (SERVE, LATER for
        a stranger's admitted new work), SHED and DROP performed here."""
        if not self.overload.overloaded:
            return None
        verdict = self.overload.screen(data, now, own=lambda: (
            self.lines.by_address(source) is not None
            or self.registrar.is_binding_source(source)))
        if verdict in (SERVE, LATER):
            return verdict
        # Behind: a stranger's new call or registration is turned away before it is parsed
        # (or the ACK of such a 503 dropped); calls in progress and the office's own phones
        # and lines are served first.
        if verdict == SHED:
            self.stats["shed_overload"] += 1
            reply = shed_response(data)
            if reply is not None:
                self.emit(DatagramToSend(data=reply, destination=source))
        return verdict

    def emit(self, event: Event) -> None:
        """Hand `event` to the daemon (the rooms' one way out)."""
        self._events.append(event)

    def next_event(self) -> Event | None:
        """The next thing for the daemon to do, or None when there is nothing."""
        if not self._events:
            for data, destination in self.layer.datagrams_to_send():
                self._events.append(DatagramToSend(data=data, destination=destination))
            if not self._events:
                return None
        return self._events.popleft()

    def receive_rtp(self, port: int, data: bytes, now: float,
                    source: tuple[str, int] | None = None) -> None:
        """A datagram on the RTP port of one of the box's own media sessions. The first host
        to send to a port owns it (as Asterisk's strictrtp, but by address only: a gateway
        may send its RFC 4733 events from another socket than its voice): datagrams from
        other hosts are dropped, unless the owner has been silent for RTP_RELATCH_S (the peer
        moved)."""
        self.now = now
        receiver = self.local_media.get(port)
        if receiver is None:
            return
        if source is not None:
            host = source[0]
            owner = self._rtp_owners.get(port)
            if owner is not None and owner[0] != host and now - owner[1] < RTP_RELATCH_S:
                self.stats["rtp_foreign"] += 1
                return
            self._rtp_owners[port] = (host, now)
        self._guarded(partial(receiver, data), now)

    def get_timer(self) -> float | None:
        candidates = [self._next_housekeeping]
        layer_timer = self.layer.get_timer()
        if layer_timer is not None:
            candidates.append(layer_timer)
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        if self._timers:
            candidates.append(self._timers[0].when)
        for registration in self.lines.registrations():
            when = registration.get_timer()
            if when is not None:
                candidates.append(when)
        failover_timer = self.failover.get_timer()
        if failover_timer is not None:
            candidates.append(failover_timer)
        return min(candidates)

    def handle_timer(self, now: float) -> None:
        self.now = now
        self.layer.handle_timer(now)
        self._drain_events(now)
        while self._timers and self._timers[0].when <= now:
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._guarded(timer.callback, now)
        self._drain_events(now)
        for registration in self.lines.registrations():
            if registration.due(now):
                self.edge.send_registration(registration, registration.build_register(now), now)
        self._guarded(self.failover.handle_timer, now)
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_INTERVAL_S
            for binding in self.registrar.expire(now):
                LOGGER.info("registration of %s at %s expired", binding.extension,
                            binding.contact_text)
            self.limiter.prune(now)
            self.auth_guard.prune(now)
            for change in self.lines.changes(now):
                self.emit(change)
        self._drain_events(now)

    def shutdown(self, now: float) -> None:
        """Hang up every call and unregister from the provider (Ctrl-C, SIGTERM)."""
        for call in list(self.calls.values()):
            call.hang_up(now, "shutdown")
        for registration in self.lines.registrations():
            request = registration.unregister(now)
            if request is not None:
                self.edge.send_registration(registration, request, now)

    def send_rtp(self, port: int, data: bytes, destination: tuple[str, int]) -> None:
        self.emit(RtpToSend(port=port, data=data, destination=destination))

    def close_media(self, port: int) -> None:
        self.local_media.pop(port, None)
        self._rtp_owners.pop(port, None)
        if port in self._media_open:
            self._media_open.discard(port)
            self.media_ports.close(port)

    def open_media_port(self) -> int | None:
        port = self.media_ports.open()
        if port is None:
            LOGGER.warning("no free RTP port for the box's own media")
            return None
        self._media_open.add(port)
        return port

    def route_media(self, port: int, receiver: Callable[[bytes, float], None]) -> None:
        self.local_media[port] = receiver

    def prompt(self, name: str) -> bytes:
        return prompts.prompt(self.config.site.language, name)

    def greeting(self, mailbox: str) -> bytes | None:
        try:
            return self.greetings(mailbox)
        except Exception:  # a broken upload must not lose the caller's message
            LOGGER.exception("greeting of mailbox %s unreadable; the built-in one plays",
                             mailbox)
            return None

    def voicemail_left(self, message: VoicemailMessage, now: float) -> None:
        self.emit(VoicemailLeft(message=message, wall_time=message.started_at + self.wall_offset_s))

    def send_request(
        self, request: Request, destination: Address, now: float, *,
        on_response: ResponseCallback, on_timeout: TimeoutHandler,
    ) -> str:
        tx_id = self.layer.send_request(request, destination, now)
        self._handlers[tx_id] = (on_response, on_timeout)
        return tx_id

    def send_response(self, transaction_id: str, response: Response, now: float) -> None:
        self.layer.send_response(transaction_id, response, now)

    def send_stateless(self, message: Request, destination: Address) -> None:
        self.layer.send_stateless(message, destination)

    def cancel_sent(self, transaction_id: str, now: float) -> None:
        self.layer.cancel_sent(transaction_id, now)

    def hold_offered(self, call: Call, side: str, request: Request, tx_id: str,
                     now: float) -> bool:
        return self.hold.hold_offered(call, side, request, tx_id, now)

    def session_changed(self, call: Call, now: float) -> None:
        self.hold.refresh(call, now)

    def call_at(self, when: float, callback: Callable[[float], None]) -> _AppTimer:
        timer = _AppTimer(when, next(self._timer_seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def party_connected(self, call: Call, side: str, party: CallerParty | Leg) -> None:
        """A party of `call` is talking: requests in its SIP dialog reach the call."""
        if isinstance(party, SipCaller | SipLeg) and party.dialog is not None:
            dialog: Dialog = party.dialog
            self.dialogs[dialog.id] = (call, side)
            self._dialog_keys.setdefault(call.id, []).append(dialog.id)
        if side == "b" and call.answered_by in self.extensions:
            self.agents.offer_answered(call.answered_by, self.now)
        if side == "b":
            self.recordings.member_connected(call, self.now)
        if side == "a":  # the caller is answered: the call is kept on disk from now (issue 16)
            self.emit(CallAnswered(call=call_row(call),
                                   legs=[leg_row(call.id, r) for r in call.leg_records]))

    def call_finished(self, call: Call, now: float) -> None:
        self.recordings.call_ended(call, now)
        self.endings.finished(call, now)

    # ------------------------------------------------------------------ the daemon's results
    def new_day(self) -> None:
        """Midnight in the site's time zone: daily agent figures and "today's" last agent
        start again."""
        self.agents.new_day()
        self.last_agent.clear()

    def set_storage_full(self, full: bool) -> None:
        """Whether the box's storage takes no more records (a full data partition): voicemail
        then tells callers it cannot take a message instead of recording one (issue 16)."""
        self.storage_full = full

    def set_conversion(self, rates: dict[str, float]) -> None:
        """Sales per target call by extension, from the call records (`rank: auto`)."""
        self.conversion = dict(rates)

    def set_crm_owners(self, owners: dict[str, str]) -> None:
        """The imported phone → responsible extension table (`sticky: crm_owner`)."""
        self.crm_owners = dict(owners)

    def webhook_answered(self, call_id: str, destination: str | None, now: float,
                         *, error: str = "") -> None:
        """A webhook's or the CRM's answer (`WebhookRequested`), or None with its error."""
        self.lookups.webhook_answered(call_id, destination, now, error=error)

    def menu_greeting_saved(self, call_id: str, ok: bool, now: float) -> None:
        """A greeting recorded by phone (`MenuGreetingRecorded`) is stored, or could not be."""
        self.menu_greetings.saved(call_id, ok, now)

    def restore_callbacks(self, requests: list[dict[str, Any]], now: float) -> int:
        """Callback requests saved before a restart, back in their queues; how many."""
        return self.callbacks.restore_callbacks(requests, now)

    def set_agent_status(
        self, extension: str, status: str, *, reason: str = "", source: str, now: float
    ) -> StatusChanged:
        if extension not in self.extensions:
            raise ValueError(f"no extension {extension}")
        self.now = now
        change = self.agents.set_status(extension, status, now, reason=reason, source=source)
        self.emit(change)
        if status == ON_LINE:
            self.distribution.serve_all_queues(now)
        return change

    def invite_authorization(
        self, target: Target, challenge: Response, request: Request
    ) -> tuple[str, str] | None:
        line = self.lines.named(target.trunk)
        trunk = line.trunk if line is not None else None
        if trunk is None or not trunk.username:
            return None
        header = "WWW-Authenticate" if challenge.status == 401 else "Proxy-Authenticate"
        chosen = choose_challenge(challenge.headers.get_all(header), trunk.digest_algorithms)
        if chosen is None:
            return None
        value = build_authorization(
            chosen, method="INVITE", uri=str(request.uri), username=trunk.username,
            password=trunk.password, cnonce=secrets.token_hex(8), nc=1,
        )
        return ("Authorization" if challenge.status == 401 else "Proxy-Authorization", value)

    def _drain_events(self, now: float) -> None:
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, RequestReceived):
                self._guarded(partial(self._on_request_event, event), now)
            elif isinstance(event, ResponseReceived):
                handlers = self._handlers.get(event.transaction_id)
                if handlers is not None:
                    self._guarded(
                        partial(handlers[0], event.transaction_id, event.response), now
                    )
            elif isinstance(event, TransactionTimedOut):
                handlers = self._handlers.pop(event.transaction_id, None)
                if handlers is not None:
                    self._guarded(partial(handlers[1], event.transaction_id), now)
            elif isinstance(event, AckTimedOut):
                call = self.calls.get(event.transaction_id)
                if call is not None:
                    self._guarded(partial(call.hang_up, cause="no ACK from caller"), now)
            elif isinstance(event, TransactionTerminated):
                self._handlers.pop(event.transaction_id, None)
        # Calls may have rung, answered or ended: the busy lamps watching them hear of it.
        self._guarded(self.presence.refresh, now)

    def _guarded(self, action: Callable[[float], None], now: float) -> None:
        """Run one event handler; a bug in it must not take the daemon down."""
        try:
            action(now)
        except Exception:
            self.stats["internal_errors"] += 1
            LOGGER.exception("internal error while handling an event")

    def _on_request_event(self, event: RequestReceived, now: float) -> None:
        request = event.request
        if event.transaction_id is None:
            self._on_ack(request, now)
            return
        tx_id = event.transaction_id
        try:
            self.edge.on_request(tx_id, request, event.source, now)
        except RemoteProtocolError as exc:
            LOGGER.info("%s from %s refused: %s", request.method, event.source.host, exc)
            headers = exc.headers if isinstance(exc, RejectWith) else None
            self.reply(tx_id, request, exc.status_hint, now, headers=headers)
        except Exception:
            # A bug must still leave the caller with an answer and the transaction with an end.
            self.stats["internal_errors"] += 1
            LOGGER.exception("internal error on %s from %s", request.method, event.source.host)
            call = self.calls.get(tx_id)
            try:
                if call is not None:
                    call.fail(500, "internal error", now, outcome="failed")
                else:
                    self.reply(tx_id, request, 500, now)
            except Exception:
                LOGGER.exception("could not answer after an internal error")

    def _on_ack(self, ack: Request, now: float) -> None:
        entry = self.dialogs.get((ack.call_id, ack.to.tag or "", ack.from_.tag))
        if entry is not None:
            call, side = entry
            ack_received(call, side, ack, self, now)

    def reply(
        self, tx_id: str, request: Request, status: int, now: float, *,
        headers: list[tuple[str, str]] | None = None, reason: str | None = None,
    ) -> None:
        response = make_response(
            request, status, reason, to_tag=self.stable_tag(request),
            headers=[*(headers or []), ("User-Agent", self.user_agent)],
        )
        self.layer.send_response(tx_id, response, now)

    def stable_tag(self, request: Request) -> str:
        # A To tag derived from the request, not random: a failed authentication for a known
        # and for an unknown extension then answer byte for byte alike (no enumeration).
        digest = hmac.new(self.key, request.call_id.encode("utf-8", "surrogateescape"),
                          hashlib.sha256)
        return digest.hexdigest()[:16]

    def new_sip_call(
        self, tx_id: str, request: Request, source: Address, info: CallInfo,
        channels: list[str], now: float,
    ) -> Call:
        """A call from one of the office's phones (the caller's INVITE `request`)."""
        caller = SipCaller(services=self, invite=request, invite_tx=tx_id, source=source)
        return self.new_call(caller, tx_id, request.call_id, info, channels, now)

    def new_call(
        self, caller: CallerParty, key: str, signalling_id: str, info: CallInfo,
        channels: list[str], now: float,
    ) -> Call:
        call = Call(
            services=self, caller=caller, key=key, signalling_id=signalling_id, info=info,
            started_at=now, channels=channels,
        )
        self.calls[key] = call
        self.stats["calls"] += 1
        if isinstance(caller, SipCaller):
            # Our 18x will make an early dialog with this To tag (RFC 3261 §12.1); the caller
            # may send DTMF (a callback key) or BYE in it while waiting.
            request = caller.invite
            early = (request.call_id, caller.to_tag, request.from_.tag)
            self.dialogs[early] = (call, "a")
            self._dialog_keys[call.id] = [early]
        return call

    # ------------------------------------------------------------------ modem lines
    def modem_fact(self, fact: ModemFact, now: float) -> None:
        """What a modem line's driver reports (hal/modem/driver.py): its status, a call coming
        in, the far end's progress, a key, an SMS."""
        self.now = now
        line = self.lines.modem(fact.line)
        if line is None:
            LOGGER.debug("a fact from line %s, which is not configured", fact.line)
            return
        self._guarded(partial(line.fact, fact), now)
        if isinstance(fact, ModemStatusChanged):
            self.failover.modem_line_changed(line.name, fact.status.state != "down",
                                             fact.status.reason, now)
        self._drain_events(now)

    def network_fact(self, apply: Callable[[FailoverMonitor], None], now: float) -> None:
        """A fact of the network (hal/netmon.py: a route, a link, an address), as a function
        that hands it to the failover monitor (`netmon.deliver`)."""
        self.now = now
        self.failover.network_fact(apply, now)
        self._drain_events(now)

    def line_audio(self, name: str, frame: bytes, now: float) -> None:
        """A 20 ms frame heard on modem line `name`."""
        line = self.lines.modem(name)
        if line is not None:
            line.frame_from_line(frame)

    def line_frame(self, name: str) -> bytes | None:
        """The next 20 ms to say on modem line `name` (None: no call is up on it)."""
        line = self.lines.modem(name)
        return line.frame_for_line() if line is not None else None

    def release_channel(self, key: str) -> None:
        self.channels.release([key])

    def status(self, now: float) -> dict[str, object]:
        """Everything `linebox status` and the web UI's monitor show (firmware/core/status.py)."""
        return gateway_status(self, now)
