"""End to end: registration to the provider, calls out through the trunk, in_order timing, hold.

Real SIPp peers on loopback; the provider is a SIPp bound to 127.0.0.2 on a free port, which is
the trunk's configured host and port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.linebox import AGENT_PASSWORDS, base_config, message_log_events, running_linebox
from tests.e2e.sipp import Sipp, free_port, wait_until_bound
from tests.e2e.test_calls import DID, PROVIDER_IP, provider_call, start_agent, wait_for_records

TIMING_TOLERANCE_S = 0.2


def trunk_config(port: int, **trunk: Any) -> dict[str, Any]:
    settings = {"name": "provider", "type": "sip", "host": PROVIDER_IP, "port": port,
                "username": "box", "password": "provider-pw", "register": False, "channels": 10,
                "inbound_match": "address"}
    settings.update(trunk)
    return base_config(trunks=[settings])


def test_trunk_registers_to_the_provider_with_digest_auth(tmp_path: Path) -> None:
    port = free_port(PROVIDER_IP)
    registrar = Sipp(
        scenario="provider_registrar.xml", local_ip=PROVIDER_IP, local_port=port, calls=1,
        keys={"user": "box", "password": "provider-pw"}, timeout_s=20, trace_dir=tmp_path,
    )
    with registrar.start() as process:
        assert wait_until_bound(port, PROVIDER_IP)
        config = trunk_config(port, register=True, expires_s=600)
        with running_linebox(tmp_path / "linebox", config) as linebox:
            trunk = linebox.wait_for(
                lambda: next((t for t in linebox.status()["trunks"]
                              if t["state"] == "registered"), None),
                10, "trunk registered",
            )
            assert trunk["name"] == "provider" and 590 <= trunk["expires_in_s"] <= 600
            result = process.wait()
    # SIPp's <verifyauth> checked the digest against the trunk's password.
    assert result.ok, result.describe()
    assert result.counters.get("registered") == 1


def test_extension_calls_an_external_number_through_the_trunk(tmp_path: Path) -> None:
    port = free_port(PROVIDER_IP)
    provider = Sipp(
        scenario="agent_answer.xml", local_ip=PROVIDER_IP, local_port=port, calls=1,
        auto_answer=True, timeout_s=20, trace_dir=tmp_path, name="provider",
        variables={"answer_delay_ms": 200},
    )
    with provider.start() as provider_process, running_linebox(
        tmp_path / "linebox", trunk_config(port)
    ) as linebox:
        assert wait_until_bound(port, PROVIDER_IP)
        caller = Sipp(
            scenario="caller_auth.xml", remote=linebox.address, service="79161234567",
            auth_user="101", auth_password=AGENT_PASSWORDS["101"],
            auth_uri=f"79161234567@{linebox.address}", keys={"caller": "101"}, calls=1,
            timeout_s=20, trace_dir=tmp_path,
        ).run()
        assert caller.ok, caller.describe()
        provider_result = provider_process.wait()
        assert provider_result.ok, provider_result.describe()
        assert provider_result.message_log is not None
        invite = next(line for _, d, line in message_log_events(provider_result.message_log)
                      if d == "received" and line.startswith("INVITE"))
        assert invite.startswith(f"INVITE sip:79161234567@{PROVIDER_IP}:{port} ")
        (record,) = wait_for_records(linebox, 1)
        assert record["direction"] == "outbound" and record["outcome"] == "answered"
        assert set(linebox.channels_in_use().values()) == {0}


def test_in_order_rings_the_next_member_after_the_first_ones_ring_time(tmp_path: Path) -> None:
    config = base_config(departments=[
        {"number": "200", "name": "Sales", "strategy": "in_order", "ring_timeout_s": 20,
         "members": [{"extension": "101", "ring_time_s": 5}, "102"]},
    ])
    with running_linebox(tmp_path / "linebox", config) as linebox:
        with start_agent(linebox, "101", tmp_path, scenario="agent_ring_only.xml") as first, \
                start_agent(linebox, "102", tmp_path) as second:
            caller = provider_call(linebox, tmp_path, variables={"hold_ms": 300}).run()
            assert caller.ok, caller.describe()
            first_result, second_result = first.wait(), second.wait()
        assert first_result.ok and second_result.ok
        assert first_result.message_log and second_result.message_log
        first_events = message_log_events(first_result.message_log)
        second_events = message_log_events(second_result.message_log)
        rang_first = next(t for t, d, line in first_events
                          if d == "received" and line.startswith("INVITE"))
        cancelled_first = next(t for t, d, line in first_events
                               if d == "received" and line.startswith("CANCEL"))
        rang_second = next(t for t, d, line in second_events
                           if d == "received" and line.startswith("INVITE"))
        assert abs((rang_second - rang_first) - 5.0) < TIMING_TOLERANCE_S
        assert abs(cancelled_first - rang_second) < TIMING_TOLERANCE_S
        (record,) = wait_for_records(linebox, 1)
        assert record["answered_by"] == "102"
        # 101's turn ran out: recorded as an unanswered offer, not as a cancellation.
        assert [(leg["target"], leg["result"]) for leg in record["legs"]] == [
            ("101", "no_answer"), ("102", "answered"),
        ]


def test_hold_reinvite_is_relayed_to_the_agent_and_answered(tmp_path: Path) -> None:
    with running_linebox(tmp_path / "linebox", base_config()) as linebox:
        with start_agent(linebox, "101", tmp_path, scenario="agent_hold.xml",
                         variables={"answer_delay_ms": 100}) as agent:
            caller = provider_call(linebox, tmp_path, scenario="provider_hold.xml",
                                   variables={"hold_ms": 300}).run()
            assert caller.ok, caller.describe()
            assert caller.counters.get("held") == 1
            agent_result = agent.wait()
        assert agent_result.ok, agent_result.describe()
        assert agent_result.counters.get("reinvited") == 1
        (record,) = wait_for_records(linebox, 1)
        assert record["outcome"] == "answered"
        assert record["number"] == DID
