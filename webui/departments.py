"""Departments page: the numbers that ring a group of employees, how calls are shared among
them (the strategy, chosen from a list with one plain sentence each), the members with their
order, rank, tier, weight and ring time edited in place, the queue with its callback, and what
happens when nobody answers (another department or employee, an outside number, voicemail,
or several of these in turn).

The form edits exactly the department keys of docs/config.md with its ranges. Moving, adding
and removing members (and adding no-answer steps) only redraw the form; "Save" validates every
field with a message next to it and saves the whole configuration at once through `configedit`,
so nothing is half-saved. Deleting a department is refused, with the reason, while a phone
number, a caller rule, a schedule or another department still sends calls to it.

The helpers the employees page shares (`usages`, `member_extension`) live here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from firmware.store.config import (
    DEPARTMENT_DEFAULTS,
    MOBILES,
    RANK_MODES,
    RING_TIMEOUT_MAX_S,
    RING_TIMEOUT_MIN_S,
    STICKY_MODES,
    TIER_MODES,
    VOICEMAIL,
    VOICEMAIL_PREFIX,
)

from . import configedit
from .forms import (
    EXTENSION_RE,
    PHONE_RE,
    FormErrors,
    clean_phone,
    parse_skills,
    parse_whole,
    save_draft,
    text,
)
from .security import admin_required
from .strategies import STRATEGY_CHOICES, STRATEGY_NAMES

bp = Blueprint("departments", __name__)

# Defaults as the configuration model gives them (one place: firmware.routing.scheme, re-exported
# by firmware.store.config) and ranges as docs/config.md gives them.
DEFAULT_RING_TIMEOUT_S = 20
KNOB_DEFAULTS: dict[str, int | str] = {
    "step_delay_s": int(DEPARTMENT_DEFAULTS.step_delay_s),
    "tier_time_s": int(DEPARTMENT_DEFAULTS.tier_time_s),
    "tier_mode": DEPARTMENT_DEFAULTS.tier_mode, "rank": DEPARTMENT_DEFAULTS.rank_mode,
    "sticky": DEPARTMENT_DEFAULTS.sticky,
    "sticky_ring_s": int(DEPARTMENT_DEFAULTS.sticky_ring_s),
    "wrap_up_s": int(DEPARTMENT_DEFAULTS.wrap_up_s),
    "auto_break_after": DEPARTMENT_DEFAULTS.auto_break_after,
}
KNOB_RANGES = {
    "step_delay_s": (1, RING_TIMEOUT_MAX_S), "tier_time_s": (1, RING_TIMEOUT_MAX_S),
    "sticky_ring_s": (1, RING_TIMEOUT_MAX_S), "wrap_up_s": (0, 3600),
    "auto_break_after": (0, 100),
}
KNOB_CHOICES = {"tier_mode": TIER_MODES, "rank": RANK_MODES, "sticky": STICKY_MODES}
QUEUE_DEFAULTS = {"max_callers": 10, "max_wait_s": 300, "retry_s": 5, "announce_s": 30}
QUEUE_RANGES = {"max_callers": (1, 100), "max_wait_s": (10, 3600), "retry_s": (1, 60),
                "announce_s": (0, 600)}
MIN_ANNOUNCE_S = 10  # announce_s is 0 (no announcements: plain ringing) or 10 to 600
CALLBACK_DEFAULTS: dict[str, int | str] = {
    "key": "1", "expire_s": 300, "customer_ring_s": 25, "attempts": 3, "retry_s": 120,
}
CALLBACK_RANGES = {
    "expire_s": (60, 86400), "customer_ring_s": (5, 25), "attempts": (1, 10),
    "retry_s": (10, 3600),
}
# When a callback request expires the box calls the customer to apologise and offer voicemail.
CALLBACK_APOLOGY_DEFAULT = True
DTMF_KEYS = tuple("123456789*0#")
STEP_TIME_RANGE = (5, 600)
MEMBER_RANGES = {"ring_time_s": (RING_TIMEOUT_MIN_S, RING_TIMEOUT_MAX_S), "rank": (1, 1000),
                 "tier": (1, 9)}
WEIGHT_MAX = 100
MEMBER_FIELDS = ("position", "ring_time_s", "rank", "tier", "weight", "skills")
# Bounds on the rows read from one form: more than any office has.
MAX_MEMBER_ROWS = 1000
MAX_STEP_ROWS = 50
NO_ANSWER_MODES = ("none", "transfer", "forward", "voicemail", "steps")
ACTION_FIELDS = {"transfer": "no_answer_to", "forward": "no_answer_number",
                 "voicemail": "no_answer_mailbox"}
DEPARTMENT_FIELDS = ("name", "strategy", "ring_timeout_s", "schedule", *KNOB_DEFAULTS)
STEP_PATH_RE = re.compile(r"no_answer\.steps\[(\d+)\]\.(to|time_s)")

TIER_MODE_NAMES = {"add": _l("earlier tiers keep ringing"),
                   "replace": _l("earlier tiers stop ringing")}
RANK_MODE_NAMES = {"manual": _l("set by hand (1 is best)"),
                   "auto": _l("from sales conversion, last 30 days")}
STICKY_NAMES = {"none": _l("nobody: everyone as usual"),
                "last_agent": _l("the employee who spoke with the caller today"),
                "crm_owner": _l("the caller's manager in the CRM")}
NO_ANSWER_NAMES = {"none": _l("nothing: the caller hears \"unavailable\""),
                   "transfer": _l("transfer to a department or an employee"),
                   "forward": _l("forward to an outside number"),
                   "voicemail": _l("voicemail: the caller leaves a message"),
                   "steps": _l("several steps in turn")}


# --------------------------------------------------------------------------- shared helpers


def member_extension(member: str | Mapping[str, Any]) -> str:
    """The extension of a member as the configuration writes it: "101" or {extension: ...}."""
    return member if isinstance(member, str) else str(member["extension"])


def usages(data: Mapping[str, Any], number: str) -> list[str]:
    """Why calls still go to extension or department `number`: what sends them there, in the
    admin's words. Empty when nothing does (a department's own no-answer scheme aside)."""
    found = [_("Phone number %(number)s sends its calls here.", number=n["number"])
             for n in data.get("numbers", []) if n.get("destination") == number]
    here = (number, VOICEMAIL_PREFIX + number)  # the number itself, or its mailbox
    found += [_("The caller rule for %(match)s sends calls here.", match=r["match"])
              for r in data.get("rules", []) if r.get("to") in here]
    found += [_("The schedule %(name)s sends calls here out of hours.", name=s["name"])
              for s in data.get("schedules", []) if s.get("after_hours") in here]
    found += [_("Department %(number)s %(name)s sends its unanswered calls here.",
                number=d["number"], name=d["name"])
              for d in data.get("departments", [])
              if d["number"] != number and number in _no_answer_targets(d.get("no_answer"))]
    return found


def _no_answer_targets(no_answer: object) -> set[str]:
    """The numbers a no-answer scheme sends calls to, mailboxes included."""
    if not isinstance(no_answer, Mapping):
        return set()
    targets = {str(no_answer[key]) for key in ("to", "reserve") if key in no_answer}
    for step in no_answer.get("steps", []) or []:
        if isinstance(step, Mapping) and "to" in step:
            targets.add(str(step["to"]))
    return {target.removeprefix(VOICEMAIL_PREFIX) for target in targets}


# --------------------------------------------------------------------------- form values
# The form is shown from `values`: text as typed (or as stored), flags as booleans, and the
# member and no-answer step rows as lists of dicts of text.


def _text_of(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _values_of(department: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The form's values for a stored department (or defaults for a new one)."""
    values: dict[str, Any] = {
        "number": department.get("number", ""), "name": department.get("name", ""),
        "strategy": department.get("strategy", "ring_all"),
        "ring_timeout_s": _text_of(department.get("ring_timeout_s", DEFAULT_RING_TIMEOUT_S)),
        "schedule": department.get("schedule") if isinstance(department.get("schedule"),
                                                               str) else "",
    }
    for key, default in KNOB_DEFAULTS.items():
        values[key] = _text_of(department.get(key, default))
    queue = department.get("queue")
    values["queue"] = isinstance(queue, Mapping)
    queue_data: Mapping[str, Any] = queue if isinstance(queue, Mapping) else {}
    for key, default in QUEUE_DEFAULTS.items():
        values[key] = _text_of(queue_data.get(key, default))
    callback = queue_data.get("callback", False)
    values["callback"] = callback is True or isinstance(callback, Mapping)
    callback_data: Mapping[str, Any] = callback if isinstance(callback, Mapping) else {}
    max_wait_s = int(queue_data.get("max_wait_s", QUEUE_DEFAULTS["max_wait_s"]))
    for key, default in CALLBACK_DEFAULTS.items():
        if key == "expire_s":
            default = max(max_wait_s, CALLBACK_RANGES["expire_s"][0])
        values[f"callback_{key}"] = _text_of(callback_data.get(key, default))
    values["callback_apology"] = callback_data.get("apology",
                                                   CALLBACK_APOLOGY_DEFAULT) is not False
    values["members"] = [_member_row(member, position)
                         for position, member in enumerate(department.get("members", []), 1)]
    internal = {e["number"] for e in data["extensions"]} | {
        d["number"] for d in data["departments"]}
    values.update(_no_answer_values(department.get("no_answer"), internal,
                                    str(values["number"])))
    return values


def _member_row(member: str | Mapping[str, Any], position: int) -> dict[str, str]:
    data: Mapping[str, Any] = {} if isinstance(member, str) else member
    skills = data.get("skills")
    return {
        "extension": member_extension(member), "position": str(position),
        "ring_time_s": _text_of(data.get("ring_time_s")), "rank": _text_of(data.get("rank")),
        "tier": _text_of(data.get("tier")), "weight": _text_of(data.get("weight")),
        "skills": ", ".join(str(s) for s in skills) if isinstance(skills, list) else "",
    }


def _no_answer_values(no_answer: object, internal: set[str], own: str) -> dict[str, Any]:
    values: dict[str, Any] = {"no_answer": "none", "no_answer_to": "", "no_answer_number": "",
                              "no_answer_mailbox": "", "no_answer_time_s": "", "reserve": "",
                              "steps": []}
    if not isinstance(no_answer, Mapping):
        return values
    values["reserve"] = _text_of(no_answer.get("reserve"))
    if "action" in no_answer:
        to = _text_of(no_answer.get("to"))
        if no_answer.get("action") == VOICEMAIL:
            # No `to`: the department's own mailbox, which the form offers as "" (its own
            # number is the same mailbox).
            values.update(no_answer="voicemail", no_answer_mailbox="" if to == own else to)
        # One destination: a department or an employee is a transfer, anything else goes out
        # through the provider (the configuration reads both the same way).
        elif to in internal:
            values.update(no_answer="transfer", no_answer_to=to)
        else:
            values.update(no_answer="forward", no_answer_number=to)
        values["no_answer_time_s"] = _text_of(no_answer.get("time_s"))
    elif no_answer.get("steps"):
        values["no_answer"] = "steps"
        values["steps"] = [{"to": _text_of(step.get("to")),
                            "time_s": _text_of(step.get("time_s"))}
                           for step in no_answer["steps"] if isinstance(step, Mapping)]
    return values


def _values_from_form(form: Mapping[str, str], old: Mapping[str, Any]) -> dict[str, Any]:
    """The submitted values, as typed."""
    values: dict[str, Any] = {key: text(form, key) for key in (
        "number", "name", "strategy", "ring_timeout_s", "schedule", *KNOB_DEFAULTS,
        *QUEUE_DEFAULTS, *(f"callback_{key}" for key in CALLBACK_DEFAULTS), "no_answer",
        "no_answer_to", "no_answer_number", "no_answer_mailbox", "no_answer_time_s",
        "reserve")}
    if old:
        values["number"] = old["number"]  # a department keeps its number
    values["queue"] = "queue" in form
    values["callback"] = "callback" in form
    values["callback_apology"] = "callback_apology" in form
    values["members"] = []
    for index in range(MAX_MEMBER_ROWS):
        extension = text(form, f"m-{index}-extension")
        if not extension:
            break
        row = {"extension": extension}
        row.update({key: text(form, f"m-{index}-{key}") for key in MEMBER_FIELDS})
        values["members"].append(row)
    values["steps"] = []
    for index in range(MAX_STEP_ROWS):
        if f"s-{index}-to" not in form:
            break
        row = {"to": text(form, f"s-{index}-to"), "time_s": text(form, f"s-{index}-time_s")}
        if row["to"] or row["time_s"]:  # a cleared row is dropped
            values["steps"].append(row)
    return values


# --------------------------------------------------------------------------- row actions


def _sorted_by_position(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows in the order of their position numbers (rows without a valid one keep their
    place), renumbered 1, 2, 3..."""
    def key(item: tuple[int, dict[str, str]]) -> tuple[int, int]:
        index, row = item
        position = row.get("position", "")
        return (int(position) if position.isdigit() else index + 1, index)

    ordered = [row for _index, row in sorted(enumerate(rows), key=key)]
    for position, row in enumerate(ordered, start=1):
        row["position"] = str(position)
    return ordered


def _apply_action(action: str, values: dict[str, Any], data: Mapping[str, Any]) -> None:
    """Move, add or remove member rows, or add a no-answer step row (the form is redrawn, not
    saved)."""
    rows: list[dict[str, str]] = values["members"]
    verb, _sep, where = action.partition("-")
    if verb in ("up", "down", "remove") and where.isdigit() and int(where) < len(rows):
        index = int(where)
        if verb == "remove":
            rows.pop(index)
        else:
            other = index - 1 if verb == "up" else index + 1
            if 0 <= other < len(rows):
                rows[index], rows[other] = rows[other], rows[index]
        for position, row in enumerate(rows, start=1):
            row["position"] = str(position)
    elif verb == "add":
        values["members"] = _sorted_by_position(rows)
        _add_members(values, data)
    elif verb == "step":
        values["steps"].append({"to": "", "time_s": ""})
        values["no_answer"] = "steps"


def _add_members(values: dict[str, Any], data: Mapping[str, Any]) -> None:
    """Append the employees ticked under "Add to the department" (known ones, each once)."""
    known = {e["number"] for e in data["extensions"]}
    rows: list[dict[str, str]] = values["members"]
    present = {row["extension"] for row in rows}
    for extension in request.form.getlist("add"):
        if extension in known and extension not in present:
            present.add(extension)
            rows.append({"extension": extension, "position": str(len(rows) + 1),
                         **{key: "" for key in MEMBER_FIELDS if key != "position"}})


# --------------------------------------------------------------------------- validation


def _weight(raw: str, field: str, errors: FormErrors) -> int | float | None:
    try:
        value = float(raw.replace(",", "."))
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= WEIGHT_MAX):
        errors.need(field, False, _("Enter a percentage from 0 to 100, e.g. 30 or 12.5."))
        return None
    return int(value) if value.is_integer() else value


def _destination(raw: str, field: str, errors: FormErrors, internal: set[str],
                 own: str) -> str | None:
    """An extension or department, an outside number in full (more than 6 digits) or with
    "+" (a short number that is neither is more likely a typo than a number to dial out), or
    voicemail: "voicemail" (the mailbox of department `own`) or "voicemail:101", or
    "mobiles" (the members' mobile phones)."""
    written = raw.strip().lower()
    if written in (VOICEMAIL, MOBILES):
        return written
    if written.startswith(VOICEMAIL_PREFIX):
        mailbox = written.removeprefix(VOICEMAIL_PREFIX)
        errors.need(field, mailbox in internal or mailbox == own, _(
            'There is no mailbox "%(mailbox)s": write voicemail: and the number of an employee '
            "or a department, e.g. voicemail:101.", mailbox=mailbox))
        return written
    number = clean_phone(raw)
    if number in internal:
        return number
    if PHONE_RE.fullmatch(number) and (number.startswith("+") or len(number) > 6):
        return number
    errors.need(field, False, _('"%(number)s" is not an extension or a department. Write an '
                                'outside number in full, e.g. 79161234567, or with +.',
                                number=raw))
    return None


def _members(values: Mapping[str, Any], data: Mapping[str, Any],
             errors: FormErrors) -> list[str | dict[str, Any]]:
    known = {e["number"] for e in data["extensions"]}
    rows: list[dict[str, str]] = values["members"]
    checked: list[tuple[int, int, str | dict[str, Any]]] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        prefix = f"m-{index}-"
        extension = row["extension"]
        errors.need(prefix + "extension", extension in known,
                    _("There is no employee %(number)s.", number=extension))
        errors.need(prefix + "extension", extension not in seen,
                    _("Employee %(number)s is listed twice.", number=extension))
        seen.add(extension)
        position = parse_whole(row["position"], prefix + "position", errors, 1, MAX_MEMBER_ROWS)
        member: dict[str, Any] = {"extension": extension}
        for key, (low, high) in MEMBER_RANGES.items():
            if row[key]:
                member[key] = parse_whole(row[key], prefix + key, errors, low, high)
        if row["weight"]:
            member["weight"] = _weight(row["weight"], prefix + "weight", errors)
        if row["skills"]:
            member["skills"] = parse_skills(row["skills"], prefix + "skills", errors)
        plain: str | dict[str, Any] = extension if len(member) == 1 else member
        checked.append((position or 0, index, plain))
    return [member for _position, _index, member in sorted(checked, key=lambda m: m[:2])]


def _is_voicemail(destination: object) -> bool:
    return isinstance(destination, str) and (
        destination == VOICEMAIL or destination.startswith(VOICEMAIL_PREFIX))


def _no_answer(values: Mapping[str, Any], data: Mapping[str, Any], errors: FormErrors,
               ) -> dict[str, Any] | None:
    mode = values["no_answer"]
    if not errors.need("no_answer", mode in NO_ANSWER_MODES,
                       _("Choose what happens from the list.")):
        return None
    own = str(values["number"])
    internal = {e["number"] for e in data["extensions"]} | {
        d["number"] for d in data["departments"] if d["number"] != own}
    scheme: dict[str, Any] = {}
    low, high = STEP_TIME_RANGE
    if mode == "transfer":
        to = values["no_answer_to"]
        errors.need("no_answer_to", to in internal,
                    _("Choose a department or an employee from the list."))
        scheme = {"action": "transfer", "to": to}
    elif mode == "forward":
        number = clean_phone(values["no_answer_number"])
        errors.need("no_answer_number", bool(PHONE_RE.fullmatch(number)),
                    _("Digits with an optional + at the start, 3 to 15 digits, "
                      "e.g. +79161234567."))
        scheme = {"action": "forward", "to": number}
    elif mode == "voicemail":
        mailbox = values["no_answer_mailbox"]  # empty: the department's own
        errors.need("no_answer_mailbox", not mailbox or mailbox in internal,
                    _("Choose a mailbox from the list."))
        scheme = {"action": VOICEMAIL, "to": mailbox} if mailbox else {"action": VOICEMAIL}
    # The box answers voicemail at once: a ring time is for transfers and forwards only.
    if mode in ("transfer", "forward") and values["no_answer_time_s"]:  # empty: 30 s
        scheme["time_s"] = parse_whole(values["no_answer_time_s"], "no_answer_time_s", errors,
                                       low, high)
    if mode == "steps":
        steps = []
        for index, row in enumerate(values["steps"]):
            to_field, time_field = f"s-{index}-to", f"s-{index}-time_s"
            step: dict[str, Any] = {"to": row["to"]}
            if errors.need(to_field, bool(row["to"]), _("Enter where to, or clear the row.")):
                step["to"] = _destination(row["to"], to_field, errors, internal, own)
            if row["time_s"]:  # empty: the default, 30 s
                step["time_s"] = parse_whole(row["time_s"], time_field, errors, low, high)
            steps.append(step)
        errors.need("steps", bool(steps), _("Add at least one step: where to and for how "
                                            "long."))
        for index, step in enumerate(steps[:-1]):
            errors.need(f"s-{index}-to", not _is_voicemail(step["to"]),
                        _("Voicemail answers the call, so it must be the last step."))
        scheme = {"steps": steps}
    if values["reserve"]:
        scheme["reserve"] = _destination(values["reserve"], "reserve", errors, internal, own)
    return scheme or None


def _queue(values: Mapping[str, Any], old: object, errors: FormErrors) -> dict[str, Any]:
    """The queue block. As with the department's own keys, a value at its default is written
    only if the block had it before."""
    old_queue: Mapping[str, Any] = old if isinstance(old, Mapping) else {}
    queue: dict[str, Any] = {}
    for key, default in QUEUE_DEFAULTS.items():
        value = parse_whole(values[key], key, errors, *QUEUE_RANGES[key])
        if key == "announce_s" and value is not None and 0 < value < MIN_ANNOUNCE_S:
            errors.need(key, False, _("0 (plain ringing), or 10 to 600."))
        if value != default or key in old_queue:
            queue[key] = value
    if not values["callback"]:
        return queue
    old_callback = old_queue.get("callback")
    written: Mapping[str, Any] = old_callback if isinstance(old_callback, Mapping) else {}
    key_pressed = values["callback_key"]
    errors.need("callback_key", key_pressed in DTMF_KEYS, _("One phone key: a digit, * or #."))
    chosen: dict[str, Any] = {"key": key_pressed} | {
        key: parse_whole(values[f"callback_{key}"], f"callback_{key}", errors, low, high)
        for key, (low, high) in CALLBACK_RANGES.items()}
    # The expiry defaults to the longest wait (but is at least its own minimum).
    max_wait_s = queue.get("max_wait_s", QUEUE_DEFAULTS["max_wait_s"])
    defaults = CALLBACK_DEFAULTS | {
        "expire_s": max(max_wait_s or 0, CALLBACK_RANGES["expire_s"][0])}
    callback = {key: value for key, value in chosen.items()
                if value != defaults[key] or key in written}
    if values["callback_apology"] is not CALLBACK_APOLOGY_DEFAULT or "apology" in written:
        callback["apology"] = values["callback_apology"]
    # `callback: true` is the defaults.
    queue["callback"] = callback if callback else True
    return queue


def _build(values: dict[str, Any], data: Mapping[str, Any], old: Mapping[str, Any],
           errors: FormErrors) -> dict[str, Any]:
    """The department as the configuration writes it, from the form; `errors` says what is
    wrong (then the result is not to be saved)."""
    number = values["number"]
    if not old and errors.need("number", bool(EXTENSION_RE.fullmatch(number)),
                               _("Two to six digits, e.g. 200.")):
        errors.need("number", all(d["number"] != number for d in data["departments"]),
                    _("Department %(number)s already exists.", number=number))
        errors.need("number", all(e["number"] != number for e in data["extensions"]),
                    _("%(number)s is already an employee's extension.", number=number))
    errors.need("name", bool(values["name"]), _("Give the department a name."))
    errors.need("strategy", values["strategy"] in STRATEGY_NAMES,
                _("Choose a strategy from the list."))
    schedules = {s["name"] for s in data.get("schedules", [])}
    errors.need("schedule", not values["schedule"] or values["schedule"] in schedules,
                _("Choose a schedule from the list."))
    department: dict[str, Any] = {
        "number": number, "name": values["name"], "strategy": values["strategy"],
        "ring_timeout_s": parse_whole(values["ring_timeout_s"], "ring_timeout_s", errors,
                                      RING_TIMEOUT_MIN_S, RING_TIMEOUT_MAX_S),
        "members": _members(values, data, errors),
    }
    if values["schedule"]:
        department["schedule"] = values["schedule"]
    for key, default in KNOB_DEFAULTS.items():
        value: int | str | None
        if key in KNOB_CHOICES:
            value = values[key]
            errors.need(key, value in KNOB_CHOICES[key], _("Choose a value from the list."))
        else:
            low, high = KNOB_RANGES[key]
            value = parse_whole(values[key], key, errors, low, high)
        # A value at its default is written only if it was written before, so the exported
        # file stays as the admin wrote it.
        if value != default or key in old:
            department[key] = value
    if values["queue"]:
        department["queue"] = _queue(values, old.get("queue"), errors)
    no_answer = _no_answer(values, data, errors)
    if no_answer is not None:
        department["no_answer"] = no_answer
    return department


def _field_of(index: int, mode: str) -> Callable[[str], str | None]:
    """Where the form shows a refusal of the configuration's key at `path` when it is a key of
    the department at `index` (None: at the top of the form)."""
    prefix = f"departments[{index}]."

    def field_of(path: str) -> str | None:
        if not path.startswith(prefix):
            return None
        key = path.removeprefix(prefix)
        step = STEP_PATH_RE.fullmatch(key)
        if step is not None:
            return f"s-{step.group(1)}-{step.group(2)}"
        section, _dot, name = key.rpartition(".")
        if section == "no_answer":
            return {"to": ACTION_FIELDS.get(mode), "time_s": "no_answer_time_s",
                    "reserve": "reserve"}.get(name)
        if section == "queue.callback" and (name in CALLBACK_DEFAULTS or name == "apology"):
            return f"callback_{name}"
        if section == "queue" and name in QUEUE_DEFAULTS:
            return name
        return key if not section and key in DEPARTMENT_FIELDS else None

    return field_of


# --------------------------------------------------------------------------- pages


def _options(data: Mapping[str, Any], number: str) -> dict[str, Any]:
    """What the form's lists offer: employees, transfer destinations, schedules."""
    employees = {e["number"]: e["name"] for e in data["extensions"]}
    destinations = [(d["number"], _("Department %(number)s %(name)s", number=d["number"],
                                    name=d["name"]))
                    for d in data["departments"] if d["number"] != number]
    destinations += [(e["number"], f'{e["number"]} {e["name"]}') for e in data["extensions"]]
    # Suggested for a step and the reserve number, which are typed: voicemail as written.
    mailboxes = [(MOBILES, _("The members' mobile phones, all at once")),
                 (VOICEMAIL, _("Voicemail of this department"))] + [
        (VOICEMAIL_PREFIX + number, _("Voicemail: %(mailbox)s", mailbox=label))
        for number, label in destinations]
    return {
        "employees": employees, "destinations": destinations, "mailboxes": mailboxes,
        "schedules": [s["name"] for s in data.get("schedules", [])],
        "strategies": STRATEGY_CHOICES, "tier_modes": TIER_MODE_NAMES,
        "rank_modes": RANK_MODE_NAMES, "sticky_modes": STICKY_NAMES,
        "no_answer_modes": NO_ANSWER_NAMES, "dtmf_keys": DTMF_KEYS,
    }


def _form_page(values: Mapping[str, Any], errors: FormErrors, data: Mapping[str, Any], *,
               new: bool, reasons: Sequence[str] = ()) -> tuple[str, int]:
    present = {row["extension"] for row in values["members"]}
    page = render_template(
        "departments_form.html", values=values, errors=errors, new=new, reasons=reasons,
        addable=[e for e in data["extensions"] if e["number"] not in present],
        **_options(data, values["number"]))
    return page, 400 if errors or reasons else 200


def _submit(draft: configedit.Draft, old: dict[str, Any]) -> Any:
    """Handle a POST of the department form (new when `old` is empty)."""
    values = _values_from_form(request.form, old)
    action = request.form.get("action") or "save"
    errors = FormErrors()
    if action != "save":
        _apply_action(action, values, draft.data)
        return _form_page(values, errors, draft.data, new=not old)
    _add_members(values, draft.data)
    department = _build(values, draft.data, old, errors)
    if not errors:
        departments = draft.data["departments"]
        if old:
            departments[departments.index(old)] = department
        else:
            departments.append(department)
        field_of = _field_of(departments.index(department), values["no_answer"])
        if save_draft(draft, errors, field_of):
            flash(_("Department %(number)s %(name)s saved.", number=department["number"],
                    name=department["name"]))
            return redirect(url_for("departments.list_page"))
    return _form_page(values, errors, draft.data, new=not old)


def _find(data: Mapping[str, Any], number: str) -> dict[str, Any]:
    found = next((d for d in data["departments"] if d["number"] == number), None)
    if found is None:
        abort(404)
    department: dict[str, Any] = found
    return department


@bp.route("/departments")
@admin_required
def list_page() -> str:
    data = configedit.load().data
    return render_template("departments.html", departments=data["departments"],
                           strategy_names=STRATEGY_NAMES)


@bp.route("/departments/new", methods=["GET", "POST"])
@admin_required
def new_page() -> Any:
    draft = configedit.load()
    if request.method == "POST":
        return _submit(draft, {})
    taken = {d["number"] for d in draft.data["departments"]} | {
        e["number"] for e in draft.data["extensions"]}
    suggestion = next((str(n) for n in range(200, 1000, 100) if str(n) not in taken), "")
    return _form_page(_values_of({"number": suggestion}, draft.data), FormErrors(), draft.data,
                      new=True)


@bp.route("/departments/<number>", methods=["GET", "POST"])
@admin_required
def edit_page(number: str) -> Any:
    draft = configedit.load()
    old = _find(draft.data, number)
    if request.method == "POST":
        return _submit(draft, old)
    return _form_page(_values_of(old, draft.data), FormErrors(), draft.data, new=False)


@bp.route("/departments/<number>/delete", methods=["POST"])
@admin_required
def delete(number: str) -> Response | tuple[str, int]:
    draft = configedit.load()
    department = _find(draft.data, number)
    errors = FormErrors()
    reasons = usages(draft.data, number)
    if not reasons:
        draft.data["departments"] = [d for d in draft.data["departments"]
                                     if d is not department]
        if save_draft(draft, errors):
            flash(_("Department %(number)s %(name)s deleted.", number=number,
                    name=department["name"]))
            return redirect(url_for("departments.list_page"))
    else:
        errors["form"] = _("Department %(number)s was not deleted: calls are still sent to "
                           "it. Change these first:", number=number)
    fresh = configedit.load().data
    return _form_page(_values_of(_find(fresh, number), fresh), errors, fresh, new=False,
                      reasons=reasons)
