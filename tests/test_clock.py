"""The wall clock helper (firmware/clock.py) and the kept times moved at a step
(firmware/store/clock_times.py): wall time is read when it is used, steps are noticed, and what
the database keeps in wall time follows the step."""

from __future__ import annotations

from pathlib import Path

from firmware.clock import (
    STEP_THRESHOLD_S,
    SYNC_POLL_INTERVAL_S,
    WallClock,
    kernel_synchronised,
)
from firmware.store import Store
from firmware.store.clock_times import last_call_rowid, shift_after_step

TWO_YEARS_S = 2 * 365 * 86400.0


class Clocks:
    """A monotonic and a wall clock the test moves, the way the kernel's move."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall_at_mono0 = 1_700_000_000.0
        self.synced: bool | None = False

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.wall_at_mono0 + self.mono

    def clock(self) -> WallClock:
        return WallClock(monotonic=self.monotonic, wall=self.wall,
                         synchronised=lambda: self.synced)


def test_wall_time_follows_a_step_at_once_without_a_sample() -> None:
    clocks = Clocks()
    clock = clocks.clock()
    assert clock.wall(1000.0) == 1_700_001_000.0
    clocks.wall_at_mono0 += TWO_YEARS_S
    # The start-up offset is not used: the next conversion already has the new clock.
    assert clock.wall(1000.0) == 1_700_001_000.0 + TWO_YEARS_S


def test_a_step_forward_and_one_back_are_reported_with_their_size() -> None:
    clocks = Clocks()
    clock = clocks.clock()
    clocks.mono += 5.0
    assert clock.sample() is None  # time passing is no step
    clocks.wall_at_mono0 += TWO_YEARS_S
    clocks.synced = True
    step = clock.sample()
    assert step is not None and step.step_s == TWO_YEARS_S and step.synchronised
    assert clock.synchronised
    clocks.wall_at_mono0 -= 3600.0
    step = clock.sample()
    assert step is not None and step.step_s == -3600.0
    assert clock.sample() is None


def test_the_kernel_is_asked_about_sync_once_a_second_and_at_once_on_a_step() -> None:
    """The daemon samples before every datagram: the adjtimex call is rationed, but a step
    (NTP's first sync, usually) is asked about at once."""
    clocks = Clocks()
    asked = 0

    def synchronised() -> bool | None:
        nonlocal asked
        asked += 1
        return clocks.synced

    clock = WallClock(monotonic=clocks.monotonic, wall=clocks.wall, synchronised=synchronised)
    asked = 0
    for _ in range(1000):  # a thousand datagrams within a tenth of a second
        clocks.mono += 0.0001
        clock.sample()
    assert asked == 0
    clocks.synced = True  # the daemon slewed into sync, no step
    clocks.mono += SYNC_POLL_INTERVAL_S
    clock.sample()
    assert asked == 1 and clock.synchronised
    clocks.synced = False
    clocks.wall_at_mono0 += TWO_YEARS_S
    step = clock.sample()  # a step: asked at once, though the interval has not passed
    assert asked == 2 and step is not None and not step.synchronised


def test_a_slew_below_the_threshold_is_not_a_step() -> None:
    clocks = Clocks()
    clock = clocks.clock()
    clocks.wall_at_mono0 += STEP_THRESHOLD_S / 2
    assert clock.sample() is None
    assert clock.offset_s == clocks.wall() - clocks.mono


def test_a_kernel_that_cannot_be_asked_counts_as_synchronised() -> None:
    clocks = Clocks()
    clocks.synced = None
    assert clocks.clock().synchronised


def test_the_kernel_answers_about_its_clock() -> None:
    # adjtimex(2) with modes 0 changes nothing and is allowed to anyone (Linux test machines).
    assert kernel_synchronised() in (True, False)


def _call(call_id: str, started_at: float, ended_at: float) -> dict[str, object]:
    return {"id": call_id, "started_at": started_at, "answered_at": started_at + 2.0,
            "ended_at": ended_at, "direction": "inbound", "source": "trunk",
            "caller": "79990001122", "dialed": "200", "outcome": "answered",
            "clock_unsynced": 1}


def _leg(call_id: str, started_at: float) -> dict[str, object]:
    return {"call_id": call_id, "target": "101", "contact": "sip:101@127.0.0.1:5070",
            "started_at": started_at,
            "answered_at": started_at + 2.0, "ended_at": started_at + 30.0, "result": "answered"}


def test_calls_written_before_the_sync_move_and_older_ones_stay(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "linebox.db")
    # A call of an earlier boot, later by its clock than the new boot's kept time.
    store.record_finished_calls([(_call("earlier", 1_000_500.0, 1_000_530.0), [])])
    first_own = last_call_rowid(store)
    store.record_finished_calls([
        (_call("unsynced", 1_000_400.0, 1_000_430.0), [_leg("unsynced", 1_000_400.0)])])
    moved = shift_after_step(store, TWO_YEARS_S, unsynced=(first_own, 1_000_000.0, 1_000_600.0))
    assert moved["calls"] == 1
    rows = {row["id"]: row for row in store.recent_calls()}
    assert rows["earlier"]["started_at"] == 1_000_500.0
    assert rows["unsynced"]["started_at"] == 1_000_400.0 + TWO_YEARS_S
    assert rows["unsynced"]["ended_at"] == 1_000_430.0 + TWO_YEARS_S
    # Moved: no longer marked; the earlier boot's call keeps its mark (its times may be off).
    assert (rows["unsynced"]["clock_unsynced"], rows["earlier"]["clock_unsynced"]) == (0, 1)
    leg = store._db.conn.execute(
        "SELECT started_at, ended_at FROM call_legs WHERE call_id = 'unsynced'").fetchone()
    assert tuple(leg) == (1_000_400.0 + TWO_YEARS_S, 1_000_430.0 + TWO_YEARS_S)
    store.close()


def test_a_call_recorded_by_a_synchronised_clock_is_not_moved(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "linebox.db")
    first_own = last_call_rowid(store)
    store.record_finished_calls([(
        {**_call("synced", 1_000_400.0, 1_000_430.0), "clock_unsynced": 0}, [])])
    moved = shift_after_step(store, -3600.0, unsynced=(first_own, 1_000_000.0, 1_000_600.0))
    assert moved["calls"] == 0
    assert store.recent_calls()[0]["started_at"] == 1_000_400.0
    store.close()


def test_a_pending_callback_keeps_its_real_expiry_across_a_step(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "linebox.db")
    store.record_finished_calls([(_call("origin", 1_000_000.0, 1_000_030.0), [])],
                                callback_events=[("pending", {
                                    "origin_call_id": "origin", "department": "200",
                                    "customer": "79990001122", "dialed": "200",
                                    "entered_at": 1_000_000.0, "expires_at": 1_003_600.0,
                                    "attempt": 1, "vip": 0})])
    moved = shift_after_step(store, -3600.0)
    assert moved == {"callback_requests": 1, "notifications": 0, "registrations": 0, "calls": 0}
    (request,) = store.pending_callback_requests()
    assert (request["entered_at"], request["expires_at"]) == (996_400.0, 1_000_000.0)
    # Without `unsynced`, no call record moves: they were written by a synchronised clock.
    assert store.recent_calls()[0]["started_at"] == 1_000_000.0
    store.close()
