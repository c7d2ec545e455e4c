"""The calls list and a call's page, with its recording to listen to (HTML5 audio) and download.

The admin sees every call; an agent sees the calls of the departments they are a member of, and
only those recordings — the rule the issue sets for who may listen (a call of another department,
or one that went to nobody's department, answers 404 so its existence is not given away). The
admin also sees how much of the recordings' quota is used, with a warning from 90 %: past the
quota the oldest recordings are deleted (firmware/media/recorder_files.py).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from firmware.media.audio import wav_bytes
from firmware.media.prompts import prompt
from firmware.media.recorder_store import recording_of, recordings_of, usage
from firmware.recording import PROMPT_RECORDING_WARNING, warning_greeting
from firmware.store import Config
from firmware.store.config import PROMPT_LANGUAGES

from .db import get_store
from .forms import FormErrors
from .security import ADMIN, AGENT, role_required, upload_limit
from .voicemail import GREETING_LIMIT_CONFIG, GREETING_MAX_S, uploaded_greeting

bp = Blueprint("calls", __name__)

CALLS_SHOWN = 100
FILE_TIME_FORMAT = "%Y-%m-%d_%H-%M-%S"


def my_departments(config: Config) -> set[str] | None:
    """The departments whose calls the logged-in user may see: None for the admin (all)."""
    if session.get("role") == ADMIN:
        return None
    extension = str(session.get("extension", ""))
    return {d.number for d in config.departments
            if any(m.extension == extension for m in d.members)}


def _zone(config: Config) -> ZoneInfo:
    try:
        return ZoneInfo(config.site.timezone)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _when(value: Any, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    return datetime.fromtimestamp(float(value), zone).strftime("%Y-%m-%d %H:%M:%S")


def _visible(call: dict[str, Any], mine: set[str] | None) -> bool:
    return mine is None or call.get("department") in mine


def _row(call: dict[str, Any], zone: ZoneInfo, recording: dict[str, Any] | None
         ) -> dict[str, Any]:
    ended, answered = call.get("ended_at"), call.get("answered_at")
    return {**call, "started": _when(call["started_at"], zone),
            "talk_s": float(ended) - float(answered) if ended and answered else None,
            "recording": recording}


@bp.route("/calls")
@role_required(AGENT)
def page() -> str:
    return _render(FormErrors())[0]


def _render(errors: FormErrors, code: int = 200) -> tuple[str, int]:
    store = get_store()
    config = store.load_config()
    zone = _zone(config)
    mine = my_departments(config)
    calls = [c for c in store.recent_calls(CALLS_SHOWN * (1 if mine is None else 4))
             if _visible(c, mine)][:CALLS_SHOWN]
    recordings = recordings_of(store, [str(c["id"]) for c in calls])
    quota = usage(store, current_app.config["DB"], config.recording) \
        if session.get("role") == ADMIN else None
    uploaded = store.greetings() if session.get("role") == ADMIN else {}
    warnings = [(language, warning_greeting(language) in uploaded)
                for language in PROMPT_LANGUAGES] if session.get("role") == ADMIN else []
    return render_template("calls.html", calls=[_row(c, zone, recordings.get(str(c["id"])))
                                                for c in calls],
                           limit=CALLS_SHOWN, quota=quota, warnings=warnings, errors=errors,
                           max_greeting_s=int(GREETING_MAX_S)), code


def _call_row(call_id: str) -> dict[str, Any]:
    """The call `call_id` if the logged-in user may see it; 404 otherwise."""
    store = get_store()
    found = store.db.execute("SELECT * FROM calls WHERE id = ?", (call_id,))
    values = found.fetchone()
    if values is None:
        abort(404)
    call = dict(zip([column[0] for column in found.description], values, strict=True))
    if not _visible(call, my_departments(store.load_config())):
        abort(404)
    return call


@bp.route("/calls/<call_id>")
@role_required(AGENT)
def call_page(call_id: str) -> str:
    call = _call_row(call_id)
    store = get_store()
    zone = _zone(store.load_config())
    found = recording_of(store, current_app.config["DB"], call_id)
    legs = [{**leg, "started": _when(leg.get("started_at"), zone),
             "answered": _when(leg.get("answered_at"), zone)} for leg in store.legs_of(call_id)]
    return render_template("calls_call.html", call=_row(call, zone, found[0] if found else None),
                           legs=legs, ended=_when(call.get("ended_at"), zone))


def _recording_response(call_id: str, *, attachment: bool) -> Response:
    call = _call_row(call_id)
    found = recording_of(get_store(), current_app.config["DB"], call_id)
    if found is None:
        abort(404)
    path: Path = found[1]
    zone = _zone(get_store().load_config())
    started = datetime.fromtimestamp(float(call["started_at"]), zone).strftime(FILE_TIME_FORMAT)
    filename = f"call-{started}-{call['caller'] or 'unknown'}-{call_id[:8]}.wav"
    filename = "".join(ch for ch in filename if ch.isalnum() or ch in "-_.+")
    # Streamed from the file, never read whole: an hour of stereo is ~58 MB on an 80 MB box,
    # and a browser seeking asks again and again. conditional=True answers byte ranges (206),
    # which browsers seek in and Safari needs to play at all.
    try:
        response = send_file(path, mimetype="audio/wav", as_attachment=attachment,
                             download_name=filename, conditional=True)
    except FileNotFoundError:  # deleted for the quota since its row was read
        abort(404)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/calls/<call_id>/recording")
@role_required(AGENT)
def recording(call_id: str) -> Response:
    return _recording_response(call_id, attachment=False)


@bp.route("/calls/<call_id>/recording/download")
@role_required(AGENT)
def download(call_id: str) -> Response:
    return _recording_response(call_id, attachment=True)


# --------------------------------------------------------------------------- the warning


def _language(language: str) -> str:
    if language not in PROMPT_LANGUAGES:
        abort(404)
    return language


@bp.route("/calls/warning/<language>.wav")
@role_required(ADMIN)
def warning_audio(language: str) -> Response:
    """The warning a recorded call's caller hears in `language`: the office's, else built-in."""
    audio = get_store().greeting(warning_greeting(_language(language)))
    if audio is None:
        audio = wav_bytes(prompt(language, PROMPT_RECORDING_WARNING))
    response = Response(audio, mimetype="audio/wav")
    response.headers["Cache-Control"] = "private, no-store"
    return response.make_conditional(request, accept_ranges=True, complete_length=len(audio))


@bp.route("/calls/warning/<language>", methods=["POST"])
@role_required(ADMIN)
@upload_limit(GREETING_LIMIT_CONFIG)
def upload_warning(language: str) -> Any:
    _language(language)
    errors = FormErrors()
    field = f"warning-{language}"
    converted = uploaded_greeting(errors, field)
    if converted is None:
        return _render(errors, 400)
    audio, duration_s = converted
    get_store().set_greeting(warning_greeting(language), audio, duration_s=duration_s,
                             at=time.time())
    flash(_("Recorded calls now hear the uploaded warning in %(language)s (%(seconds)d s).",
            language=language, seconds=round(duration_s)))
    return redirect(url_for("calls.page", _anchor="recording-warning"))


@bp.route("/calls/warning/<language>/delete", methods=["POST"])
@role_required(ADMIN)
def remove_warning(language: str) -> Response:
    get_store().set_greeting(warning_greeting(_language(language)), None)
    flash(_("Recorded calls hear the built-in warning in %(language)s again.",
            language=language))
    return redirect(url_for("calls.page", _anchor="recording-warning"))
