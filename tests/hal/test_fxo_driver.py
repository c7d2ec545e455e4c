"""FxoDriver against the fake V.253 modem over its real pty: init and status, ringing with caller
ID, answering into a duplex voice stream with frames counted at both ends, the far end's digits
and hang-up, the box's hang-up, garbage from the modem, the half-duplex profile.

Every wait is bounded: the fake's wait_until_async for what the fake saw, `Line.wait_for` for the
driver's facts, and each test as a whole by `run`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from firmware.media import g711
from hal.fake.v253 import PATTERN, FakeV253Modem
from hal.modem.driver import (
    FRAME_BYTES,
    CallEnded,
    IncomingCall,
    KeyPressed,
    ModemCommandError,
    ModemFact,
    StatusChanged,
)
from hal.modem.fxo import FxoDriver, detect_profile
from hal.serial.supervisor import PortSupervisor
from tests.hal.test_serial_supervisor import run  # each test bounded in time as a whole

FACT_WAIT_S = 5.0
RING_PERIOD_S = 0.3  # the fake's cadence, shortened so a test rings in a fraction of a second
SAMPLES_PER_FRAME = FRAME_BYTES // 2  # 8-bit µ-law on the modem's side: one byte a sample

F = TypeVar("F", bound=ModemFact)


async def until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(within_s):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} not within {within_s} s") from None


class Line:
    """The daemon's side: facts and audio frames as the driver hands them out."""

    def __init__(self) -> None:
        self.facts: list[ModemFact] = []
        self.frames: list[bytes] = []

    def on_fact(self, fact: ModemFact) -> None:
        self.facts.append(fact)

    def on_audio(self, frame: bytes) -> None:
        self.frames.append(frame)

    def of(self, kind: type[F]) -> list[F]:
        return [fact for fact in self.facts if isinstance(fact, kind)]

    async def wait_for(self, kind: type[F], *, count: int = 1, within_s: float = FACT_WAIT_S
                       ) -> F:
        await until(lambda: len(self.of(kind)) >= count, within_s, f"{count} {kind.__name__}")
        return self.of(kind)[count - 1]


def usr_modem(tmp_path: Path) -> Iterator[FakeV253Modem]:
    """The fake USR 5637 behind a by-id style link (a replug keeps the path)."""
    with FakeV253Modem(tmp_path / "by-id" / "usb-USR_5637-if00",
                       ring_period_s=RING_PERIOD_S) as fake:
        yield fake


@pytest.fixture
def modem(tmp_path: Path) -> Iterator[FakeV253Modem]:
    yield from usr_modem(tmp_path)


def make_driver(port: str, profile: str = "v253") -> FxoDriver:
    # No udev in a test: the supervisor looks at the ports every second instead.
    return FxoDriver("city", port=port, profile=profile,
                     supervisor_factory=functools.partial(PortSupervisor, use_udev=False))


@asynccontextmanager
async def running(port: str, profile: str = "v253", *, wait_up: bool = True
                  ) -> AsyncIterator[tuple[FxoDriver, Line]]:
    driver, line = make_driver(port, profile), Line()
    await driver.start(line.on_fact, line.on_audio)
    try:
        if wait_up:
            await until(lambda: driver.status.state == "up", FACT_WAIT_S, "line up")
        yield driver, line
    finally:
        await driver.stop()


async def ring_and_answer(modem: FakeV253Modem, driver: FxoDriver, line: Line,
                          **ring: object) -> IncomingCall:
    modem.ring("5551234", **ring)  # type: ignore[arg-type]
    incoming = await line.wait_for(IncomingCall)
    await driver.answer()
    await modem.wait_until_async(lambda: modem.streaming, what="voice stream")
    return incoming


def heard_pcm_is_the_pattern(frames: list[bytes]) -> bool:
    """The fake streams a ramp over all byte values; heard as µ-law, unshielded, it must be a
    run of that ramp from some point (a lost or extra <DLE> breaks the run)."""
    heard = b"".join(frames)
    codes = len(heard) // 2
    ramp = PATTERN * (codes // len(PATTERN) + 2)
    return any(g711.ulaw_decode(ramp[start:start + codes]) == heard
               for start in range(len(PATTERN)))


# ------------------------------------------------------------------ init and status


def test_detect_profile_from_ati() -> None:
    assert detect_profile("U.S. Robotics 56K FAX USB V1.2.23") == "usr5637"
    assert detect_profile("CX93001-EIS_V0.2013-V92") == "cx930xx"
    assert detect_profile("Agere SoftModem") == "generic"


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError):
        FxoDriver("city", port="/dev/null", profile="zoom")


def test_init_brings_the_line_up_with_the_best_offered_format(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            status = driver.status
            assert (status.state, status.sim, status.port) == ("up", "ready", modem.port)
            assert status.reason.startswith("ready (usr5637, ulaw, full duplex")
            assert status.model.startswith("U.S. Robotics")
            assert driver.profile.name == "usr5637"
            # +VSM=? offers 8-bit linear, A-law, µ-law...: µ-law carries the most range.
            for command in ("ATE0", "AT+FCLASS=8", "AT+VSM=?", "AT+VSM=131,8000", "AT+VLS=0",
                            "AT+VCID=1", "AT+VGR=128", "AT+VGT=128"):
                assert command in modem.commands, command
            states = [fact.status.state for fact in line.of(StatusChanged)]
            assert states[0] == "down" and states[-1] == "up"
    run(scenario)


def test_gains_from_the_constructor_replace_the_nominal_ones(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        driver = FxoDriver("city", port=modem.port, receive_gain=140, transmit_gain=120,
                           supervisor_factory=functools.partial(PortSupervisor, use_udev=False))
        await driver.start(Line().on_fact, Line().on_audio)
        try:
            await until(lambda: driver.status.state == "up", FACT_WAIT_S, "line up")
            assert "AT+VGR=140" in modem.commands and "AT+VGT=120" in modem.commands
            assert "AT+VGR=128" not in modem.commands
        finally:
            await driver.stop()
    run(scenario)


# ------------------------------------------------------------------ incoming calls


def test_a_ring_with_caller_id_is_one_incoming_call(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            modem.ring("5551234", name="ACME", rings=4)
            incoming = await line.wait_for(IncomingCall)
            assert incoming == IncomingCall(line="city", caller="5551234", reason="", name="ACME")
            # More rings come; the call is still the one call.
            await until(lambda: driver.rings >= 3, FACT_WAIT_S, "third ring")
            await driver.answer()
            assert len(line.of(IncomingCall)) == 1
            await driver.hang_up()
    run(scenario)


def test_a_private_caller_comes_without_a_number(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (_, line):
            modem.ring("5551234", private=True, rings=2)
            incoming = await line.wait_for(IncomingCall)
            assert (incoming.caller, incoming.reason) == (None, "private")
    run(scenario)


def test_answering_with_nothing_ringing_is_refused(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, _):
            with pytest.raises(ModemCommandError):
                await driver.answer()
    run(scenario)


def test_answer_streams_both_ways_and_the_frames_are_counted_at_both_ends(
        modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            await ring_and_answer(modem, driver, line)
            assert modem.off_hook
            assert modem.commands[-2:] == ["AT+VLS=1", "AT+VTR"]
            # A frame whose µ-law holds <DLE> (0x10): the driver must double it on the way.
            spoken = bytes(range(256)) + bytes(range(64))
            assert len(spoken) == FRAME_BYTES and 0x10 in g711.ulaw_encode(spoken)
            loop = asyncio.get_running_loop()
            began, written_before = loop.time(), driver.counters.samples_written
            for _ in range(25):
                driver.write_audio(spoken)
                await asyncio.sleep(0.02)  # the daemon's 20 ms media clock
            await until(lambda: len(line.frames) >= 25, FACT_WAIT_S, "25 frames heard")
            elapsed = loop.time() - began
            rate = (driver.counters.samples_written - written_before) / elapsed
            print(f"\nFXO: {rate:.0f} samples/s written to the modem (8000 wanted), "
                  f"{len(line.frames)} frames heard in {elapsed:.2f} s")
            assert 0.8 * 8000 <= rate <= 1.25 * 8000

            await driver.hang_up()
            await modem.wait_until_async(lambda: not modem.streaming and not modem.off_hook,
                                         what="on hook")
            counters = driver.counters
            # Box → line: every sample the pacer wrote arrived, unshielded, and nothing else.
            assert len(modem.received_samples) == counters.samples_written
            assert counters.frames_said >= 20
            assert g711.ulaw_encode(spoken) in bytes(modem.received_samples)
            # Line → box: every sample the fake streamed became PCM, in whole frames.
            assert counters.frames_heard == len(line.frames)
            assert counters.frames_heard == modem.sent_sample_count // SAMPLES_PER_FRAME
            assert all(len(frame) == FRAME_BYTES for frame in line.frames)
            assert heard_pcm_is_the_pattern(line.frames)
    run(scenario)


def test_far_end_hang_up_ends_the_call_and_puts_the_line_on_hook(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            await ring_and_answer(modem, driver, line)
            modem.far_end_hangs_up()
            ended = await line.wait_for(CallEnded)
            assert (ended.by_far_end, ended.status) == (True, 200)
            assert "loop-current break" in ended.cause
            await modem.wait_until_async(lambda: not modem.streaming and not modem.off_hook,
                                         what="on hook")
            assert modem.commands[-1] == "AT+VLS=0"
            assert driver.call_state == "ended"
            # The line takes the next call.
            modem.ring("5557777", rings=2)
            assert (await line.wait_for(IncomingCall, count=2)).caller == "5557777"
    run(scenario)


def test_local_hang_up_leaves_the_stream_and_goes_on_hook(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            await ring_and_answer(modem, driver, line)
            await driver.hang_up()
            assert line.of(CallEnded) == [CallEnded(line="city", cause="hung up by the box",
                                                    status=200, by_far_end=False)]
            assert not modem.streaming and not modem.off_hook
            assert modem.commands[-1] == "AT+VLS=0"
            frames = driver.counters.frames_dropped
            driver.write_audio(bytes(FRAME_BYTES))  # no call: dropped, not queued
            assert driver.counters.frames_dropped == frames + 1
            await driver.hang_up()  # nothing to hang up: nothing happens
            assert len(line.of(CallEnded)) == 1
    run(scenario)


def test_far_end_digits_are_keys(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            await ring_and_answer(modem, driver, line)
            modem.send_dtmf("12#")
            await line.wait_for(KeyPressed, count=3)
            assert [fact.key for fact in line.of(KeyPressed)] == ["1", "2", "#"]
            await driver.hang_up()
    run(scenario)


# ------------------------------------------------------------------ garbage


def test_garbage_from_the_modem_changes_nothing(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port) as (driver, line):
            statuses = len(line.of(StatusChanged))
            modem.inject_garbage(b"\x00\xff\xfe\x13noise\r\n\x10Z\x10\x10\r\nNMBR=12ab\r\n"
                                 b"+VXYZ: 1\r\nBUSY\r\nNO CARRIER\r\n" + bytes(range(256)))
            incoming = await ring_and_answer(modem, driver, line)
            assert incoming.caller == "5551234"
            # In the stream: unknown shielded codes and noise among the samples.
            heard = len(line.frames)
            modem.inject_garbage(b"\x10Z\x10\x7f" + b"\xff" * 300 + b"\x10")
            await until(lambda: len(line.frames) >= heard + 10, FACT_WAIT_S, "frames go on")
            assert driver.call_state == "connected"
            modem.far_end_hangs_up()
            assert "loop-current break" in (await line.wait_for(CallEnded)).cause
            assert len(line.of(StatusChanged)) == statuses
            assert driver.status.state == "up"
    run(scenario)


# ------------------------------------------------------------------ half duplex


def test_a_half_duplex_modem_answers_into_receive_and_says_so(modem: FakeV253Modem) -> None:
    async def scenario() -> None:
        async with running(modem.port, profile="generic") as (driver, line):
            assert "half duplex: the line cannot carry both directions" in driver.status.reason
            await ring_and_answer(modem, driver, line)
            assert modem.commands[-1] == "AT+VRX"
            await until(lambda: len(line.frames) >= 10, FACT_WAIT_S, "frames heard")
            dropped = driver.counters.frames_dropped
            driver.write_audio(bytes(FRAME_BYTES))
            assert driver.counters.frames_dropped == dropped + 1
            await driver.hang_up()
            assert len(modem.received_samples) == 0
            assert heard_pcm_is_the_pattern(line.frames)
    run(scenario)
