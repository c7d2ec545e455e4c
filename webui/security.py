"""Who may do what: sessions, roles, CSRF tokens, login rate limiting, security headers.

- The admin password is hashed with scrypt (werkzeug.security); there is no default password:
  the first-run page makes the admin choose one before anything else is reachable.
- Every state-changing request carries the session's CSRF token (a hidden form field, or the
  X-CSRF-Token header) — OWASP's synchronizer token pattern.
- Failed logins are counted per client address; after `LOGIN_ATTEMPTS` failures within
  `LOGIN_WINDOW_S` further attempts are refused with 429 until the window has passed.
- The session cookie is HttpOnly and SameSite=Strict; pages forbid framing and load nothing from
  elsewhere (Content-Security-Policy: 'self' only — the box may be offline, and no CDN is used).
- A request body may be at most `MAX_CONTENT_LENGTH`; a view marked with `upload_limit` (an
  audio upload) allows the larger size its configuration key names. The limit is set before
  the CSRF check reads the form, so it applies to the whole body.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, abort, current_app, redirect, request, session, url_for
from flask_babel import gettext as _
from werkzeug.security import check_password_hash, generate_password_hash

ADMIN_PASSWORD_SETTING = "webui_admin_password"
MIN_ADMIN_PASSWORD = 8
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
    """Failed login attempts per client address in a sliding window (thread-safe: waitress
    serves requests from a pool of threads)."""

    def __init__(self, attempts: int, window_s: float) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds until `client` may try again (0: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._prune(client, now)
            if len(failures) < self.attempts:
                return 0
            return max(1, int(failures[0] + self.window_s - now + 0.999))

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._prune(client, now).append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _prune(self, client: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures


def limiter() -> LoginLimiter:
    return cast(LoginLimiter, current_app.extensions["linebox_login_limiter"])


def client_address() -> str:
    return request.remote_addr or "-"


def log_in(role: str, *, extension: str | None = None) -> None:
    """A fresh session for the logged-in user (a new session on login: no fixation)."""
    session.clear()
    session.permanent = True
    session["role"] = role
    if extension is not None:
        session["extension"] = extension
    csrf_token()


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
        app.config["LOGIN_ATTEMPTS"], app.config["LOGIN_WINDOW_S"]
    )
    # The body's limit first: the CSRF check reads the form, and with it the whole body.
    app.before_request(_apply_upload_limit)
    app.before_request(_check_csrf)
    app.after_request(_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
