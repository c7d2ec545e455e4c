"""SIP transactions (RFC 3261 §17, with the RFC 6026 fixes for 2xx to INVITE), sans-IO.

`TransactionLayer` matches requests and responses to client and server transactions, absorbs
retransmissions, retransmits on its own timers and tells the transaction user (TU) what happened
through events. It does no I/O and reads no clock: the transport feeds it parsed messages with
`receive(message, source, now)`, flushes `datagrams_to_send()`, and calls `handle_timer(now)` at
`get_timer()` (the aioquic shape). Each transaction kind is a table `{(state, input): (action,
next_state)}`; a pair missing from a table raises `LocalProtocolError` when the input is ours and
is absorbed when it comes from the peer. Beyond §17, the layer retransmits a 2xx to INVITE until
the ACK arrives (§13.3.1.4), which keeps the UAS core free of timers.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .errors import LocalProtocolError, RemoteProtocolError
from .message import Headers, Request, Response, make_response

LOGGER = logging.getLogger(__name__)

# RFC 3261 §17.1.1.1 and Table 4: RTT estimate, cap on non-INVITE/response retransmission
# intervals, and how long a message may stay in the network.
T1_S = 0.5
T2_S = 4.0
T4_S = 5.0
TIMER_D_S = 32.0  # §17.1.1.2: "at least 32 seconds" on unreliable transports
MAGIC_COOKIE = "z9hG4bK"  # §8.1.1.7
RELIABLE_TRANSPORTS = frozenset({"tcp", "tls"})
# Counters in `TransactionLayer.stats` (present from the start so a benchmark prints them all).
STAT_KEYS = (
    "datagrams_sent", "retransmissions_sent", "requests_absorbed", "responses_absorbed",
    "responses_dropped", "transactions_created", "transactions_terminated", "timeouts",
    "ack_timeouts",
)
_RFC2543 = "rfc2543"  # first element of a server key built without an RFC 3261 branch


@dataclass(frozen=True, slots=True)
class Address:
    """Where a message came from or goes to; responses always go back to the source (RFC 3581)."""

    transport: str  # "udp" | "tcp"
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE_TRANSPORTS


def new_branch() -> str:
    """A Via branch unique in space and time, with the RFC 3261 magic cookie (§8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    """A From/To tag: at least 32 random bits (§19.3)."""
    return secrets.token_hex(8)


def has_rfc3261_branch(branch: str | None) -> bool:
    """True when `branch` can be trusted to be unique (§17.2.3); RFC 4475 `badbranch` is not."""
    return branch is not None and len(branch) > len(MAGIC_COOKIE) and branch.startswith(
        MAGIC_COOKIE
    )


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A new request for the TU; `transaction_id` is None for an ACK to a 2xx (no transaction)."""

    transaction_id: str | None
    request: Request
    source: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """A response matched to a client transaction, including every 2xx while in Accepted."""

    transaction_id: str
    response: Response
    source: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimedOut:
    """Timer B or F fired without a final response (the TU treats it as 408, §8.1.3.1), or Timer H
    fired without an ACK for our non-2xx final."""

    transaction_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AckTimedOut:
    """We sent a 2xx to INVITE and no ACK came within 64*T1 (§13.3.1.4): the TU should hang up."""

    transaction_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTerminated:
    transaction_id: str


Event = (
    RequestReceived | ResponseReceived | TransactionTimedOut | AckTimedOut | TransactionTerminated
)


# --------------------------------------------------------------------------------------------
# States, inputs and the transaction record


class State(Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1, §7.2
    TERMINATED = "Terminated"


class Input(Enum):
    # from the peer
    REQUEST = "request retransmission"
    ACK = "ACK"
    PROVISIONAL = "1xx received"
    SUCCESS = "2xx received"
    FAILURE = "300-699 received"
    # from the TU
    SEND_PROVISIONAL = "send 1xx"
    SEND_SUCCESS = "send 2xx"
    SEND_FAILURE = "send 300-699"
    # timers (§17 Table 4; RFC 6026 §8.4 Timer L, §8.6 Timer M; §13.3.1.4 2xx retransmission)
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_K = "Timer K"
    TIMER_M = "Timer M"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_L = "Timer L"
    # §9.1: a CANCELled INVITE that gets no final response within 64*T1 is destroyed.
    TIMER_CANCELLED = "CANCEL guard (64*T1)"
    TIMER_2XX = "2xx retransmission timer"


_PEER_INPUTS = frozenset(
    {Input.REQUEST, Input.ACK, Input.PROVISIONAL, Input.SUCCESS, Input.FAILURE}
)


class _Transaction:
    __slots__ = (
        "id", "server", "invite", "table", "state", "key", "rfc2543", "request", "peer",
        "reliable", "request_bytes", "response_bytes", "ack_bytes", "interval", "timers",
        "ack_key", "acked", "response_to_tag",
    )

    def __init__(
        self, *, tx_id: str, server: bool, invite: bool, state: State, key: tuple[object, ...],
        request: Request, peer: Address, rfc2543: bool = False,
    ) -> None:
        self.id = tx_id
        self.server = server
        self.invite = invite
        self.table = _TABLES[(server, invite)]
        self.state = state
        self.key = key
        self.rfc2543 = rfc2543
        # The request is kept only while it may be needed (retransmitting it, building the ACK
        # or the 2xx bookkeeping); `forget_request` drops it once the transaction just waits
        # out Timer D/J/K/L/M, so a busy box does not hold 32 s of finished calls in memory.
        self.request: Request | None = request
        self.peer = peer  # destination of a client tx; source of a server tx
        self.reliable = peer.reliable
        self.request_bytes = b""
        self.response_bytes = b""  # the last response a server tx sent
        self.ack_bytes = b""  # the ACK a client INVITE tx built for a non-2xx (§17.1.1.3)
        self.interval = 0.0  # current retransmission interval (A, E, G or 2xx)
        self.timers: dict[Input, int] = {}  # armed timer -> heap entry sequence number
        self.ack_key: tuple[str, int, str | None] | None = None
        self.acked = False
        self.response_to_tag: str | None = None  # RFC 2543 ACK matching only


    def request_or_fail(self) -> Request:
        if self.request is None:
            raise LocalProtocolError(f"transaction {self.id} no longer holds its request")
        return self.request

    def forget_request(self) -> None:
        self.request = None
        self.request_bytes = b""


_Message = Request | Response | None
_Source = Address | None
_Action = Callable[["TransactionLayer", _Transaction, _Message, _Source, float], None]
_Table = dict[tuple[State, Input], tuple[_Action, State]]


def _response(message: _Message) -> Response:
    if not isinstance(message, Response):
        raise LocalProtocolError(f"expected a response, got {message!r}")
    return message


# --------------------------------------------------------------------------------------------
# Actions: (layer, transaction, message or None for a timer, its source, now) -> None


def _nothing(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    pass


def _absorb(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    layer.stats["requests_absorbed"] += 1


def _emit_response(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    layer._emit_response(tx, _response(message), source)


def _time_out(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    layer.stats["timeouts"] += 1
    layer._events.append(TransactionTimedOut(transaction_id=tx.id))


# --- client INVITE (§17.1.1, RFC 6026 §7.2) -------------------------------------------------


def _retransmit_invite(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # §17.1.1.2: Timer A doubles without a cap; Timer B ends it.
    layer._retransmit(tx.request_bytes, tx.peer)
    tx.interval *= 2
    layer._arm(tx, Input.TIMER_A, tx.interval, now)


def _invite_provisional(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # §17.1.1.2: a provisional response stops retransmissions; Timer B only guards Calling, so
    # a ringing phone may ring until the TU cancels.
    layer._cancel(tx, Input.TIMER_A, Input.TIMER_B)
    layer._emit_response(tx, _response(message), source)


def _invite_accepted(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # RFC 6026 §7.2: stay in Accepted for Timer M so that 2xx retransmissions and forked 2xx
    # still reach the TU (which re-sends its ACK) instead of being dropped as strays.
    layer._cancel(tx, Input.TIMER_A, Input.TIMER_B, Input.TIMER_CANCELLED)
    tx.forget_request()
    layer._arm(tx, Input.TIMER_M, layer._timeout_s, now)
    layer._emit_response(tx, _response(message), source)


def _invite_failed(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # §17.1.1.3: the transaction itself acknowledges a non-2xx final response.
    response = _response(message)
    layer._cancel(tx, Input.TIMER_A, Input.TIMER_B, Input.TIMER_CANCELLED)
    tx.ack_bytes = build_ack_for_failure(tx.request_or_fail(), response).to_bytes()
    tx.forget_request()
    layer._transmit(tx.ack_bytes, tx.peer)
    layer._emit_response(tx, response, source)
    # §17.1.1.2: Timer D is zero on reliable transports.
    layer._arm_or_terminate(tx, Input.TIMER_D, 0.0 if tx.reliable else TIMER_D_S, now)


def _resend_ack(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # §17.1.1.2: a retransmitted final response in Completed re-sends the ACK, not to the TU.
    layer.stats["responses_absorbed"] += 1
    layer._retransmit(tx.ack_bytes, tx.peer)


# --- client non-INVITE (§17.1.2) ------------------------------------------------------------


def _retransmit_request_trying(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # §17.1.2.2: Timer E doubles up to T2.
    layer._retransmit(tx.request_bytes, tx.peer)
    tx.interval = min(2 * tx.interval, layer._t2_s)
    layer._arm(tx, Input.TIMER_E, tx.interval, now)


def _retransmit_request_proceeding(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # §17.1.2.2: in Proceeding Timer E is reset to T2.
    layer._retransmit(tx.request_bytes, tx.peer)
    tx.interval = layer._t2_s
    layer._arm(tx, Input.TIMER_E, tx.interval, now)


def _non_invite_completed(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    layer._cancel(tx, Input.TIMER_E, Input.TIMER_F)
    tx.forget_request()
    layer._emit_response(tx, _response(message), source)
    # §17.1.2.2: Timer K is T4 on unreliable transports, zero on reliable ones.
    layer._arm_or_terminate(tx, Input.TIMER_K, 0.0 if tx.reliable else layer._t4_s, now)


def _absorb_response(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    layer.stats["responses_absorbed"] += 1


# --- server INVITE (§17.2.1, RFC 6026 §7.1) --------------------------------------------------


def _resend_last_response(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # §17.2.1 / §17.2.2: a retransmitted request re-sends the most recent response.
    layer.stats["requests_absorbed"] += 1
    if tx.response_bytes:
        layer._retransmit(tx.response_bytes, tx.peer)


def _send(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    layer._send_response(tx, _response(message))


def _send_2xx(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # RFC 6026 §7.1: Accepted instead of Terminated. §13.3.1.4: retransmit the 2xx at T1,
    # doubling up to T2, on every transport (the 2xx is end to end, proxies may change
    # transport), until the ACK arrives; Timer L (RFC 6026 §8.7) bounds the wait.
    layer._send_response(tx, _response(message))
    request = tx.request_or_fail()
    tx.ack_key = (request.call_id, request.cseq.seq, request.from_.tag)
    tx.forget_request()
    layer._accepted[tx.ack_key] = tx
    tx.interval = layer._t1_s
    layer._arm(tx, Input.TIMER_2XX, tx.interval, now)
    layer._arm(tx, Input.TIMER_L, layer._timeout_s, now)


def _send_invite_failure(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # §17.2.1: Completed; Timer G (unreliable only) retransmits, Timer H bounds the wait for ACK.
    layer._send_response(tx, _response(message))
    tx.forget_request()
    if not tx.reliable:
        tx.interval = layer._t1_s
        layer._arm(tx, Input.TIMER_G, tx.interval, now)
    layer._arm(tx, Input.TIMER_H, layer._timeout_s, now)


def _retransmit_response(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # §17.2.1 Timer G and §13.3.1.4 2xx retransmission: double up to T2.
    layer._retransmit(tx.response_bytes, tx.peer)
    tx.interval = min(2 * tx.interval, layer._t2_s)
    timer = Input.TIMER_G if tx.state is State.COMPLETED else Input.TIMER_2XX
    layer._arm(tx, timer, tx.interval, now)


def _confirm(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # §17.2.1: the ACK for our non-2xx is absorbed; Timer I soaks up ACK retransmissions.
    layer.stats["requests_absorbed"] += 1
    layer._cancel(tx, Input.TIMER_G, Input.TIMER_H)
    layer._arm_or_terminate(tx, Input.TIMER_I, 0.0 if tx.reliable else layer._t4_s, now)


def _resend_2xx_until_acked(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # The INVITE retransmission means our 2xx was lost; answer it again rather than bother the TU.
    layer.stats["requests_absorbed"] += 1
    if not tx.acked:
        layer._retransmit(tx.response_bytes, tx.peer)


def _stop_2xx(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # The ACK for a 2xx is not part of the transaction (§17.1.1.3); it only stops our
    # retransmissions and still goes to the TU (the caller emits RequestReceived).
    tx.acked = True
    layer._cancel(tx, Input.TIMER_2XX)


def _end_accepted(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    if not tx.acked:
        layer.stats["ack_timeouts"] += 1
        layer._events.append(AckTimedOut(transaction_id=tx.id))


def _time_out_waiting_for_ack(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    # §17.2.1: Timer H fired in Completed: the ACK never came.
    _time_out(layer, tx, message, source, now)


# --- server non-INVITE (§17.2.2) ---------------------------------------------------------------


def _send_non_invite_final(
    layer: TransactionLayer, tx: _Transaction, message: _Message, source: _Source, now: float
) -> None:
    layer._send_response(tx, _response(message))
    tx.forget_request()
    # §17.2.2: Timer J is 64*T1 on unreliable transports, zero on reliable ones.
    layer._arm_or_terminate(tx, Input.TIMER_J, 0.0 if tx.reliable else layer._timeout_s, now)


S = State
I = Input  # noqa: E741 - the tables read better with a one-letter alias

CLIENT_INVITE_TABLE: _Table = {
    (S.CALLING, I.TIMER_A): (_retransmit_invite, S.CALLING),
    (S.CALLING, I.TIMER_B): (_time_out, S.TERMINATED),
    (S.CALLING, I.PROVISIONAL): (_invite_provisional, S.PROCEEDING),
    (S.PROCEEDING, I.PROVISIONAL): (_emit_response, S.PROCEEDING),
    (S.CALLING, I.SUCCESS): (_invite_accepted, S.ACCEPTED),
    (S.PROCEEDING, I.SUCCESS): (_invite_accepted, S.ACCEPTED),
    (S.ACCEPTED, I.SUCCESS): (_emit_response, S.ACCEPTED),  # RFC 6026 §7.2
    (S.ACCEPTED, I.TIMER_M): (_nothing, S.TERMINATED),
    (S.CALLING, I.FAILURE): (_invite_failed, S.COMPLETED),
    (S.PROCEEDING, I.FAILURE): (_invite_failed, S.COMPLETED),
    (S.COMPLETED, I.FAILURE): (_resend_ack, S.COMPLETED),
    (S.COMPLETED, I.TIMER_D): (_nothing, S.TERMINATED),
    (S.CALLING, I.TIMER_CANCELLED): (_nothing, S.TERMINATED),
    (S.PROCEEDING, I.TIMER_CANCELLED): (_nothing, S.TERMINATED),
}

CLIENT_NON_INVITE_TABLE: _Table = {
    (S.TRYING, I.TIMER_E): (_retransmit_request_trying, S.TRYING),
    (S.PROCEEDING, I.TIMER_E): (_retransmit_request_proceeding, S.PROCEEDING),
    (S.TRYING, I.TIMER_F): (_time_out, S.TERMINATED),
    (S.PROCEEDING, I.TIMER_F): (_time_out, S.TERMINATED),
    (S.TRYING, I.PROVISIONAL): (_emit_response, S.PROCEEDING),
    (S.PROCEEDING, I.PROVISIONAL): (_emit_response, S.PROCEEDING),
    (S.TRYING, I.SUCCESS): (_non_invite_completed, S.COMPLETED),
    (S.TRYING, I.FAILURE): (_non_invite_completed, S.COMPLETED),
    (S.PROCEEDING, I.SUCCESS): (_non_invite_completed, S.COMPLETED),
    (S.PROCEEDING, I.FAILURE): (_non_invite_completed, S.COMPLETED),
    (S.COMPLETED, I.PROVISIONAL): (_absorb_response, S.COMPLETED),
    (S.COMPLETED, I.SUCCESS): (_absorb_response, S.COMPLETED),
    (S.COMPLETED, I.FAILURE): (_absorb_response, S.COMPLETED),
    (S.COMPLETED, I.TIMER_K): (_nothing, S.TERMINATED),
}

SERVER_INVITE_TABLE: _Table = {
    (S.PROCEEDING, I.REQUEST): (_resend_last_response, S.PROCEEDING),
    (S.PROCEEDING, I.SEND_PROVISIONAL): (_send, S.PROCEEDING),
    (S.PROCEEDING, I.SEND_SUCCESS): (_send_2xx, S.ACCEPTED),
    (S.PROCEEDING, I.SEND_FAILURE): (_send_invite_failure, S.COMPLETED),
    (S.ACCEPTED, I.REQUEST): (_resend_2xx_until_acked, S.ACCEPTED),  # RFC 6026 §8.7
    (S.ACCEPTED, I.ACK): (_stop_2xx, S.ACCEPTED),
    (S.ACCEPTED, I.SEND_SUCCESS): (_send, S.ACCEPTED),  # RFC 6026 §8.7: TU retransmission
    (S.ACCEPTED, I.TIMER_2XX): (_retransmit_response, S.ACCEPTED),
    (S.ACCEPTED, I.TIMER_L): (_end_accepted, S.TERMINATED),
    (S.COMPLETED, I.REQUEST): (_resend_last_response, S.COMPLETED),
    (S.COMPLETED, I.TIMER_G): (_retransmit_response, S.COMPLETED),
    (S.COMPLETED, I.TIMER_H): (_time_out_waiting_for_ack, S.TERMINATED),
    (S.COMPLETED, I.ACK): (_confirm, S.CONFIRMED),
    (S.CONFIRMED, I.REQUEST): (_absorb, S.CONFIRMED),
    (S.CONFIRMED, I.ACK): (_absorb, S.CONFIRMED),
    (S.CONFIRMED, I.TIMER_I): (_nothing, S.TERMINATED),
}

SERVER_NON_INVITE_TABLE: _Table = {
    (S.TRYING, I.REQUEST): (_absorb, S.TRYING),  # §17.2.2: discarded in Trying
    (S.TRYING, I.SEND_PROVISIONAL): (_send, S.PROCEEDING),
    (S.TRYING, I.SEND_SUCCESS): (_send_non_invite_final, S.COMPLETED),
    (S.TRYING, I.SEND_FAILURE): (_send_non_invite_final, S.COMPLETED),
    (S.PROCEEDING, I.REQUEST): (_resend_last_response, S.PROCEEDING),
    (S.PROCEEDING, I.SEND_PROVISIONAL): (_send, S.PROCEEDING),
    (S.PROCEEDING, I.SEND_SUCCESS): (_send_non_invite_final, S.COMPLETED),
    (S.PROCEEDING, I.SEND_FAILURE): (_send_non_invite_final, S.COMPLETED),
    (S.COMPLETED, I.REQUEST): (_resend_last_response, S.COMPLETED),
    (S.COMPLETED, I.TIMER_J): (_nothing, S.TERMINATED),
}

del S, I

# (server, invite) -> table
_TABLES: dict[tuple[bool, bool], _Table] = {
    (False, True): CLIENT_INVITE_TABLE,
    (False, False): CLIENT_NON_INVITE_TABLE,
    (True, True): SERVER_INVITE_TABLE,
    (True, False): SERVER_NON_INVITE_TABLE,
}


# --------------------------------------------------------------------------------------------
# Requests the transaction layer builds


def build_ack_for_failure(invite: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300-699 response (§17.1.1.3): the INVITE's
    Request-URI, Call-ID, From, CSeq number, top Via and Route; To from the response."""
    headers = Headers()
    headers.add("Via", invite.headers.get_list("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.seq} ACK")
    return Request("ACK", invite.uri, headers)


def make_cancel(invite: Request) -> Request:
    """A CANCEL for a pending INVITE we sent (§9.1): same Request-URI, Call-ID, To, From, CSeq
    number, a single Via equal to the INVITE's top Via (so it shares the branch) and its Route."""
    if invite.method != "INVITE":
        raise LocalProtocolError(f"only an INVITE can be cancelled, not {invite.method}")
    headers = Headers()
    headers.add("Via", invite.headers.get_list("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
    return Request("CANCEL", invite.uri, headers)


def _rfc2543_key(request: Request, method: str, to_tag: str | None) -> tuple[object, ...]:
    # §17.2.3: without a usable branch, match on Request-URI, tags, Call-ID, CSeq and top Via.
    return (
        _RFC2543, str(request.uri), request.from_.tag, to_tag, request.call_id,
        request.cseq.seq, str(request.top_via), method,
    )


def _server_key(request: Request, method: str) -> tuple[object, ...]:
    via = request.top_via
    branch = via.branch
    if has_rfc3261_branch(branch):
        # §17.2.3: branch, sent-by and method (ACK matched as INVITE, given by the caller).
        return (branch, via.host, via.port, method)
    return _rfc2543_key(request, method, request.to.tag)


def _classify(status: int) -> tuple[Input, Input]:
    """(received input, send input) for a status code."""
    if status < 200:
        return Input.PROVISIONAL, Input.SEND_PROVISIONAL
    if status < 300:
        return Input.SUCCESS, Input.SEND_SUCCESS
    return Input.FAILURE, Input.SEND_FAILURE


# --------------------------------------------------------------------------------------------


class TransactionLayer:
    """All client and server transactions of one SIP endpoint.

    Matching is O(1) through dicts; timers live in one heap with lazy deletion, so a cancelled
    timer costs nothing until it reaches the top.
    """

    def __init__(
        self, *, t1_s: float = T1_S, t2_s: float = T2_S, t4_s: float = T4_S,
        auto_trying: bool = True,
    ) -> None:
        self._t1_s = t1_s
        self._t2_s = t2_s
        self._t4_s = t4_s
        self._timeout_s = 64 * t1_s  # Timers B, F, H, J, L, M
        self._auto_trying = auto_trying
        self._ids = itertools.count(1)
        self._timer_seq = itertools.count()
        self._by_id: dict[str, _Transaction] = {}
        self._server: dict[tuple[object, ...], _Transaction] = {}
        self._client: dict[tuple[object, ...], _Transaction] = {}
        # RFC 6026 Accepted server INVITE transactions by (Call-ID, CSeq number, From tag), so
        # that an ACK for a 2xx (which carries a branch of its own) stops our retransmissions.
        self._accepted: dict[tuple[str, int, str | None], _Transaction] = {}
        self._heap: list[tuple[float, int, _Transaction, Input]] = []
        self._datagrams: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        self.stats: Counter[str] = Counter(dict.fromkeys(STAT_KEYS, 0))

    # --- public API ----------------------------------------------------------------------

    @property
    def transaction_count(self) -> int:
        return len(self._by_id)

    def receive(self, message: Request | Response, source: Address, now: float) -> None:
        """Feed one parsed message from the transport."""
        if isinstance(message, Request):
            self._receive_request(message, source, now)
        else:
            self._receive_response(message, source, now)

    def send_request(self, request: Request, destination: Address, now: float) -> str:
        """Start a client transaction for `request`, which carries a fresh top Via branch."""
        if request.method == "ACK":
            raise LocalProtocolError("ACK has no transaction: use send_stateless")
        try:
            branch = request.top_via.branch
        except RemoteProtocolError as exc:
            raise LocalProtocolError("a request we send needs a Via") from exc
        if not has_rfc3261_branch(branch):
            raise LocalProtocolError(f"top Via needs an RFC 3261 branch, got {branch!r}")
        key = (branch, request.method)
        if key in self._client:
            raise LocalProtocolError(f"branch {branch} already used by a client transaction")
        invite = request.method == "INVITE"
        tx = _Transaction(
            tx_id=f"c{next(self._ids)}", server=False, invite=invite,
            state=State.CALLING if invite else State.TRYING, key=key, request=request,
            peer=destination,
        )
        self._add(tx)
        self._client[key] = tx
        tx.request_bytes = request.to_bytes()
        self._transmit(tx.request_bytes, destination)
        if not tx.reliable:
            tx.interval = self._t1_s
            self._arm(tx, Input.TIMER_A if invite else Input.TIMER_E, tx.interval, now)
        self._arm(tx, Input.TIMER_B if invite else Input.TIMER_F, self._timeout_s, now)
        return tx.id

    def send_response(self, transaction_id: str, response: Response, now: float) -> bool:
        """Send `response` on a server transaction, to the address its request came from.

        Returns False (and does nothing) when the transaction has already terminated: the TU
        may legitimately race a timer.
        """
        tx = self._by_id.get(transaction_id)
        if tx is None:
            LOGGER.info("response %s for ended transaction %s dropped", response, transaction_id)
            return False
        if not tx.server:
            raise LocalProtocolError(f"{transaction_id} is a client transaction")
        if not 100 <= response.status <= 699:
            raise LocalProtocolError(f"bad status code {response.status}")
        inp = _classify(response.status)[1]
        self._step(tx, inp, response, None, now)
        return True

    def has_server_transaction(self, request: Request) -> bool:
        """Whether `request` (not an ACK) matches a live server transaction: a retransmission."""
        return _server_key(request, request.method) in self._server

    def send_stateless(self, message: Request | Response, destination: Address) -> None:
        """Send outside any transaction: an ACK for a 2xx (§13.2.2.4), a stateless response."""
        self._transmit(message.to_bytes(), destination)

    def cancel_sent(self, transaction_id: str, now: float) -> None:
        """The TU sent a CANCEL for this client INVITE transaction (§9.1): if no final response
        arrives within 64*T1, the transaction is destroyed (a phone that went silent)."""
        tx = self._by_id.get(transaction_id)
        if tx is None or tx.server or not tx.invite:
            return
        if tx.state in (State.CALLING, State.PROCEEDING):
            self._arm(tx, Input.TIMER_CANCELLED, self._timeout_s, now)

    def find_invite_server_transaction(self, cancel: Request) -> str | None:
        """The INVITE server transaction a CANCEL targets (§9.2), or None (the TU answers 481)."""
        if cancel.method != "CANCEL":
            raise LocalProtocolError(f"expected a CANCEL, got {cancel.method}")
        tx = self._server.get(_server_key(cancel, "INVITE"))
        return tx.id if tx is not None else None

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        datagrams, self._datagrams = self._datagrams, []
        return datagrams

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            _, seq, tx, timer = heap[0]
            if tx.timers.get(timer) == seq:
                return heap[0][0]
            heapq.heappop(heap)  # lazy deletion of a cancelled timer
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at `now` (in deadline order)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, tx, timer = heapq.heappop(heap)
            if tx.timers.get(timer) != seq:
                continue  # cancelled, re-armed or its transaction ended
            del tx.timers[timer]
            self._step(tx, timer, None, None, now)

    # --- matching ------------------------------------------------------------------------

    def _receive_request(self, request: Request, source: Address, now: float) -> None:
        method = request.method
        if method == "ACK":
            self._receive_ack(request, source, now)
            return
        key = _server_key(request, method)
        tx = self._server.get(key)
        if tx is not None:
            self._step(tx, Input.REQUEST, request, source, now)
            return
        invite = method == "INVITE"
        tx = _Transaction(
            tx_id=f"s{next(self._ids)}", server=True, invite=invite,
            state=State.PROCEEDING if invite else State.TRYING, key=key, request=request,
            peer=source, rfc2543=key[0] == _RFC2543,
        )
        self._add(tx)
        self._server[key] = tx
        if invite and self._auto_trying:
            # §17.2.1: answer 100 Trying at once so the client stops retransmitting (Timer A).
            self._send_response(tx, make_response(request, 100))
        self._events.append(RequestReceived(transaction_id=tx.id, request=request, source=source))

    def _receive_ack(self, ack: Request, source: Address, now: float) -> None:
        tx = self._match_ack(ack)
        if tx is not None:
            to_tu = tx.state is State.ACCEPTED
            self._step(tx, Input.ACK, ack, source, now)
            if not to_tu:
                return  # ACK for our non-2xx: part of the transaction (§17.2.1)
        # An ACK for a 2xx has no transaction: it belongs to the TU (§17.1.1.3, RFC 6026 §8.7).
        self._events.append(RequestReceived(transaction_id=None, request=ack, source=source))

    def _match_ack(self, ack: Request) -> _Transaction | None:
        via = ack.top_via
        tx: _Transaction | None
        if has_rfc3261_branch(via.branch):
            tx = self._server.get((via.branch, via.host, via.port, "INVITE"))
        else:
            # §17.2.3: the ACK's To tag is that of our response, not of the INVITE; try a
            # re-INVITE (which carried it already) first, then an initial INVITE.
            to_tag = ack.to.tag
            tx = self._server.get(_rfc2543_key(ack, "INVITE", to_tag))
            if tx is None and to_tag is not None:
                tx = self._server.get(_rfc2543_key(ack, "INVITE", None))
                if tx is not None and tx.response_to_tag != to_tag:
                    tx = None
        if tx is not None and tx.state in (State.COMPLETED, State.CONFIRMED, State.ACCEPTED):
            return tx
        return self._accepted.get((ack.call_id, ack.cseq.seq, ack.from_.tag))

    def _receive_response(self, response: Response, source: Address, now: float) -> None:
        # §17.1.3: branch of the top Via and CSeq method.
        tx = self._client.get((response.top_via.branch, response.cseq.method))
        if tx is None:
            # §18.1.2: a response matching no transaction is dropped (the stray 2xx after
            # Accepted ended included, RFC 6026 §7.2).
            self.stats["responses_dropped"] += 1
            LOGGER.debug("dropped unmatched %r from %s", response, source)
            return
        self._step(tx, _classify(response.status)[0], response, source, now)

    # --- the state machine ---------------------------------------------------------------

    def _step(
        self, tx: _Transaction, inp: Input, message: _Message, source: _Source, now: float
    ) -> None:
        entry = tx.table.get((tx.state, inp))
        if entry is None:
            if inp in _PEER_INPUTS:
                # A peer's message that makes no sense in this state is absorbed (§17).
                kind = "responses" if isinstance(message, Response) else "requests"
                self.stats[f"{kind}_absorbed"] += 1
                return
            raise LocalProtocolError(f"{inp.value} not allowed in {tx.state.value} ({tx.id})")
        action, next_state = entry
        tx.state = next_state
        action(self, tx, message, source, now)
        if next_state is State.TERMINATED:
            self._terminate(tx)

    def _add(self, tx: _Transaction) -> None:
        self._by_id[tx.id] = tx
        self.stats["transactions_created"] += 1

    def _terminate(self, tx: _Transaction) -> None:
        if self._by_id.pop(tx.id, None) is None:
            return
        tx.state = State.TERMINATED
        tx.timers.clear()  # every heap entry of this transaction is now stale
        index = self._server if tx.server else self._client
        if index.get(tx.key) is tx:
            del index[tx.key]
        if tx.ack_key is not None and self._accepted.get(tx.ack_key) is tx:
            del self._accepted[tx.ack_key]
        self.stats["transactions_terminated"] += 1
        self._events.append(TransactionTerminated(transaction_id=tx.id))

    # --- helpers for the actions ---------------------------------------------------------

    def _emit_response(self, tx: _Transaction, response: Response, source: _Source) -> None:
        self._events.append(
            ResponseReceived(transaction_id=tx.id, response=response, source=source or tx.peer)
        )

    def _send_response(self, tx: _Transaction, response: Response) -> None:
        # Serialised once; retransmissions re-send these bytes.
        tx.response_bytes = response.to_bytes()
        if tx.rfc2543 and response.status >= 200:
            tx.response_to_tag = response.to.tag
        self._transmit(tx.response_bytes, tx.peer)

    def _transmit(self, data: bytes, destination: Address) -> None:
        self.stats["datagrams_sent"] += 1
        self._datagrams.append((data, destination))

    def _retransmit(self, data: bytes, destination: Address) -> None:
        self.stats["retransmissions_sent"] += 1
        self._transmit(data, destination)

    def _arm(self, tx: _Transaction, timer: Input, delay: float, now: float) -> None:
        seq = next(self._timer_seq)
        tx.timers[timer] = seq
        heap = self._heap
        heapq.heappush(heap, (now + delay, seq, tx, timer))
        # Compact when cancelled entries dominate (a live transaction has at most 3 timers), so
        # the heap stays proportional to the live transactions; amortised O(1).
        if len(heap) > 64 and len(heap) > 8 * len(self._by_id):
            heap[:] = [entry for entry in heap if entry[2].timers.get(entry[3]) == entry[1]]
            heapq.heapify(heap)

    def _arm_or_terminate(self, tx: _Transaction, timer: Input, delay: float, now: float) -> None:
        if delay > 0:
            self._arm(tx, timer, delay, now)
        else:
            self._terminate(tx)

    def _cancel(self, tx: _Transaction, *timers: Input) -> None:
        for timer in timers:
            tx.timers.pop(timer, None)
