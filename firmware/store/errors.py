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
