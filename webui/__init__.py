"""The Linebox web UI: set up, run and watch the box from a browser.

A Flask application factory in the manner of the Flask tutorial (flaskr): `create_app` builds the
app, each page group is a blueprint, and the store is opened per request (`webui.db`). The UI
never imports the SIP core: it reads and writes configuration through the store (`firmware.store`),
and asks the running daemon for live state over its control socket (`webui.control`). It runs under
waitress in a process of its own (`linebox web`, or started by `linebox run --http`).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, session
from flask_babel import Babel

from firmware.store import Store
from firmware.store.db import SESSION_KEY_SECRET

from . import db, security, template_cache

DEFAULT_LOCALE = "ru"
LOCALES = ("ru", "en")
TRANSLATIONS = Path(__file__).parent / "translations"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The web UI for the database at `LINEBOX_DB` (or `test_config["DB"]`)."""
    app = Flask(__name__, instance_relative_config=False)
    app.config.from_mapping(
        DB=os.environ.get("LINEBOX_DB", "var/linebox.db"),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,  # a configuration backup is a few kilobytes
        # Only the greeting upload takes more: 120 s of 16-bit 48 kHz stereo WAV is 23 MB.
        GREETING_MAX_CONTENT_LENGTH=25 * 1024 * 1024,
        BABEL_DEFAULT_LOCALE=DEFAULT_LOCALE,
        # One catalog per page group, so each group's strings live beside each other;
        # Flask-Babel merges them.
        BABEL_TRANSLATION_DIRECTORIES=";".join(
            str(path) for path in sorted(TRANSLATIONS.iterdir()) if path.is_dir()
        ),
        # Failed logins (and setup codes) allowed in LOGIN_WINDOW_S: from one address, and on
        # one account from anywhere (security.LoginLimiter says why both).
        LOGIN_ATTEMPTS=5,
        LOGIN_ACCOUNT_ATTEMPTS=10,
        LOGIN_WINDOW_S=300.0,
        # Logins kept per account (older ones end): bounds the session table.
        SESSIONS_PER_ACCOUNT=20,
        CONTROL_TIMEOUT_S=2.0,
    )
    if test_config is not None:
        app.config.update(test_config)
    db.init_app(app)
    _prepare_store(app)

    Babel(app, locale_selector=_locale)
    security.init_app(app)
    # Templates compiled when the image was built, where it has them (webui/template_cache.py).
    template_cache.attach(app, Path(__file__).parent)
    app.context_processor(lambda: {"locales": LOCALES, "current_locale": _locale()})

    from . import (
        agent,
        auth,
        calls,
        departments,
        employees,
        lines,
        menus,
        monitor,
        notices,
        numbers,
        reports,
        rules,
        system,
        update,
        voicemail,
    )

    for module in (auth, employees, departments, numbers, lines, rules, menus, monitor, reports,
                   agent, voicemail, system, update, calls, notices):
        app.register_blueprint(module.bp)
    from . import tls_page  # the HTTPS certificate (issue 16)

    app.register_blueprint(tls_page.bp)
    from . import whatif  # the owner's what-if replay and channel sizing (issue 17)

    app.register_blueprint(whatif.bp)
    app.add_url_rule("/", endpoint="index", view_func=auth.index)
    return app


def _locale() -> str:
    # Russian by default (the product's users); English when chosen in the page header.
    chosen = session.get("locale")
    return str(chosen) if chosen in LOCALES else DEFAULT_LOCALE


def _prepare_store(app: Flask) -> None:
    """The session signing key: made once and kept in the store's own table (never in an
    export, never replaced by a restore), so logins survive a restart of the web UI process.
    And, while no administrator exists, the first-run setup code the wizard will ask for."""
    store = Store.open(app.config["DB"])
    try:
        if not app.config.get("SECRET_KEY"):
            app.config["SECRET_KEY"] = store.web_secret_or_new(
                SESSION_KEY_SECRET, lambda: secrets.token_hex(32))
        store.setup_code()
    finally:
        store.close()
