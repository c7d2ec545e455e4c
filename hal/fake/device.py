"""The running side of a fake device: its own thread and event loop, so a fake answers like
hardware whatever the test's own thread is doing (a blocking pyserial read, a gammu subprocess,
an asyncio loop of the box's driver).

Control calls from any thread run on the fake's loop and return when done; tests wait for what
the fake saw through wait_until() (a condition, never a blind sleep) or its async twin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, Self, TypeVar

LOGGER = logging.getLogger(__name__)

CONTROL_TIMEOUT_S = 5.0
DEFAULT_WAIT_S = 5.0

T = TypeVar("T")


class FakeDeviceTimeout(TimeoutError):
    """What a test waited for did not happen in time."""


class FakeDevice:
    """Base of the fakes: a loop thread, thread-safe control, waiting on what happened."""

    name = "fake"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._timers: set[asyncio.TimerHandle] = set()

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Starts the loop thread and plugs the device in."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"fake-{self.name}",
                                        daemon=True)
        self._thread.start()
        self.call(self._power_up)
        return self

    def stop(self) -> None:
        """Unplugs the device for good and stops its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self.call(self._power_down)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CONTROL_TIMEOUT_S)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _power_up(self) -> None:
        raise NotImplementedError

    def _power_down(self) -> None:
        raise NotImplementedError

    # -- running on the fake's loop ---------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self.name}: not started")
        return self._loop

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Runs function on the fake's loop and returns its result (raising what it raised)."""
        if self._thread is threading.current_thread():
            return function(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function(*args))
            except BaseException as error:  # handed to the caller's thread, raised there
                future.set_exception(error)

        self.loop.call_soon_threadsafe(run)
        return future.result(CONTROL_TIMEOUT_S)

    def later(self, delay_s: float, function: Callable[..., object], *args: Any
              ) -> asyncio.TimerHandle:
        """A timer on the fake's loop that unplugging cancels (with every other)."""
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            function(*args)

        handle = self.loop.call_later(delay_s, fire)
        self._timers.add(handle)
        return handle

    def cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    # -- waiting on what happened -----------------------------------------------------------

    def notify(self) -> None:
        """Something a test may wait for changed (called on the fake's loop)."""
        with self._changed:
            self._changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], *, timeout_s: float = DEFAULT_WAIT_S,
                   what: str = "condition") -> None:
        """Blocks until predicate() holds; FakeDeviceTimeout after timeout_s."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout_s):
                raise FakeDeviceTimeout(f"{self.name}: {what} not within {timeout_s} s")

    async def wait_until_async(self, predicate: Callable[[], bool], *,
                               timeout_s: float = DEFAULT_WAIT_S, what: str = "condition"
                               ) -> None:
        """wait_until for a test running its own asyncio loop (waits in a worker thread)."""
        await asyncio.to_thread(self.wait_until, predicate, timeout_s=timeout_s, what=what)
