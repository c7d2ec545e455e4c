"""Server-side form checks with messages next to each field (the pages' shared helpers)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping

from flask_babel import gettext as _

from firmware.store.config import SKILL_PATTERN

from . import configedit

EXTENSION_RE = re.compile(r"\d{2,6}")
PHONE_RE = re.compile(r"\+?\d{3,15}")
SIP_PASSWORD_BYTES = 12
# Written between the digits of a phone number by people, not by the configuration.
PHONE_PUNCTUATION = str.maketrans("", "", " -()")


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
    return parse_whole(text(form, field), field, errors, low, high)


def parse_whole(raw: str, field: str, errors: FormErrors, low: int, high: int) -> int | None:
    """`raw` as a whole number from `low` to `high`; None (and a message for `field`) if not."""
    if not raw.isdigit() or not low <= int(raw) <= high:
        errors.need(field, False, _("Enter a whole number from %(low)d to %(high)d.",
                                    low=low, high=high))
        return None
    return int(raw)


def clean_phone(raw: str) -> str:
    """A phone number as typed ("+7 (916) 123-45-67") as the configuration writes it."""
    return raw.translate(PHONE_PUNCTUATION)


def parse_skills(raw: str, field: str, errors: FormErrors) -> list[str]:
    """Skills typed as a comma list ("lang:en, product:crm"); each key:value, each once."""
    skills: list[str] = []
    for item in raw.replace("\n", ",").split(","):
        skill = item.strip()
        if not skill:
            continue
        if not SKILL_PATTERN.fullmatch(skill):
            errors.need(field, False, _('Write each skill as key:value without spaces, e.g. '
                                        'lang:en. Not like that: "%(skill)s"', skill=skill))
        elif skill in skills:
            errors.need(field, False, _('The skill "%(skill)s" is listed twice.', skill=skill))
        else:
            skills.append(skill)
    return skills


def new_sip_password() -> str:
    """A generated phone password: shown once, good for digest authentication."""
    return secrets.token_urlsafe(SIP_PASSWORD_BYTES)


def save_draft(draft: configedit.Draft, errors: FormErrors,
               field_of: Callable[[str], str | None] | None = None) -> bool:
    """Save `draft` whole; when refused, the reason goes beside the form field that
    `field_of(path)` names for the refused key's path, else to `errors["form"]` (shown at the
    top of the form), and nothing is saved."""
    try:
        configedit.save(draft)
    except configedit.RevisionConflictError:
        errors["form"] = _("Not saved: someone else changed the settings at the same time. "
                           "Check the values and save again.")
        return False
    except configedit.ConfigError as error:
        field = field_of(error.path) if field_of is not None else None
        if field is None:
            errors["form"] = _("Not saved: %(reason)s", reason=str(error))
        else:
            errors[field] = _("Not saved: %(reason)s", reason=error.message)
        return False
    return True
