"""Templates compiled ahead (webui/template_cache.py): what an image carries is used as it is, an
entry that does not match its template is not, and nothing is written on the box."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask

from webui import create_app
from webui.template_cache import (
    CACHE_DIRECTORY_ENV,
    DIRECTORY_NAME,
    SUFFIX,
    PrecompiledTemplates,
    attach,
    precompile,
)


def fresh_app(tmp_path: Path) -> Flask:
    return create_app({"DB": str(tmp_path / "box" / "linebox.db"), "TESTING": True})


CSRF_TOKEN = re.compile(r'(name="csrf_token" value=")[^"]+')


def first_page(app: Flask) -> str:
    """The first-run page, its per-session CSRF token blanked out."""
    reply = app.test_client().get("/", follow_redirects=True)
    assert reply.status_code == 200 and reply.request.path == "/setup"
    page = reply.get_data(as_text=True)
    assert CSRF_TOKEN.search(page)
    return CSRF_TOKEN.sub(r"\1", page)


def forbid_compiling(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a template was compiled")

    monkeypatch.setattr(app.jinja_env, "compile", refuse)


def test_every_template_is_compiled_and_the_first_page_then_needs_no_compiling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    count = precompile(cache)
    names = fresh_app(tmp_path).jinja_env.list_templates()
    assert count == len(names) > 0
    assert len(list(cache.glob(f"*{SUFFIX}"))) == len(names)

    plain = first_page(fresh_app(tmp_path))
    app = fresh_app(tmp_path)
    app.jinja_env.bytecode_cache = PrecompiledTemplates(cache)
    forbid_compiling(app, monkeypatch)
    assert first_page(app) == plain


def test_an_entry_that_does_not_match_its_template_is_compiled_afresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    precompile(cache)
    reader = PrecompiledTemplates(cache)
    setup = cache / f"{reader.get_cache_key('setup_password.html')}{SUFFIX}"
    base = cache / f"{reader.get_cache_key('base.html')}{SUFFIX}"
    assert setup.exists() and base.exists()
    setup.write_bytes(base.read_bytes())  # another template's code: its checksum differs
    plain = first_page(fresh_app(tmp_path))
    app = fresh_app(tmp_path)
    app.jinja_env.bytecode_cache = reader
    compiled: list[str] = []
    real_compile = app.jinja_env.compile

    def counting(source: str, name: str | None = None, filename: str | None = None,
                 raw: bool = False, defer_init: bool = False) -> object:
        compiled.append(str(name))
        return real_compile(source, name, filename, raw, defer_init)

    monkeypatch.setattr(app.jinja_env, "compile", counting)
    assert first_page(app) == plain
    assert compiled == ["setup_password.html"]


def test_the_box_reads_the_cache_and_writes_nothing(tmp_path: Path) -> None:
    package = tmp_path / "package"
    (package / DIRECTORY_NAME).mkdir(parents=True)
    app = fresh_app(tmp_path)
    attach(app, package)
    assert isinstance(app.jinja_env.bytecode_cache, PrecompiledTemplates)
    first_page(app)  # nothing there: compiled as without a cache
    assert list((package / DIRECTORY_NAME).iterdir()) == []


def test_without_the_directory_there_is_no_cache(tmp_path: Path) -> None:
    app = fresh_app(tmp_path)
    attach(app, tmp_path / "no-package")
    assert app.jinja_env.bytecode_cache is None


def test_without_an_image_cache_the_box_compiles_once_into_its_data_partition(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image without templates compiled ahead (Buildroot's package): the service script
    names a directory on the data partition; the first start compiles into it, the next one
    compiles nothing and serves the same page."""
    kept = tmp_path / "data" / "template-cache"
    monkeypatch.setenv(CACHE_DIRECTORY_ENV, str(kept))
    first = fresh_app(tmp_path)
    attach(first, tmp_path / "no-package")
    page = first_page(first)
    assert len(list(kept.glob(f"*{SUFFIX}"))) >= 2  # the page and the base it extends

    second = fresh_app(tmp_path)
    attach(second, tmp_path / "no-package")
    forbid_compiling(second, monkeypatch)
    assert first_page(second) == page


def test_a_data_partition_that_cannot_be_written_serves_the_pages_all_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the directory should be")
    monkeypatch.setenv(CACHE_DIRECTORY_ENV, str(blocked / "template-cache"))
    app = fresh_app(tmp_path)
    attach(app, tmp_path / "no-package")
    assert app.jinja_env.bytecode_cache is None  # compiled at each start, as without a cache
    first_page(app)
    vanishing = tmp_path / "vanishing"
    monkeypatch.setenv(CACHE_DIRECTORY_ENV, str(vanishing))
    app = fresh_app(tmp_path)
    attach(app, tmp_path / "no-package")
    vanishing.rmdir()  # gone once attached: no entry can be written (as on a full partition)
    first_page(app)
    assert not vanishing.exists()
