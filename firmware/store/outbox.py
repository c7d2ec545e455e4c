"""The notifications outbox (schema version 11): e-mails and SMS waiting to be sent, retried with
backoff, and the recent ones sent or given up on for the web UI.

A row is added once per `key` (the UNIQUE index refuses the same key again, restart or not: a
missed call's e-mail, the day's summary, the caller's SMS of the day). The sender
(`firmware.mailer`) takes the due rows, tries each, and records the result: sent, a retry at a
later `next_at`, or failed for good. Like `Store`, an `Outbox` is used from one thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from firmware.store.db import Store, _write_transaction

NOTIFICATIONS_KEPT = 2000  # rows sent or failed kept for the web UI; pending ones always stay
CHANNELS = ("email", "sms")
NOTIFICATION_COLUMNS = ("id", "key", "kind", "channel", "recipient", "subject", "body",
                        "voicemail_call_id", "created_at", "state", "attempts", "next_at",
                        "sent_at", "last_error")


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One e-mail or SMS to send (`firmware.notify` decides them)."""

    key: str  # what makes it once: the same key is never added twice
    kind: str  # voicemail | missed | summary | caller
    channel: str  # email | sms
    recipient: str
    subject: str
    body: str
    voicemail_call_id: str | None = None  # attach the message this call left


class Outbox:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._conn = store.db.conn

    def add(self, items: Iterable[Outgoing], *, at: float) -> int:
        """Add what is not there yet (by key), due at once; how many were new."""
        added = 0
        with _write_transaction(self._conn):
            for item in items:
                if item.channel not in CHANNELS:
                    raise ValueError(f"channel must be email or sms, got {item.channel!r}")
                cursor = self._conn.execute(
                    "INSERT OR IGNORE INTO notifications (key, kind, channel, recipient, "
                    "subject, body, voicemail_call_id, created_at, state, next_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                    (item.key, item.kind, item.channel, item.recipient, item.subject,
                     item.body, item.voicemail_call_id, at, at))
                added += cursor.rowcount
        return added

    def has(self, key: str) -> bool:
        return self._conn.execute("SELECT 1 FROM notifications WHERE key = ?",
                                  (key,)).fetchone() is not None

    def due(self, now: float, *, limit: int = 20) -> list[dict[str, Any]]:
        """Pending rows whose time has come, oldest first."""
        return self._rows("WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, id "
                          "LIMIT ?", (now, limit))

    def next_due_at(self) -> float | None:
        row = self._conn.execute(
            "SELECT min(next_at) FROM notifications WHERE state = 'pending'").fetchone()
        return None if row[0] is None else float(row[0])

    def sent(self, row_id: int, *, at: float) -> None:
        self._finish(row_id, "UPDATE notifications SET state = 'sent', sent_at = ?, "
                     "attempts = attempts + 1, last_error = '' WHERE id = ?", (at, row_id))

    def retry(self, row_id: int, *, error: str, next_at: float, counts: bool = True) -> None:
        """Try again at `next_at`; `counts`: this was an attempt (not a wait for the audio)."""
        with _write_transaction(self._conn):
            self._conn.execute(
                "UPDATE notifications SET next_at = ?, last_error = ?, "
                "attempts = attempts + ? WHERE id = ?", (next_at, error, int(counts), row_id))

    def failed(self, row_id: int, *, error: str) -> None:
        self._finish(row_id, "UPDATE notifications SET state = 'failed', last_error = ?, "
                     "attempts = attempts + 1 WHERE id = ?", (error, row_id))

    def rows(self, *, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: all, or those in one state (pending, sent, failed)."""
        if state is None:
            return self._rows("ORDER BY id DESC LIMIT ?", (limit,))
        return self._rows("WHERE state = ? ORDER BY id DESC LIMIT ?", (state, limit))

    def voicemail_audio(self, call_id: str) -> bytes | None:
        """The WAV of the message call `call_id` left (the newest, if several), or None."""
        row = self._conn.execute("SELECT audio FROM voicemails WHERE call_id = ? "
                                 "ORDER BY id DESC LIMIT 1", (call_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def voicemail_info(self, call_id: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT mailbox, caller, left_at, duration_s FROM voicemails "
                                 "WHERE call_id = ? ORDER BY id DESC LIMIT 1",
                                 (call_id,)).fetchone()
        return None if row is None else {"mailbox": row[0], "caller": row[1],
                                         "left_at": row[2], "duration_s": row[3]}

    def _finish(self, row_id: int, sql: str, parameters: tuple[object, ...]) -> None:
        with _write_transaction(self._conn):
            self._conn.execute(sql, parameters)
            # Keep the newest finished rows only; pending ones are never dropped.
            self._conn.execute(
                "DELETE FROM notifications WHERE state != 'pending' AND id <= (SELECT id FROM "
                "notifications WHERE state != 'pending' ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (NOTIFICATIONS_KEPT,))

    def _rows(self, clause: str, parameters: tuple[object, ...]) -> list[dict[str, Any]]:
        cursor = self._conn.execute(
            f"SELECT {', '.join(NOTIFICATION_COLUMNS)} FROM notifications {clause}", parameters)
        return [dict(zip(NOTIFICATION_COLUMNS, row, strict=True)) for row in cursor]
