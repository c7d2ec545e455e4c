"""Keeping a modem's AT port open: notice it vanish, reopen it with backoff, find the modem again
by IMEI wherever it reappears, and say so.

`PortSupervisor(path, imei=..., on_opened=..., on_lost=...)`, then `start()` and `await stop()`:

- `on_opened(channel, path)` (awaited) runs the line's init on a fresh `AtChannel`; if it raises,
  the port is closed and tried again later. `on_lost(reason)` is called when the port goes
  (unplugged: EIO / SerialException, end of file).
- With `imei`, the modem is looked for among `candidates()` (the configured path first, then
  /dev/serial/by-id/*, /dev/ttyUSB*, /dev/ttyACM* — ttyUSB renumbering and lost by-id links
  happen in the field, wdoekes#171, bg111#246); a modem that lost its IMEI (+CGSN → ERROR) is
  still taken on the configured path, a different modem there is not.
- Attempts are spaced by `Backoff` (0.5 s doubling to 5 s), cut short when a tty device comes
  or goes: pyudev's netlink monitor on the loop (`add_reader`) where it works, and a look at the
  candidate paths every `POLL_INTERVAL_S` in any case. So a replugged modem is open again
  within about a second, and within the backoff maximum at worst.
- `opener(path)` (optional, awaited) opens the configured path into an `AtChannel` instead of
  `open_channel`: a line whose port carries more than AT lines (a V.253 voice stream after
  `CONNECT`) makes the channel with its own data handler. Used when there is no `imei`; the
  IMEI search probes ports with plain channels.
- `state` ("opening", "open", "stopped"), `path` (where it is now), `channel`, `opened_at`,
  `lost_at` (loop time) for status and measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from hal.modem.channel import AtChannel
from hal.serial.port import Backoff, ProbedPort, candidate_paths, open_channel, probe_imei

LOGGER = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0  # how often the candidate paths are looked at while the port is down
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 5.0  # the issue wants a replugged line up within 10 s: half of it at worst
PROBE_TIMEOUT_S = 1.0  # AT+CGSN on each candidate

Snapshot = frozenset[tuple[str, str]]


class UdevWatcher:
    """Calls `changed()` on every tty add/remove uevent, if the netlink monitor can be opened."""

    def __init__(self, changed: Callable[[], None]) -> None:
        self._changed = changed
        self._monitor: Any = None
        self._fd: int | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> bool:
        try:
            import pyudev  # Linux only (pyproject), and netlink may be closed in a container

            monitor = pyudev.Monitor.from_netlink(pyudev.Context())
            monitor.filter_by("tty")
            monitor.start()
            self._fd = monitor.fileno()
            loop.add_reader(self._fd, self._readable)
        except Exception as error:  # ImportError, OSError: no udev here
            LOGGER.info("no udev hotplug events (%s); polling serial ports every %g s",
                        error, POLL_INTERVAL_S)
            return False
        self._monitor = monitor
        return True

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._fd is not None:
            loop.remove_reader(self._fd)
            self._fd = None
        self._monitor = None

    def _readable(self) -> None:
        monitor = self._monitor
        seen = False
        for _ in range(100):  # drain what is queued now, boundedly
            device = monitor.poll(timeout=0) if monitor is not None else None
            if device is None:
                break
            LOGGER.info("hotplug: %s %s", device.action, device.device_node)
            seen = True
        if seen:
            self._changed()


class PortSupervisor:
    """One modem port kept open across unplugging and renumbering (see the module docstring)."""

    def __init__(
        self,
        path: str,
        *,
        imei: str | None = None,
        name: str | None = None,
        on_opened: Callable[[AtChannel, str], Awaitable[None]] | None = None,
        on_lost: Callable[[str], None] | None = None,
        candidates: Callable[[], Iterable[str]] = candidate_paths,
        backoff: Backoff | None = None,
        use_udev: bool = True,
        opener: Callable[[str], Awaitable[AtChannel]] | None = None,
    ) -> None:
        self.configured_path = path
        self.imei = imei
        self.name = name or path
        self.path: str | None = None
        self.channel: AtChannel | None = None
        self.state = "stopped"
        self.opened_at: float | None = None
        self.lost_at: float | None = None
        self.last_lost_reason: str | None = None
        self._on_opened = on_opened
        self._on_lost = on_lost
        self._candidates = candidates
        self._backoff = backoff if backoff is not None else Backoff(BACKOFF_FIRST_S, BACKOFF_MAX_S)
        self._use_udev = use_udev
        self._opener = opener
        self._changed = asyncio.Event()
        self._udev = UdevWatcher(self._changed.set)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._use_udev:
            self._udev.start(loop)
        self.state = "opening"
        self._task = loop.create_task(self._run(), name=f"port-{self.name}")

    async def stop(self) -> None:
        self._udev.stop(asyncio.get_running_loop())
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        self.state = "stopped"

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:  # ends by cancellation (stop); every turn waits at least a backoff or a loss
            before = self._snapshot()
            self._changed.clear()
            channel = await self._open()
            if channel is None:
                await self._wait_before_retry(self._backoff.next_delay(), before)
                continue
            if not await self._initialise(channel):
                await channel.close()
                await self._wait_before_retry(self._backoff.next_delay(), before)
                continue
            self._backoff.reset()
            await channel.wait_closed()
            self.channel = None
            self.state = "opening"
            self.lost_at = loop.time()
            self.last_lost_reason = channel.close_reason
            if self._on_lost is not None:
                try:
                    self._on_lost(channel.close_reason or "lost")
                except Exception:
                    LOGGER.exception("%s: on_lost failed", self.name)

    async def _initialise(self, channel: AtChannel) -> bool:
        assert self.path is not None
        self.channel = channel
        self.state = "open"
        self.opened_at = asyncio.get_running_loop().time()
        LOGGER.info("%s: port open at %s", self.name, self.path)
        if self._on_opened is None:
            return True
        try:
            await self._on_opened(channel, self.path)
        except Exception as error:
            LOGGER.warning("%s: init on %s failed (%s); trying again", self.name, self.path, error)
            self.channel = None
            self.state = "opening"
            return False
        return not channel.closed

    async def _open(self) -> AtChannel | None:
        if self.imei is None:
            try:
                if self._opener is not None:
                    channel = await self._opener(self.configured_path)
                else:
                    channel = await open_channel(self.configured_path, name=self.name)
            except (OSError, ValueError) as error:
                LOGGER.debug("%s: cannot open %s (%s)", self.name, self.configured_path, error)
                return None
            self.path = self.configured_path
            return channel
        return await self._find_by_imei()

    async def _find_by_imei(self) -> AtChannel | None:
        paths = self._ordered_candidates()
        probes = await asyncio.gather(*(probe_imei(p, timeout_s=PROBE_TIMEOUT_S, name=self.name)
                                        for p in paths))
        found = [p for p in probes if p is not None]
        chosen = next((p for p in found if p.imei == self.imei), None)
        if chosen is None:
            # A stick that lost its IMEI still answers on its own port (wdoekes#171); a port
            # that answers another IMEI is another modem and is never taken.
            chosen = next((p for p in found if p.path == self.configured_path and p.answered
                           and p.imei is None), None)
            if chosen is not None:
                LOGGER.warning("%s: no modem with IMEI %s; %s answers without one, using it",
                               self.name, self.imei, chosen.path)
        await self._close_others(found, chosen)
        if chosen is None:
            LOGGER.info("%s: modem with IMEI %s not found among %d ports", self.name, self.imei,
                        len(paths))
            return None
        if chosen.path != self.configured_path:
            LOGGER.info("%s: modem with IMEI %s found at %s", self.name, self.imei, chosen.path)
        self.path = chosen.path
        return chosen.channel

    @staticmethod
    async def _close_others(found: list[ProbedPort], chosen: ProbedPort | None) -> None:
        for probed in found:
            if probed is not chosen:
                await probed.channel.close()

    def _ordered_candidates(self) -> list[str]:
        paths = [self.configured_path] if os.path.exists(self.configured_path) else []
        devices = {os.path.realpath(p) for p in paths}
        for path in self._candidates():
            device = os.path.realpath(path)
            if device not in devices:
                devices.add(device)
                paths.append(path)
        return paths

    def _snapshot(self) -> Snapshot:
        paths = [self.configured_path, *self._candidates()]
        return frozenset((p, os.path.realpath(p)) for p in paths if os.path.exists(p))

    async def _wait_before_retry(self, delay_s: float, before: Snapshot) -> None:
        """Sleep `delay_s`, cut short by a hotplug event or a change in the candidate paths."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay_s
        while (remaining_s := deadline - loop.time()) > 0:
            if self._snapshot() != before:
                LOGGER.info("%s: serial ports changed; trying at once", self.name)
                return
            try:
                async with asyncio.timeout(min(remaining_s, POLL_INTERVAL_S)):
                    await self._changed.wait()
                return
            except TimeoutError:
                pass
