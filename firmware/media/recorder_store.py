"""The recordings as the store and the web UI see them: where they are, how much of the quota
they use, a call's recording. No core imports here: the web UI reads these (it never imports
the SIP core); the daemon's writer is firmware/media/recorder_files.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..recording import AUTO_QUOTA_SHARE, QUOTA_WARNING_SHARE, RecordingSettings
from ..store.db import Store

RECORDINGS_FOLDER = "recordings"
MB = 1 << 20


def recordings_dir(db_path: str | Path) -> Path:
    """Where the recordings live: beside the database, on the data partition."""
    return Path(db_path).resolve().parent / RECORDINGS_FOLDER


def quota_bytes(settings: RecordingSettings, directory: Path) -> int:
    """The quota in bytes: the configured one, or AUTO_QUOTA_SHARE of the partition."""
    if settings.quota_mb:
        return settings.quota_mb * MB
    info = os.statvfs(_existing(directory))
    return int(info.f_blocks * info.f_frsize * AUTO_QUOTA_SHARE)


def free_bytes(directory: Path) -> int:
    info = os.statvfs(_existing(directory))
    return info.f_bavail * info.f_frsize


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    used_bytes: int
    quota_bytes: int
    free_bytes: int
    count: int

    @property
    def share(self) -> float:
        return self.used_bytes / self.quota_bytes if self.quota_bytes else 0.0

    @property
    def warning(self) -> bool:
        """Close to the quota: the oldest recordings will soon be deleted."""
        return self.share >= QUOTA_WARNING_SHARE


def usage(store: Store, db_path: str | Path, settings: RecordingSettings) -> Usage:
    """How much the recordings take against the quota (for the web UI)."""
    directory = recordings_dir(db_path)
    row = store.db.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM recordings").fetchone()
    return Usage(used_bytes=int(row[1]), quota_bytes=quota_bytes(settings, directory),
                 free_bytes=free_bytes(directory), count=int(row[0]))


def recording_of(store: Store, db_path: str | Path, call_id: str) -> tuple[dict[str, object],
                                                                            Path] | None:
    """Call `call_id`'s recording: its row and its file, or None when it has none (any more)."""
    cursor = store.db.execute(
        "SELECT call_id, file, started_at, duration_s, channels, codec, bytes, state "
        "FROM recordings WHERE call_id = ?", (call_id,))
    found = cursor.fetchone()
    if found is None:
        return None
    row = dict(zip([column[0] for column in cursor.description], found, strict=True))
    path = recordings_dir(db_path) / str(row["file"])
    return (row, path) if path.is_file() else None


def recordings_of(store: Store, call_ids: list[str]) -> dict[str, dict[str, object]]:
    """The rows of those of `call_ids` that have a recording, by call id."""
    if not call_ids:
        return {}
    cursor = store.db.execute(
        "SELECT call_id, duration_s, channels, state FROM recordings WHERE call_id IN "
        f"({', '.join('?' for _ in call_ids)})", call_ids)
    names = [column[0] for column in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
