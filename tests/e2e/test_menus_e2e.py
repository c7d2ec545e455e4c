"""Voice menus end to end: the real daemon, a SIPp caller from the provider and a SIPp agent on
loopback. The caller reaches a two-level menu as early media (183 with the box's SDP; the test
holds the socket the caller's SDP names and hears the greeting), presses 2 (the nested menu)
then 1 (department 200) as RFC 4733 events from SIPp's own pcaps, and is answered by the
member, 101; the record names the department and the member.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from firmware.media import g711, prompts
from tests.e2e.linebox import DAEMON_WAIT_S, base_config, running_linebox
from tests.e2e.media import SIPP_DTMF_DIR, RtpListener, scenario
from tests.e2e.sipp import free_port
from tests.e2e.test_calls import DID, PROVIDER_IP, provider_call, start_agent

CALLER = "79161234567"
WAIT_MS = 1500  # between the 183 and the first key, and between the keys
TALK_MS = 1000


def menu_config() -> dict[str, Any]:
    config = base_config(site={"language": "en"})
    config["numbers"][0]["destination"] = "menu:main"
    config["menus"] = [
        # Key 1 would ring 102, which is not registered: a wrong key fails the call.
        {"name": "main", "greeting": ["menu_welcome", "menu_choose"],
         "keys": {"1": "102", "2": "menu:sales"}, "timeout_s": 10},
        {"name": "sales", "greeting": "menu_choose", "keys": {"1": "200", "2": "102"},
         "timeout_s": 10},
    ]
    return config


def test_a_caller_navigates_a_two_level_menu_by_rfc4733_keys_to_the_member(
    tmp_path: Path,
) -> None:
    ear = RtpListener(PROVIDER_IP)
    keys = scenario(tmp_path, "provider_menu_keys.template.xml", dtmf="dtmf_2833_2.pcap")
    keys.write_bytes(keys.read_bytes().replace(b"@DTMF2@",
                                               bytes(SIPP_DTMF_DIR / "dtmf_2833_1.pcap")))
    try:
        with running_linebox(tmp_path / "linebox", menu_config()) as linebox:
            with start_agent(linebox, "101", tmp_path, timeout_s=60) as agent:
                caller = provider_call(
                    linebox, tmp_path, name="caller", service=DID, scenario=keys,
                    timeout_s=60,
                    variables={"caller_id": CALLER, "rtp_port": ear.port,
                               "wait_ms": WAIT_MS, "talk_ms": TALK_MS},
                    extra_args=["-mp", str(free_port(PROVIDER_IP))],
                ).run()
                answered = agent.wait()
            assert caller.ok, caller.describe()
            assert answered.ok, answered.describe()
            records = linebox.wait_for(linebox.calls, DAEMON_WAIT_S, "the call record")
    finally:
        ear.close()
    [call] = records
    assert (call["outcome"], call["answered_by"], call["department"]) == (
        "answered", "101", "200")
    # Before the first key the caller heard the main menu's greeting, from the box.
    welcome = g711.pcm_samples(g711.ulaw_decode(g711.ulaw_encode(
        prompts.prompt("en", "menu_welcome"))))
    assert ear.audio().tobytes().find(welcome[800:1600].tobytes()) >= 0, "no greeting heard"
