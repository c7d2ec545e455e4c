"""What a scanner on the network learns from the SIP port, and how floods are stopped.

Requests are built by hand and sent from raw sockets bound to chosen loopback addresses, so the
test controls every byte: whether an extension exists must not show in the answers to a failed
REGISTER; scanner User-Agents get silence; an untrusted address that floods is banned while the
provider's address and addresses with a live registration are never counted. Digest answers are
computed with `firmware.sip.auth.build_authorization`, the client half of the stack.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from firmware.sip.auth import build_authorization, choose_challenge
from tests.e2e.linebox import (
    AGENT_PASSWORDS,
    LineboxProcess,
    SipReply,
    ask_options,
    ask_udp,
    base_config,
    new_branch,
    options_request,
    read_udp_replies,
    running_linebox,
    udp_socket,
)

PROVIDER_IP = "127.0.0.2"
FLOODER_IP = "127.0.0.3"
BYSTANDER_IP = "127.0.0.4"
PHONE_IP = "127.0.0.5"
UNKNOWN_EXTENSION = "150"  # same length as "101", so nothing but the digits differs
WRONG_PASSWORD = "not-the-password"
NO_REPLY_WAIT_S = 0.5
STRICT_SECURITY = {"rate_limit_requests": 16, "rate_limit_window_s": 2.0, "ban_s": 300}
FLOOD_REQUESTS = 30
TRUSTED_BURST = 60
TRUSTED_BURST_MAX_S = 2.0
SCANNER_USER_AGENTS = ("friendly-scanner", "sipvicious", "sipcli/v1")


@pytest.fixture(scope="module")
def linebox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LineboxProcess]:
    with running_linebox(tmp_path_factory.mktemp("security"), base_config()) as process:
        yield process


@pytest.fixture(scope="module")
def strict_linebox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LineboxProcess]:
    config = base_config(security=STRICT_SECURITY)
    with running_linebox(tmp_path_factory.mktemp("strict"), config) as process:
        yield process


def register_request(
    linebox: LineboxProcess, sock: socket.socket, *, extension: str, call_id: str,
    from_tag: str, cseq: int, branch: str, authorization: str | None = None,
) -> bytes:
    host, port = sock.getsockname()[:2]
    lines = [
        f"REGISTER sip:{linebox.address} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:{extension}@127.0.0.1>;tag={from_tag}",
        f"To: <sip:{extension}@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{extension}@{host}:{port}>",
        "Expires: 600",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    lines += ["User-Agent: Yealink SIP-T46S 66.86.0.15", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def register(
    linebox: LineboxProcess, sock: socket.socket, extension: str, password: str,
    *, call_id: str | None = None, from_tag: str = "a73kszlfl",
) -> tuple[SipReply, SipReply, dict[str, str]]:
    """REGISTER → 401 → REGISTER with digest credentials → the final answer.

    Returns the challenge, the final answer and, for normalising the bytes, the values that
    differ from one run to another (branch of each request).
    """
    call_id = call_id or f"reg-{os.urandom(6).hex()}@{sock.getsockname()[0]}"
    branches = {"first": new_branch(), "second": new_branch()}
    first = register_request(linebox, sock, extension=extension, call_id=call_id,
                             from_tag=from_tag, cseq=1, branch=branches["first"])
    challenge = ask_udp(linebox, sock, first, call_id)
    assert challenge is not None and challenge.status == 401, challenge
    chosen = choose_challenge(challenge.header_values("WWW-Authenticate"))
    assert chosen is not None, challenge.raw
    authorization = build_authorization(
        chosen, method="REGISTER", uri=f"sip:{linebox.address}", username=extension,
        password=password, cnonce="0a4f113b", nc=1,
    )
    second = register_request(linebox, sock, extension=extension, call_id=call_id,
                              from_tag=from_tag, cseq=2, branch=branches["second"],
                              authorization=authorization)
    answer = ask_udp(linebox, sock, second, call_id)
    assert answer is not None, f"no answer to the authenticated REGISTER of {extension}"
    return challenge, answer, branches


def normalised(reply: SipReply, extension: str, branch: str) -> bytes:
    """The reply with what the request itself chose (its branch and extension) blanked out."""
    return reply.raw.replace(branch.encode(), b"<branch>").replace(
        f"sip:{extension}@".encode(), b"sip:<extension>@"
    )


def without_nonce(raw: bytes) -> bytes:
    return re.sub(rb'nonce="[^"]*"', b'nonce="<nonce>"', raw)


def registered(linebox: LineboxProcess, extension: str) -> list[dict[str, Any]]:
    return [r for r in linebox.status()["registrations"] if r["extension"] == extension]


# --------------------------------------------------------------------------- enumeration


def test_failed_register_answers_alike_for_known_and_unknown_extensions(
    linebox: LineboxProcess,
) -> None:
    # Same socket, Call-ID, tags and CSeq; only the extension (and each request's branch) differ.
    with udp_socket() as sock:
        call_id = f"enum-{os.urandom(6).hex()}@127.0.0.1"
        known = register(linebox, sock, "101", WRONG_PASSWORD, call_id=call_id)
        unknown = register(linebox, sock, UNKNOWN_EXTENSION, WRONG_PASSWORD, call_id=call_id)
    (known_401, known_403, known_branches) = known
    (unknown_401, unknown_403, unknown_branches) = unknown
    assert known_403.status == unknown_403.status == 403
    assert normalised(known_403, "101", known_branches["second"]) == normalised(
        unknown_403, UNKNOWN_EXTENSION, unknown_branches["second"]
    )
    # The challenges differ only in the nonce.
    assert without_nonce(normalised(known_401, "101", known_branches["first"])) == without_nonce(
        normalised(unknown_401, UNKNOWN_EXTENSION, unknown_branches["first"])
    )


def test_wrong_password_is_forbidden_and_registers_nothing(linebox: LineboxProcess) -> None:
    with udp_socket() as sock:
        _, answer, _ = register(linebox, sock, "102", WRONG_PASSWORD)
        assert answer.status == 403, answer.raw
        assert registered(linebox, "102") == []
        # The same request with the right password does register: the 403 was the password's.
        _, answer, _ = register(linebox, sock, "102", AGENT_PASSWORDS["102"])
        assert answer.status == 200, answer.raw
        assert len(registered(linebox, "102")) == 1


# --------------------------------------------------------------------------- scanners


@pytest.mark.parametrize("user_agent", SCANNER_USER_AGENTS)
def test_scanner_user_agent_gets_no_reply_at_all(
    linebox: LineboxProcess, user_agent: str
) -> None:
    dropped_before = linebox.status()["stats"]["dropped_scanner"]
    with udp_socket() as sock:
        for method in ("OPTIONS", "REGISTER", "INVITE"):
            data, _ = options_request(linebox, sock, user_agent=user_agent, method=method)
            sock.sendto(data, ("127.0.0.1", linebox.port))
        replies = read_udp_replies(sock, NO_REPLY_WAIT_S)
        assert replies == [], f"{user_agent}: {replies}"
        # The same socket with an ordinary User-Agent is answered: the silence is the UA's.
        data, call_id = options_request(linebox, sock)
        reply = ask_udp(linebox, sock, data, call_id)
        assert reply is not None and reply.status == 200
    assert linebox.status()["stats"]["dropped_scanner"] == dropped_before + 3


# --------------------------------------------------------------------------- flood limits


def test_flooding_address_is_answered_up_to_the_limit_then_banned(
    strict_linebox: LineboxProcess,
) -> None:
    limit = STRICT_SECURITY["rate_limit_requests"]
    with udp_socket(FLOODER_IP) as sock:
        sent: list[str] = []
        for _ in range(FLOOD_REQUESTS):
            data, call_id = options_request(strict_linebox, sock)
            sock.sendto(data, ("127.0.0.1", strict_linebox.port))
            sent.append(call_id)
        replies = read_udp_replies(sock, NO_REPLY_WAIT_S * 2)
    answered = [r.call_id for r in replies]
    assert len(answered) <= limit, f"{len(answered)} answered"
    assert set(answered) == set(sent[:limit]), "the first requests are answered, then silence"
    # Still banned afterwards, from any port of that address.
    assert ask_options(strict_linebox, FLOODER_IP, timeout_s=NO_REPLY_WAIT_S) is None
    bans = strict_linebox.status()["bans"]
    assert FLOODER_IP in [b["source"] for b in bans]
    assert re.search(rf"(?i)\bban(ned)?\b.*{re.escape(FLOODER_IP)}\b", strict_linebox.log())
    # Meanwhile another address is served.
    reply = ask_options(strict_linebox, BYSTANDER_IP)
    assert reply is not None and reply.status == 200
    assert BYSTANDER_IP not in [b["source"] for b in strict_linebox.status()["bans"]]


def burst_of_options(linebox: LineboxProcess, host: str, count: int) -> tuple[set[str], float]:
    """`count` OPTIONS from one socket on `host`, sent at once; (answered Call-IDs, seconds)."""
    with udp_socket(host) as sock:
        started = time.monotonic()
        sent: set[str] = set()
        for _ in range(count):
            data, call_id = options_request(linebox, sock)
            sock.sendto(data, ("127.0.0.1", linebox.port))
            sent.add(call_id)
        answered: set[str] = set()

        def all_answered(reply: SipReply) -> bool:
            if reply.status == 200:
                answered.add(reply.call_id or "")
            return answered >= sent

        read_udp_replies(sock, 3.0, stop=all_answered, limit=count * 2)
        elapsed = time.monotonic() - started
    return answered & sent, elapsed


def test_provider_address_is_never_rate_limited(strict_linebox: LineboxProcess) -> None:
    answered, elapsed = burst_of_options(strict_linebox, PROVIDER_IP, TRUSTED_BURST)
    assert len(answered) == TRUSTED_BURST
    assert elapsed < TRUSTED_BURST_MAX_S
    assert PROVIDER_IP not in [b["source"] for b in strict_linebox.status()["bans"]]


def test_registered_phone_address_is_never_rate_limited(
    strict_linebox: LineboxProcess,
) -> None:
    with udp_socket(PHONE_IP) as sock:
        _, answer, _ = register(strict_linebox, sock, "105", AGENT_PASSWORDS["105"])
    assert answer.status == 200, answer.raw
    assert [r["source"].split(":")[1] for r in registered(strict_linebox, "105")] == [PHONE_IP]
    answered, elapsed = burst_of_options(strict_linebox, PHONE_IP, TRUSTED_BURST)
    assert len(answered) == TRUSTED_BURST
    assert elapsed < TRUSTED_BURST_MAX_S
    assert PHONE_IP not in [b["source"] for b in strict_linebox.status()["bans"]]
