"""The box's own hardware in the daemon: the LEDs follow the gateway's state, and the UPS's
power-fail input starts the on-battery routine (hal/leds.py, hal/power.py).

Every `REFRESH_INTERVAL_S` the LED plan is computed from what `linebox status` shows — the
internet, the provider's registration, the GSM line (its signal as 1–4 flashes, fast blinking
with no SIM or no network), calls up or ringing — and applied (only LEDs whose pattern changed
are touched). On mains loss the daemon logs it, writes the database out, blinks the power LED,
keeps every line (the GSM modem too) working, and stops cleanly after
`hardware.shutdown_after_s` on battery unless the mains come back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from hal.leds import (
    GSM_NO_NETWORK,
    GSM_NO_SIM,
    GSM_NONE,
    GSM_REGISTERED,
    PROVIDER_FAILING,
    PROVIDER_NONE,
    PROVIDER_REGISTERED,
    BoxState,
    LedPlan,
    Leds,
    pin_factory,
)
from hal.power import (
    DatabaseFlushRequested,
    PowerFailInput,
    PowerLost,
    PowerPolicy,
    PowerRestored,
    ShutdownRequested,
)

from .store.config import Hardware

LOGGER = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 0.5
# Signal bars from dBm (27.007 +CSQ: -113 + 2·rssi): what phones show, roughly.
BARS_DBM = ((-73, 4), (-83, 3), (-93, 2))


def signal_bars(dbm: int | None) -> int:
    if dbm is None:
        return 0
    return next((bars for floor, bars in BARS_DBM if dbm >= floor), 1)


def box_state(status: Mapping[str, Any], *, on_battery: bool) -> BoxState:
    """What the LEDs show, from the gateway's status (firmware/core/status.py)."""
    internet = status.get("internet") or {}
    trunks = [t for t in status.get("trunks", []) if "state" in t]
    registering = [t for t in trunks if t.get("state") not in ("static", "unresolved")]
    if not registering:
        provider = PROVIDER_NONE
    elif any(t.get("state") == "registered" for t in registering):
        provider = PROVIDER_REGISTERED
    else:
        provider = PROVIDER_FAILING
    gsm_lines = [line for line in status.get("lines", []) if line.get("kind") == "gsm"]
    gsm, bars = GSM_NONE, 0
    if gsm_lines:
        line = gsm_lines[0]
        if line.get("state") == "up":
            gsm, bars = GSM_REGISTERED, signal_bars(line.get("signal_dbm"))
        elif line.get("sim") in ("absent", "pin") and line.get("imei"):
            gsm = GSM_NO_SIM
        elif line.get("imei"):
            gsm = GSM_NO_NETWORK
    calls = status.get("calls", [])
    return BoxState(
        on_battery=on_battery,
        internet_up=internet.get("state", "up") == "up",
        provider=provider, gsm=gsm, gsm_signal_bars=bars,
        calls_up=sum(1 for c in calls if c.get("state") == "answered"),
        calls_ringing=sum(1 for c in calls if c.get("state") in ("ringing", "queued")),
    )


class BoxHardware:
    def __init__(self, loop: asyncio.AbstractEventLoop, hardware: Hardware, *,
                 status: Callable[[], Mapping[str, Any]], flush_database: Callable[[], None],
                 shutdown: Callable[[], None], factory: Any = None) -> None:
        self.loop = loop
        self.status = status
        self.flush_database = flush_database
        self.shutdown = shutdown
        self.factory = factory if factory is not None else pin_factory(hardware.gpio)
        self.leds = Leds(hardware.leds, factory=self.factory)
        self.policy = PowerPolicy(shutdown_after_s=hardware.shutdown_after_s)
        self.power_input: PowerFailInput | None = None
        self._power_timer: asyncio.TimerHandle | None = None
        if hardware.power_fail_pin is not None:
            self.power_input = PowerFailInput(
                hardware.power_fail_pin, factory=self.factory, on_change=self.mains_changed,
                active_low=hardware.power_fail_active_low, loop=loop)
            if not self.power_input.mains_ok:
                self.mains_changed(False)

    def refresh(self) -> None:
        self.leds.apply(LedPlan.for_state(box_state(self.status(),
                                                    on_battery=self.policy.on_battery)))

    def states(self) -> dict[str, str]:
        return self.leds.states()

    def mains_changed(self, mains_ok: bool) -> None:
        now = self.loop.time()
        if mains_ok:
            self.policy.mains_back(now)
        else:
            self.policy.mains_lost(now)
        self._perform(now)

    def handle_timer(self, now: float) -> None:
        self._power_timer = None
        self.policy.handle_timer(now)
        self._perform(now)

    def _perform(self, now: float) -> None:
        while (event := self.policy.next_event()) is not None:
            if isinstance(event, PowerLost):
                LOGGER.warning("mains lost: on battery; shutting down in %.0f s unless they "
                               "come back", event.shutdown_at - event.at)
            elif isinstance(event, DatabaseFlushRequested):
                self.flush_database()
            elif isinstance(event, PowerRestored):
                LOGGER.warning("mains back after %.0f s on battery", event.on_battery_s)
            elif isinstance(event, ShutdownRequested):
                LOGGER.warning("on battery for %.0f s: shutting down cleanly",
                               event.on_battery_s)
                self.shutdown()
        if self._power_timer is not None:
            self._power_timer.cancel()
            self._power_timer = None
        when = self.policy.get_timer()
        if when is not None:
            self._power_timer = self.loop.call_at(when, lambda: self.handle_timer(
                self.loop.time()))
        self.refresh()

    def close(self) -> None:
        if self._power_timer is not None:
            self._power_timer.cancel()
        if self.power_input is not None:
            self.power_input.close()
        self.leds.close()
