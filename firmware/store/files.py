"""The box's files on disk are readable by the box alone.

The database holds every SIP and trunk password and the web UI's session key; its WAL and
shared-memory files hold recent pages of it; the log names callers and addresses. So the
processes that write them (`linebox run`, `linebox web`) work under umask 077 — new files are
0600, new folders 0700 — and every start checks what is already there: a database, WAL, SHM or
log file that others may read or write loses those bits (0644 → 0600), and so does the data
folder (0755 → 0700), each mend logged with the path it names. A folder we cannot rightly
narrow (not ours, or shared like /tmp with its sticky bit) is left alone with a warning.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

LOGGER = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
OTHERS_BITS = 0o077  # group and world: read, write, execute
# SQLite's companions of the database file (https://sqlite.org/tempfiles.html).
DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal")
LOG_BACKUPS_CHECKED = 9  # the rotated logs beside the current one (the CLI keeps 3)


def use_private_umask() -> None:
    """Files and folders this process creates from now on are its user's alone."""
    os.umask(PRIVATE_UMASK)


def log_path(db_path: str | Path) -> Path:
    """The daemon's log file: beside the database, named after it (`<db>.log`)."""
    return Path(db_path).with_suffix(".log")


def data_files(db_path: str | Path) -> list[Path]:
    """The database, its SQLite companions and the logs, as far as they exist."""
    db = Path(db_path)
    log = log_path(db)
    candidates = [db.with_name(db.name + suffix) for suffix in DATABASE_SUFFIXES]
    candidates.append(log)
    candidates.extend(log.with_name(f"{log.name}.{n}") for n in range(1, LOG_BACKUPS_CHECKED + 1))
    return [path for path in candidates if path.is_file() and not path.is_symlink()]


def secure_data_files(db_path: str | Path) -> list[str]:
    """Take group and world access away from the data folder and the box's files in it; one
    line per mend, each also logged (a warning: someone or something loosened them)."""
    mended: list[str] = []
    folder = Path(db_path).resolve().parent
    folder_problem = _folder_problem(folder)
    if folder_problem:
        LOGGER.warning("data folder %s left as it is (%s); keep the database in a folder of "
                       "its own", folder, folder_problem)
    else:
        mended.extend(_narrow(folder))
    for path in data_files(db_path):
        mended.extend(_narrow(path))
    for line in mended:
        LOGGER.warning("%s", line)
    return mended


def _folder_problem(folder: Path) -> str:
    try:
        info = folder.stat()
    except OSError as error:
        return str(error)
    if folder == Path(folder.anchor):
        return "the file system's root"
    if info.st_uid != os.geteuid():
        return "another user's folder"
    if info.st_mode & stat.S_ISVTX:
        return "a shared folder (sticky bit)"
    return ""


def _narrow(path: Path) -> list[str]:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if not mode & OTHERS_BITS:
            return []
        path.chmod(mode & ~OTHERS_BITS)
    except OSError as error:  # not ours to change: say so, the daemon still starts
        return [f"cannot make {path} private: {error}"]
    return [f"permissions of {path} mended: {mode:04o} -> {mode & ~OTHERS_BITS:04o} "
            "(others could read it)"]
