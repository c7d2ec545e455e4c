"""SIP URIs, name-addr values, Via and CSeq: the structured header values of RFC 3261 §19, §20, §25.

Parsing is strict where RFC 4475 expects a rejection (unbalanced quotes, spaces inside an addr-spec,
unquoted display names with separators) and liberal where it expects acceptance (linear white space
around separators, escapes, unknown parameters). Every parse failure raises `RemoteProtocolError`
so the transport can answer 400 and carry on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from .errors import RemoteProtocolError

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_TOKEN_FULL_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
_LWS_AROUND_SLASH_RE = re.compile(r"\s*/\s*")
_WS_RE = re.compile(r"\s+")
_PORT_RE = re.compile(r"\d{1,5}\Z")
_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)\Z")

SIP_SCHEMES = frozenset({"sip", "sips"})


def is_token(text: str) -> bool:
    return _TOKEN_FULL_RE.match(text) is not None


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 §19.1.4: escaped and unescaped forms compare equal)."""
    if "%" not in text:
        return text
    # The text may carry bytes that were not UTF-8 (kept as surrogates by the parser).
    return unquote_to_bytes(text.encode("utf-8", "surrogateescape")).decode(
        "utf-8", "surrogateescape"
    )


def split_quoted(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes and angle brackets (quoted pairs honoured)."""
    if sep not in text:
        return [text]
    parts: list[str] = []
    depth_angle = 0
    in_quotes = False
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            depth_angle += 1
        elif ch == ">":
            depth_angle = max(0, depth_angle - 1)
        elif ch == sep and depth_angle == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if in_quotes:
        raise RemoteProtocolError("unterminated quoted string")
    parts.append(text[start:])
    return parts


def parse_params(text: str, *, what: str) -> dict[str, str | None]:
    """Parse `;name[=value]` generic parameters (the leading ';' already removed per item).

    Names are case-insensitive (RFC 3261 §7.3.1) and stored lower-cased; values keep their case.
    An empty parameter (`;;`) is a syntax error (RFC 4475 §3.1.2.1).
    """
    params: dict[str, str | None] = {}
    if not text.strip():
        return params
    for item in split_quoted(text, ";"):
        item = item.strip()
        if not item:
            raise RemoteProtocolError(f"empty parameter in {what}")
        name, eq, value = item.partition("=")
        name = name.strip()
        if not is_token(name):
            raise RemoteProtocolError(f"bad parameter name {name!r} in {what}")
        if eq:
            value = value.strip()
            if not value:
                raise RemoteProtocolError(f"empty value for parameter {name!r} in {what}")
            if not (value.startswith('"') or is_token(value) or _is_host_like(value)):
                raise RemoteProtocolError(f"bad value for parameter {name!r} in {what}")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def _is_host_like(value: str) -> bool:
    # received/maddr may carry IPv6 references; gen-value = token / host / quoted-string.
    return value.startswith("[") and value.endswith("]")


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(frozen=True, slots=True, kw_only=True)
class SipUri:
    """A sip: or sips: URI (RFC 3261 §19.1). `user` keeps its escapes; `user_unescaped` decodes."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    @property
    def transport(self) -> str:
        value = self.params.get("transport")
        return (value or "udp").lower()

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers:
            out.append("?" + self.headers)
        return "".join(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherUri:
    """An absolute URI of any other scheme (tel:, http:, ...) kept opaque (RFC 3261 §19.1.6)."""

    scheme: str
    opaque: str

    @property
    def user_unescaped(self) -> str | None:
        # tel: URIs carry the number as their whole opaque part up to the first parameter.
        if self.scheme.lower() == "tel":
            return unescape(self.opaque.split(";", 1)[0])
        return None

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | OtherUri


def parse_uri(text: str) -> Uri:
    """Parse an absolute URI; sip/sips are decomposed, other schemes kept opaque."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.match(scheme):
        raise RemoteProtocolError(f"not an absolute URI: {text!r}")
    if any(c in text for c in " \t\r\n<>\""):
        raise RemoteProtocolError(f"illegal character in URI {text!r}")
    if scheme.lower() not in SIP_SCHEMES:
        return OtherUri(scheme=scheme, opaque=rest)
    scheme = scheme.lower()
    user: str | None = None
    password: str | None = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo, hostpart = rest[:at], rest[at + 1 :]
        user, pcolon, pw = userinfo.partition(":")
        if pcolon:
            password = pw
        if not user:
            raise RemoteProtocolError(f"empty user in URI {text!r}")
    else:
        hostpart = rest
    hostpart, qmark, headers = hostpart.partition("?")
    if qmark and not headers:
        raise RemoteProtocolError(f"empty headers in URI {text!r}")
    hostport, _, paramtext = hostpart.partition(";")
    params = parse_params(paramtext, what="URI") if paramtext else {}
    host, port = _split_hostport(hostport, text)
    return SipUri(
        scheme=scheme, user=user, password=password, host=host, port=port, params=params,
        headers=headers,
    )


def _split_hostport(hostport: str, whole: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise RemoteProtocolError(f"bad IPv6 reference in {whole!r}")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise RemoteProtocolError(f"bad host in {whole!r}")
        portstr = rest[1:] if rest else ""
        has_port = bool(rest)
    else:
        host, has_colon, portstr = hostport.partition(":")
        has_port = bool(has_colon)
    if not host or not _HOST_RE.match(host):
        raise RemoteProtocolError(f"bad host {host!r} in {whole!r}")
    port: int | None = None
    if has_port:
        if not _PORT_RE.match(portstr) or not 0 < int(portstr) < 65536:
            raise RemoteProtocolError(f"bad port in {whole!r}")
        port = int(portstr)
    return host.lower(), port


@dataclass(frozen=True, slots=True, kw_only=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI, header parameters (§20.10)."""

    display: str | None = None
    uri: Uri
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_params(self, **params: str | None) -> NameAddr:
        merged = dict(self.params)
        merged.update(params)
        return NameAddr(display=self.display, uri=self.uri, params=merged)

    def __str__(self) -> str:
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(text: str) -> NameAddr:
    """Parse `name-addr / addr-spec` followed by header parameters (RFC 3261 §20.10, §25.1).

    Without angle brackets, everything after the first ';' is a header parameter, not a URI
    parameter (RFC 4475 §3.3.12 cparam01), and the URI may not carry headers (regbadct).
    """
    text = text.strip()
    if not text:
        raise RemoteProtocolError("empty address")
    display: str | None = None
    if text[0] == '"':
        end = _end_of_quoted(text, 0)
        display = text[: end + 1]
        rest = text[end + 1 :].lstrip()
        if not rest.startswith("<"):
            raise RemoteProtocolError("quoted display name without <addr-spec>")
    else:
        lt = text.find("<")
        if lt > 0:
            # RFC 3261 §25.1: display-name = *(token LWS) / quoted-string
            words = text[:lt].split()
            if not all(is_token(w) for w in words):
                raise RemoteProtocolError(f"unquoted display name with separators: {text[:lt]!r}")
            display = " ".join(words) or None
            rest = text[lt:]
        else:
            rest = text
    if rest.startswith("<"):
        gt = rest.find(">")
        if gt < 0:
            raise RemoteProtocolError("unterminated <addr-spec>")
        spec = rest[1:gt]
        if spec != spec.strip():
            raise RemoteProtocolError("white space inside <addr-spec>")
        uri = parse_uri(spec)
        after = rest[gt + 1 :].strip()
    else:
        spec, semi, after = rest.partition(";")
        spec = spec.strip()
        if "?" in spec or "," in spec:
            raise RemoteProtocolError("addr-spec with headers or commas must use <>")
        uri = parse_uri(spec)
        after = semi + after
    params: dict[str, str | None] = {}
    if after:
        if not after.startswith(";"):
            raise RemoteProtocolError(f"junk after address: {after!r}")
        params = parse_params(after[1:], what="address")
    return NameAddr(display=display, uri=uri, params=params)


def _end_of_quoted(text: str, start: int) -> int:
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    raise RemoteProtocolError("unterminated quoted string")


@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One Via value (RFC 3261 §20.42): transport, sent-by and parameters."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


def parse_via(text: str) -> Via:
    text = _LWS_AROUND_SLASH_RE.sub("/", text.strip())
    proto, sep, rest = text.partition(" ")
    if not sep:
        # sent-protocol LWS sent-by: the LWS is mandatory (§25.1), but may be a tab or a fold.
        parts = _WS_RE.split(text, maxsplit=1)
        if len(parts) != 2:
            raise RemoteProtocolError(f"bad Via {text!r}")
        proto, rest = parts
    pieces = proto.split("/")
    if len(pieces) != 3 or pieces[0].upper() != "SIP" or not is_token(pieces[2]):
        raise RemoteProtocolError(f"bad Via protocol {proto!r}")
    if pieces[1] != "2.0":
        raise RemoteProtocolError(f"bad Via version {proto!r}")
    sent_by, has_params, paramtext = rest.strip().partition(";")
    host, port = _split_hostport(sent_by.strip(), text)
    params = parse_params(paramtext, what="Via") if has_params else {}
    return Via(transport=pieces[2].upper(), host=host, port=port, params=params)


MAX_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31


@dataclass(frozen=True, slots=True, kw_only=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or not is_token(parts[1]):
        raise RemoteProtocolError(f"bad CSeq {text!r}")
    seq = int(parts[0])
    if seq > MAX_CSEQ:
        raise RemoteProtocolError(f"CSeq number too large: {parts[0]}")
    return CSeq(seq=seq, method=parts[1])
