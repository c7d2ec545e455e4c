"""Menus page (admin): the voice menus, each with its keys edited in place (one field per key,
the destination as in the configuration file), its timeout, repeats and actions, and its
greeting — the office's uploaded recording (a WAV file, converted to what the box plays) or the
built-in prompts it names, or recorded by phone (*97 and the menu's number, shown with it, from
an extension the page lets record: firmware/core/menu_greetings.py). A new menu is added by
name; a menu is deleted unless something still routes to it. Everything is saved through
`configedit`, validated exactly like an import: an error is shown beside the menu's form and
nothing is changed. Uploaded greetings are stored beside the mailboxes' (`menu:NAME`), where
the daemon re-reads them every 2 s.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from firmware.routing.menu import DEFAULT_GREETING, GREETING_CODE, MENU_KEYS, greeting_key

from . import configedit
from .db import get_store
from .forms import FormErrors
from .security import ADMIN, role_required, upload_limit
from .voicemail import GREETING_LIMIT_CONFIG, GREETING_MAX_S, uploaded_greeting

bp = Blueprint("menus", __name__)

SETTINGS = ("timeout_s", "repeats", "timeout", "invalid", "digit_timeout_s")


def _menus(data: dict[str, Any]) -> list[dict[str, Any]]:
    menus = data.setdefault("menus", [])
    assert isinstance(menus, list)
    return menus


def _render(errors: FormErrors | None = None, status: int = 200,
            draft: configedit.Draft | None = None) -> Any:
    draft = draft or configedit.load()
    uploaded = {name.removeprefix("menu:"): info for name, info in get_store().greetings().items()
                if name.startswith("menu:")}
    recorders = (draft.data.get("site") or {}).get("greeting_recorders") or []
    return render_template("menus.html", menus=_menus(draft.data), keys=MENU_KEYS,
                           uploaded=uploaded, errors=errors or FormErrors(),
                           default_greeting=", ".join(DEFAULT_GREETING),
                           max_greeting_s=int(GREETING_MAX_S), greeting_code=GREETING_CODE,
                           recorders=", ".join(str(r) for r in recorders)), status


def _find(draft: configedit.Draft, name: str) -> dict[str, Any]:
    menu = next((m for m in _menus(draft.data) if m.get("name") == name), None)
    if menu is None:
        abort(404)
    return menu


def _save(draft: configedit.Draft, field: str, done: str, *, show_draft: bool = True) -> Any:
    """Save, or the page with the reason beside `field`: showing what was typed, or (a menu
    that could not be deleted) what is stored."""
    try:
        configedit.save(draft)
    except configedit.ConfigError as error:
        errors = FormErrors()
        errors[field] = str(error)
        return _render(errors, 400, draft if show_draft else None)
    except configedit.RevisionConflictError:
        errors = FormErrors()
        errors[field] = _("Someone else saved the configuration meanwhile; nothing was changed. "
                          "Look at the page again and repeat the change.")
        return _render(errors, 409)
    flash(done)
    return redirect(url_for("menus.page", _anchor=field))


@bp.route("/menus")
@role_required(ADMIN)
def page() -> Any:
    return _render()


@bp.route("/menus/new", methods=["POST"])
@role_required(ADMIN)
def add() -> Any:
    draft = configedit.load()
    name = request.form.get("name", "").strip()
    # A new menu starts as "press 1 for the first department" and is edited in place.
    first = next((str(d["number"]) for d in draft.data.get("departments", [])), None)
    entry: dict[str, Any] = {"name": name}
    if first is not None:
        entry["keys"] = {"1": first}
    else:
        entry["direct_dial"] = True
    _menus(draft.data).append(entry)
    return _save(draft, "menu-new", _("Menu %(name)s was added.", name=name))


@bp.route("/menus/<name>", methods=["POST"])
@role_required(ADMIN)
def edit(name: str) -> Any:
    draft = configedit.load()
    menu = _find(draft, name)
    form = request.form
    keys = {key: form.get(f"key-{key}", "").strip() for key in MENU_KEYS}
    menu.pop("keys", None)
    if any(keys.values()):
        menu["keys"] = {key: to for key, to in keys.items() if to}
    greeting = [part.strip() for part in form.get("greeting", "").split(",") if part.strip()]
    menu.pop("greeting", None)
    if greeting:
        menu["greeting"] = greeting
    for key in SETTINGS:
        menu.pop(key, None)
        text = form.get(key, "").strip()
        if text:
            menu[key] = _number_or_text(text)
    menu["direct_dial"] = form.get("direct_dial") == "on"
    then = form.get("then", "").strip()
    menu.pop("then", None)
    if then:
        menu["then"] = then
    return _save(draft, f"menu-{name}", _("Menu %(name)s was saved.", name=name))


def _number_or_text(text: str) -> int | float | str:
    """"5" and "2.5" as numbers (seconds, repeats); a destination stays text, as in YAML
    written with quotes."""
    if text.isdigit() and len(text) <= 2:
        return int(text)
    try:
        return float(text) if "." in text else text
    except ValueError:
        return text


@bp.route("/menus/<name>/delete", methods=["POST"])
@role_required(ADMIN)
def delete(name: str) -> Any:
    draft = configedit.load()
    menu = _find(draft, name)
    _menus(draft.data).remove(menu)
    if not draft.data["menus"]:
        del draft.data["menus"]
    return _save(draft, f"menu-{name}", _("Menu %(name)s was deleted.", name=name),
                 show_draft=False)


@bp.route("/menus/recorders", methods=["POST"])
@role_required(ADMIN)
def recorders() -> Any:
    """Who may record a menu's greeting by phone (`site.greeting_recorders`)."""
    draft = configedit.load()
    site = draft.data.setdefault("site", {})
    numbers = [part.strip() for part in request.form.get("recorders", "").replace(
        ",", " ").split() if part.strip()]
    site.pop("greeting_recorders", None)
    if numbers:
        site["greeting_recorders"] = numbers
    return _save(draft, "recorders", _("Saved who may record greetings by phone."))


# --------------------------------------------------------------------------- greetings


def _known(name: str) -> str:
    _find(configedit.load(), name)
    return name


@bp.route("/menus/<name>/greeting", methods=["POST"])
@role_required(ADMIN)
@upload_limit(GREETING_LIMIT_CONFIG)
def upload_greeting(name: str) -> Any:
    _known(name)
    errors = FormErrors()
    field = f"menu-{name}"
    converted = uploaded_greeting(errors, field)
    if converted is None:
        return _render(errors, 400)
    audio, duration_s = converted
    get_store().set_greeting(greeting_key(name), audio, duration_s=duration_s, at=time.time())
    flash(_("Menu %(name)s now plays the uploaded greeting (%(seconds)d s).", name=name,
            seconds=round(duration_s)))
    return redirect(url_for("menus.page", _anchor=field))


@bp.route("/menus/<name>/greeting.wav")
@role_required(ADMIN)
def greeting_audio(name: str) -> Response:
    audio = get_store().greeting(greeting_key(_known(name)))
    if audio is None:
        abort(404)
    response = Response(audio, mimetype="audio/wav")
    response.headers["Cache-Control"] = "private, no-store"
    return response.make_conditional(request, accept_ranges=True, complete_length=len(audio))


@bp.route("/menus/<name>/greeting/delete", methods=["POST"])
@role_required(ADMIN)
def remove_greeting(name: str) -> Response:
    get_store().set_greeting(greeting_key(_known(name)), None)
    flash(_("Menu %(name)s plays its built-in prompts again.", name=name))
    return redirect(url_for("menus.page", _anchor=f"menu-{name}"))
