"""SIP Digest access authentication (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO: a parser for the
WWW-Authenticate / Authorization / Proxy-* header values, a `DigestChallenger` that lets the
gateway challenge phones with stateless HMAC-signed nonces and verify their answers, and the client
half (`choose_challenge`, `build_authorization`) that answers a SIP provider's challenge; time is
passed in as `now` and randomness through an injectable callable, so nothing here touches a clock,
a socket or global random state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import re
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass

from firmware.sip.errors import LocalProtocolError, RemoteProtocolError

LOGGER = logging.getLogger(__name__)

NONCE_TTL_S = 300
MAX_TRACKED_NONCES = 10000
NONCE_SALT_BYTES = 8
DUMMY_PASSWORD_BYTES = 16
NC_MAX = 0xFFFFFFFF

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~").
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# Unquoted parameter values: a token, plus "/", "=", ":" and "@" because real peers leave base64
# nonces and URIs unquoted; deliberate leniency over the strict RFC 3261 §25.1 grammar.
_BARE_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~/=:@]+")
_WS_RE = re.compile(r"[ \t]*")
# RFC 3261 §7.3.1: header folding (CRLF followed by whitespace) is equivalent to a single SP.
_FOLD_RE = re.compile(r"\r?\n(?=[ \t])")
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")

# RFC 7616 §3.2 / RFC 8760 §2.1: the hash behind each algorithm token (upper-cased for lookup).
_HASH_NAMES: dict[str, str] = {
    "MD5": "md5",
    "MD5-SESS": "md5",
    "SHA-256": "sha256",
    "SHA-256-SESS": "sha256",
}
# Canonical spelling of each supported algorithm token, as used in our challenges.
_CANONICAL_ALGORITHMS: dict[str, str] = {
    "MD5": "MD5",
    "MD5-SESS": "MD5-sess",
    "SHA-256": "SHA-256",
    "SHA-256-SESS": "SHA-256-sess",
}
# Higher is stronger; RFC 8760 §2.4 / RFC 7616 §3.7 order challenges by preference.
_STRENGTH: dict[str, int] = {"MD5": 1, "MD5-SESS": 1, "SHA-256": 2, "SHA-256-SESS": 2}

_NONCE_TS = struct.Struct(">d")
_NONCE_MAC_BYTES = hashlib.sha256().digest_size
_NONCE_RAW_BYTES = _NONCE_TS.size + NONCE_SALT_BYTES + _NONCE_MAC_BYTES


# ---------------------------------------------------------------------------------------------
# Header parsing
# ---------------------------------------------------------------------------------------------


# Fast path for the everyday form (every phone's Authorization looks like this): a regex per
# parameter instead of a character loop. Anything it does not match whole goes to the careful
# parser below, which also produces the error messages.
_FAST_PARAM_RE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*=[ \t]*"
    r'(?:"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"'
    r"|([A-Za-z0-9\-.!%*_+`'~/=:@]+))[ \t]*(?:,[ \t]*|\Z)"
)
_FAST_SCHEME_RE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+")
_QUOTED_PAIR_RE = re.compile(r"\\(.)")


def _parse_auth_header_fast(text: str) -> tuple[str, dict[str, str]] | None:
    scheme_match = _FAST_SCHEME_RE.match(text)
    if scheme_match is None:
        return None
    params: dict[str, str] = {}
    pos = scheme_match.end()
    end = len(text)
    while pos < end:
        match = _FAST_PARAM_RE.match(text, pos)
        if match is None:
            return None
        name = match.group(1).lower()
        if name in params:
            return None
        quoted = match.group(2)
        if quoted is not None:
            params[name] = _QUOTED_PAIR_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
        else:
            params[name] = match.group(3)
        pos = match.end()
        if text[pos - 1 : pos] != "," and pos < end:
            return None
    if not params or text.rstrip().endswith(","):
        return None
    return scheme_match.group(1), params


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Split a challenge or credentials header value into its scheme and parameters.

    Grammar of RFC 3261 §25.1 (`challenge` / `credentials`): an auth-scheme token, then
    comma-separated `name=token` or `name="quoted string"` with LWS allowed around `=` and commas.
    Parameter names are lower-cased (they are case-insensitive); values are returned unquoted with
    backslash escapes resolved. Raises `RemoteProtocolError` if the value is malformed.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RemoteProtocolError("auth header is not valid UTF-8") from None
    text = _FOLD_RE.sub("", value).strip(" \t") if "\n" in value else value.strip(" \t")
    fast = _parse_auth_header_fast(text)
    if fast is not None:
        return fast
    scheme_match = _TOKEN_RE.match(text)
    if scheme_match is None:
        raise RemoteProtocolError("auth header has no scheme")
    scheme = scheme_match.group()
    pos = scheme_match.end()
    params: dict[str, str] = {}
    if pos == len(text):
        return scheme, params
    if text[pos] not in " \t":
        raise RemoteProtocolError(f"unexpected {text[pos]!r} after auth scheme")
    pos = _skip_ws(text, pos)
    while True:
        name_match = _TOKEN_RE.match(text, pos)
        if name_match is None:
            raise RemoteProtocolError(f"expected an auth-param name at offset {pos}")
        name = name_match.group().lower()
        pos = _skip_ws(text, name_match.end())
        if pos >= len(text) or text[pos] != "=":
            raise RemoteProtocolError(f"auth-param {name!r} has no '='")
        pos = _skip_ws(text, pos + 1)
        if pos < len(text) and text[pos] == '"':
            param_value, pos = _read_quoted_string(text, pos)
        else:
            value_match = _BARE_VALUE_RE.match(text, pos)
            if value_match is None:
                raise RemoteProtocolError(f"auth-param {name!r} has no value")
            param_value, pos = value_match.group(), value_match.end()
        # RFC 7235 §2.1 (which RFC 7616 builds on): each parameter name occurs once.
        if name in params:
            raise RemoteProtocolError(f"auth-param {name!r} repeated")
        params[name] = param_value
        pos = _skip_ws(text, pos)
        if pos == len(text):
            return scheme, params
        if text[pos] != ",":
            raise RemoteProtocolError(f"expected ',' between auth-params at offset {pos}")
        pos = _skip_ws(text, pos + 1)


def _skip_ws(text: str, pos: int) -> int:
    match = _WS_RE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _read_quoted_string(text: str, pos: int) -> tuple[str, int]:
    """Read a quoted-string starting at the opening DQUOTE; return its content and the end offset.

    RFC 3261 §25.1: quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F); qdtext excludes controls.
    """
    chars: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(chars), pos + 1
        if char == "\\":
            if pos + 1 >= len(text):
                break
            escaped = text[pos + 1]
            if escaped in "\r\n" or ord(escaped) > 0x7F:
                raise RemoteProtocolError("invalid quoted-pair in auth header")
            chars.append(escaped)
            pos += 2
            continue
        if (ord(char) < 0x20 and char != "\t") or char == "\x7f":
            raise RemoteProtocolError("control character in quoted string")
        chars.append(char)
        pos += 1
    raise RemoteProtocolError("unterminated quoted string in auth header")


def _quote(value: str) -> str:
    """Render `value` as an RFC 3261 §25.1 quoted-string."""
    if any(char in "\r\n" for char in value):
        raise LocalProtocolError("CR/LF cannot be carried in an auth header quoted-string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------
# Digest computation (RFC 7616 §3.4.1-§3.4.3)
# ---------------------------------------------------------------------------------------------


def _hex_digest(algorithm_key: str, data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.new(_HASH_NAMES[algorithm_key], raw).hexdigest()


def _digest_response(
    *,
    algorithm_key: str,
    username: str,
    realm: str,
    password: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str,
    cnonce: str,
    body: bytes = b"",
) -> str:
    """The `response` value: KD(H(A1), nonce ":" [nc ":" cnonce ":" qop ":"] H(A2))."""
    ha1 = _hex_digest(algorithm_key, f"{username}:{realm}:{password}")
    if algorithm_key.endswith("-SESS"):
        # RFC 7616 §3.4.2: the -sess variants bind A1 to this nonce and cnonce.
        ha1 = _hex_digest(algorithm_key, f"{ha1}:{nonce}:{cnonce}")
    if qop is not None and qop.lower() == "auth-int":
        # RFC 7616 §3.4.3: auth-int covers the body too.
        a2 = f"{method}:{uri}:{_hex_digest(algorithm_key, body)}"
    else:
        a2 = f"{method}:{uri}"
    ha2 = _hex_digest(algorithm_key, a2)
    if qop is None:
        # RFC 2069 compatibility (RFC 3261 §22.4): no nc/cnonce in the digest.
        return _hex_digest(algorithm_key, f"{ha1}:{nonce}:{ha2}")
    return _hex_digest(algorithm_key, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _qop_options(params: dict[str, str]) -> list[str] | None:
    """The challenge's qop list (RFC 7616 §3.3: quoted, comma-separated), or None if absent."""
    if "qop" not in params:
        return None
    return [option.strip(" \t").lower() for option in params["qop"].split(",") if option.strip()]


# ---------------------------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AuthResult:
    """Outcome of `DigestChallenger.verify`.

    `username` is set only when `ok`. `stale` means the credentials were right but the nonce can
    no longer be used (expired, or its nonce-count was replayed or forgotten): re-challenge with
    `stale=True` so the phone retries without prompting its user (RFC 7616 §3.3). `reason` is for
    logs only and never distinguishes an unknown user from a wrong password.
    """

    ok: bool
    username: str | None
    stale: bool
    reason: str


def _reject(reason: str, *, stale: bool = False) -> AuthResult:
    return AuthResult(ok=False, username=None, stale=stale, reason=reason)


class DigestChallenger:
    """Issues Digest challenges for one realm and verifies the credentials sent back.

    Nonces are stateless: base64url(issue time ‖ salt ‖ HMAC-SHA256(key, issue time ‖ salt ‖
    realm ‖ source)), so any nonce can be checked for origin, age and the address it was issued
    to without storing it: an answer captured on the wire and replayed from another address is
    refused (RFC 7616 §5.5 leaves the nonce's content to the server for exactly this). Only nonces
    that have been used successfully are tracked, to enforce increasing nonce-counts (RFC 7616
    §3.4: nc, replay protection); that table is bounded by `max_tracked_nonces` and entries older
    than the TTL are forgotten.

    Responses without qop (RFC 2069 style) carry no nonce-count: they are refused unless the
    caller of `verify` allows them for that user (an old phone), and then each nonce is good for
    one request only.
    """

    def __init__(
        self,
        realm: str,
        *,
        key: bytes,
        nonce_ttl_s: float = NONCE_TTL_S,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        max_tracked_nonces: int = MAX_TRACKED_NONCES,
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if not key:
            raise LocalProtocolError("the nonce HMAC key must not be empty")
        if not nonce_ttl_s > 0:
            raise LocalProtocolError("nonce_ttl_s must be positive")
        if max_tracked_nonces < 1:
            raise LocalProtocolError("max_tracked_nonces must be at least 1")
        if not algorithms:
            raise LocalProtocolError("at least one digest algorithm is required")
        keys: list[str] = []
        for algorithm in algorithms:
            algorithm_key = algorithm.upper()
            if algorithm_key not in _HASH_NAMES:
                raise LocalProtocolError(f"unsupported digest algorithm {algorithm!r}")
            if algorithm_key not in keys:
                keys.append(algorithm_key)
        # Offered in the configured order (RFC 7616 §3.7: the server lists its preference first).
        # The default puts the strongest first; a deployment with MD5-only phones that read just
        # the first challenge (many do, SIPp among them) configures MD5 first.
        self._algorithm_keys = tuple(keys)
        self.realm = realm
        self._key = key
        self._nonce_ttl_s = float(nonce_ttl_s)
        self._max_tracked_nonces = max_tracked_nonces
        self._token_bytes = token_bytes
        self._opaque = _b64(hmac.new(key, b"opaque\x00" + realm.encode("utf-8"), "sha256").digest())
        # Same computation path for unknown users as for known ones; this password never matches
        # a real one because nobody knows it.
        self._dummy_password = token_bytes(DUMMY_PASSWORD_BYTES).hex()
        # nonce -> (issue time, highest nc accepted); insertion order is least recently used first.
        self._last_nc: dict[str, tuple[float, int]] = {}
        # Nonces issued at or before this time that are not in `_last_nc` may have lost their
        # nc record to eviction, so they are refused as stale rather than risk a replay.
        self._forgotten_until = -math.inf

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms offered, in the configured order and canonical spelling."""
        return tuple(_CANONICAL_ALGORITHMS[k] for k in self._algorithm_keys)

    @property
    def tracked_nonce_count(self) -> int:
        """How many nonces currently have a nonce-count record (bounded by max_tracked_nonces)."""
        return len(self._last_nc)

    def challenge(
        self, now: float, *, stale: bool = False, source: str = "",
        algorithms: tuple[str, ...] | None = None,
    ) -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values, one per algorithm, in preference order.

        All values share one fresh nonce (as in the RFC 7616 §3.9.1 example), bound to the
        `source` address the answer must come from. `algorithms` narrows the configured ones for
        one user (an extension set to SHA-256 alone, say).
        """
        nonce = self._make_nonce(now, source)
        values: list[str] = []
        for algorithm_key in self._offered(algorithms):
            value = (
                f"Digest realm={_quote(self.realm)}, nonce={_quote(nonce)}, "
                f"opaque={_quote(self._opaque)}, "
                f'algorithm={_CANONICAL_ALGORITHMS[algorithm_key]}, qop="auth"'
            )
            if stale:
                value += ", stale=true"
            values.append(value)
        return values

    def verify(
        self,
        method: str,
        authorization: str,
        lookup_password: Callable[[str], str | None],
        now: float,
        *,
        request_uri: str,
        source: str = "",
        algorithms: Callable[[str], tuple[str, ...] | None] = lambda username: None,
        without_qop: Callable[[str], bool] = lambda username: False,
    ) -> AuthResult:
        """Check an Authorization / Proxy-Authorization value sent in a `method` request for
        `request_uri` from the address `source`.

        `algorithms(username)` narrows what is accepted for that user as in `challenge`;
        `without_qop(username)` says whether they may answer in the RFC 2069 form. Never raises
        for anything the peer sent: a malformed header is an `ok=False` result.
        """
        try:
            scheme, params = parse_auth_header(authorization)
        except RemoteProtocolError as exc:
            return _reject(f"malformed credentials: {exc}")
        if scheme.lower() != "digest":
            return _reject(f"scheme {scheme!r} is not Digest")
        for required in ("username", "realm", "nonce", "uri", "response"):
            if required not in params:
                return _reject(f"missing {required!r} parameter")
        username = params["username"]
        nonce = params["nonce"]
        uri = params["uri"]
        if params.get("userhash", "false").lower() == "true":
            return _reject("userhash is not supported")  # RFC 7616 §3.4.4; we never offer it
        # RFC 3261 §22.4: credentials are only good for the realm we challenged with.
        if params["realm"] != self.realm:
            return _reject("realm mismatch")
        # RFC 7616 §3.3: algorithm absent means MD5.
        algorithm_key = params.get("algorithm", "MD5").upper()
        if algorithm_key not in self._offered(algorithms(username)):
            return _reject(f"algorithm {params.get('algorithm', 'MD5')!r} not offered")
        if "opaque" in params and not hmac.compare_digest(
            params["opaque"].encode("utf-8"), self._opaque.encode("ascii")
        ):
            return _reject("opaque mismatch")
        # RFC 3261 §22.4, RFC 7616 §3.4.6: the digest-uri must be the Request-URI, or an answer
        # captured for one request (INVITE sip:200) would authorise another (INVITE sip:00...).
        if uri != request_uri:
            return _reject("uri does not match the Request-URI")
        issued_at = self._check_nonce(nonce, source)
        if issued_at is None:
            return _reject("nonce not issued by us to this address")

        qop = params.get("qop")
        nc_text = params.get("nc", "")
        cnonce = params.get("cnonce", "")
        nc_value = 0
        if qop is not None:
            # We only ever offer qop="auth" (auth-int would need the body here).
            if qop.lower() != "auth":
                return _reject(f"qop {qop!r} not offered")
            if not _NC_RE.fullmatch(nc_text) or not cnonce:
                return _reject("qop=auth requires nc (8 hex digits) and cnonce")
            nc_value = int(nc_text, 16)
        elif algorithm_key.endswith("-SESS"):
            return _reject("-sess algorithm without qop has no cnonce")
        elif "nc" in params or "cnonce" in params:
            # RFC 7616 §3.4: nc and cnonce must not be sent without qop.
            return _reject("nc/cnonce without qop")
        elif not without_qop(username):
            # We always offer qop="auth"; an answer without it has no nonce count, so nothing
            # tells a replay from the original (RFC 7616 §3.3 makes qop mandatory for clients).
            return _reject("answer without qop")

        known_password = lookup_password(username)
        # Unknown users take the same path as wrong passwords so neither the result nor the time
        # taken reveals whether the account exists.
        password = known_password if known_password is not None else self._dummy_password
        expected = _digest_response(
            algorithm_key=algorithm_key,
            username=username,
            realm=self.realm,
            password=password,
            nonce=nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc_text,
            cnonce=cnonce,
        )
        matches = hmac.compare_digest(
            params["response"].lower().encode("utf-8"), expected.encode("ascii")
        )
        if not matches or known_password is None:
            return _reject(f"wrong credentials for user {username!r}")

        # Staleness is reported only once the digest is right (RFC 7616 §3.3: stale means the
        # client knows the password but used an old nonce).
        self._forget_expired_front(now)
        age_s = now - issued_at
        if age_s < 0 or age_s > self._nonce_ttl_s:
            self._last_nc.pop(nonce, None)
            return _reject("nonce expired", stale=True)
        record = self._last_nc.get(nonce)
        if record is None and issued_at <= self._forgotten_until:
            return _reject("nonce-count record was evicted", stale=True)
        last_nc = record[1] if record is not None else 0
        if qop is None:
            # No nonce count to go by: the nonce itself is good for one request.
            nc_value, nc_text = 1, "once"
        # RFC 7616 §3.4: the server detects replays by nc not increasing. The digest was right,
        # so ask for a fresh nonce instead of prompting the user.
        if nc_value <= last_nc:
            return _reject(f"nonce-count {nc_text} replayed", stale=True)
        self._remember_nc(nonce, issued_at, nc_value, now)
        return AuthResult(ok=True, username=username, stale=False, reason="ok")

    def _offered(self, algorithms: tuple[str, ...] | None) -> tuple[str, ...]:
        """The configured algorithm keys, narrowed to `algorithms` when given (and never to
        nothing: a user's list that shares none with the box's falls back to the box's)."""
        if algorithms is None:
            return self._algorithm_keys
        wanted = tuple(dict.fromkeys(a.upper() for a in algorithms if a.upper() in _HASH_NAMES))
        return wanted or self._algorithm_keys

    def _make_nonce(self, now: float, source: str) -> str:
        stamp = _NONCE_TS.pack(float(now))
        salt = self._token_bytes(NONCE_SALT_BYTES)
        if len(salt) != NONCE_SALT_BYTES:
            raise LocalProtocolError("token_bytes returned the wrong number of bytes")
        return _b64(stamp + salt + self._nonce_mac(stamp, salt, source))

    def _nonce_mac(self, stamp: bytes, salt: bytes, source: str) -> bytes:
        message = stamp + salt + self.realm.encode("utf-8") + b"\x00" + source.encode("utf-8")
        return hmac.new(self._key, message, "sha256").digest()

    def _check_nonce(self, nonce: str, source: str) -> float | None:
        """The issue time of one of our nonces issued to `source`, or None if we did not."""
        try:
            raw = base64.urlsafe_b64decode(_pad_b64(nonce.encode("ascii")))
        except (UnicodeEncodeError, binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_RAW_BYTES or _b64(raw) != nonce:
            return None
        stamp = raw[: _NONCE_TS.size]
        salt = raw[_NONCE_TS.size : _NONCE_TS.size + NONCE_SALT_BYTES]
        mac = raw[_NONCE_TS.size + NONCE_SALT_BYTES :]
        if not hmac.compare_digest(mac, self._nonce_mac(stamp, salt, source)):
            return None
        issued_at: float = _NONCE_TS.unpack(stamp)[0]
        return issued_at

    def _is_expired(self, issued_at: float, now: float) -> bool:
        age_s = now - issued_at
        return age_s < 0 or age_s > self._nonce_ttl_s

    def _forget_expired_front(self, now: float) -> None:
        """Cheaply drop expired records from the least recently used end."""
        while self._last_nc:
            nonce, (issued_at, _) = next(iter(self._last_nc.items()))
            if not self._is_expired(issued_at, now):
                return
            del self._last_nc[nonce]

    def _remember_nc(self, nonce: str, issued_at: float, nc_value: int, now: float) -> None:
        self._last_nc.pop(nonce, None)
        # The table is in order of last use, so expired nonces gather at the front: drop them
        # from there. Scanning the whole table instead, once it was full, cost a full pass per
        # new nonce — at 150 calls/s a 10,000-entry scan per INVITE, which stalled the loop.
        while self._last_nc:
            old_nonce = next(iter(self._last_nc))
            if not self._is_expired(self._last_nc[old_nonce][0], now):
                break
            del self._last_nc[old_nonce]
        while len(self._last_nc) >= self._max_tracked_nonces:
            old_nonce = next(iter(self._last_nc))
            old_issued_at, _ = self._last_nc.pop(old_nonce)
            self._forgotten_until = max(self._forgotten_until, old_issued_at)
            LOGGER.debug("nonce-count table full; forgot a nonce issued at %s", old_issued_at)
        self._last_nc[nonce] = (issued_at, nc_value)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _pad_b64(encoded: bytes) -> bytes:
    return encoded + b"=" * (-len(encoded) % 4)


# ---------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------


def _usable_challenge(value: str) -> int | None:
    """Strength of a challenge we can answer, or None if we cannot."""
    try:
        scheme, params = parse_auth_header(value)
    except RemoteProtocolError:
        return None
    if scheme.lower() != "digest" or "realm" not in params or "nonce" not in params:
        return None
    algorithm_key = params.get("algorithm", "MD5").upper()
    if algorithm_key not in _HASH_NAMES:
        return None
    qop_options = _qop_options(params)
    if qop_options is None:
        if algorithm_key.endswith("-SESS"):
            return None
    elif "auth" not in qop_options and "auth-int" not in qop_options:
        return None
    return _STRENGTH[algorithm_key]


def choose_challenge(values: list[str], algorithms: tuple[str, ...] | None = None) -> str | None:
    """Pick the Digest challenge to answer among WWW-/Proxy-Authenticate values.

    With `algorithms` (the trunk's setting, in preference order) the first of those the server
    offers wins and nothing else is answered; without, the strongest we support (SHA-256 beats
    MD5). Among equals the topmost wins, which is the server's preference (RFC 8760 §2.4,
    RFC 7616 §3.7). Unknown schemes, unknown algorithms and malformed values are ignored.
    Returns None if nothing is usable.
    """
    rank: dict[str, int] | None = None
    if algorithms is not None:
        keys = [a.upper() for a in algorithms]
        rank = {key: len(keys) - i for i, key in enumerate(keys)}
    best: str | None = None
    best_strength = 0
    for value in values:
        strength = _usable_challenge(value)
        if strength is not None and rank is not None:
            strength = rank.get(_challenge_algorithm(value))
        if strength is not None and strength > best_strength:
            best, best_strength = value, strength
    return best


def _challenge_algorithm(value: str) -> str:
    return parse_auth_header(value)[1].get("algorithm", "MD5").upper()


def build_authorization(
    challenge_value: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge_value`.

    qop=auth is used when offered, auth-int only when it is the sole option (then `body` is
    hashed), and the RFC 2069 form when the challenge has no qop (then `cnonce` and `nc` are not
    sent). Raises `RemoteProtocolError` if the challenge is malformed or cannot be answered, and
    `LocalProtocolError` for an out-of-range `nc` or an empty `cnonce`.
    """
    scheme, params = parse_auth_header(challenge_value)
    if scheme.lower() != "digest":
        raise RemoteProtocolError(f"cannot answer a {scheme!r} challenge")
    for required in ("realm", "nonce"):
        if required not in params:
            raise RemoteProtocolError(f"Digest challenge without {required!r}")
    algorithm = params.get("algorithm")
    algorithm_key = (algorithm or "MD5").upper()
    if algorithm_key not in _HASH_NAMES:
        raise RemoteProtocolError(f"unsupported digest algorithm {algorithm!r}")
    qop_options = _qop_options(params)
    qop: str | None
    if qop_options is None:
        if algorithm_key.endswith("-SESS"):
            raise RemoteProtocolError("-sess algorithm offered without qop")
        qop = None
    elif "auth" in qop_options:
        qop = "auth"
    elif "auth-int" in qop_options:
        qop = "auth-int"
    else:
        raise RemoteProtocolError(f"no supported qop in {params['qop']!r}")
    if qop is not None:
        if not 1 <= nc <= NC_MAX:
            raise LocalProtocolError(f"nonce-count {nc} out of range")
        if not cnonce:
            raise LocalProtocolError("cnonce must not be empty")
    nc_text = f"{nc:08x}"
    realm = params["realm"]
    nonce = params["nonce"]
    response = _digest_response(
        algorithm_key=algorithm_key,
        username=username,
        realm=realm,
        password=password,
        nonce=nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        body=body,
    )
    # RFC 3261 §25.1 dig-resp: algorithm, qop and nc are tokens, the rest quoted-strings.
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
    ]
    if algorithm is not None:
        parts.append(f"algorithm={algorithm}")
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    if "opaque" in params:
        # RFC 7616 §3.3: opaque is returned unchanged.
        parts.append(f"opaque={_quote(params['opaque'])}")
    return "Digest " + ", ".join(parts)
