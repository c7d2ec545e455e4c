"""End to end, blind transfer (issue 14, RFC 3515 REFER) with real SIPp peers: the provider calls
department 200, agent 101 answers, talks, and refers the caller to extension 103; the box
answers 202 and NOTIFYs 101 (sipfrag 100 Trying, then 200 OK), rings 103 showing the caller's
number, and once 103 answers re-INVITEs the provider with 103's SDP; 101 hangs up, the
provider talks on with 103 and hangs up. One record: answered by 103, both agents' legs."""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

from hal.fake.atmodem import TONE_HZ
from hal.fake.gsm import FakeHuawei
from tests.e2e.linebox import AGENT_PASSWORDS, LineboxProcess, base_config, running_linebox
from tests.e2e.media import RtpListener, scenario, tone_file, tone_share
from tests.e2e.sipp import Sipp, SippProcess, free_port, wait_until_bound
from tests.e2e.test_calls import (
    PROVIDER_IP,
    provider_call,
    register,
    start_agent,
    wait_for_records,
)
from tests.e2e.test_gsm_e2e import GSM_CALLER, gsm_config, mts

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


def wait_until_tcp_listens(port: int, timeout_s: float = 5.0) -> bool:
    """Whether a TCP socket listens on `port` (read from /proc/net/tcp, state 0A), within
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    wanted = f":{port:04X} "
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as table:
            if any(wanted in line and line.split()[3] == "0A" for line in table):
                return True
        time.sleep(0.02)
    return False


def start_consulting_phone(linebox: LineboxProcess, trace: Path
                           ) -> tuple[SippProcess, SippProcess]:
    """Agent 101's phone as two SIPp processes joined by SIPp's 3PCC twin socket (SIPp runs
    one dialog per call): the second line (agent_consult.xml, listening on the twin socket)
    and the first line (agent_attended.xml, registered as 101, which answers the department's
    call and later tells the second line to consult 103)."""
    twin = free_port()
    second = Sipp(scenario="agent_consult.xml", remote=linebox.address, service="103",
                  auth_user="101", auth_password=AGENT_PASSWORDS["101"],
                  auth_uri=f"103@{linebox.address}", keys={"caller": "101"}, calls=1,
                  timeout_s=30, trace_dir=trace, name="agent101-line2",
                  extra_args=["-3pcc", f"127.0.0.1:{twin}"]).start()
    # Not probed by connecting: SIPp takes the first connection to its twin socket as the twin.
    assert wait_until_tcp_listens(twin), "the second line's twin socket did not open"
    first_line = Sipp(scenario="agent_attended.xml", service="101", calls=1, auto_answer=True,
                      variables={"target": "103", "refer_ms": 1500}, trace_dir=trace,
                      timeout_s=30, name="agent101", extra_args=["-3pcc", f"127.0.0.1:{twin}"])
    first = first_line.start()
    assert first_line.local_port is not None and wait_until_bound(first_line.local_port)
    register(linebox, "101", first_line.local_port, trace)
    return first, second


CALLER_HZ = 440.0
COLLEAGUE_HZ = 1000.0
TALK_S = 2.5


def test_an_agent_consults_a_colleague_and_transfers_the_caller_to_them(
    linebox: LineboxProcess, tmp_path: Path
) -> None:
    caller_ear = RtpListener(PROVIDER_IP)
    colleague_ear = RtpListener("127.0.0.1")
    try:
        with start_agent(linebox, "103", tmp_path, scenario=str(scenario(
                tmp_path, "agent_reinvited.template.xml",
                audio=tone_file(tmp_path, TALK_S, COLLEAGUE_HZ))),
                variables={"rtp_port": colleague_ear.port}) as target:
            first, second = start_consulting_phone(linebox, tmp_path)
            with first, second:
                caller = provider_call(
                    linebox, tmp_path, scenario=scenario(
                        tmp_path, "provider_joined.template.xml",
                        audio=tone_file(tmp_path, TALK_S, CALLER_HZ)),
                    variables={"hold_ms": 500, "talk_ms": int(TALK_S * 1000),
                               "rtp_port": caller_ear.port},
                    extra_args=["-mp", str(free_port(PROVIDER_IP))]).start()
                called = caller.wait()
                assert called.ok and called.counters.get("reinvited") == 1, called.describe()
                consulted = second.wait()
                assert consulted.ok and consulted.counters.get("consultation_ended") == 1, (
                    consulted.describe())
                transferred = first.wait()
                assert transferred.ok and transferred.successful_calls == 1, (
                    transferred.describe())
            answered = target.wait()
            assert answered.ok and answered.counters.get("reinvited") == 1, answered.describe()
        # Each side's tone reached the other through the box's bridge.
        assert tone_share(colleague_ear.audio()[-8000:], CALLER_HZ) > 0.5
        assert tone_share(caller_ear.audio()[-8000:], COLLEAGUE_HZ) > 0.5
    finally:
        caller_ear.close()
        colleague_ear.close()
    # 103 was told whom it talks to after the transfer: the caller's number.
    assert answered.message_log is not None
    log = answered.message_log.read_text(errors="replace")
    assert f"P-Asserted-Identity: <sip:{CALLER_ID}@" in log
    records = wait_for_records(linebox, 2)
    by_direction = {record["direction"]: record for record in records}
    customer = by_direction["inbound"]
    assert (customer["outcome"], customer["answered_by"]) == ("answered", "103")
    assert sorted((leg["target"], leg["result"]) for leg in customer["legs"]) == [
        ("101", "answered"), ("103", "answered")]
    consultation = by_direction["internal"]
    assert (consultation["end_cause"], consultation["answered_by"]) == (
        "attended transfer", "103")
    agents = {a["extension"]: a for a in linebox.status()["agents"]}
    assert agents["101"]["calls_answered_today"] == 1
    assert linebox.status()["calls"] == []
    assert set(linebox.channels_in_use().values()) == {0}


TARGET_HZ = 700.0


def test_a_gsm_caller_transferred_by_the_answering_manager_reaches_the_target_with_audio(
    tmp_path: Path,
) -> None:
    """The box holds a GSM call's audio (the modem's PCM bridged to an RTP port of its own):
    101 answers and refers the caller to 103 (blind), 103 is offered the line's port, and the
    GSM caller's tone (the fake modem's 1 kHz) reaches 103 while 103's 700 Hz reaches the
    modem."""
    target_ear = RtpListener("127.0.0.1")
    try:
        with FakeHuawei(link=tmp_path / "usb-HUAWEI_Mobile-if02-port0") as modem, \
                running_linebox(tmp_path / "linebox", gsm_config(modem)) as linebox:
            linebox.wait_for(lambda: mts(linebox)["state"] == "up", 15, "the GSM line up")
            with (
                start_agent(linebox, "101", tmp_path, scenario="agent_transfer.xml",
                            variables={"target": "103", "refer_ms": 1000}) as referrer,
                start_agent(linebox, "103", tmp_path, timeout_s=60, scenario=str(scenario(
                    tmp_path, "agent_answer_rtp.template.xml",
                    audio=tone_file(tmp_path, 4.0, TARGET_HZ))),
                    variables={"rtp_port": target_ear.port, "answer_delay_ms": 300},
                ) as target,
            ):
                before = len(modem.commands)
                modem.ring(GSM_CALLER)
                modem.wait_for_command(r"^ATA", since=before, timeout_s=15)
                transferred = referrer.wait()
                assert transferred.ok, transferred.describe()
                linebox.wait_for(lambda: len(target_ear.packets) >= 100, 10,
                                 "two seconds of the GSM caller's audio at 103")
                heard = target_ear.audio()
                assert tone_share(heard[-8000:], TONE_HZ) > 0.5  # the caller's 1 kHz
                spoken = len(modem.audio_received)
                modem.wait_until(lambda: len(modem.audio_received) >= spoken + 16000,
                                 timeout_s=10, what="a second of 103's audio at the modem")
                said = array("h", bytes(modem.audio_received[-16000:]))
                assert tone_share(said, TARGET_HZ) > 0.5  # 103's 700 Hz on the line
                modem.remote_hangs_up()
                answered = target.wait()
            assert answered.ok and answered.counters.get("answered") == 1, answered.describe()
            # 103 was rung with the GSM caller's number.
            assert answered.message_log is not None
            assert f"From: <sip:{GSM_CALLER}@" in answered.message_log.read_text(
                errors="replace")
            [record] = linebox.wait_for(lambda: linebox.calls(), 10, "the call's record")
            assert (record["source"], record["outcome"], record["answered_by"]) == (
                "gsm:mts", "answered", "103")
            assert sorted((leg["target"], leg["result"]) for leg in record["legs"]) == [
                ("101", "answered"), ("103", "answered")]
            assert mts(linebox)["channels_in_use"] == 0
    finally:
        target_ear.close()


def test_a_caller_put_on_hold_then_transferred_blind_reaches_the_target_with_audio(
    linebox: LineboxProcess, tmp_path: Path
) -> None:
    """Most desk phones hold the call when the transfer key is pressed: the box takes the media
    (music to the caller from its own port), and the blind transfer offers 103 the port that
    faced the agent; once 103 answers, the caller is taken off hold from the same port and
    each side's tone reaches the other through the box."""
    caller_ear = RtpListener(PROVIDER_IP)
    target_ear = RtpListener("127.0.0.1")
    try:
        with (
            start_agent(linebox, "101", tmp_path, scenario="agent_hold_transfer.xml",
                        variables={"target": "103", "refer_ms": 1000}) as referrer,
            start_agent(linebox, "103", tmp_path, timeout_s=60, scenario=str(scenario(
                tmp_path, "agent_answer_rtp.template.xml",
                audio=tone_file(tmp_path, 4.0, COLLEAGUE_HZ))),
                variables={"rtp_port": target_ear.port, "answer_delay_ms": 500},
            ) as target,
        ):
            caller = provider_call(
                linebox, tmp_path, scenario=scenario(
                    tmp_path, "provider_held_transferred.template.xml",
                    audio=tone_file(tmp_path, TALK_S, CALLER_HZ)),
                variables={"hold_ms": 200, "talk_ms": int(TALK_S * 1000),
                           "rtp_port": caller_ear.port},
                extra_args=["-mp", str(free_port(PROVIDER_IP))]).start()
            called = caller.wait()
            assert called.ok and called.counters.get("resumed") == 1, called.describe()
            transferred = referrer.wait()
            assert transferred.ok and transferred.counters.get("held") == 1, (
                transferred.describe())
            answered = target.wait()
            assert answered.ok and answered.counters.get("answered") == 1, answered.describe()
        assert tone_share(target_ear.audio()[-8000:], CALLER_HZ) > 0.5
        assert tone_share(caller_ear.audio()[-8000:], COLLEAGUE_HZ) > 0.5
    finally:
        caller_ear.close()
        target_ear.close()
    assert answered.message_log is not None
    assert f"From: <sip:{CALLER_ID}@" in answered.message_log.read_text(errors="replace")
    (record,) = wait_for_records(linebox, 1)
    assert (record["outcome"], record["answered_by"]) == ("answered", "103")
    assert linebox.status()["calls"] == []
