"""Mains power: the UPS HAT's power-fail input, and what the box does on battery.

`PowerFailInput` watches one GPIO pin through gpiozero (`DigitalInputDevice`, the pin factory
passed in, the active level from `hardware.power_fail_active_low`, a short debounce for the
contact's bounce) and reports "mains lost" / "mains back". `PowerPolicy` is pure, with `now`
passed in: on a loss it asks for the database to be written out, starts the countdown to
`shutdown_after_s` and says so; the mains back before the deadline cancel it; at the deadline it
asks for a clean shutdown. Keeping the GSM line up and blinking the power LED follow from the
state (`on_battery`) the daemon gives the line drivers and `hal/leds.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpiozero import DigitalInputDevice

LOGGER = logging.getLogger(__name__)

# A relay or opto output bounces for a few milliseconds; the UPS's own signal is clean. Longer
# mains dips are the policy's business, not the debounce's.
POWER_FAIL_DEBOUNCE_S = 0.05


@dataclass(frozen=True, kw_only=True)
class PowerLost:
    """The box runs on battery since `at`; it shuts down at `shutdown_at` unless the mains
    return first."""

    at: float
    shutdown_at: float


@dataclass(frozen=True, kw_only=True)
class DatabaseFlushRequested:
    """Write the database out now (a WAL checkpoint): the battery may not last."""

    at: float


@dataclass(frozen=True, kw_only=True)
class PowerRestored:
    at: float
    on_battery_s: float


@dataclass(frozen=True, kw_only=True)
class ShutdownRequested:
    """Shut the box down cleanly: it has been on battery for `on_battery_s`."""

    at: float
    on_battery_s: float


PowerEvent = PowerLost | DatabaseFlushRequested | PowerRestored | ShutdownRequested


class PowerPolicy:
    """What to do about the mains, sans-IO: facts in (`mains_lost`, `mains_back`,
    `handle_timer`), events out (`next_event`), `get_timer()` the shutdown deadline."""

    def __init__(self, *, shutdown_after_s: float) -> None:
        # From `hardware.shutdown_after_s` (firmware/store/config.py holds the default).
        self.shutdown_after_s = shutdown_after_s
        self._battery_since: float | None = None
        self._shutdown_requested = False
        self._events: deque[PowerEvent] = deque()

    @property
    def on_battery(self) -> bool:
        return self._battery_since is not None

    @property
    def shutdown_requested(self) -> bool:
        return self._shutdown_requested

    def next_event(self) -> PowerEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The shutdown deadline while on battery, else None."""
        if self._battery_since is None or self._shutdown_requested:
            return None
        return self._battery_since + self.shutdown_after_s

    def mains_lost(self, now: float) -> None:
        if self._battery_since is not None or self._shutdown_requested:
            return
        self._battery_since = now
        shutdown_at = now + self.shutdown_after_s
        LOGGER.warning("mains power lost: on battery, clean shutdown in %.0f s unless it "
                       "returns", self.shutdown_after_s)
        self._events.append(PowerLost(at=now, shutdown_at=shutdown_at))
        self._events.append(DatabaseFlushRequested(at=now))

    def mains_back(self, now: float) -> None:
        if self._battery_since is None:
            return
        if self._shutdown_requested:
            # Too late: the shutdown is under way, and the battery may be nearly empty.
            LOGGER.info("mains power back, but the shutdown goes on")
            return
        on_battery_s = now - self._battery_since
        self._battery_since = None
        LOGGER.info("mains power back after %.1f s on battery: shutdown cancelled", on_battery_s)
        self._events.append(PowerRestored(at=now, on_battery_s=on_battery_s))

    def handle_timer(self, now: float) -> None:
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        assert self._battery_since is not None
        self._shutdown_requested = True
        on_battery_s = now - self._battery_since
        LOGGER.warning("on battery for %.0f s: shutting down cleanly", on_battery_s)
        self._events.append(ShutdownRequested(at=now, on_battery_s=on_battery_s))


class PowerFailInput:
    """The power-fail pin: `on_change(mains_ok)` on every change, and `mains_ok` now.

    gpiozero calls back from its own thread; with `loop` given the callback runs on that event
    loop instead (`call_soon_threadsafe`), which is where the daemon's policy lives.
    """

    def __init__(
        self, pin: int, *, factory: Any, on_change: Callable[[bool], None],
        active_low: bool = True, debounce_s: float | None = POWER_FAIL_DEBOUNCE_S,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._on_change = on_change
        self._loop = loop
        # Pulled towards the idle level, so an unplugged HAT reads "mains fine" rather than
        # shutting the box down: pull-up for an active-low signal, pull-down otherwise.
        self._device = DigitalInputDevice(
            pin, pull_up=active_low, bounce_time=debounce_s, pin_factory=factory)
        self._device.when_activated = lambda: self._report(False)
        self._device.when_deactivated = lambda: self._report(True)

    @property
    def mains_ok(self) -> bool:
        return not self._device.is_active

    def close(self) -> None:
        self._device.close()

    def _report(self, mains_ok: bool) -> None:
        if self._loop is None:
            self._on_change(mains_ok)
        else:
            self._loop.call_soon_threadsafe(self._on_change, mains_ok)
