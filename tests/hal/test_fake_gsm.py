"""The fake GSM modems answer like 27.007/27.005 modems do, whichever the profile.

The client here is a few lines of os.read/os.write on the pty — deliberately not hal.modem.at,
so the fakes and the box's codec cannot share a misunderstanding.
"""

from __future__ import annotations

import errno
import os
import re
import select
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from hal.fake.atmodem import CAUSE_NORMAL, REG_HOME, REG_SEARCHING, FakeAtModem
from hal.fake.device import FakeDeviceTimeout
from hal.fake.gsm import FakeHuawei, FakeQuectel, FakeSimcom
from hal.fake.pdu import sms_deliver, tpdu_length

FINAL = re.compile(rb"\r\n(OK|ERROR|COMMAND NOT SUPPORT|\+CM[ES] ERROR: [^\r]*|NO CARRIER|BUSY)"
                   rb"\r\n")
READ_TIMEOUT_S = 3.0
PROFILES = [FakeHuawei, FakeQuectel, FakeSimcom]


class AtClient:
    """A plain client on the modem's pty: write a line, read until a pattern, with a deadline."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.buffer = b""

    def close(self) -> None:
        os.close(self.fd)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read_until(self, pattern: re.Pattern[bytes], timeout_s: float = READ_TIMEOUT_S) -> bytes:
        """Everything up to the end of the first match; the rest stays for the next read."""
        deadline = time.monotonic() + timeout_s
        while (match := pattern.search(self.buffer)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern.pattern!r} in {self.buffer!r}")
            readable, _, _ = select.select([self.fd], [], [], left)
            if readable:
                self.buffer += os.read(self.fd, 4096)
        taken, self.buffer = self.buffer[:match.end()], self.buffer[match.end():]
        return taken

    def command(self, line: str, timeout_s: float = READ_TIMEOUT_S) -> list[str]:
        """The lines of the answer, final result last (echo and blank lines dropped)."""
        self.send(line.encode() + b"\r")
        answer = self.read_until(FINAL, timeout_s).decode()
        return [text for text in answer.split("\r\n") if text and text != line + "\r"
                and text.strip() != line]

    def expect(self, regex: str, timeout_s: float = READ_TIMEOUT_S) -> str:
        """The next unsolicited line matching regex (lines before it are skipped)."""
        found = self.read_until(re.compile(rb"\r\n(" + regex.encode() + rb")\r\n"), timeout_s)
        match = re.search(rb"\r\n(" + regex.encode() + rb")\r\n", found)
        assert match is not None
        return match.group(1).decode()


@pytest.fixture(params=PROFILES, ids=lambda profile: profile.name)
def modem(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeAtModem]:
    with request.param(link=tmp_path / "by-id" / "modem-if02-port0",
                       ring_interval_s=0.2, reset_delay_s=0.2, noise_every=0) as fake:
        yield fake


@pytest.fixture
def client(modem: FakeAtModem) -> Iterator[AtClient]:
    modem.wait_until(lambda: modem.booted, what="boot URCs")
    at = AtClient(modem.port)
    at.command("ATE0")
    yield at
    at.close()


def test_echo_is_on_until_ate0(modem: FakeAtModem) -> None:
    at = AtClient(modem.port)
    at.send(b"AT\r")
    assert at.read_until(FINAL).startswith(b"AT\r\r\nOK")
    at.send(b"ATE0\r")
    at.read_until(FINAL)
    at.send(b"AT\r")
    assert at.read_until(FINAL) == b"\r\nOK\r\n"
    at.close()


@pytest.mark.parametrize("command", ["ATE1", "ATZ"])
def test_ate1_and_atz_turn_echo_back_on(client: AtClient, command: str) -> None:
    client.command(command)
    client.send(b"AT+CSQ\r")
    assert client.read_until(FINAL).startswith(b"AT+CSQ\r\r\n+CSQ:")


def test_identity_commands_give_the_configured_imei_and_imsi(tmp_path: Path) -> None:
    with FakeQuectel(imei="358765432109876", imsi="250991234567890") as fake:
        at = AtClient(fake.port)
        at.command("ATE0")
        assert at.command("AT+CGMI") == ["Quectel", "OK"]
        assert at.command("AT+CGMM") == ["EC25", "OK"]
        assert at.command("AT+CGSN") == ["358765432109876", "OK"]
        assert at.command("AT+CIMI") == ["250991234567890", "OK"]
        assert at.command("AT+CCID")[0].startswith("+CCID: 8970")
        at.close()
    assert fake.imei == "358765432109876"


def test_commands_chained_with_semicolons_answer_once(client: AtClient) -> None:
    assert client.command("AT+CMEE=1;+CSQ;+CPIN?") == ["+CSQ: 20,99", "+CPIN: READY", "OK"]


def test_cmee_says_how_errors_read() -> None:
    with FakeSimcom(sim="absent") as fake:
        at = AtClient(fake.port)
        at.command("ATE0")
        assert at.command("AT+CPIN?") == ["ERROR"]
        at.command("AT+CMEE=1")
        assert at.command("AT+CPIN?") == ["+CME ERROR: 10"]
        at.command("AT+CMEE=2")
        assert at.command("AT+CPIN?") == ["+CME ERROR: SIM not inserted"]
        at.close()


def test_a_pin_locked_sim_opens_with_the_right_pin_only() -> None:
    with FakeHuawei(sim="pin", pin="4321", noise_every=0) as fake:
        at = AtClient(fake.port)
        at.command("ATE0;+CMEE=1")
        assert at.command("AT+CPIN?") == ["+CPIN: SIM PIN", "OK"]
        assert at.command("AT+CIMI") == ["+CME ERROR: 11"]
        assert at.command('AT+CPIN="0000"') == ["+CME ERROR: 16"]
        assert at.command('AT+CPIN="4321"') == ["OK"]
        assert at.command("AT+CPIN?") == ["+CPIN: READY", "OK"]
        at.close()


def test_creg_reply_carries_n_and_the_urc_does_not(modem: FakeAtModem,
                                                   client: AtClient) -> None:
    client.command("AT+CREG=2")
    assert client.command("AT+CREG?")[0].startswith('+CREG: 2,1,"1A2B","0C3D4E5"')
    modem.set_registration(REG_SEARCHING)
    assert client.expect(r"\+CREG: [^\r]*") == "+CREG: 2"
    client.command("AT+CREG=1")
    modem.set_registration(REG_HOME)
    assert client.expect(r"\+CREG: [^\r]*") == "+CREG: 1"


def test_cops_names_the_operator_while_registered(modem: FakeAtModem,
                                                  client: AtClient) -> None:
    assert client.command("AT+COPS?")[0].startswith('+COPS: 0,0,"MTS RUS",')
    modem.set_registration(REG_SEARCHING)
    assert client.command("AT+COPS?") == ["+COPS: 0", "OK"]


def test_csq_follows_the_signal_set(modem: FakeAtModem, client: AtClient) -> None:
    modem.set_signal(7)  # Huawei also says ^RSSI:7 unasked
    assert client.command("AT+CSQ")[-2:] == ["+CSQ: 7,99", "OK"]


def test_sim_number_charsets_and_storages_answer(client: AtClient) -> None:
    assert client.command("AT+CNUM") == ['+CNUM: "","+79161234567",145', "OK"]
    assert client.command("AT+CSCS=?") == ['+CSCS: ("IRA","GSM","UCS2")', "OK"]
    assert client.command('AT+CSCS="UCS2"') == ["OK"]
    assert client.command("AT+CSCS?") == ['+CSCS: "UCS2"', "OK"]
    assert client.command("AT+CPMS=?") == ['+CPMS: ("SM"),("SM"),("SM")', "OK"]
    assert client.command('AT+CPMS="SM","SM","SM"') == ["+CPMS: 0,20,0,20,0,20", "OK"]


def _pdu(text: str = "Hello") -> str:
    import datetime

    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    return sms_deliver("+79161112233", text, timestamp=moment)


def test_a_delivered_sms_is_announced_read_and_deleted(modem: FakeAtModem,
                                                      client: AtClient) -> None:
    client.command("AT+CMGF=0;+CNMI=2,1,0,2,0;+CMEE=1")
    pdu = _pdu()
    assert modem.deliver_sms(pdu) == 1
    assert client.expect(r"\+CMTI: [^\r]*") == '+CMTI: "SM",1'
    assert client.command("AT+CMGR=1") == [f"+CMGR: 0,,{tpdu_length(pdu)}", pdu, "OK"]
    assert client.command("AT+CMGR=1")[0] == f"+CMGR: 1,,{tpdu_length(pdu)}"  # now read
    assert client.command("AT+CMGD=1") == ["OK"]
    assert client.command("AT+CMGR=1") == ["+CMS ERROR: 321"]


def test_cnmi_mt_2_hands_the_sms_over_directly(modem: FakeAtModem, client: AtClient) -> None:
    client.command("AT+CNMI=2,2,0,0,0")
    pdu = _pdu()
    assert modem.deliver_sms(pdu) is None
    assert client.expect(r"\+CMT: [^\r]*") == f"+CMT: ,{tpdu_length(pdu)}"
    assert client.read_until(re.compile(rb"[0-9A-F]+\r\n")).strip().decode() == pdu
    assert modem.sms == {}


def test_cmgl_lists_unread_messages_once(modem: FakeAtModem, client: AtClient) -> None:
    first, second = _pdu("one"), _pdu("two")
    modem.deliver_sms(first)
    modem.deliver_sms(second)
    assert client.command("AT+CMGL=0") == [f"+CMGL: 1,0,,{tpdu_length(first)}", first,
                                           f"+CMGL: 2,0,,{tpdu_length(second)}", second, "OK"]
    assert client.command("AT+CMGL=0") == ["OK"]
    assert len(client.command("AT+CMGL=4")) == 5


def test_cmgs_prompts_and_takes_the_pdu_until_ctrl_z(modem: FakeAtModem,
                                                     client: AtClient) -> None:
    submit = "0011000B919761112233F30008AA0C041F04400438043204350442"
    client.send(f"AT+CMGS={tpdu_length(submit)}\r".encode())
    client.read_until(re.compile(rb"\r\n> "))
    client.send(submit.encode() + b"\x1a")
    assert client.read_until(FINAL) == b"\r\n+CMGS: 1\r\n\r\nOK\r\n"
    assert modem.sms_sent == [submit]


def test_cmgs_refuses_a_pdu_of_another_length(modem: FakeAtModem, client: AtClient) -> None:
    client.command("AT+CMEE=1")
    client.send(b"AT+CMGS=99\r")
    client.read_until(re.compile(rb"> "))
    client.send(b"0011000B919761112233F30000AA0548656C6C6F\x1a")
    assert client.read_until(FINAL).endswith(b"+CMS ERROR: 304\r\n")
    assert modem.sms_sent == []


def test_ussd_balance_comes_back_in_ucs2(client: AtClient) -> None:
    assert client.command('AT+CUSD=1,"*100#",15') == ["OK"]
    reply = client.expect(r"\+CUSD: [^\r]*")
    match = re.fullmatch(r'\+CUSD: 0,"([0-9A-F]+)",72', reply)
    assert match is not None
    assert bytes.fromhex(match.group(1)).decode("utf-16-be").startswith("Баланс: 123,45 р.")


def test_ussd_the_network_does_not_know_is_refused(client: AtClient) -> None:
    client.command('AT+CUSD=1,"*999#",15')
    assert client.expect(r"\+CUSD: [^\r]*") == "+CUSD: 4"


def test_clcc_lists_the_call_and_chup_ends_it(modem: FakeAtModem, client: AtClient) -> None:
    modem.ring("+79161112233")
    client.command("ATA")
    modem.wait_for_call_state("active")
    # a profile's call-state URC may come first
    assert client.command("AT+CLCC")[-2:] == ['+CLCC: 1,1,0,0,0,"+79161112233",145', "OK"]
    assert client.command("AT+CHUP")[-1] == "OK"
    modem.wait_for_call_state("idle")
    assert modem.calls_ended[-1].by_remote is False
    assert modem.calls_ended[-1].cause == CAUSE_NORMAL


def test_ata_without_a_call_says_no_carrier(client: AtClient) -> None:
    assert client.command("ATA") == ["NO CARRIER"]


def test_vts_records_dtmf_in_a_call(modem: FakeAtModem, client: AtClient) -> None:
    client.command("ATD+79161112233;")
    modem.wait_for_call_state("alerting")
    modem.remote_answers()
    assert client.command("AT+VTS=5")[-1] == "OK"
    assert modem.dtmf_sent == ["5"]


def test_incoming_call_rings_with_clip_until_answered(modem: FakeAtModem,
                                                      client: AtClient) -> None:
    modem.ring("+79161112233")
    for _ in range(2):  # RING repeats every ring_interval_s
        client.expect("RING")
        assert client.expect(r"\+CLIP: [^\r]*") == '+CLIP: "+79161112233",145,,,,0'
    client.command("ATA")
    modem.wait_for_call_state("active")


def test_a_private_caller_has_no_number(modem: FakeAtModem, client: AtClient) -> None:
    modem.ring("+79161112233", private=True)
    assert client.expect(r"\+CLIP: [^\r]*") == '+CLIP: "",128,,,,1'


def test_cfun_reset_drops_the_port_and_comes_back(modem: FakeAtModem,
                                                  client: AtClient) -> None:
    assert client.command("AT+CFUN=1,1") == ["OK"]
    modem.wait_until(lambda: not modem.plugged, what="the modem drops off")
    _assert_hung_up(client)
    modem.wait_until(lambda: modem.plugged, what="the modem comes back")
    again = AtClient(modem.port)
    assert again.command("AT")[-1] == "OK"  # echo is back on after the reset
    assert modem.resets == 1
    again.close()


def _assert_hung_up(client: AtClient) -> None:
    """A vanished port: readable with nothing to read (pyserial's "device reports readiness to
    read but returned no data"), and a write fails with EIO."""
    readable, _, _ = select.select([client.fd], [], [], READ_TIMEOUT_S)
    assert readable
    while os.read(client.fd, 4096):  # what the modem said before it went
        pass
    with pytest.raises(OSError) as gone:
        client.send(b"AT\r")
    assert gone.value.errno == errno.EIO


def test_unplug_gives_eio_and_replug_a_working_port(modem: FakeAtModem,
                                                    client: AtClient) -> None:
    link = Path(modem.port)
    modem.unplug()
    assert not link.exists()
    _assert_hung_up(client)
    modem.replug()
    assert link.is_symlink() and link.resolve().exists()
    again = AtClient(modem.port)
    assert again.command("ATE0") [-1] == "OK"
    assert again.command("AT+CGSN") == [modem.imei, "OK"]
    again.close()


def test_garbage_goes_out_raw_and_commands_still_work(modem: FakeAtModem,
                                                      client: AtClient) -> None:
    modem.inject_garbage(b"\x00\xff\r\r+CSQ: 1\x1b[garbage")
    client.read_until(re.compile(rb"garbage"))
    assert client.command("AT+CSQ") == ["+CSQ: 20,99", "OK"]


def test_client_garbage_without_at_is_ignored(modem: FakeAtModem, client: AtClient) -> None:
    client.send(b"\xfe\x01hello\r")
    assert client.command("AT") == ["OK"]
    assert modem.commands[-1] == "AT"


def test_a_silent_modem_records_but_never_answers(modem: FakeAtModem,
                                                  client: AtClient) -> None:
    modem.go_silent()
    client.send(b"AT+CSQ\r")
    modem.wait_for_command(r"^AT\+CSQ$")
    modem.set_signal(3)
    with pytest.raises(AssertionError):
        client.read_until(FINAL, timeout_s=0.5)
    assert client.buffer == b""


def test_wait_for_command_times_out_with_a_clear_error(modem: FakeAtModem) -> None:
    with pytest.raises(FakeDeviceTimeout, match="ATA"):
        modem.wait_for_command("ATA", timeout_s=0.05)


def test_remote_hangup_ends_an_answered_call(modem: FakeAtModem, client: AtClient) -> None:
    modem.ring("+79161112233")
    client.command("ATA")
    modem.wait_for_call_state("active")
    modem.remote_hangs_up(CAUSE_NORMAL)
    assert modem.call_state == "idle"
    assert modem.calls_ended[-1].answered and modem.calls_ended[-1].by_remote
