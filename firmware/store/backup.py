"""Automatic backups of the database (issue 16): one a day, on the data partition beside the
database (`backups/linebox-YYYY-MM-DD.db`), kept BACKUP_KEEP_DAYS days, made with SQLite's online
backup API (https://sqlite.org/backup.html) so the daemon and the web UI keep writing meanwhile
and the copy is one consistent snapshot. A copy is checked (`PRAGMA quick_check`) before it
takes its final name, so a file named as a backup is one the box can start from
(`firmware/store/recovery.py`). Runs in a thread of the daemon's, never on its event loop.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import sqlite3
from pathlib import Path

from firmware.store.errors import DatabaseUnavailableError

LOGGER = logging.getLogger(__name__)

BACKUP_KEEP_DAYS = 7
BACKUP_FOLDER = "backups"
# Pages copied per step of the online backup: small steps let the other process write between
# them (each step holds the source's read lock only for its pages).
BACKUP_PAGES_PER_STEP = 256
_NAME_RE = re.compile(r"^linebox-(\d{4}-\d\d-\d\d)\.db$")


def backup_folder(db_path: str | Path) -> Path:
    return Path(db_path).resolve().parent / BACKUP_FOLDER


def backups(db_path: str | Path) -> list[tuple[datetime.date, Path]]:
    """The backups there are, newest first."""
    folder = backup_folder(db_path)
    found: list[tuple[datetime.date, Path]] = []
    if not folder.is_dir():
        return found
    for path in folder.iterdir():
        match = _NAME_RE.match(path.name)
        if match and path.is_file():
            try:
                found.append((datetime.date.fromisoformat(match.group(1)), path))
            except ValueError:
                continue
    return sorted(found, reverse=True)


# SQLite's verdicts on the file itself (primary result codes, https://sqlite.org/rescode.html):
# only these, or a failing quick_check, make a database broken. Busy, locked, cannot open,
# permissions, I/O say nothing about the file's content (issue 16: a sound database locked by
# the web UI at start was moved aside and replaced by the last backup).
DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def is_sound(path: Path, *, busy_timeout_s: float = 5.0) -> str:
    """Why the database file at `path` is damaged ("" when it is not): not a database, or
    `PRAGMA quick_check` finds damage (https://sqlite.org/pragma.html#pragma_quick_check).
    Raises DatabaseUnavailableError when it cannot be checked for another reason."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout_s)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None  # extended → primary code
        if primary in DAMAGE_CODES:
            return str(exc)
        raise DatabaseUnavailableError(f"{path}: {exc}", busy=primary in BUSY_CODES) from exc
    verdict = "; ".join(str(row[0]) for row in rows[:5])
    return "" if verdict == "ok" else verdict


def make_backup(db_path: str | Path, day: datetime.date) -> Path:
    """Copy the database to the backup of `day` (replacing one made earlier that day) and
    delete backups older than BACKUP_KEEP_DAYS; the backup's path."""
    folder = backup_folder(db_path)
    folder.mkdir(mode=0o700, exist_ok=True)
    final = folder / f"linebox-{day.isoformat()}.db"
    partial = final.with_suffix(".db.partial")
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro", uri=True, timeout=5.0)
    try:
        target = sqlite3.connect(partial)
        try:
            source.backup(target, pages=BACKUP_PAGES_PER_STEP)
            target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            target.close()
    finally:
        source.close()
    problem = is_sound(partial)
    if problem:
        partial.unlink(missing_ok=True)
        raise sqlite3.DatabaseError(f"the backup copy is damaged: {problem}")
    with partial.open("rb") as stream:
        os.fsync(stream.fileno())
    os.replace(partial, final)
    _fsync_folder(folder)
    prune(db_path, day)
    return final


def prune(db_path: str | Path, today: datetime.date) -> list[Path]:
    """Delete backups older than BACKUP_KEEP_DAYS days; those deleted."""
    oldest = today - datetime.timedelta(days=BACKUP_KEEP_DAYS - 1)
    gone = [path for day, path in backups(db_path) if day < oldest]
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


def backup_if_due(db_path: str | Path, today: datetime.date) -> Path | None:
    """Make today's backup unless there is one; the new backup's path, else None."""
    if any(day == today for day, _ in backups(db_path)):
        return None
    path = make_backup(db_path, today)
    LOGGER.info("database backed up to %s", path)
    return path


def _fsync_folder(folder: Path) -> None:
    # The rename is durable only once the folder's entry is (POSIX: fsync the directory).
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
