"""End to end against the real daemon: the attacks of issue 9 that let an outsider take control.

Raw UDP sockets on loopback play the provider (127.0.0.2:5060, the trunk's configured address
and port, matched as the default `inbound_match: address_port` does), a registered phone and an
attacker: a From that smuggles a `Call-Info: answer-after=0` header toward the phones, and a
digest answer captured from a phone's call replayed to an international number.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.sip.auth import build_authorization, choose_challenge
from tests.e2e.linebox import (
    AGENT_PASSWORDS,
    LineboxProcess,
    SipReply,
    base_config,
    new_branch,
    read_udp_replies,
    running_linebox,
    udp_socket,
)
from tests.e2e.test_security import register

PROVIDER = ("127.0.0.2", 5060)
PHONE_IP = "127.0.0.21"
ATTACKER_IP = "127.0.0.66"
DID = "74951234567"
INTERNATIONAL = "0088213374455"
WAIT_S = 3.0


@pytest.fixture(scope="module")
def linebox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LineboxProcess]:
    config = base_config()
    config["trunks"][0].pop("inbound_match")  # the default: the provider's address and port
    with running_linebox(tmp_path_factory.mktemp("attacks"), config) as process:
        yield process


def invite(sock: socket.socket, linebox: LineboxProcess, *, user: str, from_value: str,
           extra: list[str] = (), cseq: int = 1, call_id: str | None = None) -> bytes:
    host, port = sock.getsockname()[:2]
    lines = [
        f"INVITE sip:{user}@{linebox.address} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()};rport",
        "Max-Forwards: 70",
        f"From: {from_value}",
        f"To: <sip:{user}@{linebox.address}>",
        f"Call-ID: {call_id or os.urandom(8).hex()}@{host}",
        f"CSeq: {cseq} INVITE",
        f"Contact: <sip:x@{host}:{port}>",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def invites_received(sock: socket.socket, timeout_s: float) -> list[SipReply]:
    return [m for m in read_udp_replies(sock, timeout_s, stop=lambda m: m.status == -1)
            if m.start_line.startswith("INVITE ")]


def finals(sock: socket.socket, timeout_s: float = WAIT_S) -> list[SipReply]:
    return [r for r in read_udp_replies(sock, timeout_s, stop=lambda r: r.status >= 200)
            if r.status >= 200]


def test_an_injected_header_in_the_provider_callers_number_never_reaches_the_phone(
    linebox: LineboxProcess,
) -> None:
    with udp_socket(PHONE_IP) as phone, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as prov:
        prov.bind(PROVIDER)
        _, answer, _ = register(linebox, phone, "101", AGENT_PASSWORDS["101"])
        assert answer.status == 200, answer.raw
        injected = "%0D%0ACall-Info%3A%20%3Csip%3Ax%3E%3Banswer-after=0"
        prov.sendto(invite(prov, linebox, user=DID,
                           from_value=f"<sip:{injected}@provider.example>;tag=a1"),
                    ("127.0.0.1", linebox.port))
        received = invites_received(phone, WAIT_S)
        assert received, "the phone was not rung"
        assert received[0].header("Call-Info") is None
        assert b"answer-after" not in received[0].raw
        assert "sip:anonymous@" in (received[0].header("From") or "")


def test_the_providers_address_on_another_port_is_a_stranger(linebox: LineboxProcess) -> None:
    with udp_socket(PROVIDER[0]) as impostor:
        impostor.sendto(invite(impostor, linebox, user=DID, from_value="<sip:79161234567@x>;tag=b"),
                        ("127.0.0.1", linebox.port))
        assert [r.status for r in finals(impostor)] == [407]


def test_a_captured_digest_replayed_to_an_international_number_is_refused(
    linebox: LineboxProcess, tmp_path: Path,
) -> None:
    with udp_socket(PHONE_IP) as phone, udp_socket(ATTACKER_IP) as attacker, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as prov:
        prov.bind(PROVIDER)
        from_value = f"<sip:102@{PHONE_IP}>;tag=c1"
        phone.sendto(invite(phone, linebox, user="200", from_value=from_value, call_id="cap"),
                     ("127.0.0.1", linebox.port))
        challenge = finals(phone)[0]
        assert challenge.status == 407, challenge.raw
        chosen = choose_challenge(challenge.header_values("Proxy-Authenticate"))
        assert chosen is not None
        authorization = build_authorization(
            chosen, method="INVITE", uri=f"sip:200@{linebox.address}", username="102",
            password=AGENT_PASSWORDS["102"], cnonce="c0ffee", nc=1,
        )
        credentials = [f"Proxy-Authorization: {authorization}"]
        phone.sendto(invite(phone, linebox, user="200", from_value=from_value, cseq=2,
                            call_id="cap", extra=credentials), ("127.0.0.1", linebox.port))
        assert any(r.status in (100, 180) for r in read_udp_replies(phone, 1.0))
        # The captured answer, replayed from another address and from the phone's own address
        # (another port), for an international number:
        for thief in (attacker, udp_socket(PHONE_IP)):
            with thief:
                thief.sendto(invite(thief, linebox, user=INTERNATIONAL, from_value=from_value,
                                    extra=credentials), ("127.0.0.1", linebox.port))
                assert [r.status for r in finals(thief)] in ([403], [407])
        assert invites_received(prov, 1.0) == [], "the provider got a call it should not"
