"""Who may do what: sessions, roles, CSRF tokens, login rate limiting, security headers.

- The admin password is hashed with scrypt (werkzeug.security); there is no default password:
  the first-run page makes the admin choose one before anything else is reachable.
- Every state-changing request carries the session's CSRF token (a hidden form field, or the
  X-CSRF-Token header) — OWASP's synchronizer token pattern.
- Failed logins are counted per client address and per account in a sliding window
  (`LoginLimiter`); past `LOGIN_ATTEMPTS` from one address or `LOGIN_ACCOUNT_ATTEMPTS` on one
  account within `LOGIN_WINDOW_S`, attempts are refused with 429 until the window has moved on.
  A success forgets only its own account's failures, so logging in as yourself does not buy
  more guesses at someone else's password.
- A login is a row on the server (`webui_sessions`, holding a hash of the id the cookie carries
  and a fingerprint of the password it was made with), checked on every request: logout ends
  every session of that user, and so does a password change, by this UI or any other way (an
  import, a restore) — the fingerprint no longer matches.
- The session cookie is HttpOnly and SameSite=Strict, and Secure when the request came over
  HTTPS (as waitress reports it: X-Forwarded-Proto counts only from a trusted proxy); pages
  forbid framing and load nothing from elsewhere (Content-Security-Policy: 'self' only — the
  box may be offline, and no CDN is used).
- Redirects after login and after the language switch go only to a path on this site
  (`local_path`).
- A request body may be at most `MAX_CONTENT_LENGTH`; a view marked with `upload_limit` (an
  audio upload) allows the larger size its configuration key names. The limit is set before
  the CSRF check reads the form, so it applies to the whole body.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from flask import Flask, abort, current_app, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_babel import gettext as _
from werkzeug.security import check_password_hash, generate_password_hash

from firmware.store.db import SETTING_WEBUI_ADMIN_PASSWORD

from .db import get_store

LOGGER = logging.getLogger(__name__)

# Logins made while the database could not be written (log_in): id hash → the row a stored
# login has; the oldest go beyond UNSTORED_SESSIONS_KEPT.
UNSTORED_SESSIONS_KEPT = 50
_UNSTORED_SESSIONS: dict[str, dict[str, Any]] = {}
_UNSTORED_LOCK = threading.Lock()

ADMIN_PASSWORD_SETTING = SETTING_WEBUI_ADMIN_PASSWORD
MIN_ADMIN_PASSWORD = 8
# The limiter's account for first-run setup code attempts (no user can be called that: user
# names are "admin" and extension numbers).
SETUP_CODE_ACCOUNT = "(setup code)"
ACCOUNT_KEY_CHARS = 64  # a typed user name counts by its first characters
MAX_TRACKED_KEYS = 10_000  # accounts and addresses with recent failures kept at most
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ADMIN = "admin"
AGENT = "agent"
UPLOAD_LIMIT_ATTRIBUTE = "upload_limit_config"

F = TypeVar("F", bound=Callable[..., Any])


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def password_matches(stored_hash: str, password: str) -> bool:
    return check_password_hash(stored_hash, password)


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def _check_csrf() -> None:
    if request.method not in UNSAFE_METHODS:
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf") or ""
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        abort(400, description=_("The form has expired or did not come from this page. "
                                 "Reload the page and try again."))


def upload_limit(config_key: str) -> Callable[[F], F]:
    """The view accepts a request body of up to `app.config[config_key]` bytes instead of
    `MAX_CONTENT_LENGTH` (Flask reads view attributes the same way, e.g. `required_methods`)."""

    def decorator(view: F) -> F:
        setattr(view, UPLOAD_LIMIT_ATTRIBUTE, config_key)
        return view

    return decorator


def _apply_upload_limit() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    config_key = getattr(view, UPLOAD_LIMIT_ATTRIBUTE, None)
    if config_key is not None:
        request.max_content_length = current_app.config[config_key]


def _headers(response: Any) -> Any:
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'",
    )
    return response


class LoginLimiter:
    """Failed login attempts in a sliding window, counted per client address and per account
    (thread-safe: waitress serves requests from a pool of threads).

    Per address, so one guesser is slowed whatever names they try; per account, so guesses at
    one password from many addresses are slowed too. The account count can be pushed by anyone
    who knows the user name (a lock-out for the window's length); its limit is higher than the
    address's, so that takes more than one address. A success forgets that account's failures
    only: the address's stay, so an agent's own good logins buy no more guesses at the admin.
    """

    def __init__(self, attempts_per_address: int, attempts_per_account: int,
                 window_s: float) -> None:
        self.attempts_per_address = attempts_per_address
        self.attempts_per_account = attempts_per_account
        self.window_s = window_s
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, account: str, address: str, now: float | None = None) -> int:
        """Seconds until `address` may try `account` again (0: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return max(self._wait(("address", address), self.attempts_per_address, now),
                       self._wait(("account", _account_key(account)),
                                  self.attempts_per_account, now))

    def failed(self, account: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) >= MAX_TRACKED_KEYS:
                self._forget_old(now)
            for key in (("address", address), ("account", _account_key(account))):
                self._prune(key, now).append(now)

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._failures.pop(("account", _account_key(account)), None)

    def _wait(self, key: tuple[str, str], attempts: int, now: float) -> int:
        failures = self._prune(key, now)
        if len(failures) < attempts:
            return 0
        return max(1, int(failures[-attempts] + self.window_s - now + 0.999))

    def _prune(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def _forget_old(self, now: float) -> None:
        """Keep the table bounded: drop keys whose failures have all left the window, then,
        if that is not enough, those whose last failure is oldest."""
        for key in list(self._failures):
            if not self._prune(key, now):
                del self._failures[key]
        if len(self._failures) >= MAX_TRACKED_KEYS:
            by_age = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for key in by_age[:len(by_age) // 2]:
                del self._failures[key]


def _account_key(account: str) -> str:
    return account[:ACCOUNT_KEY_CHARS]


def limiter() -> LoginLimiter:
    return cast(LoginLimiter, current_app.extensions["linebox_login_limiter"])


def client_address() -> str:
    return request.remote_addr or "-"


def local_path(target: str) -> str | None:
    """`target` if it is a path on this site, else None: a redirect never leads elsewhere.

    One leading slash and no second one (`//host` is another site), no backslash (browsers
    read `/\\host` as `//host`), no control character or white space (browsers drop a tab or a
    line break from a URL, so `/<TAB>/host` becomes `//host`), none of these once more
    percent-decoded either, and no scheme or host by the URL parser's reading.
    """
    if not target.startswith("/"):
        return None
    for form in (target, unquote(target)):
        if form.startswith("//") or "\\" in form:
            return None
        if any(char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")
               for char in form):
            return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def account_of(role: str, extension: str | None = None) -> str:
    """The user a session belongs to: "admin", or "extension:101" for an agent."""
    return ADMIN if role == ADMIN else f"extension:{extension}"


def _credential(account: str) -> str | None:
    """A fingerprint of the account's current password (None: no such account any more).
    Sessions keep the one they were made with; a changed password no longer matches it."""
    store = get_store()
    if account == ADMIN:
        secret = store.admin_password_hash()
    else:
        secret = store.extension_password(account.removeprefix("extension:"))
    if secret is None:
        return None
    key = str(current_app.secret_key).encode()
    return hmac.new(key, f"{account}\0{secret}".encode(), hashlib.sha256).hexdigest()


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _lifetime_s() -> float:
    return float(current_app.permanent_session_lifetime.total_seconds())


def _clear_login() -> None:
    """Forget who is logged in, keeping the chosen language."""
    locale = session.get("locale")
    session.clear()
    if locale is not None:
        session["locale"] = locale


def log_in(role: str, *, extension: str | None = None) -> None:
    """A fresh session for the logged-in user (a new session on login: no fixation), kept on
    the server until it expires, the user logs out or the password changes."""
    account = account_of(role, extension)
    credential = _credential(account)
    if credential is None:
        raise LookupError(f"no such user: {account}")
    session_id = secrets.token_urlsafe(32)
    now = time.time()
    try:
        get_store().add_web_session(
            _id_hash(session_id), account=account, credential=credential, at=now,
            expired_before=now - _lifetime_s(),
            most_per_account=int(current_app.config["SESSIONS_PER_ACCOUNT"]))
    except sqlite3.OperationalError as error:
        # A full data partition (issue 16): the admin must still get in to see why. The
        # login lives in this process only, checked like a stored one, until it restarts.
        LOGGER.error("web UI login of %s kept in memory only: the database cannot be "
                     "written (%s)", account, error)
        with _UNSTORED_LOCK:
            while len(_UNSTORED_SESSIONS) >= UNSTORED_SESSIONS_KEPT:
                _UNSTORED_SESSIONS.pop(next(iter(_UNSTORED_SESSIONS)))
            _UNSTORED_SESSIONS[_id_hash(session_id)] = {
                "account": account, "credential": credential, "created_at": now}
    _clear_login()
    session.permanent = True
    session["sid"] = session_id
    session["role"] = role
    if extension is not None:
        session["extension"] = extension
    csrf_token()


def current_account() -> str | None:
    role = session.get("role")
    return None if role is None else account_of(str(role), session.get("extension"))


def log_out() -> None:
    """End every session of the logged-in user (on every browser), and this one."""
    account = current_account()
    if account is not None:
        _forget_unstored(account)
        ended = get_store().end_web_sessions(account)
        LOGGER.info("web UI logout of %s from %s (%d sessions ended)", account,
                    client_address(), ended)
    _clear_login()


def end_sessions(account: str) -> None:
    """End every session of `account` (its password has changed)."""
    _forget_unstored(account)
    ended = get_store().end_web_sessions(account)
    if ended:
        LOGGER.info("web UI sessions of %s ended: %d", account, ended)


def _forget_unstored(account: str) -> None:
    with _UNSTORED_LOCK:
        for key in [k for k, v in _UNSTORED_SESSIONS.items() if v["account"] == account]:
            del _UNSTORED_SESSIONS[key]


def _check_session() -> None:
    """A session names a live login: its row exists, has not expired, belongs to the same
    user and was made with the password that user has now. Otherwise it is logged out."""
    account = current_account()
    if account is None:
        return
    row = None
    session_id = session.get("sid")
    if isinstance(session_id, str):
        row = (get_store().web_session(_id_hash(session_id))
               or _UNSTORED_SESSIONS.get(_id_hash(session_id)))
    credential = _credential(account)
    live = (row is not None and credential is not None and row["account"] == account
            and row["created_at"] >= time.time() - _lifetime_s()
            and hmac.compare_digest(str(row["credential"]), credential))
    if not live:
        _clear_login()


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, its cookie marked Secure when this request came over
    HTTPS. waitress sets the scheme: from the connection, or from X-Forwarded-Proto only when
    it comes from the trusted proxy (`linebox web --trusted-proxy`)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request.is_secure) or super().get_cookie_secure(app)


def role_required(role: str) -> Callable[[F], F]:
    """The view needs a logged-in user of `role` (an admin may do everything)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            current = session.get("role")
            if current is None:
                return redirect(url_for("auth.login", next=request.path))
            if current != role and current != ADMIN:
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorator


admin_required = role_required(ADMIN)


def init_app(app: Flask) -> None:
    app.extensions["linebox_login_limiter"] = LoginLimiter(
        app.config["LOGIN_ATTEMPTS"], app.config["LOGIN_ACCOUNT_ATTEMPTS"],
        app.config["LOGIN_WINDOW_S"],
    )
    app.session_interface = SessionInterface()
    # The body's limit first: the CSRF check reads the form, and with it the whole body.
    app.before_request(_apply_upload_limit)
    app.before_request(_check_session)
    app.before_request(_check_csrf)
    app.after_request(_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
