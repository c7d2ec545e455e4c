"""What must survive a power cut or a crash of the daemon (issue 16), in schema version 12's
terms: calls written once they are answered and marked cut off at the next start if they never
ended, and the phones' registrations kept with their expiry so they are served at once after a
restart. Each function is one transaction on a `Store` of the calling thread (the daemon's
recorder thread writes; start-up reads before the loop serves SIP).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from firmware.store.db import (
    _UPSERTED_CALL_COLUMNS,
    CALL_COLUMNS,
    LEG_COLUMNS,
    Store,
    _call_value,
    _write_transaction,
)

LOGGER = logging.getLogger(__name__)

# What a cut-off call's record says as its end cause when the call had none yet.
CUT_OFF_CAUSE = "cut off: the box stopped during the call (power cut or crash)"
REGISTRATION_COLUMNS = ("extension", "contact_text", "contact", "expires_at", "call_id", "cseq",
                        "source_transport", "source_host", "source_port", "user_agent",
                        "registered_at")


def record_answered_calls(
    store: Store,
    batch: Sequence[tuple[Mapping[str, object], Sequence[Mapping[str, object]]]],
) -> None:
    """Write calls just answered (rows as `record_finished_calls` takes them, still without an
    end) as 'in_progress', with the legs so far, in one transaction. A call whose final record
    is already there is left alone: the later record wins."""
    if not batch:
        return
    conn = store.db.conn
    with _write_transaction(conn):
        for call, legs in batch:
            cursor = conn.execute(
                f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}, record_state) "
                f"VALUES ({', '.join('?' for _ in CALL_COLUMNS)}, 'in_progress') "
                f"ON CONFLICT (id) DO UPDATE SET {_UPSERTED_CALL_COLUMNS} "
                "WHERE record_state = 'in_progress'",
                [_answered_value(call, column) for column in CALL_COLUMNS],
            )
            if cursor.rowcount != 1:
                continue  # already ended: its legs are final too
            conn.execute("DELETE FROM call_legs WHERE call_id = ?", (call["id"],))
            conn.executemany(
                f"INSERT INTO call_legs ({', '.join(LEG_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in LEG_COLUMNS)})",
                [[leg.get(column) for column in LEG_COLUMNS] for leg in legs],
            )


def _answered_value(call: Mapping[str, object], column: str) -> object:
    # The outcome is decided at the end; until then the call is a conversation.
    if column == "outcome":
        return call.get("outcome") or "answered"
    return _call_value(call, column)


def mark_cut_off_calls(store: Store) -> int:
    """At start, before any new call: calls written when answered that never got their final
    record were cut off by the stop. They keep their outcome ('answered': they were
    conversations, and reports count them so) with an unknown end; how many there were."""
    conn = store.db.conn
    with _write_transaction(conn):
        cursor = conn.execute(
            "UPDATE calls SET record_state = 'cut_off', end_cause = coalesce(end_cause, ?) "
            "WHERE record_state = 'in_progress'", (CUT_OFF_CAUSE,))
    count = int(cursor.rowcount)
    if count:
        LOGGER.warning("%d calls were in progress when the box stopped; recorded as cut off",
                       count)
    return count


def save_registrations(store: Store, changes: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Replace the bindings of each extension in `changes` by its rows (none: unregistered),
    in one transaction. Times are wall-clock (Unix seconds)."""
    if not changes:
        return
    conn = store.db.conn
    with _write_transaction(conn):
        for extension, rows in changes.items():
            conn.execute("DELETE FROM registrations WHERE extension = ?", (extension,))
            conn.executemany(
                f"INSERT OR REPLACE INTO registrations ({', '.join(REGISTRATION_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in REGISTRATION_COLUMNS)})",
                [[row[column] for column in REGISTRATION_COLUMNS] for row in rows],
            )


def live_registrations(store: Store, wall_now: float) -> list[dict[str, Any]]:
    """The bindings still alive at `wall_now` (those expired meanwhile are deleted)."""
    conn = store.db.conn
    with _write_transaction(conn):
        conn.execute("DELETE FROM registrations WHERE expires_at <= ?", (wall_now,))
        cursor = conn.execute(
            f"SELECT {', '.join(REGISTRATION_COLUMNS)} FROM registrations "
            "ORDER BY extension, registered_at")
        return [dict(zip(REGISTRATION_COLUMNS, row, strict=True)) for row in cursor]
