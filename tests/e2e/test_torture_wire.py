"""RFC 4475 torture messages on the wire: every file, sent as it is, gets the answer a registrar and
UAS like Linebox owes it, and the daemon keeps answering afterwards.

Each file of tests/sip/torture goes to a real daemon as one UDP datagram from its own socket on
127.0.0.1 (the gateway answers the packet's source, whatever the Via says). The expected status is
worked out per file below from the RFC, the folder's README and what Linebox is: an authenticating
registrar (REGISTER → 401 once the identity-independent checks pass), a UAS that challenges
extension INVITEs (407), and an endpoint that answers OPTIONS itself (200). Responses must meet
silence. After each file a normal OPTIONS must still get 200. The stream cases (clerr, ncl, mcl01,
several valid files, two requests in one segment) then run over TCP, and 1,000 random or mutated
datagrams close the module.
"""

from __future__ import annotations

import random
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.linebox import (
    LineboxProcess,
    SipReply,
    ask_options,
    ask_udp,
    base_config,
    options_request,
    read_tcp_replies,
    read_udp_replies,
    running_linebox,
    tcp_connection,
    udp_socket,
)
from tests.sip import TORTURE_DIR

# How long silence must last to count as "no answer" (loopback answers take milliseconds).
NO_REPLY_WAIT_S = 0.5
REPLY_TIMEOUT_S = 2.0
# clerr over TCP: how long the gateway must keep waiting for the announced body.
CLERR_WAIT_S = 1.0
GARBAGE_DATAGRAMS = 1000
GARBAGE_MAX_BYTES = 1400
# The overload a burst may set off is over within seconds (the share climbs back in 2 s);
# a 503's Retry-After is 5 s.
GARBAGE_RECOVERY_S = 20.0

Check = Callable[[SipReply], None]


def torture(name: str) -> bytes:
    return (TORTURE_DIR / f"{name}.dat").read_bytes()


def first_call_id(data: bytes) -> str | None:
    """The first Call-ID (or compact `i`) header of a raw message, as written."""
    match = re.search(rb"(?im)^(?:call-id|i)[ \t]*:[ \t]*(.*?)[ \t]*\r?$", data)
    return match.group(1).decode("utf-8", "surrogateescape") if match else None


# --------------------------------------------------------------------------- extra checks


def unsupported_names_the_require_options(reply: SipReply) -> None:
    # RFC 3261 §8.2.2.3: a UAS lists the Require options it does not understand; Proxy-Require
    # is for proxies, so its options are not ours to list.
    listed = {o.strip() for v in reply.header_values("Unsupported") for o in v.split(",")}
    assert listed == {"nothingSupportsThis", "nothingSupportsThisEither"}, reply.raw


def accept_lists_sdp(reply: SipReply) -> None:
    # RFC 3261 §21.4.13: 415 says what we do accept.
    assert "application/sdp" in (reply.header("Accept") or ""), reply.raw


def allow_is_present(reply: SipReply) -> None:
    # RFC 3261 §21.5.2 / §21.4.6: 501 and 405 carry Allow.
    assert reply.header("Allow"), reply.raw


def fresh_digest_challenge(reply: SipReply) -> None:
    # RFC 4475 §3.3.5 regaut01: an unknown scheme earns a fresh Digest challenge, not a 403.
    challenges = reply.header_values("WWW-Authenticate")
    assert challenges and all(c.startswith("Digest ") for c in challenges), reply.raw
    assert all('nonce="' in c for c in challenges), reply.raw


def no_sdp_body(reply: SipReply) -> None:
    # RFC 4475 §3.3.15 sdp01: never send an SDP body the caller did not accept.
    assert reply.body == b"" and reply.header("Content-Type") is None, reply.raw


@dataclass(frozen=True)
class Expected:
    status: int | None  # None: the gateway must not answer at all
    why: str
    check: Check | None = None


EXPECTED: dict[str, Expected] = {
    # 3.1.1 valid messages
    "wsinv": Expected(481, "valid; its To tag names a dialog the gateway never had"),
    "intmeth": Expected(501, "valid; unknown method → 501 with Allow", allow_is_present),
    "esc01": Expected(407, "valid; an extension INVITE from an unknown phone is challenged"),
    "escnull": Expected(401, "valid REGISTER; an authenticating registrar challenges it"),
    "esc02": Expected(501, "RE%47IST%45R is not REGISTER: unknown method", allow_is_present),
    "lwsdisp": Expected(200, "valid OPTIONS"),
    "longreq": Expected(407, "valid INVITE with huge headers; challenged like any other"),
    "dblreq": Expected(401, "the REGISTER is challenged; the trailing INVITE is ignored"),
    "semiuri": Expected(200, "valid OPTIONS; ';' inside the user part"),
    "transports": Expected(200, "valid OPTIONS; Vias with five transports"),
    "mpart01": Expected(405, "valid MESSAGE framed by Content-Length; not served → 405",
                        allow_is_present),
    "unreason": Expected(None, "a response matching no transaction is dropped"),
    "noreason": Expected(None, "a response matching no transaction is dropped"),
    # 3.1.2 invalid messages
    "badinv01": Expected(400, "empty Via and Contact parameters"),
    "clerr": Expected(400, "Content-Length larger than the datagram"),
    "ncl": Expected(400, "negative Content-Length"),
    "scalar02": Expected(400, "CSeq beyond 2**31"),
    "scalarlg": Expected(None, "malformed response: silently discarded"),
    "quotbal": Expected(400, "unterminated quoted string"),
    "ltgtruri": Expected(400, "Request-URI in <>"),
    "lwsruri": Expected(400, "white space inside the Request-URI"),
    "lwsstart": Expected(400, "extra SPs in the Request-Line (strict parser: may reject)"),
    "trws": Expected(400, "trailing SPs after SIP/2.0 (strict parser: may reject)"),
    "escruri": Expected(400, "headers in the Request-URI"),
    "baddate": Expected(407, "Date is never used, so its EST is ignored; INVITE challenged"),
    "regbadct": Expected(400, "Contact URI with headers but without <> (before the challenge)"),
    "badaspec": Expected(400, "spaces inside <addr-spec>"),
    "baddn": Expected(400, "unquoted display names with separators"),
    "badvers": Expected(505, "SIP/7.0"),
    "mismatch01": Expected(400, "known method in the Request-Line, another in CSeq"),
    "mismatch02": Expected(501, "unknown method in the Request-Line, INVITE in CSeq"),
    "bigcode": Expected(None, "status code 4294967301: a broken response, discarded"),
    # 3.2 transaction layer
    "badbranch": Expected(200, "bare 'z9hG4bK' branch: RFC 2543 matching, answered normally"),
    # 3.3 application layer
    "insuf": Expected(400, "no Call-ID, From or To"),
    "unkscm": Expected(416, "Request-URI scheme nobodyKnowsThisScheme"),
    "novelsc": Expected(416, "Request-URI scheme soap.beep"),
    "unksm2": Expected(400, "AOR is not sip/sips: refused before the challenge"),
    "bext01": Expected(420, "Require options nobody supports",
                       unsupported_names_the_require_options),
    "invut": Expected(415, "INVITE body application/unknownformat", accept_lists_sdp),
    "regaut01": Expected(401, "unknown Authorization scheme", fresh_digest_challenge),
    "multi01": Expected(400, "two Call-ID, To, From, CSeq, Max-Forwards"),
    "mcl01": Expected(400, "two different Content-Length values"),
    "bcast": Expected(None, "a response matching no transaction is dropped"),
    "zeromf": Expected(200, "Max-Forwards 0 on OPTIONS: an endpoint answers it"),
    "cparam01": Expected(401, "valid REGISTER; challenged"),
    "cparam02": Expected(401, "valid REGISTER; challenged"),
    "regescrt": Expected(401, "valid REGISTER; challenged"),
    "sdp01": Expected(406, "Accept excludes application/sdp, the only body we can answer",
                      no_sdp_body),
    # 3.4 backward compatibility
    "inv2543": Expected(407, "RFC 2543 INVITE accepted; challenged"),
}

# Files whose top Via branch, sent-by and method equal an earlier file's: RFC 3261 §17.2.3 makes
# such a file a retransmission of the earlier one while that server transaction lives (Timer J,
# 32 s), so the gateway rightly repeats the earlier answer to the earlier source. Each of these
# goes to a second daemon, where it is new.
SAME_TRANSACTION_AS = {"cparam02": "cparam01", "regescrt": "escnull", "unkscm": "novelsc"}


@pytest.fixture(scope="module")
def linebox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LineboxProcess]:
    with running_linebox(tmp_path_factory.mktemp("torture"), base_config()) as process:
        yield process


@pytest.fixture(scope="module")
def second_linebox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LineboxProcess]:
    with running_linebox(tmp_path_factory.mktemp("torture2"), base_config()) as process:
        yield process


@pytest.fixture(scope="module")
def tcp_linebox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LineboxProcess]:
    with running_linebox(tmp_path_factory.mktemp("torture-tcp"), base_config()) as process:
        yield process


def assert_still_healthy(linebox: LineboxProcess) -> None:
    reply = ask_options(linebox)
    assert reply is not None and reply.status == 200, f"OPTIONS afterwards: {reply!r}"
    assert linebox.status()["stats"]["internal_errors"] == 0
    assert "Traceback" not in linebox.log(), linebox.log()[-3000:]


def test_every_torture_file_has_an_expected_answer() -> None:
    files = {p.stem for p in TORTURE_DIR.glob("*.dat")}
    assert len(files) == 49
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_message_over_udp_gets_its_expected_answer(
    name: str, request: pytest.FixtureRequest
) -> None:
    fixture = "second_linebox" if name in SAME_TRANSACTION_AS else "linebox"
    linebox: LineboxProcess = request.getfixturevalue(fixture)
    expected = EXPECTED[name]
    data = torture(name)
    call_id = first_call_id(data)
    with udp_socket() as sock:
        sock.sendto(data, ("127.0.0.1", linebox.port))
        if expected.status is None:
            replies = read_udp_replies(sock, NO_REPLY_WAIT_S)
            assert replies == [], f"{name}: {expected.why}; got {replies}"
        else:
            replies = read_udp_replies(sock, REPLY_TIMEOUT_S, stop=lambda r: r.status >= 200)
            finals = [r for r in replies if r.status >= 200]
            assert finals, f"{name}: expected {expected.status} ({expected.why}); got {replies}"
            final = finals[0]
            assert final.status == expected.status, (
                f"{name}: expected {expected.status} ({expected.why}); got\n"
                + final.raw.decode("utf-8", "replace")
            )
            # Every answer on this socket is about this file's request (dblreq: not the INVITE).
            assert {r.call_id for r in replies} <= {call_id, None}, replies
            if expected.check is not None:
                expected.check(final)
        # The same socket still gets its OPTIONS answered (retransmissions of the file's own
        # answer may arrive in between and are skipped by Call-ID).
        options, options_call_id = options_request(linebox, sock)
        sock.sendto(options, ("127.0.0.1", linebox.port))
        later = read_udp_replies(
            sock, REPLY_TIMEOUT_S,
            stop=lambda r: r.call_id == options_call_id and r.status >= 200,
        )
        assert {r.call_id for r in later} <= {call_id, options_call_id, None}, later
        answer = next((r for r in later if r.call_id == options_call_id), None)
        assert answer is not None and answer.status == 200, f"after {name}: {later}"
    assert linebox.status()["stats"]["internal_errors"] == 0
    assert "Traceback" not in linebox.log(), linebox.log()[-3000:]


def test_message_outside_a_dialog_gets_405_whose_allow_leaves_message_out(
    linebox: LineboxProcess,
) -> None:
    # RFC 3261 §21.4.6: a 405 MUST carry Allow with "the valid methods for the indicated
    # address"; listing the very method refused would invite the client to send it again.
    with udp_socket() as sock:
        data, call_id = options_request(linebox, sock, method="MESSAGE")
        reply = ask_udp(linebox, sock, data, call_id)
    assert reply is not None and reply.status == 405, reply
    allowed = {m.strip().upper() for v in reply.header_values("Allow") for m in v.split(",")}
    assert allowed and "MESSAGE" not in allowed, reply.raw


# --------------------------------------------------------------------------- TCP framing


def test_tcp_content_length_beyond_the_data_waits_for_the_rest_then_closes_on_eof(
    tcp_linebox: LineboxProcess,
) -> None:
    with tcp_connection(tcp_linebox) as conn:
        conn.sendall(torture("clerr"))
        replies, closed = read_tcp_replies(conn, CLERR_WAIT_S)
        assert (replies, closed) == ([], False), "clerr: the gateway must wait for the body"
        assert_still_healthy(tcp_linebox)  # one stuck reader blocks nobody else
        conn.shutdown(socket.SHUT_WR)
        replies, closed = read_tcp_replies(conn, REPLY_TIMEOUT_S)
        assert closed, "clerr: after our EOF the gateway must close, not keep a stuck reader"
        assert all(r.status == 400 for r in replies), replies
    assert_still_healthy(tcp_linebox)


def test_tcp_connection_left_waiting_on_clerr_does_not_block_other_connections(
    tcp_linebox: LineboxProcess,
) -> None:
    with tcp_connection(tcp_linebox) as stuck, tcp_connection(tcp_linebox) as other:
        stuck.sendall(torture("clerr"))
        options, call_id = options_request(tcp_linebox, other, transport="TCP")
        other.sendall(options)
        replies, closed = read_tcp_replies(other, REPLY_TIMEOUT_S, count=1)
        assert not closed and [(r.call_id, r.status) for r in replies] == [(call_id, 200)]
        replies, closed = read_tcp_replies(stuck, CLERR_WAIT_S)
        assert (replies, closed) == ([], False)
    assert_still_healthy(tcp_linebox)


@pytest.mark.parametrize("name", ["ncl", "mcl01"])
def test_tcp_unframeable_message_gets_400_and_the_connection_is_closed(
    tcp_linebox: LineboxProcess, name: str
) -> None:
    # RFC 3261 §18.3 / RFC 4475 §3.1.2.3, §3.3.10: a stream cannot be re-synchronised.
    with tcp_connection(tcp_linebox) as conn:
        conn.sendall(torture(name))
        replies, closed = read_tcp_replies(conn, REPLY_TIMEOUT_S)
        assert [r.status for r in replies] == [400], replies
        assert replies[0].call_id == first_call_id(torture(name))
        assert closed, f"{name}: the gateway must close the connection"
    assert_still_healthy(tcp_linebox)


@dataclass(frozen=True)
class OverTcp:
    status: int | None  # first final status; None: no answer (the gateway waits for more)
    closes: bool
    why: str


# Where a stream changes the answer: Content-Length frames the message (RFC 3261 §18.3).
TCP_DIFFERENCES: dict[str, OverTcp] = {
    "clerr": OverTcp(None, False, "the body announced has not all arrived: keep waiting"),
    "baddn": OverTcp(None, False, "the file ends without the empty line: the head goes on"),
    "ncl": OverTcp(400, True, "negative Content-Length: the stream cannot be framed"),
    "mcl01": OverTcp(400, True, "two Content-Length values: the stream cannot be framed"),
    "inv2543": OverTcp(400, True, "no Content-Length on a stream: cannot be framed"),
    "dblreq": OverTcp(401, True, "the REGISTER is whole and answered; the INVITE after it "
                      "has 5 bytes more than its Content-Length, and 'C' cannot be framed"),
}


def over_tcp(name: str) -> OverTcp:
    if name in TCP_DIFFERENCES:
        return TCP_DIFFERENCES[name]
    udp = EXPECTED[name]
    return OverTcp(udp.status, False, udp.why)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_message_over_tcp_gets_its_expected_answer(
    tcp_linebox: LineboxProcess, name: str
) -> None:
    expected = over_tcp(name)
    with tcp_connection(tcp_linebox) as conn:
        conn.sendall(torture(name))
        if expected.closes:
            replies, closed = read_tcp_replies(conn, REPLY_TIMEOUT_S)
        elif expected.status is None:
            replies, closed = read_tcp_replies(conn, NO_REPLY_WAIT_S)
        else:
            replies, closed = [], False
            for _ in range(5):  # 100 Trying may come first
                more, closed = read_tcp_replies(conn, REPLY_TIMEOUT_S, count=1)
                replies += more
                if closed or not more or more[-1].status >= 200:
                    break
        finals = [r.status for r in replies if r.status >= 200]
        got = finals[0] if finals else None
        assert (got, closed) == (expected.status, expected.closes), (
            f"{name} over TCP: expected {expected.status}, closed={expected.closes} "
            f"({expected.why}); got {replies}, closed={closed}"
        )
        if finals:
            assert replies[[r.status for r in replies].index(got)].call_id in (
                first_call_id(torture(name)), None
            )
    assert_still_healthy(tcp_linebox)


def test_tcp_requests_framed_before_junk_in_the_same_segment_are_still_answered(
    tcp_linebox: LineboxProcess,
) -> None:
    # RFC 3261 §18.3: each message is framed by its own Content-Length. Junk after two whole
    # requests ends the connection, but the two requests were whole and must be answered first.
    with tcp_connection(tcp_linebox) as conn:
        first, first_id = options_request(tcp_linebox, conn, transport="TCP")
        second, second_id = options_request(tcp_linebox, conn, transport="TCP")
        conn.sendall(first + second + b"junk\r\n\r\n")
        replies, closed = read_tcp_replies(conn, REPLY_TIMEOUT_S)
        answered = [(r.call_id, r.status) for r in replies[:2]]
        assert answered == [(first_id, 200), (second_id, 200)], f"{replies}, closed={closed}"
        assert closed
    assert_still_healthy(tcp_linebox)


def test_tcp_valid_torture_files_are_answered_on_the_same_connection(
    tcp_linebox: LineboxProcess,
) -> None:
    with tcp_connection(tcp_linebox) as conn:
        for name in ("lwsdisp", "zeromf", "semiuri", "transports"):
            conn.sendall(torture(name))
            replies, closed = read_tcp_replies(conn, REPLY_TIMEOUT_S, count=1)
            assert not closed, f"{name}: connection closed"
            assert [(r.status, r.call_id) for r in replies] == [
                (200, first_call_id(torture(name)))
            ], f"{name}: {replies}"


def test_tcp_two_requests_in_one_segment_are_both_answered(tcp_linebox: LineboxProcess) -> None:
    with tcp_connection(tcp_linebox) as conn:
        first, first_id = options_request(tcp_linebox, conn, transport="TCP")
        second, second_id = options_request(tcp_linebox, conn, transport="TCP")
        conn.sendall(first + second)
        replies, closed = read_tcp_replies(conn, REPLY_TIMEOUT_S, count=2)
        assert not closed
        assert sorted((r.call_id or "", r.status) for r in replies) == sorted(
            [(first_id, 200), (second_id, 200)]
        ), replies


# --------------------------------------------------------------------------- garbage


def garbage(rng: random.Random, files: list[bytes]) -> bytes:
    """Either random bytes, or a torture file with a few bytes overwritten and maybe cut."""
    if rng.random() < 0.5:
        return rng.randbytes(rng.randint(0, GARBAGE_MAX_BYTES))
    data = bytearray(rng.choice(files))
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    if rng.random() < 0.3:
        del data[rng.randrange(len(data)) :]
    return bytes(data)


def test_random_and_mutated_datagrams_leave_the_daemon_answering(tmp_path: Path) -> None:
    rng = random.Random(1)
    files = [torture(name) for name in sorted(EXPECTED)]
    with running_linebox(tmp_path / "linebox", base_config()) as linebox, udp_socket() as sock:
        for _ in range(GARBAGE_DATAGRAMS):
            sock.sendto(garbage(rng, files), ("127.0.0.1", linebox.port))
        # The burst comes faster than the box works. It reads ahead, and a full read-ahead
        # queue is overload (firmware/transport/udp.py, firmware/core/overload.py): for a
        # moment a stranger's OPTIONS may hear 503 with Retry-After, or be dropped as a full
        # socket buffer would drop it. So the check asks as a real UA does: retransmitting
        # (RFC 3261 §17.1.2.2), and after a 503 again once Retry-After has passed (§21.5.4).
        deadline = time.monotonic() + GARBAGE_RECOVERY_S
        answers: list[int | None] = []
        while True:
            reply = ask_options(linebox, timeout_s=10.0, retransmit=True)
            answers.append(reply.status if reply is not None else None)
            if reply is None or reply.status != 503 or time.monotonic() >= deadline:
                break
            retry_after_s = float((reply.header("Retry-After") or "1").split(";")[0])
            time.sleep(min(retry_after_s, max(0.0, deadline - time.monotonic())))
        assert reply is not None and reply.status == 200, answers
        stats = linebox.status()["stats"]
        assert stats["parse_errors"] > 0  # the garbage did reach the parser
        assert stats["internal_errors"] == 0
        if 503 in answers:  # shed by the overload control, which counts what it sheds
            assert stats["shed_overload"] >= answers.count(503)
        assert "Traceback" not in linebox.log(), linebox.log()[-3000:]
