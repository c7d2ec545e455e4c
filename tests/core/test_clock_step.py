"""The core through a step of the wall clock (issue 16, "Clock"): the daemon re-reads the
wall/monotonic offset as events happen and hands it to the core (`wall_offset_s`); the core's
timers run on the monotonic `now` it is given. So a step of two years forward, or of an hour
back, moves what the core says in wall time (records, saved callback requests) and nothing of
when its timers fire."""

from __future__ import annotations

from tests.core.network import CALLBACK, EXPIRE_S, Office, office, waiting_with_request
from tests.core.test_callbacks import queue_entries

TWO_YEARS_S = 2 * 365 * 86400.0
HOUR_S = 3600.0


def step(o: Office, offset_s: float) -> None:
    """What the daemon's `_sync_clock` does when the wall clock steps."""
    o.net.gateway.wall_offset_s += offset_s


def test_a_callback_request_expires_on_time_through_a_step_forward_and_back() -> None:
    o, _ = waiting_with_request()
    origin_id = o.rows[-1][0]["id"]
    o.net.advance(5.0)
    step(o, TWO_YEARS_S)  # nothing is due two years early
    o.net.advance(5.0)
    assert len(queue_entries(o)) == 1
    step(o, -HOUR_S)  # nor held up an hour
    o.net.run_until(EXPIRE_S - 0.01)
    assert len(queue_entries(o)) == 1
    o.net.run_until(EXPIRE_S)
    assert queue_entries(o) == []
    assert o.net.recorder.callback_states == {origin_id: "expired"}


def test_a_call_record_through_a_step_carries_the_new_wall_time_and_its_real_length() -> None:
    o = office()
    invite = o.provider.call("+74950000200")
    o.net.advance(2.0)
    o.phones["101"].answer()
    o.net.advance(10.0)
    step(o, TWO_YEARS_S)
    o.net.advance(10.0)
    o.provider.bye(invite)
    o.net.pump()
    call, legs = o.rows[-1]
    # The core's rows are monotonic; the daemon's recorder adds the offset of when it writes
    # them (the new one), so the whole row moves with the step and its length stays real.
    assert call["ended_at"] - call["started_at"] == 22.0  # type: ignore[operator]
    assert call["talk_s"] == 20.0


def test_a_saved_callback_request_moved_by_the_step_comes_back_with_its_real_expiry() -> None:
    o, _ = waiting_with_request()
    (saved,) = o.net.recorder.pending_callbacks.values()
    # The request was kept by the old clock; the step moves it in the database
    # (firmware/store/clock_times.py) as it moves the daemon's offset.
    moved = {**saved, **{key: float(str(saved[key])) + TWO_YEARS_S
                         for key in ("entered_at", "expires_at")}}
    fresh = office(config=CALLBACK)
    fresh.net.gateway.wall_offset_s = o.net.gateway.wall_offset_s + TWO_YEARS_S
    fresh.net.now = o.net.now + 10.0  # a restart ten seconds later
    fresh.net.gateway.set_agent_status("101", "break", source="cli", now=fresh.net.now)
    assert fresh.net.gateway.restore_callbacks([moved], fresh.net.now) == 1
    fresh.net.pump()
    fresh.net.run_until(EXPIRE_S - 0.01)
    assert len(queue_entries(fresh)) == 1  # not expired two years ago
    fresh.net.run_until(EXPIRE_S)
    assert queue_entries(fresh) == []
