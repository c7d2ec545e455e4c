"""End to end (issue 14): a busy lamp on the real daemon. SIPp as a phone's BLF key SUBSCRIBEs
to extension 102 with digest auth; while the provider (another SIPp) calls the department and
102 (a SIPp agent) rings, answers and is hung up on, the lamp receives the NOTIFYs of
idle → early → confirmed → terminated, then unsubscribes and gets the final NOTIFY."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.linebox import AGENT_PASSWORDS, LineboxProcess, base_config, running_linebox
from tests.e2e.sipp import Sipp
from tests.e2e.test_calls import provider_call, start_agent

WATCHED = "102"
WATCHER = "103"
NS = {"d": "urn:ietf:params:xml:ns:dialog-info"}
NOTIFY_BODY_RE = re.compile(r"^NOTIFY .*?\r?\n\r?\n(<\?xml.*?</dialog-info>)", re.S | re.M)


@pytest.fixture
def linebox(tmp_path: Path) -> Iterator[LineboxProcess]:
    with running_linebox(tmp_path / "linebox", base_config()) as process:
        yield process


def lamp_states(message_log: Path) -> list[list[str]]:
    """Per NOTIFY the watcher received (in order), the states of its dialog elements."""
    text = message_log.read_text(encoding="utf-8", errors="replace")
    states = []
    for body in NOTIFY_BODY_RE.findall(text):
        document = ET.fromstring(body)
        states.append([d.findtext("d:state", namespaces=NS) or ""
                       for d in document.findall("d:dialog", NS)])
    return states


def test_a_busy_lamp_goes_idle_early_confirmed_terminated(
    linebox: LineboxProcess, tmp_path: Path,
) -> None:
    agent = start_agent(linebox, WATCHED, tmp_path, variables={"answer_delay_ms": 1500})
    watcher = Sipp(
        scenario="blf_watch.xml", remote=linebox.address, service=WATCHED,
        auth_user=WATCHER, auth_password=AGENT_PASSWORDS[WATCHER],
        auth_uri=f"{WATCHED}@{linebox.address}", keys={"watcher": WATCHER}, calls=1,
        timeout_s=30, trace_dir=tmp_path, name="watcher",
    )
    with watcher.start() as lamp, agent:
        linebox.wait_for(
            lambda: linebox.status()["lamps"] == [
                {"subscriber": WATCHER, "extension": WATCHED}],
            timeout_s=10, what="the lamp's subscription")
        caller = provider_call(linebox, tmp_path, variables={"hold_ms": 1000}).run()
        assert caller.ok and caller.successful_calls == 1, caller.describe()
        answered = agent.wait()
        watched = lamp.wait()
    assert answered.ok and answered.counters.get("answered") == 1, answered.describe()
    assert watched.ok and watched.successful_calls == 1, watched.describe()
    assert watched.message_log is not None
    states = lamp_states(watched.message_log)
    # The last NOTIFY (after the unsubscribe) repeats the idle state with Subscription-State
    # terminated; what came before is the lamp's whole story.
    assert states[:4] == [[], ["early"], ["confirmed"], ["terminated"]], states
    assert len(states) == 5 and states[4] == [], states
    assert linebox.status()["lamps"] == []
