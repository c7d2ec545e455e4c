"""Numbers and provider page: the SIP provider accounts (`trunks`) with their live registration
state, and the office's inbound numbers (`numbers`, DIDs) with their channel capacity, their
destination and the channels in use now.

Every form edits exactly the keys of docs/config.md and is saved whole through `configedit`
(validated like `linebox config import`, nothing half-saved). Live state comes from the running
daemon over its control socket; when the daemon is not running the page says so instead of a
state. The helpers shared with the schedules and rules page (`rules.py`) live here too:
saving a draft with a message next to the form, the list of destinations, and reading time
ranges and decimal seconds from a form.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from firmware.store.config import (
    CHANNELS_MAX,
    CHANNELS_MIN,
    EXPIRES_MAX_S,
    EXPIRES_MIN_S,
    MODEM_LINE_CHANNELS,
    MODEM_TRUNK_TYPES,
    TRANSPORTS,
    TRUNK_NAME_PATTERN,
    VOICEMAIL_PREFIX,
    WEBHOOK_TIMEOUT_MAX_S,
)

from . import configedit, control
from .forms import PHONE_RE, FormErrors, save_draft, text, whole_number
from .security import admin_required

bp = Blueprint("numbers", __name__)

PORT_MIN = 1
PORT_MAX = 65535
DEFAULT_PORT = 5060
DEFAULT_EXPIRES_S = 3600
DEFAULT_TRUNK_CHANNELS = 10
DEFAULT_TIMEOUT_S = 2.0
TRANSPORT_CHOICES = (("udp", "UDP"), ("tcp", "TCP"))
URL_RE = re.compile(r"https?://[^\s/]+\S*")

# --------------------------------------------------------------------------- shared helpers


def destination_choices(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(number, label) of every extension and department, for a select or a datalist."""
    choices = [(str(d["number"]), _("%(number)s — department %(name)s",
                                    number=d["number"], name=d["name"]))
               for d in data.get("departments", [])]
    choices += [(str(e["number"]), _("%(number)s — %(name)s", number=e["number"],
                                     name=e["name"]))
                for e in data.get("extensions", [])]
    return choices


def voicemail_choices(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """("voicemail:NNN", label) of every mailbox, for a datalist of typed destinations."""
    return [(VOICEMAIL_PREFIX + number, _("Voicemail: %(mailbox)s", mailbox=label))
            for number, label in destination_choices(data)]


def internal_numbers(data: Mapping[str, Any]) -> set[str]:
    """Extensions, departments, and the voice menus (`menu:NAME`, firmware/routing/menu.py)."""
    return {str(e["number"]) for e in data.get("extensions", [])} | {
        str(d["number"]) for d in data.get("departments", [])} | set(dict(menu_choices(data)))


def menu_choices(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """("menu:NAME", label) of every voice menu."""
    return [(f"menu:{m['name']}", _("Voice menu %(name)s", name=m["name"]))
            for m in data.get("menus", [])]


def check_destination(raw: str, field_name: str, errors: FormErrors,
                      internal: set[str], *, external: bool,
                      voicemail: bool = False) -> str | None:
    """An extension or department number; with `external`, also an outside number written in
    full (more than 8 digits) or with "+", as docs/config.md says for `after_hours` and `to`;
    with `voicemail`, also the mailbox of an extension or department ("voicemail:101")."""
    if raw in internal:
        return raw
    if voicemail and raw.startswith(VOICEMAIL_PREFIX):
        mailbox = raw.removeprefix(VOICEMAIL_PREFIX)
        if errors.need(field_name, mailbox in internal, _(
                'There is no mailbox "%(mailbox)s": write voicemail: and the number of an '
                "employee or a department, e.g. voicemail:101.", mailbox=mailbox)):
            return raw
        return None
    digits = raw.removeprefix("+")
    if external and digits.isascii() and digits.isdigit() and 3 <= len(digits) <= 15 and (
            raw.startswith("+") or len(digits) > 8):
        return raw
    if external:
        errors.need(field_name, False, _(
            'Unknown destination "%(number)s": not an extension or a department. Write an '
            "outside number in full (more than 8 digits) or with +.", number=raw))
    else:
        errors.need(field_name, False, _(
            'Unknown destination "%(number)s": choose an extension or a department.',
            number=raw))
    return None


def seconds(form: Mapping[str, str], field_name: str, errors: FormErrors,
            high: float) -> float | None:
    """Seconds above 0 and up to `high`; a decimal comma is accepted. None when left empty."""
    raw = text(form, field_name).replace(",", ".")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= high):
        errors.need(field_name, False, _("Enter a number of seconds above 0 and up to "
                                         "%(high)s, e.g. 2 or 1.5.", high=f"{high:g}"))
        return None
    return int(value) if value.is_integer() else value


def check_url(raw: str, field_name: str, errors: FormErrors) -> str | None:
    """An http:// or https:// URL, or None when left empty."""
    if not raw:
        return None
    errors.need(field_name, bool(URL_RE.fullmatch(raw)),
                _("Enter an address starting with http:// or https://, without spaces."))
    return raw


def show_seconds(value: object) -> str:
    return f"{float(value):g}" if isinstance(value, int | float) else ""


# --------------------------------------------------------------------------- live state


@dataclass
class TrunkState:
    css: str
    label: str
    detail: str = ""


@dataclass
class Live:
    """What the running daemon says now; `available` is False when it is not running."""

    available: bool
    trunks: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)

    def trunk_state(self, name: str) -> TrunkState:
        if not self.available:
            return TrunkState("unavailable", _("Unavailable: the daemon is not running"))
        entry = self.trunks.get(name)
        if entry is None:
            return TrunkState("unknown", _("Not known yet: the daemon applies the change in "
                                           "a moment"))
        state = str(entry.get("state", ""))
        if state == "registered":
            expires = entry.get("expires_in_s")
            detail = (_("renewed within %(seconds)d s", seconds=expires)
                      if isinstance(expires, int) else "")
            return TrunkState("registered", _("Registered with the provider"), detail)
        if state == "failed":
            return TrunkState("failed", _("Registration failed"),
                              _failure_reason(str(entry.get("error") or "")))
        if state == "static":
            return TrunkState("static", _("No registration"),
                              _("the provider sends calls to this box's address"))
        if state == "unresolved":
            return TrunkState("failed", _("Provider not found"),
                              _("the host name could not be resolved"))
        if state in ("idle", "registering"):
            return TrunkState("pending", _("Registering…"))
        if state == "unregistered":
            return TrunkState("pending", _("Not registered with the provider"))
        return TrunkState("unknown", state)

    def channels_in_use(self, key: str) -> str | None:
        entry = self.channels.get(key)
        if entry is None:
            return None
        return f"{entry.get('in_use', 0)} / {entry.get('capacity', 0)}"


_AUTH_REFUSED_RE = re.compile(r"authentication refused \((\d+)\)")


def _failure_reason(error: str) -> str:
    if error == "no response from provider":
        return str(_("no response from the provider"))
    found = _AUTH_REFUSED_RE.fullmatch(error)
    if found:
        return str(_("the provider refused the user name or password (%(status)s)",
                     status=found.group(1)))
    return str(_("the provider answered: %(reason)s", reason=error)) if error else ""


def live_state() -> Live:
    try:
        status = control.status()
    except control.DaemonUnavailable:
        return Live(available=False)
    return Live(
        available=True,
        trunks={str(t.get("name")): t for t in status.get("trunks", [])},
        channels={str(c.get("key")): c for c in status.get("channels", [])},
    )


# --------------------------------------------------------------------------- the page


@bp.route("/numbers")
@admin_required
def page() -> Any:
    return _page(FormErrors())


def _page(errors: FormErrors) -> Any:
    draft = configedit.load()
    names = dict(destination_choices(draft.data))
    # GSM and FXO lines have a page of their own (webui/lines.py).
    sip_trunks = [t for t in draft.data["trunks"] if t.get("type") not in MODEM_TRUNK_TYPES]
    return render_template(
        "numbers.html", trunks=sip_trunks, numbers=draft.data["numbers"],
        live=live_state(), names=names, errors=errors, show_seconds=show_seconds,
    ), 400 if errors else 200


# --------------------------------------------------------------------------- trunks

TRUNK_FIELDS = ("name", "host", "port", "transport", "username", "expires_s", "channels",
                "from_domain")


def _trunk_values(trunk: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": trunk.get("name", ""), "host": trunk.get("host", ""),
        "port": str(trunk.get("port", DEFAULT_PORT)),
        "transport": trunk.get("transport", "udp"), "username": trunk.get("username", ""),
        "register": bool(trunk.get("register", True)),
        "expires_s": str(trunk.get("expires_s", DEFAULT_EXPIRES_S)),
        "channels": str(trunk.get("channels", DEFAULT_TRUNK_CHANNELS)),
        "from_domain": trunk.get("from_domain") or "",
        "has_password": bool(trunk.get("password")),
    }


@bp.route("/numbers/trunks/new", methods=["GET", "POST"])
@admin_required
def trunk_new() -> Any:
    return _trunk_form(None)


@bp.route("/numbers/trunks/<name>/edit", methods=["GET", "POST"])
@admin_required
def trunk_edit(name: str) -> Any:
    return _trunk_form(name)


def _trunk_form(name: str | None) -> Any:
    draft = configedit.load()
    trunks: list[dict[str, Any]] = draft.data["trunks"]
    index = next((i for i, t in enumerate(trunks) if t["name"] == name), None)
    if name is not None and index is None:
        abort(404)
    old: dict[str, Any] = trunks[index] if index is not None else {}
    if old.get("type") in MODEM_TRUNK_TYPES:
        return redirect(url_for("lines.line_edit", name=name))
    values = _trunk_values(old)
    errors = FormErrors()
    if request.method == "POST":
        form = request.form
        values = {key: text(form, key) for key in TRUNK_FIELDS} | {
            "register": "register" in form, "has_password": values["has_password"]}
        new = _check_trunk(form, values, errors, trunks, index)
        if not errors:
            new["password"] = form.get("password") or old.get("password", "")
            if old.get("type"):
                new["type"] = old["type"]
            if index is None:
                trunks.append(new)
            else:
                trunks[index] = new
                for number in draft.data["numbers"]:  # a renamed trunk keeps its numbers
                    if number["trunk"] == old["name"]:
                        number["trunk"] = new["name"]
            if save_draft(draft, errors):
                flash(_("Provider account %(name)s saved.", name=new["name"]))
                return redirect(url_for("numbers.page", _anchor="trunks"))
    return render_template("numbers_trunk.html", values=values, errors=errors,
                           editing=name, transports=TRANSPORT_CHOICES), 400 if errors else 200


def _check_trunk(form: Mapping[str, str], values: dict[str, Any], errors: FormErrors,
                 trunks: list[dict[str, Any]], index: int | None) -> dict[str, Any]:
    name = str(values["name"])
    errors.need("name", bool(TRUNK_NAME_PATTERN.fullmatch(name)),
                _("1 to 32 Latin letters, digits, -, _ or ., starting with a letter or digit."))
    errors.need("name", all(t["name"] != name for i, t in enumerate(trunks) if i != index),
                _("Another provider account already has this name."))
    host = str(values["host"])
    errors.need("host", bool(host) and not any(c.isspace() for c in host),
                _("Enter the provider's host name or IP address, without spaces."))
    port = whole_number(form, "port", errors, PORT_MIN, PORT_MAX)
    errors.need("transport", values["transport"] in TRANSPORTS, _("Choose UDP or TCP."))
    username = str(values["username"])
    errors.need("username", bool(username) or not values["register"],
                _("The user name is needed to register with the provider."))
    expires_s = whole_number(form, "expires_s", errors, EXPIRES_MIN_S, EXPIRES_MAX_S)
    channels = whole_number(form, "channels", errors, CHANNELS_MIN, CHANNELS_MAX)
    from_domain = str(values["from_domain"])
    errors.need("from_domain", not any(c.isspace() for c in from_domain),
                _("A domain name without spaces, or leave it empty."))
    new: dict[str, Any] = {
        "name": name, "host": host, "port": port, "transport": values["transport"],
        "username": username, "register": bool(values["register"]),
        "expires_s": expires_s, "channels": channels,
    }
    if from_domain:
        new["from_domain"] = from_domain
    return new


@bp.route("/numbers/trunks/<name>/delete", methods=["POST"])
@admin_required
def trunk_delete(name: str) -> Any:
    draft = configedit.load()
    trunks = draft.data["trunks"]
    if all(t["name"] != name for t in trunks):
        abort(404)
    errors = FormErrors()
    users = [n["number"] for n in draft.data["numbers"] if n["trunk"] == name]
    if users:
        errors["form"] = _("Provider account %(name)s is used by the numbers %(numbers)s: "
                           "move or delete them first.", name=name, numbers=", ".join(users))
        return _page(errors)
    draft.data["trunks"] = [t for t in trunks if t["name"] != name]
    if not save_draft(draft, errors):
        return _page(errors)
    flash(_("Provider account %(name)s deleted.", name=name))
    return redirect(url_for("numbers.page", _anchor="trunks"))


# --------------------------------------------------------------------------- numbers

NUMBER_FIELDS = ("number", "trunk", "channels", "destination", "schedule", "webhook",
                 "webhook_timeout_s")


def _number_values(number: Mapping[str, Any], draft: configedit.Draft) -> dict[str, str]:
    trunks = draft.data["trunks"]
    return {
        "number": number.get("number", ""),
        "trunk": number.get("trunk", trunks[0]["name"] if trunks else ""),
        "channels": str(number.get("channels", CHANNELS_MIN)),
        "destination": number.get("destination", ""),
        "schedule": number.get("schedule", ""),
        "webhook": number.get("webhook", ""),
        "webhook_timeout_s": show_seconds(number["webhook_timeout_s"])
        if number.get("webhook") and "webhook_timeout_s" in number else "",
    }


@bp.route("/numbers/new", methods=["GET", "POST"])
@admin_required
def number_new() -> Any:
    return _number_form(None)


@bp.route("/numbers/<number>/edit", methods=["GET", "POST"])
@admin_required
def number_edit(number: str) -> Any:
    return _number_form(number)


def _number_form(number: str | None) -> Any:
    draft = configedit.load()
    numbers: list[dict[str, Any]] = draft.data["numbers"]
    index = next((i for i, n in enumerate(numbers) if n["number"] == number), None)
    if number is not None and index is None:
        abort(404)
    values = _number_values(numbers[index] if index is not None else {}, draft)
    errors = FormErrors()
    if request.method == "POST":
        form = request.form
        values = {key: text(form, key) for key in NUMBER_FIELDS}
        new = _check_number(form, values, errors, draft, index)
        if not errors:
            if index is None:
                numbers.append(new)
            else:
                numbers[index] = new
            if save_draft(draft, errors):
                flash(_("Number %(number)s saved.", number=new["number"]))
                return redirect(url_for("numbers.page", _anchor="numbers"))
    trunk_choices = [(t["name"], t["name"]) for t in draft.data["trunks"]]
    schedule_choices = [("", _("— always open —"))] + [
        (s["name"], s["name"]) for s in draft.data.get("schedules", [])]
    destinations = ([("", _("— choose —"))] + destination_choices(draft.data)
                    + menu_choices(draft.data))
    return render_template(
        "numbers_number.html", values=values, errors=errors, editing=number,
        trunks=trunk_choices, schedules=schedule_choices, destinations=destinations,
    ), 400 if errors else 200


def _check_number(form: Mapping[str, str], values: dict[str, str], errors: FormErrors,
                  draft: configedit.Draft, index: int | None) -> dict[str, Any]:
    data = draft.data
    number = values["number"]
    if errors.need("number", bool(PHONE_RE.fullmatch(number)),
                   _("3 to 15 digits, optionally starting with +, e.g. 74951234567.")):
        errors.need("number", all(n["number"] != number for i, n in enumerate(data["numbers"])
                                  if i != index),
                    _("This number is already in the list."))
    trunks = {t["name"] for t in data["trunks"]}
    errors.need("trunk", bool(trunks), _("Add a provider account first."))
    errors.need("trunk", values["trunk"] in trunks, _("Choose a provider account from the list."))
    modem_line = any(t["name"] == values["trunk"] and t.get("type") in MODEM_TRUNK_TYPES
                     for t in data["trunks"])
    if modem_line:  # a GSM or FXO line carries one call at a time
        channels = whole_number(form, "channels", errors, MODEM_LINE_CHANNELS,
                                MODEM_LINE_CHANNELS)
    else:
        channels = whole_number(form, "channels", errors, CHANNELS_MIN, CHANNELS_MAX)
    destination = values["destination"]
    if errors.need("destination", bool(destination),
                   _("Choose where the calls go: an extension or a department.")):
        check_destination(destination, "destination", errors, internal_numbers(data),
                          external=False)
    schedule = values["schedule"]
    errors.need("schedule", not schedule or any(
        s["name"] == schedule for s in data.get("schedules", [])),
        _("Choose a schedule from the list."))
    webhook = check_url(values["webhook"], "webhook", errors)
    timeout_s = seconds(form, "webhook_timeout_s", errors, WEBHOOK_TIMEOUT_MAX_S)
    new: dict[str, Any] = {"number": number, "trunk": values["trunk"], "channels": channels,
                           "destination": destination}
    if schedule:
        new["schedule"] = schedule
    if webhook:
        new["webhook"] = webhook
        new["webhook_timeout_s"] = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    return new


@bp.route("/numbers/<number>/delete", methods=["POST"])
@admin_required
def number_delete(number: str) -> Any:
    draft = configedit.load()
    numbers = draft.data["numbers"]
    if all(n["number"] != number for n in numbers):
        abort(404)
    draft.data["numbers"] = [n for n in numbers if n["number"] != number]
    errors = FormErrors()
    if not save_draft(draft, errors):
        return _page(errors)
    flash(_("Number %(number)s deleted.", number=number))
    return redirect(url_for("numbers.page", _anchor="numbers"))
