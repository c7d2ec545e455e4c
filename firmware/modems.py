"""The daemon's side of the modem lines: one driver (hal/modem) per GSM or FXO trunk, started
and stopped as the configuration comes and goes, its facts and audio handed to the core, the
core's commands performed, and the line's audio paced out every 20 ms.

The core is sans-IO (firmware/core/modem_lines.py); this is the thin asyncio layer that does
the waiting. A command that fails (the modem refused, the port vanished) comes back to the core
as the line's `CallEnded` fact, so a call never waits on a modem that will not act.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hal.modem.driver import CallEnded, ModemCommandError, ModemDriver, ModemFact

from .store.config import Config, Trunk

if TYPE_CHECKING:
    from .core import Gateway
    from .core.events import ModemCommandRequested

LOGGER = logging.getLogger(__name__)

FRAME_INTERVAL_S = 0.020  # the line's audio: one 20 ms frame at a time
STOP_HANG_UP_TIMEOUT_S = 5.0
DriverFactory = Callable[[Trunk], ModemDriver]


def default_driver(trunk: Trunk) -> ModemDriver:
    """The real driver for a trunk: hal/modem/gsm.py or hal/modem/fxo.py."""
    if trunk.type == "gsm":
        from hal.modem.gsm import GsmDriver
        return GsmDriver(trunk.name, port=trunk.device, audio_port=trunk.audio_device or None,
                         profile=trunk.modem, imei=trunk.imei or None, pin=trunk.pin or None,
                         number=trunk.number)
    from hal.modem.fxo import FxoDriver
    return FxoDriver(trunk.name, port=trunk.device, profile=trunk.modem)


class ModemRuntime:
    """The running drivers of the configuration's modem lines."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gateway: Gateway, *,
                 flush: Callable[[], None], factory: DriverFactory = default_driver) -> None:
        self.loop = loop
        self.gateway = gateway
        self.flush = flush
        self.factory = factory
        self.drivers: dict[str, ModemDriver] = {}
        self._trunks: dict[str, Trunk] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pacer: asyncio.Task[None] | None = None
        self._queues: dict[str, asyncio.Queue[ModemCommandRequested]] = {}

    # ------------------------------------------------------------------ configuration
    async def apply(self, config: Config) -> None:
        """Start a driver for each new or changed modem trunk; stop those that went."""
        wanted = {trunk.name: trunk for trunk in config.trunks if trunk.is_modem}
        for name in list(self.drivers):
            if self._trunks.get(name) != wanted.get(name):
                await self._stop_driver(name)
        for name, trunk in wanted.items():
            if name in self.drivers:
                continue
            try:
                driver = self.factory(trunk)
            except Exception:
                LOGGER.exception("line %s: no driver", name)
                continue
            self.drivers[name] = driver
            self._trunks[name] = trunk
            await driver.start(self._on_fact, self._audio_handler(name))
            LOGGER.info("line %s (%s) on %s: driver started", name, trunk.type, trunk.device)
        if self.drivers and self._pacer is None:
            self._pacer = self.loop.create_task(self._pace())

    async def _stop_driver(self, name: str) -> None:
        driver = self.drivers.pop(name)
        self._trunks.pop(name, None)
        self._queues.pop(name, None)
        # A call the line carries ends with the driver: hung up on the modem (best effort),
        # and told to the core, which would otherwise wait for an end that never comes.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(driver.hang_up(), STOP_HANG_UP_TIMEOUT_S)
        self._on_fact(CallEnded(line=name, cause="the line's driver stopped", status=480))
        try:
            await driver.stop()
        except Exception:
            LOGGER.exception("line %s: driver did not stop cleanly", name)

    async def stop(self) -> None:
        if self._pacer is not None:
            self._pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pacer
            self._pacer = None
        for name in list(self.drivers):
            await self._stop_driver(name)
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------------ driver → core
    def _on_fact(self, fact: ModemFact) -> None:
        self.gateway.modem_fact(fact, self.loop.time())
        self.flush()

    def _audio_handler(self, name: str) -> Callable[[bytes], None]:
        def on_audio(frame: bytes) -> None:
            self.gateway.line_audio(name, frame, self.loop.time())
            self.flush()
        return on_audio

    # ------------------------------------------------------------------ core → driver
    def perform(self, command: ModemCommandRequested) -> None:
        driver = self.drivers.get(command.line)
        if driver is None:
            LOGGER.warning("line %s: no driver for %s", command.line, command.action)
            self._on_fact(CallEnded(line=command.line, cause="no driver", status=503))
            return
        # One command at a time per line, in order: a dial asked for while the last call's
        # hang-up is still on its way waits for it, instead of finding the modem busy.
        queue = self._queues.get(command.line)
        if queue is None:
            queue = self._queues[command.line] = asyncio.Queue()
            task = self.loop.create_task(self._run_commands(driver, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.put_nowait(command)

    async def _run_commands(self, driver: ModemDriver,
                            queue: asyncio.Queue[ModemCommandRequested]) -> None:
        while True:
            command = await queue.get()
            await self._perform(driver, command)

    async def _perform(self, driver: ModemDriver, command: ModemCommandRequested) -> None:
        action = command.action
        try:
            if action == "answer":
                await driver.answer()
            elif action == "dial":
                await driver.dial(command.number)
            elif action == "hang_up":
                await driver.hang_up()
            elif action == "dtmf":
                await driver.send_dtmf(command.key)
            else:
                LOGGER.error("line %s: unknown command %r", command.line, action)
        except (ModemCommandError, OSError, TimeoutError) as exc:
            LOGGER.warning("line %s: %s failed: %s", command.line, action, exc)
            if action in ("answer", "dial"):
                # The line's failure, not a hang-up the core asked for: the core ends the call.
                self._on_fact(CallEnded(line=command.line, cause=f"{action} failed: {exc}",
                                        status=503 if action == "dial" else 480))

    # ------------------------------------------------------------------ audio out
    async def _pace(self) -> None:
        """Every 20 ms, each line with a call up gets its next frame (the core's jitter
        buffer decides what it is). Deadlines are kept on the loop's clock, so a late wake-up
        does not shift every later frame."""
        next_at = self.loop.time()
        while True:
            next_at += FRAME_INTERVAL_S
            delay = next_at - self.loop.time()
            if delay < -FRAME_INTERVAL_S * 5:
                next_at = self.loop.time()  # the loop was held up: start afresh, no burst
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))
            spoke = False
            for name, driver in list(self.drivers.items()):
                frame = self.gateway.line_frame(name)
                if frame is not None:
                    spoke = True
                    try:
                        driver.write_audio(frame)
                    except Exception:
                        LOGGER.exception("line %s: audio out failed", name)
            if spoke:
                self.flush()  # what the frames brought along (a key to send on the line)

    def statuses(self) -> Mapping[str, Any]:
        return {name: driver.status for name, driver in self.drivers.items()}
