"""The SIPp harness and the scenario files, checked SIPp against SIPp (no gateway involved).

Each scenario in tests/e2e/scenarios is run against a SIPp peer playing the other side, so a
failing end-to-end test against Linebox points at Linebox, not at the XML. Only loopback.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.e2e.sipp import (
    EXIT_FATAL_ERROR,
    EXIT_SOME_CALLS_FAILED,
    SCENARIOS_DIR,
    Sipp,
    SippMissingError,
    SippProcess,
    SippResult,
    free_ports,
    udp_port_bound,
    wait_until_bound,
)

PEER_TIMEOUT_S = 20.0
AGENT_PASSWORD = "secret-101-pw"


def start_server(trace_dir: Path, scenario: str, **options: object) -> tuple[SippProcess, int]:
    options = {"timeout_s": PEER_TIMEOUT_S, **options}
    server = Sipp(scenario=scenario, trace_dir=trace_dir, **options)
    process = server.start()
    assert server.local_port is not None
    assert wait_until_bound(server.local_port), f"{scenario} did not bind its port"
    return process, server.local_port


def run_pair(
    trace_dir: Path,
    server: tuple[str, dict[str, object]],
    client: tuple[str, dict[str, object]],
) -> tuple[SippResult, SippResult]:
    """Run a UAS scenario and a UAC scenario against it; both results, UAC first."""
    server_scenario, server_options = server
    client_scenario, client_options = client
    process, port = start_server(trace_dir, server_scenario, **server_options)
    with process:
        client_result = Sipp(
            scenario=client_scenario,
            remote=f"127.0.0.1:{port}",
            trace_dir=trace_dir,
            **{"timeout_s": PEER_TIMEOUT_S, **client_options},
        ).run()
        server_result = process.wait()
    return client_result, server_result


def test_every_scenario_has_a_header_comment() -> None:
    for path in sorted(SCENARIOS_DIR.glob("*.xml")):
        head = path.read_text(encoding="iso-8859-1")[:600]
        assert f"<!--\n  {path.name} - " in head, f"{path.name} lacks its header comment"


def test_a_call_from_uac_to_uas_completes_and_counts_one_success(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        ("bench_uas", {"calls": 1}),
        ("bench_uac", {"service": "1000", "calls": 1, "variables": {"hold_ms": 100}}),
    )

    assert uac.ok, uac.describe()
    assert (uac.successful_calls, uac.failed_calls) == (1, 0)
    assert uas.ok, uas.describe()
    assert uac.message_log is not None and "INVITE sip:1000@" in uac.message_log.read_text()
    assert uac.response_time_ms is not None and uac.response_time_ms < 1000


def test_a_uac_against_nothing_fails_within_its_timeout(tmp_path: Path) -> None:
    (silent_port,) = free_ports(1)
    started = time.monotonic()

    result = Sipp(
        scenario="bench_uac",
        remote=f"127.0.0.1:{silent_port}",
        service="1000",
        calls=1,
        timeout_s=3,
        trace_dir=tmp_path,
    ).run()

    assert time.monotonic() - started < 3 + 5
    assert not result.ok
    assert result.returncode != 0
    assert result.successful_calls == 0


def test_a_receive_timeout_is_counted_as_a_failed_call(tmp_path: Path) -> None:
    (silent_port,) = free_ports(1)

    result = Sipp(
        scenario="bench_uac",
        remote=f"127.0.0.1:{silent_port}",
        service="1000",
        calls=1,
        recv_timeout_ms=1000,
        timeout_s=10,
        trace_dir=tmp_path,
    ).run()

    assert result.returncode == EXIT_SOME_CALLS_FAILED, result.describe()
    assert result.failed_calls == 1
    assert result.retransmissions >= 1  # Timer A fired at 500 ms before the receive timeout


def test_a_missing_sipp_binary_is_reported_with_how_to_install_it() -> None:
    with pytest.raises(SippMissingError, match="sip-tester"):
        Sipp(scenario="bench_uac", executable="sipp-not-installed-here").command(Path("/tmp"))


def test_free_ports_are_distinct_and_bindable_for_udp_and_tcp() -> None:
    ports = free_ports(5, tcp=True)

    assert len(set(ports)) == 5
    for port in ports:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.bind(("127.0.0.1", port))


def test_an_unknown_scenario_is_refused_before_sipp_starts() -> None:
    with pytest.raises(FileNotFoundError, match="no SIPp scenario"):
        Sipp(scenario="no_such_scenario")


# --- the scenarios, each against a SIPp peer ------------------------------------------------

CHALLENGER = (
    "test_challenger_uas",
    {"calls": 1, "keys": {"auth_user": "101", "auth_pass": AGENT_PASSWORD}},
)


def test_register_answers_the_digest_challenge(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        CHALLENGER,
        (
            "register",
            {
                "service": "101",
                "auth_user": "101",
                "auth_password": AGENT_PASSWORD,
                "keys": {"contact_port": 16000, "expires": 3600},
                "calls": 1,
            },
        ),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()
    assert uac.message_log is not None
    log = uac.message_log.read_text()
    assert "Contact: <sip:101@127.0.0.1:16000;transport=UDP>" in log
    assert "Expires: 3600" in log


def test_unregister_sends_expires_zero(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        CHALLENGER,
        (
            "unregister",
            {
                "service": "101",
                "auth_user": "101",
                "auth_password": AGENT_PASSWORD,
                "keys": {"contact_port": 16000},
                "calls": 1,
            },
        ),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()
    assert uac.message_log is not None and "Expires: 0" in uac.message_log.read_text()


def test_register_with_a_wrong_password_fails(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        CHALLENGER,
        (
            "register",
            {
                "service": "101",
                "auth_user": "101",
                "auth_password": "wrong",
                "keys": {"contact_port": 16000, "expires": 60},
                "calls": 1,
            },
        ),
    )

    assert uac.failed_calls == 1, uac.describe()
    assert uas.failed_calls == 1, uas.describe()


def test_sipp_cannot_answer_a_challenge_whose_first_header_is_sha256(tmp_path: Path) -> None:
    """SIPp 3.6.1 takes the first WWW-Authenticate and knows only MD5 (and AKAv1-MD5): a
    gateway that lists SHA-256 first makes it stop with a fatal error. Linebox must list MD5
    first (or offer only MD5) for SIPp-driven tests."""
    server_scenario, server_options = CHALLENGER
    uac, _ = run_pair(
        tmp_path,
        (
            server_scenario,
            {**server_options, "variables": {"alg1": "SHA-256", "alg2": "MD5"}, "timeout_s": 5},
        ),
        (
            "register",
            {
                "service": "101",
                "auth_user": "101",
                "auth_password": AGENT_PASSWORD,
                "keys": {"contact_port": 16000, "expires": 60},
                "calls": 1,
                "timeout_s": 5,
            },
        ),
    )

    assert uac.returncode == EXIT_FATAL_ERROR, uac.describe()
    assert "must use MD5" in uac.errors + uac.stderr


def test_caller_auth_authenticates_and_completes_a_call(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    server_scenario, server_options = CHALLENGER
    uac, uas = run_pair(
        tmp_path,
        (server_scenario, {**server_options, "local_port": port}),
        (
            "caller_auth",
            {
                "service": "200",
                "auth_user": "101",
                "auth_password": AGENT_PASSWORD,
                "auth_uri": f"200@127.0.0.1:{port}",
                "keys": {"caller": "101"},
                "variables": {"hold_ms": 200},
                "calls": 1,
            },
        ),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()
    assert uac.message_log is not None
    log = uac.message_log.read_text()
    assert f'uri="sip:200@127.0.0.1:{port}"' in log  # the digest uri is the Request-URI
    assert "BYE sip:challenger@" in log  # in-dialog requests go to the remote Contact


def test_caller_cancel_cancels_while_ringing(tmp_path: Path) -> None:
    server_scenario, server_options = CHALLENGER
    uac, uas = run_pair(
        tmp_path,
        (server_scenario, {**server_options, "variables": {"ring_ms": 10000}}),
        (
            "caller_cancel",
            {
                "service": "200",
                "auth_user": "101",
                "auth_password": AGENT_PASSWORD,
                "keys": {"caller": "101"},
                "variables": {"cancel_after_ms": 200},
                "calls": 1,
            },
        ),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()
    assert uac.elapsed_s < 5


def test_provider_call_is_answered_by_agent_answer_over_several_calls(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        ("agent_answer", {"calls": 3, "auto_answer": True, "variables": {"answer_delay_ms": 50}}),
        (
            "provider_call",
            {
                "service": "74951234567",
                "calls": 3,
                "rate": 10,
                "variables": {"hold_ms": 100, "caller_id": "79161234567"},
            },
        ),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()
    assert uac.counters == {"answered": 3, "busy": 0}
    assert uas.counters == {"answered": 3, "cancelled": 0}
    assert uac.message_log is not None and "From: <sip:79161234567@" in uac.message_log.read_text()


def test_provider_call_counts_a_busy_answer_as_busy(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        ("agent_busy", {"calls": 1}),
        ("provider_call", {"service": "74951234567", "calls": 1}),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()
    assert uac.counters == {"answered": 0, "busy": 1}


def test_provider_expect_busy_accepts_486(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        ("agent_busy", {"calls": 1}),
        ("provider_expect_busy", {"service": "74951234567", "calls": 1}),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()


def test_provider_expect_busy_fails_when_the_call_is_answered(tmp_path: Path) -> None:
    uac, _ = run_pair(
        tmp_path,
        ("agent_answer", {"calls": 1, "variables": {"answer_delay_ms": 0}, "timeout_s": 5}),
        ("provider_expect_busy", {"service": "74951234567", "calls": 1, "timeout_s": 5}),
    )

    assert uac.failed_calls == 1, uac.describe()


def test_agent_ring_only_takes_a_cancel(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        ("agent_ring_only", {"calls": 1}),
        (
            "provider_cancel",
            {"service": "74951234567", "calls": 1, "variables": {"cancel_after_ms": 200}},
        ),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()


def test_agent_answer_takes_a_cancel_that_arrives_before_it_answers(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        ("agent_answer", {"calls": 1, "variables": {"answer_delay_ms": 10000}}),
        (
            "provider_cancel",
            {"service": "74951234567", "calls": 1, "variables": {"cancel_after_ms": 200}},
        ),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()
    assert uas.counters == {"answered": 0, "cancelled": 1}
    assert uac.elapsed_s < 5


def test_provider_registrar_checks_the_digest_and_echoes_the_binding(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        ("provider_registrar", {"calls": 1, "keys": {"user": "box", "password": "pw"}}),
        (
            "register",
            {
                "service": "box",
                "auth_user": "box",
                "auth_password": "pw",
                "keys": {"contact_port": 5060, "expires": 120},
                "calls": 1,
            },
        ),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()
    assert uas.counters == {"registered": 1}
    assert uac.message_log is not None
    reply = uac.message_log.read_text().rsplit("SIP/2.0 200 OK", 1)[1]
    assert "Contact: <sip:box@127.0.0.1:5060;transport=UDP>" in reply
    assert "Expires: 120" in reply


def test_provider_registrar_refuses_a_wrong_digest(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        ("provider_registrar", {"calls": 1, "keys": {"user": "box", "password": "pw"}}),
        (
            "register",
            {
                "service": "box",
                "auth_user": "box",
                "auth_password": "not-pw",
                "keys": {"contact_port": 5060, "expires": 120},
                "calls": 1,
            },
        ),
    )

    assert uac.failed_calls == 1, uac.describe()
    assert uas.failed_calls == 1, uas.describe()
    assert uas.counters.get("registered", 0) == 0


def test_bench_scenarios_sustain_a_short_load(tmp_path: Path) -> None:
    uac, uas = run_pair(
        tmp_path,
        ("bench_uas", {"calls": 50, "trace_msg": False}),
        (
            "bench_uac",
            {
                "service": "1000",
                "calls": 50,
                "rate": 50,
                "max_concurrent": 100,
                "variables": {"hold_ms": 200},
                "trace_msg": False,
            },
        ),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()
    assert uac.successful_calls == 50
    assert uac.messages_sent == 150  # INVITE, ACK, BYE per call


@pytest.mark.parametrize(
    ("scenario", "options"),
    [
        ("bench_uac", {"service": "1000"}),
        ("provider_call", {"service": "74951234567", "variables": {"hold_ms": 100}}),
    ],
)
def test_a_late_ringing_after_the_answer_does_not_fail_the_call(
    tmp_path: Path, scenario: str, options: dict[str, object]
) -> None:
    uac, uas = run_pair(
        tmp_path,
        ("test_late_ringing_uas", {"calls": 3}),
        (scenario, {"calls": 3, "rate": 10, **options}),
    )

    assert uac.ok, uac.describe()
    assert uas.ok, uas.describe()


def test_sipps_control_socket_listens_only_where_its_port_was_found_free(tmp_path: Path) -> None:
    """SIPp binds its remote-control socket on every address unless told one (-ci); its port
    is found free on 127.0.0.1 only, so a socket on 127.0.0.2 holding it (a provider's SIPp,
    an RTP listener) stopped SIPp at once: "Unable to bind remote control socket"."""
    process, _ = start_server(tmp_path, "agent_answer", service="101", calls=1, timeout_s=5)
    with process:
        control_port = int(process.argv[process.argv.index("-cp") + 1])
        assert process.argv[process.argv.index("-ci") + 1] == "127.0.0.1"
        assert udp_port_bound(control_port, "127.0.0.1")
        local = {line.split()[1] for line in Path("/proc/net/udp").read_text().splitlines()[1:]}
        assert f"00000000:{control_port:04X}" not in local  # not on every address
        # And so a socket of another loopback address may hold the same port meanwhile.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind(("127.0.0.2", control_port))
        assert process.running()
