"""End to end, blind transfer (issue 14, RFC 3515 REFER) with real SIPp peers: the provider calls
department 200, agent 101 answers, talks, and refers the caller to extension 103; the box
answers 202 and NOTIFYs 101 (sipfrag 100 Trying, then 200 OK), rings 103 showing the caller's
number, and once 103 answers re-INVITEs the provider with 103's SDP; 101 hangs up, the
provider talks on with 103 and hangs up. One record: answered by 103, both agents' legs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.linebox import LineboxProcess, base_config, running_linebox
from tests.e2e.test_calls import provider_call, start_agent, wait_for_records

CALLER_ID = "79990000001"


@pytest.fixture
def linebox(tmp_path: Path) -> Iterator[LineboxProcess]:
    config = base_config()
    config["departments"][0]["members"] = ["101"]
    with running_linebox(tmp_path / "linebox", config) as process:
        yield process


def test_an_agent_transfers_the_provider_call_to_a_colleague(
    linebox: LineboxProcess, tmp_path: Path
) -> None:
    with (
        start_agent(linebox, "101", tmp_path, scenario="agent_transfer.xml",
                    variables={"target": "103", "refer_ms": 1000}) as referrer,
        start_agent(linebox, "103", tmp_path, variables={"answer_delay_ms": 500}) as target,
    ):
        caller = provider_call(linebox, tmp_path, scenario="provider_transferred.xml",
                               variables={"hold_ms": 1500}).start()
        called = caller.wait()
        assert called.ok and called.counters.get("reinvited") == 1, called.describe()
        transferred = referrer.wait()
        assert transferred.ok and transferred.successful_calls == 1, transferred.describe()
        answered = target.wait()
        assert answered.ok and answered.successful_calls == 1, answered.describe()
    # 103 was rung with the caller's number, and offered the caller's own SDP.
    assert answered.message_log is not None
    log = answered.message_log.read_text(errors="replace")
    assert f"From: <sip:{CALLER_ID}@" in log and "o=provider 1 1 IN IP4" in log
    (record,) = wait_for_records(linebox, 1)
    assert (record["outcome"], record["answered_by"], record["department"]) == (
        "answered", "103", None)
    assert sorted((leg["target"], leg["result"]) for leg in record["legs"]) == [
        ("101", "answered"), ("103", "answered")]
    agents = {a["extension"]: a for a in linebox.status()["agents"]}
    assert (agents["101"]["calls_answered_today"], agents["103"]["calls_answered_today"]) == (
        1, 1)
    assert linebox.status()["calls"] == []
    assert set(linebox.channels_in_use().values()) == {0}
