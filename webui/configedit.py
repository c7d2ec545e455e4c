"""Editing the configuration from a form: read it as plain data (the YAML's shape), change it,
and save it whole — validated exactly like `linebox config import`, written in one transaction,
and only if nobody saved another revision meanwhile. The daemon notices the new revision and
applies it without a restart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from firmware.store import ConfigError, RevisionConflictError, config_to_dict
from firmware.store.config import parse_config

from .db import get_store


@dataclass
class Draft:
    data: dict[str, Any]
    revision: int


def load() -> Draft:
    store = get_store()
    revision = store.config_revision()
    return Draft(data=config_to_dict(store.load_config()), revision=revision)


def save(draft: Draft) -> None:
    """Validate and store `draft`; raises `ConfigError` (nothing saved) or
    `RevisionConflictError` (someone else saved first; nothing saved)."""
    config = parse_config(draft.data)
    get_store().replace_config(config, expected_revision=draft.revision)


__all__ = ["ConfigError", "Draft", "RevisionConflictError", "load", "save"]
