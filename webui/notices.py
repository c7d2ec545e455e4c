"""Notices about the box itself for the administrator (issue 16): what the box did on its own
that the admin must know — the database was broken at start and the box started from a backup
or from nothing, calls were cut off by a power cut or a crash. They are kept in the database
(`firmware/store/recovery.py`, written at start by the daemon) and shown at the top of every
page of the admin's until dismissed; the newest NOTICES_SHOWN at most.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, redirect, request, session, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from firmware.store.recovery import (
    NOTICE_CUT_OFF,
    NOTICE_EMPTY,
    NOTICE_RESTORED,
    SETTING_BOX_NOTICES,
    box_notices,
)

from . import control
from .db import get_store
from .security import ADMIN, admin_required, local_path

bp = Blueprint("notices", __name__)

NOTICES_SHOWN = 3
STORAGE_ASKED_EVERY_S = 5.0
STORAGE_ASK_TIMEOUT_S = 0.5
_ASKED: list[Any] = [float("-inf"), {}]  # when the daemon was last asked, and its answer
_ASKED_LOCK = threading.Lock()
TIME_FORMAT = "%Y-%m-%d %H:%M"


def describe(notice: dict[str, Any]) -> str:
    """One notice as the admin reads it."""
    kind = notice.get("kind")
    detail = str(notice.get("detail") or "")
    if kind == NOTICE_RESTORED:
        return str(_("The database was damaged (%(problem)s). The box started from the automatic "
                 "backup %(backup)s: changes made after it are lost. The damaged file was kept "
                 "as %(file)s.", problem=detail, backup=notice.get("backup") or "",
                 file=notice.get("moved_to") or ""))
    if kind == NOTICE_EMPTY:
        return str(_("The database was damaged (%(problem)s) and there was no usable backup: the "
                 "box started with an empty configuration. Set it up again or import a saved "
                 "configuration. The damaged file was kept as %(file)s.", problem=detail,
                 file=notice.get("moved_to") or ""))
    if kind == NOTICE_CUT_OFF:
        return str(_("The box stopped during calls (a power cut or a crash): %(count)s calls "
                     "in progress were recorded as cut off.", count=detail))
    return detail


def shown_notices() -> list[dict[str, str]]:
    """The admin's undismissed notices, newest first, as (when, text): the storage's
    condition now (from the daemon), then those kept in the database."""
    if session.get("role") != ADMIN:
        return []
    shown = []
    records = storage_condition()
    if records.get("problem"):
        shown.append({"at": datetime.now().strftime(TIME_FORMAT), "text": str(_(
            "The box cannot write to its storage (%(problem)s): %(waiting)s call records wait "
            "in memory and are written when space returns; voicemail takes no messages "
            "meanwhile. Free space on the data partition.", problem=records["problem"],
            waiting=records.get("waiting", 0)))})
    notices = [n for n in box_notices(get_store()) if not n.get("dismissed")]
    return shown + [{"at": datetime.fromtimestamp(float(n.get("at") or 0)).strftime(
        TIME_FORMAT), "text": describe(n)} for n in notices[:NOTICES_SHOWN]]


def storage_condition() -> dict[str, Any]:
    """The daemon's word on its records (`records` control command), asked at most every
    STORAGE_ASKED_EVERY_S by this process and briefly: {} when it does not answer."""
    now = time.monotonic()
    with _ASKED_LOCK:
        if now - _ASKED[0] < STORAGE_ASKED_EVERY_S:
            return dict(_ASKED[1])
        _ASKED[0] = now
    try:
        answer = control.ask({"command": "records"}, timeout_s=STORAGE_ASK_TIMEOUT_S)
    except control.DaemonUnavailable:
        answer = {}
    condition = answer if answer.get("ok") else {}
    with _ASKED_LOCK:
        _ASKED[1] = condition
    return dict(condition)


@bp.app_context_processor
def _notices() -> dict[str, Any]:
    # A function, so that only pages that show it ask the store.
    return {"box_notices": shown_notices}


@bp.route("/notices/dismiss", methods=["POST"])
@admin_required
def dismiss() -> Response:
    store = get_store()
    notices = store.get_setting(SETTING_BOX_NOTICES, []) or []
    store.put_setting(SETTING_BOX_NOTICES, [{**n, "dismissed": True} for n in notices
                                           if isinstance(n, dict)])
    back = request.form.get("next", "")
    return redirect(back if local_path(back) else url_for("index"))
