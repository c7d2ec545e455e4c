"""Queue callback end to end with real SIPp peers: the caller presses 1 while waiting (SIP INFO
DTMF), hangs up, and when the member comes back on line the box calls the member's phone first
and then the caller through the provider, joining them with each other's SDP (RFC 3725 flow I).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.linebox import DAEMON_WAIT_S, base_config, running_linebox
from tests.e2e.sipp import Sipp, free_port, wait_until_bound
from tests.e2e.test_calls import PROVIDER_IP, provider_call, start_agent, wait_for_records

CUSTOMER = "79161234567"
HOLD_MS = 1000


def callback_config(customer_port: int) -> dict[str, Any]:
    config = base_config()
    config["trunks"][0]["port"] = customer_port  # where the box calls the customer
    config["departments"] = [{
        "number": "200", "name": "Sales", "strategy": "ring_all", "ring_timeout_s": 20,
        "members": ["101"],
        "queue": {"max_callers": 5, "max_wait_s": 120, "callback": {"key": "1"}},
    }]
    return config


def set_status(linebox: Any, status: str) -> None:
    answer = linebox.control({"command": "agent", "extension": "101", "status": status})
    assert answer["ok"], answer


def test_caller_presses_1_and_is_called_back_when_the_member_is_free(tmp_path: Path) -> None:
    customer_port = free_port(PROVIDER_IP)
    with running_linebox(tmp_path / "linebox", callback_config(customer_port)) as linebox:
        set_status(linebox, "break")
        with start_agent(linebox, "101", tmp_path) as agent:
            customer_sipp = Sipp(
                scenario="customer_answer_hang_up.xml", local_ip=PROVIDER_IP,
                local_port=customer_port, calls=1, timeout_s=30, trace_dir=tmp_path,
                variables={"hold_ms": HOLD_MS}, name="customer",
            )
            with customer_sipp.start() as customer:
                assert wait_until_bound(customer_port, PROVIDER_IP)
                caller = provider_call(
                    linebox, tmp_path, scenario="provider_callback_request.xml",
                    variables={"caller_id": CUSTOMER}, name="caller",
                ).run()
                assert caller.ok, caller.describe()
                waiting = linebox.wait_for(
                    lambda: [e for q in linebox.status()["queues"] for e in q["waiting"]],
                    DAEMON_WAIT_S, "the callback request in the queue",
                )
                assert [(e["caller"], e["callback"]) for e in waiting] == [(CUSTOMER, True)]
                assert agent.running  # nothing rang while the member was on break

                set_status(linebox, "on_line")
                called_back = customer.wait()
                answered = agent.wait()
        assert called_back.ok, called_back.describe()
        assert answered.ok and answered.counters.get("answered") == 1, answered.describe()
        records = wait_for_records(linebox, 2)
        origin, attempt = records
        assert (origin["outcome"], origin["callback_state"]) == ("callback", "done")
        assert origin["end_cause"] == "callback requested"
        assert (attempt["direction"], attempt["outcome"], attempt["answered_by"]) == (
            "callback", "answered", "101")
        assert [leg["target"] for leg in attempt["legs"]] == ["101", CUSTOMER]
        assert attempt["talk_s"] >= HOLD_MS / 1000 - 0.05
        assert linebox.channels_in_use()["trunk:provider"] == 0

    # Flow I: the member's INVITE had no SDP; the customer got the member's offer; the member's
    # ACK carried the customer's answer.
    agent_log = answered.message_log.read_text(errors="replace")  # type: ignore[union-attr]
    customer_log = called_back.message_log.read_text(errors="replace")  # type: ignore[union-attr]
    invite_to_member = agent_log.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    assert "Content-Length: 0" in invite_to_member or "Content-Length:0" in invite_to_member
    assert "o=agent" in customer_log.split("INVITE sip:", 1)[1].split("SIP/2.0 180", 1)[0]
    ack_to_member = agent_log.split("ACK sip:", 1)[1].split("BYE sip:", 1)[0]
    assert "o=customer" in ack_to_member


def test_a_callback_request_survives_a_restart_of_the_daemon(tmp_path: Path) -> None:
    customer_port = free_port(PROVIDER_IP)
    config = callback_config(customer_port)
    workdir = tmp_path / "linebox"
    with running_linebox(workdir, config) as linebox:
        set_status(linebox, "break")
        caller = provider_call(
            linebox, tmp_path, scenario="provider_callback_request.xml",
            variables={"caller_id": CUSTOMER}, name="caller",
        ).run()
        assert caller.ok, caller.describe()
        linebox.wait_for(lambda: [e for q in linebox.status()["queues"] for e in q["waiting"]],
                         DAEMON_WAIT_S, "the callback request in the queue")
        wait_for_records(linebox, 1)
    # Stopped (as by a power cut's clean shutdown) and started again on the same database.
    with running_linebox(workdir, config) as linebox:
        waiting = linebox.wait_for(
            lambda: [e for q in linebox.status()["queues"] for e in q["waiting"]],
            DAEMON_WAIT_S, "the request back in the queue")
        assert [(e["caller"], e["callback"]) for e in waiting] == [(CUSTOMER, True)]
        assert "1 callback requests from before the restart" in linebox.log()
