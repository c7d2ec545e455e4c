"""Persistent state of the gateway: the SQLite store (`db`), the configuration model (`config`) and
first-boot seeding (`seed`)."""

from firmware.store.config import (
    STRATEGIES,
    Config,
    ConfigError,
    Department,
    Extension,
    Member,
    Number,
    Security,
    SipSettings,
    Trunk,
    config_to_dict,
    dump_yaml,
    load_yaml,
    load_yaml_file,
    parse_config,
)
from firmware.store.db import Store, new_call_id
from firmware.store.errors import (
    RecordNotFoundError,
    RevisionConflictError,
    SchemaTooNewError,
    StoreError,
)
from firmware.store.seed import seed_default

__all__ = [
    "STRATEGIES",
    "Config",
    "ConfigError",
    "Department",
    "Extension",
    "Member",
    "Number",
    "RecordNotFoundError",
    "RevisionConflictError",
    "SchemaTooNewError",
    "Security",
    "SipSettings",
    "Store",
    "StoreError",
    "Trunk",
    "config_to_dict",
    "dump_yaml",
    "load_yaml",
    "load_yaml_file",
    "new_call_id",
    "parse_config",
    "seed_default",
]
