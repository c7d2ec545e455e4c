"""Server-side form checks with messages next to each field (the pages' shared helpers)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

from flask_babel import gettext as _

EXTENSION_RE = re.compile(r"\d{2,6}")
PHONE_RE = re.compile(r"\+?\d{3,15}")
SIP_PASSWORD_BYTES = 12


class FormErrors(dict[str, str]):
    """field name → message; empty when the form is fine."""

    def need(self, field: str, ok: bool, message: str) -> bool:
        if not ok and field not in self:
            self[field] = message
        return ok


def text(form: Mapping[str, str], field: str) -> str:
    return (form.get(field) or "").strip()


def whole_number(form: Mapping[str, str], field: str, errors: FormErrors, low: int,
                 high: int) -> int | None:
    raw = text(form, field)
    if not raw.isdigit() or not low <= int(raw) <= high:
        errors.need(field, False, _("Enter a whole number from %(low)d to %(high)d.",
                                    low=low, high=high))
        return None
    return int(raw)


def new_sip_password() -> str:
    """A generated phone password: shown once, good for digest authentication."""
    return secrets.token_urlsafe(SIP_PASSWORD_BYTES)
