"""Debian's gammu, a client nobody here wrote, keeps the fake Huawei honest: it identifies the
stick and reads the SMS on its SIM (MODEMS.md §3: it needs echo after ATE1 and +CSCS=?)."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hal.fake.gsm import FakeHuawei

GAMMU = shutil.which("gammu")
GAMMU_TIMEOUT_S = 60
IMEI = "356938035643809"
IMSI = "250017654321098"
SENT_AT = datetime.datetime(2026, 3, 8, 9, 30, 0,
                            tzinfo=datetime.timezone(datetime.timedelta(hours=3)))

pytestmark = pytest.mark.skipif(GAMMU is None, reason="gammu is not installed (make test "
                                "installs Debian's gammu)")


@pytest.fixture
def huawei(tmp_path: Path) -> Iterator[FakeHuawei]:
    # noise on: gammu must cope with ^RSSI/^HCSQ/^BOOT inside answers, as with a real stick
    with FakeHuawei(imei=IMEI, imsi=IMSI,
                    link=tmp_path / "by-id" / "usb-HUAWEI_Mobile-if02-port0") as modem:
        yield modem


def gammu(modem: FakeHuawei, tmp_path: Path, *args: str) -> str:
    config = tmp_path / "gammurc"
    config.write_text(f"[gammu]\ndevice = {modem.port}\nconnection = at\nmodel = at\n"
                      f"logfile = {tmp_path / 'gammu.log'}\nlogformat = textall\n")
    assert GAMMU is not None
    result = subprocess.run([GAMMU, "-c", str(config), *args], capture_output=True, text=True,
                            timeout=GAMMU_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_gammu_identifies_the_fake_huawei(huawei: FakeHuawei, tmp_path: Path) -> None:
    output = gammu(huawei, tmp_path, "identify")
    assert "Manufacturer         : Huawei" in output
    assert "Model                : E1550" in output
    assert f"IMEI                 : {IMEI}" in output
    assert f"SIM IMSI             : {IMSI}" in output
    assert "AT^PORTSEL=1" in huawei.commands  # gammu's Huawei start, as DEPENDENCIES.md says


def test_gammu_reads_cyrillic_and_latin_sms(huawei: FakeHuawei, tmp_path: Path) -> None:
    huawei.deliver_text_sms("+79161112233", "Привет! Звонок в 15:00", timestamp=SENT_AT)
    huawei.deliver_text_sms("MTS", "Balance 12.50 RUB", timestamp=SENT_AT)
    output = gammu(huawei, tmp_path, "getallsms")
    assert "Привет! Звонок в 15:00" in output
    assert "Coding               : Unicode (no compression)" in output
    assert "Balance 12.50 RUB" in output
    assert 'Remote number        : "MTS"' in output
    assert 'Remote number        : "+79161112233"' in output
    assert "Sent                 : Sun Mar  8 09:30:00 2026 +0300" in output


def test_gammu_joins_a_long_message_from_its_parts(huawei: FakeHuawei, tmp_path: Path) -> None:
    text = "Ваш платёж зачислен, спасибо что вы с нами. " * 4
    assert len(text) == 176  # three UCS2 parts of at most 67 characters
    assert len(huawei.deliver_text_sms("+79161112233", text, reference=42)) == 3
    output = gammu(huawei, tmp_path, "geteachsms")  # geteachsms links the parts
    assert "3 SMS parts in 1 SMS sequences" in output
    assert text.strip() in output
