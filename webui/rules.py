"""Schedules and rules page: the site's time zone, opening-hour schedules with holidays and an
after-hours destination, caller rules (blacklist, VIP, route; checked top to bottom, the first
that matches and applies wins, so their order is edited here too), and the CRM owner settings
(the `crm` section and the phone → responsible extension table that `linebox crm import`
loads from CSV).

Every form edits exactly the keys and grammar of docs/config.md and is saved whole through
`configedit`. Caller rules have no names, so a rule is addressed by its place in the list plus
a fingerprint of its content: a form made before someone else reordered or changed the list
saves nothing rather than change the wrong rule.
"""

from __future__ import annotations

import csv
import datetime
import functools
import hashlib
import json
import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

# The caller-rule and opening-hours grammar itself (pure functions, the same ones the store's
# config parser uses), so the forms accept exactly what `linebox config import` accepts.
from firmware.routing.rules import (
    BLACKLIST,
    DEFAULT_REPLY,
    ROUTE,
    VIP,
    RuleSyntaxError,
    check_match,
    normalise_number,
)
from firmware.routing.schedule import WEEKDAY_NAMES, ScheduleError, load_zone, parse_time_range
from firmware.store.config import (
    DEFAULT_LANGUAGE,
    DEFAULT_TIMEZONE,
    PROMPT_LANGUAGES,
    WEBHOOK_TIMEOUT_MAX_S,
)

from . import configedit
from .db import get_store
from .forms import FormErrors, save_draft, text
from .numbers import (
    check_destination,
    check_url,
    destination_choices,
    internal_numbers,
    seconds,
    show_seconds,
    voicemail_choices,
)
from .security import admin_required

bp = Blueprint("rules", __name__)

WEEKDAY_LABELS = dict(zip(WEEKDAY_NAMES, (
    _l("Monday"), _l("Tuesday"), _l("Wednesday"), _l("Thursday"), _l("Friday"),
    _l("Saturday"), _l("Sunday")), strict=True))
WEEKDAY_SHORT = dict(zip(WEEKDAY_NAMES, (
    _l("Mon"), _l("Tue"), _l("Wed"), _l("Thu"), _l("Fri"), _l("Sat"), _l("Sun")), strict=True))
ACTION_CHOICES = (
    (BLACKLIST, _l("Blacklist: refuse the call")),
    (VIP, _l("VIP: first in the queue, or straight to someone")),
    (ROUTE, _l("Route: send the call to a destination")),
)
REPLY_CHOICES = (
    ("busy", _l("Busy: the caller hears busy (486)")),
    ("reject", _l("Decline: the call is declined (603)")),
)
# The language of the box's own voice prompts (voicemail greeting, callback apology), each
# named in itself, as language choices usually are.
LANGUAGE_NAMES = {"ru": "Русский", "en": "English"}
LANGUAGE_CHOICES = tuple((code, LANGUAGE_NAMES.get(code, code)) for code in PROMPT_LANGUAGES)
OWNERS_SHOWN = 20
_SEPARATORS_RE = re.compile(r"[,;\s]+")
_DASH_RE = re.compile(r"\s*[-–—]\s*")  # "09:00 – 18:00" as typed is "09:00-18:00"
_LOOSE_RANGE_RE = re.compile(r"(\d{1,2}):(\d\d)-(\d{1,2}):(\d\d)")
_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RUSSIAN_DATE_RE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")


@functools.cache
def time_zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


# --------------------------------------------------------------------------- form readers


def time_ranges(raw: str, field_name: str, errors: FormErrors) -> list[str]:
    """Ranges like "09:00-13:00, 14:00-18:00" (commas, semicolons or spaces between them),
    written back as the "HH:MM-HH:MM" docs/config.md asks for."""
    ranges: list[str] = []
    for piece in _SEPARATORS_RE.split(_DASH_RE.sub("-", raw.strip())):
        if not piece:
            continue
        found = _LOOSE_RANGE_RE.fullmatch(piece)
        if found is None:
            errors.need(field_name, False, _(
                'Write each range as HH:MM-HH:MM, e.g. 09:00-18:00; wrong: "%(range)s".',
                range=piece))
            return []
        start_h, start_m, end_h, end_m = (int(group) for group in found.groups())
        written = f"{start_h:02d}:{start_m:02d}-{end_h:02d}:{end_m:02d}"
        try:
            parse_time_range(written)
        except ScheduleError:
            if start_h > 23 or start_m > 59:
                message = _('"%(range)s": the start must be from 00:00 to 23:59.', range=piece)
            elif end_m > 59 or end_h > 24 or (end_h == 24 and end_m):
                message = _('"%(range)s": the end must be from 00:00 to 24:00.', range=piece)
            else:
                message = _('"%(range)s": a range must not end where it starts (the whole day '
                            "is 00:00-24:00).", range=piece)
            errors.need(field_name, False, message)
            return []
        ranges.append(written)
    return ranges


def holidays(raw: str, errors: FormErrors) -> list[str]:
    """Dates "2026-12-31" (or "31.12.2026"), each once."""
    dates: list[str] = []
    for piece in _SEPARATORS_RE.split(raw.strip()):
        if not piece:
            continue
        russian = _RUSSIAN_DATE_RE.fullmatch(piece)
        written = (f"{russian.group(3)}-{int(russian.group(2)):02d}-{int(russian.group(1)):02d}"
                   if russian else piece)
        try:
            if not _ISO_DATE_RE.fullmatch(written):
                raise ValueError(written)
            datetime.date.fromisoformat(written)
        except ValueError:
            errors.need("holidays", False, _(
                'Write each date as YYYY-MM-DD, e.g. 2026-12-31; wrong: "%(date)s".',
                date=piece))
            return []
        if written in dates:
            errors.need("holidays", False, _('The date %(date)s is listed twice.', date=written))
            return []
        dates.append(written)
    return sorted(dates)


def check_timezone(raw: str, field_name: str, errors: FormErrors) -> None:
    try:
        ok = bool(raw) and not any(c.isspace() for c in raw) and bool(load_zone(raw))
    except ScheduleError:
        ok = False
    errors.need(field_name, ok, _('Unknown time zone "%(zone)s": write an IANA name such as '
                                  "Europe/Moscow or Asia/Yekaterinburg.", zone=raw))


def fingerprint(rule: Mapping[str, Any]) -> str:
    """A short digest of a rule's content: forms carry it to prove they edit the rule they
    were made from."""
    return hashlib.sha256(json.dumps(rule, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the page


def _site_zone(data: Mapping[str, Any]) -> str:
    return str(data.get("site", {}).get("timezone", DEFAULT_TIMEZONE))


def _site_language(data: Mapping[str, Any]) -> str:
    return str(data.get("site", {}).get("language", DEFAULT_LANGUAGE))


def _destination_names(data: Mapping[str, Any]) -> dict[str, str]:
    return dict(destination_choices(data) + voicemail_choices(data))


def _used_by(data: Mapping[str, Any], schedule: str) -> list[str]:
    users = [_("department %(number)s", number=d["number"])
             for d in data.get("departments", []) if d.get("schedule") == schedule]
    users += [_("number %(number)s", number=n["number"])
              for n in data.get("numbers", []) if n.get("schedule") == schedule]
    return users


def _schedule_view(schedule: Mapping[str, Any], data: Mapping[str, Any],
                   names: Mapping[str, str]) -> dict[str, Any]:
    hours = schedule.get("hours", {})
    return {
        "name": schedule["name"],
        "timezone": schedule.get("timezone"),
        "days": [(WEEKDAY_SHORT[day], ", ".join(hours.get(day, []))) for day in WEEKDAY_NAMES],
        "holidays": schedule.get("holidays", []),
        "after_hours": names.get(schedule.get("after_hours") or "",
                                 schedule.get("after_hours")),
        "used_by": _used_by(data, schedule["name"]),
    }


def _match_kind(match: str) -> str:
    if match.startswith("_"):
        return str(_("pattern"))
    if match.endswith("*"):
        return str(_("prefix"))
    return str(_("exact number"))


def _rule_view(index: int, rule: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    actions = dict(ACTION_CHOICES)
    replies = dict(REPLY_CHOICES)
    to = rule.get("to")
    return {
        "index": index, "fingerprint": fingerprint(rule), "match": rule["match"],
        "kind": _match_kind(str(rule["match"])), "action": rule["action"],
        "action_label": actions.get(rule["action"], rule["action"]),
        "reply": replies.get(rule.get("reply", DEFAULT_REPLY))
        if rule["action"] == BLACKLIST else None,
        "to": names.get(to, to) if to else None,
        "hours": ", ".join(rule.get("hours", [])),
        "weekdays": ", ".join(str(WEEKDAY_SHORT[d]) for d in rule.get("weekdays", [])),
    }


@bp.route("/rules")
@admin_required
def page() -> Any:
    return _page(FormErrors(), {})


def _page(errors: FormErrors, values: Mapping[str, str], status: int = 400) -> Any:
    data = configedit.load().data
    names = _destination_names(data)
    crm = data.get("crm", {})
    owners = sorted(get_store().crm_owners().items())
    shown = {"timezone": _site_zone(data), "language": _site_language(data),
             "url": crm.get("url", ""),
             "timeout_s": show_seconds(crm.get("timeout_s"))} | dict(values)
    return render_template(
        "rules.html", errors=errors, values=shown, zones=time_zones(),
        languages=LANGUAGE_CHOICES,
        schedules=[_schedule_view(s, data, names) for s in data.get("schedules", [])],
        rules=[_rule_view(i, r, names) for i, r in enumerate(data.get("rules", []))],
        owners=owners[:OWNERS_SHOWN], owners_total=len(owners),
    ), status if errors else 200


@bp.route("/rules/site", methods=["POST"])
@admin_required
def site() -> Any:
    """The office's time zone and the language of the box's voice prompts (`site`)."""
    draft = configedit.load()
    before = _site_language(draft.data)
    zone = text(request.form, "timezone")
    # A form without the field (made before it existed) keeps the language as it is.
    language = text(request.form, "language") if "language" in request.form else before
    errors = FormErrors()
    check_timezone(zone, "timezone", errors)
    errors.need("language", language in PROMPT_LANGUAGES,
                _("Choose a language from the list."))
    if not errors:
        draft.data["site"] = {"timezone": zone, "language": language}
        if save_draft(draft, errors):
            flash(_("The site's time zone is now %(zone)s.", zone=zone))
            if language != before:
                flash(_("The voice prompts are now in %(language)s.",
                        language=LANGUAGE_NAMES.get(language, language)))
            return redirect(url_for("rules.page", _anchor="site"))
    return _page(errors, {"timezone": zone, "language": language})


# --------------------------------------------------------------------------- schedules

SCHEDULE_FIELDS = ("name", "timezone", "holidays", "after_hours",
                   *(f"hours_{day}" for day in WEEKDAY_NAMES))


def _schedule_values(schedule: Mapping[str, Any]) -> dict[str, str]:
    hours = schedule.get("hours", {})
    return {
        "name": schedule.get("name", ""), "timezone": schedule.get("timezone", ""),
        "holidays": "\n".join(schedule.get("holidays", [])),
        "after_hours": schedule.get("after_hours", ""),
    } | {f"hours_{day}": ", ".join(hours.get(day, [])) for day in WEEKDAY_NAMES}


@bp.route("/rules/schedules/new", methods=["GET", "POST"])
@admin_required
def schedule_new() -> Any:
    return _schedule_form(None)


@bp.route("/rules/schedules/<path:name>/edit", methods=["GET", "POST"])
@admin_required
def schedule_edit(name: str) -> Any:
    return _schedule_form(name)


def _schedule_form(name: str | None) -> Any:
    draft = configedit.load()
    data = draft.data
    schedules: list[dict[str, Any]] = data.setdefault("schedules", [])
    index = next((i for i, s in enumerate(schedules) if s["name"] == name), None)
    if name is not None and index is None:
        abort(404)
    values = _schedule_values(schedules[index] if index is not None else {
        "hours": {day: ["09:00-18:00"] for day in WEEKDAY_NAMES[:5]}})
    errors = FormErrors()
    if request.method == "POST":
        values = {key: text(request.form, key) for key in SCHEDULE_FIELDS}
        new = _check_schedule(values, errors, data, index)
        if not errors:
            if index is None:
                schedules.append(new)
            else:
                schedules[index] = new
                for user in (*data["departments"], *data["numbers"]):
                    if user.get("schedule") == name:  # a renamed schedule keeps its users
                        user["schedule"] = new["name"]
            if save_draft(draft, errors):
                flash(_("Schedule %(name)s saved.", name=new["name"]))
                return redirect(url_for("rules.page", _anchor="schedules"))
    return render_template(
        "rules_schedule.html", values=values, errors=errors, editing=name,
        weekdays=[(day, WEEKDAY_LABELS[day]) for day in WEEKDAY_NAMES],
        site_zone=_site_zone(data), zones=time_zones(),
        destinations=destination_choices(data) + voicemail_choices(data),
    ), 400 if errors else 200


def _check_schedule(values: dict[str, str], errors: FormErrors, data: Mapping[str, Any],
                    index: int | None) -> dict[str, Any]:
    name = values["name"]
    if errors.need("name", bool(name), _("Give the schedule a name.")):
        errors.need("name", all(s["name"] != name for i, s in enumerate(data["schedules"])
                                if i != index),
                    _("Another schedule already has this name."))
    zone = values["timezone"]
    if zone:
        check_timezone(zone, "timezone", errors)
    hours = {day: time_ranges(values[f"hours_{day}"], f"hours_{day}", errors)
             for day in WEEKDAY_NAMES}
    dates = holidays(values["holidays"], errors)
    after_hours = values["after_hours"]
    if after_hours:
        check_destination(after_hours, "after_hours", errors, internal_numbers(data),
                          external=True, voicemail=True)
    new: dict[str, Any] = {"name": name, "hours": hours, "holidays": dates}
    if zone:
        new["timezone"] = zone
    if after_hours:
        new["after_hours"] = after_hours
    return new


@bp.route("/rules/schedules/<path:name>/delete", methods=["POST"])
@admin_required
def schedule_delete(name: str) -> Any:
    draft = configedit.load()
    schedules = draft.data.get("schedules", [])
    if all(s["name"] != name for s in schedules):
        abort(404)
    errors = FormErrors()
    users = _used_by(draft.data, name)
    if users:
        errors["form"] = _("Schedule %(name)s is used by %(users)s: choose another schedule "
                           "there first.", name=name, users=", ".join(users))
        return _page(errors, {})
    draft.data["schedules"] = [s for s in schedules if s["name"] != name]
    if not save_draft(draft, errors):
        return _page(errors, {})
    flash(_("Schedule %(name)s deleted.", name=name))
    return redirect(url_for("rules.page", _anchor="schedules"))


# --------------------------------------------------------------------------- caller rules

RULE_FIELDS = ("match", "action", "reply", "to", "hours")


def _rule_values(rule: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "match": rule.get("match", ""), "action": rule.get("action", BLACKLIST),
        "reply": rule.get("reply", DEFAULT_REPLY), "to": rule.get("to", ""),
        "hours": ", ".join(rule.get("hours", [])), "weekdays": list(rule.get("weekdays", [])),
        "fingerprint": fingerprint(rule) if rule else "",
    }


def _stale(rules: list[dict[str, Any]], index: int, sent: str) -> bool:
    """Whether the form was made for another rule than the one now at `index`."""
    return not (0 <= index < len(rules)) or fingerprint(rules[index]) != sent


STALE_RULES = _l("The caller rules were changed elsewhere meanwhile (another rule may now be "
                 "in this place), so nothing was saved. Open the list again.")


@bp.route("/rules/callers/new", methods=["GET", "POST"])
@admin_required
def rule_new() -> Any:
    return _rule_form(None)


@bp.route("/rules/callers/<int:index>/edit", methods=["GET", "POST"])
@admin_required
def rule_edit(index: int) -> Any:
    return _rule_form(index)


def _rule_form(index: int | None) -> Any:
    draft = configedit.load()
    data = draft.data
    rules: list[dict[str, Any]] = data.setdefault("rules", [])
    if index is not None and not 0 <= index < len(rules):
        abort(404)
    values = _rule_values(rules[index] if index is not None else {})
    errors = FormErrors()
    status = 400
    if request.method == "POST":
        form = request.form
        values = {key: text(form, key) for key in RULE_FIELDS} | {
            "weekdays": form.getlist("weekdays"), "fingerprint": text(form, "fingerprint")}
        new = _check_rule(values, errors, data)
        if index is not None and _stale(rules, index, values["fingerprint"]):
            errors["form"] = str(STALE_RULES)
            status = 409
        if not errors:
            if index is None:
                rules.append(new)
            else:
                rules[index] = new
            if save_draft(draft, errors):
                flash(_("Caller rule for %(match)s saved.", match=new["match"]))
                return redirect(url_for("rules.page", _anchor="rules"))
    return render_template(
        "rules_rule.html", values=values, errors=errors, editing=index,
        actions=ACTION_CHOICES, replies=REPLY_CHOICES,
        weekdays=[(day, WEEKDAY_LABELS[day]) for day in WEEKDAY_NAMES],
        destinations=destination_choices(data) + voicemail_choices(data),
        site_zone=_site_zone(data),
    ), status if errors else 200


def _check_rule(values: dict[str, Any], errors: FormErrors,
                data: Mapping[str, Any]) -> dict[str, Any]:
    match = str(values["match"])
    try:
        check_match(match)
    except RuleSyntaxError:
        if match.startswith("_"):
            message = _('A pattern is _ followed by digits, X (any digit), Z (1-9), N (2-9), '
                        'classes like [1-5] and an optional final "."; wrong: "%(match)s".',
                        match=match)
        elif match.endswith("*"):
            message = _('A prefix is 1 to 15 digits followed by *, e.g. 7495*; wrong: '
                        '"%(match)s".', match=match)
        else:
            message = _('Write a number (79990000000), a prefix ending in * (7495*) or a '
                        'pattern starting with _ (_79XXXXXXXXX); wrong: "%(match)s".',
                        match=match)
        errors.need("match", False, message)
    action = values["action"]
    errors.need("action", action in dict(ACTION_CHOICES), _("Choose an action from the list."))
    new: dict[str, Any] = {"match": match, "action": action}
    to = str(values["to"])
    internal = internal_numbers(data)
    if action == BLACKLIST:
        # A blacklist rule sends the call nowhere: `to` is not asked (the form hides it).
        reply = values["reply"]
        errors.need("reply", reply in dict(REPLY_CHOICES), _("Choose busy or decline."))
        new["reply"] = reply
    elif action == ROUTE:
        if errors.need("to", bool(to), _("A route rule needs a destination.")):
            check_destination(to, "to", errors, internal, external=True, voicemail=True)
        new["to"] = to
    elif action == VIP and to:
        check_destination(to, "to", errors, internal, external=False)
        new["to"] = to
    hours = time_ranges(str(values["hours"]), "hours", errors)
    if hours:
        new["hours"] = hours
    weekdays = values["weekdays"]
    errors.need("weekdays", all(day in WEEKDAY_NAMES for day in weekdays),
                _("Choose the days from the list."))
    if weekdays:
        new["weekdays"] = [day for day in WEEKDAY_NAMES if day in weekdays]
    return new


def _rules_for(index: int) -> tuple[configedit.Draft, list[dict[str, Any]]]:
    """The configuration and its caller rules, for a form posted about the rule at `index`;
    a form made for another rule than the one now there gets the list page (409) instead."""
    draft = configedit.load()
    rules: list[dict[str, Any]] = draft.data.get("rules", [])
    if _stale(rules, index, text(request.form, "fingerprint")):
        errors = FormErrors()
        errors["form"] = str(STALE_RULES)
        abort(make_response(_page(errors, {}, 409)))
    return draft, rules


@bp.route("/rules/callers/<int:index>/delete", methods=["POST"])
@admin_required
def rule_delete(index: int) -> Any:
    draft, rules = _rules_for(index)
    errors = FormErrors()
    removed = rules.pop(index)
    if not save_draft(draft, errors):
        return _page(errors, {})
    flash(_("Caller rule for %(match)s deleted.", match=removed["match"]))
    return redirect(url_for("rules.page", _anchor="rules"))


@bp.route("/rules/callers/<int:index>/move", methods=["POST"])
@admin_required
def rule_move(index: int) -> Any:
    """Move a rule one place up or down: the first matching rule wins, so order matters."""
    draft, rules = _rules_for(index)
    errors = FormErrors()
    other = index - 1 if request.form.get("direction") == "up" else index + 1
    if 0 <= other < len(rules):
        rules[index], rules[other] = rules[other], rules[index]
        if not save_draft(draft, errors):
            return _page(errors, {})
    return redirect(url_for("rules.page", _anchor="rules"))


# --------------------------------------------------------------------------- CRM


@bp.route("/rules/crm", methods=["POST"])
@admin_required
def crm() -> Any:
    form = request.form
    values = {"url": text(form, "url"), "timeout_s": text(form, "timeout_s")}
    errors = FormErrors()
    url = check_url(values["url"], "url", errors)
    timeout_s = seconds(form, "timeout_s", errors, WEBHOOK_TIMEOUT_MAX_S)
    if not errors:
        draft = configedit.load()
        section: dict[str, Any] = {}
        if url:
            section["url"] = url
        if timeout_s is not None:
            section["timeout_s"] = timeout_s
        draft.data["crm"] = section
        if save_draft(draft, errors):
            flash(_("CRM settings saved."))
            return redirect(url_for("rules.page", _anchor="crm"))
    return _page(errors, values)


def read_owners(raw: bytes, extensions: set[str], errors: FormErrors) -> dict[str, str]:
    """phone,extension rows as `linebox crm import` reads them: a header row is skipped, every
    phone is compared normalised, every extension must exist. The first wrong line is named."""
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        content = raw.decode("cp1251")  # a spreadsheet saved on Russian Windows
    lines = content.splitlines()
    first = next((line for line in lines if line.strip()), "")
    # Spreadsheets in a Russian locale separate columns with ";".
    delimiter = ";" if ";" in first and "," not in first else ","
    owners: dict[str, str] = {}
    for line_number, row in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        if not row or (line_number == 1 and not any(c.isdigit() for c in row[0])):
            continue
        if len(row) < 2:
            errors.need("file", False, _("Line %(line)d: expected phone,extension. Nothing was "
                                         "changed.", line=line_number))
            return {}
        phone, extension = normalise_number(row[0].strip()), row[1].strip()
        if not phone.isdigit():
            errors.need("file", False, _('Line %(line)d: "%(phone)s" is not a phone number. '
                                         "Nothing was changed.", line=line_number,
                                         phone=row[0].strip()))
            return {}
        if extension not in extensions:
            errors.need("file", False, _('Line %(line)d: unknown extension "%(extension)s". '
                                         "Nothing was changed.", line=line_number,
                                         extension=extension))
            return {}
        owners[phone] = extension
    errors.need("file", bool(owners), _("The file has no phone,extension rows. Nothing was "
                                        "changed."))
    return owners


@bp.route("/rules/crm/owners", methods=["POST"])
@admin_required
def crm_owners() -> Any:
    errors = FormErrors()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        errors["file"] = _("Choose a CSV file.")
        return _page(errors, {})
    extensions = {str(e["number"]) for e in configedit.load().data["extensions"]}
    owners = read_owners(upload.read(), extensions, errors)
    if errors:
        return _page(errors, {})
    get_store().replace_crm_owners(owners)
    flash(_("Imported %(count)d responsible managers.", count=len(owners)))
    return redirect(url_for("rules.page", _anchor="crm"))


@bp.route("/rules/crm/owners/clear", methods=["POST"])
@admin_required
def crm_owners_clear() -> Any:
    get_store().replace_crm_owners({})
    flash(_("The table of responsible managers is empty now."))
    return redirect(url_for("rules.page", _anchor="crm"))
