"""RFC 4475 torture messages through the parser: accepted, or rejected with the stated code.

The expected outcome of every file comes from tests/sip/torture/README.md; the wire-level
behaviour (responses actually sent by the daemon) is covered in tests/e2e/test_torture_wire.py.
"""

from __future__ import annotations

import pytest

from firmware.sip.errors import LocalProtocolError, RemoteProtocolError
from firmware.sip.message import (
    Headers,
    Request,
    Response,
    echoed_address,
    make_response,
    parse_message,
)
from firmware.sip.uri import OtherUri, SipUri, unescape
from tests.sip import TORTURE_DIR

ACCEPTED_REQUESTS = [
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq", "semiuri",
    "transports", "mpart01", "badbranch", "insuf_never", "unkscm", "novelsc", "unksm2", "bext01",
    "invut", "regaut01", "zeromf", "cparam01", "cparam02", "regescrt", "sdp01", "inv2543",
    "baddate", "regbadct",
]
ACCEPTED_REQUESTS.remove("insuf_never")
ACCEPTED_RESPONSES = ["unreason", "noreason", "bcast"]
REJECTED = {
    "badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "quotbal": 400, "ltgtruri": 400,
    "lwsruri": 400, "lwsstart": 400, "trws": 400, "escruri": 400, "badaspec": 400, "baddn": 400,
    "badvers": 505, "mismatch01": 400, "mismatch02": 501, "insuf": 400, "multi01": 400,
    "mcl01": 400,
}
DISCARDED_RESPONSES = ["scalarlg", "bigcode"]


def load(name: str) -> bytes:
    path = TORTURE_DIR / f"{name}.dat"
    assert path.exists(), f"torture fixture missing: {path}"
    return path.read_bytes()


def test_every_torture_file_has_an_expectation() -> None:
    names = {p.stem for p in TORTURE_DIR.glob("*.dat")}
    covered = set(ACCEPTED_REQUESTS) | set(ACCEPTED_RESPONSES) | set(REJECTED)
    covered |= set(DISCARDED_RESPONSES)
    assert names == covered
    assert len(names) == 49


@pytest.mark.parametrize("name", ACCEPTED_REQUESTS)
def test_valid_request_is_accepted(name: str) -> None:
    message = parse_message(load(name))
    assert isinstance(message, Request)
    assert message.call_id


@pytest.mark.parametrize("name", ACCEPTED_RESPONSES)
def test_valid_response_is_accepted(name: str) -> None:
    assert isinstance(parse_message(load(name)), Response)


@pytest.mark.parametrize(("name", "status"), sorted(REJECTED.items()))
def test_invalid_request_is_rejected_with_status(name: str, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(load(name))
    assert info.value.status_hint == status


@pytest.mark.parametrize("name", DISCARDED_RESPONSES)
def test_invalid_response_is_refused(name: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_message(load(name))


def test_wsinv_folding_and_compact_forms_are_understood() -> None:
    message = parse_message(load("wsinv"))
    assert isinstance(message, Request)
    assert message.to.tag == "1918181833n"
    assert message.from_.tag == "98asjd8"
    assert message.cseq.seq == 9 and message.cseq.method == "INVITE"
    assert [v.transport for v in message.vias] == ["UDP", "TCP", "UDP"]
    assert message.vias[1].branch == "z9hG4bK9ikj8"
    assert message.headers.get("Max-Forwards") == "0068"
    assert message.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert message.contacts[0].params["q"] == "0.33"
    assert len(message.body) == 150


def test_esc01_escapes_equal_their_decoded_characters() -> None:
    message = parse_message(load("esc01"))
    assert isinstance(message, Request) and isinstance(message.uri, SipUri)
    assert message.uri.user_unescaped == "sips:user@example.com"
    to_uri = message.to.uri
    assert isinstance(to_uri, SipUri) and to_uri.user_unescaped == "user"


def test_escnull_keeps_nul_and_two_bindings() -> None:
    message = parse_message(load("escnull"))
    contacts = message.contacts
    assert len(contacts) == 2
    first = contacts[0].uri
    assert isinstance(first, SipUri) and first.user_unescaped == "\x00"
    to_uri = message.to.uri
    assert isinstance(to_uri, SipUri) and to_uri.user_unescaped == "null-\x00-null"


def test_esc02_escaped_method_is_not_register() -> None:
    message = parse_message(load("esc02"))
    assert isinstance(message, Request)
    assert message.method == "RE%47IST%45R"


def test_dblreq_ignores_bytes_after_content_length() -> None:
    message = parse_message(load("dblreq"))
    assert isinstance(message, Request)
    assert message.method == "REGISTER" and message.body == b""


def test_semiuri_user_contains_the_semicolon_parameter() -> None:
    message = parse_message(load("semiuri"))
    assert isinstance(message, Request) and isinstance(message.uri, SipUri)
    assert message.uri.user_unescaped == "user;par=u@example.net"
    assert message.uri.host == "example.com"


def test_mpart01_binary_body_is_framed_by_content_length() -> None:
    message = parse_message(load("mpart01"))
    assert b"\x00" in message.body
    assert len(message.body) == int(message.headers.get("Content-Length") or "0")


def test_inv2543_body_is_rest_of_datagram() -> None:
    data = load("inv2543")
    message = parse_message(data)
    assert message.body.startswith(b"v=0") and data.endswith(message.body)


def test_unkscm_request_uri_is_kept_opaque() -> None:
    message = parse_message(load("unkscm"))
    assert isinstance(message, Request) and isinstance(message.uri, OtherUri)


def test_cparam01_unbracketed_parameter_belongs_to_the_contact() -> None:
    contact = parse_message(load("cparam01")).contacts[0]
    assert "unknownparam" in contact.params
    assert isinstance(contact.uri, SipUri) and "unknownparam" not in contact.uri.params


def test_cparam02_bracketed_parameter_belongs_to_the_uri() -> None:
    contact = parse_message(load("cparam02")).contacts[0]
    assert isinstance(contact.uri, SipUri) and "unknownparam" in contact.uri.params


def test_regescrt_binding_keeps_the_escaped_header() -> None:
    contact = parse_message(load("regescrt")).contacts[0]
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.headers == "Route=%3Csip:sip.example.com%3E"


def test_regbadct_contact_with_header_but_no_brackets_is_refused() -> None:
    message = parse_message(load("regbadct"))
    with pytest.raises(RemoteProtocolError):
        _ = message.contacts


def test_non_utf8_bytes_survive_a_round_trip() -> None:
    message = parse_message(load("intmeth"))
    # The box writes no NUL (header injection): the To display name's quoted-pair NUL goes.
    message.headers.set("To", echoed_address(message.headers.get("To") or ""))
    again = parse_message(message.to_bytes())
    assert again.headers.get("extensionHeader-!.%*+_`'~") == message.headers.get(
        "extensionHeader-!.%*+_`'~"
    )
    assert again.from_.params == message.from_.params


def test_a_quoted_nul_is_accepted_but_never_written_back() -> None:
    message = parse_message(load("intmeth"))  # RFC 4475 §3.1.1.3: valid
    with pytest.raises(LocalProtocolError):
        message.to_bytes()
    response = make_response(message, 501, to_tag="t")
    assert b"\x00" not in response.to_bytes()
    assert response.to.uri == message.to.uri


@pytest.mark.parametrize("name", sorted(n for n in ACCEPTED_REQUESTS + ACCEPTED_RESPONSES
                                        if n != "intmeth"))
def test_serialised_message_parses_to_the_same_headers(name: str) -> None:
    message = parse_message(load(name))
    again = parse_message(message.to_bytes())
    assert without_length(again.headers) == without_length(message.headers)
    assert again.body == message.body


def without_length(headers: Headers) -> list[tuple[str, str]]:
    return [item for item in headers if item[0] != "Content-Length"]


def test_unescape_handles_plain_text_without_percent() -> None:
    assert unescape("plain") == "plain"
