"""A broken database at start (issue 16): the box never crash-loops on it.

Before the daemon opens the database, `recover_if_broken` checks it (`backup.is_sound`: not a
database, a truncated file, `PRAGMA quick_check` failing). Only damage counts: a database locked
by another process is waited for (BUSY_WAIT_S) and then the start fails, one that cannot be
opened (permissions, a missing folder) fails the start saying so; neither is ever moved aside.
A broken one is moved aside with its
WAL and shared-memory files under a timestamped name (`linebox.db.broken-20261203-160501`, kept
for whoever wants to rescue something from it), and the newest sound automatic backup takes its
place; with none, the daemon starts on an empty database — first start: the default department,
the first-run wizard and its setup code. What happened is logged and kept as a box notice (in
`settings`, the newest BOX_NOTICES_KEPT) that the web UI shows the admin.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.store.backup import backups, is_sound
from firmware.store.db import Store
from firmware.store.errors import DatabaseUnavailableError
from firmware.store.files import DATABASE_SUFFIXES

LOGGER = logging.getLogger(__name__)

SETTING_BOX_NOTICES = "box_notices"
BOX_NOTICES_KEPT = 20
NOTICE_RESTORED = "database_restored"
NOTICE_EMPTY = "database_empty"
NOTICE_CUT_OFF = "calls_cut_off"
# A database locked by another process at start is waited for this long, tried every
# BUSY_RETRY_S, before the start fails (it is never taken for a broken one).
BUSY_WAIT_S = 15.0
BUSY_RETRY_S = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovery:
    """What was done about a broken database."""

    problem: str  # what was wrong with it
    moved_to: Path  # where the broken file is now
    backup: Path | None  # the backup the box starts from; None: an empty database

    @property
    def notice(self) -> dict[str, Any]:
        return {"kind": NOTICE_RESTORED if self.backup else NOTICE_EMPTY,
                "detail": self.problem, "moved_to": str(self.moved_to),
                "backup": self.backup.name if self.backup else None}


def recover_if_broken(db_path: str | Path, *, wall_now: float | None = None,
                      busy_wait_s: float = BUSY_WAIT_S) -> Recovery | None:
    """Check the database at `db_path`; if it is broken, move it aside and put the newest sound
    backup in its place (or nothing: an empty database is made by `Store.open`). None when the
    database is sound or does not exist yet. Raises DatabaseUnavailableError, moving nothing,
    when it cannot be checked: locked by another process for more than `busy_wait_s`, or not
    to be opened at all."""
    path = Path(db_path)
    if not path.exists():
        return None
    problem = _damage(path, busy_wait_s)
    if not problem:
        return None
    stamp = datetime.datetime.fromtimestamp(time.time() if wall_now is None else wall_now)
    moved_to = path.with_name(f"{path.name}.broken-{stamp:%Y%m%d-%H%M%S}")
    for suffix in DATABASE_SUFFIXES:
        part = path.with_name(path.name + suffix)
        if part.exists():
            os.replace(part, moved_to.with_name(moved_to.name + suffix))
    LOGGER.error("the database %s is broken (%s): moved aside to %s", path, problem, moved_to)
    for _, backup in backups(path):
        try:
            backup_problem = is_sound(backup)
        except DatabaseUnavailableError as exc:  # a backup it cannot read is no use either
            backup_problem = str(exc)
        if backup_problem:
            LOGGER.error("backup %s is broken too (%s); trying an older one", backup,
                         backup_problem)
            continue
        partial = path.with_name(path.name + ".restoring")
        shutil.copyfile(backup, partial)
        with partial.open("rb") as stream:
            os.fsync(stream.fileno())
        os.replace(partial, path)
        LOGGER.error("started from the backup %s: what changed since it was made is not "
                     "there", backup)
        return Recovery(problem=problem, moved_to=moved_to, backup=backup)
    LOGGER.error("no usable backup: starting from an empty configuration (the first-run "
                 "wizard asks for the setup code)")
    return Recovery(problem=problem, moved_to=moved_to, backup=None)


def _damage(path: Path, busy_wait_s: float) -> str:
    """What is wrong with the file at `path` ("" when it is sound). Only damage counts: a
    database held locked by another process (the web UI writing) is waited for, at most
    `busy_wait_s`, and then the start fails — replacing a sound database by a backup of
    yesterday would lose a day of records and configuration."""
    deadline = time.monotonic() + busy_wait_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            return is_sound(path, busy_timeout_s=max(0.0, min(remaining, BUSY_RETRY_S)))
        except DatabaseUnavailableError as exc:
            if not exc.busy:
                raise DatabaseUnavailableError(
                    f"the database {path} cannot be opened ({exc.__cause__}): check that its "
                    f"folder exists and that the daemon's user may read and write it; it was "
                    f"left in place", busy=False) from exc
            if time.monotonic() >= deadline:
                raise DatabaseUnavailableError(
                    f"the database {path} is held locked by another process (the web UI, a "
                    f"backup tool) for more than {busy_wait_s:.0f} s: not starting; the file was "
                    f"left in place", busy=True) from exc
            time.sleep(min(BUSY_RETRY_S, max(0.0, deadline - time.monotonic())))


def add_box_notice(store: Store, notice: dict[str, Any], *, at: float) -> None:
    """Keep a notice for the admin (the newest BOX_NOTICES_KEPT)."""
    notices = list(store.get_setting(SETTING_BOX_NOTICES, []) or [])
    notices.append({**notice, "at": at})
    store.put_setting(SETTING_BOX_NOTICES, notices[-BOX_NOTICES_KEPT:])


def box_notices(store: Store) -> list[dict[str, Any]]:
    """The notices kept for the admin, newest first."""
    notices = store.get_setting(SETTING_BOX_NOTICES, []) or []
    return [n for n in reversed(notices) if isinstance(n, dict)]
