"""A waiting caller's early media and the anchored call, end to end with SIPp on loopback.

The caller waits in a queue (183 with the box's SDP): the test, holding the socket the caller's
SDP names, hears ringback and the position announcement. Pressing the callback key as RFC 4733
events (SIPp's own pcap) asks for the callback. When a member answers instead, each side
streams a tone of its own, and each must arrive at the other through the box's bridge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from firmware.media import g711, prompts, tones
from tests.e2e.linebox import DAEMON_WAIT_S, base_config, running_linebox
from tests.e2e.media import RtpListener, crossings_per_s, scenario, tone_file
from tests.e2e.sipp import free_port
from tests.e2e.test_callback_e2e import set_status
from tests.e2e.test_calls import PROVIDER_IP, provider_call, start_agent

CALLER = "79161234567"
CALLER_HZ = 440
MEMBER_HZ = 1000
TALK_S = 3.0
ANNOUNCE_S = 10


def queue_config() -> dict[str, Any]:
    config = base_config(site={"language": "en"})
    config["departments"] = [{
        "number": "200", "name": "Sales", "strategy": "ring_all", "ring_timeout_s": 20,
        "members": ["101"],
        "queue": {"max_callers": 5, "max_wait_s": 120, "announce_s": ANNOUNCE_S,
                  "callback": {"key": "1"}},
    }]
    return config


def test_a_key_pressed_in_the_rtp_while_waiting_asks_for_the_callback(tmp_path: Path) -> None:
    listener = RtpListener(PROVIDER_IP)
    wait_s = tones.RINGBACK_CYCLE_S + 4.0  # one ring, then the announcement begins
    try:
        with running_linebox(tmp_path / "linebox", queue_config()) as linebox:
            set_status(linebox, "break")
            caller = provider_call(
                linebox, tmp_path, name="caller",
                scenario=scenario(tmp_path, "provider_queue_key.template.xml",
                                  dtmf="dtmf_2833_1.pcap"),
                variables={"caller_id": CALLER, "rtp_port": listener.port,
                           "wait_ms": int(wait_s * 1000)},
                extra_args=["-mp", str(free_port(PROVIDER_IP))],
            ).run()
            assert caller.ok, caller.describe()
            waiting = linebox.wait_for(
                lambda: [e for q in linebox.status()["queues"] for e in q["waiting"]],
                DAEMON_WAIT_S, "the callback request in the queue")
            assert [(e["caller"], e["callback"]) for e in waiting] == [(CALLER, True)]
            records = linebox.wait_for(linebox.calls, DAEMON_WAIT_S, "the call record")
    finally:
        listener.close()
    assert records[0]["outcome"] == "callback"
    heard = listener.audio()
    assert abs(crossings_per_s(heard[800:7200]) - tones.RINGBACK_HZ) <= 10  # ringback first
    position = g711.pcm_samples(g711.ulaw_decode(g711.ulaw_encode(
        prompts.prompt("en", "queue_position"))))
    assert heard.tobytes().find(position[800:1600].tobytes()) > 0, "no position announcement"


def test_the_member_and_the_waiting_caller_hear_each_other_through_the_box(
    tmp_path: Path,
) -> None:
    caller_ear = RtpListener(PROVIDER_IP)
    member_ear = RtpListener("127.0.0.1")
    try:
        with running_linebox(tmp_path / "linebox", queue_config()) as linebox:
            set_status(linebox, "break")
            with start_agent(
                linebox, "101", tmp_path,
                scenario=str(scenario(tmp_path, "agent_answer_rtp.template.xml",
                                      audio=tone_file(tmp_path, TALK_S, MEMBER_HZ))),
                variables={"rtp_port": member_ear.port}, timeout_s=60,
            ) as agent:
                caller_sipp = provider_call(
                    linebox, tmp_path, name="caller", timeout_s=60,
                    scenario=scenario(tmp_path, "provider_queue_talk.template.xml",
                                      audio=tone_file(tmp_path, TALK_S, CALLER_HZ)),
                    variables={"caller_id": CALLER, "rtp_port": caller_ear.port,
                               "talk_ms": int((TALK_S + 0.5) * 1000)},
                    extra_args=["-mp", str(free_port(PROVIDER_IP))],
                )
                with caller_sipp.start() as caller:
                    linebox.wait_for(
                        lambda: [e for q in linebox.status()["queues"] for e in q["waiting"]],
                        DAEMON_WAIT_S, "the caller in the queue")
                    waited = len(caller_ear.packets)
                    set_status(linebox, "on_line")
                    talked = caller.wait()
                answered = agent.wait()
            assert talked.ok, talked.describe()
            assert answered.ok, answered.describe()
            records = linebox.wait_for(linebox.calls, DAEMON_WAIT_S, "the call record")
    finally:
        caller_ear.close()
        member_ear.close()
    [call] = records
    assert (call["outcome"], call["answered_by"]) == ("answered", "101")
    # The member heard the caller's tone, and the caller the member's, through the bridge.
    to_member = member_ear.audio()
    assert len(to_member) >= 8000 * (TALK_S - 0.5)
    assert abs(crossings_per_s(to_member[800:16800]) - CALLER_HZ) <= 5
    to_caller = caller_ear.audio()[waited * 160:]
    start = next(i for i, s in enumerate(to_caller) if abs(s) > 2000)
    # What the caller heard after waiting: maybe some ringback, then the member's tone.
    member_part = to_caller[start:]
    assert any(abs(crossings_per_s(member_part[i:i + 8000]) - MEMBER_HZ) <= 10
               for i in range(0, max(1, len(member_part) - 8000), 4000))
