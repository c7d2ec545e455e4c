"""End to end (issue 15): the real daemon, SIPp as the provider and the agents, and a real SMTP
server (aiosmtpd on 127.0.0.1). A provider call that rings both agents of department 200 and
that nobody answers (the caller gives up) reaches the department's address as one e-mail."""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from tests.e2e.linebox import base_config, running_linebox
from tests.e2e.sipp import free_port
from tests.e2e.test_calls import provider_call, start_agent, wait_for_records

ARRIVE_S = 15.0


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        data = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append((list(envelope.rcpt_tos),
                              email.message_from_bytes(data, policy=email.policy.default)))
        return "250 OK"


def test_a_provider_call_nobody_answers_is_mailed_to_the_department_once(
        tmp_path: Path) -> None:
    inbox, port = Inbox(), free_port()
    server = Controller(inbox, hostname="127.0.0.1", port=port)
    server.start()
    config = base_config(
        smtp={"host": "127.0.0.1", "port": port, "security": "none",
              "from": "box@office.test"},
        notifications={"missed_calls": {"200": {"email": ["sales-head@office.test"]}}})
    try:
        with (running_linebox(tmp_path / "linebox", config) as linebox,
              start_agent(linebox, "101", tmp_path, scenario="agent_ring_only.xml") as agent1,
              start_agent(linebox, "102", tmp_path, scenario="agent_ring_only.xml") as agent2):
            caller = provider_call(linebox, tmp_path, scenario="provider_cancel.xml",
                                   variables={"cancel_after_ms": 800}).run()
            assert caller.ok, caller.describe()
            agent1.wait()
            agent2.wait()
            (record,) = wait_for_records(linebox, 1)
            assert record["outcome"] == "missed"
            deadline = time.monotonic() + ARRIVE_S
            while not inbox.messages and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # nothing more comes
        assert len(inbox.messages) == 1, inbox.messages
        recipients, message = inbox.messages[0]
        assert recipients == ["sales-head@office.test"]
        assert message["Subject"] == f"Пропущенный звонок от {record['caller']}"
        assert "отдел 200" in message.get_content()
    finally:
        server.stop()
