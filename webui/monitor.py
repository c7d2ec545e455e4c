"""The live monitor: every employee as a traffic light, the queues, the channels and the calls in
progress, as the running daemon reports them (`linebox status --json`).

The page is rendered on the server, so it is complete before any script runs; then
static/operations.js asks `/monitor/data` every `POLL_INTERVAL_MS` and puts the fresh HTML it
carries in place, without reloading the page. Both go through `render_page` / `render_data`,
which take the daemon's status as their input (the benchmark bench/webui_monitor.py times
them). Each light is derived from the status by two small pure functions: `activities` (what the
calls in progress say about each extension) and `light`.

Below the live part, read from the database when the page is opened (not at every poll), are
the security notices: the external calls the toll guard refused lately, which is how an admin
learns that a phone's password may have been stolen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template
from flask_babel import lazy_gettext as _l

from firmware.routing.model import BREAK, DND, LOGGED_OUT, OUTBOUND
from firmware.routing.tollguard import (
    BOX_LIMIT,
    EXTENSION_LIMIT,
    INTERNATIONAL,
    LOCAL,
    LONG_DISTANCE,
    MOBILE,
    NOT_ALLOWED,
)

from . import control
from .db import get_store
from .security import admin_required
from .voicemail import TIME_FORMAT, _site_zone

bp = Blueprint("monitor", __name__)

POLL_INTERVAL_MS = 1500
SECURITY_NOTICES_SHOWN = 20
DEPARTMENT_NAMES_CACHE = "linebox_monitor_department_names"


# The lights, in the order the summary lists them.
FREE = "free"
RINGING = "ringing"
TALKING = "talking"
WRAP_UP = "wrap_up"
OFFLINE = "offline"
LIGHTS = (FREE, RINGING, TALKING, WRAP_UP, BREAK, DND, OUTBOUND, OFFLINE)
# Directions in which an extension is the caller (it places the call itself).
OWN_CALL_DIRECTIONS = ("internal", "outbound")

LIGHT_LABELS = {
    FREE: _l("Free"),
    RINGING: _l("Ringing"),
    TALKING: _l("Talking"),
    WRAP_UP: _l("Wrap-up"),
    BREAK: _l("Break"),
    DND: _l("Do not disturb"),
    OUTBOUND: _l("Outbound"),
    OFFLINE: _l("Offline"),
}
CALL_STATES = {
    "routing": _l("Connecting"),
    "ringing": _l("Ringing"),
    "queued": _l("In the queue"),
    "connecting": _l("Calling the customer back"),  # a callback: the member is waiting
    "answered": _l("Talking"),
    "ended": _l("Ending"),
}
DIRECTIONS = {
    "inbound": _l("Incoming"),
    "outbound": _l("Outgoing"),
    "internal": _l("Internal"),
    "callback": _l("Callback"),
}
NOTICE_KINDS = {
    NOT_ALLOWED: _l("Not allowed for this employee"),
    EXTENSION_LIMIT: _l("The employee's hourly limit of external calls reached"),
    BOX_LIMIT: _l("The office's hourly limit of external calls reached"),
}
NUMBER_CLASSES = {
    LOCAL: _l("Local"),
    MOBILE: _l("Mobile"),
    LONG_DISTANCE: _l("Long distance"),
    INTERNATIONAL: _l("International"),
}
TRUNK_STATES = {
    "idle": _l("Not registered yet"),
    "registering": _l("Registering"),
    "registered": _l("Registered"),
    "unregistered": _l("Not registered"),
    "failed": _l("Registration failed"),
    "static": _l("Without registration"),
    "unresolved": _l("Address not found"),
}


# --- deriving the lights (pure) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Activity:
    """What the calls in progress say about one extension."""

    state: str  # TALKING (answered a call, or placed one) or RINGING (offered one)
    for_s: float | None  # for this long
    party: str  # with this caller, or the number it dialled


@dataclass(frozen=True, slots=True)
class Light:
    state: str  # one of LIGHTS
    since_s: float | None  # how long it has been so; None when the status does not say


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def activities(calls: list[dict[str, Any]]) -> dict[str, Activity]:
    """Extension → its part in the calls in progress: answering one, placing one, or being
    rung by one (a call it talks on wins over one that rings it)."""
    found: dict[str, Activity] = {}
    for call in calls:
        duration_s = _number(call.get("duration_s"))
        answered_by = call.get("answered_by")
        if answered_by:
            answered_s = _number(call.get("answered_s"))
            found[str(answered_by)] = Activity(
                TALKING, answered_s if answered_s is not None else duration_s,
                str(call.get("caller") or ""))
        caller = str(call.get("caller") or "")
        if call.get("direction") in OWN_CALL_DIRECTIONS and caller and (
                caller not in found or found[caller].state != TALKING):
            found[caller] = Activity(TALKING, duration_s, str(call.get("dialed") or ""))
    for call in calls:
        rung_for = call.get("ringing_s")
        rung_for = rung_for if isinstance(rung_for, dict) else {}
        for extension in call.get("ringing") or []:
            extension = str(extension)
            if extension not in found:  # busy on another call: the light shows that
                found[extension] = Activity(RINGING, _number(rung_for.get(extension)),
                                            str(call.get("caller") or ""))
    return found


def light(agent: dict[str, Any], activity: Activity | None = None) -> Light:
    """The traffic light of one agent of the daemon's status (`status["agents"][i]`).

    A call wins over everything (talking, then ringing); then an agent who is logged out or
    whose phone is not registered is offline; then Break, Do not disturb and Outbound as the
    agent set them; an agent On line is in wrap-up after an answered call, else free.
    """
    status = agent.get("status")
    since_s = _number(agent.get("since_s"))
    if activity is not None and activity.state == TALKING:
        return Light(TALKING, activity.for_s)
    if agent.get("on_call"):
        return Light(TALKING, None)  # a call the status does not list (yet)
    if activity is not None and activity.state == RINGING:
        return Light(RINGING, activity.for_s)
    if status == LOGGED_OUT:
        return Light(OFFLINE, since_s)
    if not agent.get("registered"):
        return Light(OFFLINE, None)  # when the phone went away is not known
    if status in (BREAK, DND, OUTBOUND):
        return Light(str(status), since_s)
    ended_s = _number(agent.get("call_ended_s"))
    if (_number(agent.get("wrap_up_s")) or 0.0) > 0:
        return Light(WRAP_UP, ended_s)
    if ended_s is not None and (since_s is None or ended_s < since_s):
        return Light(FREE, ended_s)  # free again since the last call ended
    return Light(FREE, since_s)


# --- the board: the status as the page shows it -----------------------------------------------


@dataclass(frozen=True, slots=True)
class EmployeeRow:
    extension: str
    name: str
    state: str
    since_s: float | None
    status: str  # the agent's own status (on_line, break, ...)
    reason: str
    party: str  # who they talk to, or who rings them


@dataclass(frozen=True, slots=True)
class WaitingCaller:
    position: int
    caller: str
    wait_s: float | None
    vip: bool
    callback: bool


@dataclass(frozen=True, slots=True)
class QueueRow:
    department: str
    name: str
    waiting: list[WaitingCaller]


@dataclass(frozen=True, slots=True)
class ChannelRow:
    kind: str  # "number" | "trunk" | "" (a key the page does not know)
    name: str
    in_use: int
    capacity: int
    trunk_state: str  # trunks: the registration state; "" for numbers


@dataclass(frozen=True, slots=True)
class CallRow:
    id: str
    state: str
    direction: str
    caller: str
    dialed: str
    department: str
    department_name: str
    answered_by: str
    ringing: list[str]
    duration_s: float | None


@dataclass(frozen=True, slots=True)
class Board:
    employees: list[EmployeeRow]
    counts: dict[str, int]
    queues: list[QueueRow]
    channels: list[ChannelRow]
    calls: list[CallRow]
    names: dict[str, str]  # extension → name, for the calls table


def _extension_order(number: str) -> tuple[int, str]:
    return (len(number), number)


def board(status: dict[str, Any], departments: dict[str, str]) -> Board:
    """The page's view of the daemon's `status`; `departments` maps number → name."""
    calls = [c for c in status.get("calls") or [] if isinstance(c, dict)]
    doing = activities(calls)
    employees = []
    for agent in status.get("agents") or []:
        extension = str(agent.get("extension", ""))
        activity = doing.get(extension)
        lit = light(agent, activity)
        party = activity.party if activity is not None and lit.state == activity.state else ""
        employees.append(EmployeeRow(
            extension=extension, name=str(agent.get("name") or ""), state=lit.state,
            since_s=lit.since_s, status=str(agent.get("status") or ""),
            reason=str(agent.get("reason") or ""), party=party,
        ))
    employees.sort(key=lambda row: _extension_order(row.extension))
    counts = dict.fromkeys(LIGHTS, 0)
    for row in employees:
        counts[row.state] = counts.get(row.state, 0) + 1
    queues = [
        QueueRow(
            department=str(queue.get("department", "")),
            name=departments.get(str(queue.get("department", "")), ""),
            waiting=[
                WaitingCaller(position=int(w.get("position", i + 1)),
                              caller=str(w.get("caller") or ""),
                              wait_s=_number(w.get("wait_s")), vip=bool(w.get("vip")),
                              callback=bool(w.get("callback")))
                for i, w in enumerate(queue.get("waiting") or [])
            ],
        )
        for queue in status.get("queues") or []
    ]
    trunk_states = {str(t.get("name")): str(t.get("state") or "")
                    for t in status.get("trunks") or []}
    channels = []
    for channel in status.get("channels") or []:
        kind, _sep, name = str(channel.get("key", "")).partition(":")
        if kind not in ("number", "trunk"):
            kind, name = "", str(channel.get("key", ""))
        channels.append(ChannelRow(
            kind=kind, name=name, in_use=int(channel.get("in_use") or 0),
            capacity=int(channel.get("capacity") or 0),
            trunk_state=trunk_states.get(name, "") if kind == "trunk" else "",
        ))
    call_rows = [
        CallRow(
            id=str(call.get("id", "")), state=str(call.get("state") or ""),
            direction=str(call.get("direction") or ""), caller=str(call.get("caller") or ""),
            dialed=str(call.get("dialed") or ""), department=str(call.get("department") or ""),
            department_name=departments.get(str(call.get("department") or ""), ""),
            answered_by=str(call.get("answered_by") or ""),
            ringing=[str(r) for r in call.get("ringing") or []],
            duration_s=_number(call.get("duration_s")),
        )
        for call in calls
    ]
    names = {row.extension: row.name for row in employees}
    return Board(employees=employees, counts=counts, queues=queues, channels=channels,
                 calls=call_rows, names=names)


def clock(seconds: float | None) -> str:
    """A duration as m:ss, or h:mm:ss from an hour on; a dash when unknown."""
    if seconds is None:
        return "—"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@bp.app_template_filter("ops_clock")
def _clock_filter(seconds: float | None) -> str:
    return clock(seconds)


# --- rendering -------------------------------------------------------------------------------


def department_names() -> dict[str, str]:
    """Department number → name, read again only when the configuration changes."""
    store = get_store()
    revision = store.config_revision()
    cached = current_app.extensions.get(DEPARTMENT_NAMES_CACHE)
    if cached is not None and cached[0] == revision:
        names: dict[str, str] = cached[1]
        return names
    names = {d.number: d.name for d in store.load_config().departments}
    current_app.extensions[DEPARTMENT_NAMES_CACHE] = (revision, names)
    return names


def live_status() -> tuple[dict[str, Any] | None, str]:
    """The daemon's status, or None and why not."""
    try:
        return control.status(), ""
    except control.DaemonUnavailable as error:
        return None, str(error)


def _context(status: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "board": None if status is None else board(status, department_names()),
        "labels": LIGHT_LABELS, "lights": LIGHTS, "call_states": CALL_STATES,
        "directions": DIRECTIONS, "trunk_states": TRUNK_STATES,
    }


@dataclass(frozen=True, slots=True)
class Notice:
    """A security event as the page lists it."""

    at: str  # local time of the site
    extension: str
    number: str
    number_class: str
    why: str
    repeated: int


def security_notices(limit: int = SECURITY_NOTICES_SHOWN) -> list[Notice]:
    """The latest security events from the database, newest first, in the site's time."""
    store = get_store()
    zone = _site_zone(store.load_config())
    return [Notice(
        at=datetime.fromtimestamp(float(row["at"]), zone).strftime(TIME_FORMAT),
        extension=str(row["extension"] or ""), number=str(row["number"] or ""),
        number_class=str(NUMBER_CLASSES.get(row["detail"], row["detail"] or "")),
        why=str(NOTICE_KINDS.get(row["kind"], row["kind"])), repeated=int(row["repeated"]),
    ) for row in store.security_events(limit)]


def render_page(status: dict[str, Any] | None, notices: list[Notice] | None = None) -> str:
    """The whole monitor page for `status` (None: the daemon is not running)."""
    return render_template("monitor.html", interval_ms=POLL_INTERVAL_MS, notices=notices or [],
                           **_context(status))


def render_data(status: dict[str, Any] | None) -> tuple[Response, int]:
    """The poll's answer for `status`: the board as data, and its HTML for the page."""
    context = _context(status)
    html = render_template("monitor_live.html", **context)
    if context["board"] is None:
        return jsonify({"ok": False, "running": False, "html": html}), 503
    data = asdict(context["board"])
    return jsonify({"ok": True, "running": True, **data, "html": html}), 200


@bp.route("/monitor")
@admin_required
def page() -> str:
    status, _why = live_status()
    return render_page(status, security_notices())


@bp.route("/monitor/data")
@admin_required
def data() -> tuple[Response, int]:
    status, _why = live_status()
    response, code = render_data(status)
    response.headers["Cache-Control"] = "no-store"
    return response, code
