"""Music on hold end to end: the real daemon, the provider and an agent's phone as SIPp on
loopback, each with an RTP socket the test holds where its SDP points the box.

The provider calls, agent 101 answers (the two talk directly), then the provider holds the
call (re-INVITE sendonly): the box answers it recvonly and re-INVITEs the agent sendonly from
a port of its own, and the agent hears the built-in music as RTP from that port. The provider
resumes (sendrecv): the agent is re-INVITEd sendrecv, and each side's tone reaches the other
through the box's bridge.
"""

from __future__ import annotations

from pathlib import Path

from firmware.media import g711, prompts
from tests.e2e.linebox import DAEMON_WAIT_S, base_config, running_linebox
from tests.e2e.media import RtpListener, crossings_per_s, scenario, tone_file
from tests.e2e.sipp import free_port
from tests.e2e.test_calls import PROVIDER_IP, provider_call, start_agent

CALLER_HZ = 440
AGENT_HZ = 1000
HOLD_S = 2.0
TALK_S = 2.5
PACKETS_PER_S = 50  # 20 ms frames


def test_the_held_agent_hears_music_then_both_hear_each_other_after_resume(
    tmp_path: Path,
) -> None:
    caller_ear = RtpListener(PROVIDER_IP)
    agent_ear = RtpListener("127.0.0.1")
    try:
        with running_linebox(tmp_path / "linebox", base_config(site={"language": "en"})) \
                as linebox:
            with start_agent(
                linebox, "101", tmp_path,
                scenario=str(scenario(tmp_path, "agent_held.template.xml",
                                      audio=tone_file(tmp_path, TALK_S, AGENT_HZ))),
                variables={"answer_delay_ms": 100, "rtp_port": agent_ear.port},
                timeout_s=60,
            ) as agent:
                caller = provider_call(
                    linebox, tmp_path, name="caller", timeout_s=60,
                    scenario=scenario(tmp_path, "provider_hold_resume.template.xml",
                                      audio=tone_file(tmp_path, TALK_S, CALLER_HZ)),
                    variables={"rtp_port": caller_ear.port, "hold_ms": int(HOLD_S * 1000),
                               "talk_ms": int(TALK_S * 1000)},
                    extra_args=["-mp", str(free_port(PROVIDER_IP))],
                )
                with caller.start() as running:
                    linebox.wait_for(
                        lambda: any(c.get("media") == "anchored"
                                    for c in linebox.status()["calls"]),
                        10, "the box in the media path")
                    on_hold_from = len(agent_ear.packets)
                    linebox.wait_for(lambda: len(agent_ear.packets) - on_hold_from
                                     >= PACKETS_PER_S, DAEMON_WAIT_S,
                                     "a second of music at the agent")
                    talked = running.wait()
                answered = agent.wait()
            assert talked.ok, talked.describe()
            assert answered.ok, answered.describe()
            assert (talked.counters.get("held"), talked.counters.get("resumed")) == (1, 1)
            assert (answered.counters.get("held"), answered.counters.get("resumed")) == (1, 1)
            [record] = linebox.wait_for(linebox.calls, DAEMON_WAIT_S, "the call record")
    finally:
        caller_ear.close()
        agent_ear.close()
    assert (record["outcome"], record["answered_by"]) == ("answered", "101")
    to_agent = agent_ear.audio()
    # The music: a piece of the built-in tune, as the box encodes it, reached the agent.
    music = g711.pcm_samples(g711.ulaw_decode(g711.ulaw_encode(
        prompts.prompt("en", "hold_music"))))
    piece = music[8000:8640].tobytes()  # 80 ms, one second into the tune
    assert to_agent.tobytes().find(piece) >= 0, "no music on hold at the agent"
    # After the resume, the caller's own tone reached the agent through the box ...
    tail = to_agent[-int(8000 * (TALK_S - 0.5)):]
    assert abs(crossings_per_s(tail[:8000]) - CALLER_HZ) <= 10
    # ... and the agent's tone the caller (who heard nothing while holding).
    to_caller = caller_ear.audio()
    assert len(to_caller) >= 8000 * (TALK_S - 1.0)
    start = next(i for i, s in enumerate(to_caller) if abs(s) > 2000)
    assert abs(crossings_per_s(to_caller[start:start + 8000]) - AGENT_HZ) <= 10
