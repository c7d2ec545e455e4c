"""An agent's own page: their light and status as the daemon knows them, and the form to change
the status (On line, Break, Do not disturb, Outbound, Logged out, with an optional reason).

The change goes to the running daemon over the control socket, exactly as
`linebox agent EXTENSION STATUS --reason ...` sends it (source "web"); the daemon saves and
applies it. Without a running daemon nothing can change, and the page says so. An admin who
opens this page is sent to the monitor, which shows everyone.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from firmware.routing.model import AGENT_STATUSES, BREAK, DND, LOGGED_OUT, ON_LINE, OUTBOUND

from . import control
from .db import get_store
from .forms import FormErrors, text
from .monitor import LIGHT_LABELS, Light, activities, light
from .security import ADMIN, AGENT, role_required

bp = Blueprint("agent", __name__)

MAX_REASON = 100  # characters; a few words: "lunch", "meeting until 15:00"
STATUS_LABELS = {
    ON_LINE: _l("On line"),
    BREAK: _l("Break"),
    DND: _l("Do not disturb"),
    OUTBOUND: _l("Outbound"),
    LOGGED_OUT: _l("Logged out"),
}


def daemon_down_message() -> str:
    return str(_("The Linebox service is not running, so your status can be neither shown nor "
             "changed. Ask the administrator to start it."))


def read_form(form: dict[str, str] | Any) -> tuple[dict[str, str], FormErrors]:
    values = {"status": text(form, "status"), "reason": text(form, "reason")}
    errors = FormErrors()
    errors.need("status", values["status"] in AGENT_STATUSES, _("Choose a status from the list."))
    errors.need("reason", len(values["reason"]) <= MAX_REASON,
                _("At most %(count)d characters.", count=MAX_REASON))
    errors.need("reason", values["reason"].isprintable(),
                _("Letters, digits, spaces and punctuation only."))
    return values, errors


def my_state(extension: str) -> tuple[dict[str, Any] | None, Light | None]:
    """This agent's entry in the daemon's status and their light; DaemonUnavailable without a
    daemon; (None, None) if the daemon does not know the extension."""
    status = control.status()
    for agent in status.get("agents") or []:
        if str(agent.get("extension")) == extension:
            calls = [c for c in status.get("calls") or [] if isinstance(c, dict)]
            return agent, light(agent, activities(calls).get(extension))
    return None, None


@bp.route("/me", methods=["GET", "POST"])
@role_required(AGENT)
def page() -> Any:
    if session.get("role") == ADMIN:
        return redirect(url_for("monitor.page"))
    extension = str(session.get("extension", ""))
    name = next((e.name for e in get_store().load_config().extensions
                 if e.number == extension), "")
    errors = FormErrors()
    values = {"status": "", "reason": ""}
    code = 200
    if request.method == "POST":
        values, errors = read_form(request.form)
        code = 400 if errors else 200
        if not errors:
            try:
                answer = control.ask({
                    "command": "agent", "extension": extension, "status": values["status"],
                    "reason": values["reason"], "source": "web",
                })
            except control.DaemonUnavailable:
                errors["form"] = daemon_down_message()
                code = 503
            else:
                if answer.get("ok"):
                    flash(_("Your status is now: %(status)s.",
                            status=STATUS_LABELS.get(str(answer.get("status")),
                                                     values["status"])))
                    return redirect(url_for("agent.page"))
                errors["form"] = _("The service did not change the status: %(reason)s",
                                   reason=str(answer.get("error", "?")))
                code = 400
    running = True
    agent: dict[str, Any] | None = None
    lit: Light | None = None
    try:
        agent, lit = my_state(extension)
    except control.DaemonUnavailable:
        running = False
        if request.method == "GET":
            errors["form"] = daemon_down_message()
    if agent is not None and request.method == "GET":
        values = {"status": str(agent.get("status") or ""),
                  "reason": str(agent.get("reason") or "")}
    return render_template(
        "agent.html", extension=extension, name=name, running=running, agent=agent, light=lit,
        labels=LIGHT_LABELS, statuses=list(STATUS_LABELS.items()), status_labels=STATUS_LABELS,
        values=values, errors=errors, max_reason=MAX_REASON,
    ), code
