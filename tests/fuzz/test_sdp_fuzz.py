"""The SDP parser fuzzed (issue 16): offers built from valid lines with lines mutated, and raw
bytes. `SessionDescription.parse`, `choose_audio` and `answer` either work or raise the
documented `SdpError` (the call is answered 488)."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from firmware.media.sdp import SdpError, SessionDescription, accept_answer, answer, choose_audio
from tests.fuzz.conftest import FUZZ
from tests.fuzz.strategies import nasty_text

VALID_LINES = [
    "v=0", "o=- 1 1 IN IP4 198.51.100.7", "s=-", "c=IN IP4 198.51.100.7", "t=0 0",
    "m=audio 4000 RTP/AVP 8 0 101", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv",
    "m=video 5000 RTP/AVP 96", "c=IN IP6 2001:db8::7", "a=recvonly",
]
KINDS = "vosctmab"


@st.composite
def mutated_offers(draw: st.DrawFn) -> bytes:
    lines = list(VALID_LINES)
    for _ in range(draw(st.integers(0, 6))):
        index = draw(st.integers(0, len(lines) - 1)) if lines else 0
        action = draw(st.sampled_from(["drop", "repeat", "replace", "value", "cut", "kind"]))
        if not lines:
            lines.append(draw(nasty_text))
        elif action == "drop":
            del lines[index]
        elif action == "repeat":
            lines.insert(index, lines[index])
        elif action == "replace":
            lines[index] = draw(nasty_text)
        elif action == "value":
            lines[index] = lines[index][:2] + draw(nasty_text)
        elif action == "cut":
            lines[index] = lines[index][:draw(st.integers(0, len(lines[index])))]
        else:
            lines[index] = draw(st.sampled_from(KINDS)) + lines[index][1:]
    separator = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    return separator.join(lines).encode("utf-8", "surrogateescape")


def exercise(body: bytes) -> None:
    try:
        description = SessionDescription.parse(body)
    except SdpError:
        return
    with contextlib.suppress(SdpError):
        choose_audio(description)
    for call in (lambda: answer(body, host="192.0.2.1", port=10000),
                 lambda: accept_answer(body)):
        with contextlib.suppress(SdpError):
            call()


@FUZZ
@given(mutated_offers())
def test_mutated_offers_parse_or_raise_sdp_error(body: bytes) -> None:
    exercise(body)


@FUZZ
@given(st.binary(max_size=1500))
def test_raw_bytes_parse_or_raise_sdp_error(body: bytes) -> None:
    exercise(body)
    exercise(b"v=0\r\nm=audio 1 RTP/AVP 0\r\n" + body)
