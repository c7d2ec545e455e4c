"""What sets the three fake modems apart: their call-state URCs, the switch that puts voice on
the audio port, their quirks (Huawei's noise and COMMAND NOT SUPPORT, ^SMMEMFULL)."""

from __future__ import annotations

import contextlib
import os
import re
import select
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from hal.fake.atmodem import AUDIO_FRAME_BYTES, CAUSE_BUSY, TONE_FRAME, FakeAtModem
from hal.fake.gsm import FakeHuawei, FakeQuectel, FakeSimcom
from tests.hal.test_fake_gsm import FINAL, AtClient

NUMBER = "+79161112233"
AUDIO_WAIT_S = 3.0


@contextlib.contextmanager
def _running(modem: FakeAtModem) -> Iterator[tuple[FakeAtModem, AtClient]]:
    """The modem started and booted, a client on its AT port with echo off."""
    with modem:
        modem.wait_until(lambda: modem.booted, what="boot URCs")
        client = AtClient(modem.port)
        client.command("ATE0")
        yield modem, client
        client.close()


@pytest.fixture
def huawei(tmp_path: Path) -> Iterator[tuple[FakeAtModem, AtClient]]:
    with _running(FakeHuawei(link=tmp_path / "if02", ring_interval_s=0.2,
                             noise_every=0)) as running:
        yield running


@pytest.fixture
def quectel() -> Iterator[tuple[FakeAtModem, AtClient]]:
    with _running(FakeQuectel(ring_interval_s=0.2)) as running:
        yield running


@pytest.fixture
def simcom() -> Iterator[tuple[FakeAtModem, AtClient]]:
    with _running(FakeSimcom(ring_interval_s=0.2)) as running:
        yield running


class AudioClient:
    """The box's end of the audio pty: reads frames, writes frames."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)

    def read_frames(self, count: int, timeout_s: float = AUDIO_WAIT_S) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout_s
        while len(data) < count * AUDIO_FRAME_BYTES and time.monotonic() < deadline:
            if select.select([self.fd], [], [], deadline - time.monotonic())[0]:
                data += os.read(self.fd, 4096)
        assert len(data) >= count * AUDIO_FRAME_BYTES, f"{len(data)} audio bytes only"
        return data

    def close(self) -> None:
        os.close(self.fd)


def _answered_call(modem: FakeAtModem, client: AtClient) -> None:
    modem.ring(NUMBER)
    client.command("ATA")
    modem.wait_for_call_state("active")


# -- Huawei ----------------------------------------------------------------------------------


def test_huawei_does_not_support_unknown_commands(huawei: tuple[FakeAtModem, AtClient]) -> None:
    _, client = huawei
    assert client.command("AT+CEREG?") == ["COMMAND NOT SUPPORT"]


def test_huawei_reports_its_voice_format(huawei: tuple[FakeAtModem, AtClient]) -> None:
    _, client = huawei
    assert client.command("AT^CVOICE?") == ["^CVOICE:0,8000,16,20", "OK"]


def test_huawei_throws_urcs_into_the_middle_of_responses() -> None:
    with FakeHuawei(noise_every=1) as modem:
        modem.wait_until(lambda: modem.booted, what="boot URCs")
        client = AtClient(modem.port)
        client.command("ATE0")
        client.send(b"AT+CSQ\r")
        assert client.read_until(FINAL) == b"\r\n+CSQ: 20,99\r\n\r\n^RSSI:20\r\n\r\nOK\r\n"
        client.send(b"AT+CSQ\r")
        answer = client.read_until(FINAL)
        assert answer.startswith(b"\r\n+CSQ: 20,99\r\n\r\r\n^HCSQ:") and answer.endswith(b"OK\r\n")
        client.close()


def test_huawei_outgoing_call_reports_orig_conf_conn_cend(
        huawei: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = huawei
    assert client.command(f"ATD{NUMBER};") == ["OK"]
    assert client.expect(r"\^ORIG:[^\r]*") == "^ORIG:1,0"
    assert client.expect(r"\^CONF:[^\r]*") == "^CONF:1"
    modem.remote_answers()
    assert client.expect(r"\^CONN:[^\r]*") == "^CONN:1,0"
    modem.remote_hangs_up()
    assert re.fullmatch(r"\^CEND:1,\d+,104,16", client.expect(r"\^CEND:[^\r]*"))


def test_huawei_sends_audio_only_after_ddsetex(huawei: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = huawei
    audio = AudioClient(modem.audio_port)
    _answered_call(modem, client)
    client.command("AT+CLCC")  # a round trip after the answer: still no voice
    assert modem.audio_frames_sent == 0
    client.command("AT^DDSETEX=2")
    frames = audio.read_frames(3)
    assert frames[:AUDIO_FRAME_BYTES * 3] == TONE_FRAME * 3
    audio.close()


def test_huawei_collects_the_frames_the_client_writes(
        huawei: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = huawei
    audio = AudioClient(modem.audio_port)
    _answered_call(modem, client)
    client.command("AT^DDSETEX=2")
    os.write(audio.fd, bytes(range(160)) * 2 * 5)
    modem.wait_for_audio_frames(5)
    assert modem.audio_received[:320] == bytes(range(160)) * 2
    audio.close()


def test_huawei_audio_stops_when_the_call_ends(huawei: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = huawei
    _answered_call(modem, client)
    client.command("AT^DDSETEX=2")
    modem.wait_until(lambda: modem.audio_frames_sent >= 2, what="audio flowing")
    modem.remote_hangs_up()
    sent = modem.audio_frames_sent
    client.command("AT")
    assert modem.audio_frames_sent == sent


def test_huawei_says_smmemfull_when_the_sim_is_full() -> None:
    with FakeHuawei(sms_capacity=1, noise_every=0) as modem:
        modem.wait_until(lambda: modem.booted, what="boot URCs")
        client = AtClient(modem.port)
        client.command("ATE0;+CNMI=2,1,0,2,0")
        assert modem.deliver_text_sms(NUMBER, "first") == [1]
        assert modem.deliver_text_sms(NUMBER, "second") == [None]
        assert client.expect(r"\^SMMEMFULL:[^\r]*") == '^SMMEMFULL: "SM"'
        client.close()


def test_huawei_takes_dtmf_as_dtmf_command(huawei: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = huawei
    _answered_call(modem, client)
    assert client.command("AT^DTMF=1,7")[-1] == "OK"
    assert modem.dtmf_sent == ["7"]


# -- Quectel ---------------------------------------------------------------------------------


def test_quectel_reports_ccinfo_once_enabled(quectel: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = quectel
    client.command('AT+QINDCFG="ccinfo",1,0')
    modem.ring(NUMBER)
    assert client.expect(r'\+QIND: "ccinfo"[^\r]*') == \
        f'+QIND: "ccinfo",1,1,4,0,0,"{NUMBER}",145'
    client.command("ATA")
    assert client.expect(r'\+QIND: "ccinfo"[^\r]*') == \
        f'+QIND: "ccinfo",1,1,0,0,0,"{NUMBER}",145'
    modem.remote_hangs_up()
    assert client.expect(r'\+QIND: "ccinfo"[^\r]*') == \
        f'+QIND: "ccinfo",1,1,-1,0,0,"{NUMBER}",145'
    client.expect("NO CARRIER")


def test_quectel_says_nothing_of_calls_without_qindcfg(
        quectel: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = quectel
    _answered_call(modem, client)
    assert "ccinfo" not in client.buffer.decode() + "".join(client.command("AT"))


def test_quectel_sends_audio_while_qpcmv_is_1_0(quectel: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = quectel
    audio = AudioClient(modem.audio_port)
    assert client.command("AT+QPCMV=1,0") == ["OK"]
    _answered_call(modem, client)
    assert audio.read_frames(2)[:AUDIO_FRAME_BYTES] == TONE_FRAME
    assert client.command("AT+QPCMV?") == ["+QPCMV: 1,0", "OK"]
    audio.close()


def test_quectel_qhup_hangs_up_with_the_cause(quectel: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = quectel
    _answered_call(modem, client)
    assert client.command(f"AT+QHUP={CAUSE_BUSY},1") == ["OK"]
    modem.wait_for_call_state("idle")
    assert modem.calls_ended[-1].cause == CAUSE_BUSY
    assert not modem.calls_ended[-1].by_remote


def test_quectel_has_cereg_with_lte_access(quectel: tuple[FakeAtModem, AtClient]) -> None:
    _, client = quectel
    client.command("AT+CEREG=2")
    assert client.command("AT+CEREG?") == ['+CEREG: 2,1,"1A2B","0C3D4E5",7', "OK"]


def test_quectel_reports_signal_once_csq_indication_is_on(
        quectel: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = quectel
    client.command('AT+QINDCFG="csq",1,0')
    modem.set_signal(12)
    assert client.expect(r'\+QIND: "csq"[^\r]*') == '+QIND: "csq",12,99'


def test_quectel_outgoing_call_busy_ends_with_busy(quectel: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = quectel
    client.command(f"ATD{NUMBER};")
    modem.wait_for_call_state("alerting")
    modem.remote_hangs_up(CAUSE_BUSY)
    client.expect("BUSY")


# -- SIMCom ----------------------------------------------------------------------------------


def test_simcom_voice_call_begin_and_end(simcom: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = simcom
    modem.ring(NUMBER)
    client.command("ATA")
    client.expect("VOICE CALL: BEGIN")
    modem.remote_hangs_up()
    assert re.fullmatch(r"VOICE CALL: END: \d{6}", client.expect(r"VOICE CALL: END[^\r]*"))
    client.expect("NO CARRIER")


def test_simcom_reports_a_missed_call(simcom: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = simcom
    modem.ring(NUMBER)
    client.expect("RING")
    modem.remote_hangs_up()
    assert re.fullmatch(rf"MISSED_CALL: \d\d:\d\d[AP]M \{NUMBER}",
                        client.expect(r"MISSED_CALL:[^\r]*"))


def test_simcom_sends_clcc_urcs_after_clcc_1(simcom: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = simcom
    client.command("AT+CLCC=1")
    client.command(f"ATD{NUMBER};")
    assert client.expect(r"\+CLCC:[^\r]*") == f'+CLCC: 1,0,2,0,0,"{NUMBER}",145'
    assert client.expect(r"\+CLCC:[^\r]*") == f'+CLCC: 1,0,3,0,0,"{NUMBER}",145'


def test_simcom_sends_audio_only_after_cpcmreg_1_in_the_call(
        simcom: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = simcom
    audio = AudioClient(modem.audio_port)
    _answered_call(modem, client)
    client.command("AT+CLCC")
    assert modem.audio_frames_sent == 0
    client.command("AT+CPCMREG=1")
    assert audio.read_frames(2)[:AUDIO_FRAME_BYTES] == TONE_FRAME
    modem.remote_hangs_up()
    client.expect("NO CARRIER")
    assert client.command("AT+CPCMREG?")[-2:] == ["+CPCMREG: 0", "OK"]
    audio.close()


def test_simcom_revision_has_its_prefix(simcom: tuple[FakeAtModem, AtClient]) -> None:
    _, client = simcom
    assert client.command("AT+CGMR") == ["+CGMR: LE20B04SIM7600M22", "OK"]


def test_simcom_reports_far_end_dtmf_after_ddet(simcom: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = simcom
    client.command("AT+DDET=1")
    _answered_call(modem, client)
    modem.remote_sends_dtmf("3")
    assert client.expect(r"\+RXDTMF:[^\r]*") == "+RXDTMF: 3"


def test_a_long_cyrillic_sms_arrives_in_parts(quectel: tuple[FakeAtModem, AtClient]) -> None:
    modem, client = quectel
    text = "Ваш баланс пополнен. " * 5  # 105 characters: two UCS2 parts
    assert modem.deliver_text_sms(NUMBER, text) == [1, 2]
    listing = client.command("AT+CMGL=4")
    assert len([line for line in listing if line.startswith("+CMGL:")]) == 2
    assert all(re.fullmatch(r"[0-9A-F]+", line) for line in listing[1:-1:2])
