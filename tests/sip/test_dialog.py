"""Dialogs (RFC 3261 §12): creation on both sides, requests within a dialog, target refresh."""

from __future__ import annotations

import pytest

from firmware.sip.dialog import Dialog, dialog_id_of
from firmware.sip.errors import LocalProtocolError, RemoteProtocolError
from firmware.sip.message import Request, Response, make_response, parse_message
from firmware.sip.uri import parse_name_addr, parse_uri

VIA = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnew1"
OUR_CONTACT = "<sip:gw@192.0.2.1:5060>"


def invite(
    *,
    record_route: tuple[str, ...] = (),
    contact: str | None = "<sip:101@10.0.0.5:5060>",
    cseq: int = 5,
    method: str = "INVITE",
    to_tag: str | None = None,
) -> Request:
    lines = [
        f"{method} sip:200@gw.example SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKinv1",
        *(f"Record-Route: {rr}" for rr in record_route),
        'From: "Alice" <sip:101@gw.example>;tag=alice1',
        "To: <sip:200@gw.example>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: call-1",
        f"CSeq: {cseq} {method}",
        *([f"Contact: {contact}"] if contact else []),
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def ok(request: Request, *, contact: str | None = "<sip:200@198.51.100.9:5060>") -> Response:
    headers = [("Contact", contact)] if contact else []
    message = parse_message(
        make_response(request, 200, to_tag="bob1", headers=headers).to_bytes()
    )
    assert isinstance(message, Response)
    return message


def uas(**kwargs: object) -> Dialog:
    return Dialog.as_uas(
        invite(**kwargs), local_tag="gw1", local_contact=OUR_CONTACT  # type: ignore[arg-type]
    )


def uac(record_route: tuple[str, ...] = ()) -> Dialog:
    request = invite()
    response = ok(invite(record_route=record_route))
    return Dialog.as_uac(request, response, local_contact=OUR_CONTACT)


def route_values(request: Request) -> list[str]:
    return request.headers.get_list("Route")


# --- creation (§12.1) ---------------------------------------------------------------------


def test_uas_dialog_takes_the_record_route_in_order() -> None:
    dialog = uas(record_route=("<sip:p1.example;lr>", "<sip:p2.example;lr>"))
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p1.example;lr", "sip:p2.example;lr"]


def test_uas_dialog_state_comes_from_the_request() -> None:
    dialog = uas()
    assert dialog.id == ("call-1", "gw1", "alice1")
    assert str(dialog.remote_target) == "sip:101@10.0.0.5:5060"
    assert dialog.remote_seq == 5 and dialog.local_seq == 0
    assert str(dialog.local_uri) == "<sip:200@gw.example>"
    assert str(dialog.remote_uri) == '"Alice" <sip:101@gw.example>'  # tag kept apart
    assert not dialog.secure


def test_uac_dialog_takes_the_record_route_reversed() -> None:
    dialog = uac(record_route=("<sip:p1.example;lr>", "<sip:p2.example;lr>"))
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p2.example;lr", "sip:p1.example;lr"]


def test_uac_dialog_state_comes_from_the_request_and_the_response() -> None:
    dialog = uac()
    assert dialog.id == ("call-1", "alice1", "bob1")
    assert str(dialog.remote_target) == "sip:200@198.51.100.9:5060"
    assert dialog.local_seq == 5 and dialog.remote_seq is None


def test_uac_dialog_cannot_be_established_from_a_2xx_without_contact() -> None:
    with pytest.raises(RemoteProtocolError):
        Dialog.as_uac(invite(), ok(invite(), contact=None), local_contact=OUR_CONTACT)


def test_uas_dialog_with_an_rfc2543_caller_without_contact_targets_its_from_uri() -> None:
    # RFC 4475 §3.4.1: backwards compatibility; RFC 2543 sent requests to the From address.
    dialog = uas(contact=None)
    assert dialog.remote_target == dialog.remote_uri.uri


# --- requests we send (§12.2.1.1) -----------------------------------------------------------


def test_each_new_request_takes_the_next_local_cseq() -> None:
    dialog = uac()
    assert str(dialog.create_request("INFO", via=VIA).cseq) == "6 INFO"
    assert str(dialog.create_request("BYE", via=VIA).cseq) == "7 BYE"
    assert dialog.local_seq == 7


def test_uas_first_request_starts_from_an_empty_local_cseq() -> None:
    assert uas().create_request("BYE", via=VIA).cseq.seq == 1


def test_request_carries_dialog_tags_call_id_and_via() -> None:
    request = uac().create_request("BYE", via=VIA)
    again = parse_message(request.to_bytes())
    assert again.from_.tag == "alice1" and again.to.tag == "bob1"
    assert again.from_.display == '"Alice"'
    assert again.call_id == "call-1"
    assert again.headers.get("Via") == VIA
    assert again.headers.get("Max-Forwards") == "70"


def test_loose_routing_keeps_the_remote_target_in_the_request_uri() -> None:
    dialog = uac(record_route=("<sip:p1.example;lr>", "<sip:p2.example;lr>"))
    request = dialog.create_request("BYE", via=VIA)
    assert str(request.uri) == "sip:200@198.51.100.9:5060"
    assert route_values(request) == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]


def test_without_a_route_set_there_is_no_route_header() -> None:
    request = uac().create_request("BYE", via=VIA)
    assert str(request.uri) == "sip:200@198.51.100.9:5060"
    assert route_values(request) == []


def test_strict_routing_puts_the_first_route_in_the_request_uri_and_the_target_last() -> None:
    dialog = uas(record_route=("<sip:strict.example;method=INVITE>", "<sip:p2.example;lr>"))
    request = dialog.create_request("BYE", via=VIA)
    assert str(request.uri) == "sip:strict.example"  # method= is not allowed there
    assert route_values(request) == ["<sip:p2.example;lr>", "<sip:101@10.0.0.5:5060>"]


def test_ack_keeps_the_invite_cseq_and_does_not_move_the_local_cseq() -> None:
    dialog = uac(record_route=("<sip:p1.example;lr>",))
    ack = dialog.create_ack(5, via=VIA)
    assert ack.method == "ACK" and str(ack.cseq) == "5 ACK"
    assert route_values(ack) == ["<sip:p1.example;lr>"]
    assert dialog.create_request("BYE", via=VIA).cseq.seq == 6


def test_ack_and_cancel_are_not_new_dialog_requests() -> None:
    dialog = uac()
    for method in ("ACK", "CANCEL"):
        with pytest.raises(LocalProtocolError):
            dialog.create_request(method, via=VIA)


def test_target_refresh_requests_carry_our_contact() -> None:
    dialog = uac()
    assert dialog.create_request("INVITE", via=VIA).headers.get("Contact") == OUR_CONTACT
    assert dialog.create_request("UPDATE", via=VIA).headers.get("Contact") == OUR_CONTACT
    assert dialog.create_request("BYE", via=VIA).headers.get("Contact") is None


def test_extra_headers_and_body_are_added() -> None:
    request = uac().create_request(
        "INFO", via=VIA, headers=[("Content-Type", "application/dtmf-relay")], body=b"Signal=5"
    )
    assert request.content_type == "application/dtmf-relay" and request.body == b"Signal=5"


# --- requests the peer sends (§12.2.2) ------------------------------------------------------


def test_request_with_a_lower_cseq_is_rejected_with_500() -> None:
    dialog = uas(cseq=5)
    with pytest.raises(RemoteProtocolError) as caught:
        dialog.receive_request(invite(method="BYE", cseq=4, to_tag="gw1"))
    assert caught.value.status_hint == 500
    assert dialog.remote_seq == 5


def test_request_with_a_higher_cseq_moves_the_remote_cseq() -> None:
    dialog = uas(cseq=5)
    dialog.receive_request(invite(method="INFO", cseq=9, to_tag="gw1"))
    assert dialog.remote_seq == 9


def test_ack_is_not_checked_against_the_remote_cseq() -> None:
    dialog = uas(cseq=5)
    dialog.receive_request(invite(method="INFO", cseq=6, to_tag="gw1"))
    dialog.receive_request(invite(method="ACK", cseq=5, to_tag="gw1"))
    assert dialog.remote_seq == 6


def test_re_invite_with_a_contact_refreshes_the_remote_target() -> None:
    dialog = uas()
    dialog.receive_request(invite(cseq=6, to_tag="gw1", contact="<sip:101@10.0.0.99:5070>"))
    assert dialog.remote_target == parse_uri("sip:101@10.0.0.99:5070")


def test_request_that_is_not_a_target_refresh_leaves_the_remote_target() -> None:
    dialog = uas()
    dialog.receive_request(
        invite(method="INFO", cseq=6, to_tag="gw1", contact="<sip:101@10.0.0.99:5070>")
    )
    assert str(dialog.remote_target) == "sip:101@10.0.0.5:5060"


def test_2xx_to_our_re_invite_refreshes_the_remote_target() -> None:
    dialog = uac()
    reinvite = dialog.create_request("INVITE", via=VIA)
    dialog.update_from_response(ok(reinvite, contact="<sip:200@198.51.100.77>"))
    assert str(dialog.remote_target) == "sip:200@198.51.100.77"


def test_error_response_to_our_re_invite_leaves_the_remote_target() -> None:
    dialog = uac()
    reinvite = dialog.create_request("INVITE", via=VIA)
    failure = parse_message(
        make_response(
            reinvite, 488, headers=[("Contact", "<sip:200@198.51.100.77>")]
        ).to_bytes()
    )
    assert isinstance(failure, Response)
    dialog.update_from_response(failure)
    assert str(dialog.remote_target) == "sip:200@198.51.100.9:5060"


# --- finding a dialog -----------------------------------------------------------------------


def test_incoming_request_finds_the_uas_dialog() -> None:
    dialog = uas()
    bye = invite(method="BYE", cseq=6, to_tag="gw1")
    assert dialog_id_of(bye, incoming=True) == dialog.id


def test_incoming_response_finds_the_uac_dialog() -> None:
    dialog = uac()
    assert dialog_id_of(ok(invite()), incoming=True) == dialog.id


def test_request_we_send_maps_to_its_own_dialog() -> None:
    dialog = uac()
    assert dialog_id_of(dialog.create_request("BYE", via=VIA), incoming=False) == dialog.id


def test_incoming_request_without_our_tag_is_not_within_a_dialog() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        dialog_id_of(invite(), incoming=True)
    assert caught.value.status_hint == 481


def test_local_uri_keeps_display_name_and_parameters_except_the_tag() -> None:
    dialog = uac()
    assert dialog.local_uri == parse_name_addr('"Alice" <sip:101@gw.example>')
