"""`linebox dev fake-modem`: a developer gets a port to try, and plays the network from stdin."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hal.test_fake_gsm import AtClient

IMEI = "861111122222333"
STOP_TIMEOUT_S = 10.0


@pytest.fixture
def fake_modem(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    link = tmp_path / "by-id" / "usb-HUAWEI_Mobile-if02-port0"
    process = subprocess.Popen(
        [sys.executable, "-m", "firmware", "dev", "fake-modem", "huawei", "--imei", IMEI,
         "--link", str(link)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path.cwd())
    assert process.stdout is not None
    printed: dict[str, str] = {}
    for line in process.stdout:  # ends at the prompt line, or at exit if it fails
        key, _, value = line.partition(": ")
        printed[key] = value.strip()
        if line.startswith("type help"):
            break
    yield process, printed
    if process.poll() is None:
        process.kill()
        process.wait(STOP_TIMEOUT_S)


def test_fake_modem_prints_its_ports_and_answers_with_the_imei(
        fake_modem: tuple[subprocess.Popen[str], dict[str, str]], tmp_path: Path) -> None:
    _, printed = fake_modem
    assert printed["port"] == str(tmp_path / "by-id" / "usb-HUAWEI_Mobile-if02-port0")
    assert printed["imei"] == IMEI
    assert os.path.exists(printed["audio_port"])
    client = AtClient(printed["port"])
    assert client.command("AT+CGSN")[-2:] == [IMEI, "OK"]
    client.close()


def test_fake_modem_rings_and_delivers_sms_from_stdin(
        fake_modem: tuple[subprocess.Popen[str], dict[str, str]]) -> None:
    process, printed = fake_modem
    assert process.stdin is not None
    client = AtClient(printed["port"])
    client.command("ATE0;+CNMI=2,1,0,2,0")
    process.stdin.write("ring +79161234567\n")
    process.stdin.flush()
    assert client.expect(r"\+CLIP: [^\r]*").startswith('+CLIP: "+79161234567",145')
    process.stdin.write("sms +79161234567 Привет из терминала\n")
    process.stdin.flush()
    assert client.expect(r"\+CMTI: [^\r]*") == '+CMTI: "SM",1'
    client.close()


def test_fake_modem_stops_on_ctrl_c_and_removes_its_link(
        fake_modem: tuple[subprocess.Popen[str], dict[str, str]]) -> None:
    process, printed = fake_modem
    process.send_signal(signal.SIGINT)
    assert process.wait(STOP_TIMEOUT_S) == 0
    assert not os.path.lexists(printed["port"])
