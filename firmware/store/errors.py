"""Exceptions of the store, other than `ConfigError` (an invalid configuration, in `config.py`).

They share the root `StoreError` so the daemon and the web UI can tell a storage problem from a bug.
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of the errors raised by `firmware.store` about the database itself."""


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer firmware than this one (e.g. after a downgrade)."""


class RevisionConflictError(StoreError):
    """The configuration changed since the caller read it; reload and try again."""


class RecordNotFoundError(StoreError, LookupError):
    """A call record or leg id that the store does not hold."""


class DatabaseUnavailableError(StoreError):
    """The database could not be checked, for a reason other than damage: `busy` when another
    connection holds it locked (worth waiting for), otherwise it cannot be opened or read at
    all (permissions, a missing folder, an I/O error) — never a reason to replace it."""

    def __init__(self, message: str, *, busy: bool) -> None:
        super().__init__(message)
        self.busy = busy
