"""The system page: the firmware's version, whether the service runs, a backup of the whole
configuration and its restore, the administrator's password, and the last lines of the
daemon's log.

The backup is exactly what `linebox config export` prints; a restore is checked exactly like
`linebox config import` and replaces the whole configuration in one transaction, so a broken
file changes nothing (the page says which key is wrong). The running daemon notices the new
configuration revision and applies it by itself. The log is the file `linebox run` writes
beside the database (`<db>.log`).
"""

from __future__ import annotations

import importlib.metadata
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from werkzeug.exceptions import RequestEntityTooLarge

from firmware.reports import site_zone
from firmware.store import ConfigError, dump_yaml, load_yaml
from firmware.store.files import log_path as daemon_log_path
from firmware.store.outbox import Outbox

from . import control
from .db import get_store
from .forms import FormErrors
from .security import (
    ADMIN,
    MIN_ADMIN_PASSWORD,
    admin_required,
    client_address,
    hash_password,
    limiter,
    log_in,
    password_matches,
    upload_limit,
)
from .voicemail import GREETING_LIMIT_CONFIG, GREETING_MAX_S, uploaded_greeting

bp = Blueprint("system", __name__)

PACKAGE = "linebox"
LOG_LINES = 200
LOG_TAIL_MAX_BYTES = 1 << 20  # read at most this much of the log's end for its last lines
LOG_CHUNK_BYTES = 64 * 1024
NOTIFICATIONS_SHOWN = 20  # the latest failed e-mails and SMS on the page
# The office's music on hold is kept like a voicemail greeting, under this mailbox name (the
# daemon's greetings cache hands it to firmware/core/hold.py: HOLD_MUSIC_MAILBOX there).
HOLD_MUSIC_MAILBOX = "hold"
HOLD_MUSIC_FIELD = "hold_music"


def version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def log_path() -> Path:
    return daemon_log_path(current_app.config["DB"])


def tail_lines(path: Path, count: int = LOG_LINES,
               max_bytes: int = LOG_TAIL_MAX_BYTES) -> list[str] | None:
    """The last `count` lines of the file at `path` (None if there is no such file), reading
    backwards from its end in chunks and never more than `max_bytes`."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    with handle:
        size = handle.seek(0, os.SEEK_END)
        data = b""
        position = size
        for _chunk in range(max_bytes // LOG_CHUNK_BYTES + 1):
            if position == 0 or data.count(b"\n") > count or size - position >= max_bytes:
                break
            step = min(LOG_CHUNK_BYTES, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    if position > 0 and lines:
        lines = lines[1:]  # the first line read may be the end of a longer one
    return lines[-count:]


def _service() -> dict[str, Any] | None:
    try:
        status = control.status()
    except control.DaemonUnavailable:
        return None
    return {"pid": status.get("pid"), "sip": status.get("sip")}


def _render(errors: FormErrors, code: int = 200) -> tuple[str, int]:
    config = get_store().load_config()
    counts = {"extensions": len(config.extensions), "departments": len(config.departments),
              "numbers": len(config.numbers), "trunks": len(config.trunks)}
    path = log_path()
    outbox = Outbox(get_store())
    zone = site_zone(get_store())
    failed = [{**row, "when": datetime.fromtimestamp(float(row["created_at"]), zone)
               .strftime("%Y-%m-%d %H:%M")}
              for row in outbox.rows(state="failed", limit=NOTIFICATIONS_SHOWN)]
    notifications = {"failed": failed,
                     "pending": outbox.rows(state="pending", limit=NOTIFICATIONS_SHOWN),
                     "configured": config.smtp.host != "" or bool(
                         config.notifications.missed_calls or config.notifications.voicemail
                         or config.notifications.summary_time)}
    return render_template(
        "system.html", version=version(), service=_service(), counts=counts,
        notifications=notifications,
        revision=get_store().config_revision(), log_lines=tail_lines(path), log_file=str(path),
        max_lines=LOG_LINES, errors=errors,
        max_kb=(current_app.config.get("MAX_CONTENT_LENGTH") or 0) // 1024,
        hold_music=get_store().greetings().get(HOLD_MUSIC_MAILBOX),
        max_music_s=int(GREETING_MAX_S),
        max_music_mb=(current_app.config.get(GREETING_LIMIT_CONFIG) or 0) // (1024 * 1024),
    ), code


@bp.route("/system")
@admin_required
def page() -> tuple[str, int]:
    return _render(FormErrors())


@bp.route("/system/backup")
@admin_required
def backup() -> Response:
    """The whole configuration as YAML, as `linebox config export` prints it."""
    body = dump_yaml(get_store().load_config())
    filename = f"linebox-config-{datetime.now().strftime('%Y%m%d-%H%M')}.yaml"
    return Response(body, mimetype="application/yaml", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
    })


@bp.route("/system/restore", methods=["POST"])
@admin_required
def restore() -> Any:
    """Replace the whole configuration with an uploaded backup, or change nothing and say why."""
    errors = FormErrors()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        errors["file"] = _("Choose the backup file (.yaml) to restore.")
        return _render(errors, 400)
    try:
        yaml_text = upload.read().decode("utf-8")
    except UnicodeDecodeError:
        errors["file"] = _("Nothing was changed: the file is not UTF-8 text. Choose a YAML "
                           "backup saved from this page or by linebox config export.")
        return _render(errors, 400)
    try:
        get_store().replace_config(load_yaml(yaml_text))
    except ConfigError as error:
        errors["file"] = _("Nothing was changed: %(reason)s", reason=str(error))
        return _render(errors, 400)
    flash(_("The configuration was restored from %(file)s. The service applies it within a "
            "few seconds.", file=upload.filename))
    return redirect(url_for("system.page"))


@bp.route("/system/password", methods=["POST"])
@admin_required
def change_password() -> Any:
    """A new administrator password: the current one first (a session left open on someone
    else's screen cannot take the box over), then every admin session ends but this one."""
    errors = FormErrors()
    form = request.form
    waiting = limiter().retry_after(ADMIN, client_address())
    if waiting:
        errors["current"] = _("Too many failed attempts. Try again in %(seconds)d s.",
                              seconds=waiting)
        return _render(errors, 429)
    new = form.get("new_password") or ""
    stored = get_store().admin_password_hash() or ""
    if not password_matches(stored, form.get("current") or ""):
        limiter().failed(ADMIN, client_address())
        errors["current"] = _("This is not the current password.")
    errors.need("new_password", len(new) >= MIN_ADMIN_PASSWORD,
                _("At least %(count)d characters.", count=MIN_ADMIN_PASSWORD))
    errors.need("confirm", new == (form.get("confirm") or ""), _("The two passwords differ."))
    if errors:
        return _render(errors, 400)
    get_store().set_admin_password(hash_password(new))  # ends every admin session
    log_in(ADMIN)
    flash(_("The administrator's password has been changed. Every other administrator "
            "session has ended."))
    return redirect(url_for("system.page"))


@bp.route("/system/hold-music", methods=["POST"])
@admin_required
@upload_limit(GREETING_LIMIT_CONFIG)
def upload_hold_music() -> Any:
    """The office's music on hold: a WAV file converted as a voicemail greeting is; the
    daemon takes it up within seconds, for the next hold."""
    errors = FormErrors()
    converted = uploaded_greeting(errors, HOLD_MUSIC_FIELD)
    if converted is None:
        return _render(errors, 400)
    audio, duration_s = converted
    get_store().set_greeting(HOLD_MUSIC_MAILBOX, audio, duration_s=duration_s, at=time.time())
    flash(_("Callers on hold now hear the uploaded music (%(seconds)d s, in a loop).",
            seconds=round(duration_s)))
    return redirect(url_for("system.page", _anchor="hold-music"))


@bp.route("/system/hold-music/audio")
@admin_required
def hold_music_audio() -> Any:
    audio = get_store().greeting(HOLD_MUSIC_MAILBOX)
    if audio is None:
        abort(404)
    response = Response(audio, mimetype="audio/wav")
    response.headers["Content-Disposition"] = 'inline; filename="hold-music.wav"'
    response.headers["Cache-Control"] = "private, no-store"
    return response.make_conditional(request, accept_ranges=True, complete_length=len(audio))


@bp.route("/system/hold-music/delete", methods=["POST"])
@admin_required
def remove_hold_music() -> Any:
    get_store().set_greeting(HOLD_MUSIC_MAILBOX, None)
    flash(_("Callers on hold hear the built-in music again."))
    return redirect(url_for("system.page", _anchor="hold-music"))


@bp.errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> tuple[str, int]:
    errors = FormErrors()
    if request.endpoint == "system.upload_hold_music":
        errors[HOLD_MUSIC_FIELD] = _(
            "Nothing was changed: the file is larger than %(size)d MB.",
            size=(current_app.config.get(GREETING_LIMIT_CONFIG) or 0) // (1024 * 1024))
        return _render(errors, 413)
    errors["file"] = _("Nothing was changed: the file is larger than %(size)d KB; a backup "
                       "is a few kilobytes.",
                       size=(current_app.config.get("MAX_CONTENT_LENGTH") or 0) // 1024)
    return _render(errors, 413)
