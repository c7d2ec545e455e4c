"""FxoDriver, outgoing calls and the port: dialling after dial tone (seen outside the voice
stream) or after the wait, a busy line, DTMF out, a modem that is not a voice modem, unplugging
and replugging (idle and in a call, the replug-to-up time printed), `linebox dev fake-modem v253`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hal.fake.registry import FAKE_MODEMS
from hal.fake.v253 import FakeV253Modem
from hal.modem.driver import (
    CallEnded,
    IncomingCall,
    ModemCommandError,
    RemoteAnswered,
    StatusChanged,
)
from hal.modem.fxo import FxoDriver
from hal.modem.v253 import DIAL_TONE_WAIT_S
from tests.hal.at_device import Answer, ScriptedModem
from tests.hal.test_fxo_driver import (
    FACT_WAIT_S,
    Line,
    ring_and_answer,
    running,
    until,
    usr_modem,
)
from tests.hal.test_serial_supervisor import run

REPLUG_UP_WITHIN_S = 10.0  # issue 12: up again within 10 s of the replug
CLI_TIMEOUT_S = 20.0


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[FakeV253Modem]:
    yield from usr_modem(tmp_path)


async def dial_and_connect(modem: FakeV253Modem, driver_line: tuple[FxoDriver, Line],
                           number: str = "5551234") -> float:
    """Dials; returns the seconds from dial() to RemoteAnswered."""
    driver, line = driver_line
    loop = asyncio.get_running_loop()
    began = loop.time()
    await driver.dial(number)
    await line.wait_for(RemoteAnswered, within_s=DIAL_TONE_WAIT_S + FACT_WAIT_S)
    took = loop.time() - began
    await modem.wait_until_async(lambda: modem.streaming, what="voice stream")
    return took


# ------------------------------------------------------------------ outgoing


def test_dialling_waits_for_dial_tone_then_is_answered_at_once(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            took = await dial_and_connect(modem, (driver, line))
            print(f"\nFXO: dial() → RemoteAnswered in {took * 1000:.0f} ms (dial tone seen)")
            # <DLE>d came in voice command mode and was seen: no waiting out the timeout.
            assert took < DIAL_TONE_WAIT_S
            assert driver.counters.dle_events >= 1
            assert modem.dialled == ["5551234"]
            at = modem.commands.index("AT+VLS=1")
            assert modem.commands[at:at + 3] == ["AT+VLS=1", "ATD5551234;", "AT+VTR"]
            assert line.of(RemoteAnswered) == [RemoteAnswered(line="city")]
            await until(lambda: len(line.frames) >= 5, FACT_WAIT_S, "frames heard")
            await driver.hang_up()
            ended = await line.wait_for(CallEnded)
            assert (ended.status, ended.by_far_end) == (200, False)
            assert not modem.off_hook
    run(scenario)


def test_without_dial_tone_the_number_is_dialled_after_the_wait(tmp_path: Path) -> None:
    with FakeV253Modem(tmp_path / "usb-USR-if00", reports_dial_tone=False) as quiet:
        async def scenario() -> None:
            async with running(quiet.port) as (driver, line):
                took = await dial_and_connect(quiet, (driver, line), "5550000")
                assert DIAL_TONE_WAIT_S <= took < DIAL_TONE_WAIT_S + 1.0
                assert quiet.dialled == ["5550000"]
                await driver.hang_up()
        run(scenario)


def test_a_busy_tone_after_dialling_is_busy(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            await dial_and_connect(modem, (driver, line))
            modem.busy_tone()
            ended = await line.wait_for(CallEnded)
            assert (ended.status, ended.cause, ended.by_far_end) == (486, "busy", True)
            await modem.wait_until_async(lambda: not modem.off_hook, what="on hook")
            assert driver.call_state == "ended"
    run(scenario)


def test_dialling_what_is_not_a_number_or_while_a_call_is_up_is_refused(
        modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            with pytest.raises(ModemCommandError):
                await driver.dial("555;ATZ")
            await dial_and_connect(modem, (driver, line))
            with pytest.raises(ModemCommandError):
                await driver.dial("5557777")
            await driver.hang_up()
            assert modem.dialled == ["5551234"]
    run(scenario)


def test_dtmf_out_leaves_the_stream_for_vts_and_comes_back(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            await ring_and_answer(modem, driver, line)
            with pytest.raises(ModemCommandError):
                await driver.send_dtmf("x")
            await driver.send_dtmf("5")
            at = modem.commands.index("AT+VTS=5")
            assert modem.commands[at:] == ["AT+VTS=5", "AT+VTR"]
            assert modem.streaming
            heard = len(line.frames)
            await until(lambda: len(line.frames) >= heard + 5, FACT_WAIT_S, "frames again")
            assert driver.call_state == "connected"
            await driver.hang_up()
    run(scenario)


# ------------------------------------------------------------------ the port


def test_a_modem_that_refuses_voice_class_is_down_with_the_reason(tmp_path: Path) -> None:
    def data_only(line: str) -> Answer:
        if line == "AT+FCLASS=8":
            return b"\r\nERROR\r\n"
        if line == "ATI":
            return b"\r\niaxmodem\r\n\r\nOK\r\n"
        return b"\r\nOK\r\n"

    async def scenario() -> None:
        device = ScriptedModem(data_only, link=tmp_path / "ttyIAX0")
        try:
            async with running(device.path, wait_up=False) as (driver, line):
                await until(lambda: "not a voice modem" in driver.status.reason, FACT_WAIT_S,
                            "down as not a voice modem")
                assert driver.status.state == "down"
                assert driver.status.reason == "not a voice modem (AT+FCLASS=8 → ERROR)"
                assert all(fact.status.state == "down" for fact in line.of(StatusChanged))
                assert "AT+VLS=1" not in device.received
        finally:
            device.close()
    run(scenario)


def test_unplug_marks_the_line_down_and_a_replug_brings_it_up(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            modem.unplug()
            await until(lambda: driver.status.state == "down", FACT_WAIT_S, "down")
            assert driver.status.reason.startswith("port vanished")
            loop = asyncio.get_running_loop()
            replugged = loop.time()
            modem.replug()
            await until(lambda: driver.status.state == "up", REPLUG_UP_WITHIN_S, "up again")
            took = loop.time() - replugged
            print(f"\nFXO: replug → line up in {took:.2f} s (polling, no udev)")
            assert took < REPLUG_UP_WITHIN_S
            # The fake came back in its power-up state: the init ran again.
            assert modem.commands.count("AT+FCLASS=8") == 2
            modem.ring("5551234", rings=2)
            assert (await line.wait_for(IncomingCall)).caller == "5551234"
    run(scenario)


def test_unplugging_in_a_call_ends_it_and_the_line_comes_back(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            await ring_and_answer(modem, driver, line)
            modem.unplug()
            ended = await line.wait_for(CallEnded)
            assert (ended.status, ended.by_far_end) == (480, True)
            assert ended.cause.startswith("port vanished")
            assert driver.status.state == "down"
            driver.write_audio(bytes(320))  # no stream: dropped, nothing raised
            modem.replug()
            await until(lambda: driver.status.state == "up", REPLUG_UP_WITHIN_S, "up again")
            assert driver.call_state == "ended"
            await driver.hang_up()  # nothing left to hang up
            assert len(line.of(CallEnded)) == 1
    run(scenario)


# ------------------------------------------------------------------ the developer's fake


def test_the_registry_knows_the_v253_fake() -> None:
    assert FAKE_MODEMS["v253"] is FakeV253Modem


def test_linebox_dev_fake_modem_v253_prints_its_port(tmp_path: Path) -> None:
    link = tmp_path / "by-id" / "usb-USR_5637-if00"
    done = subprocess.run(
        [sys.executable, "-m", "firmware", "dev", "fake-modem", "v253", "--link", str(link)],
        input="ring 5551234\ngarbage noise\nquit\n", capture_output=True, text=True,
        timeout=CLI_TIMEOUT_S, cwd=Path.cwd(), check=False)
    assert done.returncode == 0, done.stderr
    assert f"port: {link}" in done.stdout.splitlines()
    # Every console command was taken (a refused one prints "! why" or "? what").
    assert not [line for line in done.stdout.splitlines() if line[:1] in ("!", "?")]
