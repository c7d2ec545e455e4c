"""End to end with a GSM line: the real daemon drives a fake Huawei voice stick on real ptys
(hal/fake/gsm.py) while SIPp agents take the calls (issue 12's scenario).

An incoming GSM call rings the department, the member answering makes the box answer the
modem (ATA), the modem's audio and the member's RTP flow through the box both ways, and the
GSM caller hanging up sends the member a BYE. Only loopback and ptys are used."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hal.fake.gsm import FakeHuawei
from tests.e2e.linebox import (
    AGENT_PASSWORDS,
    LineboxProcess,
    base_config,
    running_linebox,
)
from tests.e2e.media import RtpListener, scenario, tone_file
from tests.e2e.sipp import Sipp
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
                answered = agent.wait()
            assert answered.ok and answered.counters.get("answered") == 1, answered.describe()
            [record] = linebox.wait_for(lambda: linebox.calls(), 10, "the call's record")
            assert (record["source"], record["caller"], record["outcome"],
                    record["answered_by"]) == ("gsm:mts", GSM_CALLER, "answered", "101")
            assert mts(linebox)["channels_in_use"] == 0
    finally:
        member_ear.close()


def test_calls_out_go_through_the_gsm_line_once_the_provider_falls_silent(
    tmp_path: Path,
) -> None:
    # The configured provider (127.0.0.2:5060) has nobody listening: ICMP port unreachable
    # answers the probes, which must not disturb the SIP socket.
    with FakeHuawei(link=tmp_path / "usb-HUAWEI_Mobile-if02-port0") as modem:
        config = gsm_config(modem, failover={"order": ["provider", "mts"],
                                             "probe_interval_s": 2, "down_after": 2})
        with running_linebox(tmp_path / "linebox", config) as linebox:
            started = time.monotonic()
            linebox.wait_for(lambda: linebox.status()["outbound_line"] == "mts", 20,
                             "calls out through the GSM line")
            print(f"silent provider → GSM line for calls out {time.monotonic() - started:.1f} s"
                  " after the start (probe_interval_s 2 × down_after 2 + 1 s)")
            before = len(modem.commands)
            caller = Sipp(
                scenario="caller_auth.xml", remote=linebox.address, service="84951234567",
                auth_user="103", auth_password=AGENT_PASSWORDS["103"],
                auth_uri=f"84951234567@{linebox.address}", keys={"caller": "103"},
                variables={"hold_ms": 1000}, calls=1, timeout_s=30, trace_dir=tmp_path,
            )
            with caller.start() as running:
                modem.wait_for_command(r"^ATD84951234567;", since=before, timeout_s=15)
                modem.remote_answers()
                result = running.wait()
            assert result.ok, result.describe()
            modem.wait_for_command(r"^AT\+CHUP", since=before, timeout_s=10)
            [record] = linebox.wait_for(lambda: linebox.calls(), 10, "the call's record")
            assert (record["direction"], record["outcome"]) == ("outbound", "answered")
            assert linebox.status()["failover_switches"][-1]["new"] == "mts"


def test_a_cyrillic_sms_arrives_and_is_listed(tmp_path: Path) -> None:
    with FakeHuawei(link=tmp_path / "usb-HUAWEI_Mobile-if02-port0") as modem, \
            running_linebox(tmp_path / "linebox", gsm_config(modem)) as linebox:
        linebox.wait_for(lambda: mts(linebox)["state"] == "up", 15, "the GSM line up")
        modem.deliver_text_sms("+79160000001", "Перезвоните, пожалуйста")

        def listed() -> list[dict[str, Any]]:
            out = subprocess.run(
                [sys.executable, "-m", "firmware", "sms", "list", "--json", "--db",
                 str(linebox.db)], capture_output=True, text=True, check=True, timeout=30)
            return list(json.loads(out.stdout))

        [sms] = linebox.wait_for(listed, 15, "the SMS in linebox sms list")
        assert (sms["line"], sms["sender"], sms["text"]) == (
            "mts", "+79160000001", "Перезвоните, пожалуйста")
        modem.wait_until(lambda: not modem.sms, timeout_s=10)  # read, kept, deleted from the SIM


def test_the_modem_unplugged_goes_down_and_is_up_again_after_the_replug(tmp_path: Path) -> None:
    with FakeHuawei(link=tmp_path / "usb-HUAWEI_Mobile-if02-port0") as modem, \
            running_linebox(tmp_path / "linebox", gsm_config(modem)) as linebox:
        linebox.wait_for(lambda: mts(linebox)["state"] == "up", 15, "the GSM line up")
        modem.unplug()
        linebox.wait_for(lambda: mts(linebox)["state"] == "down", 10, "the line down")
        modem.replug()
        replugged = time.monotonic()
        linebox.wait_for(lambda: mts(linebox)["state"] == "up", 10, "the line up again")
        print(f"replug → line up in {time.monotonic() - replugged:.2f} s (bound 10 s)")
        modem.inject_garbage(b"\x00\xff+CME ERROR\r\n\x1b[2J^RSSI:\r\r\nOK\r\n\xfe")
        assert linebox.status()["registrations"] == []  # the daemon answers as before
        assert mts(linebox)["state"] == "up"


def linebox_cli(linebox: LineboxProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firmware", *args, "--db", str(linebox.db)],
                          capture_output=True, text=True, timeout=120)


def test_the_balance_and_an_sms_go_out_through_the_daemon(tmp_path: Path) -> None:
    with FakeHuawei(link=tmp_path / "usb-HUAWEI_Mobile-if02-port0") as modem, \
            running_linebox(tmp_path / "linebox", gsm_config(modem)) as linebox:
        linebox.wait_for(lambda: mts(linebox)["state"] == "up", 15, "the GSM line up")
        balance = linebox_cli(linebox, "line", "mts", "ussd", "*100#")
        assert balance.returncode == 0, balance.stderr
        assert "Баланс: 123,45 р." in balance.stdout
        sent = linebox_cli(linebox, "sms", "send", "--line", "mts", "+79160000001",
                           "Перезвоним через 5 минут")
        assert sent.returncode == 0, sent.stderr
        modem.wait_until(lambda: len(modem.sms_sent) == 1, timeout_s=10)
