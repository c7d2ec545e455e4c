"""Wall times kept in the database, moved when the wall clock steps (firmware/clock.py).

Two kinds of rows are moved, in one transaction on a `Store` of the calling thread (the daemon's
store-reads thread):

- what is still to happen, kept in wall time so it survives a restart: pending callback requests
  (when the caller came, when the promise expires), notifications not yet sent (when made, when
  next tried) and the phones' registrations (when they expire). They stand for moments on the
  monotonic clock the daemon runs on; moved by the step they stay the same moments, so a +2
  years step does not expire every promise at the next restart, nor a step back hold a retry up
  by an hour;
- call records the daemon wrote while the kernel said the clock was not synchronised (the Pi
  before its first NTP sync, running on the time kept on the data partition; marked
  `calls.clock_unsynced = 1`): their times were wrong by what the step corrects, and their mark
  is cleared. Marked rows of an earlier boot (a power cut before the sync) are left marked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from firmware.store.db import Store, _write_transaction

LOGGER = logging.getLogger(__name__)

CALL_TIME_COLUMNS = ("started_at", "answered_at", "ended_at")
LEG_TIME_COLUMNS = ("started_at", "ringing_at", "answered_at", "ended_at")
# A record's time of writing, as near as its row tells: the end of a finished call, the answer
# of one still in progress (written when answered), else its start.
_WRITTEN_AT = "coalesce(ended_at, answered_at, started_at)"


def last_call_rowid(store: Store) -> int:
    """The newest call row's rowid: rows after it are this daemon's own."""
    row = store._db.conn.execute("SELECT coalesce(max(rowid), 0) FROM calls").fetchone()
    return int(row[0])


def _shifted(columns: Sequence[str]) -> str:
    # NULL stays NULL (a call never answered).
    return ", ".join(f"{column} = {column} + :step" for column in columns)


def shift_after_step(store: Store, step_s: float, *,
                     unsynced: tuple[int, float, float] | None = None) -> dict[str, int]:
    """Move the kept wall times by `step_s` (new clock minus old), and, with `unsynced` =
    (rowid, first, last), the calls with a rowid above `rowid` written between the wall times
    `first` and `last` (by the old clock): this daemon's records made before the sync. Returns
    how many rows of each kind moved."""
    conn = store._db.conn
    moved = {"callback_requests": 0, "notifications": 0, "registrations": 0, "calls": 0}
    with _write_transaction(conn):
        moved["callback_requests"] = conn.execute(
            "UPDATE callback_requests SET entered_at = entered_at + :step, "
            "expires_at = expires_at + :step", {"step": step_s}).rowcount
        moved["notifications"] = conn.execute(
            "UPDATE notifications SET created_at = created_at + :step, next_at = next_at + :step "
            "WHERE state = 'pending'", {"step": step_s}).rowcount
        # A phone's binding expires at a moment of the registrar's monotonic clock: moved, a
        # restart after the step still serves it until then (not two years early).
        moved["registrations"] = conn.execute(
            "UPDATE registrations SET expires_at = expires_at + :step, "
            "registered_at = registered_at + :step", {"step": step_s}).rowcount
        if unsynced is not None:
            rowid, first, last = unsynced
            ids = [row[0] for row in conn.execute(
                f"SELECT id FROM calls WHERE clock_unsynced = 1 AND rowid > ? "
                f"AND {_WRITTEN_AT} BETWEEN ? AND ?", (rowid, first, last))]
            for call_id in ids:
                values = {"step": step_s, "id": call_id}
                conn.execute(f"UPDATE calls SET {_shifted(CALL_TIME_COLUMNS)}, clock_unsynced = 0 "
                             "WHERE id = :id", values)
                conn.execute(f"UPDATE call_legs SET {_shifted(LEG_TIME_COLUMNS)} "
                             "WHERE call_id = :id", values)
                conn.execute("UPDATE voicemails SET left_at = left_at + :step "
                             "WHERE call_id = :id", values)
                conn.execute("UPDATE recordings SET started_at = started_at + :step "
                             "WHERE call_id = :id", values)
            moved["calls"] = len(ids)
    return moved
