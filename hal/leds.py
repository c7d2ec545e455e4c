"""The box's status LEDs: what each one shows (`LedPlan`, pure) and driving them (`Leds`).

`LedPlan.for_state(BoxState)` decides each LED's pattern from the box's state — power, internet,
provider registration, the GSM line's signal, calls — without touching a pin, so the meaning of
the lights is tested as a table. `Leds` drives gpiozero `LED` devices on the pins of the
`hardware:` configuration section with a pin factory passed in (STYLE.md: never gpiozero's
class-level default), and changes an LED only when its pattern changes, so a blink keeps its
rhythm across the daemon's housekeeping ticks. On a machine without GPIO (a PC) gpiozero's
`MockFactory` stands in and the log says so. `leds_test` lights each LED in turn
(`linebox hw leds-test`).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gpiozero import LED
from gpiozero.pins.mock import MockFactory, MockPWMPin

from firmware.store.config import LED_NAMES

LOGGER = logging.getLogger(__name__)

ON = "on"
OFF = "off"
BLINK = "blink"
# Rhythms, chosen to be told apart across a room: a slow 1 s blink (on battery, a failing
# registration) is "attention"; a fast 0.1 s flicker (no SIM, no network) is "broken"; the GSM
# signal is counted in short flashes per 3 s cycle, as on many routers' signal LEDs.
SLOW_BLINK_S = 1.0
FAST_BLINK_S = 0.1
FLASH_S = 0.2  # one flash (and the gap after it) of the signal count
SIGNAL_CYCLE_S = 3.0
SIGNAL_BARS_MAX = 4
RING_BLINK_S = 0.5
LEDS_TEST_STEP_S = 0.5

GSM_NONE = "none"  # no GSM line, or its port/modem is down
GSM_NO_SIM = "no_sim"
GSM_NO_NETWORK = "no_network"  # searching, denied, not registered
GSM_REGISTERED = "registered"
PROVIDER_NONE = "none"  # no SIP trunk registers
PROVIDER_FAILING = "failing"
PROVIDER_REGISTERED = "registered"


@dataclass(frozen=True, kw_only=True)
class Pattern:
    """One LED's behaviour: steady on, off, or blinking. A blink is `flashes` flashes of `on_s`
    with `off_s` between them, then `pause_s` dark; `flashes=None` blinks without pause."""

    state: str
    on_s: float = 0.0
    off_s: float = 0.0
    flashes: int | None = None
    pause_s: float = 0.0

    @classmethod
    def blink(cls, on_s: float, off_s: float | None = None) -> Pattern:
        return cls(state=BLINK, on_s=on_s, off_s=on_s if off_s is None else off_s)

    def slots(self) -> tuple[int, ...]:
        """A flash group as on/off values of FLASH_S each (the GSM signal count)."""
        assert self.flashes is not None
        pause_slots = round(self.pause_s / FLASH_S)
        return (1, 0) * self.flashes + (0,) * pause_slots


STEADY_ON = Pattern(state=ON)
DARK = Pattern(state=OFF)


def signal_pattern(bars: int) -> Pattern:
    """1 to 4 short flashes every SIGNAL_CYCLE_S by signal bars (0 bars shows as 1)."""
    flashes = max(1, min(SIGNAL_BARS_MAX, bars))
    return Pattern(state=BLINK, on_s=FLASH_S, off_s=FLASH_S, flashes=flashes,
                   pause_s=SIGNAL_CYCLE_S - 2 * FLASH_S * flashes)


@dataclass(frozen=True, kw_only=True)
class BoxState:
    """What the LEDs show, as the daemon knows it."""

    on_battery: bool = False
    internet_up: bool = True
    provider: str = PROVIDER_NONE
    gsm: str = GSM_NONE
    gsm_signal_bars: int = 0  # 0..4, from +CSQ (hal/modem)
    calls_up: int = 0
    calls_ringing: int = 0


@dataclass(frozen=True, kw_only=True)
class LedPlan:
    """Each LED's pattern. The table in docs/config.md (`hardware`) says the same in words."""

    power: Pattern = STEADY_ON
    internet: Pattern = DARK
    provider: Pattern = DARK
    gsm: Pattern = DARK
    calls: Pattern = DARK

    @classmethod
    def for_state(cls, state: BoxState) -> LedPlan:
        gsm = {
            GSM_NONE: DARK,
            GSM_NO_SIM: Pattern.blink(FAST_BLINK_S),
            GSM_NO_NETWORK: Pattern.blink(FAST_BLINK_S),
            GSM_REGISTERED: signal_pattern(state.gsm_signal_bars),
        }[state.gsm]
        provider = {
            PROVIDER_NONE: DARK,
            PROVIDER_FAILING: Pattern.blink(SLOW_BLINK_S),
            PROVIDER_REGISTERED: STEADY_ON,
        }[state.provider]
        if state.calls_up:
            calls = STEADY_ON
        elif state.calls_ringing:
            calls = Pattern.blink(RING_BLINK_S)
        else:
            calls = DARK
        return cls(
            power=Pattern.blink(SLOW_BLINK_S) if state.on_battery else STEADY_ON,
            internet=STEADY_ON if state.internet_up else DARK,
            provider=provider,
            gsm=gsm,
            calls=calls,
        )

    def pattern(self, name: str) -> Pattern:
        pattern: Pattern = getattr(self, name)
        return pattern


def pin_factory(gpio: str) -> Any:
    """The gpiozero pin factory for `hardware.gpio`: the board's own (lgpio, then RPi.GPIO)
    under "auto" where one works, otherwise mock pins — logged, so a box whose LEDs stay dark
    says why."""
    if gpio == "auto":
        for module, name in (("gpiozero.pins.lgpio", "LGPIOFactory"),
                             ("gpiozero.pins.rpigpio", "RPiGPIOFactory")):
            try:
                factory_class = getattr(__import__(module, fromlist=[name]), name)
                return factory_class()
            except Exception as exc:  # ImportError, or no GPIO chip on this machine
                LOGGER.debug("%s unusable: %s", name, exc)
        LOGGER.warning("no GPIO on this machine: LEDs and the power-fail input use mock pins")
    else:
        LOGGER.info("hardware.gpio is mock: LEDs and the power-fail input use mock pins")
    return MockFactory(pin_class=MockPWMPin)


class Leds:
    """The LEDs of `pins` (name → BCM pin), driven through `factory`."""

    def __init__(self, pins: Mapping[str, int], *, factory: Any) -> None:
        unknown = set(pins) - set(LED_NAMES)
        if unknown:
            raise ValueError(f"unknown LEDs: {', '.join(sorted(unknown))}")
        self.pins = dict(pins)
        self._leds = {name: LED(pin, pin_factory=factory) for name, pin in pins.items()}
        self._patterns: dict[str, Pattern] = {name: DARK for name in pins}

    def apply(self, plan: LedPlan) -> None:
        """Show `plan`; an LED whose pattern is unchanged is left alone (its blink goes on)."""
        for name, led in self._leds.items():
            pattern = plan.pattern(name)
            if pattern != self._patterns[name]:
                self._show(led, pattern)
                self._patterns[name] = pattern

    def states(self) -> dict[str, str]:
        """Each LED's name → on / off / blink (`linebox status --json` `leds`)."""
        return {name: pattern.state for name, pattern in self._patterns.items()}

    def is_lit(self, name: str) -> bool:
        """Whether the LED's pin is driven on right now (read back from the pin)."""
        return bool(self._leds[name].is_lit)

    def close(self) -> None:
        for led in self._leds.values():
            led.close()

    @staticmethod
    def _show(led: Any, pattern: Pattern) -> None:
        led.source = None  # a running flash group stops before anything else is shown
        if pattern.state == ON:
            led.on()
        elif pattern.state == OFF:
            led.off()
        elif pattern.flashes is None:
            led.blink(on_time=pattern.on_s, off_time=pattern.off_s)
        else:
            # gpiozero's blink has no pause between groups: feed the group's slots instead.
            led.off()
            led.source_delay = FLASH_S
            led.source = itertools.cycle(pattern.slots())


def leds_test(
    leds: Leds, *, step_s: float = LEDS_TEST_STEP_S,
    sleep: Callable[[float], None] = time.sleep,
    on_lit: Callable[[str], None] = lambda name: None,
) -> list[str]:
    """Light each LED alone for `step_s`, in LED_NAMES order, and leave all dark; the names lit
    in turn. `on_lit(name)` is called while each one is lit."""
    lit = []
    everything_dark = LedPlan(power=DARK)
    leds.apply(everything_dark)
    for name in LED_NAMES:
        if name not in leds.pins:
            continue
        leds.apply(LedPlan(**{"power": DARK, name: STEADY_ON}))
        lit.append(name)
        on_lit(name)
        sleep(step_s)
        leds.apply(everything_dark)
    return lit
