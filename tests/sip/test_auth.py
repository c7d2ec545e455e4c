"""Specification of SIP Digest authentication: parser, challenger/verifier and client answers."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from pytest_mock import MockerFixture

from firmware.sip.auth import (
    NONCE_TTL_S,
    AuthResult,
    DigestChallenger,
    build_authorization,
    choose_challenge,
    parse_auth_header,
)
from firmware.sip.errors import RemoteProtocolError

KEY = b"k" * 32
REALM = "office.example"
URI = "sip:office.example"
NOW_S = 1_700_000_000.0
USERS = {"alice": "wonderland", "bob": "builder"}

# RFC 7616 §3.9.1
RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def rfc_challenge(algorithm: str) -> str:
    return (
        f'Digest realm="{RFC_REALM}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}"'
    )


def counter_bytes() -> Callable[[int], bytes]:
    """Deterministic stand-in for secrets.token_bytes: distinct output on every call."""
    counter = itertools.count(1)

    def token_bytes(n: int) -> bytes:
        return next(counter).to_bytes(n, "big")

    return token_bytes


def make_challenger(**kwargs: object) -> DigestChallenger:
    return DigestChallenger(REALM, key=KEY, token_bytes=counter_bytes(), **kwargs)  # type: ignore[arg-type]


def answer(
    challenge: str,
    *,
    username: str = "alice",
    password: str = "wonderland",
    nc: int = 1,
    uri: str = URI,
    method: str = "REGISTER",
) -> str:
    return build_authorization(
        challenge,
        method=method,
        uri=uri,
        username=username,
        password=password,
        cnonce="0a4f113b",
        nc=nc,
    )


def verify(
    challenger: DigestChallenger,
    authorization: str,
    now: float = NOW_S,
    *,
    method: str = "REGISTER",
    request_uri: str = URI,
    source: str = "",
    without_qop: bool = False,
) -> AuthResult:
    return challenger.verify(method, authorization, USERS.get, now, request_uri=request_uri,
                             source=source, without_qop=lambda username: without_qop)


def sha256_challenge(challenger: DigestChallenger, now: float = NOW_S) -> str:
    return challenger.challenge(now)[0]


# --- RFC 7616 §3.9.1 vectors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "expected_response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_client_response_matches_rfc7616_example(algorithm: str, expected_response: str) -> None:
    value = build_authorization(
        rfc_challenge(algorithm),
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce=RFC_CNONCE,
        nc=1,
    )
    _, params = parse_auth_header(value)
    assert params["response"] == expected_response
    assert params["qop"] == "auth"
    assert params["nc"] == "00000001"
    assert params["opaque"] == RFC_OPAQUE
    assert params["algorithm"] == algorithm


# --- header parsing ----------------------------------------------------------------------------


def test_parse_unquotes_values_with_escaped_quotes_and_commas() -> None:
    scheme, params = parse_auth_header(r'Digest realm="a \"b\", c\\d", nonce=abc')
    assert scheme == "Digest"
    assert params == {"realm": 'a "b", c\\d', "nonce": "abc"}


def test_parse_lower_cases_names_and_allows_whitespace_around_equals_and_commas() -> None:
    _, params = parse_auth_header('Digest  Realm = "r" ,\tNONCE= n1 ,qop="auth"')
    assert params == {"realm": "r", "nonce": "n1", "qop": "auth"}


def test_parse_accepts_unknown_scheme_without_params() -> None:
    assert parse_auth_header("NoOneKnowsThisScheme") == ("NoOneKnowsThisScheme", {})


@pytest.mark.parametrize(
    "value",
    [
        "",
        'Digest realm="unterminated',
        "Digest realm",
        "Digest realm=",
        'Digest realm="a" nonce="b"',
        'Digest realm="a",',
        'Digest realm="a", realm="b"',
        'Digest="x"',
    ],
)
def test_parse_rejects_malformed_values(value: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_auth_header(value)
    assert info.value.status_hint == 400


# --- challenger --------------------------------------------------------------------------------


def test_challenge_lists_sha256_before_md5_by_default() -> None:
    values = make_challenger().challenge(NOW_S)
    assert [parse_auth_header(v)[1]["algorithm"] for v in values] == ["SHA-256", "MD5"]


def test_challenge_follows_the_configured_preference_order() -> None:
    values = make_challenger(algorithms=("MD5", "SHA-256")).challenge(NOW_S)
    assert [parse_auth_header(v)[1]["algorithm"] for v in values] == ["MD5", "SHA-256"]


def test_challenge_offers_qop_auth_and_adds_stale_only_when_asked() -> None:
    challenger = make_challenger()
    _, fresh = parse_auth_header(sha256_challenge(challenger))
    _, stale = parse_auth_header(challenger.challenge(NOW_S, stale=True)[0])
    assert fresh["qop"] == "auth" and fresh["realm"] == REALM
    assert "stale" not in fresh
    assert stale["stale"] == "true"


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5", "SHA-256-sess", "MD5-sess"])
def test_round_trip_challenge_answer_verify_succeeds(algorithm: str) -> None:
    challenger = make_challenger(algorithms=(algorithm,))
    result = verify(challenger, answer(challenger.challenge(NOW_S)[0]))
    assert result == AuthResult(ok=True, username="alice", stale=False, reason="ok")


def test_wrong_password_is_rejected() -> None:
    challenger = make_challenger()
    result = verify(challenger, answer(sha256_challenge(challenger), password="guess"))
    assert (result.ok, result.stale, result.username) == (False, False, None)


def test_unknown_user_looks_exactly_like_wrong_password() -> None:
    challenger = make_challenger()
    challenge = sha256_challenge(challenger)
    wrong_password = verify(challenger, answer(challenge, username="bob", password="guess"))
    unknown_user = verify(challenger, answer(challenge, username="mallory", password="guess"))
    assert (unknown_user.ok, unknown_user.stale, unknown_user.username) == (False, False, None)
    assert unknown_user.reason.replace("mallory", "bob") == wrong_password.reason


def test_replayed_nonce_count_is_rejected_as_stale() -> None:
    challenger = make_challenger()
    challenge = sha256_challenge(challenger)
    assert verify(challenger, answer(challenge, nc=1)).ok
    replay = verify(challenger, answer(challenge, nc=1))
    assert (replay.ok, replay.stale) == (False, True)


def test_higher_nonce_count_on_same_nonce_is_accepted() -> None:
    challenger = make_challenger()
    challenge = sha256_challenge(challenger)
    assert verify(challenger, answer(challenge, nc=1)).ok
    assert verify(challenger, answer(challenge, nc=2), NOW_S + 10).ok


def test_lower_nonce_count_after_higher_is_rejected() -> None:
    challenger = make_challenger()
    challenge = sha256_challenge(challenger)
    assert verify(challenger, answer(challenge, nc=5)).ok
    assert not verify(challenger, answer(challenge, nc=3)).ok


def test_expired_nonce_with_right_password_is_stale() -> None:
    challenger = make_challenger()
    authorization = answer(sha256_challenge(challenger))
    result = verify(challenger, authorization, NOW_S + NONCE_TTL_S + 1)
    assert (result.ok, result.stale) == (False, True)


def test_nonce_is_still_good_just_before_ttl() -> None:
    challenger = make_challenger()
    assert verify(challenger, answer(sha256_challenge(challenger)), NOW_S + NONCE_TTL_S - 1).ok


def test_expired_nonce_with_wrong_password_is_not_stale() -> None:
    challenger = make_challenger()
    authorization = answer(sha256_challenge(challenger), password="guess")
    result = verify(challenger, authorization, NOW_S + NONCE_TTL_S + 1)
    assert (result.ok, result.stale) == (False, False)


def test_forged_nonce_is_rejected_and_not_stale() -> None:
    challenger = make_challenger()
    challenge = sha256_challenge(challenger)
    nonce = parse_auth_header(challenge)[1]["nonce"]
    forged_nonce = nonce[:-1] + ("A" if nonce[-1] != "A" else "B")
    result = verify(challenger, answer(challenge.replace(nonce, forged_nonce)))
    assert (result.ok, result.stale) == (False, False)


def test_nonce_from_a_challenger_with_another_key_is_rejected() -> None:
    other = DigestChallenger(REALM, key=b"other key", token_bytes=counter_bytes())
    result = verify(make_challenger(), answer(sha256_challenge(other)))
    assert (result.ok, result.stale) == (False, False)


def test_realm_mismatch_is_rejected() -> None:
    challenger = make_challenger()
    challenge = sha256_challenge(challenger).replace(REALM, "elsewhere.example")
    assert not verify(challenger, answer(challenge)).ok


def test_uri_mismatch_is_rejected() -> None:
    challenger = make_challenger()
    authorization = answer(sha256_challenge(challenger), uri="sip:other.example")
    assert not verify(challenger, authorization).ok


def test_method_mismatch_is_rejected() -> None:
    challenger = make_challenger()
    authorization = answer(sha256_challenge(challenger), method="INVITE")
    assert not verify(challenger, authorization, method="REGISTER").ok


def test_algorithm_not_offered_is_rejected() -> None:
    sha_only = make_challenger(algorithms=("SHA-256",))
    md5_only = make_challenger(algorithms=("MD5",))
    assert not verify(sha_only, answer(md5_only.challenge(NOW_S)[0])).ok


def test_unknown_scheme_is_rejected() -> None:
    result = verify(make_challenger(), "NoOneKnowsThisScheme")
    assert (result.ok, result.stale) == (False, False)


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Digest",
        'Digest username="alice", realm=',
        'Digest username="alice", realm="office.example", nonce="\udcff"',
        'Digest username="alice", realm="office.example", nonce="x", uri="sip:o", response="r"',
        "Basic YWxpY2U6d29uZGVybGFuZA==",
    ],
)
def test_malformed_credentials_do_not_raise_from_verify(authorization: str) -> None:
    assert not verify(make_challenger(), authorization).ok


def test_qop_auth_without_cnonce_is_rejected() -> None:
    challenger = make_challenger()
    authorization = answer(sha256_challenge(challenger)).replace(', cnonce="0a4f113b"', "")
    assert not verify(challenger, authorization).ok


def test_rfc2069_response_without_qop_is_refused_by_default() -> None:
    # Without qop there is no nonce count: nothing tells a replay from the original.
    challenger = make_challenger(algorithms=("MD5",))
    challenge = challenger.challenge(NOW_S)[0].replace(', qop="auth"', "")
    authorization = answer(challenge)
    assert "qop" not in parse_auth_header(authorization)[1]
    result = verify(challenger, authorization)
    assert (result.ok, result.stale, result.reason) == (False, False, "answer without qop")


def test_rfc2069_response_is_accepted_once_where_allowed() -> None:
    challenger = make_challenger(algorithms=("MD5",))
    challenge = challenger.challenge(NOW_S)[0].replace(', qop="auth"', "")
    authorization = answer(challenge)
    assert verify(challenger, authorization, without_qop=True).ok
    replay = verify(challenger, authorization, NOW_S + 1, without_qop=True)
    assert (replay.ok, replay.stale) == (False, True)


def test_answer_for_another_request_uri_is_refused() -> None:
    # RFC 3261 §22.4: an answer captured from INVITE sip:200 must not place a call elsewhere.
    challenger = make_challenger()
    authorization = answer(sha256_challenge(challenger), method="INVITE", uri="sip:200@box")
    assert verify(challenger, authorization, method="INVITE", request_uri="sip:200@box").ok
    other = answer(sha256_challenge(challenger), method="INVITE", uri="sip:200@box")
    result = verify(challenger, other, method="INVITE", request_uri="sip:0088123@box")
    assert (result.ok, result.reason) == (False, "uri does not match the Request-URI")


def test_nonce_is_bound_to_the_address_it_was_issued_to() -> None:
    challenger = make_challenger()
    challenge = challenger.challenge(NOW_S, source="127.0.0.5")[0]
    assert not verify(challenger, answer(challenge), source="127.0.0.66").ok
    assert verify(challenger, answer(challenge), source="127.0.0.5").ok


def test_qop_answer_is_good_once_per_nonce_count() -> None:
    challenger = make_challenger()
    challenge = sha256_challenge(challenger)
    assert verify(challenger, answer(challenge, nc=1)).ok
    assert verify(challenger, answer(challenge, nc=1), NOW_S + 1).stale
    assert verify(challenger, answer(challenge, nc=2), NOW_S + 2).ok


def test_per_user_algorithms_narrow_the_challenge_and_the_answers() -> None:
    challenger = make_challenger(algorithms=("MD5", "SHA-256"))
    values = challenger.challenge(NOW_S, algorithms=("SHA-256",))
    assert [parse_auth_header(v)[1]["algorithm"] for v in values] == ["SHA-256"]
    md5 = challenger.challenge(NOW_S, algorithms=("MD5",))[0]
    result = challenger.verify("REGISTER", answer(md5), USERS.get, NOW_S, request_uri=URI,
                               algorithms=lambda username: ("SHA-256",))
    assert not result.ok


def test_choose_challenge_follows_the_trunks_preference() -> None:
    challenger = make_challenger(algorithms=("SHA-256", "MD5"))
    sha256, md5 = challenger.challenge(NOW_S)
    assert choose_challenge([sha256, md5], ("MD5",)) == md5
    assert choose_challenge([sha256], ("MD5",)) is None
    assert choose_challenge([sha256, md5], ("SHA-256", "MD5")) == sha256


def test_nonce_count_table_stays_bounded() -> None:
    challenger = make_challenger(max_tracked_nonces=3)
    for i in range(10):
        assert verify(challenger, answer(sha256_challenge(challenger, NOW_S + i)), NOW_S + i).ok
    assert challenger.tracked_nonce_count <= 3


def test_nonce_whose_count_record_was_evicted_is_refused_as_stale() -> None:
    challenger = make_challenger(max_tracked_nonces=1)
    first = sha256_challenge(challenger)
    second = sha256_challenge(challenger, NOW_S + 1)
    assert verify(challenger, answer(first)).ok
    assert verify(challenger, answer(second), NOW_S + 1).ok
    replay = verify(challenger, answer(first), NOW_S + 2)
    assert (replay.ok, replay.stale) == (False, True)


def test_expired_nonce_count_records_are_forgotten() -> None:
    challenger = make_challenger()
    assert verify(challenger, answer(sha256_challenge(challenger))).ok
    later = NOW_S + NONCE_TTL_S + 1
    assert verify(challenger, answer(sha256_challenge(challenger, later)), later).ok
    assert challenger.tracked_nonce_count == 1


# --- client ------------------------------------------------------------------------------------


def test_choose_challenge_prefers_sha256_over_md5() -> None:
    md5 = 'Digest realm="r", nonce="n", algorithm=MD5, qop="auth"'
    sha256 = 'Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth"'
    assert choose_challenge([md5, sha256]) == sha256


def test_choose_challenge_ignores_unknown_schemes_and_algorithms() -> None:
    md5 = 'Digest realm="r", nonce="n", qop="auth"'
    values = ["NoOneKnowsThisScheme", 'Digest realm="r", nonce="n", algorithm=SHA-512-256', md5]
    assert choose_challenge(values) == md5


def test_choose_challenge_returns_none_when_nothing_is_usable() -> None:
    assert choose_challenge(['Basic realm="r"', 'Digest realm="r']) is None


def test_client_uses_auth_int_when_it_is_the_only_qop_and_hashes_the_body() -> None:
    challenge = 'Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth-int"'

    def build(body: bytes) -> dict[str, str]:
        return parse_auth_header(
            build_authorization(
                challenge,
                method="INVITE",
                uri="sip:x",
                username="u",
                password="p",
                cnonce="c",
                nc=1,
                body=body,
            )
        )[1]

    assert build(b"v=0")["qop"] == "auth-int"
    assert build(b"v=0")["response"] != build(b"v=1")["response"]


def test_client_answers_challenge_without_qop_in_rfc2069_form() -> None:
    value = build_authorization(
        'Digest realm="r", nonce="n"',
        method="REGISTER",
        uri="sip:x",
        username="u",
        password="p",
        cnonce="c",
        nc=1,
    )
    params = parse_auth_header(value)[1]
    assert "qop" not in params and "nc" not in params and "cnonce" not in params


def test_client_refuses_unsupported_algorithm() -> None:
    with pytest.raises(RemoteProtocolError):
        answer('Digest realm="r", nonce="n", algorithm=SHA-512-256, qop="auth"')


def test_client_quotes_username_with_special_characters() -> None:
    value = build_authorization(
        'Digest realm="r", nonce="n", qop="auth"',
        method="REGISTER",
        uri="sip:x",
        username='we"ird\\name',
        password="p",
        cnonce="c",
        nc=1,
    )
    assert parse_auth_header(value)[1]["username"] == 'we"ird\\name'


def test_a_new_nonce_in_a_full_table_costs_no_scan_of_the_table(mocker: MockerFixture) -> None:
    """Once the table is full, remembering one more nonce looks at the front of the table
    only: a pass over all 10,000 entries per INVITE stalled the daemon at 150 calls/s."""
    challenger = make_challenger(max_tracked_nonces=200)
    for i in range(200):
        assert verify(challenger, answer(sha256_challenge(challenger, NOW_S + i)), NOW_S + i).ok
    spy = mocker.spy(challenger, "_is_expired")
    assert verify(challenger, answer(sha256_challenge(challenger, NOW_S + 200)), NOW_S + 200).ok
    assert spy.call_count <= 3
    assert challenger.tracked_nonce_count == 200
