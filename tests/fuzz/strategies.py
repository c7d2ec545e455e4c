"""Hypothesis strategies shared by the fuzz tests: text that SIP and SDP parsers find hard
(separators, quotes, escapes, control characters, non-ASCII) and header values built from it."""

from __future__ import annotations

from hypothesis import strategies as st

# The characters SIP's grammar gives meaning to, whitespace, controls and some non-ASCII.
NASTY_CHARS = list(";,:<>\"'=@ \t\\/?&%[]*#+.-_!~") + ["\x00", "\x7f", "\r", "\n", "\u00e9",
                                                    "\u044f", "\U0001f600", "\udcff"]
nasty_text = st.text(
    alphabet=st.one_of(st.sampled_from(NASTY_CHARS),
                       st.characters(min_codepoint=0x20, max_codepoint=0x7e)),
    max_size=60,
)
token = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e,
                                       exclude_characters=":;,<>\"@ "), min_size=1, max_size=12)
