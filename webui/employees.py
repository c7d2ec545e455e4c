"""Employees page: the office's phones (`extensions`) with their extension number, name, mobile
number, skills, the departments they belong to, and which external numbers each may call and
how many calls an hour (the toll guard, `firmware.routing.tollguard`).

An employee's SIP password is never typed in: it is generated when the employee is added (or
reset) and shown once, on the page that follows. Every form is validated here with a message
next to each field, then applied to the whole configuration and saved at once through
`configedit` (validated like `linebox config import`), so nothing is half-saved. Deleting an
employee also takes them out of their departments; while a phone number, a caller rule, a
schedule or a department's no-answer scheme still sends calls to them, the deletion is refused
with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
from werkzeug.wrappers import Response

from firmware.routing.tollguard import (
    CALLS_PER_HOUR_MAX,
    DEFAULT_EXTENSION_CALLS_PER_HOUR,
    DEFAULT_OUTBOUND,
    INTERNAL,
    INTERNATIONAL,
    LOCAL,
    LONG_DISTANCE,
    MOBILE,
)

from . import configedit
from .departments import member_extension, usages
from .forms import (
    EXTENSION_RE,
    PHONE_RE,
    FormErrors,
    clean_phone,
    new_sip_password,
    parse_skills,
    parse_whole,
    save_draft,
    text,
)
from .security import AGENT, account_of, admin_required, end_sessions

bp = Blueprint("employees", __name__)

# The `outbound` classes as the form offers them, each including the ones before it.
OUTBOUND_CHOICES = (
    (INTERNAL, _l("Internal calls only")),
    (LOCAL, _l("Local numbers")),
    (MOBILE, _l("Local and mobile numbers")),
    (LONG_DISTANCE, _l("Long distance within the country")),
    (INTERNATIONAL, _l("International too")),
)
# The form's fields that an extension's configuration keys of the same name fill.
GUARD_KEYS = ("outbound", "external_calls_per_hour")
FORM_KEYS = ("name", "mobile", "skills", *GUARD_KEYS)
NEW_GUARD_VALUES = {"outbound": DEFAULT_OUTBOUND,
                    "external_calls_per_hour": str(DEFAULT_EXTENSION_CALLS_PER_HOUR)}


# --------------------------------------------------------------------------- helpers


def departments_of(data: Mapping[str, Any], number: str) -> list[dict[str, Any]]:
    return [d for d in data["departments"]
            if any(member_extension(m) == number for m in d.get("members", []))]


def _find(data: Mapping[str, Any], number: str) -> dict[str, Any]:
    found = next((e for e in data["extensions"] if e["number"] == number), None)
    if found is None:
        abort(404)
    employee: dict[str, Any] = found
    return employee


def _values_of(data: Mapping[str, Any], employee: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "number": employee["number"], "name": employee["name"],
        "mobile": employee.get("mobile", ""),
        "skills": ", ".join(employee.get("skills", [])),
        "departments": [d["number"] for d in departments_of(data, employee["number"])],
        "outbound": employee.get("outbound", DEFAULT_OUTBOUND),
        "external_calls_per_hour": str(employee.get("external_calls_per_hour",
                                                    DEFAULT_EXTENSION_CALLS_PER_HOUR)),
    }


def _read_form(data: Mapping[str, Any], errors: FormErrors, *, new: bool,
               before: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The submitted values (to show again) and the skills, with errors for what is wrong; the
    toll guard's fields keep their `before` values when a form leaves them out."""
    form = request.form
    values: dict[str, Any] = {
        "number": text(form, "number"), "name": text(form, "name"),
        "mobile": clean_phone(text(form, "mobile")), "skills": text(form, "skills"),
        "departments": form.getlist("departments"),
        **{key: text(form, key) if key in form else before[key] for key in GUARD_KEYS},
    }
    if new:
        number = values["number"]
        if errors.need("number", bool(EXTENSION_RE.fullmatch(number)),
                       _("Two to six digits, e.g. 101.")):
            errors.need("number", all(e["number"] != number for e in data["extensions"]),
                        _("Extension %(number)s already exists.", number=number))
            errors.need("number", all(d["number"] != number for d in data["departments"]),
                        _("%(number)s is already a department's number.", number=number))
    errors.need("name", bool(values["name"]), _("Enter the employee's name."))
    if values["mobile"]:
        errors.need("mobile", bool(PHONE_RE.fullmatch(values["mobile"])),
                    _("Digits with an optional + at the start, 3 to 15 digits, "
                      "e.g. +79161234567."))
    skills = parse_skills(values["skills"], "skills", errors)
    known = {d["number"] for d in data["departments"]}
    errors.need("departments", all(n in known for n in values["departments"]),
                _("Choose departments from the list."))
    errors.need("outbound", values["outbound"] in dict(OUTBOUND_CHOICES),
                _("Choose which external numbers the employee may call from the list."))
    parse_whole(values["external_calls_per_hour"], "external_calls_per_hour", errors, 1,
                CALLS_PER_HOUR_MAX)
    return values, skills


def _apply(data: dict[str, Any], employee: dict[str, Any], values: Mapping[str, Any],
           skills: Sequence[str]) -> None:
    """Put the form's values into `employee` and its department memberships into `data`."""
    employee["name"] = values["name"]
    for key, value in (("mobile", values["mobile"]), ("skills", list(skills))):
        if value:
            employee[key] = value
        else:
            employee.pop(key, None)
    employee["outbound"] = values["outbound"]
    employee["external_calls_per_hour"] = int(values["external_calls_per_hour"])
    number = employee["number"]
    chosen = set(values["departments"])
    for department in data["departments"]:
        members = department.setdefault("members", [])
        is_member = any(member_extension(m) == number for m in members)
        if department["number"] in chosen and not is_member:
            members.append(number)
        elif department["number"] not in chosen and is_member:
            department["members"] = [m for m in members if member_extension(m) != number]


def _form_page(values: Mapping[str, Any], errors: FormErrors, *, new: bool,
               data: Mapping[str, Any], reasons: Sequence[str] = ()) -> tuple[str, int]:
    page = render_template("employees_form.html", values=values, errors=errors, new=new,
                           departments=data["departments"], reasons=reasons,
                           outbound_choices=OUTBOUND_CHOICES, calls_max=CALLS_PER_HOUR_MAX)
    return page, 400 if errors or reasons else 200


def _password_page(employee: Mapping[str, Any], *, new: bool) -> Response:
    """The new password, shown once: the browser is told not to keep the page."""
    response = make_response(render_template("employees_password.html", employee=employee,
                                             new=new))
    response.headers["Cache-Control"] = "no-store"
    return response


# --------------------------------------------------------------------------- pages


@bp.route("/employees")
@admin_required
def list_page() -> str:
    data = configedit.load().data
    rows = [
        {**employee, "departments": departments_of(data, employee["number"])}
        for employee in data["extensions"]
    ]
    return render_template("employees.html", employees=rows)


@bp.route("/employees/new", methods=["GET", "POST"])
@admin_required
def new_page() -> Any:
    draft = configedit.load()
    errors = FormErrors()
    if request.method == "GET":
        values: dict[str, Any] = {
            "number": _next_free_number(draft.data), "name": "", "mobile": "", "skills": "",
            "departments": [], **NEW_GUARD_VALUES,
        }
        return _form_page(values, errors, new=True, data=draft.data)
    values, skills = _read_form(draft.data, errors, new=True, before=NEW_GUARD_VALUES)
    if not errors:
        employee: dict[str, Any] = {"number": values["number"], "name": values["name"],
                                    "password": new_sip_password()}
        draft.data["extensions"].append(employee)
        _apply(draft.data, employee, values, skills)
        if save_draft(draft, errors, _field_of(draft.data, employee)):
            return _password_page(employee, new=True)
    return _form_page(values, errors, new=True, data=draft.data)


@bp.route("/employees/<number>", methods=["GET", "POST"])
@admin_required
def edit_page(number: str) -> Any:
    draft = configedit.load()
    employee = _find(draft.data, number)
    errors = FormErrors()
    if request.method == "GET":
        return _form_page(_values_of(draft.data, employee), errors, new=False, data=draft.data)
    values, skills = _read_form(draft.data, errors, new=False,
                                before=_values_of(draft.data, employee))
    values["number"] = number
    if not errors:
        _apply(draft.data, employee, values, skills)
        if save_draft(draft, errors, _field_of(draft.data, employee)):
            flash(_("Employee %(number)s %(name)s saved.", number=number, name=values["name"]))
            return redirect(url_for("employees.list_page"))
    return _form_page(values, errors, new=False, data=draft.data)


@bp.route("/employees/<number>/password", methods=["POST"])
@admin_required
def reset_password(number: str) -> Any:
    draft = configedit.load()
    employee = _find(draft.data, number)
    employee["password"] = new_sip_password()
    errors = FormErrors()
    if save_draft(draft, errors):
        end_sessions(account_of(AGENT, number))  # the web UI login was the old password
        return _password_page(employee, new=False)
    fresh = configedit.load().data
    return _form_page(_values_of(fresh, _find(fresh, number)), errors, new=False, data=fresh)


@bp.route("/employees/<number>/delete", methods=["POST"])
@admin_required
def delete(number: str) -> Response | tuple[str, int]:
    draft = configedit.load()
    employee = _find(draft.data, number)
    errors = FormErrors()
    reasons = usages(draft.data, number)
    if not reasons:
        draft.data["extensions"] = [e for e in draft.data["extensions"] if e is not employee]
        for department in draft.data["departments"]:
            department["members"] = [m for m in department.get("members", [])
                                     if member_extension(m) != number]
        if save_draft(draft, errors):
            flash(_("Employee %(number)s %(name)s deleted.", number=number,
                    name=employee["name"]))
            return redirect(url_for("employees.list_page"))
    fresh = configedit.load().data
    if reasons:
        errors["form"] = _("Employee %(number)s was not deleted: calls are still sent to "
                           "this extension. Change these first:", number=number)
    return _form_page(_values_of(fresh, _find(fresh, number)), errors, new=False, data=fresh,
                      reasons=reasons)


def _field_of(data: Mapping[str, Any], employee: Mapping[str, Any]) -> Callable[[str], str | None]:
    """The form field beside which a refusal of the saved configuration goes: the one filled
    from the refused key of this employee (`extensions[N].name` → name), else none."""
    index = next(i for i, e in enumerate(data["extensions"]) if e is employee)
    prefix = f"extensions[{index}]."

    def field_of(path: str) -> str | None:
        key = path.removeprefix(prefix)
        return key if path.startswith(prefix) and key in FORM_KEYS else None

    return field_of


def _next_free_number(data: Mapping[str, Any]) -> str:
    """The extension after the highest one in use (a suggestion the admin may change)."""
    taken = {e["number"] for e in data["extensions"]} | {d["number"] for d in
                                                          data["departments"]}
    candidate = max((int(e["number"]) for e in data["extensions"]
                     if EXTENSION_RE.fullmatch(e["number"])), default=100) + 1
    for _attempt in range(1000):  # bounded: skip over numbers in use
        if str(candidate) not in taken and EXTENSION_RE.fullmatch(str(candidate)):
            return str(candidate)
        candidate += 1
    return ""
