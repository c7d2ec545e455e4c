"""Russian by default, English switchable: every string in the code and templates has its
Russian text, and the compiled catalogs match their sources."""

from __future__ import annotations

from webui.i18n import problems


def test_every_string_is_translated_and_compiled() -> None:
    assert problems() == []
