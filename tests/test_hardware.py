"""The box's LEDs and power-fail input in the daemon (firmware/hardware.py): the gateway's state
as LED patterns, on gpiozero's mock pins; the UPS pin starting the on-battery routine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from firmware.hardware import BoxHardware, box_state, signal_bars
from firmware.store.config import Hardware
from hal.leds import GSM_NO_SIM, GSM_REGISTERED, PROVIDER_FAILING, PROVIDER_REGISTERED

PINS = {"power": 17, "internet": 27, "provider": 22, "gsm": 23, "calls": 24}


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    pins = MockFactory(pin_class=MockPWMPin)
    yield pins
    pins.reset()


def status(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "internet": {"state": "up"},
        "trunks": [{"name": "provider", "state": "registered"}],
        "lines": [{"name": "mts", "kind": "gsm", "state": "up", "signal_dbm": -71,
                   "sim": "ready", "imei": "861234567890127"}],
        "calls": [],
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(("dbm", "bars"), [(None, 0), (-51, 4), (-73, 4), (-80, 3), (-90, 2),
                                           (-109, 1)])
def test_signal_bars_follow_the_dbm_a_phone_would_show(dbm: int | None, bars: int) -> None:
    assert signal_bars(dbm) == bars


def test_the_box_state_comes_from_the_status() -> None:
    state = box_state(status(calls=[{"state": "answered"}, {"state": "ringing"}]),
                      on_battery=False)
    assert (state.internet_up, state.provider, state.gsm, state.gsm_signal_bars,
            state.calls_up, state.calls_ringing) == (True, PROVIDER_REGISTERED,
                                                     GSM_REGISTERED, 4, 1, 1)


def test_a_failing_registration_and_a_missing_sim_show_as_such() -> None:
    state = box_state(status(
        trunks=[{"name": "provider", "state": "failed"}],
        lines=[{"name": "mts", "kind": "gsm", "state": "down", "sim": "absent",
                "imei": "861234567890127"}], internet={"state": "down"}), on_battery=False)
    assert (state.internet_up, state.provider, state.gsm) == (False, PROVIDER_FAILING,
                                                              GSM_NO_SIM)


def test_the_leds_show_the_state_and_change_with_it(factory: MockFactory) -> None:
    current = status()
    loop = asyncio.new_event_loop()
    try:
        box = BoxHardware(loop, Hardware(leds=PINS), status=lambda: current,
                          flush_database=lambda: None, shutdown=lambda: None, factory=factory)
        box.refresh()
        assert box.states() == {"power": "on", "internet": "on", "provider": "on",
                                "gsm": "blink", "calls": "off"}
        current = status(internet={"state": "down"}, calls=[{"state": "answered"}])
        box.refresh()
        assert box.states()["internet"] == "off" and box.states()["calls"] == "on"
        assert not factory.pin(27).state and factory.pin(24).state == 1
        box.close()
    finally:
        loop.close()


def test_mains_lost_flushes_the_database_blinks_power_and_shuts_down_on_time(
    factory: MockFactory,
) -> None:
    flushed: list[bool] = []
    stopped: list[bool] = []
    loop = asyncio.new_event_loop()
    try:
        box = BoxHardware(loop, Hardware(leds=PINS, power_fail_pin=5, shutdown_after_s=60),
                          status=status, flush_database=lambda: flushed.append(True),
                          shutdown=lambda: stopped.append(True), factory=factory)
        factory.pin(5).drive_low()  # the UPS pulls the pin low: the mains failed

        async def settle() -> None:
            await asyncio.sleep(0.05)
        loop.run_until_complete(settle())
        assert flushed == [True] and box.states()["power"] == "blink"
        assert not stopped
        box.handle_timer(loop.time() + 61)  # an hour on battery is not waited for here
        assert stopped == [True]
        box.close()
    finally:
        loop.close()


def test_mains_back_before_the_deadline_cancels_the_shutdown(factory: MockFactory) -> None:
    stopped: list[bool] = []
    loop = asyncio.new_event_loop()
    try:
        box = BoxHardware(loop, Hardware(leds=PINS, power_fail_pin=5, shutdown_after_s=60),
                          status=status, flush_database=lambda: None,
                          shutdown=lambda: stopped.append(True), factory=factory)
        box.mains_changed(False)
        box.mains_changed(True)
        box.handle_timer(loop.time() + 61)
        assert not stopped and box.states()["power"] == "on"
        box.close()
    finally:
        loop.close()
