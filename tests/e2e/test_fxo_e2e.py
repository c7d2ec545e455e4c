"""End to end with an analog (FXO) line: the real daemon drives a fake USR 5637 voice modem on
a real pty (hal/fake/v253.py) while a SIPp agent takes the call (issue 12).

The line rings with caller ID, the department's member answers, the box takes the line off
hook and streams voice both ways (DLE-shielded 8-bit samples on the modem's side, G.711 RTP on
the member's), and the far end's loop-current break hangs the member up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hal.fake.v253 import FakeV253Modem
from tests.e2e.linebox import LineboxProcess, base_config, running_linebox
from tests.e2e.media import RtpListener, scenario, tone_file
from tests.e2e.test_calls import start_agent

LINE_NUMBER = "+74951112233"
CALLER = "+74957654321"


def fxo_config(modem: FakeV253Modem) -> dict[str, Any]:
    config = base_config()
    config["trunks"] = [*config["trunks"], {"name": "city", "type": "fxo", "port": modem.port,
                                            "modem": "usr5637", "number": LINE_NUMBER}]
    config["numbers"] = [*config["numbers"],
                         {"number": LINE_NUMBER, "trunk": "city", "destination": "200"}]
    return config


def city(linebox: LineboxProcess) -> dict[str, Any]:
    [line] = [line for line in linebox.status()["lines"] if line["name"] == "city"]
    return dict(line)


def test_an_analog_call_rings_with_caller_id_and_talks_through_the_voice_modem(
    tmp_path: Path,
) -> None:
    member_ear = RtpListener("127.0.0.1")
    try:
        with FakeV253Modem(link=tmp_path / "usb-USRobotics-5637") as modem, \
                running_linebox(tmp_path / "linebox", fxo_config(modem)) as linebox:
            linebox.wait_for(lambda: city(linebox)["state"] == "up", 15, "the FXO line up")
            assert city(linebox)["kind"] == "fxo"
            with start_agent(
                linebox, "101", tmp_path, timeout_s=60,
                scenario=str(scenario(tmp_path, "agent_answer_rtp.template.xml",
                                      audio=tone_file(tmp_path, 3.0, 700.0))),
                variables={"rtp_port": member_ear.port, "answer_delay_ms": 500},
            ) as agent:
                modem.ring(CALLER, rings=6)
                modem.wait_until(lambda: modem.off_hook, timeout_s=20)
                modem.wait_until(lambda: len(modem.received_samples) >= 8000, timeout_s=10)
                linebox.wait_for(lambda: len(member_ear.packets) >= 50, 10,
                                 "the analog caller's audio at the member")
                print(f"FXO audio: modem got {len(modem.received_samples)} samples from the box,"
                      f" sent {modem.sent_sample_count}; member got {len(member_ear.packets)} "
                      "RTP packets")
                modem.far_end_hangs_up()
                answered = agent.wait()
            assert answered.ok and answered.counters.get("answered") == 1, answered.describe()
            assert any(c.upper().startswith("AT+VLS=1") for c in modem.commands)
            [record] = linebox.wait_for(lambda: linebox.calls(), 10, "the call's record")
            assert (record["source"], record["caller"], record["outcome"]) == (
                "fxo:city", CALLER, "answered")
            linebox.wait_for(lambda: not modem.off_hook, 10, "the line back on hook")
    finally:
        member_ear.close()
