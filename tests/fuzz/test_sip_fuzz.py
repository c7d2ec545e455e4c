"""The SIP parser fuzzed (issue 16): requests and responses built from valid parts with headers
mutated (dropped, repeated, replaced, cut, renamed), and raw bytes. Whatever arrives, the parser
and every typed accessor either work or raise the documented `RemoteProtocolError`; the
best-effort error response and the overload screen never raise; a parsed message can be
written back out or is refused with `LocalProtocolError` (the header-injection guard)."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from firmware.core import Gateway
from firmware.core.overload import is_new_work, shed_response
from firmware.sip.errors import LocalProtocolError, RemoteProtocolError
from firmware.sip.message import (
    KNOWN_METHODS,
    FramingError,
    Request,
    Response,
    StreamFramer,
    error_response_bytes,
    parse_message,
)
from firmware.sip.transaction import Address
from tests.core.network import AFTER_EVERY_TIMER_S, PHONE_ADDRESSES, PROVIDER, office
from tests.fuzz.conftest import FUZZ
from tests.fuzz.strategies import nasty_text, token

VALID_HEADERS: list[tuple[str, str]] = [
    ("Via", "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-fuzz;rport"),
    ("Max-Forwards", "70"),
    ("From", "\"Caller\" <sip:101@192.0.2.1>;tag=f1"),
    ("To", "<sip:200@192.0.2.1>"),
    ("Call-ID", "fuzz-1@198.51.100.7"),
    ("CSeq", "1 INVITE"),
    ("Contact", "<sip:101@198.51.100.7:5060;transport=udp>;expires=60"),
    ("Expires", "3600"),
    ("Record-Route", "<sip:proxy.example;lr>"),
    ("Route", "<sip:192.0.2.1;lr>"),
    ("Require", "replaces"),
    ("Supported", "timer, replaces"),
    ("Accept", "application/sdp"),
    ("Authorization", 'Digest username="101", realm="linebox", nonce="abc", '
                      'uri="sip:200@192.0.2.1", response="0123456789abcdef0123456789abcdef"'),
    ("Content-Type", "application/sdp"),
]
COMPACT = {"Via": "v", "From": "f", "To": "t", "Call-ID": "i", "Contact": "m",
           "Content-Type": "c", "Content-Length": "l", "Supported": "k"}
URIS = ["sip:200@192.0.2.1", "sip:+74950000200@192.0.2.1;user=phone", "tel:+74950000200",
        "sips:[2001:db8::1]:5061", "sip:%41@h", "urn:service:sos", "sip:", "<sip:x>"]
STRANGER = Address("udp", "198.51.100.7", 5060)
SDP = (b"v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")


@st.composite
def mutated_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    headers = list(VALID_HEADERS)
    for _ in range(draw(st.integers(0, 6))):
        if not headers:
            break
        index = draw(st.integers(0, len(headers) - 1))
        name, value = headers[index]
        action = draw(st.sampled_from(["drop", "repeat", "replace", "cut", "append", "rename",
                                       "compact", "fold", "empty"]))
        if action == "drop":
            del headers[index]
        elif action == "repeat":
            headers.insert(index, (name, value))
        elif action == "replace":
            headers[index] = (name, draw(nasty_text))
        elif action == "cut":
            headers[index] = (name, value[:draw(st.integers(0, len(value)))])
        elif action == "append":
            headers[index] = (name, value + draw(nasty_text))
        elif action == "rename":
            headers[index] = (draw(st.one_of(token, nasty_text)), value)
        elif action == "compact":
            headers[index] = (COMPACT.get(name, name.upper()), value)
        elif action == "fold":
            headers[index] = (name, value.replace(" ", "\r\n ", 1))
        else:
            headers[index] = (name, "")
    return headers


@st.composite
def structured_messages(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        method = draw(st.one_of(st.sampled_from(sorted(KNOWN_METHODS)), token))
        uri = draw(st.one_of(st.sampled_from(URIS), nasty_text))
        version = draw(st.sampled_from(["SIP/2.0", "SIP/2.0", "SIP/3.0", "sip/2.0", ""]))
        start = f"{method} {uri} {version}"
    else:
        status = draw(st.one_of(st.integers(100, 699), st.integers(-5, 10_000)))
        reason = draw(st.one_of(st.just("OK"), nasty_text))
        start = f"SIP/2.0 {status} {reason}"
    headers = draw(mutated_headers())
    body = draw(st.one_of(st.just(b""), st.just(SDP), st.binary(max_size=200)))
    length = draw(st.one_of(st.just(str(len(body))), st.just(""), nasty_text,
                            st.integers(-10, 10_000).map(str)))
    lines = [start, *(f"{name}: {value}" for name, value in headers)]
    if draw(st.booleans()):
        lines.append(f"Content-Length: {length}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8", "surrogateescape") + body


def exercise(data: bytes, *, stream: bool = False) -> None:
    """Everything the gateway does with a message before it decides anything."""
    assert isinstance(is_new_work(data), bool)
    shed_response(data)
    error_response_bytes(data, 400)
    try:
        message = parse_message(data, stream=stream)
    except RemoteProtocolError as error:
        assert 400 <= error.status_hint < 700
        return
    accessors = ["call_id", "cseq", "from_", "to", "vias", "top_via", "contacts",
                 "is_wildcard_contact", "record_routes", "content_type", "expires"]
    for name in accessors:
        with contextlib.suppress(RemoteProtocolError):
            getattr(message, name)
    if isinstance(message, Request):
        str(message.uri)
    # A value we would not write back out (CR/LF/NUL) is refused, not sent.
    with contextlib.suppress(LocalProtocolError):
        message.to_bytes()


@FUZZ
@given(structured_messages())
def test_structured_messages_parse_or_raise_the_protocol_error(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(structured_messages())
def test_the_overload_503_answers_the_request_it_sheds(data: bytes) -> None:
    """The quick 503 (a plain head echoed line by line) says what the careful one would."""
    reply = shed_response(data)
    try:
        request = parse_message(data)
        vias, call_id, cseq = request.headers.get_list("Via"), request.call_id, request.cseq
    except RemoteProtocolError:
        return  # the parser's 400 would have answered it; any 503 is best effort
    if not isinstance(request, Request):
        return
    assert reply is not None
    response = parse_message(reply)
    assert isinstance(response, Response) and response.status == 503
    assert response.headers.get_list("Via") == vias
    assert (response.call_id, response.cseq) == (call_id, cseq)
    assert response.to.tag and response.headers.get("Retry-After") == "5"


@FUZZ
@given(st.binary(max_size=3000))
def test_raw_bytes_parse_or_raise_the_protocol_error(data: bytes) -> None:
    exercise(data)
    exercise(b"INVITE sip:x@y SIP/2.0\r\n" + data)


@FUZZ
@given(st.lists(structured_messages(), min_size=1, max_size=3), st.integers(1, 200))
def test_a_stream_framed_in_any_segments_yields_messages_or_the_framing_error(
        messages: list[bytes], segment: int) -> None:
    stream = b"".join(messages)
    framer = StreamFramer()
    for start in range(0, len(stream), segment):
        for data in framer.feed(stream[start:start + segment]):
            exercise(data, stream=True)
        if framer.error is not None:
            # Unframeable: the transport answers the error and closes the connection.
            assert isinstance(framer.error, FramingError)
            return


@FUZZ
@given(st.lists(st.one_of(structured_messages(), st.binary(max_size=300)), min_size=1,
                max_size=4))
def test_the_gateway_takes_any_datagram_without_an_internal_error(
        datagrams: list[bytes]) -> None:
    gateway = office(registered=("101",)).net.gateway
    now = 0.0
    for data in datagrams:
        for source in (STRANGER, PHONE_ADDRESSES["101"], PROVIDER):
            gateway.receive(data, source, now)  # as a stranger, a phone, the provider
            drain(gateway)
    # Every timer the datagrams set runs out (what is sent back is not the question here).
    for _ in range(10_000):
        when = gateway.get_timer()
        if when is None or when > AFTER_EVERY_TIMER_S:
            break
        now = max(now, when)
        gateway.handle_timer(now)
        drain(gateway)
    assert gateway.stats["internal_errors"] == 0


def drain(gateway: Gateway) -> None:
    while gateway.next_event() is not None:
        pass
