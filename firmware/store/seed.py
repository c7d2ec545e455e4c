"""First boot: `seed_default` gives an unconfigured box one department with one extension, so a
phone can be registered before anyone edits anything. It lives apart from the configuration model
because it writes through the `Store`, and `db.py` already reads the model from `config.py`:
keeping it here leaves `firmware.store` without an import circle.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable

from firmware.store.config import Department, Extension, Member
from firmware.store.db import Store
from firmware.store.errors import RevisionConflictError

SEED_DEPARTMENT_NUMBER = "200"
SEED_DEPARTMENT_NAME = "Отдел продаж"
SEED_EXTENSION_NUMBER = "101"
SEED_EXTENSION_NAME = "Сотрудник 101"
SEED_RING_TIMEOUT_S = 20
SEED_PASSWORD_BYTES = 9  # token_urlsafe(9) is 12 characters


def generate_password() -> str:
    """A random 12-character SIP password (URL-safe alphabet, 72 bits)."""
    return secrets.token_urlsafe(SEED_PASSWORD_BYTES)


def seed_default(
    store: Store, *, password_factory: Callable[[], str] = generate_password
) -> str | None:
    """Give an unconfigured box one department with one extension.

    Returns the new extension's password (to be shown once), or None when the store already has
    extensions or departments, including when another process configured it meanwhile.
    """
    revision = store.config_revision()
    current = store.load_config()
    if current.extensions or current.departments:
        return None
    password = password_factory()
    seeded = dataclasses.replace(
        current,
        extensions=(
            Extension(number=SEED_EXTENSION_NUMBER, name=SEED_EXTENSION_NAME, password=password),
        ),
        departments=(
            Department(
                number=SEED_DEPARTMENT_NUMBER,
                name=SEED_DEPARTMENT_NAME,
                strategy="ring_all",
                ring_timeout_s=SEED_RING_TIMEOUT_S,
                members=(Member(extension=SEED_EXTENSION_NUMBER),),
            ),
        ),
    )
    try:
        store.replace_config(seeded, expected_revision=revision)
    except RevisionConflictError:
        return None
    return password
