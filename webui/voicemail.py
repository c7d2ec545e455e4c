"""Voicemail page: the messages callers left, each with a player, a download link, heard/unheard
and delete; and each mailbox's greeting, uploaded as a WAV file or left to the built-in one.

A mailbox is an employee's extension or a department's number. The admin sees every mailbox.
An agent sees the mailbox of their own extension and those of the departments they are a member
of; a message in any other mailbox is "not found" to them, and they may change the greeting of
their own extension only. Listening or downloading does not mark a message heard (a colleague
may only have checked who called); the buttons do. An uploaded greeting is converted to what
the box plays (16-bit 8 kHz mono) by `firmware.media.audio`; a file it cannot take changes
nothing and the page says why beside the field. Messages and greetings live in the store, where
the daemon re-reads the greetings every 2 s, so a new one plays from the next call after that.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
    session,
    url_for,
)
from flask_babel import gettext as _
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from firmware.media.audio import AudioError, to_pcm8k, wav_bytes
from firmware.store import Config, RecordNotFoundError
from firmware.store.config import DEFAULT_TIMEZONE

from .db import get_store
from .forms import FormErrors
from .security import ADMIN, AGENT, role_required, upload_limit

bp = Blueprint("voicemail", __name__)

MESSAGES_SHOWN = 200  # newest first; older ones stay in the store
GREETING_MAX_S = 120.0  # the daemon plays at most this much of a greeting (firmware/daemon.py)
PCM_BYTES_PER_S = 2 * 8000  # 16-bit 8 kHz mono, what to_pcm8k returns
GREETING_LIMIT_CONFIG = "GREETING_MAX_CONTENT_LENGTH"
TIME_FORMAT = "%d.%m.%Y %H:%M"
FILE_TIME_FORMAT = "%Y%m%d-%H%M"


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    mailbox: str
    mailbox_label: str
    caller: str
    left_at: str  # in the site's time zone
    duration_s: float
    heard: bool


@dataclass(frozen=True, slots=True)
class Greeting:
    mailbox: str
    label: str
    duration_s: float | None  # None: the built-in greeting plays
    uploaded_at: str


# --------------------------------------------------------------------------- who sees what


def mailbox_labels(config: Config) -> dict[str, str]:
    """Every mailbox of the configuration, departments first, with its name."""
    labels = {d.number: _("%(number)s — department %(name)s", number=d.number, name=d.name)
              for d in config.departments}
    labels.update((e.number, _("%(number)s — %(name)s", number=e.number, name=e.name))
                  for e in config.extensions)
    return labels


def my_mailboxes(config: Config) -> set[str] | None:
    """The mailboxes the logged-in user may read: None for the admin (all of them); for an
    agent, their extension's and those of the departments they are a member of."""
    if session.get("role") == ADMIN:
        return None
    extension = str(session.get("extension", ""))
    return {extension} | {d.number for d in config.departments
                          if any(m.extension == extension for m in d.members)}


def _greeting_mailboxes(config: Config) -> list[str]:
    """The mailboxes whose greeting the logged-in user may change, in the page's order."""
    labels = mailbox_labels(config)
    if session.get("role") == ADMIN:
        return list(labels)
    extension = str(session.get("extension", ""))
    return [extension] if extension in labels else []


def unheard_count() -> int:
    """Unheard messages in the logged-in user's mailboxes (for the navigation bar)."""
    if session.get("role") not in (ADMIN, AGENT):
        return 0
    counts = get_store().voicemail_counts()
    if not counts:
        return 0
    mine = None if session.get("role") == ADMIN else my_mailboxes(get_store().load_config())
    return sum(unheard for mailbox, (_total, unheard) in counts.items()
               if mine is None or mailbox in mine)


@bp.app_context_processor
def _navigation() -> dict[str, Any]:
    # A function, so that only pages that show the navigation bar ask the store.
    return {"unheard_voicemails": unheard_count}


def _site_zone(config: Config) -> ZoneInfo:
    try:
        return ZoneInfo(config.site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def _message_row(message_id: int) -> dict[str, Any]:
    """The message `message_id` (without its audio) if the logged-in user may see it; 404 if
    there is none or it is in a mailbox not theirs (so its existence is not given away)."""
    found = get_store().voicemail(message_id)
    if found is None:
        abort(404)
    mine = my_mailboxes(get_store().load_config())
    if mine is not None and found["mailbox"] not in mine:
        abort(404)
    return found


# --------------------------------------------------------------------------- the page


def _messages(rows: Iterable[Mapping[str, Any]], labels: Mapping[str, str],
              zone: ZoneInfo) -> list[Message]:
    return [Message(
        id=int(row["id"]), mailbox=str(row["mailbox"]),
        mailbox_label=labels.get(str(row["mailbox"]), str(row["mailbox"])),
        caller=str(row["caller"] or ""),
        left_at=datetime.fromtimestamp(float(row["left_at"]), zone).strftime(TIME_FORMAT),
        duration_s=float(row["duration_s"]), heard=bool(row["heard"]),
    ) for row in rows]


def _rows_of(mailbox: str, mine: set[str] | None) -> list[dict[str, Any]]:
    """The newest messages of `mailbox` (all readable ones if empty)."""
    store = get_store()
    if mailbox:
        return store.voicemails(mailbox, limit=MESSAGES_SHOWN)
    if mine is None:
        return store.voicemails(limit=MESSAGES_SHOWN)
    rows = [row for box in mine for row in store.voicemails(box, limit=MESSAGES_SHOWN)]
    rows.sort(key=lambda row: (row["left_at"], row["id"]), reverse=True)
    return rows[:MESSAGES_SHOWN]


def _greetings(config: Config, labels: Mapping[str, str], zone: ZoneInfo) -> list[Greeting]:
    uploaded = get_store().greetings()
    found = []
    for mailbox in _greeting_mailboxes(config):
        info = uploaded.get(mailbox)
        found.append(Greeting(
            mailbox=mailbox, label=labels[mailbox],
            duration_s=None if info is None else float(info["duration_s"]),
            uploaded_at="" if info is None else datetime.fromtimestamp(
                float(info["uploaded_at"]), zone).strftime(TIME_FORMAT)))
    return found


def _render(errors: FormErrors, code: int = 200, mailbox: str = "") -> tuple[str, int]:
    config = get_store().load_config()
    labels = mailbox_labels(config)
    mine = my_mailboxes(config)
    counts = get_store().voicemail_counts()
    if mine is None:
        # Messages may outlive their mailbox (a deleted employee): they stay readable.
        shown = list(labels) + sorted(box for box in counts if box not in labels)
    else:
        shown = [box for box in labels if box in mine]
    if mailbox and mailbox not in shown:
        abort(404 if mine is None else 403)
    zone = _site_zone(config)
    choices = []
    for box in shown:
        total, unheard = counts.get(box, (0, 0))
        choices.append((box, _("%(mailbox)s: %(unheard)d new of %(total)d",
                               mailbox=labels.get(box, box), unheard=unheard, total=total)))
    return render_template(
        "voicemail.html", errors=errors, mailbox=mailbox, choices=choices,
        messages=_messages(_rows_of(mailbox, mine), labels, zone),
        greetings=_greetings(config, labels, zone), limit=MESSAGES_SHOWN,
        max_greeting_s=int(GREETING_MAX_S),
        max_upload_mb=(current_app.config.get(GREETING_LIMIT_CONFIG) or 0) // (1024 * 1024),
    ), code


@bp.route("/voicemail")
@role_required(AGENT)
def page() -> tuple[str, int]:
    return _render(FormErrors(), mailbox=(request.args.get("mailbox") or "").strip())


def _back() -> Response:
    """To the list the form was posted from (with its mailbox filter)."""
    mailbox = (request.form.get("mailbox") or "").strip()
    return redirect(url_for("voicemail.page", mailbox=mailbox or None))


# --------------------------------------------------------------------------- one message


def _audio_response(message: Mapping[str, Any], *, attachment: bool) -> Response:
    try:
        audio = get_store().voicemail_audio(int(message["id"]))
    except RecordNotFoundError:
        abort(404)
    zone = _site_zone(get_store().load_config())
    left_at = datetime.fromtimestamp(float(message["left_at"]), zone).strftime(FILE_TIME_FORMAT)
    filename = f"voicemail-{message['mailbox']}-{left_at}-{message['id']}.wav"
    response = Response(audio, mimetype="audio/wav")
    disposition = "attachment" if attachment else "inline"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    # Byte ranges: browsers seek in (and Safari only plays) media served with them.
    return response.make_conditional(request, accept_ranges=True, complete_length=len(audio))


@bp.route("/voicemail/<int:message_id>/audio")
@role_required(AGENT)
def audio(message_id: int) -> Response:
    return _audio_response(_message_row(message_id), attachment=False)


@bp.route("/voicemail/<int:message_id>/download")
@role_required(AGENT)
def download(message_id: int) -> Response:
    return _audio_response(_message_row(message_id), attachment=True)


@bp.route("/voicemail/<int:message_id>/heard", methods=["POST"])
@role_required(AGENT)
def heard(message_id: int) -> Response:
    _message_row(message_id)
    get_store().mark_voicemail_heard(message_id, request.form.get("heard") != "no")
    return _back()


@bp.route("/voicemail/<int:message_id>/delete", methods=["POST"])
@role_required(AGENT)
def delete(message_id: int) -> Response:
    message = _message_row(message_id)
    get_store().delete_voicemail(message_id)
    flash(_("The message from %(caller)s was deleted.",
            caller=message["caller"] or _("an unknown number")))
    return _back()


# --------------------------------------------------------------------------- greetings


def _greeting_mailbox(mailbox: str) -> str:
    """`mailbox` if the logged-in user may change its greeting: 404 if no such mailbox, 403 if
    it is not theirs."""
    config = get_store().load_config()
    if mailbox not in mailbox_labels(config):
        abort(404)
    if mailbox not in _greeting_mailboxes(config):
        abort(403)
    return mailbox


def greeting_field(mailbox: str) -> str:
    return f"greeting-{mailbox}"


def uploaded_greeting(errors: FormErrors, field: str) -> tuple[bytes, float] | None:
    """The form's `greeting` file as the box plays it (16-bit 8 kHz mono WAV) and its length in
    seconds; None, with the reason in `errors[field]`, when there is none or it does not fit."""
    upload = request.files.get("greeting")
    if upload is None or not upload.filename:
        errors[field] = _("Choose a WAV file.")
        return None
    try:
        pcm = to_pcm8k(upload.read(), max_s=GREETING_MAX_S)
    except AudioError as error:
        # The converter says what the file is in English; the page says what that means.
        errors[field] = _("The file does not fit: %(reason)s", reason=str(error))
        return None
    if not pcm:
        errors[field] = _("The file does not fit: %(reason)s", reason=_("it holds no sound"))
        return None
    return wav_bytes(pcm), len(pcm) / PCM_BYTES_PER_S


@bp.route("/voicemail/greetings/<mailbox>", methods=["POST"])
@role_required(AGENT)
@upload_limit(GREETING_LIMIT_CONFIG)
def upload_greeting(mailbox: str) -> Any:
    _greeting_mailbox(mailbox)
    errors = FormErrors()
    converted = uploaded_greeting(errors, greeting_field(mailbox))
    if converted is None:
        return _render(errors, 400)
    audio, duration_s = converted
    get_store().set_greeting(mailbox, audio, duration_s=duration_s, at=time.time())
    flash(_("The greeting of mailbox %(mailbox)s is now the uploaded file (%(seconds)d s).",
            mailbox=mailbox, seconds=round(duration_s)))
    return redirect(url_for("voicemail.page", _anchor="greetings"))


@bp.route("/voicemail/greetings/<mailbox>/audio")
@role_required(AGENT)
def greeting_audio(mailbox: str) -> Response:
    _greeting_mailbox(mailbox)
    audio = get_store().greeting(mailbox)
    if audio is None:
        abort(404)
    response = Response(audio, mimetype="audio/wav")
    response.headers["Content-Disposition"] = f'inline; filename="greeting-{mailbox}.wav"'
    response.headers["Cache-Control"] = "private, no-store"
    return response.make_conditional(request, accept_ranges=True, complete_length=len(audio))


@bp.route("/voicemail/greetings/<mailbox>/delete", methods=["POST"])
@role_required(AGENT)
def remove_greeting(mailbox: str) -> Response:
    _greeting_mailbox(mailbox)
    get_store().set_greeting(mailbox, None)
    flash(_("Mailbox %(mailbox)s uses the built-in greeting again.", mailbox=mailbox))
    return redirect(url_for("voicemail.page", _anchor="greetings"))


@bp.errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> Any:
    """A greeting over the upload limit: the page with the reason beside the field (the form
    could not be read, so nothing was changed)."""
    if session.get("role") not in (ADMIN, AGENT):
        return redirect(url_for("auth.login"))
    mailbox = str((request.view_args or {}).get("mailbox", ""))
    errors = FormErrors()
    mine = _greeting_mailboxes(get_store().load_config())
    field = greeting_field(mailbox) if mailbox in mine else "form"
    errors[field] = _("The file does not fit: it is larger than %(size)d MB. Nothing was "
                      "changed; a greeting of up to %(seconds)d s in 16-bit mono WAV is far "
                      "smaller.",
                      size=(current_app.config.get(GREETING_LIMIT_CONFIG) or 0) // (1024 * 1024),
                      seconds=int(GREETING_MAX_S))
    return _render(errors, 413)
