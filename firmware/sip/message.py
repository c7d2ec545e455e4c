"""SIP messages: parse bytes into `Request`/`Response`, serialise them back, frame streams.

RFC 3261 §7 (message format), §7.3.1 (folding, compact forms, comma-separated values), §18.3
(Content-Length framing on stream transports) and §20 (header fields). Bodies stay bytes; header
text is decoded as UTF-8 with `surrogateescape`, so bytes that are not UTF-8 (RFC 4475 §3.1.1.2)
survive a parse/serialise round trip unchanged. The parser validates what the transaction and
dialog layers rely on (Via, From, To, Call-ID, CSeq, Content-Length) and leaves the rest to be
parsed on first use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TypeVar

from .errors import LocalProtocolError, RemoteProtocolError
from .uri import (
    CSeq,
    NameAddr,
    Uri,
    Via,
    is_token,
    parse_cseq,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_quoted,
)

SIP_VERSION = "SIP/2.0"
MAX_HEAD_BYTES = 64 * 1024  # a head larger than this is an attack, not a phone
MAX_BODY_BYTES = 1024 * 1024

# RFC 3261 §7.3.3 and the IANA registry: compact forms.
COMPACT_FORMS = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
    "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events", "x": "Session-Expires",
    "y": "Identity", "a": "Accept-Contact", "j": "Reject-Contact", "d": "Request-Disposition",
}

_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
        "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
        "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
        "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To",
        "Max-Forwards", "Min-Expires", "MIME-Version", "Organization", "P-Asserted-Identity",
        "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "Reason",
        "Record-Route", "Refer-To", "Referred-By", "Reply-To", "Require", "Retry-After", "Route",
        "RSeq", "RAck", "Server", "Session-Expires", "Subject", "Supported", "Timestamp", "To",
        "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate", "Min-SE",
        "Diversion", "Remote-Party-ID", "Privacy", "Identity", "Path", "Service-Route",
    )
}

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1); the others keep commas.
LIST_HEADERS = frozenset({
    "via", "contact", "route", "record-route", "allow", "supported", "require", "proxy-require",
    "unsupported", "accept", "accept-encoding", "accept-language", "allow-events",
    "content-encoding", "in-reply-to", "path", "service-route",
})

# Headers that must appear once in a request (RFC 3261 §8.1.1; RFC 4475 §3.3.9 multi01).
SINGLE_HEADERS = ("call-id", "from", "to", "cseq", "max-forwards")

KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
})

REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

_LINE_SPLIT_RE = re.compile(r"\r?\n")
_VERSION_RE = re.compile(r"SIP/\d+\.\d+\Z", re.IGNORECASE)
_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")
_UNSAFE_HEAD_CHARS_RE = re.compile(r"[\r\n\x00]")
# RFC 3261 §25.1 allows a control character only as a quoted-pair inside a quoted string (RFC 4475
# §3.1.1.3 intmeth: "BEL:\^G NUL:\^@ DEL:\^?"); a NUL anywhere else is no SIP at all.
_BARE_NUL_RE = re.compile(r"(?<!\\)\x00")
_QUOTED_CONTROL_RE = re.compile(r"\\?[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

T = TypeVar("T")


def canonical_name(name: str) -> str:
    lower = name.lower()
    if lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    return _CANONICAL.get(lower, name)


_KEYS: dict[str, str] = {}
_MAX_CACHED_KEYS = 4096


def header_key(name: str) -> str:
    """The case-insensitive identity of a header name (compact forms expanded), cached: the
    same few dozen names come in every message."""
    try:
        return _KEYS[name]
    except KeyError:
        key = canonical_name(name).lower()
        if len(_KEYS) < _MAX_CACHED_KEYS:
            _KEYS[name] = key
        return key


class Headers:
    """Ordered header fields with case-insensitive lookup and a cache of parsed values.

    `_keys` runs parallel to `_items` with each name's lookup key, so a lookup compares
    strings without lower-casing every header of the message each time.
    """

    __slots__ = ("_items", "_keys", "_cache")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        self._keys: list[str] = []
        self._cache: dict[str, object] = {}
        for name, value in items or ():
            self.add(name, value)

    @classmethod
    def from_canonical(cls, items: list[tuple[str, str]]) -> Headers:
        """Headers from (canonical name, value) pairs, as the parser produces them."""
        headers = cls()
        headers._items = items
        headers._keys = [header_key(name) for name, _ in items]
        return headers

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        return header_key(name) in self._keys

    def copy(self) -> Headers:
        clone = Headers()
        clone._items = list(self._items)
        clone._keys = list(self._keys)
        return clone

    def get(self, name: str) -> str | None:
        key = header_key(name)
        keys = self._keys
        for i in range(len(keys)):
            if keys[i] == key:
                return self._items[i][1]
        return None

    def get_all(self, name: str) -> list[str]:
        """Every header line of that name, as written (commas not split)."""
        key = header_key(name)
        items = self._items
        return [items[i][1] for i, k in enumerate(self._keys) if k == key]

    def get_list(self, name: str) -> list[str]:
        """Every element of a comma-separated list header, across all its lines."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(item.strip() for item in split_quoted(value, ","))
        return out

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))
        self._keys.append(header_key(name))
        self._cache.clear()

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (canonical_name(name), value))
        self._keys.insert(0, header_key(name))
        self._cache.clear()

    def set(self, name: str, value: str) -> None:
        """Replace every line of that name with one line, kept at the first one's position."""
        key = header_key(name)
        if key not in self._keys:
            self.add(name, value)
            return
        first = self._keys.index(key)
        self._items[first] = (canonical_name(name), value)
        keep = [i for i, k in enumerate(self._keys) if k != key or i == first]
        self._items = [self._items[i] for i in keep]
        self._keys = [self._keys[i] for i in keep]
        self._cache.clear()

    def remove(self, name: str) -> None:
        key = header_key(name)
        keep = [i for i, k in enumerate(self._keys) if k != key]
        self._items = [self._items[i] for i in keep]
        self._keys = [self._keys[i] for i in keep]
        self._cache.clear()

    def remove_first(self, name: str) -> str | None:
        """Remove the first element of a list header (e.g. the top Via), keeping the rest."""
        key = header_key(name)
        if key not in self._keys:
            return None
        i = self._keys.index(key)
        n, v = self._items[i]
        parts = split_quoted(v, ",")
        if len(parts) > 1:
            self._items[i] = (n, ",".join(parts[1:]).strip())
        else:
            del self._items[i]
            del self._keys[i]
        self._cache.clear()
        return parts[0].strip()

    def parsed(self, key: str, build: Callable[[], T]) -> T:
        try:
            return self._cache[key]  # type: ignore[return-value]
        except KeyError:
            value = build()
            self._cache[key] = value
            return value


class Message:
    """What requests and responses share: headers, body and typed accessors."""

    __slots__ = ("headers", "body")

    def __init__(self, headers: Headers, body: bytes) -> None:
        self.headers = headers
        self.body = body

    # --- typed accessors (parsed once, cached until the headers change) -----------------
    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if value is None:
            raise RemoteProtocolError("missing Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        return self.headers.parsed("cseq", lambda: parse_cseq(self._required("CSeq")))

    @property
    def from_(self) -> NameAddr:
        return self.headers.parsed("from", lambda: parse_name_addr(self._required("From")))

    @property
    def to(self) -> NameAddr:
        return self.headers.parsed("to", lambda: parse_name_addr(self._required("To")))

    @property
    def vias(self) -> list[Via]:
        return self.headers.parsed(
            "via", lambda: [parse_via(v) for v in self.headers.get_list("Via")]
        )

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise RemoteProtocolError("missing Via")
        return vias[0]

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values; `*` (RFC 3261 §10.2.2) is not a name-addr: see `is_wildcard_contact`."""
        def build() -> list[NameAddr]:
            items = self.headers.get_list("Contact")
            if any(item == "*" for item in items):
                raise RemoteProtocolError("wildcard Contact where an address is required")
            for item in items:
                if not item:
                    raise RemoteProtocolError("empty Contact element")
            return [parse_name_addr(item) for item in items]
        return self.headers.parsed("contact", build)

    @property
    def is_wildcard_contact(self) -> bool:
        return self.headers.get_list("Contact") == ["*"]

    @property
    def record_routes(self) -> list[NameAddr]:
        return self.headers.parsed(
            "record-route",
            lambda: [parse_name_addr(v) for v in self.headers.get_list("Record-Route")],
        )

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else None

    @property
    def expires(self) -> int | None:
        value = self.headers.get("Expires")
        if value is None:
            return None
        value = value.strip()
        if not value.isdigit():
            raise RemoteProtocolError(f"bad Expires {value!r}")
        return int(value)

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise RemoteProtocolError(f"missing {name}")
        return value

    def _head_lines(self, start_line: str) -> list[str]:
        lines = [start_line]
        for name, value in self.headers:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return lines

    def _head_bytes(self, start_line: str) -> bytes:
        lines = self._head_lines(start_line)
        head = "\r\n".join(lines)
        # RFC 3261 §7.3.1: a header value ends at CRLF. A CR, LF or NUL inside a start line or a
        # value would start a header of someone else's choosing in the peer's parser (header
        # injection), whatever the value's origin: refuse to write it. One count over the
        # joined head instead of a check per value keeps the hot path cheap.
        breaks = len(lines) - 1
        if head.count("\n") != breaks or head.count("\r") != breaks or "\x00" in head:
            bad = next(line for line in lines if _UNSAFE_HEAD_CHARS_RE.search(line))
            raise LocalProtocolError(f"CR, LF or NUL in a header to send: {bad[:80]!r}")
        return (head + "\r\n\r\n").encode("utf-8", "surrogateescape")

    def to_bytes(self) -> bytes:
        raise NotImplementedError


class Request(Message):
    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: Uri, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        super().__init__(headers if headers is not None else Headers(), body)
        self.method = method
        self.uri = uri

    def to_bytes(self) -> bytes:
        return self._head_bytes(f"{self.method} {self.uri} {SIP_VERSION}") + self.body

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("status", "reason")

    def __init__(
        self, status: int, reason: str | None = None, headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers if headers is not None else Headers(), body)
        self.status = status
        self.reason = REASON_PHRASES.get(status, "Unknown") if reason is None else reason

    def to_bytes(self) -> bytes:
        return self._head_bytes(f"{SIP_VERSION} {self.status} {self.reason}") + self.body

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


# --------------------------------------------------------------------------------------------
# Parsing


def split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """Split at the empty line that ends the head; None when it has not arrived yet."""
    end = data.find(b"\r\n\r\n")
    if end >= 0 and b"\n\n" not in data[:end]:
        return data[:end], data[end + 4 :]
    match = _HEAD_END_RE.search(data)  # bare LFs somewhere: the careful way
    if match is None:
        return None
    return data[: match.start()], data[match.end() :]


_CANONICAL_NAMES: dict[str, str] = {}  # header names seen before, known to be tokens


def _canonical_token_name(name: str) -> str | None:
    canon = _CANONICAL_NAMES.get(name)
    if canon is not None:
        return canon
    if not is_token(name):
        return None
    canon = canonical_name(name)
    if len(_CANONICAL_NAMES) < _MAX_CACHED_KEYS:
        _CANONICAL_NAMES[name] = canon
    return canon


def _header_lines(head: str) -> tuple[str, list[tuple[str, str]]]:
    # Bare LF line ends (RFC 3261 §7 lets a recipient accept them) take the regex.
    bare_lf = "\n" in head.replace("\r\n", "")
    lines = _LINE_SPLIT_RE.split(head) if bare_lf else head.split("\r\n")
    start_line = lines[0]
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            # RFC 3261 §7.3.1: a line starting with white space continues the previous value.
            if not items:
                raise RemoteProtocolError("continuation line before any header")
            name, value = items[-1]
            items[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        canon = _canonical_token_name(name.rstrip(" \t")) if colon else None
        if canon is None:
            raise RemoteProtocolError(f"malformed header line {line[:40]!r}")
        items.append((canon, value.strip()))
    return start_line, items


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one whole message (a UDP datagram, or one framed by `StreamFramer`).

    On a datagram without Content-Length the body is the rest of the datagram (RFC 3261 §18.3,
    RFC 4475 §3.4.1 inv2543); bytes beyond Content-Length are ignored (§3.1.1.8 dblreq).
    """
    data = data.lstrip(b"\r\n")
    parts = split_head(data)
    if parts is None:
        head_bytes, rest = data, b""
    else:
        head_bytes, rest = parts
    if len(head_bytes) > MAX_HEAD_BYTES:
        raise RemoteProtocolError("message head too large", status_hint=513)
    head = head_bytes.decode("utf-8", "surrogateescape")
    # A NUL or a CR that does not end a line is no part of any SIP grammar (RFC 3261 §25.1), and
    # a value carrying one would end a line in some other parser down the way: refuse the message
    # here rather than carry the character into what the box sends on.
    if head.count("\r") != head.count("\r\n") or _BARE_NUL_RE.search(head):
        raise RemoteProtocolError("NUL or bare CR in the message head")
    start_line, items = _header_lines(head)
    headers = Headers.from_canonical(items)
    body = _frame_body(headers, rest, stream=stream)
    if start_line.startswith("SIP/"):
        return _parse_response(start_line, headers, body)
    return _parse_request(start_line, headers, body)


def content_length(headers: Headers) -> int | None:
    values = headers.get_all("Content-Length")
    if not values:
        return None
    stripped = {v.strip() for v in values}
    if len(stripped) > 1:
        raise RemoteProtocolError("conflicting Content-Length values")  # RFC 4475 mcl01
    value = stripped.pop()
    if not value.isdigit():
        raise RemoteProtocolError(f"bad Content-Length {value!r}")  # RFC 4475 ncl
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise RemoteProtocolError("body too large", status_hint=413)
    return length


def _frame_body(headers: Headers, rest: bytes, *, stream: bool) -> bytes:
    length = content_length(headers)
    if length is None:
        if stream:
            raise RemoteProtocolError("missing Content-Length on a stream transport")
        return rest
    if length > len(rest):
        raise RemoteProtocolError("Content-Length larger than the body")  # RFC 4475 clerr
    return rest[:length]


def _parse_request(start_line: str, headers: Headers, body: bytes) -> Request:
    parts = start_line.split(" ")
    if len(parts) != 3 or not all(parts):
        # RFC 4475 §3.1.2.7/8/10: extra or missing SP in the Request-Line (lwsruri, lwsstart, trws).
        raise RemoteProtocolError(f"malformed Request-Line {start_line[:80]!r}")
    method, uri_text, version = parts
    if version.upper() != SIP_VERSION:
        if _VERSION_RE.match(version):
            raise RemoteProtocolError(f"unsupported version {version}", status_hint=505)
        raise RemoteProtocolError(f"malformed SIP version {version!r}")
    if not is_token(method):
        raise RemoteProtocolError(f"bad method {method!r}")
    uri = parse_uri(uri_text)
    if getattr(uri, "headers", ""):
        # RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI (RFC 4475 escruri).
        raise RemoteProtocolError("headers in Request-URI")
    request = Request(method, uri, headers, body)
    _validate_common(request)
    for key in SINGLE_HEADERS:
        if len(headers.get_all(key)) > 1:
            raise RemoteProtocolError(f"more than one {canonical_name(key)} header")
    max_forwards = headers.get("Max-Forwards")
    if max_forwards is not None and not max_forwards.strip().isdigit():
        raise RemoteProtocolError("bad Max-Forwards")
    if request.cseq.method != method:
        # RFC 4475 §3.1.2.16/17: 400 for a known method, 501 preferred for an unknown one.
        status = 400 if method in KNOWN_METHODS else 501
        raise RemoteProtocolError("CSeq method does not match the Request-Line", status_hint=status)
    return request


def _parse_response(start_line: str, headers: Headers, body: bytes) -> Response:
    version, _, rest = start_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != SIP_VERSION:
        raise RemoteProtocolError(f"unsupported version {version!r}")
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
        raise RemoteProtocolError(f"bad status code {code!r}")  # RFC 4475 bigcode
    response = Response(int(code), reason, headers, body)
    _validate_common(response)
    return response


def _validate_common(message: Message) -> None:
    for name in ("Call-ID", "From", "To", "CSeq"):
        if message.headers.get(name) is None:
            raise RemoteProtocolError(f"missing {name}")  # RFC 4475 insuf
    if not message.headers.get_all("Via"):
        raise RemoteProtocolError("missing Via")
    _ = message.vias, message.from_, message.to, message.cseq


# --------------------------------------------------------------------------------------------
# Responses built by a UAS


def echoed_address(value: str) -> str:
    """A From/To value to echo in a response, without the control characters a quoted display
    name may legally carry (RFC 4475 intmeth): the box never writes a NUL (header injection), and
    display names take no part in matching From/To (RFC 3261 §19.3, §20.20), so the peer still
    recognises its own header."""
    return _QUOTED_CONTROL_RE.sub("", value) if _QUOTED_CONTROL_RE.search(value) else value


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Response:
    """A response to `request` per RFC 3261 §8.2.6.2: Via, From, Call-ID, CSeq copied; To gets a
    tag unless it has one (100 Trying carries none, §8.2.6.1); Record-Route copied in 1xx/2xx
    (§12.1.1)."""
    out = Headers()
    for value in request.headers.get_all("Via"):
        out.add("Via", value)
    out.add("From", echoed_address(request.headers.get("From") or ""))
    to_value = echoed_address(request.headers.get("To") or "")
    if to_tag is not None and status != 100 and request.to.tag is None:
        to_value = f"{to_value};tag={to_tag}"
    out.add("To", to_value)
    out.add("Call-ID", request.call_id)
    out.add("CSeq", request.headers.get("CSeq") or "")
    if status < 300 and status != 100:
        for value in request.headers.get_all("Record-Route"):
            out.add("Record-Route", value)
    for name, value in headers or ():
        out.add(name, value)
    return Response(status, reason, out, body)


def error_response_bytes(
    data: bytes, status: int, reason: str | None = None, *, to_tag: str = "stateless"
) -> bytes | None:
    """Best effort: a response to a request that failed to parse, built from its raw headers.

    RFC 3261 §8.2 wants an error response whenever the request is recognisable as one; without
    a start line that looks like a request or without Via we cannot route one, so None.
    """
    try:
        data = data.lstrip(b"\r\n")
        parts = split_head(data)
        head = (parts[0] if parts else data)[:MAX_HEAD_BYTES].decode("utf-8", "surrogateescape")
        lines = _LINE_SPLIT_RE.split(head)
        if not lines or lines[0].startswith("SIP/") or " " not in lines[0]:
            return None
        raw: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and raw:
                raw[-1] = (raw[-1][0], f"{raw[-1][1]} {line.strip()}")
                continue
            name, colon, value = line.partition(":")
            if colon:
                raw.append((canonical_name(name.strip()), value.strip()))
    except Exception:  # a best-effort path must never take the transport down
        return None
    headers = Headers()
    seen_single: set[str] = set()
    for name, value in raw:
        if name == "Via":
            headers.add(name, value)
        elif name in ("From", "To", "Call-ID", "CSeq") and name not in seen_single:
            seen_single.add(name)
            value = echoed_address(value)
            if name == "To" and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value};tag={to_tag}"  # §8.2.6.2: every final response has a To tag
            headers.add(name, value)
    if not headers.get_all("Via"):
        return None
    try:
        return Response(status, reason, headers).to_bytes()
    except LocalProtocolError:
        return None  # a bare CR or NUL in what we would echo: no answer rather than injection


# --------------------------------------------------------------------------------------------
# Stream framing (RFC 3261 §18.3)

# Bounds of one message on a stream. Phones' heads are 1-2 KiB and SDP a few hundred bytes; a
# head or body beyond these is a peer holding the box's memory, not a phone.
STREAM_MAX_HEAD_BYTES = 16 * 1024
STREAM_MAX_BODY_BYTES = 64 * 1024
# How far back a resumed head search starts: the end of a head (\r\n\r\n) may straddle segments.
_HEAD_END_OVERLAP = 3
_CR_LF = (0x0D, 0x0A)


class FramingError(RemoteProtocolError):
    """The stream cannot be re-synchronised: answer if possible, then close the connection."""

    def __init__(self, message: str, *, partial: bytes = b"", status_hint: int = 400) -> None:
        super().__init__(message, status_hint=status_hint)
        self.partial = partial


class StreamFramer:
    """Cuts a TCP byte stream into whole messages using Content-Length.

    `feed` returns every message framed so far. When the stream turns out to be unframeable
    (no or a bad Content-Length, an oversized head or body), the messages before the fault are
    still returned and `error` is set: the transport handles those, answers the error if it
    can, and closes the connection (RFC 3261 §18.3). Leading CRLFs are keep-alives (RFC 5626
    §3.5.1); `keepalive_pings` counts double-CRLF pings so the transport can answer each with
    a pong.

    The work is linear in the bytes fed: the search for the end of a head resumes where the
    previous feed stopped (`bytes_scanned` counts what it examined), and a head is parsed once,
    when it is complete. A head longer than `max_head_bytes` is refused with 513 Message Too
    Large (§21.5.13: the message length exceeds the server's capabilities; 431 is HTTP's, not
    SIP's), a Content-Length above `max_body_bytes` with 413 Request Entity Too Large
    (§21.4.11), both before the body is read, so no more than `max_buffered_bytes` of a message
    are ever held.
    """

    def __init__(
        self, *, max_head_bytes: int = STREAM_MAX_HEAD_BYTES,
        max_body_bytes: int = STREAM_MAX_BODY_BYTES,
    ) -> None:
        self.max_head_bytes = max_head_bytes
        self.max_body_bytes = max_body_bytes
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the current head already searched for its end
        self._length: int | None = None  # size of the current message once its head is read
        self.keepalive_pings = 0
        self.bytes_scanned = 0
        self.error: FramingError | None = None

    @property
    def max_buffered_bytes(self) -> int:
        """The most a framer holds between feeds: the largest head, its blank line, the
        largest body (a message is handed out as soon as its last byte is in)."""
        return self.max_head_bytes + 4 + self.max_body_bytes

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    @property
    def pending_bytes(self) -> int:
        """Bytes of a message begun but not complete (0 between messages and keep-alives)."""
        if not self._buffer or self._buffer[0] in _CR_LF:
            return 0
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self.error is not None:
            return []
        self._buffer += data
        messages: list[bytes] = []
        while True:
            if self._length is None:
                if self._scanned == 0 and not self._take_keepalives():
                    return messages
                if not self._read_head():
                    return messages
            assert self._length is not None
            if len(self._buffer) < self._length:
                return messages  # RFC 4475 clerr on TCP: wait for the rest
            messages.append(bytes(self._buffer[: self._length]))
            del self._buffer[: self._length]
            self._length = None

    def _take_keepalives(self) -> bool:
        """Drop the CRLFs before a message, counting double-CRLF pings; True when a message
        has begun. A trailing run is kept (at most 3 bytes): it may be half a ping."""
        buffer = self._buffer
        crlfs = 0
        while crlfs < len(buffer) and buffer[crlfs] in _CR_LF:
            crlfs += 1
        if not crlfs:
            return bool(buffer)
        run = bytes(buffer[:crlfs])
        self.keepalive_pings += run.count(b"\r\n\r\n")
        if crlfs < len(buffer):
            del buffer[:crlfs]
            return True
        last_ping = run.rfind(b"\r\n\r\n")
        tail = run[last_ping + 4 :] if last_ping >= 0 else run
        del buffer[: crlfs - len(tail[-_HEAD_END_OVERLAP:])]
        return False

    def _read_head(self) -> bool:
        """Look for the end of the head from where the last search stopped; once found, read
        Content-Length and set the message's size. False while the head is incomplete or
        when the stream failed (`error`)."""
        buffer = self._buffer
        start = max(0, self._scanned - _HEAD_END_OVERLAP)
        match = _HEAD_END_RE.search(buffer, start)
        self.bytes_scanned += (match.end() if match else len(buffer)) - start
        if match is None:
            self._scanned = len(buffer)
            if len(buffer) > self.max_head_bytes:
                self._fail("message head too large", bytes(buffer[: self.max_head_bytes]), 513)
            return False
        self._scanned = 0
        if match.start() > self.max_head_bytes:
            self._fail("message head too large", bytes(buffer[: self.max_head_bytes]), 513)
            return False
        head = bytes(buffer[: match.start()])
        try:
            _, items = _header_lines(head.decode("utf-8", "surrogateescape"))
            length = content_length(Headers.from_canonical(items))
            if length is None:
                raise RemoteProtocolError("missing Content-Length on a stream transport")
            if length > self.max_body_bytes:
                raise RemoteProtocolError("body too large", status_hint=413)
        except RemoteProtocolError as exc:
            self._fail(str(exc), head + b"\r\n\r\n", exc.status_hint)
            return False
        self._length = match.end() + length
        return True

    def _fail(self, reason: str, partial: bytes, status: int) -> None:
        self.error = FramingError(reason, partial=partial, status_hint=status)
        self._buffer.clear()


def require_request(message: Request | Response) -> Request:
    if not isinstance(message, Request):
        raise LocalProtocolError("expected a request")
    return message
