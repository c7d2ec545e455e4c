"""The registrar (RFC 3261 §10.3): bindings, their lifetimes, and where requests for them go.

Authentication is the gateway's job, so REGISTER requests go straight to `Registrar.register`.
Time is a number the test steps; nothing sleeps.
"""

from __future__ import annotations

import pytest

from firmware.registrar import (
    DEFAULT_EXPIRES_S,
    MAX_EXPIRES_S,
    MIN_EXPIRES_S,
    Binding,
    Registrar,
)
from firmware.sip.errors import RemoteProtocolError
from firmware.sip.message import Request, Response, parse_message
from firmware.sip.transaction import Address
from firmware.sip.uri import NameAddr, parse_name_addr
from tests.sip import TORTURE_DIR

PHONE = Address("udp", "10.0.0.11", 5060)
TAG = "registrar-tag"


def register_request(
    *contacts: str,
    expires: str | None = None,
    call_id: str = "reg-1@10.0.0.11",
    cseq: int = 1,
    user: str = "101",
) -> Request:
    lines = [
        "REGISTER sip:192.0.2.1 SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.11:5060;branch=z9hG4bKreg" + str(cseq),
        "Max-Forwards: 70",
        f"From: <sip:{user}@192.0.2.1>;tag=phone-tag",
        f"To: <sip:{user}@192.0.2.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *(f"Contact: {contact}" for contact in contacts),
        *([f"Expires: {expires}"] if expires is not None else []),
        "User-Agent: TestPhone/1.0",
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def register(
    registrar: Registrar, request: Request, now: float = 0.0, *, source: Address = PHONE,
    extension: str = "101",
) -> Response:
    return registrar.register(request, extension, source, now, to_tag=TAG)


def contact_texts(registrar: Registrar, now: float, extension: str = "101") -> list[str]:
    return sorted(b.contact_text for b in registrar.bindings(extension, now))


def remaining(registrar: Registrar, now: float, extension: str = "101") -> dict[str, float]:
    return {b.contact_text: b.expires_at - now for b in registrar.bindings(extension, now)}


def listed_contacts(response: Response) -> dict[str, str | None]:
    """The 200's Contact values: URI text -> expires parameter."""
    out: dict[str, str | None] = {}
    for value in response.headers.get_list("Contact"):
        contact = parse_name_addr(value)
        out[str(contact.uri)] = contact.params.get("expires")
    return out


def load_torture(name: str) -> Request:
    path = TORTURE_DIR / f"{name}.dat"
    assert path.exists(), f"torture fixture missing: {path}"
    message = parse_message(path.read_bytes())
    assert isinstance(message, Request)
    return message


# --- several contacts and their lifetimes (§10.3 steps 6-7) ----------------------------------


def test_every_contact_of_a_register_becomes_a_binding() -> None:
    registrar = Registrar()
    response = register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", "<sip:101@10.0.0.11:5062>", expires="600",
    ))
    assert response.status == 200
    assert contact_texts(registrar, 0.0) == [
        "sip:101@10.0.0.11:5060", "sip:101@10.0.0.11:5062",
    ]


def test_contacts_in_one_header_separated_by_commas_are_each_bound() -> None:
    registrar = Registrar()
    register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>, <sip:101@10.0.0.11:5062>", expires="600",
    ))
    assert len(registrar.bindings("101", 0.0)) == 2


def test_contact_expires_parameter_wins_over_the_expires_header() -> None:
    registrar = Registrar()
    register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>;expires=120", "<sip:101@10.0.0.11:5062>", expires="600",
    ))
    assert remaining(registrar, 0.0) == {
        "sip:101@10.0.0.11:5060": 120, "sip:101@10.0.0.11:5062": 600,
    }


def test_expires_header_applies_to_contacts_without_a_parameter() -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="900"))
    assert remaining(registrar, 0.0) == {"sip:101@10.0.0.11:5060": 900}


def test_default_expires_applies_without_header_or_parameter() -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>"))
    assert remaining(registrar, 0.0) == {"sip:101@10.0.0.11:5060": DEFAULT_EXPIRES_S}


def test_expires_zero_removes_only_that_binding() -> None:
    registrar = Registrar()
    register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", "<sip:101@10.0.0.11:5062>", expires="600", cseq=1,
    ))
    response = register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>;expires=0", cseq=2,
    ), now=10.0)
    assert response.status == 200
    assert contact_texts(registrar, 10.0) == ["sip:101@10.0.0.11:5062"]


def test_expires_zero_for_the_last_binding_unregisters_the_extension() -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="600", cseq=1))
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="0", cseq=2))
    assert not registrar.is_registered("101", 0.0)


def test_wildcard_contact_with_expires_zero_removes_every_binding() -> None:
    registrar = Registrar()
    register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", "<sip:101@10.0.0.11:5062>", expires="600", cseq=1,
    ))
    response = register(registrar, register_request("*", expires="0", cseq=2), now=5.0)
    assert response.status == 200
    assert registrar.bindings("101", 5.0) == []
    assert response.headers.get_list("Contact") == []


@pytest.mark.parametrize("expires", [None, "3600", "60"])
def test_wildcard_contact_without_expires_zero_is_a_400(expires: str | None) -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="600", cseq=1))
    with pytest.raises(RemoteProtocolError) as info:
        register(registrar, register_request("*", expires=expires, cseq=2))
    assert info.value.status_hint == 400
    assert contact_texts(registrar, 0.0) == ["sip:101@10.0.0.11:5060"]


def test_wildcard_contact_next_to_another_contact_is_a_400() -> None:
    registrar = Registrar()
    with pytest.raises(RemoteProtocolError) as info:
        register(registrar, register_request("*", "<sip:101@10.0.0.11:5060>", expires="0"))
    assert info.value.status_hint == 400


# --- lifetime limits (§10.3 step 7, §21.4.17) --------------------------------------------------


@pytest.mark.parametrize("expires", ["1", str(MIN_EXPIRES_S - 1)])
def test_expires_below_the_minimum_is_refused_with_423_and_min_expires(expires: str) -> None:
    registrar = Registrar()
    response = register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires=expires))
    assert response.status == 423
    assert response.headers.get("Min-Expires") == str(MIN_EXPIRES_S)
    assert registrar.bindings("101", 0.0) == []


def test_too_brief_contact_parameter_refuses_the_whole_request() -> None:
    registrar = Registrar()
    response = register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", "<sip:101@10.0.0.11:5062>;expires=10", expires="600",
    ))
    assert response.status == 423
    assert registrar.bindings("101", 0.0) == []


def test_expires_equal_to_the_minimum_is_accepted() -> None:
    registrar = Registrar()
    response = register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", expires=str(MIN_EXPIRES_S),
    ))
    assert response.status == 200


def test_expires_above_the_maximum_is_clamped_to_it() -> None:
    registrar = Registrar()
    response = register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", expires=str(MAX_EXPIRES_S * 10),
    ))
    assert remaining(registrar, 0.0) == {"sip:101@10.0.0.11:5060": MAX_EXPIRES_S}
    assert listed_contacts(response) == {"sip:101@10.0.0.11:5060": str(MAX_EXPIRES_S)}


def test_non_numeric_expires_parameter_is_a_400() -> None:
    registrar = Registrar()
    with pytest.raises(RemoteProtocolError) as info:
        register(registrar, register_request("<sip:101@10.0.0.11:5060>;expires=soon"))
    assert info.value.status_hint == 400


# --- ordering of refreshes (§10.3 step 7) ------------------------------------------------------


@pytest.mark.parametrize("cseq", [5, 4])
def test_same_call_id_without_a_higher_cseq_is_a_500(cseq: int) -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="600", cseq=5))
    response = register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", expires="900", cseq=cseq,
    ), now=1.0)
    assert response.status == 500


def test_out_of_order_register_leaves_the_binding_unchanged() -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="600", cseq=5))
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="0", cseq=4))
    assert remaining(registrar, 0.0) == {"sip:101@10.0.0.11:5060": 600}


def test_same_call_id_with_a_higher_cseq_refreshes_the_binding() -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="600", cseq=5))
    response = register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", expires="600", cseq=6,
    ), now=300.0)
    assert response.status == 200
    assert remaining(registrar, 300.0) == {"sip:101@10.0.0.11:5060": 600}


def test_different_call_id_updates_the_binding_whatever_its_cseq() -> None:
    registrar = Registrar()
    register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", expires="600", call_id="first@phone", cseq=50,
    ))
    response = register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", expires="900", call_id="second@phone", cseq=1,
    ), now=10.0)
    assert response.status == 200
    [binding] = registrar.bindings("101", 10.0)
    assert (binding.call_id, binding.cseq, binding.expires_at) == ("second@phone", 1, 910.0)


def test_wildcard_removal_with_a_stale_cseq_is_a_500() -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="600", cseq=5))
    response = register(registrar, register_request("*", expires="0", cseq=5))
    assert response.status == 500
    assert registrar.is_registered("101", 0.0)


# --- the 200 (§10.3 step 8) ---------------------------------------------------------------------


def test_200_lists_every_binding_with_its_remaining_lifetime() -> None:
    registrar = Registrar()
    register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", expires="600", call_id="desk@phone", cseq=1,
    ))
    response = register(registrar, register_request(
        "<sip:101@10.0.0.12:5060>", expires="900", call_id="soft@phone", cseq=1,
    ), now=100.0)
    assert response.status == 200
    assert listed_contacts(response) == {
        "sip:101@10.0.0.11:5060": "500", "sip:101@10.0.0.12:5060": "900",
    }


def test_200_carries_the_to_tag_it_was_given() -> None:
    registrar = Registrar()
    response = register(registrar, register_request("<sip:101@10.0.0.11:5060>"))
    assert response.to.tag == TAG


def test_binding_remembers_source_and_user_agent() -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>"), now=7.0)
    [binding] = registrar.bindings("101", 7.0)
    assert (binding.source, binding.user_agent, binding.registered_at) == (
        PHONE, "TestPhone/1.0", 7.0,
    )


def test_refresh_keeps_the_time_of_first_registration() -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="600", cseq=1))
    register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", expires="600", cseq=2,
    ), now=300.0)
    [binding] = registrar.bindings("101", 300.0)
    assert binding.registered_at == 0.0


# --- expiry by stepping now ---------------------------------------------------------------------


def test_binding_is_live_until_its_lifetime_ends() -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="600"), now=10.0)
    assert registrar.is_registered("101", 609.9)
    assert not registrar.is_registered("101", 610.0)


def test_expire_drops_and_returns_only_the_ended_bindings() -> None:
    registrar = Registrar()
    register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>;expires=120", "<sip:101@10.0.0.11:5062>;expires=600",
    ))
    gone = registrar.expire(120.0)
    assert [b.contact_text for b in gone] == ["sip:101@10.0.0.11:5060"]
    assert contact_texts(registrar, 120.0) == ["sip:101@10.0.0.11:5062"]


def test_expired_bindings_are_not_listed_in_the_next_200() -> None:
    registrar = Registrar()
    register(registrar, register_request(
        "<sip:101@10.0.0.11:5060>", expires="120", call_id="a@phone",
    ))
    response = register(registrar, register_request(
        "<sip:101@10.0.0.12:5060>", expires="600", call_id="b@phone",
    ), now=200.0)
    assert list(listed_contacts(response)) == ["sip:101@10.0.0.12:5060"]


def test_registered_hosts_follow_registration_and_expiry() -> None:
    registrar = Registrar()
    assert registrar.registered_hosts() == set()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="120"))
    assert registrar.registered_hosts() == {"10.0.0.11"}
    registrar.expire(120.0)
    assert registrar.registered_hosts() == set()


def test_registered_hosts_forget_a_phone_that_unregistered() -> None:
    registrar = Registrar()
    register(registrar, register_request("<sip:101@10.0.0.11:5060>", expires="600", cseq=1))
    register(registrar, register_request("*", expires="0", cseq=2))
    assert registrar.registered_hosts() == set()


# --- where requests for a binding go (NAT rule) -------------------------------------------------


def binding(contact: str, source: Address) -> Binding:
    registrar = Registrar()
    register(registrar, register_request(contact), source=source)
    [only] = registrar.bindings("101", 0.0)
    return only


def test_destination_is_the_contact_when_it_is_on_the_source_host() -> None:
    assert binding("<sip:101@10.0.0.11:5070>", PHONE).destination == Address(
        "udp", "10.0.0.11", 5070,
    )


def test_destination_defaults_to_port_5060_when_the_contact_has_none() -> None:
    assert binding("<sip:101@10.0.0.11>", Address("udp", "10.0.0.11", 5099)).destination == (
        Address("udp", "10.0.0.11", 5060)
    )


def test_destination_is_the_source_when_the_contact_host_differs() -> None:
    behind_nat = Address("udp", "203.0.113.7", 40123)
    assert binding("<sip:101@192.168.1.20:5060>", behind_nat).destination == behind_nat


def test_tcp_phone_behind_nat_is_reached_over_its_own_connection() -> None:
    over_tcp = Address("tcp", "203.0.113.7", 49152)
    assert binding("<sip:101@192.168.1.20:5060;transport=tcp>", over_tcp).destination == (
        over_tcp
    )


def test_tcp_phone_on_its_contact_host_is_reached_at_its_contact_over_tcp() -> None:
    # Ring the phone's listening port, not the ephemeral port of its registration connection.
    over_tcp = Address("tcp", "10.0.0.11", 49152)
    assert binding("<sip:101@10.0.0.11:5060>", over_tcp).destination == Address(
        "tcp", "10.0.0.11", 5060,
    )


# --- RFC 4475 registrations ---------------------------------------------------------------------


def torture_register(name: str) -> tuple[Registrar, str, Response]:
    request = load_torture(name)
    aor = request.to.uri.user_unescaped
    assert aor is not None
    registrar = Registrar()
    response = registrar.register(
        request, aor, Address("udp", "192.0.2.21", 5060), 0.0, to_tag=TAG,
    )
    return registrar, aor, response


def test_cparam01_unknownparam_is_a_contact_parameter_not_on_the_binding_uri() -> None:
    registrar, aor, response = torture_register("cparam01")
    assert response.status == 200
    [bound] = registrar.bindings(aor, 0.0)
    assert bound.contact_text == "sip:+19725552222@gw1.example.net"
    assert isinstance(bound.contact, NameAddr)
    assert "unknownparam" in bound.contact.params


def test_cparam02_unknownparam_inside_brackets_stays_on_the_binding_uri() -> None:
    registrar, aor, response = torture_register("cparam02")
    assert response.status == 200
    [bound] = registrar.bindings(aor, 0.0)
    assert bound.contact_text == "sip:+19725552222@gw1.example.net;unknownparam"
    assert "unknownparam" not in bound.contact.params


def test_regescrt_binding_keeps_the_escaped_header() -> None:
    registrar, aor, response = torture_register("regescrt")
    assert response.status == 200
    [bound] = registrar.bindings(aor, 0.0)
    assert bound.contact_text == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    assert listed_contacts(response) == {bound.contact_text: str(DEFAULT_EXPIRES_S)}


def test_escnull_makes_two_bindings_and_the_nul_does_not_truncate_the_aor() -> None:
    registrar, aor, response = torture_register("escnull")
    assert response.status == 200
    assert aor == "null-\x00-null"
    assert contact_texts(registrar, 0.0, aor) == [
        "sip:%00%00@host5.example.com", "sip:%00@host5.example.com",
    ]
    assert registrar.bindings("null-", 0.0) == []


def test_unksm2_non_sip_address_of_record_is_refused_with_400() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Registrar.check_aor(load_torture("unksm2"))
    assert info.value.status_hint == 400
