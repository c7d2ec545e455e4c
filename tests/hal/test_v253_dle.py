"""The V.253 voice stream codec: DLE shielding both ways (V.253 §9.3)."""

from __future__ import annotations

import pytest

from hal.modem.v253 import (
    ABORT,
    DLE,
    DLE_CODES,
    ETX,
    SUB,
    DleDecoder,
    DleEncoder,
    DleEvent,
    DleKind,
    StreamEvent,
    VoiceSamples,
)


def drain(decoder: DleDecoder) -> list[StreamEvent]:
    events = []
    while (event := decoder.next_event()) is not None:
        events.append(event)
    return events


def merged(events: list[StreamEvent]) -> list[StreamEvent]:
    """Adjacent sample runs joined: how a stream reads regardless of how it was split."""
    out: list[StreamEvent] = []
    for event in events:
        if isinstance(event, VoiceSamples) and out and isinstance(out[-1], VoiceSamples):
            out[-1] = VoiceSamples(data=out[-1].data + event.data)
        else:
            out.append(event)
    return out


def decode(*chunks: bytes) -> list[StreamEvent]:
    decoder = DleDecoder()
    events: list[StreamEvent] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        events.extend(drain(decoder))
    return merged(events)


STREAM = (
    b"\x80\x81"
    + bytes([DLE, DLE])
    + b"\x7f"
    + bytes([DLE, ord("/"), DLE, ord("5"), DLE, ord("~")])
    + bytes([DLE, SUB])
    + b"\x00"
    + bytes([DLE, ord("l")])
    + b"\x90"
    + bytes([DLE, ETX])
    + b"\r\nOK\r\n"
)
EXPECTED: list[StreamEvent] = [
    VoiceSamples(data=b"\x80\x81\x10\x7f"),
    DleEvent(code="/", kind=DleKind.DTMF_START),
    DleEvent(code="5", kind=DleKind.DTMF),
    DleEvent(code="~", kind=DleKind.DTMF_END),
    VoiceSamples(data=b"\x10\x10\x00"),
    DleEvent(code="l", kind=DleKind.LOOP_BREAK),
    VoiceSamples(data=b"\x90"),
    DleEvent(code=chr(ETX), kind=DleKind.END_OF_STREAM),
]


@pytest.mark.parametrize("code", sorted(DLE_CODES))
def test_every_known_code_becomes_its_event(code: str) -> None:
    assert decode(b"\x01" + bytes([DLE, ord(code)])) == [
        VoiceSamples(data=b"\x01"),
        DleEvent(code=code, kind=DLE_CODES[code]),
    ]


def test_the_codes_named_in_the_standard_have_their_meaning() -> None:
    assert DLE_CODES["R"] is DleKind.RING
    assert DLE_CODES["b"] is DLE_CODES["K"] is DleKind.BUSY
    assert DLE_CODES["d"] is DleKind.DIAL_TONE
    assert DLE_CODES["q"] is DleKind.QUIET
    assert DLE_CODES["s"] is DleKind.SILENCE
    assert DLE_CODES["h"] is DleKind.HANDSET_ON_HOOK
    assert DLE_CODES["H"] is DleKind.HANDSET_OFF_HOOK
    assert DLE_CODES["l"] is DleKind.LOOP_BREAK
    assert DLE_CODES["L"] is DleKind.POLARITY_REVERSAL
    assert all(DLE_CODES[digit] is DleKind.DTMF for digit in "0123456789*#ABCD")
    assert DLE_CODES["/"] is DleKind.DTMF_START
    assert DLE_CODES["~"] is DleKind.DTMF_END
    assert DLE_CODES[chr(ETX)] is DleKind.END_OF_STREAM


def test_a_dtmf_event_carries_its_digit_and_others_none() -> None:
    assert DleEvent(code="#", kind=DleKind.DTMF).digit == "#"
    assert DleEvent(code="R", kind=DleKind.RING).digit is None


UNKNOWN_CODES = [
    byte for byte in range(256) if byte not in (DLE, SUB) and chr(byte) not in DLE_CODES
]


@pytest.mark.parametrize("byte", UNKNOWN_CODES)
def test_an_unknown_code_is_reported_and_the_stream_goes_on(byte: int) -> None:
    assert decode(bytes([0x41, DLE, byte, 0x42])) == [
        VoiceSamples(data=b"\x41"),
        DleEvent(code=chr(byte), kind=DleKind.UNKNOWN),
        VoiceSamples(data=b"\x42"),
    ]


def test_a_doubled_dle_is_one_sample_byte() -> None:
    assert decode(bytes([1, DLE, DLE, 2])) == [VoiceSamples(data=bytes([1, DLE, 2]))]


def test_dle_sub_is_two_sample_bytes() -> None:
    assert decode(bytes([DLE, SUB])) == [VoiceSamples(data=bytes([DLE, DLE]))]


def test_one_read_of_plain_samples_is_one_event() -> None:
    decoder = DleDecoder()
    decoder.receive_data(b"\x80" * 160)
    assert drain(decoder) == [VoiceSamples(data=b"\x80" * 160)]


def test_the_whole_stream_decodes_as_expected() -> None:
    assert decode(STREAM) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_a_split_at_any_byte_changes_nothing(cut: int) -> None:
    assert decode(STREAM[:cut], STREAM[cut:]) == EXPECTED


def test_byte_by_byte_changes_nothing() -> None:
    assert decode(*(bytes([byte]) for byte in STREAM)) == EXPECTED


def test_a_dle_alone_at_the_end_of_a_read_waits_for_the_next() -> None:
    decoder = DleDecoder()
    decoder.receive_data(b"\x01" + bytes([DLE]))
    assert drain(decoder) == [VoiceSamples(data=b"\x01")]
    decoder.receive_data(b"R")
    assert drain(decoder) == [DleEvent(code="R", kind=DleKind.RING)]


def test_what_follows_end_of_stream_is_kept_for_the_at_codec() -> None:
    decoder = DleDecoder()
    decoder.receive_data(b"\x01" + bytes([DLE, ETX]) + b"\r\nOK")
    decoder.receive_data(b"\r\n" + bytes([DLE, DLE]))
    assert decoder.ended
    assert drain(decoder)[-1] == DleEvent(code=chr(ETX), kind=DleKind.END_OF_STREAM)
    assert decoder.trailing_data == b"\r\nOK\r\n" + bytes([DLE, DLE])


def test_the_decoder_is_not_ended_before_etx() -> None:
    decoder = DleDecoder()
    decoder.receive_data(bytes([DLE, ord("b")]))
    assert not decoder.ended
    assert decoder.trailing_data == b""


def test_the_encoder_doubles_dle_and_nothing_else() -> None:
    assert DleEncoder().encode(bytes([1, DLE, 2, DLE, DLE])) == bytes(
        [1, DLE, DLE, 2, DLE, DLE, DLE, DLE]
    )


def test_every_byte_value_survives_encoding_and_decoding() -> None:
    samples = bytes(range(256)) * 2
    assert decode(DleEncoder().encode(samples)) == [VoiceSamples(data=samples)]


def test_end_of_transmit_is_dle_etx() -> None:
    assert DleEncoder().end_of_transmit() == bytes([DLE, ETX])


def test_stop_receive_uses_the_profile_code() -> None:
    assert DleEncoder(stop_receive_code=b"!").stop_receive() == bytes([DLE]) + b"!"
    assert DleEncoder(stop_receive_code=b"^").stop_receive() == bytes([DLE]) + b"^"


def test_abort_is_dle_can_dle_etx() -> None:
    assert DleEncoder().abort() == ABORT == bytes([DLE, 0x18, DLE, ETX])


def test_in_command_mode_events_come_apart_from_the_at_text() -> None:
    assert decode(b"\r\nOK\r\n" + bytes([DLE]) + b"d\r\nRING\r\n") == [
        VoiceSamples(data=b"\r\nOK\r\n"),
        DleEvent(code="d", kind=DleKind.DIAL_TONE),
        VoiceSamples(data=b"\r\nRING\r\n"),
    ]
