"""The status LEDs: what each shows for the box's state (pure), and the pins gpiozero drives.

Pins are gpiozero mock pins from a `MockFactory(pin_class=MockPWMPin)` made per test and passed
in explicitly; their state histories (`pin.states`) are what is asserted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from firmware.cli import main
from firmware.store import Store, parse_config
from hal.leds import (
    BLINK,
    DARK,
    FAST_BLINK_S,
    FLASH_S,
    GSM_NO_NETWORK,
    GSM_NO_SIM,
    GSM_NONE,
    GSM_REGISTERED,
    PROVIDER_FAILING,
    PROVIDER_NONE,
    PROVIDER_REGISTERED,
    SIGNAL_CYCLE_S,
    SLOW_BLINK_S,
    STEADY_ON,
    BoxState,
    LedPlan,
    Leds,
    Pattern,
    leds_test,
    pin_factory,
)

PINS = {"power": 17, "internet": 27, "provider": 22, "gsm": 23, "calls": 24}
TOGGLES_WAIT_S = 2.0  # a blinking pin must have toggled a few times within this long


@pytest.fixture
def factory() -> Iterator[Any]:
    mock = MockFactory(pin_class=MockPWMPin)
    yield mock
    mock.reset()


@pytest.fixture
def leds(factory: Any) -> Iterator[Leds]:
    box = Leds(PINS, factory=factory)
    yield box
    box.close()


def values(factory: Any, pin: int) -> list[float]:
    return [float(state.state) for state in factory.pin(pin).states]


def wait_for_toggles(factory: Any, pin: int, count: int) -> list[float]:
    deadline = time.monotonic() + TOGGLES_WAIT_S
    while len(factory.pin(pin).states) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return values(factory, pin)


# --- the plan (pure) -----------------------------------------------------------------------------

def test_power_is_steady_on_the_mains() -> None:
    assert LedPlan.for_state(BoxState()).power == STEADY_ON


def test_power_blinks_slowly_on_battery() -> None:
    assert LedPlan.for_state(BoxState(on_battery=True)).power == Pattern.blink(SLOW_BLINK_S)


def test_internet_is_on_while_up_and_off_while_down() -> None:
    assert LedPlan.for_state(BoxState(internet_up=True)).internet == STEADY_ON
    assert LedPlan.for_state(BoxState(internet_up=False)).internet == DARK


@pytest.mark.parametrize(("provider", "pattern"), [
    (PROVIDER_REGISTERED, STEADY_ON),
    (PROVIDER_FAILING, Pattern.blink(SLOW_BLINK_S)),
    (PROVIDER_NONE, DARK),
])
def test_provider_shows_its_registration(provider: str, pattern: Pattern) -> None:
    assert LedPlan.for_state(BoxState(provider=provider)).provider == pattern


@pytest.mark.parametrize("bars", [1, 2, 3, 4])
def test_gsm_flashes_once_per_signal_bar_every_cycle(bars: int) -> None:
    pattern = LedPlan.for_state(BoxState(gsm=GSM_REGISTERED, gsm_signal_bars=bars)).gsm
    assert pattern.slots().count(1) == bars
    assert len(pattern.slots()) * FLASH_S == pytest.approx(SIGNAL_CYCLE_S)


def test_gsm_with_no_signal_still_flashes_once_to_show_it_is_registered() -> None:
    pattern = LedPlan.for_state(BoxState(gsm=GSM_REGISTERED, gsm_signal_bars=0)).gsm
    assert pattern.slots().count(1) == 1


@pytest.mark.parametrize("gsm", [GSM_NO_SIM, GSM_NO_NETWORK])
def test_gsm_without_sim_or_network_blinks_fast(gsm: str) -> None:
    assert LedPlan.for_state(BoxState(gsm=gsm)).gsm == Pattern.blink(FAST_BLINK_S)


def test_gsm_line_down_is_dark() -> None:
    assert LedPlan.for_state(BoxState(gsm=GSM_NONE)).gsm == DARK


def test_calls_on_while_a_call_is_up_even_with_another_ringing() -> None:
    assert LedPlan.for_state(BoxState(calls_up=1, calls_ringing=2)).calls == STEADY_ON


def test_calls_blink_while_ringing() -> None:
    assert LedPlan.for_state(BoxState(calls_ringing=1)).calls.state == BLINK


# --- the pins ------------------------------------------------------------------------------------

def test_apply_lights_a_steady_led(factory: Any, leds: Leds) -> None:
    leds.apply(LedPlan.for_state(BoxState()))
    factory.pin(PINS["power"]).assert_states([False, True])


def test_apply_leaves_a_dark_led_untouched(factory: Any, leds: Leds) -> None:
    leds.apply(LedPlan.for_state(BoxState(internet_up=False)))
    factory.pin(PINS["internet"]).assert_states([False])


def test_applying_the_same_plan_again_changes_no_pin(factory: Any, leds: Leds) -> None:
    plan = LedPlan.for_state(BoxState(provider=PROVIDER_REGISTERED))
    leds.apply(plan)
    leds.apply(plan)
    factory.pin(PINS["provider"]).assert_states([False, True])


def test_a_led_turned_off_goes_dark(factory: Any, leds: Leds) -> None:
    leds.apply(LedPlan.for_state(BoxState(calls_up=1)))
    leds.apply(LedPlan.for_state(BoxState()))
    factory.pin(PINS["calls"]).assert_states([False, True, False])


def test_a_blinking_led_toggles(factory: Any, leds: Leds) -> None:
    leds.apply(LedPlan(gsm=Pattern.blink(0.01)))
    history = wait_for_toggles(factory, PINS["gsm"], 5)
    assert history[:5] == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_a_flash_group_shows_its_flashes_then_a_pause(factory: Any, leds: Leds) -> None:
    leds.apply(LedPlan.for_state(BoxState(gsm=GSM_REGISTERED, gsm_signal_bars=2)))
    # gpiozero writes each slot's value, changed or not; the pin keeps the changes only.
    history = wait_for_toggles(factory, PINS["gsm"], 5)
    assert history[:5] == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_states_say_on_off_or_blink_per_led(leds: Leds) -> None:
    leds.apply(LedPlan.for_state(BoxState(on_battery=True, internet_up=False,
                                          provider=PROVIDER_REGISTERED, calls_ringing=1)))
    assert leds.states() == {"power": "blink", "internet": "off", "provider": "on",
                             "gsm": "off", "calls": "blink"}


def test_an_led_without_a_pin_is_not_driven(factory: Any) -> None:
    only_power = Leds({"power": 5}, factory=factory)
    only_power.apply(LedPlan.for_state(BoxState(calls_up=1)))
    assert only_power.states() == {"power": "on"}
    only_power.close()


def test_an_unknown_led_name_is_refused(factory: Any) -> None:
    with pytest.raises(ValueError, match="wifi"):
        Leds({"wifi": 5}, factory=factory)


def test_leds_test_lights_each_led_alone_in_turn(factory: Any, leds: Leds) -> None:
    seen: list[dict[str, float]] = []

    def look(_: float) -> None:
        seen.append({name: float(factory.pin(pin).state) for name, pin in PINS.items()})

    assert leds_test(leds, sleep=look) == ["power", "internet", "provider", "gsm", "calls"]
    for name, lit in zip(PINS, seen, strict=True):
        assert lit == {other: 1.0 if other == name else 0.0 for other in PINS}
    assert set(leds.states().values()) == {"off"}


def test_mock_gpio_is_used_and_logged_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hal.leds"):
        factory = pin_factory("mock")
    assert isinstance(factory, MockFactory)
    assert "mock pins" in caplog.text
    factory.reset()


def test_without_gpio_auto_falls_back_to_mock_pins_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    # This machine has neither lgpio nor RPi.GPIO: exactly the PC case.
    with caplog.at_level(logging.WARNING, logger="hal.leds"):
        factory = pin_factory("auto")
    assert isinstance(factory, MockFactory)
    assert "no GPIO on this machine" in caplog.text
    factory.reset()


def test_the_leds_test_command_lights_the_configured_leds_on_mock_pins(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "box.db"
    with Store.open(db) as store:
        store.replace_config(parse_config({"hardware": {"leds": {"power": 17, "calls": 24}}}))
    assert main(["hw", "leds-test", "--db", str(db), "--gpio", "mock", "--step-s", "0.01"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "lit power (GPIO 17): pin on", "lit calls (GPIO 24): pin on"]


def test_the_leds_test_command_without_configured_leds_says_so(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hw", "leds-test", "--db", str(tmp_path / "none.db")]) == 1
    assert "no LEDs configured" in capsys.readouterr().err
