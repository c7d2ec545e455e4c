"""Text that came from outside, made harmless where it is shown: a terminal and a spreadsheet.

Caller numbers, display names, User-Agent headers and contacts are chosen by whoever sends a SIP
request. Printed raw, an ESC sequence in one can retitle the admin's terminal, hide lines or
(with some terminals) type commands; bidi overrides can make a line read differently than it
is. Written raw to a CSV file, a value starting with `=` becomes a formula the spreadsheet runs
(`=HYPERLINK(...)`, DDE). `terminal_text` and `csv_cell` take care of each; every CLI table and
every CSV export goes through them.
"""

from __future__ import annotations

import re

# C0 controls (ESC among them), DEL, C1 controls (0x9B is a one-byte CSI to some terminals),
# and the Unicode bidi embeddings, overrides and isolates ("Trojan Source", CVE-2021-42574),
# plus the line and paragraph separators.
_UNSAFE_FOR_TERMINAL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# In JSON, C0 is escaped already (RFC 8259 §7); the rest is written raw with ensure_ascii off.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# OWASP "CSV Injection": a cell starting with one of these is read as a formula by Excel,
# LibreOffice or Google Sheets.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A phone number as the box writes it (E.164 with its +, or plain digits) stays as it is: a
# spreadsheet reads "+79161234567" as the number 79161234567 at worst — no function call, no
# reference — and a caller number in a report must stay searchable and usable. Anything else
# starting with a formula character gets an apostrophe in front, which spreadsheets show as
# text and do not evaluate.
_PLAIN_PHONE_NUMBER = re.compile(r"\+?[0-9]{1,32}")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_text(text: str) -> str:
    """`text` with every control character and bidi control written out as an escape
    (ESC → `\\x1b`): shown, never obeyed."""
    return _UNSAFE_FOR_TERMINAL.sub(_escape, text)


def terminal_json(text: str) -> str:
    """JSON text (from `json.dumps(..., ensure_ascii=False)`) with the characters a terminal
    could obey escaped as JSON `\\u` escapes: still the same JSON, still readable Cyrillic."""
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def csv_cell(text: str) -> str:
    """A CSV cell that a spreadsheet shows as text rather than runs as a formula."""
    if text.startswith(CSV_FORMULA_STARTS) and not _PLAIN_PHONE_NUMBER.fullmatch(text):
        return "'" + text
    return text
