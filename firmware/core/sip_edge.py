"""The SIP edge: what every request goes through before anything rings — RFC 3261 §8.2 checks,
digest authentication with its guessing limits, REGISTER, requests inside calls and early
dialogs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..callback import CallbackCall
from ..calls import Call, CallState
from ..sip.auth import parse_auth_header
from ..sip.errors import RemoteProtocolError
from ..sip.message import KNOWN_METHODS, Request, Response, make_response
from ..sip.transaction import Address
from ..sip.uri import OtherUri
from ..sip_legs import ALLOW, SipCaller, dtmf_key, in_dialog_request
from ..trunk import TrunkRegistration
from .distribution import DepartmentCall
from .events import DatagramToSend
from .presence import ALLOW_EVENTS

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

ALLOW_OUTSIDE_DIALOG = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, SUBSCRIBE"
# RFC 3891 Replaces: a busy lamp's press (firmware/core/presence.py).
SUPPORTED_OPTIONS: frozenset[str] = frozenset({"replaces"})
ACCEPTED_BODY_TYPES = ("application/sdp",)


class RejectWith(RemoteProtocolError):
    def __init__(self, status: int, headers: list[tuple[str, str]]) -> None:
        super().__init__(f"rejected with {status}", status_hint=status)
        self.headers = headers


def _credentials_user(credentials: str) -> str | None:
    """The username an Authorization header claims, for counting guesses (None: unreadable)."""
    try:
        return parse_auth_header(credentials)[1].get("username")
    except RemoteProtocolError:
        return None


class SipEdge:
    def __init__(self, core: Gateway) -> None:
        self.core = core

    def on_request(self, tx_id: str, request: Request, source: Address, now: float) -> None:
        method = request.method
        if method == "CANCEL":
            invite_tx = self.core.layer.find_invite_server_transaction(request)
            call = self.core.calls.get(invite_tx) if invite_tx is not None else None
            if call is None:
                self.core.reply(tx_id, request, 481, now)
                return
            self.core.reply(tx_id, request, 200, now)
            call.caller_cancelled(now)
            return
        if method == "SUBSCRIBE":
            # Busy lamps, new or refreshed (RFC 6665; firmware/core/presence.py).
            self._check_request(request, method)
            self.core.presence.on_subscribe(tx_id, request, source, now)
            return
        if request.to.tag is not None:
            self._on_in_dialog(tx_id, request, now)
            return
        if method not in KNOWN_METHODS:
            self.core.reply(tx_id, request, 501, now, headers=[("Allow", ALLOW_OUTSIDE_DIALOG)])
            return
        self._check_request(request, method)
        if method == "REGISTER":
            self._on_register(tx_id, request, source, now)
        elif method == "INVITE":
            self.core.admission.on_invite(tx_id, request, source, now)
        elif method == "OPTIONS":
            self.core.reply(tx_id, request, 200, now, headers=[
                ("Allow", ALLOW), ("Accept", "application/sdp"), ("Accept-Language", "en"),
                ("Allow-Events", ALLOW_EVENTS),
            ])
        elif method == "BYE":
            self.core.reply(tx_id, request, 481, now)
        else:
            # §21.4.6: Allow lists what this address accepts outside a call.
            self.core.reply(tx_id, request, 405, now, headers=[("Allow", ALLOW_OUTSIDE_DIALOG)])

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
            raise RejectWith(420, [("Unsupported", ", ".join(unsupported))])
        if method == "INVITE":
            _ = request.contacts  # a malformed Contact is a 400 before anything rings
            content_type = request.content_type
            if request.body and content_type not in ACCEPTED_BODY_TYPES:
                raise RejectWith(415, [("Accept", "application/sdp")])
            accept = [a.split(";")[0].strip().lower() for a in request.headers.get_list("Accept")]
            if accept and not {"application/sdp", "application/*", "*/*"} & set(accept):
                raise RejectWith(406, [("Accept", "application/sdp")])
            max_forwards = request.headers.get("Max-Forwards")
            if max_forwards is not None and int(max_forwards.strip()) == 0:
                raise RemoteProtocolError("too many hops", status_hint=483)

    def _on_in_dialog(self, tx_id: str, request: Request, now: float) -> None:
        entry = self.core.dialogs.get((request.call_id, request.to.tag or "", request.from_.tag))
        if entry is None:
            # A referrer's dialog that left its call (firmware/core/transfer.py), or nothing.
            if not self.core.transfer.on_released_request(tx_id, request, now):
                self.core.reply(tx_id, request, 481, now)
            return
        call, side = entry
        if self.core.transfer.on_request(call, side, tx_id, request, now):
            return  # REFER, or the transferee while the target rings
        if side == "a" and isinstance(call.caller, SipCaller) and call.caller.dialog is None:
            self._on_early_request(call, tx_id, request, now)
            return
        in_dialog_request(call, side, request, tx_id, self.core, now)

    def _on_early_request(self, call: Call, tx_id: str, request: Request, now: float) -> None:
        """A request from a caller whose call is not answered yet, in the early dialog our
        180 made while they wait (RFC 3261 §12.1): DTMF as SIP INFO (RFC 6086 with the
        de-facto application/dtmf-relay and application/dtmf bodies), or a BYE (§15)."""
        if request.method == "BYE":
            self.core.reply(tx_id, request, 200, now)
            call.caller_cancelled(now)
            return
        if request.method != "INFO":
            self.core.reply(tx_id, request, 481, now)
            return
        self.core.reply(tx_id, request, 200, now)
        key = dtmf_key(request)
        if key is not None:
            LOGGER.info("call %s: caller pressed %s while waiting", call.id, key)
            self.key_while_waiting(call, key, now)

    def key_while_waiting(self, call: Call, key: str, now: float) -> None:
        if self.core.menus.key(call, key, now):
            return  # the caller is choosing in a voice menu
        ctx = call.context
        if not isinstance(ctx, DepartmentCall) or ctx.step >= 0:
            return
        waiting = call.state in (CallState.QUEUED, CallState.RINGING)
        if not waiting or isinstance(call, CallbackCall):
            return
        queue = self.core.distribution.settings(self.core.departments[ctx.department]).queue
        if queue is not None and queue.callback is not None and key == queue.callback.key:
            self.core.callbacks.request_callback(call, now)

    def _password_of(self, username: str) -> str | None:
        extension = self.core.extensions.get(username)
        return extension.password if extension else None

    def _algorithms_of(self, username: str) -> tuple[str, ...] | None:
        extension = self.core.extensions.get(username)
        return extension.digest_algorithms if extension else None

    def _without_qop(self, username: str) -> bool:
        extension = self.core.extensions.get(username)
        return extension.digest_without_qop if extension else False

    def _challenge_headers(
        self, request: Request, source: Address, now: float, *, status: int, stale: bool = False
    ) -> list[tuple[str, str]]:
        """The digest challenge for `request`: the algorithms of the extension it claims to
        be (From for INVITE, To for REGISTER), a nonce bound to the source address."""
        claimed = (request.to if request.method == "REGISTER" else request.from_).uri
        algorithms = self._algorithms_of(claimed.user_unescaped or "")
        name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        return [(name, value) for value in self.core.challenger.challenge(
            now, stale=stale, source=source.host, algorithms=algorithms
        )]

    def challenged_statelessly(self, request: Request, source: Address, now: float) -> bool:
        """An INVITE from a phone without credentials gets its 407 without a transaction: no
        100 Trying and no retransmissions (RFC 3261 §17.2.1 Timer G) toward an address nothing
        has verified yet, so a spoofed INVITE reflects one response, not twelve. The phone's
        retransmission of the INVITE simply gets another 407."""
        if (request.method != "INVITE" or request.to.tag is not None
                or "Proxy-Authorization" in request.headers
                or self.core.lines.of_request(request, source) is not None
                or self.core.layer.has_server_transaction(request)):
            return False
        try:
            self._check_request(request, "INVITE")
        except RemoteProtocolError:
            return False  # the transaction path answers with the right code
        response = make_response(
            request, 407, to_tag=self.core.stable_tag(request),
            headers=[*self._challenge_headers(request, source, now, status=407),
                     ("User-Agent", self.core.user_agent)],
        )
        self.core.emit(DatagramToSend(data=response.to_bytes(), destination=source))
        return True

    def authenticate(
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
            result = self.core.challenger.verify(
                request.method, credentials, self._password_of, now,
                request_uri=str(request.uri), source=source.host,
                algorithms=self._algorithms_of, without_qop=self._without_qop,
            )
            # The name the answer claims: the verified one, else read from the header (a
            # failure counts against it), so a success is not parsed twice.
            claimed = result.username if result.ok else _credentials_user(credentials)
            locked = (claimed is not None and self.core.auth_guard.extension_locked(claimed, now)
                      and not self.core.registrar.is_binding_source(source, claimed))
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
                    self.core.auth_guard.failed(source.host, claimed, now)
                self.core.reply(tx_id, request, 403, now)
                return None
        self.core.reply(tx_id, request, status, now,
                    headers=self._challenge_headers(request, source, now, status=status,
                                                    stale=stale))
        return None

    def _on_register(self, tx_id: str, request: Request, source: Address, now: float) -> None:
        self.core.registrar.check_aor(request)
        _ = request.contacts  # malformed contacts are a 400 before any challenge
        username = self.authenticate(tx_id, request, source, now, header="Authorization",
                                      status=401)
        if username is None:
            return
        aor_user = request.to.uri.user_unescaped
        if aor_user != username:
            self.core.reply(tx_id, request, 403, now,
                            reason="Forbidden (credentials of another AOR)")
            return
        response = self.core.registrar.register(
            request, username, source, now, to_tag=self.core.stable_tag(request)
        )
        response.headers.add("User-Agent", self.core.user_agent)
        self.core.layer.send_response(tx_id, response, now)
        if response.status == 200:
            self.core.distribution.serve_all_queues(now)

    def send_registration(
        self, registration: TrunkRegistration, request: Request, now: float
    ) -> None:
        def on_response(tx: str, response: Response, t: float) -> None:
            follow_up = registration.on_response(response, t)
            if follow_up is not None:
                self.send_registration(registration, follow_up, t)

        def on_timeout(tx: str, t: float) -> None:
            registration.on_timeout(t)

        self.core.send_request(request, registration.destination, now,
                          on_response=on_response, on_timeout=on_timeout)
