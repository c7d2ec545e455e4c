"""Employees page: the office's phones (`extensions`) with their extension number, name, mobile
number, skills and the departments they belong to.

An employee's SIP password is never typed in: it is generated when the employee is added (or
reset) and shown once, on the page that follows. Every form is validated here with a message
next to each field, then applied to the whole configuration and saved at once through
`configedit` (validated like `linebox config import`), so nothing is half-saved. Deleting an
employee also takes them out of their departments; while a phone number, a caller rule, a
schedule or a department's no-answer scheme still sends calls to them, the deletion is refused
with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from werkzeug.wrappers import Response

from . import configedit
from .departments import member_extension, usages
from .forms import (
    EXTENSION_RE,
    PHONE_RE,
    FormErrors,
    clean_phone,
    new_sip_password,
    parse_skills,
    save_draft,
    text,
)
from .security import AGENT, account_of, admin_required, end_sessions

bp = Blueprint("employees", __name__)


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
    }


def _read_form(data: Mapping[str, Any], errors: FormErrors, *,
               new: bool) -> tuple[dict[str, Any], list[str]]:
    """The submitted values (to show again) and the skills, with errors for what is wrong."""
    form = request.form
    values: dict[str, Any] = {
        "number": text(form, "number"), "name": text(form, "name"),
        "mobile": clean_phone(text(form, "mobile")), "skills": text(form, "skills"),
        "departments": form.getlist("departments"),
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
                           departments=data["departments"], reasons=reasons)
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
        values: dict[str, Any] = {"number": _next_free_number(draft.data), "name": "",
                                  "mobile": "", "skills": "", "departments": []}
        return _form_page(values, errors, new=True, data=draft.data)
    values, skills = _read_form(draft.data, errors, new=True)
    if not errors:
        employee: dict[str, Any] = {"number": values["number"], "name": values["name"],
                                    "password": new_sip_password()}
        draft.data["extensions"].append(employee)
        _apply(draft.data, employee, values, skills)
        if save_draft(draft, errors):
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
    values, skills = _read_form(draft.data, errors, new=False)
    values["number"] = number
    if not errors:
        _apply(draft.data, employee, values, skills)
        if save_draft(draft, errors):
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
