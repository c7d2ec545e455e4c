"""End to end, call pickup (issue 14) with real SIPp peers: the provider calls department 200,
whose agents 101 and 102 ring and never answer; extension 103, their colleague in department
300, dials the pickup code with digest authentication and takes the call — its 200 carries the
caller's SDP, the ringing agents get CANCEL, the record says 103 answered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.linebox import (
    AGENT_PASSWORDS,
    LineboxProcess,
    base_config,
    message_log_events,
    running_linebox,
)
from tests.e2e.sipp import Sipp, SippResult
from tests.e2e.test_calls import provider_call, start_agent, wait_for_records

RINGING_WAIT_S = 10.0


def pickup_config() -> dict[str, object]:
    config = base_config()
    config["departments"].append({
        "number": "300", "name": "Office", "strategy": "ring_all", "ring_timeout_s": 20,
        "members": ["101", "102", "103"],
    })
    return config


@pytest.fixture
def linebox(tmp_path: Path) -> Iterator[LineboxProcess]:
    with running_linebox(tmp_path / "linebox", pickup_config()) as process:
        yield process


def dial_code(linebox: LineboxProcess, tmp_path: Path, code: str, scenario: str) -> SippResult:
    """Extension 103 dials `code` (challenged, then with credentials)."""
    return Sipp(
        scenario=scenario, remote=linebox.address, service=code,
        auth_user="103", auth_password=AGENT_PASSWORDS["103"],
        auth_uri=f"{code}@{linebox.address}", keys={"caller": "103"}, calls=1,
        timeout_s=20, trace_dir=tmp_path, name=f"picker{len(code)}",
    ).run()


def received_cancel(result: SippResult) -> bool:
    assert result.message_log is not None
    return any(line.startswith("CANCEL") for _, direction, line
               in message_log_events(result.message_log) if direction == "received")


@pytest.mark.parametrize("code", ["*8", "**102"])
def test_a_colleague_picks_up_the_ringing_provider_call(
    linebox: LineboxProcess, tmp_path: Path, code: str
) -> None:
    with (
        start_agent(linebox, "101", tmp_path, scenario="agent_ring_only.xml") as agent1,
        start_agent(linebox, "102", tmp_path, scenario="agent_ring_only.xml") as agent2,
    ):
        caller = provider_call(linebox, tmp_path, variables={"hold_ms": 1000}).start()
        linebox.wait_for(
            lambda: [c["ringing"] for c in linebox.status()["calls"]] == [["101", "102"]],
            RINGING_WAIT_S, "the call ringing 101 and 102")
        picker = dial_code(linebox, tmp_path, code, "picker_auth.xml")
        assert picker.ok, picker.describe()
        called = caller.wait()
        assert called.ok and called.successful_calls == 1, called.describe()
        rung = agent1.wait(), agent2.wait()
    for agent in rung:
        assert agent.ok and received_cancel(agent), agent.describe()
    # The caller was answered with the picker's SDP (picker_auth.xml's o= line is the extension).
    assert called.message_log is not None
    assert "o=103 1 1 IN IP4" in called.message_log.read_text(errors="replace")
    (record,) = wait_for_records(linebox, 1)
    assert (record["outcome"], record["answered_by"], record["department"]) == (
        "answered", "103", "200")
    assert sorted((leg["target"], leg["result"]) for leg in record["legs"]) == [
        ("101", "cancelled"), ("102", "cancelled"), ("103", "answered")]
    agents = {a["extension"]: a for a in linebox.status()["agents"]}
    assert agents["103"]["calls_answered_today"] == 1
    assert set(linebox.channels_in_use().values()) == {0}


def test_nothing_to_pick_up_is_480_with_the_reason_and_the_daemon_carries_on(
    linebox: LineboxProcess, tmp_path: Path
) -> None:
    refused = dial_code(linebox, tmp_path, "*8", "caller_feature_code.xml")
    assert refused.ok, refused.describe()
    assert refused.message_log is not None
    assert "SIP/2.0 480 Nothing to pick up" in refused.message_log.read_text(errors="replace")
    assert linebox.status()["calls"] == []
