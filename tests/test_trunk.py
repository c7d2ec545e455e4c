"""Registration of the box at the provider (RFC 3261 §10.2), with `now` stepped by the test.

The provider's side is played with the real `DigestChallenger`, so the credentials the trunk
computes are checked the way a registrar checks them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from firmware.sip.auth import DigestChallenger, parse_auth_header
from firmware.sip.message import Request, Response, make_response, parse_message
from firmware.sip.transaction import Address
from firmware.trunk import (
    REFRESH_MARGIN_S,
    RETRY_FIRST_S,
    RETRY_MAX_S,
    TrunkAccount,
    TrunkRegistration,
)

PROVIDER = Address("udp", "198.51.100.1", 5060)
USERNAME = "74951234567"
PASSWORD = "provider-password"
REALM = "sip.example.ru"
OUR_CONTACT = f"sip:{USERNAME}@192.0.2.1:5060"


def account(expires_s: int = 3600) -> TrunkAccount:
    return TrunkAccount(
        name="provider", host="sip.example.ru", username=USERNAME, password=PASSWORD,
        expires_s=expires_s,
    )


def trunk(expires_s: int = 3600, **account_fields: Any) -> TrunkRegistration:
    return TrunkRegistration(
        replace(account(expires_s), **account_fields), destination=PROVIDER,
        local_host="192.0.2.1", local_port=5060, user_agent="Linebox/test",
    )


def wire(request: Request) -> Request:
    """What the provider sees: the request serialised and parsed again."""
    message = parse_message(request.to_bytes())
    assert isinstance(message, Request)
    return message


def answer(
    request: Request, status: int, headers: list[tuple[str, str]] | None = None,
) -> Response:
    response = make_response(wire(request), status, to_tag="provider-tag", headers=headers)
    message = parse_message(response.to_bytes())
    assert isinstance(message, Response)
    return message


class Provider:
    """The provider's registrar: challenges, then checks the credentials it gets back."""

    def __init__(self) -> None:
        self.challenger = DigestChallenger(REALM, key=b"p" * 32)

    def challenge(self, request: Request, now: float, *, stale: bool = False,
                  status: int = 401) -> Response:
        header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        return answer(request, status, [
            (header, value) for value in self.challenger.challenge(now, stale=stale)
        ])

    def accepts(self, request: Request, now: float, header: str = "Authorization") -> bool:
        credentials = wire(request).headers.get(header)
        assert credentials is not None, f"no {header} in the REGISTER"
        result = self.challenger.verify(
            "REGISTER", credentials, lambda user: PASSWORD if user == USERNAME else None, now,
            request_uri=str(request.uri),
        )
        return result.ok


def registered(registration: TrunkRegistration, now: float = 0.0, *,
               headers: list[tuple[str, str]] | None = None) -> Request:
    """Run one REGISTER to success; returns the request that got the 200."""
    request = registration.build_register(now)
    assert registration.on_response(answer(request, 200, headers), now) is None
    return request


def fail_by_timeout(registration: TrunkRegistration, now: float) -> float:
    """One attempt that gets no answer; returns when the next one is due."""
    registration.build_register(now)
    registration.on_timeout(now)
    when = registration.get_timer()
    assert when is not None
    return when


# --- the first REGISTER --------------------------------------------------------------------------


def test_first_register_is_due_at_start() -> None:
    registration = trunk()
    assert registration.get_timer() == 0.0
    assert registration.due(0.0)


def test_register_names_the_account_and_asks_for_the_configured_expires() -> None:
    request = wire(trunk(expires_s=1800).build_register(0.0))
    assert request.method == "REGISTER"
    assert str(request.uri) == "sip:sip.example.ru"
    assert str(request.to.uri) == str(request.from_.uri) == f"sip:{USERNAME}@sip.example.ru"
    assert request.from_.tag
    assert [str(c.uri) for c in request.contacts] == [OUR_CONTACT]
    assert request.expires == 1800
    assert request.cseq.seq == 1
    assert request.headers.get("Authorization") is None


def test_nothing_more_is_due_while_a_register_is_outstanding() -> None:
    registration = trunk()
    registration.build_register(0.0)
    assert registration.get_timer() is None
    assert not registration.due(1000.0)


# --- digest challenges ---------------------------------------------------------------------------


def test_401_is_answered_at_once_with_credentials_the_provider_accepts() -> None:
    provider, registration = Provider(), trunk()
    first = registration.build_register(0.0)
    again = registration.on_response(provider.challenge(first, 0.0), 0.1)
    assert again is not None
    assert provider.accepts(again, 0.1)


def test_the_answer_to_a_challenge_uses_md5_by_default() -> None:
    provider, registration = Provider(), trunk()
    first = registration.build_register(0.0)
    again = registration.on_response(provider.challenge(first, 0.0), 0.1)
    assert again is not None
    _, params = parse_auth_header(again.headers.get("Authorization") or "")
    assert params["algorithm"].upper() == "MD5"


def test_the_answer_uses_sha256_where_the_trunk_prefers_it() -> None:
    provider, registration = Provider(), trunk(digest_algorithms=("SHA-256", "MD5"))
    first = registration.build_register(0.0)
    again = registration.on_response(provider.challenge(first, 0.0), 0.1)
    assert again is not None
    _, params = parse_auth_header(again.headers.get("Authorization") or "")
    assert params["algorithm"].upper() == "SHA-256"
    assert provider.accepts(again, 0.1)


def test_the_answer_to_a_challenge_keeps_call_id_and_increments_cseq() -> None:
    provider, registration = Provider(), trunk()
    first = registration.build_register(0.0)
    again = registration.on_response(provider.challenge(first, 0.0), 0.1)
    assert again is not None
    assert again.call_id == first.call_id
    assert again.cseq.seq == first.cseq.seq + 1
    assert again.top_via.branch != first.top_via.branch


def test_407_is_answered_with_proxy_authorization() -> None:
    provider, registration = Provider(), trunk()
    first = registration.build_register(0.0)
    again = registration.on_response(provider.challenge(first, 0.0, status=407), 0.1)
    assert again is not None
    assert again.headers.get("Authorization") is None
    assert provider.accepts(again, 0.1, header="Proxy-Authorization")


def test_a_second_401_without_stale_fails_and_retries_after_5_s() -> None:
    provider, registration = Provider(), trunk()
    first = registration.build_register(0.0)
    again = registration.on_response(provider.challenge(first, 0.0), 0.1)
    assert again is not None
    assert registration.on_response(provider.challenge(again, 0.2), 0.2) is None
    assert registration.state == "failed"
    assert registration.get_timer() == pytest.approx(0.2 + RETRY_FIRST_S)
    assert "401" in registration.last_error


def test_a_stale_challenge_is_answered_again() -> None:
    provider, registration = Provider(), trunk()
    first = registration.build_register(0.0)
    again = registration.on_response(provider.challenge(first, 0.0), 0.1)
    assert again is not None
    third = registration.on_response(provider.challenge(again, 0.2, stale=True), 0.2)
    assert third is not None
    assert provider.accepts(third, 0.2)


def test_a_challenge_we_cannot_answer_fails_the_registration() -> None:
    registration = trunk()
    request = registration.build_register(0.0)
    response = answer(request, 401, [("WWW-Authenticate", 'Basic realm="x"')])
    assert registration.on_response(response, 0.0) is None
    assert registration.state == "failed"


def test_each_new_nonce_is_answered_with_nonce_count_1() -> None:
    # RFC 7616 §3.4: nc counts the requests sent with *this* nonce; a fresh nonce starts at 1.
    provider, registration = Provider(), trunk()
    first = registration.build_register(0.0)
    again = registration.on_response(provider.challenge(first, 0.0), 0.0)
    assert again is not None
    registration.on_response(answer(again, 200), 0.0)
    refresh_at = registration.get_timer()
    assert refresh_at is not None
    refresh = registration.build_register(refresh_at)
    answered = registration.on_response(provider.challenge(refresh, refresh_at), refresh_at)
    assert answered is not None
    _, params = parse_auth_header(answered.headers.get("Authorization") or "")
    assert params["nc"] == "00000001"


# --- success and refresh -------------------------------------------------------------------------


def test_200_registers_the_trunk() -> None:
    registration = trunk()
    registered(registration, 0.0)
    assert registration.state == "registered"
    assert registration.status(0.0)["expires_in_s"] == 3600


def test_granted_expires_comes_from_our_contact_parameter_first() -> None:
    registration = trunk()
    registered(registration, headers=[
        ("Contact", f"<{OUR_CONTACT}>;expires=1800"), ("Expires", "3600"),
    ])
    assert registration.registered_until == 1800.0


def test_another_binding_expires_parameter_is_not_ours() -> None:
    registration = trunk()
    registered(registration, headers=[
        ("Contact", "<sip:someone@203.0.113.9:5060>;expires=120"),
        ("Contact", f"<{OUR_CONTACT}>;expires=900"),
    ])
    assert registration.registered_until == 900.0


def test_our_contact_echoed_with_an_extra_uri_parameter_is_still_ours() -> None:
    # §10.2.4 finds our binding by URI comparison (§19.1.4): a parameter in only one is ignored.
    registration = trunk()
    registered(registration, headers=[("Contact", f"<{OUR_CONTACT};ob>;expires=600")])
    assert registration.registered_until == 600.0


def test_granted_expires_falls_back_to_the_expires_header() -> None:
    registration = trunk()
    registered(registration, headers=[("Contact", f"<{OUR_CONTACT}>"), ("Expires", "600")])
    assert registration.registered_until == 600.0


def test_granted_expires_falls_back_to_what_we_asked_for() -> None:
    registration = trunk(expires_s=1200)
    registered(registration)
    assert registration.registered_until == 1200.0


def test_refresh_is_scheduled_a_minute_before_expiry() -> None:
    registration = trunk()
    registered(registration, 10.0, headers=[("Expires", "3600")])
    assert registration.get_timer() == 10.0 + 3600 - REFRESH_MARGIN_S
    assert not registration.due(10.0 + 3600 - REFRESH_MARGIN_S - 0.001)
    assert registration.due(10.0 + 3600 - REFRESH_MARGIN_S)


def test_short_binding_is_refreshed_halfway() -> None:
    registration = trunk()
    registered(registration, 0.0, headers=[("Expires", "90")])
    assert registration.get_timer() == 45.0


def test_refresh_keeps_call_id_and_increments_cseq() -> None:
    registration = trunk()
    first = registered(registration, 0.0)
    refresh_at = registration.get_timer()
    assert refresh_at is not None
    refresh = wire(registration.build_register(refresh_at))
    assert refresh.call_id == first.call_id
    assert refresh.from_.tag == wire(first).from_.tag
    assert refresh.cseq.seq == first.cseq.seq + 1


def test_refresh_keeps_the_trunk_registered_while_it_is_outstanding() -> None:
    registration = trunk()
    registered(registration, 0.0)
    registration.build_register(3540.0)
    assert registration.state == "registered"


# --- 423 and failures ----------------------------------------------------------------------------


def test_423_is_retried_at_once_with_min_expires() -> None:
    registration = trunk(expires_s=60)
    first = registration.build_register(0.0)
    again = registration.on_response(answer(first, 423, [("Min-Expires", "300")]), 0.0)
    assert again is not None
    assert wire(again).expires == 300
    assert again.cseq.seq == first.cseq.seq + 1
    assert again.call_id == first.call_id


def test_423_without_min_expires_fails() -> None:
    registration = trunk(expires_s=60)
    first = registration.build_register(0.0)
    assert registration.on_response(answer(first, 423), 0.0) is None
    assert registration.state == "failed"


def test_a_provisional_response_changes_nothing() -> None:
    registration = trunk()
    request = registration.build_register(0.0)
    assert registration.on_response(answer(request, 100), 0.0) is None
    assert registration.state == "registering"


def test_a_refusal_fails_and_retries_after_5_s() -> None:
    registration = trunk()
    request = registration.build_register(0.0)
    registration.on_response(answer(request, 403), 0.0)
    assert registration.state == "failed"
    assert registration.get_timer() == RETRY_FIRST_S


def test_timeout_fails_and_retries_after_5_s() -> None:
    registration = trunk()
    assert fail_by_timeout(registration, 32.0) == 32.0 + RETRY_FIRST_S
    assert registration.state == "failed"
    assert registration.last_error == "no response from provider"


def test_backoff_doubles_up_to_300_s() -> None:
    registration = trunk()
    now, delays = 0.0, []
    for _ in range(9):
        when = fail_by_timeout(registration, now)
        delays.append(when - now)
        now = when
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, RETRY_MAX_S, RETRY_MAX_S, RETRY_MAX_S]


def test_success_resets_the_backoff() -> None:
    registration = trunk()
    now = 0.0
    for _ in range(4):
        now = fail_by_timeout(registration, now)
    registered(registration, now, headers=[("Expires", "120")])
    refresh_at = registration.get_timer()
    assert refresh_at is not None
    assert fail_by_timeout(registration, refresh_at) == refresh_at + RETRY_FIRST_S


def test_failed_refresh_keeps_the_binding_until_it_expires() -> None:
    registration = trunk()
    registered(registration, 0.0, headers=[("Expires", "3600")])
    fail_by_timeout(registration, 3540.0)
    assert registration.status(3541.0)["expires_in_s"] == 59


# --- unregistering -------------------------------------------------------------------------------


def test_unregister_sends_expires_zero_on_the_same_call_id() -> None:
    registration = trunk()
    first = registered(registration, 0.0)
    request = registration.unregister(100.0)
    assert request is not None
    assert wire(request).expires == 0
    assert request.call_id == first.call_id
    assert request.cseq.seq == first.cseq.seq + 1


def test_200_to_the_unregister_leaves_the_trunk_unregistered() -> None:
    registration = trunk()
    registered(registration, 0.0)
    request = registration.unregister(100.0)
    assert request is not None
    registration.on_response(answer(request, 200), 100.0)
    assert registration.state == "unregistered"
    assert registration.get_timer() is None


def test_unregister_before_registering_sends_nothing() -> None:
    assert trunk().unregister(0.0) is None
