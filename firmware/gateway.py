"""The gateway core: SIP in, decisions, SIP out — sans-IO, driven by the daemon's event loop.

`Gateway.receive(data, source, now)` takes one datagram or one framed TCP message; the daemon then
drains `datagrams_to_send()` and re-arms one timer at `get_timer()`, calling `handle_timer(now)`
when it fires (the aioquic shape). Inside, the transaction layer matches retransmissions, the
registrar keeps the phones' bindings, the rate limiter keeps scanners out, and each new INVITE
becomes a `Call` that the routing plan drives. Where a call came from (a phone, the provider, and
later a GSM or FXO line) only matters here, at the edge; routing sees numbers.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import logging
import re
import secrets
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from .agents import AgentBook, StatusChanged
from .anchor import CallMedia
from .callback import CallbackCall
from .callerid import caller_number, display_name
from .calls import ALLOW, Call, CallInfo, LegRecord, Target, TimeoutHandler, dtmf_key
from .media import prompts, sdp
from .media.ports import MediaPorts, PortRange
from .media.session import MediaSession
from .registrar import Registrar
from .routing import strategies
from .routing.model import (
    BREAK,
    DND,
    LOGGED_OUT,
    ON_LINE,
    OUTBOUND,
    CallFacts,
    DepartmentSnapshot,
    MemberState,
    RoutingMemory,
)
from .routing.plan import RingPlan, UnknownStrategyError
from .routing.rules import compile_rules, normalise_number, reply_status
from .routing.schedule import is_open
from .routing.scheme import (
    CallbackSettings,
    NoAnswerScheme,
    QueueSettings,
    mobiles_of,
    parse_no_answer,
    parse_queue,
    voicemail_box,
)
from .routing.tollguard import OutboundCallRefused, TollGuard
from .security import AuthGuard, RateLimiter, is_scanner
from .sip.auth import DigestChallenger, build_authorization, choose_challenge, parse_auth_header
from .sip.dialog import Dialog
from .sip.errors import RemoteProtocolError
from .sip.message import (
    KNOWN_METHODS,
    Headers,
    Request,
    Response,
    error_response_bytes,
    make_response,
    parse_message,
)
from .sip.transaction import (
    AckTimedOut,
    Address,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
)
from .sip.uri import OtherUri, SipUri
from .store.config import Config, Department, Trunk
from .trunk import TrunkAccount, TrunkRegistration
from .voicemail import (
    ApologyScript,
    LocalParty,
    PromptCall,
    QueueScript,
    Script,
    VoicemailMessage,
    VoicemailScript,
    VoicemailSettings,
)

LOGGER = logging.getLogger(__name__)

DIRECT_RING_TIMEOUT_S = 60.0
RESERVE_RING_S = 60.0
WEBHOOK_GRACE_S = 0.25  # beyond the webhook's own timeout, for the daemon to report it
EXTERNAL_RING_TIMEOUT_S = 180.0
HOUSEKEEPING_INTERVAL_S = 1.0
RTP_RELATCH_S = 2.0
# Dialled from a phone to change its own status (documented in docs/agents.md).
FEATURE_CODES = {"*50": BREAK, "*51": ON_LINE, "*52": DND, "*53": OUTBOUND, "*54": LOGGED_OUT}
ALLOW_OUTSIDE_DIALOG = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER"
SUPPORTED_OPTIONS: frozenset[str] = frozenset()  # no SIP extensions are required of peers yet
ACCEPTED_BODY_TYPES = ("application/sdp",)
# What a phone may dial: digits, `+` in front, and the keypad's * and # (feature codes).
DIALLABLE_RE = re.compile(r"\+?[0-9*#]{1,32}")

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


@dataclass(slots=True, kw_only=True)
class DepartmentCall:
    """A call's routing state while a department (or its no-answer scheme) handles it."""

    department: str
    exclude: frozenset[str]
    facts: CallFacts
    entered_at: float
    step: int = -1  # index into the no-answer steps; -1 while still with the department


def _context(call: Call) -> DepartmentCall:
    ctx = call.context
    assert isinstance(ctx, DepartmentCall), "a department call without its routing state"
    return ctx


@dataclass(frozen=True, slots=True, kw_only=True)
class DepartmentSettings:
    """A department's routing settings, parsed once per configuration."""

    queue: QueueSettings | None
    no_answer: NoAnswerScheme
    step_delay_s: float = 5.0
    tier_time_s: float = 15.0
    tier_mode: str = "add"
    rank_mode: str = "manual"
    sticky: str = "none"
    sticky_ring_s: float = 10.0
    wrap_up_s: float = 0.0
    auto_break_after: int = 0

    @classmethod
    def of(cls, department: Department, *, is_destination: Callable[[str], bool],
           mailboxes: Collection[str] = ()) -> DepartmentSettings:
        extra = department.extra
        path = f"department {department.number}"
        queue = parse_queue(extra["queue"], f"{path}.queue") if "queue" in extra else None
        no_answer = (
            parse_no_answer(extra["no_answer"], f"{path}.no_answer", is_destination=is_destination,
                            mailbox=department.number, mailboxes=mailboxes)
            if "no_answer" in extra else NoAnswerScheme()
        )
        return cls(
            queue=queue, no_answer=no_answer,
            step_delay_s=float(extra.get("step_delay_s", 5)),
            tier_time_s=float(extra.get("tier_time_s", 15)),
            tier_mode=str(extra.get("tier_mode", "add")),
            rank_mode="auto" if extra.get("rank") == "auto" else "manual",
            sticky=str(extra.get("sticky", "none")),
            sticky_ring_s=float(extra.get("sticky_ring_s", 10)),
            wrap_up_s=float(extra.get("wrap_up_s", 0)),
            auto_break_after=int(extra.get("auto_break_after", 0)),
        )


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_dialable(text: str) -> bool:
    digits = text[1:] if text.startswith("+") else text
    return digits.isdigit() and 3 <= len(digits) <= 15


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookRequested:
    """Ask `url` about call `call_id`: the daemon POSTs `payload` as JSON and hands the answer's
    `answer_key` to `Gateway.webhook_answered` — where the call goes ("destination"), or who
    the caller's responsible manager is ("extension", a CRM lookup)."""

    call_id: str
    url: str
    payload: dict[str, object]
    timeout_s: float
    answer_key: str = "destination"


class CallRecorder:
    """Where finished calls go; the daemon's implementation writes them to SQLite in batches."""

    def record(self, call: dict[str, object], legs: list[dict[str, object]]) -> None:
        raise NotImplementedError

    def callback_state(self, call_id: str, state: str) -> None:
        """How the callback promised on an already recorded call went (done, expired,
        failed)."""
        raise NotImplementedError

    def voicemail(self, message: VoicemailMessage, wall_time: float) -> None:
        """Keep a message left in a mailbox (`wall_time`: when it was left, Unix seconds)."""
        raise NotImplementedError

    def callback_pending(self, request: dict[str, object]) -> None:
        """Keep a callback request still to be served (until its state becomes final)."""
        raise NotImplementedError

    def security_event(self, event: OutboundCallRefused) -> None:
        """Keep a security event for the web UI (`event.at` is on the gateway's clock)."""
        raise NotImplementedError


class MemoryRecorder(CallRecorder):
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, object], list[dict[str, object]]]] = []
        self.callback_states: dict[str, str] = {}
        self.voicemails: list[VoicemailMessage] = []
        self.pending_callbacks: dict[str, dict[str, object]] = {}
        self.security_events: list[OutboundCallRefused] = []

    def record(self, call: dict[str, object], legs: list[dict[str, object]]) -> None:
        self.calls.append((call, legs))

    def callback_state(self, call_id: str, state: str) -> None:
        self.callback_states[call_id] = state
        self.pending_callbacks.pop(call_id, None)

    def callback_pending(self, request: dict[str, object]) -> None:
        self.pending_callbacks[str(request["origin_call_id"])] = request

    def voicemail(self, message: VoicemailMessage, wall_time: float) -> None:
        self.voicemails.append(message)

    def security_event(self, event: OutboundCallRefused) -> None:
        self.security_events.append(event)


class ChannelPool:
    """Simultaneous-call limits per inbound number and per trunk (3..100 each)."""

    def __init__(self) -> None:
        self.capacity: dict[str, int] = {}
        self.in_use: dict[str, int] = {}

    def configure(self, capacity: dict[str, int]) -> None:
        self.capacity = dict(capacity)
        for key in capacity:
            self.in_use.setdefault(key, 0)

    def acquire(self, keys: list[str]) -> bool:
        """Take one channel of each key, all or none."""
        if any(self.in_use.get(k, 0) >= self.capacity.get(k, 0) for k in keys):
            return False
        for key in keys:
            self.in_use[key] = self.in_use.get(key, 0) + 1
        return True

    def release(self, keys: list[str]) -> None:
        for key in keys:
            self.in_use[key] = max(0, self.in_use.get(key, 0) - 1)


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        local: Address,
        trunk_addresses: dict[str, Address],
        recorder: CallRecorder,
        key: bytes | None = None,
        now: float,
        wall_offset_s: float = 0.0,
        media_ports: MediaPorts | None = None,
        greetings: Callable[[str], bytes | None] | None = None,
    ) -> None:
        self.local = local
        self.local_host = local.host
        self.local_port = local.port
        self.recorder = recorder
        self.key = key or secrets.token_bytes(32)
        self.layer = TransactionLayer()
        self.registrar = Registrar()
        self.channels = ChannelPool()
        self.toll_guard = TollGuard()  # not remade by apply_config: the hour's count stays
        self.calls: dict[str, Call] = {}  # by the caller's INVITE server transaction
        self.dialogs: dict[tuple[str, str, str | None], tuple[Call, str]] = {}
        self.trunk_registrations: dict[str, TrunkRegistration] = {}
        # `now` is the monotonic clock; schedules and rules are wall-clock matters.
        self.wall_offset_s = wall_offset_s
        self.agents = AgentBook(started_at=now)
        self.queues: dict[str, list[Call]] = {}  # department → waiting calls, in turn order
        self.routing_memory: dict[str, RoutingMemory] = {}
        self.last_agent: dict[str, str] = {}  # caller → who answered them last (today)
        self.crm_owners: dict[str, str] = {}  # normalised phone → responsible extension
        self.conversion: dict[str, float] = {}  # extension → sales / target calls (rank: auto)
        self._department_settings: dict[str, DepartmentSettings] = {}
        self.webhook_requests: list[WebhookRequested] = []  # drained by the daemon
        self._awaiting_webhook: dict[str, tuple[Call, str, bool]] = {}
        self._awaiting_crm: dict[str, Call] = {}
        self.status_changes: list[StatusChanged] = []  # drained by the daemon to persist
        self.stats: dict[str, int] = {
            "calls": 0, "answered": 0, "rejected_busy": 0, "parse_errors": 0,
            "dropped_scanner": 0, "dropped_banned": 0, "internal_errors": 0,
            "rtp_foreign": 0,
        }
        self._out: list[tuple[bytes, Address]] = []
        # The box's own media (voicemail, prompts): sessions by local RTP port.
        self.media_ports: MediaPorts = media_ports or PortRange()
        self.greetings = greetings or _no_greeting
        # Who takes the datagrams arriving on each of the box's RTP ports in use.
        self.local_media: dict[int, Callable[[bytes, float], None]] = {}
        self._media_open: set[int] = set()
        self._rtp_owners: dict[int, tuple[str, float]] = {}  # port → owner host, last heard
        self._rtp_out: list[tuple[int, bytes, tuple[str, int]]] = []
        self._handlers: dict[str, tuple[ResponseCallback, TimeoutHandler]] = {}
        self._timers: list[_AppTimer] = []
        self._timer_seq = itertools.count()
        self._next_housekeeping = now
        self._dialog_keys: dict[str, list[tuple[str, str, str | None]]] = {}
        self.now = now
        self.limiter = RateLimiter()
        self.auth_guard = AuthGuard.of(config.security)
        self.apply_config(config, trunk_addresses, now)

    # ------------------------------------------------------------------ configuration
    def apply_config(self, config: Config, trunk_addresses: dict[str, Address], now: float) -> None:
        self.config = config
        self.user_agent = config.sip.user_agent
        self.extensions = {e.number: e for e in config.extensions}
        self.departments = {d.number: d for d in config.departments}
        self._department_settings = {}
        self.schedules = {schedule.name: schedule for schedule in config.schedules}
        self.rules = compile_rules(config.rules)
        self.timezone = config.site.timezone
        self.numbers = {n.number: n for n in config.numbers}
        self.trunks = {t.name: t for t in config.trunks}
        self.trunk_addresses = dict(trunk_addresses)
        # Over UDP a provider is known by the address *and* port it sends from, as providers
        # document their signalling addresses (a port of its own on the same host is someone
        # else), or by address alone where the trunk says so (`inbound_match: address`). Over
        # TCP by address alone: the provider connects from any port, and a TCP peer's address
        # cannot be spoofed.
        self.trunk_by_source = {
            _source_key(addr, any_port=self.trunks[name].inbound_match == "address"): name
            for name, addr in trunk_addresses.items() if name in self.trunks
        }
        self.trunk_by_host = {addr.host: name for name, addr in trunk_addresses.items()}
        self.trunk_by_line = {
            self._line_token(t.name): t.name
            for t in config.trunks if t.register and t.name in trunk_addresses
        }
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
        capacity.update({f"trunk:{t.name}": t.channels for t in config.trunks})
        self.channels.configure(capacity)
        for extension in list(self.registrar._bindings):
            if extension not in self.extensions:
                self.registrar.forget(extension)
        wanted = {t.name for t in config.trunks if t.register and t.name in trunk_addresses}
        for name in list(self.trunk_registrations):
            if name not in wanted:
                del self.trunk_registrations[name]
        for name in wanted:
            trunk = self.trunks[name]
            account = TrunkAccount(
                name=name, host=trunk.host, username=trunk.username, password=trunk.password,
                expires_s=trunk.expires_s, from_domain=trunk.from_domain,
                digest_algorithms=trunk.digest_algorithms, line_token=self._line_token(name),
            )
            existing = self.trunk_registrations.get(name)
            if existing is not None and existing.account == account:
                continue
            self.trunk_registrations[name] = TrunkRegistration(
                account, destination=trunk_addresses[name], local_host=self.local_host,
                local_port=self.local_port, user_agent=self.user_agent,
            )

    # ------------------------------------------------------------------ I/O surface
    def receive(self, data: bytes, source: Address, now: float) -> None:
        self.now = now
        host = source.host
        if self.auth_guard.source_banned(host, now) and not self.registrar.is_binding_source(
            source
        ):
            # A password guesser; phones registered from the same address (one office NAT)
            # keep their exact source and are still served.
            self.stats["dropped_banned"] += 1
            return
        trusted = (self._trunk_by_address(source) is not None
                   or host in self.registrar.registered_hosts())
        if not trusted and not self.limiter.allow(host, now):
            self.stats["dropped_banned"] += 1
            return
        try:
            message = parse_message(data, stream=source.reliable)
        except RemoteProtocolError as exc:
            self.stats["parse_errors"] += 1
            LOGGER.info("unparseable message from %s:%d: %s", host, source.port, exc)
            reply = error_response_bytes(data, exc.status_hint)
            if reply is not None:
                self._out.append((reply, source))
            return
        if isinstance(message, Request) and is_scanner(
            message.headers.get("User-Agent"), self.scanners
        ):
            self.stats["dropped_scanner"] += 1
            return
        if isinstance(message, Request) and self._challenged_statelessly(message, source, now):
            return
        self.layer.receive(message, source, now)
        self._drain_events(now)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out = self._out + self.layer.datagrams_to_send()
        self._out = []
        return out

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

    def rtp_to_send(self) -> list[tuple[int, bytes, tuple[str, int]]]:
        """(local port, datagram, destination) for the box's own media sessions."""
        out, self._rtp_out = self._rtp_out, []
        return out

    def get_timer(self) -> float | None:
        candidates = [self._next_housekeeping]
        layer_timer = self.layer.get_timer()
        if layer_timer is not None:
            candidates.append(layer_timer)
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        if self._timers:
            candidates.append(self._timers[0].when)
        for registration in self.trunk_registrations.values():
            when = registration.get_timer()
            if when is not None:
                candidates.append(when)
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
        for registration in self.trunk_registrations.values():
            if registration.due(now):
                self._send_registration(registration, registration.build_register(now), now)
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_INTERVAL_S
            for binding in self.registrar.expire(now):
                LOGGER.info("registration of %s at %s expired", binding.extension,
                            binding.contact_text)
            self.limiter.prune(now)
            self.auth_guard.prune(now)
        self._drain_events(now)

    def shutdown(self, now: float) -> None:
        """Hang up every call and unregister from the provider (Ctrl-C, SIGTERM)."""
        for call in list(self.calls.values()):
            call.hang_up(now, "shutdown")
        for registration in self.trunk_registrations.values():
            request = registration.unregister(now)
            if request is not None:
                self._send_registration(registration, request, now)

    # ------------------------------------------------------------------ MediaServices
    def send_rtp(self, port: int, data: bytes, destination: tuple[str, int]) -> None:
        self._rtp_out.append((port, data, destination))

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
        self.recorder.voicemail(message, message.started_at + self.wall_offset_s)

    # ------------------------------------------------------------------ Services for calls
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

    def call_at(self, when: float, callback: Callable[[float], None]) -> _AppTimer:
        timer = _AppTimer(when, next(self._timer_seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def dialog_opened(self, dialog: Dialog, call: Call, side: str) -> None:
        self.dialogs[dialog.id] = (call, side)
        self._dialog_keys.setdefault(call.id, []).append(dialog.id)
        if side == "b" and call.answered_by in self.extensions:
            self.agents.offer_answered(call.answered_by, self.now)

    def call_finished(self, call: Call, now: float) -> None:
        self.channels.release(call.channels)
        call.channels = []
        # Legs that already had their final response need nothing from the call any more; a
        # leg still waiting (a CANCEL may cross a 200) keeps its handler, so a late answer is
        # still ACKed and hung up.
        for tx_id, leg in call.legs.items():
            if leg.record.sip_status is not None:
                self._handlers.pop(tx_id, None)
        self.calls.pop(call.invite_tx, None)
        for key in self._dialog_keys.pop(call.id, []):
            self.dialogs.pop(key, None)
        if call.outcome == "answered":
            self.stats["answered"] += 1
        self._remove_from_queue(call)
        self._awaiting_webhook.pop(call.id, None)
        self._awaiting_crm.pop(call.id, None)
        spoke = call.answered_at is not None and call.info.direction in ("inbound", "callback")
        if spoke and call.answered_by in self.extensions:
            self.last_agent[call.info.caller] = call.answered_by
        self._update_agents(call, now)
        # Someone may be free now (or when their wrap-up ends): offer the waiting callers.
        if any(self.queues.values()):
            self._serve_all_queues(now)
            wrap_up_end = self.agents.next_wrap_up_end(now)
            if wrap_up_end is not None:
                self.call_at(wrap_up_end, self._serve_all_queues)
        if isinstance(call, CallbackCall):
            if call.outcome == "answered":
                self.recorder.callback_state(call.origin_call_id, "done")
            if not call.leg_records:
                return  # a request that waited and was never tried is not a call
        self.recorder.record(_call_row(call), [_leg_row(call.id, r) for r in call.leg_records])

    def _update_agents(self, call: Call, now: float) -> None:
        talk_s = now - call.answered_at if call.answered_at is not None else 0.0
        department = self.departments.get(call.info.department or "")
        settings = self._settings(department) if department is not None else None
        if call.answered_by in self.extensions:
            wrap_up_s = settings.wrap_up_s if settings is not None else 0.0
            self.agents.call_ended(call.answered_by, now, talk_s=talk_s, wrap_up_s=wrap_up_s)
        if call.info.direction in ("internal", "outbound") and call.info.caller in self.extensions:
            self.agents.call_ended(call.info.caller, now, talk_s=talk_s)
        if settings is None or settings.auto_break_after <= 0:
            return
        for record in call.leg_records:
            # Only an offer that rang out counts against the agent (Asterisk autopause): a leg
            # cancelled because a colleague answered, or the caller hung up, does not.
            if record.result == "no_answer" and record.target in self.extensions:
                change = self.agents.offer_unanswered(
                    record.target, now, auto_break_after=settings.auto_break_after
                )
                if change is not None:
                    self.status_changes.append(change)

    def set_agent_status(
        self, extension: str, status: str, *, reason: str = "", source: str
    ) -> StatusChanged:
        if extension not in self.extensions:
            raise ValueError(f"no extension {extension}")
        change = self.agents.set_status(extension, status, self.now, reason=reason,
                                        source=source)
        self.status_changes.append(change)
        if status == ON_LINE:
            self._serve_all_queues(self.now)
        return change

    def invite_authorization(
        self, target: Target, challenge: Response, request: Request
    ) -> tuple[str, str] | None:
        trunk = self.trunks.get(target.trunk or "")
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

    # ------------------------------------------------------------------ events
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
            self._on_request(tx_id, request, event.source, now)
        except RemoteProtocolError as exc:
            LOGGER.info("%s from %s refused: %s", request.method, event.source.host, exc)
            headers = exc.headers if isinstance(exc, _RejectWith) else None
            self._reply(tx_id, request, exc.status_hint, now, headers=headers)
        except Exception:
            # A bug must still leave the caller with an answer and the transaction with an end.
            self.stats["internal_errors"] += 1
            LOGGER.exception("internal error on %s from %s", request.method, event.source.host)
            call = self.calls.get(tx_id)
            try:
                if call is not None:
                    call.fail(500, "internal error", now, outcome="failed")
                else:
                    self._reply(tx_id, request, 500, now)
            except Exception:
                LOGGER.exception("could not answer after an internal error")

    def _on_ack(self, ack: Request, now: float) -> None:
        entry = self.dialogs.get((ack.call_id, ack.to.tag or "", ack.from_.tag))
        if entry is not None:
            call, side = entry
            call.ack_received(side, ack, now)

    def _reply(
        self, tx_id: str, request: Request, status: int, now: float, *,
        headers: list[tuple[str, str]] | None = None, reason: str | None = None,
    ) -> None:
        response = make_response(
            request, status, reason, to_tag=self._stable_tag(request),
            headers=[*(headers or []), ("User-Agent", self.user_agent)],
        )
        self.layer.send_response(tx_id, response, now)

    def _stable_tag(self, request: Request) -> str:
        # A To tag derived from the request, not random: a failed authentication for a known
        # and for an unknown extension then answer byte for byte alike (no enumeration).
        digest = hmac.new(self.key, request.call_id.encode("utf-8", "surrogateescape"),
                          hashlib.sha256)
        return digest.hexdigest()[:16]

    def _on_request(self, tx_id: str, request: Request, source: Address, now: float) -> None:
        method = request.method
        if method == "CANCEL":
            invite_tx = self.layer.find_invite_server_transaction(request)
            call = self.calls.get(invite_tx) if invite_tx is not None else None
            if call is None:
                self._reply(tx_id, request, 481, now)
                return
            self._reply(tx_id, request, 200, now)
            call.caller_cancelled(now)
            return
        if request.to.tag is not None:
            self._on_in_dialog(tx_id, request, now)
            return
        if method not in KNOWN_METHODS:
            self._reply(tx_id, request, 501, now, headers=[("Allow", ALLOW_OUTSIDE_DIALOG)])
            return
        self._check_request(request, method)
        if method == "REGISTER":
            self._on_register(tx_id, request, source, now)
        elif method == "INVITE":
            self._on_invite(tx_id, request, source, now)
        elif method == "OPTIONS":
            self._reply(tx_id, request, 200, now, headers=[
                ("Allow", ALLOW), ("Accept", "application/sdp"), ("Accept-Language", "en"),
            ])
        elif method == "BYE":
            self._reply(tx_id, request, 481, now)
        else:
            # §21.4.6: Allow lists what this address accepts outside a call.
            self._reply(tx_id, request, 405, now, headers=[("Allow", ALLOW_OUTSIDE_DIALOG)])

    def _check_request(self, request: Request, method: str) -> None:
        """RFC 3261 §8.2.2–8.2.4 checks that do not depend on who is asking."""
        uri = request.uri
        if isinstance(uri, OtherUri) and uri.scheme.lower() != "tel":
            raise RemoteProtocolError("unsupported URI scheme", status_hint=416)
        unsupported = [
            opt for opt in request.headers.get_list("Require")
            if opt and opt.lower() not in SUPPORTED_OPTIONS
        ]
        if unsupported and method not in ("CANCEL", "ACK"):
            raise _RejectWith(420, [("Unsupported", ", ".join(unsupported))])
        if method == "INVITE":
            _ = request.contacts  # a malformed Contact is a 400 before anything rings
            content_type = request.content_type
            if request.body and content_type not in ACCEPTED_BODY_TYPES:
                raise _RejectWith(415, [("Accept", "application/sdp")])
            accept = [a.split(";")[0].strip().lower() for a in request.headers.get_list("Accept")]
            if accept and not {"application/sdp", "application/*", "*/*"} & set(accept):
                raise _RejectWith(406, [("Accept", "application/sdp")])
            max_forwards = request.headers.get("Max-Forwards")
            if max_forwards is not None and int(max_forwards.strip()) == 0:
                raise RemoteProtocolError("too many hops", status_hint=483)

    def _on_in_dialog(self, tx_id: str, request: Request, now: float) -> None:
        entry = self.dialogs.get((request.call_id, request.to.tag or "", request.from_.tag))
        if entry is None:
            self._reply(tx_id, request, 481, now)
            return
        call, side = entry
        if side == "a" and call.inbound_dialog is None:
            self._on_early_request(call, tx_id, request, now)
            return
        dialog = call.inbound_dialog if side == "a" else (
            call.winner.dialog if call.winner else None
        )
        if dialog is not None:
            dialog.receive_request(request)
        call.in_dialog_request(side, request, tx_id, now)

    def _on_early_request(self, call: Call, tx_id: str, request: Request, now: float) -> None:
        """A request from a caller whose call is not answered yet, in the early dialog our
        180 made while they wait (RFC 3261 §12.1): DTMF as SIP INFO (RFC 6086 with the
        de-facto application/dtmf-relay and application/dtmf bodies), or a BYE (§15)."""
        if request.method == "BYE":
            self._reply(tx_id, request, 200, now)
            call.caller_cancelled(now)
            return
        if request.method != "INFO":
            self._reply(tx_id, request, 481, now)
            return
        self._reply(tx_id, request, 200, now)
        key = dtmf_key(request)
        if key is not None:
            LOGGER.info("call %s: caller pressed %s while waiting", call.id, key)
            self._key_while_waiting(call, key, now)

    def _key_while_waiting(self, call: Call, key: str, now: float) -> None:
        ctx = call.context
        if not isinstance(ctx, DepartmentCall) or ctx.step >= 0:
            return
        if call.state not in ("queued", "ringing") or isinstance(call, CallbackCall):
            return
        queue = self._settings(self.departments[ctx.department]).queue
        if queue is not None and queue.callback is not None and key == queue.callback.key:
            self.request_callback(call, now)

    # ------------------------------------------------------------------ authentication
    def _password_of(self, username: str) -> str | None:
        extension = self.extensions.get(username)
        return extension.password if extension else None

    def _algorithms_of(self, username: str) -> tuple[str, ...] | None:
        extension = self.extensions.get(username)
        return extension.digest_algorithms if extension else None

    def _without_qop(self, username: str) -> bool:
        extension = self.extensions.get(username)
        return extension.digest_without_qop if extension else False

    def _challenge_headers(
        self, request: Request, source: Address, now: float, *, status: int, stale: bool = False
    ) -> list[tuple[str, str]]:
        """The digest challenge for `request`: the algorithms of the extension it claims to
        be (From for INVITE, To for REGISTER), a nonce bound to the source address."""
        claimed = (request.to if request.method == "REGISTER" else request.from_).uri
        algorithms = self._algorithms_of(claimed.user_unescaped or "")
        name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        return [(name, value) for value in self.challenger.challenge(
            now, stale=stale, source=source.host, algorithms=algorithms
        )]

    def _challenged_statelessly(self, request: Request, source: Address, now: float) -> bool:
        """An INVITE from a phone without credentials gets its 407 without a transaction: no
        100 Trying and no retransmissions (RFC 3261 §17.2.1 Timer G) toward an address nothing
        has verified yet, so a spoofed INVITE reflects one response, not twelve. The phone's
        retransmission of the INVITE simply gets another 407."""
        if (request.method != "INVITE" or request.to.tag is not None
                or "Proxy-Authorization" in request.headers
                or self._trunk_of(request, source) is not None
                or self.layer.has_server_transaction(request)):
            return False
        try:
            self._check_request(request, "INVITE")
        except RemoteProtocolError:
            return False  # the transaction path answers with the right code
        response = make_response(
            request, 407, to_tag=self._stable_tag(request),
            headers=[*self._challenge_headers(request, source, now, status=407),
                     ("User-Agent", self.user_agent)],
        )
        self._out.append((response.to_bytes(), source))
        return True

    def _authenticate(
        self, tx_id: str, request: Request, source: Address, now: float, *, header: str,
        status: int,
    ) -> str | None:
        """Digest-check `request`; on failure the response is sent and None returned.

        A wrong answer counts against the source address and the extension it names
        (`AuthGuard`); an extension locked for guessing answers only its registered phones.
        """
        credentials = request.headers.get(header)
        stale = False
        if credentials is not None:
            result = self.challenger.verify(
                request.method, credentials, self._password_of, now,
                request_uri=str(request.uri), source=source.host,
                algorithms=self._algorithms_of, without_qop=self._without_qop,
            )
            claimed = _credentials_user(credentials)
            locked = (claimed is not None and self.auth_guard.extension_locked(claimed, now)
                      and not self.registrar.is_binding_source(source, claimed))
            if result.ok and result.username is not None and not locked:
                return result.username
            stale = result.stale and not locked
            # RFC 4475 §3.3.5 regaut01: another scheme than Digest earns a fresh challenge.
            if not stale and credentials[:6].lower() == "digest":
                LOGGER.warning(
                    "failed %s authentication as %r from %s:%d (%s)", request.method,
                    claimed, source.host, source.port,
                    "extension locked after guessing" if locked else result.reason,
                )
                if not locked:
                    self.auth_guard.failed(source.host, claimed, now)
                self._reply(tx_id, request, 403, now)
                return None
        self._reply(tx_id, request, status, now,
                    headers=self._challenge_headers(request, source, now, status=status,
                                                    stale=stale))
        return None

    # ------------------------------------------------------------------ REGISTER
    def _on_register(self, tx_id: str, request: Request, source: Address, now: float) -> None:
        self.registrar.check_aor(request)
        _ = request.contacts  # malformed contacts are a 400 before any challenge
        username = self._authenticate(tx_id, request, source, now, header="Authorization",
                                      status=401)
        if username is None:
            return
        aor_user = request.to.uri.user_unescaped
        if aor_user != username:
            self._reply(tx_id, request, 403, now, reason="Forbidden (credentials of another AOR)")
            return
        response = self.registrar.register(
            request, username, source, now, to_tag=self._stable_tag(request)
        )
        response.headers.add("User-Agent", self.user_agent)
        self.layer.send_response(tx_id, response, now)
        if response.status == 200:
            self._serve_all_queues(now)

    # ------------------------------------------------------------------ INVITE
    def _on_invite(self, tx_id: str, request: Request, source: Address, now: float) -> None:
        trunk_name = self._trunk_of(request, source)
        if trunk_name is not None:
            self._on_trunk_invite(tx_id, request, source, trunk_name, now)
            return
        caller = self._authenticate(
            tx_id, request, source, now, header="Proxy-Authorization", status=407
        )
        if caller is None:
            return
        dialed = _dialed_number(request)
        if not DIALLABLE_RE.fullmatch(dialed):
            # Whatever else the user part holds (escaped line breaks, letters) is no number to
            # ring or to hand to the provider.
            self._reply(tx_id, request, 404, now)
            return
        if dialed in FEATURE_CODES:
            status = FEATURE_CODES[dialed]
            self.set_agent_status(caller, status, reason="", source="phone")
            # No media yet to play a confirmation: the reason phrase, which phones display,
            # says what was done, and the call ends there.
            self._reply(tx_id, request, 480, now, reason=f"Status set: {status}")
            return
        if dialed in self.extensions or dialed in self.departments:
            info = CallInfo(direction="internal", source="sip", caller=caller, dialed=dialed,
                            department=dialed if dialed in self.departments else None,
                            display=display_name(request.from_.display))
            call = self._new_call(tx_id, request, source, info, [], now)
            self.agents.call_started(caller)
            self._route_internal(call, dialed, exclude=frozenset({caller}), now=now)
            return
        refusal = self.toll_guard.admit(self.config, caller, dialed, now)  # toll fraud
        if refusal is not None:
            self._reply(tx_id, request, refusal.status, now, reason=refusal.reason)
            if refusal.event is not None:
                self.recorder.security_event(refusal.event)
            return
        trunk = self._outbound_trunk()
        if trunk is None:
            self._reply(tx_id, request, 404, now)
            return
        channels = [f"trunk:{trunk.name}"]
        if not self.channels.acquire(channels):
            self.stats["rejected_busy"] += 1
            self._reply(tx_id, request, 486, now, reason="Busy Here (all trunk channels in use)")
            return
        info = CallInfo(direction="outbound", source="sip", caller=caller, dialed=dialed,
                        display=display_name(request.from_.display))
        call = self._new_call(tx_id, request, source, info, channels, now)
        self.agents.call_started(caller)
        call.ring_targets(
            [self._external_target(trunk, dialed)], EXTERNAL_RING_TIMEOUT_S, now
        )

    def _on_trunk_invite(
        self, tx_id: str, request: Request, source: Address, trunk_name: str, now: float
    ) -> None:
        dialed = _dialed_number(request)
        number = self.numbers.get(dialed) or self.numbers.get(dialed.lstrip("+"))
        if number is None:
            self._reply(tx_id, request, 404, now)
            return
        channels = [f"number:{number.number}", f"trunk:{trunk_name}"]
        if not self.channels.acquire(channels):
            # Over capacity: busy at once, before anything rings (the product promise).
            self.stats["rejected_busy"] += 1
            self._reply(tx_id, request, 486, now)
            self.recorder.record(
                {"id": secrets.token_hex(16), "started_at": now, "ended_at": now,
                 "direction": "inbound", "source": f"trunk:{trunk_name}",
                 "caller": caller_number(request.from_.uri.user_unescaped), "dialed": dialed,
                 "number": number.number, "end_cause": "over capacity",
                 "outcome": "over_capacity", "sip_call_id": request.call_id},
                [],
            )
            return
        # The edge: from here on the caller is digits and "+" (or "anonymous"), the name plain
        # text; nothing the provider — or whoever spoofed it — wrote reaches a phone verbatim.
        caller = caller_number(request.from_.uri.user_unescaped)
        destination = number.destination
        wall_now = now + self.wall_offset_s
        rule = self.rules.match(caller, wall_now, self.timezone)
        vip = False
        if rule is not None and rule.action == "blacklist":
            self.channels.release(channels)
            self._reply(tx_id, request, reply_status(rule), now)
            self.recorder.record(
                {"id": secrets.token_hex(16), "started_at": now, "ended_at": now,
                 "direction": "inbound", "source": f"trunk:{trunk_name}", "caller": caller,
                 "dialed": dialed, "number": number.number, "end_cause": f"blacklist {rule.match}",
                 "outcome": "blacklisted", "sip_call_id": request.call_id},
                [],
            )
            return
        if rule is not None and rule.to is not None:
            destination = rule.to  # vip straight to an employee, or a route rule
        vip = rule is not None and rule.action == "vip"
        schedule = self.schedules.get(number.schedule or "")
        closed = schedule is not None and not is_open(schedule, wall_now)
        if closed and schedule is not None:
            if schedule.after_hours is None:
                self.channels.release(channels)
                self._reply(tx_id, request, 480, now, reason="Closed")
                self.recorder.record(
                    {"id": secrets.token_hex(16), "started_at": now, "ended_at": now,
                     "direction": "inbound", "source": f"trunk:{trunk_name}", "caller": caller,
                     "dialed": dialed, "number": number.number, "end_cause": "after hours",
                     "outcome": "closed", "sip_call_id": request.call_id},
                    [],
                )
                return
            destination = schedule.after_hours
        info = CallInfo(
            direction="inbound", source=f"trunk:{trunk_name}", caller=caller, dialed=dialed,
            number=number.number,
            department=destination if destination in self.departments else None,
            display=display_name(request.from_.display),
        )
        call = self._new_call(tx_id, request, source, info, channels, now)
        if number.webhook is not None and not closed and (rule is None or rule.to is None):
            self._ask_webhook(call, number.webhook, number.webhook_timeout_s, destination, vip,
                              now)
            return
        self._route_internal(call, destination, exclude=frozenset(), now=now, vip=vip)

    # ------------------------------------------------------------------ webhook routing
    def _ask_webhook(
        self, call: Call, url: str, timeout_s: float, fallback: str, vip: bool, now: float
    ) -> None:
        """Ask the office's web service where this call goes. The call waits (the caller has
        had 100 Trying); nothing else does: the daemon asks in the background, and the
        fallback route is taken by a timer if no answer comes in time."""
        self._awaiting_webhook[call.id] = (call, fallback, vip)
        self.webhook_requests.append(WebhookRequested(
            call_id=call.id, url=url, timeout_s=timeout_s,
            payload={
                "call_id": call.id, "caller": call.info.caller, "called": call.info.dialed,
                "number": call.info.number, "time": now + self.wall_offset_s,
                "history": {"last_agent": self.last_agent.get(call.info.caller)},
            },
        ))
        call.timers.append(self.call_at(
            now + timeout_s + WEBHOOK_GRACE_S,
            partial(self._webhook_fallback, call.id, "no answer in time"),
        ))

    def webhook_answered(self, call_id: str, destination: str | None, now: float,
                         *, error: str = "") -> None:
        """The daemon's result: a destination (or a CRM owner), or None with the error that
        prevented one."""
        if call_id in self._awaiting_crm:
            self._crm_answered(call_id, destination, now, error=error)
            return
        if destination is None or not self._is_destination(destination):
            self._webhook_fallback(call_id, error or f"unusable answer {destination!r}", now)
            return
        waiting = self._awaiting_webhook.pop(call_id, None)
        if waiting is None:
            return  # too late: the fallback was taken, or the caller hung up
        call, _, vip = waiting
        if call.state != "routing":
            return
        LOGGER.info("webhook routes call %s to %s", call_id, destination)
        self._route_internal(call, destination, exclude=frozenset(), now=now, vip=vip)

    def _webhook_fallback(self, call_id: str, reason: str, now: float) -> None:
        waiting = self._awaiting_webhook.pop(call_id, None)
        if waiting is None:
            return
        call, fallback, vip = waiting
        if call.state != "routing":
            return
        LOGGER.warning("webhook for call %s failed (%s); routing to %s", call_id, reason,
                       fallback)
        self._route_internal(call, fallback, exclude=frozenset(), now=now, vip=vip)

    def _new_call(
        self, tx_id: str, request: Request, source: Address, info: CallInfo,
        channels: list[str], now: float,
    ) -> Call:
        call = Call(
            services=self, invite=request, invite_tx=tx_id, source=source, info=info,
            started_at=now, channels=channels,
        )
        self.calls[tx_id] = call
        self.stats["calls"] += 1
        # Our 18x will make an early dialog with this To tag (RFC 3261 §12.1); the caller may
        # send DTMF (a callback key) or BYE in it while waiting.
        early = (request.call_id, call.to_tag, request.from_.tag)
        self.dialogs[early] = (call, "a")
        self._dialog_keys[call.id] = [early]
        return call

    def _route_internal(
        self, call: Call, destination: str, *, exclude: frozenset[str], now: float,
        vip: bool = False,
    ) -> None:
        department = self.departments.get(destination)
        if department is not None and department.schedule:
            schedule = self.schedules.get(department.schedule)
            if schedule is not None and not is_open(schedule, now + self.wall_offset_s):
                if schedule.after_hours is None:
                    # As for a closed number: the same answer, the same record.
                    call.fail(480, "after hours", now, outcome="closed", reason="Closed")
                    return
                destination = schedule.after_hours
                department = self.departments.get(destination)
        mailbox = voicemail_box(destination)
        if mailbox is not None:  # after hours, a rule or a webhook chose voicemail
            call.info.department = mailbox if mailbox in self.departments else None
            self._voicemail(call, mailbox, now)
            return
        # The call is recorded under the department that actually takes it (after hours, a
        # VIP rule or a webhook may have chosen another), or none when a person or an outside
        # number does.
        call.info.department = destination if department is not None else None
        if department is None:
            if destination in self.extensions:
                call.ring_targets(self._extension_targets(destination), DIRECT_RING_TIMEOUT_S,
                                  now)
            else:
                self._forward(call, destination, EXTERNAL_RING_TIMEOUT_S, now)
            return
        call.info.strategy = department.strategy
        call.context = DepartmentCall(
            department=destination, exclude=exclude, entered_at=now,
            facts=CallFacts(caller=call.info.caller, dialed=call.info.dialed, vip=vip,
                            sticky_member=self._sticky_member(department, call.info.caller),
                            crm_owner=self._crm_owner(department, call.info.caller)),
        )
        crm = self.config.crm
        if crm.url is not None and self._settings(department).sticky == "crm_owner":
            self._ask_crm(call, crm.url, crm.timeout_s, now)
            return
        self._offer(call, now)

    # ------------------------------------------------------------------ CRM owner lookup
    def _ask_crm(self, call: Call, url: str, timeout_s: float, now: float) -> None:
        """Ask the office CRM who the caller's responsible manager is. Like webhook routing,
        only this call waits; the imported table's owner (if any) stands when the CRM errs,
        answers nonsense or is slow."""
        self._awaiting_crm[call.id] = call
        self.webhook_requests.append(WebhookRequested(
            call_id=call.id, url=url, timeout_s=timeout_s, answer_key="extension",
            payload={"call_id": call.id, "caller": call.info.caller,
                     "called": call.info.dialed, "department": _context(call).department},
        ))
        call.timers.append(self.call_at(
            now + timeout_s + WEBHOOK_GRACE_S,
            partial(self._crm_answered, call.id, None, error="no answer in time"),
        ))

    def _crm_answered(self, call_id: str, owner: str | None, now: float, *,
                      error: str = "") -> None:
        call = self._awaiting_crm.pop(call_id, None)
        if call is None or call.state != "routing":
            return  # too late: the fallback was taken, or the caller hung up
        ctx = _context(call)
        if owner is not None and owner in self.extensions:
            ctx.facts = replace(ctx.facts, crm_owner=owner)
        elif owner is not None or error:
            LOGGER.warning("CRM lookup for call %s failed (%s); owner from the table: %s",
                           call_id, error or f"unknown extension {owner!r}",
                           ctx.facts.crm_owner or "none")
        self._offer(call, now)

    # ------------------------------------------------------------------ departments
    def _settings(self, department: Department) -> DepartmentSettings:
        settings = self._department_settings.get(department.number)
        if settings is None:
            settings = self._department_settings[department.number] = DepartmentSettings.of(
                department, is_destination=self._is_destination,
                mailboxes=self.extensions.keys() | self.departments.keys(),
            )
        return settings

    def _is_destination(self, text: str) -> bool:
        mailbox = voicemail_box(text)
        if mailbox is not None:
            return mailbox in self.extensions or mailbox in self.departments
        return text in self.extensions or text in self.departments or _is_dialable(text)

    def _offer(self, call: Call, now: float) -> None:
        """Offer a department call to its members now; otherwise queue or no-answer scheme."""
        ctx = _context(call)
        department = self.departments[ctx.department]
        settings = self._settings(department)
        plan = self._plan(department, ctx, now)
        if not plan.is_empty:
            call.ring(plan, self._extension_targets, now, on_no_answer=self._department_no_answer)
            return
        reserve = settings.no_answer.reserve
        if reserve is not None and ctx.step < 0 and not self._anyone_online(department, now):
            # Every member is offline (logged out, not registered): straight to the reserve.
            ctx.step = len(settings.no_answer.steps)  # the scheme is skipped: reserve is final
            self._ring_destination(call, reserve, RESERVE_RING_S, now)
            return
        self._department_no_answer(call, now)

    def _department_no_answer(self, call: Call, now: float) -> None:
        """The department did not answer (or nobody was free): wait in its queue while the
        caller may still wait, else the next step of the no-answer scheme."""
        ctx = _context(call)
        department = self.departments[ctx.department]
        queue_settings = self._settings(department).queue
        if isinstance(call, CallbackCall):
            # Nobody took the callback this time: it keeps its place until it expires.
            if queue_settings is not None and now < call.expires_at:
                self._enqueue(call, department, queue_settings, now)
            else:
                self._callback_expired(call, now)
            return
        if ctx.step < 0 and queue_settings is not None:
            waiting = self.queues.setdefault(department.number, [])
            may_wait = now - ctx.entered_at < queue_settings.max_wait_s
            has_room = call in waiting or len(waiting) < queue_settings.max_callers
            if may_wait and has_room:
                self._enqueue(call, department, queue_settings, now)
                return
        self._next_step(call, now)

    def _enqueue(
        self, call: Call, department: Department, settings: QueueSettings, now: float
    ) -> None:
        waiting = self.queues.setdefault(department.number, [])
        if not isinstance(call, CallbackCall):
            self._start_queue_media(call, settings, now)
        if call not in waiting:
            # VIP callers go ahead of everyone who is not VIP; otherwise arrival order, so a
            # caller offered in vain (or a callback tried in vain) keeps their place.
            turn = _queue_turn(call)
            position = next((i for i, other in enumerate(waiting) if _queue_turn(other) > turn),
                            len(waiting))
            waiting.insert(position, call)
        call.wait_in_queue(now)
        call.timers.append(self.call_at(now + settings.retry_s, partial(self._retry, call)))
        call.timers.append(self.call_at(_queue_deadline(call, settings),
                                        partial(self._queue_timeout, call)))

    def _retry(self, call: Call, now: float) -> None:
        if call.state != "queued":
            return
        ctx = _context(call)
        self._serve_queue(ctx.department, now)
        if call.state == "queued":
            settings = self._settings(self.departments[ctx.department]).queue
            assert settings is not None
            call.timers.append(self.call_at(now + settings.retry_s, partial(self._retry, call)))

    def _queue_timeout(self, call: Call, now: float) -> None:
        if call.state != "queued":
            return
        self._remove_from_queue(call)
        if isinstance(call, CallbackCall):
            self._callback_expired(call, now)
            return
        self._next_step(call, now)

    def _remove_from_queue(self, call: Call) -> None:
        ctx = call.context
        if isinstance(ctx, DepartmentCall):
            waiting = self.queues.get(ctx.department)
            if waiting and call in waiting:
                waiting.remove(call)

    def _serve_queue(self, number: str, now: float) -> None:
        """Offer waiting callers, in queue order, to whoever is free now."""
        waiting = self.queues.get(number)
        department = self.departments.get(number)
        if not waiting or department is None:
            return
        for call in list(waiting):
            if call.state != "queued":
                waiting.remove(call)
                continue
            plan = self._plan(department, _context(call), now)
            if plan.is_empty:
                break  # nobody free for the head of the queue: those behind wait too
            waiting.remove(call)
            call.ring(plan, self._extension_targets, now, on_no_answer=self._department_no_answer)

    # ------------------------------------------------------------------ callback
    def request_callback(self, call: Call, now: float) -> CallbackCall | None:
        """The waiting caller asked to be called back: their call ends, and a callback request
        takes their place in the department's queue. None if this call cannot be called back
        (not waiting in a queue with callback, or nobody to call: an anonymous caller)."""
        ctx = call.context
        if not isinstance(ctx, DepartmentCall) or isinstance(call, CallbackCall):
            return None
        department = self.departments[ctx.department]
        queue = self._settings(department).queue
        if queue is None or queue.callback is None or call.state not in ("queued", "ringing"):
            return None
        source = call.info.source
        trunk = source.removeprefix("trunk:") if source.startswith("trunk:") else None
        customer = call.info.caller
        if customer not in self.extensions if trunk is None else not _is_dialable(customer):
            LOGGER.info("call %s: no number to call %s back on", call.id, customer)
            return None
        callback = self._new_callback(
            invite=call.invite, info=call.info, origin_call_id=call.id, ctx=ctx, trunk=trunk,
            expires_at=ctx.entered_at + queue.callback.expire_s, attempt=1, now=now,
        )
        call.callback_state = "requested"
        call.fail(480, "callback requested", now, outcome="callback")
        LOGGER.info("call %s: %s will be called back (request %s)", call.id, customer,
                    callback.id)
        self._enqueue(callback, department, queue, now)
        self._serve_queue(department.number, now)
        return callback

    def _new_callback(
        self, *, invite: Request, info: CallInfo, origin_call_id: str, ctx: DepartmentCall,
        trunk: str | None, expires_at: float, attempt: int, now: float,
    ) -> CallbackCall:
        """One attempt at calling back `info.caller`, for the call `origin_call_id` (whose
        INVITE, `invite`, says who they are and how they reached us)."""
        callback_id = uuid.uuid4().hex
        callback = CallbackCall(
            services=self, invite=invite, invite_tx=f"callback:{callback_id}",
            id=callback_id, source=self.local, started_at=now,
            info=CallInfo(direction="callback", source="callback", caller=info.caller,
                          dialed=info.dialed, number=info.number, department=ctx.department,
                          strategy=self.departments[ctx.department].strategy),
            origin_call_id=origin_call_id,
            customer=info.caller, customer_trunk=trunk, expires_at=expires_at,
            attempt=attempt, dial_customer=self._dial_customer,
            customer_unreached=self._callback_unreached,
        )
        callback.context = DepartmentCall(department=ctx.department, exclude=frozenset(),
                                          facts=ctx.facts, entered_at=ctx.entered_at)
        self.calls[callback.invite_tx] = callback
        # Kept on disk until it is done, expired or failed: a restart must not forget it.
        self.recorder.callback_pending({
            "origin_call_id": callback.origin_call_id, "department": ctx.department,
            "customer": callback.customer, "trunk": trunk, "dialed": info.dialed,
            "number": info.number, "vip": int(ctx.facts.vip),
            "entered_at": ctx.entered_at + self.wall_offset_s,
            "expires_at": expires_at + self.wall_offset_s, "attempt": attempt,
        })
        return callback

    def restore_callbacks(self, requests: list[dict[str, Any]], now: float) -> int:
        """Put callback requests saved before a restart back in their queues, in their
        callers' order; one that expired meanwhile expires now (and is apologised for).
        How many were restored."""
        restored = 0
        for saved in requests:
            origin_id = str(saved["origin_call_id"])
            department = self.departments.get(str(saved["department"]))
            queue = self._settings(department).queue if department is not None else None
            if department is None or queue is None or queue.callback is None:
                LOGGER.warning("callback request %s: department %s no longer calls back",
                               origin_id, saved["department"])
                self.recorder.callback_state(origin_id, "failed")
                continue
            customer, dialed = str(saved["customer"]), str(saved["dialed"])
            ctx = DepartmentCall(
                department=department.number, exclude=frozenset(),
                entered_at=float(saved["entered_at"]) - self.wall_offset_s,
                facts=CallFacts(caller=customer, dialed=dialed, vip=bool(saved["vip"]),
                                sticky_member=self._sticky_member(department, customer),
                                crm_owner=self._crm_owner(department, customer)),
            )
            trunk = saved.get("trunk")
            callback = self._new_callback(
                invite=_restored_invite(customer, dialed, origin_id),
                info=CallInfo(direction="inbound", source="restored", caller=customer,
                              dialed=dialed, number=saved.get("number")),
                origin_call_id=origin_id, ctx=ctx, trunk=str(trunk) if trunk else None,
                expires_at=float(saved["expires_at"]) - self.wall_offset_s,
                attempt=int(saved["attempt"]), now=now,
            )
            restored += 1
            if now >= callback.expires_at:
                self._callback_expired(callback, now)
                continue
            self._enqueue(callback, department, queue, now)
        self._serve_all_queues(now)
        return restored

    def _callback_settings(self, callback: CallbackCall) -> CallbackSettings:
        queue = self._settings(self.departments[_context(callback).department]).queue
        settings = queue.callback if queue is not None else None
        return settings if settings is not None else CallbackSettings()

    def _dial_customer(self, callback: CallbackCall, now: float) -> None:
        """The member answered: call the customer the way they reached us."""
        ring_s = self._callback_settings(callback).customer_ring_s
        target, channel = self._customer_target(callback)
        if target is None:
            callback.customer_unavailable(channel or "customer unreachable", now)
            return
        if channel is not None:
            callback.channels.append(channel)
        callback.ring_customer(target, ring_s, now)

    def _customer_target(self, callback: CallbackCall) -> tuple[Target | None, str | None]:
        """How to reach the customer the way they reached us: (target, trunk channel taken),
        or (None, why not)."""
        if callback.customer_trunk is None:
            targets = self._extension_targets(callback.customer)
            if not targets:
                return None, "customer's phone not registered"
            return targets[0], None
        trunk = self.trunks.get(callback.customer_trunk)
        key = f"trunk:{callback.customer_trunk}"
        if trunk is None or trunk.name not in self.trunk_addresses:
            return None, f"trunk {callback.customer_trunk} is gone"
        if not self.channels.acquire([key]):
            return None, "no free trunk channel"
        return self._external_target(trunk, callback.customer), key

    def _callback_unreached(self, callback: CallbackCall, now: float) -> None:
        """The customer did not answer (or could not be called): try again later, a set
        number of times (the callback regimen); then the request has failed."""
        settings = self._callback_settings(callback)
        if callback.attempt >= settings.attempts:
            LOGGER.info("callback %s to %s failed after %d attempts", callback.origin_call_id,
                        callback.customer, callback.attempt)
            self.recorder.callback_state(callback.origin_call_id, "failed")
            return
        self.call_at(now + settings.retry_s, partial(self._callback_retry, callback))

    def _callback_retry(self, previous: CallbackCall, now: float) -> None:
        ctx = _context(previous)
        department = self.departments.get(ctx.department)
        queue = self._settings(department).queue if department is not None else None
        if department is None or queue is None or queue.callback is None:
            self.recorder.callback_state(previous.origin_call_id, "failed")
            return  # the configuration changed meanwhile
        callback = self._new_callback(
            invite=previous.invite, info=previous.info,
            origin_call_id=previous.origin_call_id, ctx=ctx, trunk=previous.customer_trunk,
            expires_at=max(previous.expires_at, now + queue.callback.expire_s),
            attempt=previous.attempt + 1, now=now,
        )
        self._enqueue(callback, department, queue, now)
        self._serve_queue(department.number, now)

    def _callback_expired(self, callback: CallbackCall, now: float) -> None:
        """No member was free in time: the request shows as expired in the missed-calls
        list, where a manager sees whom to call, and the box calls the customer to apologise
        and offer voicemail (unless the queue's `callback.apology` is off)."""
        self._remove_from_queue(callback)
        LOGGER.info("callback request %s for %s expired", callback.origin_call_id,
                    callback.customer)
        callback.fail(480, "callback expired", now, outcome="missed")
        self.recorder.callback_state(callback.origin_call_id, "expired")
        if self._callback_settings(callback).apology:
            self._apologise(callback, now)

    # ------------------------------------------------------------------ the box on the line
    def _voicemail(self, call: Call, mailbox: str, now: float) -> None:
        """Answer the caller and take a message for `mailbox` (RFC 3264: our SDP answers the
        caller's offer; an INVITE without one gets our offer, answered in the ACK)."""
        script = VoicemailScript(call_id=call.id, mailbox=mailbox, caller=call.info.caller,
                                 settings=VoicemailSettings())
        anchor = call.anchor
        if isinstance(anchor, CallMedia) and not anchor.bridged:
            # The caller already hears the box (the queue's early media): the same session
            # and the same SDP answer carry on into the 2xx (RFC 3261 §13.2.1).
            anchor.release_member_port()
            call.anchor = None
            party = anchor.party
            party.on_hang_up(call.hang_up_local)
            party.switch(script, now)
            LOGGER.info("call %s: voicemail for mailbox %s", call.id, mailbox)
            call.answer_locally(party, anchor.caller_answer, now)
            return
        port = self.open_media_port()
        if port is None:
            call.fail(503, "no media port for voicemail", now, outcome="missed")
            return
        offer = call.invite.body
        try:
            if offer:
                body, choice = sdp.answer(offer, host=self.local_host, port=port)
            else:
                body, choice = sdp.offer(host=self.local_host, port=port), sdp.awaiting_answer()
        except sdp.SdpError as exc:
            self.close_media(port)
            LOGGER.info("call %s: voicemail cannot take the caller's SDP: %s", call.id, exc)
            # RFC 3261 §21.4.26: no common format.
            call.fail(488, "no common audio format", now, outcome="missed")
            return
        party = self._local_party(port, choice, script, now, awaiting_answer=not offer)
        party.on_hang_up(call.hang_up_local)
        LOGGER.info("call %s: voicemail for mailbox %s", call.id, mailbox)
        if call.answer_locally(party, body, now) and offer:
            party.start(now)

    def _start_queue_media(self, call: Call, settings: QueueSettings, now: float) -> None:
        """Early media for a caller who starts to wait: the box answers their offer in a 183
        and plays ringback, their position and the callback offer, hearing keys in the RTP
        (RFC 4733 or in-band). Without an offer, or without a common format, the caller hears
        plain ringing (180) as before."""
        offer = call.invite.body
        if call.anchor is not None or not offer or settings.announce_s <= 0:
            return
        port = self.open_media_port()
        member_port = self.open_media_port() if port is not None else None
        if port is None or member_port is None:
            if port is not None:
                self.close_media(port)
            return
        try:
            body, choice = sdp.answer(offer, host=self.local_host, port=port)
        except sdp.SdpError as exc:
            self.close_media(port)
            self.close_media(member_port)
            LOGGER.info("call %s: no early media in the queue: %s", call.id, exc)
            return
        callback = settings.callback
        script = QueueScript(
            position=partial(self._queue_position, call),
            callback_key=callback.key if callback is not None else None,
            on_key=partial(self._key_pressed_while_waiting, call),
            announce_s=settings.announce_s,
        )
        party = self._local_party(port, choice, script, now)
        call.start_early_media(CallMedia(self, party, body, member_port=member_port), body, now)
        party.start(now)

    def _local_party(self, port: int, choice: sdp.AudioChoice, script: Script, now: float, *,
                     awaiting_answer: bool = False) -> LocalParty:
        """The box's end of a call on `port`, taking the datagrams that arrive there."""
        party = LocalParty(services=self,
                           session=MediaSession(local_port=port, choice=choice, now=now),
                           script=script, local_host=self.local_host,
                           awaiting_answer=awaiting_answer)
        self.route_media(port, party.receive)
        return party

    def _queue_position(self, call: Call) -> int | None:
        ctx = call.context
        waiting = self.queues.get(ctx.department, []) if isinstance(ctx, DepartmentCall) else []
        if call.state != "queued" or call not in waiting:
            return None
        return waiting.index(call) + 1

    def _key_pressed_while_waiting(self, call: Call, key: str, now: float) -> None:
        LOGGER.info("call %s: caller pressed %s while waiting (RTP)", call.id, key)
        self._key_while_waiting(call, key, now)

    def _apologise(self, callback: CallbackCall, now: float) -> None:
        """The callback request expired: ring the customer, apologise, and offer to take a
        message for the department."""
        target, channel = self._customer_target(callback)
        if target is None:
            return
        call_id = uuid.uuid4().hex
        port = self.open_media_port()
        if port is None:
            if channel is not None:
                self.channels.release([channel])
            return
        ctx = _context(callback)
        info = callback.info
        party = self._local_party(
            port, sdp.awaiting_answer(), ApologyScript(VoicemailScript(
                call_id=call_id, mailbox=ctx.department, caller=callback.customer,
                settings=VoicemailSettings(), greet=False)),
            now, awaiting_answer=True)
        call = PromptCall(
            services=self, invite=callback.invite, invite_tx=f"apology:{call_id}", id=call_id,
            source=target.destination, started_at=now,
            info=CallInfo(direction="callback", source="apology", caller=info.caller,
                          dialed=info.dialed, number=info.number, department=ctx.department),
            local=party, local_side="b", local_answer=sdp.offer(host=self.local_host, port=port),
            caller_id=info.number or info.dialed, origin_call_id=callback.origin_call_id,
        )
        party.on_hang_up(call.hang_up_local)
        if channel is not None:
            call.channels.append(channel)
        self.calls[call.invite_tx] = call
        LOGGER.info("callback %s expired: calling %s to apologise", callback.origin_call_id,
                    callback.customer)
        ring_s = self._callback_settings(callback).customer_ring_s
        call.ring_targets([target], ring_s, now)

    def _serve_all_queues(self, now: float) -> None:
        for number in [n for n, waiting in self.queues.items() if waiting]:
            self._serve_queue(number, now)

    def _next_step(self, call: Call, now: float) -> None:
        """The next destination of the no-answer scheme, or the end: the call is missed."""
        ctx = _context(call)
        self._remove_from_queue(call)
        steps = self._settings(self.departments[ctx.department]).no_answer.steps
        ctx.step += 1
        if ctx.step >= len(steps):
            # Everyone busy → 486; someone declined → 603; otherwise 480 (RFC 3261 §21.4).
            call.fail(call.failure_status(), "no answer", now, outcome="missed")
            return
        step = steps[ctx.step]
        self._ring_destination(call, step.to, step.time_s, now)

    def _ring_destination(self, call: Call, to: str, time_s: float, now: float) -> None:
        """Ring a no-answer step's destination for `time_s`: a department (its own strategy),
        an employee's phones, or an external number through the provider (forwarding); or
        take a message (voicemail, the last step)."""
        mailbox = voicemail_box(to)
        if mailbox is not None:
            self._voicemail(call, mailbox, now)
            return
        of_department = mobiles_of(to)
        if of_department is not None:
            self._ring_mobiles(call, of_department, time_s, now)
            return
        department = self.departments.get(to)
        if department is not None:
            facts = _context(call).facts
            sub = DepartmentCall(department=to, exclude=_context(call).exclude, facts=facts,
                                 entered_at=now)
            plan = self._plan(department, sub, now)
            if plan.give_up_at_s > time_s:
                plan = replace(plan, give_up_at_s=time_s)
            call.ring(plan, self._extension_targets, now, on_no_answer=self._next_step)
            return
        if to in self.extensions:
            call.ring_targets(self._extension_targets(to), time_s, now,
                              on_no_answer=self._next_step)
            return
        self._forward(call, to, time_s, now, on_no_answer=self._next_step)

    def _ring_mobiles(self, call: Call, number: str, time_s: float, now: float) -> None:
        """Ring at once, through the provider, the mobiles of the department's members who
        are On line and not on a call (away from their desk phone, not on a break); each
        ringing mobile holds a trunk channel until it stops ringing."""
        department = self.departments.get(number)
        trunk = self._outbound_trunk()
        mobiles: dict[str, str] = {}  # mobile number → whose
        if department is not None and trunk is not None:
            for member in department.members:
                extension = self.extensions.get(member.extension)
                state = self.agents.agent(member.extension)
                if (extension is not None and extension.mobile and state.status == ON_LINE
                        and state.calls_in_progress == 0
                        and member.extension not in _context(call).exclude):
                    mobiles.setdefault(extension.mobile, extension.number)
        targets: list[Target] = []
        channels: list[str] = []
        if trunk is not None:
            key = f"trunk:{trunk.name}"
            for mobile, employee in mobiles.items():
                if not self.channels.acquire([key]):
                    LOGGER.warning("call %s: no free trunk channel for the mobile %s", call.id,
                                   mobile)
                    break
                targets.append(replace(self._external_target(trunk, mobile), employee=employee))
                channels.append(key)
        if not targets:
            LOGGER.info("call %s: no member's mobile to ring for department %s", call.id,
                        number)
            self._next_step(call, now)
            return
        call.ring_targets(targets, time_s, now, on_no_answer=self._next_step, channels=channels)

    def release_channel(self, key: str) -> None:
        self.channels.release([key])

    def _forward(
        self, call: Call, to: str, time_s: float, now: float, *,
        on_no_answer: Callable[[Call, float], None] | None = None,
    ) -> None:
        """Ring an external number through the provider (a trunk channel for the call)."""
        trunk = self._outbound_trunk()
        key = f"trunk:{trunk.name}" if trunk is not None else ""
        # A forwarded inbound call holds two trunk channels: the caller's and ours out.
        if trunk is None or not self.channels.acquire([key]):
            LOGGER.warning("call %s: cannot forward to %s (no free trunk channel)", call.id, to)
            if on_no_answer is not None:
                on_no_answer(call, now)
            else:
                call.fail(503, "no trunk channel", now, outcome="failed")
            return
        call.channels.append(key)
        call.ring_targets([self._external_target(trunk, to)], time_s, now,
                          on_no_answer=on_no_answer)

    def _plan(self, department: Department, ctx: DepartmentCall, now: float) -> RingPlan:
        snapshot = self._snapshot(department, now)
        memory = self.routing_memory.setdefault(department.number, RoutingMemory())
        try:
            return strategies.plan(snapshot, ctx.facts, memory, now, exclude=ctx.exclude)
        except UnknownStrategyError:
            LOGGER.error("department %s: unknown strategy %s; ringing everyone",
                         department.number, department.strategy)
            return strategies.plan(replace(snapshot, strategy="ring_all"), ctx.facts, memory,
                                   now, exclude=ctx.exclude)

    def _snapshot(self, department: Department, now: float) -> DepartmentSnapshot:
        settings = self._settings(department)
        # With a queue, a member ringing for one caller is not offered another at the same
        # time (FreeSWITCH's agent states); without one, every caller may ring them.
        ringing = self._ringing_extensions() if settings.queue is not None else set()
        members = []
        for member in department.members:
            extension = member.extension
            state = self.agents.agent(extension)
            extra = member.extra
            # The member's own skills when the department sets them, else the employee's.
            employee = self.extensions.get(extension)
            skills = (
                frozenset(str(skill) for skill in extra["skills"] or []) if "skills" in extra
                else frozenset(employee.skills) if employee is not None else frozenset()
            )
            members.append(MemberState(
                extension=extension, ring_time_s=member.ring_time_s,
                registered=self.registrar.is_registered(extension, now),
                status=state.status,
                busy=state.calls_in_progress > 0 or extension in ringing,
                wrap_up_until=state.wrap_up_until,
                rank=_optional_int(extra.get("rank")),
                tier=_optional_int(extra.get("tier")) or 1,
                weight=float(extra.get("weight", 0) or 0),
                skills=skills,
                last_call_ended_at=state.last_call_ended_at,
                talk_time_s=state.talk_time_s, calls_answered=state.calls_answered,
                conversion=self.conversion.get(extension),
            ))
        return DepartmentSnapshot(
            number=department.number, strategy=department.strategy,
            ring_timeout_s=department.ring_timeout_s, members=tuple(members),
            step_delay_s=settings.step_delay_s, tier_time_s=settings.tier_time_s,
            tier_mode=settings.tier_mode, rank_mode=settings.rank_mode,
            sticky_ring_s=settings.sticky_ring_s,
        )

    def _ringing_extensions(self) -> set[str]:
        return {
            leg.target.label for call in self.calls.values() if call.state == "ringing"
            for leg in call.legs.values() if leg.active
        }

    def _anyone_online(self, department: Department, now: float) -> bool:
        return any(
            self.registrar.is_registered(m.extension, now)
            and self.agents.agent(m.extension).status not in (LOGGED_OUT,)
            for m in department.members
        )

    def _crm_owner(self, department: Department, caller: str) -> str | None:
        if self._settings(department).sticky != "crm_owner":
            return None
        return self.crm_owners.get(normalise_number(caller))

    def _sticky_member(self, department: Department, caller: str) -> str | None:
        if self._settings(department).sticky != "last_agent":
            return None
        return self.last_agent.get(caller)

    def _extension_targets(self, extension: str) -> list[Target]:
        return [
            Target(
                kind="extension", label=extension, request_uri=b.contact_text,
                destination=b.destination, to_uri=f"sip:{extension}@{self.local_host}",
            )
            for b in self.registrar.bindings(extension, self.now)
        ]

    def _line_token(self, trunk_name: str) -> str:
        """The `line=` value of a registering trunk's Contact: known to the provider we
        registered with, and to nobody who has not seen that REGISTER."""
        mac = hmac.new(self.key, b"line\x00" + trunk_name.encode("utf-8"), hashlib.sha256)
        return mac.hexdigest()[:16]

    def _trunk_by_address(self, source: Address) -> str | None:
        if source.reliable:
            return self.trunk_by_host.get(source.host)
        by_source = self.trunk_by_source
        return by_source.get(_source_key(source)) or by_source.get(
            _source_key(source, any_port=True)
        )

    def _trunk_of(self, request: Request, source: Address) -> str | None:
        """The trunk a request comes from: its source (address, port, transport), or — for a
        trunk that registers — the `line` token of our Contact in its Request-URI."""
        name = self._trunk_by_address(source)
        if name is None and self.trunk_by_line and isinstance(request.uri, SipUri):
            token = request.uri.params.get("line")
            name = self.trunk_by_line.get(token) if token else None
        return name

    def _outbound_trunk(self) -> Trunk | None:
        for trunk in self.config.trunks:
            if trunk.name in self.trunk_addresses:
                return trunk
        return None

    def _external_target(self, trunk: Trunk, number: str) -> Target:
        address = self.trunk_addresses[trunk.name]
        port = f":{trunk.port}" if trunk.port != 5060 else ""
        uri = f"sip:{number}@{trunk.host}{port}"
        return Target(kind="external", label=number, request_uri=uri, destination=address,
                      to_uri=uri, trunk=trunk.name)

    # ------------------------------------------------------------------ provider registration
    def _send_registration(
        self, registration: TrunkRegistration, request: Request, now: float
    ) -> None:
        def on_response(tx: str, response: Response, t: float) -> None:
            follow_up = registration.on_response(response, t)
            if follow_up is not None:
                self._send_registration(registration, follow_up, t)

        def on_timeout(tx: str, t: float) -> None:
            registration.on_timeout(t)

        self.send_request(request, registration.destination, now,
                          on_response=on_response, on_timeout=on_timeout)

    # ------------------------------------------------------------------ status
    def status(self, now: float) -> dict[str, object]:
        return {
            "registrations": [
                {"extension": b.extension, "contact": b.contact_text,
                 "source": f"{b.source.transport}:{b.source.host}:{b.source.port}",
                 "expires_in_s": round(b.expires_at - now), "user_agent": b.user_agent}
                for b in self.registrar.all_bindings(now)
            ],
            "trunks": [r.status(now) for r in self.trunk_registrations.values()] + [
                {"name": t.name, "state": "static" if t.name in self.trunk_addresses
                 else "unresolved"}
                for t in self.config.trunks if t.name not in self.trunk_registrations
            ],
            "calls": [
                {"id": c.id, "state": c.state, "direction": c.info.direction,
                 "caller": c.info.caller, "dialed": c.info.dialed,
                 "department": c.info.department, "answered_by": c.answered_by,
                 "duration_s": round(now - c.started_at, 1),
                 "answered_s": (round(now - c.answered_at, 1)
                                if c.answered_at is not None else None),
                 # The box itself on the line: its voicemail, or its media in the middle.
                 "media": ("box" if c.local is not None else
                           "anchored" if c.anchor is not None else "direct"),
                 "ringing": sorted({leg.target.label for leg in c.legs.values() if leg.active}),
                 # How long each ringing extension (or number) has been offered this call.
                 # (several phones of one extension: the earliest, written last, counts)
                 "ringing_s": {leg.target.label: round(now - leg.record.started_at, 1)
                               for leg in sorted(c.legs.values(),
                                                 key=lambda leg: -leg.record.started_at)
                               if leg.active}}
                for c in self.calls.values()
            ],
            "queues": [
                {"department": number, "waiting": [
                    {"position": i + 1, "caller": c.info.caller,
                     "wait_s": round(now - _context(c).entered_at, 1),
                     "vip": _context(c).facts.vip, "callback": isinstance(c, CallbackCall)}
                    for i, c in enumerate(waiting)]}
                for number, waiting in self.queues.items() if waiting
            ],
            "channels": [
                {"key": key, "in_use": self.channels.in_use.get(key, 0), "capacity": cap}
                for key, cap in sorted(self.channels.capacity.items())
            ],
            "bans": [
                {"source": b.source, "since": b.since, "until": b.until, "requests": b.requests}
                for b in [*self.limiter.bans(now), *self.auth_guard.bans(now)]
            ],
            "agents": [
                {"extension": number, "name": self.extensions[number].name,
                 "status": state.status, "reason": state.reason,
                 "since_s": round(now - state.since, 1),
                 "registered": self.registrar.is_registered(number, now),
                 "on_call": state.calls_in_progress > 0,
                 "wrap_up_s": (round(state.wrap_up_until - now, 1)
                               if state.wrap_up_until and state.wrap_up_until > now else 0),
                 "call_ended_s": (round(now - state.last_call_ended_at, 1)
                                  if state.last_call_ended_at is not None else None),
                 "calls_answered_today": state.calls_answered,
                 "talk_time_today_s": round(state.talk_time_s)}
                for number in self.extensions
                for state in (self.agents.agent(number),)
            ],
            "stats": dict(self.stats),
            "transactions": self.layer.transaction_count,
        }


class _RejectWith(RemoteProtocolError):
    def __init__(self, status: int, headers: list[tuple[str, str]]) -> None:
        super().__init__(f"rejected with {status}", status_hint=status)
        self.headers = headers


def _source_key(address: Address, *, any_port: bool = False) -> tuple[str, str, int]:
    return (address.transport, address.host, 0 if any_port else address.port)


def _credentials_user(credentials: str) -> str | None:
    """The username an Authorization header claims, for counting guesses (None: unreadable)."""
    try:
        return parse_auth_header(credentials)[1].get("username")
    except RemoteProtocolError:
        return None


def _dialed_number(request: Request) -> str:
    uri = request.uri
    user = uri.user_unescaped if isinstance(uri, (SipUri, OtherUri)) else None
    if not user:
        user = request.to.uri.user_unescaped
    return user or ""


def _restored_invite(customer: str, dialed: str, origin_id: str) -> Request:
    """A stand-in for the INVITE of a call whose callback request outlived a restart: who the
    customer is and what they dialled, for the legs the callback builds."""
    return Request("INVITE", SipUri(user=dialed, host="restored.invalid"), Headers([
        ("Via", "SIP/2.0/UDP restored.invalid;branch=z9hG4bKrestored"),
        ("From", f"<sip:{customer}@restored.invalid>;tag=restored"),
        ("To", f"<sip:{dialed}@restored.invalid>"),
        ("Call-ID", f"restored-{origin_id}"),
        ("CSeq", "1 INVITE"),
        ("Max-Forwards", "70"),
    ]))


def _queue_turn(call: Call) -> tuple[bool, float]:
    """The order of a queue: VIP callers first, then by arrival (a callback by its caller's)."""
    ctx = _context(call)
    return (not ctx.facts.vip, ctx.entered_at)


def _queue_deadline(call: Call, settings: QueueSettings) -> float:
    if isinstance(call, CallbackCall):
        return call.expires_at
    return _context(call).entered_at + settings.max_wait_s


def _call_row(call: Call) -> dict[str, object]:
    info = call.info
    return {
        "id": call.id, "started_at": call.started_at, "answered_at": call.answered_at,
        "ended_at": call.ended_at, "direction": info.direction, "source": info.source,
        "caller": info.caller, "dialed": info.dialed, "number": info.number,
        "department": info.department, "answered_by": call.answered_by,
        "end_cause": call.end_cause, "outcome": call.outcome,
        "sip_call_id": call.invite.call_id, "strategy": info.strategy,
        "waited_s": round(call.waited_s, 3), "callback_state": call.callback_state,
        "talk_s": (round(call.ended_at - call.answered_at, 3)
                   if call.answered_at is not None and call.ended_at is not None else None),
    }


def _leg_row(call_id: str, record: LegRecord) -> dict[str, object]:
    return {
        "call_id": call_id, "target": record.target, "contact": record.contact,
        "started_at": record.started_at, "ringing_at": record.ringing_at,
        "answered_at": record.answered_at, "ended_at": record.ended_at,
        "result": record.result, "sip_status": record.sip_status,
    }
