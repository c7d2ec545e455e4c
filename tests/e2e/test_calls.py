"""End to end with real SIPp peers: agents register and answer, callers call, the provider calls.

Every test starts a real daemon on 127.0.0.1 with its own database; agents are SIPp UAS
processes registered (with digest auth) by a short SIPp REGISTER run; the provider is a SIPp
bound to 127.0.0.2, the trunk's configured address.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.linebox import (
    AGENT_PASSWORDS,
    DAEMON_WAIT_S,
    LineboxProcess,
    base_config,
    message_log_events,
    running_linebox,
)
from tests.e2e.sipp import Sipp, SippProcess, wait_until_bound

PROVIDER_IP = "127.0.0.2"
DID = "74951234567"
# SIPp's own bound on a registration (its -timeout): two round trips, which take milliseconds;
# on two cores shared with a full test run, seconds. SIPp retransmits each REGISTER meanwhile
# (retrans="500": Timer E, RFC 3261 §17.1.2.2), as a phone does.
REGISTER_TIMEOUT_S = 30



@pytest.fixture
def linebox(tmp_path: Path) -> Iterator[LineboxProcess]:
    with running_linebox(tmp_path / "linebox", base_config()) as process:
        yield process


def register(
    linebox: LineboxProcess,
    extension: str,
    contact_port: int,
    trace: Path,
    expires: int = 3600,
    transport: str = "u1",
    password: str | None = None,
) -> None:
    result = Sipp(
        scenario="register.xml",
        remote=linebox.address,
        service=extension,
        auth_user=extension,
        auth_password=password or AGENT_PASSWORDS[extension],
        keys={"contact_port": contact_port, "expires": expires},
        calls=1,
        timeout_s=REGISTER_TIMEOUT_S,
        trace_dir=trace,
        transport=transport,
    ).run()
    assert result.ok, result.describe()


def start_agent(
    linebox: LineboxProcess,
    extension: str,
    trace: Path,
    *,
    scenario: str = "agent_answer.xml",
    calls: int = 1,
    variables: dict[str, Any] | None = None,
    lost: float | None = None,
    timeout_s: float = 30,
    transport: str = "u1",
    password: str | None = None,
) -> SippProcess:
    agent = Sipp(
        scenario=scenario,
        service=extension,
        calls=calls,
        auto_answer=True,
        variables=variables or {},
        trace_dir=trace,
        timeout_s=timeout_s,
        lost_percent=lost,
        name=f"agent{extension}",
        transport=transport,
    )
    process = agent.start()
    assert agent.local_port is not None
    if transport == "u1":
        bound = wait_until_bound(agent.local_port)
    else:
        bound = wait_until_listening(agent.local_port)
    assert bound, process.wait(0).describe()  # SIPp ended at start (its stderr says why)
    register(linebox, extension, agent.local_port, trace, transport=transport,
             password=password)
    return process


def wait_until_listening(port: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.02)
    return False


def provider_call(linebox: LineboxProcess, trace: Path, **options: Any) -> Sipp:
    defaults: dict[str, Any] = {
        "scenario": "provider_call.xml",
        "remote": linebox.address,
        "local_ip": PROVIDER_IP,
        "service": DID,
        "calls": 1,
        "timeout_s": 30,
        "trace_dir": trace,
    }
    defaults.update(options)
    return Sipp(**defaults)


def wait_for_records(linebox: LineboxProcess, count: int) -> list[dict[str, Any]]:
    return list(
        linebox.wait_for(
            lambda: (calls := linebox.calls()) and len(calls) >= count and calls,
            DAEMON_WAIT_S,
            f"{count} call records",
        )
    )


def test_agents_register_with_digest_auth(linebox: LineboxProcess, tmp_path: Path) -> None:
    register(linebox, "101", 16999, tmp_path)
    registrations = linebox.status()["registrations"]
    assert [(r["extension"], r["contact"]) for r in registrations] == [
        ("101", "sip:101@127.0.0.1:16999;transport=UDP")
    ]


def test_provider_call_rings_the_department_and_completes_with_bye(
    linebox: LineboxProcess, tmp_path: Path
) -> None:
    with (
        start_agent(linebox, "101", tmp_path) as agent1,
        start_agent(linebox, "102", tmp_path, variables={"answer_delay_ms": 3000}) as agent2,
    ):
        caller = provider_call(linebox, tmp_path, variables={"hold_ms": 500}).run()
        assert caller.ok, caller.describe()
        assert caller.successful_calls == 1
        first, second = agent1.wait(), agent2.wait()
    assert first.ok and first.counters.get("answered") == 1, first.describe()
    # ring_all: the slower agent was ringing too, and was cancelled when 101 answered.
    assert second.ok and second.counters.get("cancelled") == 1, second.describe()
    (record,) = wait_for_records(linebox, 1)
    assert record["outcome"] == "answered" and record["answered_by"] == "101"
    assert record["department"] == "200" and record["number"] == DID
    assert sorted((leg["target"], leg["result"]) for leg in record["legs"]) == [
        ("101", "answered"),
        ("102", "cancelled"),
    ]
    assert set(linebox.channels_in_use().values()) == {0}


def test_extension_calls_the_department_after_a_digest_challenge(
    linebox: LineboxProcess, tmp_path: Path
) -> None:
    with start_agent(linebox, "101", tmp_path) as agent:
        caller = Sipp(
            scenario="caller_auth.xml",
            remote=linebox.address,
            service="200",
            auth_user="103",
            auth_password=AGENT_PASSWORDS["103"],
            auth_uri=f"200@{linebox.address}",
            keys={"caller": "103"},
            calls=1,
            timeout_s=20,
            trace_dir=tmp_path,
        ).run()
        assert caller.ok, caller.describe()
        assert agent.wait().ok
    (record,) = wait_for_records(linebox, 1)
    assert record["direction"] == "internal" and record["caller"] == "103"
    assert record["answered_by"] == "101"


def test_caller_cancel_while_ringing_cancels_every_agent_leg(
    linebox: LineboxProcess, tmp_path: Path
) -> None:
    with (
        start_agent(linebox, "101", tmp_path, scenario="agent_ring_only.xml") as agent1,
        start_agent(linebox, "102", tmp_path, scenario="agent_ring_only.xml") as agent2,
    ):
        caller = provider_call(
            linebox, tmp_path, scenario="provider_cancel.xml", variables={"cancel_after_ms": 800}
        ).run()
        assert caller.ok, caller.describe()
        results = agent1.wait(), agent2.wait()
    for result in results:
        assert result.ok, result.describe()
        assert any(
            line.startswith("CANCEL")
            for _, d, line in message_log_events(result.message_log)
            if d == "received"
        )  # type: ignore[arg-type]
    (record,) = wait_for_records(linebox, 1)
    assert record["outcome"] == "missed" and record["answered_by"] is None
    assert sorted(leg["result"] for leg in record["legs"]) == ["cancelled", "cancelled"]
    assert set(linebox.channels_in_use().values()) == {0}


def test_fourth_simultaneous_call_hears_busy_within_50_ms(tmp_path: Path) -> None:
    config = base_config(
        departments=[
            {
                "number": "200",
                "name": "Sales",
                "strategy": "in_order",
                "ring_timeout_s": 20,
                "members": ["101", "102", "103"],
            },
        ]
    )
    with running_linebox(tmp_path / "linebox", config) as linebox, ExitStack() as stack:
        agents = [
            stack.enter_context(
                start_agent(linebox, ext, tmp_path, variables={"answer_delay_ms": 0})
            )
            for ext in ("101", "102", "103")
        ]
        # Three calls held for 6 s fill the number's 3 channels. in_order offers each call to
        # the first member who is not already talking, so each agent takes one call.
        held = stack.enter_context(
            provider_call(
                linebox,
                tmp_path,
                calls=3,
                rate=2,
                max_concurrent=3,
                variables={"hold_ms": 6000},
                name="held",
            ).start()
        )
        linebox.wait_for(
            lambda: linebox.channels_in_use().get(f"number:{DID}") == 3, 10, "three calls up"
        )
        busy = provider_call(
            linebox, tmp_path, scenario="provider_expect_busy.xml", name="busy"
        ).run()
        assert busy.ok, busy.describe()
        assert busy.message_log is not None
        events = message_log_events(busy.message_log)
        sent = next(t for t, d, line in events if d == "sent" and line.startswith("INVITE"))
        got = next(t for t, d, line in events if d == "received" and " 486 " in line)
        assert got - sent < 0.050, f"486 took {(got - sent) * 1000:.1f} ms"
        assert held.wait().ok
        assert all(agent.wait().ok for agent in agents)
        linebox.wait_for(lambda: set(linebox.channels_in_use().values()) == {0}, DAEMON_WAIT_S,
                         "channels free")
        records = wait_for_records(linebox, 4)
        assert sorted(r["outcome"] for r in records) == ["answered"] * 3 + ["over_capacity"]


def test_calls_complete_through_retransmissions_with_10_percent_loss(
    linebox: LineboxProcess, tmp_path: Path
) -> None:
    calls = 20
    retransmissions = 0
    # The loss is on the provider's side: SIPp drops 10% of what it sends and receives, so the
    # gateway sees lost INVITEs, ACKs and BYEs and lost responses. (A SIPp UAS scenario cannot
    # itself survive loss: it aborts on a retransmitted INVITE while it waits for the ACK.)
    with start_agent(
        linebox, "101", tmp_path, calls=calls, variables={"answer_delay_ms": 100}, timeout_s=300
    ) as agent:
        # One call at a time: the single agent is offered a call only while it is free.
        for index in range(calls):
            caller = provider_call(
                linebox,
                tmp_path,
                lost_percent=10,
                variables={"hold_ms": 300},
                timeout_s=30,
                name=f"lossy{index}",
            ).run()
            assert caller.ok, caller.describe()
            retransmissions += caller.retransmissions
            linebox.wait_for(lambda: not linebox.status()["calls"], 40, "call cleared")
        assert agent.wait().ok
    records = wait_for_records(linebox, calls)
    assert [r["outcome"] for r in records] == ["answered"] * calls
    assert set(linebox.channels_in_use().values()) == {0}
    assert linebox.status()["stats"]["internal_errors"] == 0
    # With 10% of SIPp's packets dropped, some recovery must have happened.
    assert retransmissions > 0


def test_calls_cross_tcp_both_ways(linebox: LineboxProcess, tmp_path: Path) -> None:
    """The provider calls over TCP; the agent registered over TCP is rung over TCP."""
    with start_agent(linebox, "101", tmp_path, transport="t1") as agent:
        registration = linebox.status()["registrations"][0]
        assert registration["source"].startswith("tcp:")
        caller = provider_call(linebox, tmp_path, transport="t1",
                               variables={"hold_ms": 300}).run()
        assert caller.ok, caller.describe()
        agent_result = agent.wait()
    assert agent_result.ok, agent_result.describe()
    (record,) = wait_for_records(linebox, 1)
    assert record["outcome"] == "answered" and record["answered_by"] == "101"


def test_agent_on_break_is_not_offered_calls(linebox: LineboxProcess, tmp_path: Path) -> None:
    with start_agent(linebox, "101", tmp_path, scenario="agent_ring_only.xml",
                     timeout_s=8) as on_break, start_agent(linebox, "102", tmp_path) as on_line:
        answer = linebox.control({"command": "agent", "extension": "101", "status": "break",
                                  "reason": "lunch"})
        assert answer["ok"], answer
        caller = provider_call(linebox, tmp_path, variables={"hold_ms": 300}).run()
        assert caller.ok, caller.describe()
        assert on_line.wait().ok
        idle = on_break.wait()
    assert idle.created_calls == 0  # 101 was never offered the call
    (record,) = wait_for_records(linebox, 1)
    assert [leg["target"] for leg in record["legs"]] == ["102"]
    agents = {a["extension"]: a for a in linebox.status()["agents"]}
    assert (agents["101"]["status"], agents["101"]["reason"]) == ("break", "lunch")


def test_feature_code_from_the_phone_sets_the_status(
    linebox: LineboxProcess, tmp_path: Path
) -> None:
    for code, status in (("*50", "break"), ("*51", "on_line"), ("*52", "dnd")):
        result = Sipp(
            scenario="caller_feature_code.xml", remote=linebox.address, service=code,
            auth_user="103", auth_password=AGENT_PASSWORDS["103"],
            auth_uri=f"{code}@{linebox.address}", keys={"caller": "103"}, calls=1,
            timeout_s=10, trace_dir=tmp_path, name=f"code{code[1:]}",
        ).run()
        assert result.ok, result.describe()
        agents = {a["extension"]: a for a in linebox.status()["agents"]}
        assert agents["103"]["status"] == status
