"""Serial ports that come and go, on real ptys: a pty whose master is closed is an unplugged stick
(the client reads EIO), a new pty with the by-id symlink re-created is the replug with
renumbering; the modem is found again by IMEI. Plus the pure pieces: backoff, candidate paths,
IMEI parsing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from hal.modem.channel import AtChannel
from hal.serial.port import Backoff, candidate_paths, open_port, parse_imei, probe_imei
from hal.serial.supervisor import BACKOFF_MAX_S, PROBE_TIMEOUT_S, PortSupervisor
from tests.hal.at_device import Answer, ScriptedModem

TEST_BOUND_S = 20.0
IMEI_A = "861234567890123"
IMEI_B = "869876543210987"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TEST_BOUND_S):
            await scenario()
    asyncio.run(bounded())


def modem_with_imei(imei: str | None) -> Callable[[str], Answer]:
    def answer(line: str) -> Answer:
        if line == "AT+CGSN":
            return b"\r\nERROR\r\n" if imei is None else f"\r\n{imei}\r\n\r\nOK\r\n".encode()
        return b"\r\nOK\r\n"
    return answer


async def until(condition: Callable[[], bool], within_s: float) -> None:
    async with asyncio.timeout(within_s):
        while not condition():
            await asyncio.sleep(0.01)


class Recorder:
    """on_opened/on_lost that write down what happened, with loop times."""

    def __init__(self, init: tuple[str, ...] = ("ATE0",)) -> None:
        self.opened: list[tuple[str, float]] = []
        self.lost: list[str] = []
        self.init = init

    async def on_opened(self, channel: AtChannel, path: str) -> None:
        for command in self.init:
            await channel.command(command)
        self.opened.append((path, asyncio.get_running_loop().time()))

    def on_lost(self, reason: str) -> None:
        self.lost.append(reason)


# ------------------------------------------------------------------ pure pieces


def test_backoff_doubles_from_half_a_second_to_five_seconds() -> None:
    backoff = Backoff(first_s=0.5, max_s=5.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_starts_over_after_a_reset() -> None:
    backoff = Backoff(first_s=0.5, max_s=5.0)
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


@pytest.mark.parametrize("line", [IMEI_A, f'+CGSN: "{IMEI_A}"', f"+CGSN: {IMEI_A}",
                                  f"IMEI: {IMEI_A}"])
def test_the_imei_is_read_from_any_usual_cgsn_answer(line: str) -> None:
    assert parse_imei([line]) == IMEI_A


def test_no_imei_in_an_answer_without_one() -> None:
    assert parse_imei(["OK", "12345"]) is None


def test_candidate_paths_list_each_device_once_by_id_first(tmp_path: Path) -> None:
    (tmp_path / "ttyUSB0").touch()
    (tmp_path / "ttyUSB1").touch()
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-HUAWEI-if02-port0").symlink_to(tmp_path / "ttyUSB1")
    (by_id / "dangling").symlink_to(tmp_path / "gone")
    paths = candidate_paths([str(by_id / "*"), str(tmp_path / "ttyUSB*")])
    assert paths == [str(by_id / "usb-HUAWEI-if02-port0"), str(tmp_path / "ttyUSB0")]


# ------------------------------------------------------------------ opening and probing


def test_a_port_open_here_cannot_be_opened_twice() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(modem_with_imei(IMEI_A))
        _, writer = await open_port(modem.path)
        with pytest.raises(OSError):
            await open_port(modem.path)
        assert await probe_imei(modem.path) is None  # a probe skips a port in use
        writer.close()
        modem.close()
    run(scenario)


def test_a_probe_reads_the_imei_behind_a_port() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(modem_with_imei(IMEI_A))
        probed = await probe_imei(modem.path)
        assert probed is not None and (probed.imei, probed.answered) == (IMEI_A, True)
        await probed.channel.close()
        modem.close()
    run(scenario)


def test_a_port_that_does_not_speak_at_is_probed_as_silent() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(lambda line: None)  # a GPS or diagnostics port
        probed = await probe_imei(modem.path, timeout_s=0.05)
        assert probed is not None and (probed.imei, probed.answered) == (None, False)
        await probed.channel.close()
        modem.close()
    run(scenario)


# ------------------------------------------------------------------ the supervisor


def test_the_configured_port_is_opened_and_initialised(tmp_path: Path) -> None:
    async def scenario() -> None:
        modem = ScriptedModem(modem_with_imei(IMEI_A), link=tmp_path / "modem")
        seen = Recorder(init=("ATE0", "AT+CMEE=1"))
        supervisor = PortSupervisor(modem.path, on_opened=seen.on_opened, on_lost=seen.on_lost,
                                    candidates=list, use_udev=False)
        supervisor.start()
        await until(lambda: len(seen.opened) == 1, 5.0)
        assert seen.opened[0][0] == modem.path and supervisor.state == "open"
        assert modem.received == ["ATE0", "AT+CMEE=1"]
        await supervisor.stop()
        modem.close()
    run(scenario)


@pytest.mark.parametrize("use_udev", [False, True], ids=["polling", "udev"])
def test_an_unplugged_modem_is_reported_lost_and_reopened_after_the_replug(
        tmp_path: Path, use_udev: bool) -> None:
    async def scenario() -> None:
        link = tmp_path / "usb-HUAWEI_Mobile-if02-port0"
        first = ScriptedModem(modem_with_imei(IMEI_A), link=link)
        seen = Recorder()
        supervisor = PortSupervisor(str(link), on_opened=seen.on_opened, on_lost=seen.on_lost,
                                    candidates=list, use_udev=use_udev)
        supervisor.start()
        await until(lambda: len(seen.opened) == 1, 5.0)
        # The stick's next tty is made while the first still holds its number, so it comes back
        # renumbered (as ttyUSB renumbering does); its by-id link appears only at the replug.
        second = ScriptedModem(modem_with_imei(IMEI_A), link=tmp_path / "not-yet-plugged")
        first.unplug()
        await until(lambda: len(seen.lost) == 1, 1.0)
        assert supervisor.state == "opening"
        await asyncio.sleep(1.7)  # the stick is out for a while; backoff grows meanwhile
        loop = asyncio.get_running_loop()
        assert second.link is not None
        os.replace(second.link, link)
        second.link = link
        replugged_at = loop.time()
        await until(lambda: len(seen.opened) == 2, BACKOFF_MAX_S + 2.0)
        reopen_s = seen.opened[1][1] - replugged_at
        print(f"replug → port reopened and initialised in {reopen_s * 1000:.0f} ms "
              f"({'udev' if use_udev else 'polling'}; {first.slave_path} → {second.slave_path})")
        assert reopen_s < BACKOFF_MAX_S
        assert second.slave_path != first.slave_path
        assert second.received == ["ATE0"]
        await supervisor.stop()
        second.close()
    run(scenario)


def test_the_modem_is_found_by_imei_when_renumbering_lost_its_link(tmp_path: Path) -> None:
    async def scenario() -> None:
        link = tmp_path / "usb-HUAWEI_Mobile-if02-port0"
        first = ScriptedModem(modem_with_imei(IMEI_A), link=link)
        modems = [first]
        seen = Recorder()
        supervisor = PortSupervisor(
            str(link), imei=IMEI_A, on_opened=seen.on_opened, on_lost=seen.on_lost,
            candidates=lambda: [m.slave_path for m in modems if not m.closed], use_udev=False)
        supervisor.start()
        await until(lambda: len(seen.opened) == 1, 5.0)
        first.unplug()
        await until(lambda: len(seen.lost) == 1, 1.0)
        loop = asyncio.get_running_loop()
        other = ScriptedModem(modem_with_imei(IMEI_B))  # another stick, probed and left alone
        back = ScriptedModem(modem_with_imei(IMEI_A))  # the stick again, no by-id link this time
        modems += [other, back]
        replugged_at = loop.time()
        await until(lambda: len(seen.opened) == 2, BACKOFF_MAX_S + PROBE_TIMEOUT_S + 2.0)
        print(f"replug without its link → found by IMEI at {back.slave_path} in "
              f"{(seen.opened[1][1] - replugged_at) * 1000:.0f} ms")
        assert seen.opened[1][0] == back.slave_path == supervisor.path
        assert other.received == ["AT+CGSN"]
        assert back.received == ["AT+CGSN", "ATE0"]
        await supervisor.stop()
        other.close()
        back.close()
    run(scenario)


def test_a_modem_that_lost_its_imei_is_still_used_on_the_configured_port() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(modem_with_imei(None))
        seen = Recorder()
        supervisor = PortSupervisor(modem.path, imei=IMEI_A, on_opened=seen.on_opened,
                                    candidates=list, use_udev=False)
        supervisor.start()
        await until(lambda: len(seen.opened) == 1, 5.0)
        assert supervisor.path == modem.path
        await supervisor.stop()
        modem.close()
    run(scenario)


def test_another_modem_on_the_configured_port_is_not_taken() -> None:
    async def scenario() -> None:
        stranger = ScriptedModem(modem_with_imei(IMEI_B))
        seen = Recorder()
        supervisor = PortSupervisor(stranger.path, imei=IMEI_A, on_opened=seen.on_opened,
                                    candidates=list, use_udev=False)
        supervisor.start()
        await until(lambda: stranger.received.count("AT+CGSN") >= 2, 5.0)  # tried, retried
        assert seen.opened == [] and supervisor.state == "opening"
        assert set(stranger.received) == {"AT+CGSN"}
        await supervisor.stop()
        stranger.close()
    run(scenario)


def test_an_init_that_fails_is_tried_again() -> None:
    async def scenario() -> None:
        attempts: list[str] = []

        def answer(line: str) -> Answer:
            attempts.append(line)
            if line == "AT+CPIN?" and attempts.count(line) == 1:
                return b"\r\n+CME ERROR: 14\r\n"  # SIM busy on the first try
            return b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
        modem = ScriptedModem(answer)
        seen = Recorder(init=("AT+CPIN?",))
        supervisor = PortSupervisor(modem.path, on_opened=seen.on_opened, candidates=list,
                                    use_udev=False)
        supervisor.start()
        await until(lambda: len(seen.opened) == 1, 5.0)
        assert attempts == ["AT+CPIN?", "AT+CPIN?"]
        await supervisor.stop()
        modem.close()
    run(scenario)
