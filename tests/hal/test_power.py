"""Mains power: the policy with `now` stepped, and the power-fail pin driven on mock pins.

The pin is a gpiozero mock pin from a `MockFactory(pin_class=MockPWMPin)` made per test,
driven with `drive_low()` / `drive_high()` as the UPS HAT would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from hal.power import (
    POWER_FAIL_DEBOUNCE_S,
    DatabaseFlushRequested,
    PowerEvent,
    PowerFailInput,
    PowerLost,
    PowerPolicy,
    PowerRestored,
    ShutdownRequested,
)

START = 500.0
SHUTDOWN_AFTER_S = 300.0
PIN = 4


def drain(policy: PowerPolicy) -> list[PowerEvent]:
    events = []
    while (event := policy.next_event()) is not None:
        events.append(event)
    return events


@pytest.fixture
def policy() -> PowerPolicy:
    return PowerPolicy(shutdown_after_s=SHUTDOWN_AFTER_S)


@pytest.fixture
def factory() -> Iterator[Any]:
    mock = MockFactory(pin_class=MockPWMPin)
    yield mock
    mock.reset()


# --- the policy ----------------------------------------------------------------------------------

def test_losing_the_mains_flushes_the_database_and_starts_the_countdown(
        policy: PowerPolicy) -> None:
    policy.mains_lost(START)
    assert drain(policy) == [PowerLost(at=START, shutdown_at=START + SHUTDOWN_AFTER_S),
                             DatabaseFlushRequested(at=START)]
    assert policy.on_battery
    assert policy.get_timer() == START + SHUTDOWN_AFTER_S


def test_nothing_happens_before_the_deadline(policy: PowerPolicy) -> None:
    policy.mains_lost(START)
    drain(policy)
    policy.handle_timer(START + SHUTDOWN_AFTER_S - 0.001)
    assert drain(policy) == []


def test_a_shutdown_is_requested_at_the_deadline_on_battery(policy: PowerPolicy) -> None:
    policy.mains_lost(START)
    drain(policy)
    policy.handle_timer(START + SHUTDOWN_AFTER_S)
    assert drain(policy) == [ShutdownRequested(at=START + SHUTDOWN_AFTER_S,
                                               on_battery_s=SHUTDOWN_AFTER_S)]
    assert policy.get_timer() is None


def test_the_mains_back_before_the_deadline_cancel_the_shutdown(policy: PowerPolicy) -> None:
    policy.mains_lost(START)
    drain(policy)
    policy.mains_back(START + 42)
    assert drain(policy) == [PowerRestored(at=START + 42, on_battery_s=42.0)]
    assert policy.get_timer() is None
    policy.handle_timer(START + SHUTDOWN_AFTER_S)
    assert drain(policy) == []


def test_a_second_loss_starts_a_fresh_countdown(policy: PowerPolicy) -> None:
    policy.mains_lost(START)
    policy.mains_back(START + 10)
    policy.mains_lost(START + 100)
    assert policy.get_timer() == START + 100 + SHUTDOWN_AFTER_S


def test_the_mains_back_after_the_shutdown_request_do_not_stop_it(policy: PowerPolicy) -> None:
    policy.mains_lost(START)
    policy.handle_timer(START + SHUTDOWN_AFTER_S)
    drain(policy)
    policy.mains_back(START + SHUTDOWN_AFTER_S + 1)
    assert drain(policy) == []
    assert policy.shutdown_requested


def test_a_repeated_loss_report_changes_nothing(policy: PowerPolicy) -> None:
    policy.mains_lost(START)
    drain(policy)
    policy.mains_lost(START + 5)
    assert drain(policy) == []
    assert policy.get_timer() == START + SHUTDOWN_AFTER_S


def test_on_the_mains_there_is_no_timer(policy: PowerPolicy) -> None:
    assert policy.get_timer() is None
    assert not policy.on_battery


# --- the pin -------------------------------------------------------------------------------------

def test_an_active_low_input_reports_the_mains_lost_when_driven_low(factory: Any) -> None:
    seen: list[bool] = []
    power = PowerFailInput(PIN, factory=factory, on_change=seen.append, debounce_s=None)
    assert power.mains_ok
    factory.pin(PIN).drive_low()
    assert (seen, power.mains_ok) == ([False], False)
    power.close()


def test_an_active_low_input_reports_the_mains_back_when_driven_high(factory: Any) -> None:
    seen: list[bool] = []
    power = PowerFailInput(PIN, factory=factory, on_change=seen.append, debounce_s=None)
    factory.pin(PIN).drive_low()
    factory.pin(PIN).drive_high()
    assert seen == [False, True]
    power.close()


def test_an_active_high_input_reports_the_mains_lost_when_driven_high(factory: Any) -> None:
    seen: list[bool] = []
    power = PowerFailInput(PIN, factory=factory, on_change=seen.append, active_low=False,
                           debounce_s=None)
    assert power.mains_ok
    factory.pin(PIN).drive_high()
    assert seen == [False]
    power.close()


def test_the_debounce_time_reaches_the_pin(factory: Any) -> None:
    # The pin driver (lgpio, RPi.GPIO) debounces; gpiozero's mock pin keeps the setting but
    # does not emulate it, so what is checked here is that the setting arrives.
    power = PowerFailInput(PIN, factory=factory, on_change=lambda mains_ok: None)
    assert factory.pin(PIN).bounce == POWER_FAIL_DEBOUNCE_S
    power.close()


def test_with_a_loop_the_report_arrives_on_the_loop(factory: Any) -> None:
    async def scenario() -> list[bool]:
        seen: list[bool] = []
        arrived = asyncio.Event()

        def on_change(mains_ok: bool) -> None:
            seen.append(mains_ok)
            arrived.set()

        power = PowerFailInput(PIN, factory=factory, on_change=on_change, debounce_s=None,
                               loop=asyncio.get_running_loop())
        factory.pin(PIN).drive_low()
        assert seen == []  # not called from the driving thread
        await asyncio.wait_for(arrived.wait(), 2.0)
        power.close()
        return seen

    assert asyncio.run(scenario()) == [False]


def test_the_pin_drives_the_policy_to_a_shutdown(factory: Any, policy: PowerPolicy) -> None:
    clock = [START]

    def on_change(mains_ok: bool) -> None:
        if mains_ok:
            policy.mains_back(clock[0])
        else:
            policy.mains_lost(clock[0])

    power = PowerFailInput(PIN, factory=factory, on_change=on_change, debounce_s=None)
    factory.pin(PIN).drive_low()
    clock[0] = START + SHUTDOWN_AFTER_S
    policy.handle_timer(clock[0])
    assert [type(event) for event in drain(policy)] == [
        PowerLost, DatabaseFlushRequested, ShutdownRequested]
    power.close()
