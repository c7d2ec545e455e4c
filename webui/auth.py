"""Logging in and out, the first-run wizard, and the language switch.

There is no default password: until the admin has chosen one on the first-run page, every page
leads there. Agents log in with their extension number and its phone (SIP) password and may only
change their own status."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from . import LOCALES, configedit
from .db import get_store
from .forms import EXTENSION_RE, PHONE_RE, FormErrors, new_sip_password, text, whole_number
from .security import (
    ADMIN,
    AGENT,
    MIN_ADMIN_PASSWORD,
    SETUP_CODE_ACCOUNT,
    admin_required,
    client_address,
    hash_password,
    limiter,
    local_path,
    log_in,
    log_out,
    password_matches,
)
from .strategies import STRATEGY_CHOICES

LOGGER = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)


def admin_password_hash() -> str | None:
    return get_store().admin_password_hash()


def _too_many_attempts(account: str) -> str | None:
    """The message for a client that has to wait before trying `account` again, or None."""
    wait_s = limiter().retry_after(account, client_address())
    if not wait_s:
        return None
    return str(_("Too many failed attempts. Try again in %(seconds)d s.", seconds=wait_s))


def index() -> Response:
    if admin_password_hash() is None:
        return redirect(url_for("auth.setup"))
    role = session.get("role")
    if role == ADMIN:
        return redirect(url_for("monitor.page"))
    if role == AGENT:
        return redirect(url_for("agent.page"))
    return redirect(url_for("auth.login"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    stored = admin_password_hash()
    if stored is None:
        return redirect(url_for("auth.setup"))
    errors = FormErrors()
    if request.method == "POST":
        user = text(request.form, "user")
        waiting = _too_many_attempts(user)
        if waiting:
            return render_template("login.html", errors={"form": waiting}), 429
        password = request.form.get("password") or ""
        if user == ADMIN and password_matches(stored, password):
            limiter().succeeded(user)
            log_in(ADMIN)
            return redirect(local_path(request.args.get("next") or "") or url_for("index"))
        secret = get_store().extension_password(user) if user else None
        if secret is not None and hmac.compare_digest(secret.encode(), password.encode()):
            limiter().succeeded(user)
            log_in(AGENT, extension=user)
            return redirect(url_for("agent.page"))
        limiter().failed(user, client_address())
        # %r: the name as typed, its line breaks escaped (no forged log lines).
        LOGGER.warning("web UI login failed for user %r from %s", user[:64], client_address())
        errors["form"] = _("Wrong user name or password.")
        return render_template("login.html", errors=errors), 401
    return render_template("login.html", errors=errors)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    log_out()
    flash(_("You have logged out."))
    return redirect(url_for("auth.login"))


@bp.route("/language/<code>", methods=["POST"])
def language(code: str) -> Response:
    if code not in LOCALES:
        abort(404)
    session["locale"] = code
    return redirect(local_path(request.form.get("back") or "/") or "/")


# --------------------------------------------------------------------------- first run


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> Any:
    """Step 1: the setup code and the admin password. Open only while no admin password is
    set, and only to someone who can read the code the box printed on its console (or
    `linebox status`): the first visitor of a box reachable from a network is not
    necessarily its owner."""
    if admin_password_hash() is not None:
        return redirect(url_for("index"))
    errors = FormErrors()
    status = 200
    if request.method == "POST":
        waiting = _too_many_attempts(SETUP_CODE_ACCOUNT)
        if waiting:
            return render_template("setup_password.html", errors={"form": waiting}), 429
        code = text(request.form, "code")
        password = request.form.get("password") or ""
        errors.need("code", bool(code), _("Enter the setup code."))
        errors.need("password", len(password) >= MIN_ADMIN_PASSWORD,
                    _("At least %(count)d characters.", count=MIN_ADMIN_PASSWORD))
        errors.need("confirm", password == (request.form.get("confirm") or ""),
                    _("The two passwords differ."))
        status = 400
        if not errors:
            if get_store().claim_first_admin(hash_password(password), code):
                limiter().succeeded(SETUP_CODE_ACCOUNT)
                log_in(ADMIN)
                return redirect(url_for("auth.setup_provider"))
            if admin_password_hash() is not None:  # someone with the code was quicker
                return redirect(url_for("index"))
            limiter().failed(SETUP_CODE_ACCOUNT, client_address())
            LOGGER.warning("web UI first-run setup code wrong, from %s", client_address())
            errors["code"] = _("This is not the setup code. It is printed when the box "
                               "starts and shown by linebox status.")
            status = 403
    return render_template("setup_password.html", errors=errors), status


@bp.route("/setup/provider", methods=["GET", "POST"])
@admin_required
def setup_provider() -> Any:
    """Step 2: the SIP provider account and the office's number."""
    draft = configedit.load()
    trunk = next(iter(draft.data["trunks"]), None) or {}
    number = next(iter(draft.data["numbers"]), None) or {}
    values = {
        "host": trunk.get("host", ""), "port": str(trunk.get("port", 5060)),
        "username": trunk.get("username", ""), "register": trunk.get("register", True),
        "trunk_channels": str(trunk.get("channels", 10)),
        "number": number.get("number", ""), "channels": str(number.get("channels", 3)),
    }
    errors = FormErrors()
    if request.method == "POST":
        if "skip" in request.form:
            return redirect(url_for("auth.setup_department"))
        form = request.form
        values = {key: text(form, key) for key in values} | {"register": "register" in form}
        host = values["host"]
        errors.need("host", bool(host) and " " not in host,
                    _("Enter the provider's host name or address."))
        port = whole_number(form, "port", errors, 1, 65535)
        trunk_channels = whole_number(form, "trunk_channels", errors, 3, 100)
        channels = whole_number(form, "channels", errors, 3, 100)
        errors.need("number", bool(PHONE_RE.fullmatch(str(values["number"]))),
                    _("Enter the number as digits, e.g. 74951234567."))
        if not errors:
            new_trunk = {
                "name": trunk.get("name", "provider"), "type": "sip", "host": host,
                "port": port, "username": values["username"],
                "password": form.get("password") or trunk.get("password", ""),
                "register": bool(values["register"]), "channels": trunk_channels,
            }
            draft.data["trunks"] = [new_trunk, *draft.data["trunks"][1:]]
            departments = draft.data["departments"]
            destination = number.get("destination") or (
                departments[0]["number"] if departments else None)
            if destination is None:
                errors["number"] = _("Create a department first.")
            else:
                new_number = {**number, "number": values["number"], "trunk": new_trunk["name"],
                              "channels": channels, "destination": destination}
                draft.data["numbers"] = [new_number, *draft.data["numbers"][1:]]
                try:
                    configedit.save(draft)
                except (configedit.ConfigError, configedit.RevisionConflictError) as error:
                    errors["form"] = _("Not saved: %(reason)s", reason=str(error))
                else:
                    return redirect(url_for("auth.setup_department"))
    status = 400 if errors else 200
    return render_template("setup_provider.html", values=values, errors=errors), status


@bp.route("/setup/department", methods=["GET", "POST"])
@admin_required
def setup_department() -> Any:
    """Step 3: the first department and its employees (passwords generated, shown once)."""
    draft = configedit.load()
    department = next(iter(draft.data["departments"]), None) or {}
    names = {e["number"]: e["name"] for e in draft.data["extensions"]}
    members = [m if isinstance(m, str) else m["extension"] for m in department.get("members", [])]
    values = {
        "number": department.get("number", "200"), "name": department.get("name", ""),
        "strategy": department.get("strategy", "ring_all"),
        "employees": "\n".join(f"{m} {names.get(m, '')}".strip() for m in members),
    }
    errors = FormErrors()
    if request.method == "POST":
        if "skip" in request.form:
            return redirect(url_for("index"))
        form = request.form
        values = {key: text(form, key) for key in values}
        errors.need("number", bool(EXTENSION_RE.fullmatch(values["number"])),
                    _("Two to six digits."))
        errors.need("name", bool(values["name"]), _("Give the department a name."))
        errors.need("strategy", values["strategy"] in {c[0] for c in STRATEGY_CHOICES},
                    _("Choose a strategy from the list."))
        employees: list[tuple[str, str]] = []
        for line in values["employees"].splitlines():
            if not line.strip():
                continue
            extension, _sep, name = line.strip().partition(" ")
            if not EXTENSION_RE.fullmatch(extension) or extension == values["number"]:
                errors.need("employees", False, _("Each line: an extension number (2 to 6 "
                                                  "digits), a space, the name. Wrong: "
                                                  "%(line)s", line=line.strip()))
                break
            employees.append((extension, name.strip() or extension))
        errors.need("employees", bool(employees), _("List at least one employee."))
        if not errors:
            created = _save_department(draft, values, employees)
            if created is not None:
                return render_template("setup_done.html", created=created)
            errors["form"] = _("Not saved: the configuration was refused. Check the numbers "
                               "do not clash with other extensions or departments.")
    status = 400 if errors else 200
    return render_template("setup_department.html", values=values, errors=errors,
                           strategies=STRATEGY_CHOICES), status


def _save_department(draft: configedit.Draft, values: dict[str, str],
                     employees: list[tuple[str, str]]) -> list[dict[str, str]] | None:
    """Add the employees who are new (with generated passwords) and put the department first;
    returns the new employees with their passwords, or None if the result would not import."""
    existing = {e["number"]: e for e in draft.data["extensions"]}
    created = []
    for extension, name in employees:
        if extension in existing:
            existing[extension]["name"] = name
        else:
            entry = {"number": extension, "name": name, "password": new_sip_password()}
            draft.data["extensions"].append(entry)
            created.append(entry)
    first: dict[str, Any] = next(iter(draft.data["departments"]), {})
    previous_first = first.get("number")
    others = [d for d in draft.data["departments"] if d["number"] != values["number"]]
    old: dict[str, Any] = next(
        (d for d in draft.data["departments"] if d["number"] == values["number"]), {})
    department = {**old, "number": values["number"], "name": values["name"],
                  "strategy": values["strategy"],
                  "ring_timeout_s": old.get("ring_timeout_s", 20),
                  "members": [extension for extension, _name in employees]}
    draft.data["departments"] = [department, *others]
    # The office's numbers that rang the first department (step 2 pointed them there) now
    # ring the one just set up: after the wizard, a call to the office reaches these people.
    for number in draft.data["numbers"]:
        if number.get("destination") in (previous_first, None):
            number["destination"] = values["number"]
    try:
        configedit.save(draft)
    except (configedit.ConfigError, configedit.RevisionConflictError):
        return None
    return created
