"""The web UI's way to the store, in the shape of the Flask tutorial's (flaskr's) `db.py`:
`get_store` opens the database named by the app's `DB` setting on first use in an application
context (a request, or an `app.app_context()` in a test), `close_store` closes it when that context
ends, and `init_app` wires the closing into an app. Blueprints import `get_store` from here, so
none of them reaches back into the package that registers them.
"""

from __future__ import annotations

from flask import Flask, current_app, g

from firmware.store import Store


def get_store() -> Store:
    """The store for this request (opened on first use, closed when the request ends)."""
    if "store" not in g:
        g.store = Store.open(current_app.config["DB"])
    store: Store = g.store
    return store


def close_store(exc: BaseException | None = None) -> None:
    """Close the store this context opened, if it opened one (`exc` is Flask's teardown
    argument: the error that ended the context, unused)."""
    store = g.pop("store", None)
    if store is not None:
        store.close()


def init_app(app: Flask) -> None:
    """Close the store each application context opened when that context ends."""
    app.teardown_appcontext(close_store)
