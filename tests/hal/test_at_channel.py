"""The AT channel over a real pty with a scripted device on the other end: round trips, URCs in the
middle of answers, timeouts that leak nothing and never hand a late answer to the next command,
the SMS prompt, data mode, a port that vanishes under a command; and the reset policy, stepped by
`now`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import serial_asyncio_fast

from hal.modem.at import UnsolicitedResult
from hal.modem.channel import (
    RESET_COMMAND,
    AtChannel,
    AtCommandFailed,
    AtPortClosed,
    AtTimeout,
    ResetPolicy,
)
from tests.hal.at_device import Answer, ScriptedModem

TEST_BOUND_S = 10.0  # every scenario ends within this


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TEST_BOUND_S):
            await scenario()
    asyncio.run(bounded())


async def open_channel(modem: ScriptedModem, **options: object) -> AtChannel:
    reader, writer = await serial_asyncio_fast.open_serial_connection(
        url=modem.path, baudrate=115200)
    return AtChannel(reader, writer, name="test", **options)  # type: ignore[arg-type]


def answers(table: dict[str, Answer]) -> Callable[[str], Answer]:
    return lambda line: table.get(line, b"\r\nERROR\r\n")


# ------------------------------------------------------------------ round trips


def test_a_command_returns_its_information_lines() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({"AT+CSQ": b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"}))
        channel = await open_channel(modem)
        done = await channel.command("AT+CSQ")
        assert done.info == ("+CSQ: 20,99",)
        assert modem.received == ["AT+CSQ"]
        await channel.close()
        modem.close()
    run(scenario)


def test_a_urc_in_the_middle_of_an_answer_goes_to_the_queue() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({
            "AT+CSQ": b"\r\n^RSSI:14\r\r\n+CSQ: 20,99\r\n\r\n+CMTI: \"SM\",3\r\n\r\nOK\r\n"}))
        channel = await open_channel(modem)
        assert (await channel.command("AT+CSQ")).info == ("+CSQ: 20,99",)
        assert channel.unsolicited.get_nowait() == UnsolicitedResult(line="^RSSI:14")
        assert channel.unsolicited.get_nowait() == UnsolicitedResult(line='+CMTI: "SM",3')
        await channel.close()
        modem.close()
    run(scenario)


def test_unsolicited_results_go_to_the_callback_when_one_is_given() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({}))
        seen: list[UnsolicitedResult] = []
        channel = await open_channel(modem, on_unsolicited=seen.append)
        modem.send(b"\r\nRING\r\n\r\n+CLIP: \"+79161234567\",145\r\n")
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        assert [u.line for u in seen] == ["RING", '+CLIP: "+79161234567",145']
        assert channel.unsolicited.empty()
        await channel.close()
        modem.close()
    run(scenario)


def test_a_failing_unsolicited_handler_does_not_stop_the_channel() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({"AT": b"\r\nRING\r\n\r\nOK\r\n"}))

        def broken(_: UnsolicitedResult) -> None:
            raise RuntimeError("handler bug")
        channel = await open_channel(modem, on_unsolicited=broken)
        assert (await channel.command("AT")).ok
        assert (await channel.command("AT")).ok
        await channel.close()
        modem.close()
    run(scenario)


def test_an_error_answer_raises_with_the_completion() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({"AT+CPIN?": b"\r\n+CME ERROR: 10\r\n"}))
        channel = await open_channel(modem)
        with pytest.raises(AtCommandFailed) as failure:
            await channel.command("AT+CPIN?")
        assert failure.value.completion.error_code == 10
        assert channel.waiters == 0
        await channel.close()
        modem.close()
    run(scenario)


def test_garbage_from_the_device_changes_nothing_else() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({"AT+CGSN": b"\r\n861234567890123\r\n\r\nOK\r\n"}))
        channel = await open_channel(modem)
        modem.send(b"\xff\xfe\x00\x81garbage\x07\r\n" + b"\x80" * 5000 + b"\r\n")
        assert (await channel.command("AT+CGSN")).info == ("861234567890123",)
        assert channel.garbage_events >= 2
        await channel.close()
        modem.close()
    run(scenario)


# ------------------------------------------------------------------ timeouts


def test_a_timeout_raises_and_leaves_no_waiter() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({"AT+CSQ": None}))
        channel = await open_channel(modem)
        with pytest.raises(AtTimeout):
            await channel.command("AT+CSQ", timeout_s=0.05)
        assert channel.waiters == 0
        await channel.close()
        modem.close()
    run(scenario)


def test_a_late_answer_after_a_timeout_is_not_the_next_commands_answer() -> None:
    # The device answers in order: its late +CSQ answer comes before its answer to whatever the
    # channel sends next, which is where chan_dongle-like drivers take one for the other.
    async def scenario() -> None:
        modem = ScriptedModem(answers({
            "AT+CSQ": (0.3, b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"),
            "AT": b"\r\nOK\r\n",
            "AT+CGMI": b"\r\nhuawei\r\n\r\nOK\r\n",
        }))
        channel = await open_channel(modem)
        with pytest.raises(AtTimeout):
            await channel.command("AT+CSQ", timeout_s=0.1)
        done = await channel.command("AT+CGMI")
        assert done.info == ("huawei",)
        assert channel.waiters == 0
        assert modem.received == ["AT+CSQ", "AT", "AT+CGMI"]
        assert channel.unsolicited.get_nowait() == UnsolicitedResult(line="+CSQ: 20,99")
        await channel.close()
        modem.close()
    run(scenario)


def test_a_late_error_answer_does_not_fail_the_next_command() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({
            "AT+COPS?": (0.2, b"\r\n+CME ERROR: 30\r\n"),
            "AT": b"\r\nOK\r\n",
            "AT+CIMI": b"\r\n250991234567890\r\n\r\nOK\r\n",
        }))
        channel = await open_channel(modem)
        with pytest.raises(AtTimeout):
            await channel.command("AT+COPS?", timeout_s=0.05)
        await asyncio.sleep(0.3)  # the late ERROR arrives before the next command
        assert (await channel.command("AT+CIMI")).info == ("250991234567890",)
        await channel.close()
        modem.close()
    run(scenario)


def test_repeated_timeouts_reset_the_modem_once_within_the_backoff() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(lambda line: None)  # a hung modem
        channel = await open_channel(modem)
        for _ in range(7):
            with pytest.raises(AtTimeout):
                await channel.command("AT+CSQ", timeout_s=0.02)
        assert modem.received.count(RESET_COMMAND) == 1
        assert channel.resets_sent == 1
        assert channel.waiters == 0
        await channel.close()
        modem.close()
    run(scenario)


# ------------------------------------------------------------------ the SMS prompt


def test_a_pdu_is_written_after_the_prompt() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({
            "AT+CMGS=23": b"\r\n> ",
            "0011000B919761\x1a": b"\r\n+CMGS: 7\r\n\r\nOK\r\n",
        }))
        channel = await open_channel(modem)
        done = await channel.command_with_pdu("AT+CMGS=23", b"0011000B919761")
        assert done.info == ("+CMGS: 7",)
        assert modem.received == ["AT+CMGS=23", "0011000B919761\x1a"]
        assert channel.waiters == 0
        await channel.close()
        modem.close()
    run(scenario)


def test_an_error_instead_of_the_prompt_writes_no_pdu() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({"AT+CMGS=23": b"\r\n+CMS ERROR: 304\r\n"}))
        channel = await open_channel(modem)
        with pytest.raises(AtCommandFailed) as failure:
            await channel.command_with_pdu("AT+CMGS=23", b"0011000B919761")
        assert failure.value.completion.error_code == 304
        await asyncio.sleep(0.05)
        assert modem.received == ["AT+CMGS=23"]
        assert channel.waiters == 0
        await channel.close()
        modem.close()
    run(scenario)


# ------------------------------------------------------------------ data mode


def test_bytes_after_connect_go_to_the_data_handler_until_data_mode_ends() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({"AT+VRX": b"\r\nCONNECT\r\n\x10R\x80\x81",
                                       "AT": b"\r\nOK\r\n"}))
        data = bytearray()
        channel = await open_channel(modem, on_data=data.extend)
        assert (await channel.command("AT+VRX")).final == "CONNECT"
        for _ in range(100):
            if len(data) == 4:
                break
            await asyncio.sleep(0.01)
        assert bytes(data) == b"\x10R\x80\x81"
        assert channel.data_mode
        channel.leave_data_mode()
        assert (await channel.command("AT")).ok
        await channel.close()
        modem.close()
    run(scenario)


# ------------------------------------------------------------------ the port vanishing


def test_a_port_unplugged_under_a_pending_command_fails_it_promptly() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({"AT+CSQ": None}))
        reasons: list[str] = []
        channel = await open_channel(modem, on_closed=reasons.append)
        pending = asyncio.create_task(channel.command("AT+CSQ", timeout_s=5.0))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        modem.unplug()
        with pytest.raises(AtPortClosed):
            await pending
        elapsed_s = time.monotonic() - started
        print(f"unplug → command failed in {elapsed_s * 1000:.1f} ms")
        assert elapsed_s < 1.0  # the timeout was 5 s: it did not wait for it
        assert channel.closed and channel.waiters == 0
        assert len(reasons) == 1
        with pytest.raises(AtPortClosed):
            await channel.command("AT")
    run(scenario)


def test_closing_the_channel_fails_a_waiting_command() -> None:
    async def scenario() -> None:
        modem = ScriptedModem(answers({"AT+CSQ": None}))
        channel = await open_channel(modem)
        pending = asyncio.create_task(channel.command("AT+CSQ", timeout_s=5.0))
        await asyncio.sleep(0.05)
        await channel.close()
        with pytest.raises(AtPortClosed):
            await pending
        assert channel.close_reason == "closed"
        modem.close()
    run(scenario)


# ------------------------------------------------------------------ reset policy, stepped by now


def test_the_reset_policy_asks_for_a_reset_after_n_consecutive_timeouts() -> None:
    policy = ResetPolicy(timeouts_before_reset=3)
    assert [policy.command_timed_out(now) for now in (0.0, 1.0, 2.0)] == [False, False, True]


def test_an_answer_clears_the_count_of_timeouts() -> None:
    policy = ResetPolicy(timeouts_before_reset=3)
    policy.command_timed_out(0.0)
    policy.command_timed_out(1.0)
    policy.command_answered()
    assert not policy.command_timed_out(2.0)
    assert not policy.command_timed_out(3.0)
    assert policy.command_timed_out(4.0)


def test_resets_back_off_from_10_s_doubling_to_10_minutes() -> None:
    policy = ResetPolicy(timeouts_before_reset=1, first_delay_s=10.0, max_delay_s=600.0)
    resets: list[float] = []
    now = 0.0
    while now < 3600.0:  # a modem that never answers, a timeout every second, for an hour
        if policy.command_timed_out(now):
            resets.append(now)
        now += 1.0
    gaps = [b - a for a, b in zip(resets, resets[1:], strict=False)]
    assert gaps[:7] == [10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0]
    assert all(gap == 600.0 for gap in gaps[6:])


def test_the_backoff_starts_over_after_a_healthy_spell() -> None:
    policy = ResetPolicy(timeouts_before_reset=1, first_delay_s=10.0, max_delay_s=600.0)
    assert policy.command_timed_out(0.0)
    assert policy.command_timed_out(10.0)
    assert policy.delay_s == 20.0
    assert policy.command_timed_out(10.0 + 20.0 + 600.0)
    assert policy.delay_s == 10.0


def test_no_reset_inside_the_backoff_window() -> None:
    policy = ResetPolicy(timeouts_before_reset=1, first_delay_s=10.0)
    assert policy.command_timed_out(0.0)
    assert not any(policy.command_timed_out(float(now)) for now in range(1, 10))
    assert policy.command_timed_out(10.0)
