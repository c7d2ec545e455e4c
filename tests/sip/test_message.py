"""Message building, serialisation and TCP framing (RFC 3261 §7, §8.2.6, §18.3)."""

from __future__ import annotations

import pytest

from firmware.sip.errors import LocalProtocolError, RemoteProtocolError
from firmware.sip.message import (
    FramingError,
    Headers,
    Request,
    Response,
    StreamFramer,
    error_response_bytes,
    make_response,
    parse_message,
)
from firmware.sip.uri import parse_uri

INVITE = (
    b"INVITE sip:200@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc;rport\r\n"
    b"Record-Route: <sip:proxy.example.com;lr>\r\n"
    b"From: <sip:101@127.0.0.1>;tag=a1\r\n"
    b"To: <sip:200@127.0.0.1>\r\n"
    b"Call-ID: c1@host\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:101@127.0.0.1:5070>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\nv=0\n"
)


def parse_invite() -> Request:
    message = parse_message(INVITE)
    assert isinstance(message, Request)
    return message


def test_response_copies_via_from_callid_cseq_and_adds_to_tag() -> None:
    response = make_response(parse_invite(), 180, to_tag="xyz")
    again = parse_message(response.to_bytes())
    assert again.headers.get_all("Via") == ["SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc;rport"]
    assert again.to.tag == "xyz" and again.from_.tag == "a1"
    assert again.cseq.method == "INVITE" and again.call_id == "c1@host"
    assert again.headers.get("Record-Route") == "<sip:proxy.example.com;lr>"


def test_100_trying_carries_no_to_tag() -> None:
    response = make_response(parse_invite(), 100, to_tag="xyz")
    assert parse_message(response.to_bytes()).to.tag is None


def test_content_length_always_matches_the_body() -> None:
    request = parse_invite()
    request.body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    again = parse_message(request.to_bytes())
    assert again.headers.get("Content-Length") == str(len(request.body))


def test_remove_first_pops_the_top_via_of_a_combined_header() -> None:
    request = parse_invite()
    request.headers.set("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2")
    assert request.headers.remove_first("Via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert request.top_via.host == "b"


def test_framer_cuts_back_to_back_messages_and_partial_tail() -> None:
    framer = StreamFramer()
    messages = framer.feed(INVITE + INVITE[:30])
    assert messages == [INVITE]
    assert framer.feed(INVITE[30:]) == [INVITE]


def test_framer_waits_for_a_body_announced_but_not_arrived() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE[:-2]) == []
    assert framer.feed(INVITE[-2:]) == [INVITE]


def test_framer_counts_double_crlf_keepalives() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.keepalive_pings == 1


def test_framer_refuses_a_message_without_content_length() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE.replace(b"Content-Length: 4\r\n", b"")) == []
    assert isinstance(framer.error, FramingError)


def test_framer_refuses_a_negative_content_length() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE.replace(b"Content-Length: 4", b"Content-Length: -999")) == []
    assert isinstance(framer.error, FramingError)


def test_framer_returns_messages_framed_before_a_fault() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE + INVITE + b"junk\r\n\r\n") == [INVITE, INVITE]
    assert framer.error is not None
    assert framer.feed(INVITE) == []  # a broken stream frames nothing more


def test_error_response_is_built_from_a_request_that_fails_to_parse() -> None:
    broken = INVITE.replace(b"INVITE sip:200@127.0.0.1", b"INVITE <sip:200@127.0.0.1>")
    with pytest.raises(RemoteProtocolError):
        parse_message(broken)
    data = error_response_bytes(broken, 400)
    assert data is not None
    response = parse_message(data)
    assert getattr(response, "status", None) == 400
    assert response.call_id == "c1@host"


def test_no_error_response_for_a_broken_response() -> None:
    assert error_response_bytes(b"SIP/2.0 99999 x\r\nVia: SIP/2.0/UDP a\r\n\r\n", 400) is None


def test_garbage_is_rejected_without_crashing() -> None:
    for garbage in (b"", b"\x00\xff" * 50, b"hello world", b"INVITE\r\n\r\n"):
        with pytest.raises(RemoteProtocolError):
            parse_message(garbage)


# --- header injection (issue 9) -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["x\r\nCall-Info: <sip:x>", "x\nInjected: 1", "x\rY", "x\x00y"])
def test_the_writer_refuses_a_line_break_or_nul_in_a_header_value(value: str) -> None:
    message = Request("OPTIONS", parse_uri("sip:box"), Headers([
        ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("From", "<sip:a@h>;tag=1"),
        ("To", "<sip:box>"), ("Call-ID", "c"), ("CSeq", "1 OPTIONS"), ("Subject", value),
    ]))
    with pytest.raises(LocalProtocolError):
        message.to_bytes()


def test_the_writer_refuses_a_line_break_in_the_start_line() -> None:
    response = Response(200, "OK\r\nInjected: 1", Headers([("Call-ID", "c")]))
    with pytest.raises(LocalProtocolError):
        response.to_bytes()


def test_a_bare_cr_in_a_received_head_is_a_400() -> None:
    data = (b"OPTIONS sip:box SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"From: <sip:a@h>;tag=1\rInjected: 1\r\nTo: <sip:box>\r\nCall-ID: c\r\n"
            b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as caught:
        parse_message(data)
    assert caught.value.status_hint == 400
    # ...and the stateless answer echoes nothing it cannot write safely.
    reply = error_response_bytes(data, 400)
    assert reply is None or b"Injected" not in reply


def test_an_escaped_user_with_bytes_that_are_not_utf8_unescapes() -> None:
    uri = parse_uri("sip:a%41\udc9f@host")
    assert uri.user_unescaped == "aA\udc9f"
