"""The System update page: the booted system slot and the other slot's state, and a RAUC
bundle upload (administrator only) that the daemon installs into the other slot.

The upload is written into the update folder beside the database (never kept in memory) and
the daemon is asked over its control socket to install it (`firmware/update.py` runs
`rauc install`, which checks the bundle's signature against the box's keyring before writing
anything). The page follows the installation's progress by reloading itself while it runs and
offers the restart into the new system when it is done. Where RAUC is not installed (a
development machine) the page says so and takes no upload.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.exceptions import RequestEntityTooLarge

from firmware.update_files import BUNDLE_NAME, update_dir_for

from . import control
from .forms import FormErrors
from .security import admin_required, upload_limit

bp = Blueprint("update", __name__)

LIMIT_CONFIG = "UPDATE_BUNDLE_MAX_BYTES"
# A Linebox root file system is at most 120 MiB (post-image.sh's budget); the bundle adds its
# signature and hash tree: anything much larger is not a Linebox bundle.
BUNDLE_MAX_BYTES = 160 * 1024 * 1024
REFRESH_WHILE_INSTALLING_S = 2
CONTROL_TIMEOUT_S = 35.0  # `rauc status` may start RAUC's service first (D-Bus activation)


@bp.record_once
def _configure(state: Any) -> None:
    state.app.config.setdefault(LIMIT_CONFIG, BUNDLE_MAX_BYTES)


def _status() -> tuple[dict[str, Any] | None, str]:
    """The daemon's update status, or None and why not."""
    try:
        answer = control.ask({"command": "update", "action": "status"},
                             timeout_s=CONTROL_TIMEOUT_S)
    except control.DaemonUnavailable:
        return None, _("The service is not running: the update status is unknown.")
    if not answer.get("ok"):
        return None, str(answer.get("error", ""))
    result: dict[str, Any] = answer["update"]
    return result, ""


def _render(errors: FormErrors, code: int = 200) -> tuple[str, int]:
    status, problem = _status()
    installing = bool(status and status["install"]["phase"] == "installing")
    return render_template(
        "system_update.html", status=status, problem=problem, errors=errors,
        installing=installing, refresh_s=REFRESH_WHILE_INSTALLING_S,
        max_mb=current_app.config[LIMIT_CONFIG] // (1024 * 1024), when=_when), code


def _when(timestamp: float | str | None) -> str:
    if timestamp is None:
        return ""
    if isinstance(timestamp, str):
        return timestamp.replace("T", " ").removesuffix("Z") + " UTC"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.route("/system/update")
@admin_required
def page() -> tuple[str, int]:
    return _render(FormErrors())


@bp.route("/system/update", methods=["POST"])
@admin_required
@upload_limit(LIMIT_CONFIG)
def upload() -> Any:
    errors = FormErrors()
    bundle = request.files.get("bundle")
    if bundle is None or not bundle.filename:
        errors["bundle"] = _("Choose the update file (.raucb).")
        return _render(errors, 400)
    folder = update_dir_for(current_app.config["DB"])
    folder.mkdir(mode=0o700, exist_ok=True)
    partial = folder / (BUNDLE_NAME + ".part")
    try:
        bundle.save(partial)
        partial.replace(folder / BUNDLE_NAME)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink()
        errors["bundle"] = _("The file could not be stored: %(reason)s", reason=str(error))
        return _render(errors, 500)
    try:
        answer = control.ask({"command": "update", "action": "install"})
    except control.DaemonUnavailable:
        errors["bundle"] = _("The service is not running: nothing was installed.")
        return _render(errors, 503)
    if not answer.get("ok"):
        errors["bundle"] = _("Nothing was installed: %(reason)s",
                             reason=str(answer.get("error", "")))
        return _render(errors, 409)
    flash(_("The update %(file)s is being checked and installed into the other system slot.",
            file=bundle.filename))
    return redirect(url_for("update.page"))


@bp.route("/system/update/restart", methods=["POST"])
@admin_required
def restart() -> Any:
    try:
        answer = control.ask({"command": "update", "action": "reboot"})
    except control.DaemonUnavailable:
        answer = {"ok": False, "error": _("the service is not running")}
    if answer.get("ok"):
        flash(_("The box restarts now; the page comes back in about a minute."))
    else:
        flash(_("The box was not restarted: %(reason)s", reason=str(answer.get("error", ""))))
    return redirect(url_for("update.page"))


@bp.errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> tuple[str, int]:
    errors = FormErrors()
    errors["bundle"] = _("Nothing was installed: the file is larger than %(size)d MB, so it is "
                         "not a Linebox update.",
                         size=current_app.config[LIMIT_CONFIG] // (1024 * 1024))
    return _render(errors, 413)
