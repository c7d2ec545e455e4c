"""The reserve line page (issue 12): the GSM and FXO lines (`trunks` of type gsm/fxo) with
their live state, a form to add or edit one (the serial device chosen from those plugged in),
a page per line with its state, its SMS inbox, a form to send an SMS and a balance (USSD)
button, and the settings they depend on: `failover` (which line carries outgoing calls) and
the LED pins of `hardware`.

Configuration goes through `configedit` like every form; the line's state, sending an SMS and
USSD go to the daemon over its control socket (`sms_send`, `ussd`: firmware/control_modems.py);
the inbox is read from the store. The serial devices are found with a glob the tests replace
(the app's `SERIAL_GLOB`).
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _

from firmware.failover import (
    DOWN_AFTER_MAX,
    DOWN_AFTER_MIN,
    PROBE_INTERVAL_MAX_S,
    PROBE_INTERVAL_MIN_S,
    UP_AFTER_MAX,
    UP_AFTER_MIN,
    FailoverSettings,
)
from firmware.store.config import (
    BCM_PIN_MAX,
    DEFAULT_MODEMS,
    DEFAULT_TIMEZONE,
    DID_DIGITS_MAX,
    GAIN_MAX_DB,
    GAIN_MIN_DB,
    IMEI_DIGITS,
    LED_NAMES,
    MODEM_TRUNK_TYPES,
    MODEMS,
    PIN_DIGITS_MAX,
    PIN_DIGITS_MIN,
    TRUNK_NAME_PATTERN,
    luhn_valid,
)

from . import configedit, control
from .db import get_store
from .forms import PHONE_RE, FormErrors, clean_phone, parse_whole, save_draft, text
from .security import admin_required

bp = Blueprint("lines", __name__)

# Where serial modems appear: their stable names first (udev's by-id links survive a
# renumbering), then the kernel's names.
SERIAL_PATTERNS = ("/dev/serial/by-id/*", "/dev/ttyUSB*", "/dev/ttyACM*")
SMS_LIST_LIMIT = 50
LINE_EVENTS_SHOWN = 20  # the line's latest state changes and failover switches
TIME_FORMAT = "%d.%m.%Y %H:%M"
# The daemon waits for the modem: a part of an SMS takes up to 40 s, a USSD reply up to ~30 s.
SMS_SEND_TIMEOUT_S = 120.0
USSD_TIMEOUT_S = 60.0
LINE_FIELDS = ("name", "port", "port_typed", "audio_port", "modem", "imei", "number",
               "gain_db")


def serial_devices() -> list[str]:
    """The serial devices present now, by-id links first, each once."""
    find: Callable[[str], list[str]] = current_app.config.get("SERIAL_GLOB", glob.glob)
    seen: dict[str, None] = {}
    for pattern in SERIAL_PATTERNS:
        for path in sorted(find(pattern)):
            seen.setdefault(path, None)
    return list(seen)


def _modem_lines(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [t for t in data["trunks"] if t.get("type") in MODEM_TRUNK_TYPES]


def _line_status(name: str) -> tuple[bool, dict[str, Any] | None]:
    """(whether the daemon answered, its `lines[]` entry for `name`)."""
    try:
        status = control.status()
    except control.DaemonUnavailable:
        return False, None
    entry = next((line for line in status.get("lines", []) if line.get("name") == name), None)
    return True, entry


# --------------------------------------------------------------------------- the list page


@bp.route("/lines")
@admin_required
def page() -> Any:
    return _page(FormErrors(), None, None)


def _page(errors: FormErrors, failover_values: dict[str, str] | None,
          led_values: dict[str, str] | None) -> Any:
    draft = configedit.load()
    lines = _modem_lines(draft.data)
    available, states = True, {}
    try:
        status = control.status()
        states = {str(line.get("name")): line for line in status.get("lines", [])}
    except control.DaemonUnavailable:
        available = False
    failover = draft.data.get("failover", {})
    defaults = FailoverSettings()
    hardware = draft.data.get("hardware", {})
    return render_template(
        "lines.html", lines=lines, states=states, available=available, errors=errors,
        trunk_names=[t["name"] for t in draft.data["trunks"]],
        failover=failover_values or {
            "order": ", ".join(failover.get("order", [])),
            "probe_interval_s": f"{failover.get('probe_interval_s', defaults.probe_interval_s):g}",
            "down_after": str(failover.get("down_after", defaults.down_after)),
            "up_after": str(failover.get("up_after", defaults.up_after)),
        },
        leds=led_values or {name: str(hardware.get("leds", {}).get(name, ""))
                            for name in LED_NAMES},
        led_names=LED_NAMES,
    ), 400 if errors else 200


@bp.route("/lines/failover", methods=["POST"])
@admin_required
def failover_save() -> Any:
    draft = configedit.load()
    form = request.form
    values = {key: text(form, key) for key in ("order", "probe_interval_s", "down_after",
                                                "up_after")}
    errors = FormErrors()
    names = {t["name"] for t in draft.data["trunks"]}
    order = [name.strip() for name in values["order"].split(",") if name.strip()]
    unknown = [name for name in order if name not in names]
    errors.need("order", not unknown, _("No line or provider account is named %(names)s.",
                                        names=", ".join(unknown)))
    errors.need("order", len(set(order)) == len(order), _("A line is listed twice."))
    interval = _decimal(values["probe_interval_s"], "probe_interval_s", errors,
                        PROBE_INTERVAL_MIN_S, PROBE_INTERVAL_MAX_S)
    down_after = parse_whole(values["down_after"], "down_after", errors, DOWN_AFTER_MIN,
                             DOWN_AFTER_MAX)
    up_after = parse_whole(values["up_after"], "up_after", errors, UP_AFTER_MIN, UP_AFTER_MAX)
    if not errors:
        draft.data["failover"] = {"order": order, "probe_interval_s": interval,
                                  "down_after": down_after, "up_after": up_after}
        if save_draft(draft, errors):
            flash(_("Failover settings saved."))
            return redirect(url_for("lines.page", _anchor="failover"))
    return _page(errors, values, None)


@bp.route("/lines/leds", methods=["POST"])
@admin_required
def leds_save() -> Any:
    draft = configedit.load()
    values = {name: text(request.form, f"led_{name}") for name in LED_NAMES}
    errors = FormErrors()
    pins: dict[str, int] = {}
    for name, raw in values.items():
        if raw:
            pin = parse_whole(raw, f"led_{name}", errors, 0, BCM_PIN_MAX)
            if pin is not None:
                errors.need(f"led_{name}", pin not in pins.values(),
                            _("Another LED already uses GPIO %(pin)d.", pin=pin))
                pins[name] = pin
    if not errors:
        hardware = dict(draft.data.get("hardware", {}))
        hardware["leds"] = pins
        draft.data["hardware"] = hardware
        if save_draft(draft, errors):
            flash(_("LED pins saved."))
            return redirect(url_for("lines.page", _anchor="leds"))
    return _page(errors, None, values)


def _decimal(raw: str, field: str, errors: FormErrors, low: float, high: float
             ) -> float | int | None:
    try:
        value = float(raw.replace(",", "."))
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also refuses nan
        errors.need(field, False, _("Enter a number from %(low)s to %(high)s.",
                                    low=f"{low:g}", high=f"{high:g}"))
        return None
    return int(value) if value.is_integer() else value


# --------------------------------------------------------------------------- the line form


@bp.route("/lines/new", methods=["GET", "POST"])
@admin_required
def line_new() -> Any:
    return _line_form(None)


@bp.route("/lines/<name>/edit", methods=["GET", "POST"])
@admin_required
def line_edit(name: str) -> Any:
    return _line_form(name)


def _line_values(line: Mapping[str, Any], kind: str) -> dict[str, str]:
    return {
        "name": str(line.get("name", "")), "type": kind,
        "port": str(line.get("port", "")), "port_typed": "",
        "audio_port": str(line.get("audio_port", "")),
        "modem": str(line.get("modem", DEFAULT_MODEMS[kind])),
        "imei": str(line.get("imei", "")), "number": str(line.get("number", "")),
        "gain_db": f"{line.get('gain_db', 0.0):g}",
    }


def _line_form(name: str | None) -> Any:
    draft = configedit.load()
    trunks: list[dict[str, Any]] = draft.data["trunks"]
    index = next((i for i, t in enumerate(trunks) if t["name"] == name), None)
    if name is not None and (index is None or trunks[index].get("type") not in
                             MODEM_TRUNK_TYPES):
        abort(404)
    old: dict[str, Any] = trunks[index] if index is not None else {}
    kind = str(old.get("type") or request.values.get("type") or "gsm")
    if kind not in MODEM_TRUNK_TYPES:
        kind = "gsm"
    values = _line_values(old, kind)
    errors = FormErrors()
    if request.method == "POST":
        form = request.form
        values = {key: text(form, key) for key in LINE_FIELDS} | {"type": kind}
        new = _check_line(values, form, errors, trunks, index, kind)
        if not errors:
            # The PIN is never shown back: empty keeps the current one, "clear" removes it.
            pin = text(form, "pin")
            if "clear_pin" in form:
                new.pop("pin", None)
            elif pin:
                new["pin"] = pin
            elif old.get("pin"):
                new["pin"] = old["pin"]
            if index is None:
                trunks.append(new)
            else:
                trunks[index] = new
                _rename(draft.data, str(old["name"]), str(new["name"]))
            if save_draft(draft, errors, _field_of):
                flash(_("Line %(name)s saved.", name=new["name"]))
                return redirect(url_for("lines.line_page", name=new["name"]))
    modems = [(modem, modem) for modem in MODEMS[kind]]
    devices = serial_devices()
    return render_template(
        "lines_form.html", values=values, errors=errors, editing=name, kind=kind,
        modems=modems, devices=[("", _("— type the path below —"))] + [
            (device, device) for device in devices],
        audio_devices=[("", _("— none —"))] + [(device, device) for device in devices],
        has_pin=bool(old.get("pin")), gain_low=GAIN_MIN_DB, gain_high=GAIN_MAX_DB,
    ), 400 if errors else 200


def _rename(data: dict[str, Any], old: str, new: str) -> None:
    """A renamed line keeps its numbers and its place in the failover order."""
    for number in data["numbers"]:
        if number["trunk"] == old:
            number["trunk"] = new
    failover = data.get("failover")
    if failover and "order" in failover:
        failover["order"] = [new if item == old else item for item in failover["order"]]


def _field_of(path: str) -> str | None:
    key = path.rsplit(".", 1)[-1]
    return key if key in ("name", "port", "audio_port", "modem", "imei", "pin", "number",
                          "gain_db") else None


def _check_line(values: dict[str, str], form: Mapping[str, str], errors: FormErrors,
                trunks: list[dict[str, Any]], index: int | None, kind: str) -> dict[str, Any]:
    name = values["name"]
    errors.need("name", bool(TRUNK_NAME_PATTERN.fullmatch(name)),
                _("1 to 32 Latin letters, digits, -, _ or ., starting with a letter or digit."))
    errors.need("name", all(t["name"] != name for i, t in enumerate(trunks) if i != index),
                _("Another line or provider account already has this name."))
    port = values["port_typed"] or values["port"]
    values["port"] = port
    errors.need("port", port.startswith("/") and ".." not in port.split("/")
                and not any(c.isspace() for c in port),
                _("Choose the modem's serial device, or type its path, e.g. "
                  "/dev/serial/by-id/usb-HUAWEI_Mobile-if02-port0."))
    errors.need("modem", values["modem"] in MODEMS[kind], _("Choose a modem from the list."))
    new: dict[str, Any] = {"name": name, "type": kind, "port": port, "modem": values["modem"]}
    if kind == "gsm":
        audio = values["audio_port"]
        if audio:
            errors.need("audio_port", audio != port,
                        _("The audio port must differ from the command port."))
            new["audio_port"] = audio
        imei = values["imei"]
        if imei:
            errors.need("imei", len(imei) == IMEI_DIGITS and imei.isdigit() and luhn_valid(imei),
                        _("An IMEI is 15 digits, the last one a check digit: copy it from the "
                          "modem's label or from the line's page."))
            new["imei"] = imei
        pin = text(form, "pin")
        errors.need("pin", not pin or (pin.isdigit() and
                                       PIN_DIGITS_MIN <= len(pin) <= PIN_DIGITS_MAX),
                    _("The SIM's PIN is 4 to 8 digits."))
    number = clean_phone(values["number"])
    values["number"] = number
    if number:
        errors.need("number", bool(PHONE_RE.fullmatch(number)) and
                    len(number.lstrip("+")) <= DID_DIGITS_MAX,
                    _("3 to 15 digits, optionally starting with +, e.g. +79161234567."))
        new["number"] = number
    gain = _decimal(values["gain_db"] or "0", "gain_db", errors, GAIN_MIN_DB, GAIN_MAX_DB)
    if gain:
        new["gain_db"] = gain
    return new


@bp.route("/lines/<name>/delete", methods=["POST"])
@admin_required
def line_delete(name: str) -> Any:
    draft = configedit.load()
    if all(t["name"] != name or t.get("type") not in MODEM_TRUNK_TYPES
           for t in draft.data["trunks"]):
        abort(404)
    errors = FormErrors()
    users = [n["number"] for n in draft.data["numbers"] if n["trunk"] == name]
    if users:
        errors["form"] = _("Line %(name)s is used by the numbers %(numbers)s: move or delete "
                           "them first.", name=name, numbers=", ".join(users))
        return _page(errors, None, None)
    draft.data["trunks"] = [t for t in draft.data["trunks"] if t["name"] != name]
    failover = draft.data.get("failover")
    if failover and name in failover.get("order", []):
        failover["order"] = [item for item in failover["order"] if item != name]
    if not save_draft(draft, errors):
        return _page(errors, None, None)
    flash(_("Line %(name)s deleted.", name=name))
    return redirect(url_for("lines.page"))


# --------------------------------------------------------------------------- one line


def _configured_line(name: str) -> dict[str, Any]:
    draft = configedit.load()
    line = next((t for t in _modem_lines(draft.data) if t["name"] == name), None)
    if line is None:
        abort(404)
    return line


@bp.route("/lines/<name>")
@admin_required
def line_page(name: str) -> Any:
    return _line_page(_configured_line(name), FormErrors(), {}, None)


def _line_page(line: dict[str, Any], errors: FormErrors, sms_values: dict[str, str],
               ussd_reply: str | None) -> Any:
    available, state = _line_status(str(line["name"]))
    store = get_store()
    try:
        zone = ZoneInfo(store.load_config().site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo(DEFAULT_TIMEZONE)
    inbox = [{**message, "when": datetime.fromtimestamp(float(message["at"]), zone)
              .strftime(TIME_FORMAT)}
             for message in store.sms(str(line["name"]), limit=SMS_LIST_LIMIT)]
    events = [{**event, "when": datetime.fromtimestamp(float(event["at"]), zone)
               .strftime(TIME_FORMAT)}
              for event in store.line_events(str(line["name"]), limit=LINE_EVENTS_SHOWN)]
    return render_template(
        "lines_line.html", line=line, available=available, state=state, inbox=inbox,
        events=events, errors=errors, sms=sms_values, ussd_reply=ussd_reply,
    ), 400 if errors else 200


@bp.route("/lines/<name>/sms", methods=["POST"])
@admin_required
def sms_send(name: str) -> Any:
    line = _configured_line(name)
    values = {"number": clean_phone(text(request.form, "number")),
              "text": (request.form.get("text") or "").strip()}
    errors = FormErrors()
    errors.need("number", bool(PHONE_RE.fullmatch(values["number"])),
                _("3 to 15 digits, optionally starting with +, e.g. +79161234567."))
    errors.need("text", bool(values["text"]), _("Write the message."))
    if line.get("type") != "gsm":
        errors["form"] = _("Only a GSM line sends SMS.")
    if not errors:
        answer = _ask({"command": "sms_send", "line": name, **values}, SMS_SEND_TIMEOUT_S,
                      errors)
        if answer is not None:
            flash(_("SMS sent to %(number)s.", number=values["number"]))
            return redirect(url_for("lines.line_page", name=name, _anchor="sms"))
    return _line_page(line, errors, values, None)


@bp.route("/lines/<name>/ussd", methods=["POST"])
@admin_required
def ussd(name: str) -> Any:
    line = _configured_line(name)
    code = text(request.form, "code") or "*100#"
    errors = FormErrors()
    answer = _ask({"command": "ussd", "line": name, "code": code}, USSD_TIMEOUT_S, errors)
    reply = None if answer is None else str(answer.get("reply", ""))
    return _line_page(line, errors, {}, reply)


def _ask(request_: dict[str, Any], timeout_s: float, errors: FormErrors
         ) -> dict[str, Any] | None:
    """The daemon's answer, or None with the reason in `errors["form"]`."""
    try:
        answer = control.ask(request_, timeout_s=timeout_s)
    except control.DaemonUnavailable:
        errors["form"] = _("The gateway daemon is not running: nothing was sent.")
        return None
    if not answer.get("ok"):
        errors["form"] = _("Not done: %(reason)s", reason=str(answer.get("error", "")))
        return None
    return answer
