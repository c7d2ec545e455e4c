"""End to end with a GSM line: the real daemon drives a fake Huawei voice stick on real ptys
(hal/fake/gsm.py) while SIPp agents take the calls (issue 12's scenario).

An incoming GSM call rings the department, the member answering makes the box answer the
modem (ATA), the modem's audio and the member's RTP flow through the box both ways, and the
GSM caller hanging up sends the member a BYE. Only loopback and ptys are used."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hal.fake.gsm import FakeHuawei
from tests.e2e.linebox import LineboxProcess, base_config, running_linebox
from tests.e2e.media import RtpListener, scenario, tone_file
from tests.e2e.test_calls import start_agent

SIM_NUMBER = "+79161234567"
GSM_CALLER = "+79160000001"


def gsm_config(modem: FakeHuawei, **overrides: Any) -> dict[str, Any]:
    config = base_config(**overrides)
    config["trunks"] = [*config["trunks"], {
        "name": "mts", "type": "gsm", "port": modem.port, "audio_port": modem.audio_port,
        "modem": "huawei", "imei": modem.imei, "number": SIM_NUMBER}]
    config["numbers"] = [*config["numbers"],
                         {"number": SIM_NUMBER, "trunk": "mts", "destination": "200"}]
    return config


def mts(linebox: LineboxProcess) -> dict[str, Any]:
    [line] = [line for line in linebox.status()["lines"] if line["name"] == "mts"]
    return dict(line)


def test_an_incoming_gsm_call_is_answered_by_a_member_and_audio_flows_both_ways(
    tmp_path: Path,
) -> None:
    member_ear = RtpListener("127.0.0.1")
    try:
        with FakeHuawei(link=tmp_path / "usb-HUAWEI_Mobile-if02-port0") as modem, \
                running_linebox(tmp_path / "linebox", gsm_config(modem)) as linebox:
            started = time.monotonic()
            line = linebox.wait_for(lambda: (m := mts(linebox))["state"] == "up" and m, 15,
                                    "the GSM line up")
            print(f"GSM line up {time.monotonic() - started:.2f} s after the daemon's start")
            assert (line["kind"], line["imei"], line["sim"], line["registration"]) == (
                "gsm", modem.imei, "ready", "home")
            assert line["signal_dbm"] is not None and line["operator"]
            with start_agent(
                linebox, "101", tmp_path, timeout_s=60,
                scenario=str(scenario(tmp_path, "agent_answer_rtp.template.xml",
                                      audio=tone_file(tmp_path, 3.0, 700.0))),
                variables={"rtp_port": member_ear.port, "answer_delay_ms": 1000},
            ) as agent:
                before = len(modem.commands)
                modem.ring(GSM_CALLER)
                modem.wait_for_command(r"^ATA", since=before, timeout_s=15)
                modem.wait_for_audio_frames(50, timeout_s=10)  # the member's voice, 1 s
                linebox.wait_for(lambda: len(member_ear.packets) >= 50, 10,
                                 "the GSM caller's audio at the member")
                print(f"audio frames: modem sent {modem.audio_frames_sent}, received "
                      f"{modem.audio_frames_received}; member got {len(member_ear.packets)} "
                      "RTP packets")
                modem.remote_hangs_up()
                answered = agent.wait(15)
            assert answered.ok and answered.counters.get("answered") == 1, answered.describe()
            [record] = linebox.wait_for(lambda: linebox.calls(), 10, "the call's record")
            assert (record["source"], record["caller"], record["outcome"],
                    record["answered_by"]) == ("gsm:mts", GSM_CALLER, "answered", "101")
            assert mts(linebox)["channels_in_use"] == 0
    finally:
        member_ear.close()
