"""The gateway against an attacker on the wire (issue 9, items 1, 2, 9, 12), sans-IO.

Each test plays what was tried against `linebox run` — a From that smuggles a header, a digest
answer replayed from elsewhere or for another number, password guessing from one address or
many, a spoofed INVITE used as a reflector — through the same fake network as the gateway's own
tests, with time stepped by the test.
"""

from __future__ import annotations

import secrets

from firmware.sip.auth import build_authorization, choose_challenge
from firmware.sip.message import Request
from firmware.sip.transaction import Address
from firmware.store.config import parse_config
from tests.core.network import (
    CONFIG,
    GATEWAY,
    PASSWORDS,
    PHONE_ADDRESSES,
    PROVIDER,
    RING_ALL_DID,
    Network,
    Office,
    Peer,
    authorised_call,
    office,
    request,
)

EXTERNAL_NUMBER = "0088213374455"  # what the replayed answer was used to call


def injected_invite(peer: Peer, from_value: str) -> Request:
    headers = [
        ("Via", peer.via()),
        ("Max-Forwards", "70"),
        ("From", from_value),
        ("To", f"<sip:{RING_ALL_DID}@{GATEWAY.host}>"),
        ("Call-ID", f"{secrets.token_hex(8)}@{peer.address.host}"),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<sip:x@{peer.address.host}:{peer.address.port}>"),
    ]
    return request("INVITE", f"sip:{RING_ALL_DID}@{GATEWAY.host}", headers)


def replay(attacker: Peer, captured: Request, dialed: str) -> Request:
    """The captured INVITE's credentials on a new INVITE of the attacker's own."""
    authorization = captured.headers.get("Proxy-Authorization")
    assert authorization is not None
    invite = request("INVITE", f"sip:{dialed}@{GATEWAY.host}", [
        ("Via", attacker.via()),
        ("Max-Forwards", "70"),
        ("From", captured.headers.get("From") or ""),
        ("To", f"<sip:{dialed}@{GATEWAY.host}>"),
        ("Call-ID", f"{secrets.token_hex(8)}@evil"),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<sip:x@{attacker.address.host}:{attacker.address.port}>"),
        ("Proxy-Authorization", authorization),
    ])
    attacker.send(invite)
    return invite


def provider_invites(o: Office) -> list[Request]:
    return [i for i in o.provider.invites() if i.uri.user_unescaped != RING_ALL_DID]


# --- item 1: header injection ------------------------------------------------------------------


def test_an_escaped_line_break_in_the_callers_number_never_reaches_a_phone(o: Office) -> None:
    injected = "%0D%0ACall-Info%3A%20%3Csip%3Ax%3E%3Banswer-after=0"
    o.provider.send(injected_invite(o.provider, f"<sip:{injected}@provider.example>;tag=a1"))
    invite = o.phones["101"].invites()[-1]
    assert invite.headers.get("Call-Info") is None
    assert b"answer-after" not in invite.to_bytes()
    assert invite.from_.uri.user == "anonymous"


def test_the_callers_number_is_digits_and_plus_after_the_edge(o: Office) -> None:
    o.provider.send(injected_invite(o.provider, "<sip:+7%20(916)%20123-45-67@p.example>;tag=a"))
    assert o.phones["101"].invites()[-1].from_.uri.user == "+79161234567"


def test_a_display_name_loses_its_control_characters(o: Office) -> None:
    name = '"Evil\\\x07 \\"Corp\\" \u202eexe.txt"'
    o.provider.send(injected_invite(o.provider, f"{name} <sip:79161234567@p.example>;tag=a"))
    invite = o.phones["101"].invites()[-1]
    assert invite.from_.display == '"Evil \\"Corp\\" exe.txt"'


def test_the_provider_is_known_by_its_port_too(o: Office) -> None:
    # Same host as the provider, another port: a stranger, challenged like any phone.
    impostor = Peer(o.net, Address("udp", PROVIDER.host, 5099), "impostor")
    impostor.send(injected_invite(impostor, "<sip:79161234567@p.example>;tag=a"))
    assert [r.status for r in impostor.responses()] == [407]
    assert o.phones["101"].invites() == []


# --- item 2: digest replay ---------------------------------------------------------------------


def test_a_captured_answer_replayed_from_elsewhere_to_an_external_number_is_refused(
    o: Office,
) -> None:
    captured, response = authorised_call(o.phones["102"], "200")
    assert response.status in (100, 180)  # department 200 rings for 102's call
    attacker = Peer(o.net, Address("udp", "127.0.0.66", 5060), "attacker")
    replay(attacker, captured, EXTERNAL_NUMBER)
    assert attacker.final_statuses() == [403]
    assert provider_invites(o) == []


def test_a_captured_answer_replayed_from_the_same_address_for_another_uri_is_refused(
    o: Office,
) -> None:
    phone = o.phones["102"]
    captured, _ = authorised_call(phone, "200")
    thief = Peer(o.net, Address("udp", phone.address.host, 5070), "thief")
    replay(thief, captured, EXTERNAL_NUMBER)
    assert thief.final_statuses() == [403]
    assert provider_invites(o) == []


def test_a_captured_answer_replayed_verbatim_gets_a_fresh_challenge(o: Office) -> None:
    phone = o.phones["102"]
    captured, _ = authorised_call(phone, "200")
    thief = Peer(o.net, Address("udp", phone.address.host, 5070), "thief")
    thief.send(request("INVITE", str(captured.uri), [
        ("Via", thief.via()),
        *[(name, value) for name, value in captured.headers
          if name not in ("Via", "Call-ID", "Content-Length")],
        ("Call-ID", "replayed@evil"),
    ]))
    # Same nonce count again: stale (RFC 7616 §3.4), never a second call.
    assert [r.status for r in thief.responses() if r.status >= 200] == [407]
    assert len([c for c in o.net.calls() if c["caller"] == "102"]) == 1


def test_an_answer_without_qop_is_refused_unless_the_extension_allows_it() -> None:
    o = office()
    phone = o.phones["102"]
    first = phone.call("200")
    challenge = phone.responses()[-1].headers.get("Proxy-Authenticate") or ""
    rfc2069 = build_authorization(
        challenge.replace(', qop="auth"', ""), method="INVITE", uri=str(first.uri),
        username="102", password=PASSWORDS["102"], cnonce="c", nc=1,
    )
    phone.send(request("INVITE", str(first.uri), [
        ("Via", phone.via()),
        *[(n, v) for n, v in first.headers if n not in ("Via", "CSeq", "Content-Length")],
        ("CSeq", "2 INVITE"), ("Proxy-Authorization", rfc2069),
    ]))
    assert phone.final_statuses()[-1] == 403


# --- item 12: reflection ----------------------------------------------------------------------


def test_an_unauthenticated_invite_gets_one_407_and_no_retransmissions() -> None:
    net = Network()
    spoofed = Peer(net, Address("udp", "127.0.0.77", 5060), "victim", silent=True)
    spoofed.send(injected_invite(spoofed, "<sip:101@127.0.0.77>;tag=x"))
    net.advance(40.0)
    assert [r.status for r in spoofed.responses()] == [407]
    assert net.transactions() == 0


# --- item 9: password guessing ----------------------------------------------------------------


def guess(peer: Peer, times: int) -> list[int]:
    """Wrong passwords a few seconds apart: slow enough for the request limiter, which only
    counts requests; what stops this is the count of failed answers."""
    statuses = []
    for i in range(times):
        statuses.append(peer.register(password=f"guess-{i}").status)
        peer.net.advance(3.0)
    return statuses


def test_a_guesser_is_banned_after_ten_failures_though_phones_share_its_address() -> None:
    o = office()
    phone = o.phones["101"]
    guesser = Peer(o.net, Address("udp", phone.address.host, 5999), "103")
    for i in range(12):
        guesser.send(_register_request(guesser, f"guess-{i}"))
        o.net.advance(3.0)
    statuses = [r.status for r in guesser.responses("REGISTER")]
    # Ten challenges and ten refusals; then nothing at all (banned): no 11th challenge.
    assert (statuses.count(401), statuses.count(403), len(statuses)) == (10, 10, 20)
    # The registered phone behind the same address still refreshes its binding.
    assert phone.register().status == 200


def _register_request(peer: Peer, password: str) -> Request:
    """A REGISTER answering a fresh challenge with `password` (a guess)."""
    aor = f"sip:{peer.user}@{GATEWAY.host}"

    def build(authorization: str | None, cseq: int) -> Request:
        headers = [
            ("Via", peer.via()), ("Max-Forwards", "70"),
            ("From", f"<{aor}>;tag=g{cseq}"), ("To", f"<{aor}>"),
            ("Call-ID", f"guess-{secrets.token_hex(4)}"), ("CSeq", f"{cseq} REGISTER"),
            ("Contact", f"<sip:{peer.user}@{peer.address.host}:{peer.address.port}>"),
        ]
        if authorization:
            headers.append(("Authorization", authorization))
        return request("REGISTER", f"sip:{GATEWAY.host}", headers)

    peer.send(build(None, 1))
    challenge = peer.responses("REGISTER")[-1]
    if challenge.status != 401:
        return build(None, 1)
    chosen = choose_challenge(challenge.headers.get_all("WWW-Authenticate"))
    assert chosen is not None
    return build(build_authorization(
        chosen, method="REGISTER", uri=f"sip:{GATEWAY.host}", username=peer.user,
        password=password, cnonce="c", nc=1,
    ), 2)


def test_guesses_spread_over_many_addresses_lock_the_extension_but_not_its_phone() -> None:
    o = office(registered=("101",))
    for i in range(25):
        guesser = Peer(o.net, Address("udp", f"127.0.1.{i + 1}", 5060), "102")
        assert guess(guesser, 1) == [403]
    # 102 is locked now: even its right password from a new address is refused...
    late = Peer(o.net, Address("udp", "127.0.2.1", 5060), "102")
    assert late.register().status == 403
    # ...while 101, another extension, is untouched.
    assert o.phones["101"].register().status == 200


def test_bans_survive_a_configuration_change() -> None:
    o = office(registered=())
    guesser = Peer(o.net, Address("udp", "127.0.3.1", 5060), "101")
    guess(guesser, 10)
    o.net.gateway.apply_config(parse_config(CONFIG), {"provider": PROVIDER}, o.net.now)
    before = len(guesser.received)
    guesser.send(_register_request(guesser, PASSWORDS["101"]))
    assert len(guesser.received) == before  # still dropped


def test_a_right_password_after_a_few_mistakes_still_registers() -> None:
    net = Network()
    phone = Peer(net, PHONE_ADDRESSES["101"], "101")
    assert guess(phone, 3) == [403, 403, 403]
    assert phone.register().status == 200
