"""Caller identity from outside, made safe once at the edge where a call comes in.

A caller's number and display name arrive from whoever sends the call — the provider, a spoofed
datagram, later a GSM modem's +CLIP — and travel from there into the INVITEs sent to the office's
phones, the call records, CSV exports, webhook payloads and the terminal. Every line hands what
it received to these two functions and passes on only what they return, so nothing further in
the box ever sees a control character, a percent-escaped line break or a formula in a number.
"""

from __future__ import annotations

import re
import unicodedata

ANONYMOUS = "anonymous"
MAX_NUMBER_DIGITS = 20  # E.164 allows 15; room for national prefixes and extensions
MAX_DISPLAY_CHARS = 64

# Visual separators people and providers put into numbers: "+7 (916) 123-45-67", "916.123.4567".
_SEPARATORS_RE = re.compile(r"[\s().\-]")
_NUMBER_RE = re.compile(rf"\+?[0-9]{{1,{MAX_NUMBER_DIGITS}}}")
# Bidi overrides and isolates reorder what an admin reads in the web UI (CVE-2021-42574's trick).
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def caller_number(text: str | None) -> str:
    """The caller's number as digits with an optional leading `+`, or "anonymous".

    Providers write withheld numbers as "anonymous", "Anonymous", "restricted", "unavailable" or
    leave the user part out; anything that is not a number after dropping visual separators is
    treated the same way rather than passed on.
    """
    if not text:
        return ANONYMOUS
    compact = _SEPARATORS_RE.sub("", text)
    if _NUMBER_RE.fullmatch(compact):
        return compact
    return ANONYMOUS


def display_name(raw: str | None) -> str | None:
    """A display name as plain text: quotes and escapes undone (RFC 3261 §25.1 quoted-string),
    control, format and bidi characters dropped, white space folded, length bounded. None when
    nothing printable is left."""
    if not raw:
        return None
    text = raw.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)
    kept = "".join(
        ch if not ch.isspace() else " "
        for ch in text
        if ch.isspace() or (unicodedata.category(ch)[0] != "C" and ch not in _BIDI_CONTROLS)
    )
    folded = " ".join(kept.split())[:MAX_DISPLAY_CHARS].strip()
    return folded or None


def quoted_display(name: str) -> str:
    """`name` (from `display_name`) as a quoted-string for a From header (RFC 3261 §25.1)."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
