"""The box's two clocks: monotonic time for every timer, wall time for what people read.

The Pi has no real-time clock. At boot the wall clock is put forward to the last time kept on
the data partition (buildroot-config's `boot` and `keeper`), and the first NTP sync then steps it,
often by hours or years; an admin or the NTP daemon may also step it back. The core and every
timer run on the monotonic clock (the event loop's), which never jumps, so a step cannot fire a
timer early or hold one up. Schedules, reports and records need wall time: `WallClock.wall(now)`
maps a monotonic `now` to it with the offset read *now* — not the one taken at start — so after
a step the next record already carries the new time.

Whether the wall clock is synchronised is the kernel's word: `adjtimex(2)` reports STA_UNSYNC
(TIME_ERROR) until an NTP daemon (BusyBox ntpd, chrony, systemd-timesyncd) disciplines the clock,
and again when nobody has for a while. That is what `timedatectl` shows, and it is the only
source that knows: a jump alone proves nothing (an admin's `date -s`, or boot's kept time put
forward), and no jump proves nothing either (a box whose kept time was close). Records written
while the clock is not synchronised carry the offset they were made with; when the clock steps,
those of the same boot (the same offset, give or take the slew) are moved by the step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOGGER = logging.getLogger(__name__)

# A change of the wall/monotonic offset larger than this is a step of the wall clock. NTP steps
# beyond 0.128 s and slews below it (RFC 5905 §10, STEPT); slewing moves the offset by at most
# 0.5 ms a second, so a second's margin separates the two with room for scheduling jitter.
STEP_THRESHOLD_S = 1.0
# How close a record's offset must be to the offset of the clock before a step for the record to
# be moved with it: the slew an unsynchronised kernel may apply over a day (500 ppm) and more.
SAME_EPOCH_TOLERANCE_S = 60.0
# How often `sample` asks the kernel whether the clock is synchronised (a system call through
# ctypes, ~10 µs: the daemon samples before every datagram it handles, thousands a second under
# load). A step is asked about at once; otherwise the answer may be this late, so a record made
# in the first second after NTP's first sync may still be marked unsynchronised.
SYNC_POLL_INTERVAL_S = 1.0

_TIME_ERROR = 5  # adjtimex's return value when STA_UNSYNC is set (linux/timex.h)


class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h): only `modes` is written (0: read, change nothing); the rest
    # is room for the kernel's answer. 20 longs and padding cover every architecture's layout.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_long * 40)]


@functools.cache
def _adjtimex() -> Callable[[Any], int] | None:
    # Looked up once: find_library runs ldconfig, far too slow for every reading.
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function: Callable[[Any], int] = ctypes.CDLL(name, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    return function


def kernel_synchronised() -> bool | None:
    """True when the kernel says an NTP daemon keeps the wall clock, False when it says the
    clock is unsynchronised (STA_UNSYNC), None when it cannot be asked (not Linux)."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    timex = _Timex()
    state = adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)


@dataclass(frozen=True, kw_only=True)
class ClockStepped:
    """The wall clock jumped by `step_s` (new offset minus old) between two readings."""

    old_offset_s: float
    new_offset_s: float
    synchronised: bool

    @property
    def step_s(self) -> float:
        return self.new_offset_s - self.old_offset_s


class WallClock:
    """Wall time for monotonic moments, with the offset re-read at each use, and steps noticed.

    `monotonic` must be the clock the core's `now` comes from (the event loop's `time()`);
    `wall` and `synchronised` are the system's unless a test gives its own."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 synchronised: Callable[[], bool | None] = kernel_synchronised) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self._synchronised = synchronised
        self._offset_s = self._read_offset()
        self._synced = self._read_synced()
        self._synced_read_at = self._monotonic()

    def _read_offset(self) -> float:
        return self._wall() - self._monotonic()

    def _read_synced(self) -> bool:
        # Where the kernel cannot be asked, the clock is taken as right: marking every record
        # of such a system as doubtful would help nobody.
        state = self._synchronised()
        return True if state is None else state

    @property
    def offset_s(self) -> float:
        """Wall minus monotonic as of the last `sample()`."""
        return self._offset_s

    @property
    def synchronised(self) -> bool:
        """The kernel's word as of the last `sample()`."""
        return self._synced

    def wall(self, now: float) -> float:
        """The Unix time of the monotonic moment `now`, by the clock as it reads now."""
        return now + self._read_offset()

    def sample(self) -> ClockStepped | None:
        """Re-read the offset (and the kernel's sync state) and say whether the wall clock
        stepped since the last sample."""
        offset = self._read_offset()
        old = self._offset_s
        self._offset_s = offset
        stepped = abs(offset - old) > STEP_THRESHOLD_S
        now = self._monotonic()
        if stepped or now - self._synced_read_at >= SYNC_POLL_INTERVAL_S:
            self._synced = self._read_synced()
            self._synced_read_at = now
        if not stepped:
            return None
        return ClockStepped(old_offset_s=old, new_offset_s=offset, synchronised=self._synced)
