"""`webui.db`: one store per application context, closed when the context ends (flaskr's
`test_get_close_db`)."""

from __future__ import annotations

import sqlite3

import pytest
from flask import Flask

from webui.db import get_store


def test_get_store_gives_one_store_per_context_and_closes_it_when_the_context_ends(
    app: Flask,
) -> None:
    with app.app_context():
        store = get_store()
        assert get_store() is store
        assert store.load_config().departments[0].number == "200"

    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.config_revision()


def test_each_context_opens_a_store_of_its_own(app: Flask) -> None:
    with app.app_context():
        first = get_store()
    with app.app_context():
        second = get_store()
        assert second is not first
        assert second.config_revision() == 1
