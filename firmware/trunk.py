"""Outbound registration of the box to the office's SIP provider (RFC 3261 §10.2), sans-IO.

One `TrunkRegistration` per trunk with `register: true`. It builds REGISTER requests, answers
digest challenges with the trunk's credentials (RFC 7616), refreshes before the binding expires
and, when the provider does not answer or refuses, retries with exponential backoff so a dead
provider is not hammered. Time is passed in as `now`; the gateway sends what it builds.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from .sip.auth import build_authorization, choose_challenge, parse_auth_header
from .sip.message import Headers, Request, Response
from .sip.transaction import Address, new_branch, new_tag
from .sip.uri import SipUri

LOGGER = logging.getLogger(__name__)

RETRY_FIRST_S = 5.0
RETRY_MAX_S = 300.0
REFRESH_MARGIN_S = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkAccount:
    name: str
    host: str  # the provider's host as configured: it names the registrar domain
    username: str
    password: str
    expires_s: int
    from_domain: str | None = None
    digest_algorithms: tuple[str, ...] = ("MD5",)
    # Put in our Contact as `line=` (as Asterisk's `line` option does): the provider's INVITEs to
    # that Contact carry it back in the Request-URI, which tells them from a stranger's.
    line_token: str = ""


class TrunkRegistration:
    def __init__(
        self, account: TrunkAccount, *, destination: Address, local_host: str, local_port: int,
        user_agent: str,
    ) -> None:
        self.account = account
        self.destination = destination
        self.local_host = local_host
        self.local_port = local_port
        self.user_agent = user_agent
        self.call_id = f"{secrets.token_hex(12)}@{local_host}"  # constant: §10.2.4
        self.from_tag = new_tag()
        self.cseq = 0
        self.state = "idle"
        self.last_status: int | None = None
        self.last_error = ""
        self.registered_until: float | None = None
        self.next_attempt_at: float | None = 0.0
        self._retry_s = RETRY_FIRST_S
        self._auth_tries = 0
        self._nc = 0
        self._nonce = ""
        self._unregistering = False

    @property
    def _line_param(self) -> str:
        return f";line={self.account.line_token}" if self.account.line_token else ""

    @property
    def domain(self) -> str:
        return self.account.from_domain or self.account.host

    def get_timer(self) -> float | None:
        return self.next_attempt_at

    def due(self, now: float) -> bool:
        return self.next_attempt_at is not None and now >= self.next_attempt_at

    def build_register(self, now: float, *, authorization: str | None = None) -> Request:
        self.cseq += 1
        self.next_attempt_at = None
        if self.state not in ("registered",):
            self.state = "registering"
        expires = 0 if self._unregistering else self.account.expires_s
        aor = f"sip:{self.account.username}@{self.domain}"
        headers = Headers([
            ("Via", f"SIP/2.0/{self.destination.transport.upper()} "
                    f"{self.local_host}:{self.local_port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{aor}>;tag={self.from_tag}"),
            ("To", f"<{aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", f"<sip:{self.account.username}@{self.local_host}:{self.local_port}"
                        f"{self._line_param}>"),
            ("Expires", str(expires)),
            ("User-Agent", self.user_agent),
        ])
        if authorization is not None:
            headers.add("Authorization", authorization)
        return Request("REGISTER", SipUri(host=self.domain), headers)

    def on_response(self, response: Response, now: float) -> Request | None:
        """Digest the provider's answer; returns a REGISTER to send at once (with credentials)."""
        self.last_status = response.status
        if response.status < 200:
            return None
        if response.status in (401, 407):
            header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
            challenge = choose_challenge(
                response.headers.get_all(header), self.account.digest_algorithms
            )
            stale = challenge is not None and "stale=true" in challenge.lower()
            # One answer per challenge, and one more when the provider says the nonce was only
            # stale; a provider that keeps saying so gets the backoff like any failure.
            if challenge is None or self._auth_tries >= (2 if stale else 1):
                self._fail(now, f"authentication refused ({response.status})")
                return None
            self._auth_tries += 1
            nonce = parse_auth_header(challenge)[1].get("nonce", "")
            # RFC 7616 §3.4: the nonce count counts requests per nonce, starting at 1.
            self._nc = self._nc + 1 if nonce == self._nonce else 1
            self._nonce = nonce
            authorization = build_authorization(
                challenge, method="REGISTER", uri=f"sip:{self.domain}",
                username=self.account.username, password=self.account.password,
                cnonce=secrets.token_hex(8), nc=self._nc,
            )
            request = self.build_register(now, authorization=authorization)
            if response.status == 407:
                request.headers.remove("Authorization")
                request.headers.add("Proxy-Authorization", authorization)
            return request
        self._auth_tries = 0
        if 200 <= response.status < 300:
            if self._unregistering:
                self.state = "unregistered"
                self.registered_until = None
                return None
            granted = self._granted_expires(response)
            self.state = "registered"
            self.last_error = ""
            self.registered_until = now + granted
            self._retry_s = RETRY_FIRST_S
            # Refresh well before expiry: a minute early, or halfway for short bindings.
            self.next_attempt_at = now + max(granted / 2, granted - REFRESH_MARGIN_S)
            LOGGER.info("trunk %s registered for %d s", self.account.name, granted)
            return None
        if response.status == 423:
            min_expires = response.headers.get("Min-Expires")
            if min_expires and min_expires.strip().isdigit():
                self.account = _with_expires(self.account, int(min_expires))
                return self.build_register(now)
        self._fail(now, f"{response.status} {response.reason}")
        return None

    def on_timeout(self, now: float) -> None:
        self._fail(now, "no response from provider")

    def unregister(self, now: float) -> Request | None:
        if self.state != "registered":
            return None
        self._unregistering = True
        return self.build_register(now)

    def _granted_expires(self, response: Response) -> int:
        # §10.2.4 compares URIs by §19.1.4: a parameter the provider added (";ob") does not
        # make the binding someone else's.
        for contact in response.contacts:
            uri = contact.uri
            if (
                isinstance(uri, SipUri) and uri.user == self.account.username
                and uri.host == self.local_host.lower() and (uri.port or 5060) == self.local_port
            ):
                value = contact.params.get("expires")
                if value and value.isdigit():
                    return max(1, int(value))
        header = response.expires
        return max(1, header if header is not None else self.account.expires_s)

    def _fail(self, now: float, reason: str) -> None:
        self.state = "failed"
        self.last_error = reason
        self._auth_tries = 0
        if self.registered_until is not None and now >= self.registered_until:
            self.registered_until = None
        self.next_attempt_at = now + self._retry_s
        LOGGER.warning(
            "trunk %s registration failed: %s; retry in %.0f s",
            self.account.name, reason, self._retry_s,
        )
        self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)

    def status(self, now: float) -> dict[str, object]:
        return {
            "name": self.account.name,
            "state": self.state,
            "last_status": self.last_status,
            "error": self.last_error,
            "expires_in_s": (
                round(self.registered_until - now) if self.registered_until else None
            ),
        }


def _with_expires(account: TrunkAccount, expires_s: int) -> TrunkAccount:
    return TrunkAccount(
        name=account.name, host=account.host, username=account.username,
        password=account.password, expires_s=expires_s, from_domain=account.from_domain,
    )
