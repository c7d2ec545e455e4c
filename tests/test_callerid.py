"""Caller identity made safe at the edge (issue 9 item 1)."""

from __future__ import annotations

import pytest

from firmware.callerid import caller_number, display_name, quoted_display


@pytest.mark.parametrize(("raw", "expected"), [
    ("+79161234567", "+79161234567"),
    ("+7 (916) 123-45-67", "+79161234567"),
    ("84951234567", "84951234567"),
    ("anonymous", "anonymous"),
    ("Restricted", "anonymous"),
    ("", "anonymous"),
    (None, "anonymous"),
    ("\r\nCall-Info: <sip:x>;answer-after=0", "anonymous"),
    ("=HYPERLINK(\"http://x\")", "anonymous"),
    ("1" * 21, "anonymous"),
    ("++7916", "anonymous"),
])
def test_caller_number_is_digits_and_plus_or_anonymous(raw: str | None, expected: str) -> None:
    assert caller_number(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ('"Ivan Petrov"', "Ivan Petrov"),
    ("Ivan Petrov", "Ivan Petrov"),
    ('"Evil\\\x07 \\"Corp\\""', 'Evil "Corp"'),
    ('"\u202eexe.txt"', "exe.txt"),
    ('"a\r\nb"', "a b"),
    ('"\x1b[31mred"', "[31mred"),
    ('"   "', None),
    (None, None),
])
def test_display_name_is_plain_text(raw: str | None, expected: str | None) -> None:
    assert display_name(raw) == expected


def test_display_name_is_bounded() -> None:
    name = display_name('"' + "Я" * 500 + '"')
    assert name is not None and len(name) == 64


def test_quoted_display_escapes_quotes_and_backslashes() -> None:
    assert quoted_display('a "b" \\ c') == '"a \\"b\\" \\\\ c"'
