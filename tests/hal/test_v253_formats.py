"""Voice modem sample formats: `+VSM=?` offers and conversion to the box's 16-bit PCM end."""

from __future__ import annotations

import pytest

from hal.modem.v253 import (
    PCM_FRAME_BYTES,
    SampleFormat,
    V253Error,
    choose_vsm,
    from_pcm16,
    parse_vsm_offers,
    to_pcm16,
)

# The two shapes modems answer AT+VSM=? in: the USR one without <bps>,<tm>, and V.253 §10.1.3's
# full one that Conexant chips print.
USR_OFFERS = [
    '128,"8-BIT LINEAR",(7200,8000,11025)',
    '129,"16-BIT LINEAR",(7200,8000,11025)',
    '130,"8-BIT ALAW",(8000)',
    '131,"8-BIT ULAW",(8000)',
    '132,"IMA ADPCM",(7200,8000,11025)',
]
CONEXANT_OFFERS = [
    '0,"SIGNED PCM",8,0,(7200,8000,11025),(0),(0)',
    '1,"UNSIGNED PCM",8,0,(7200,8000,11025),(0),(0)',
    '4,"G711U",8,0,(8000),(0),(0)',
    '5,"G711A",8,0,(8000),(0),(0)',
    '129,"IMA ADPCM",4,0,(7200,8000,11025),(0),(0)',
]

ALL_U8 = bytes(range(256))


def pcm(*samples: int) -> bytes:
    return b"".join(sample.to_bytes(2, "little", signed=True) for sample in samples)


def test_unsigned_8_bit_midpoint_is_zero_and_the_ends_are_full_scale() -> None:
    assert to_pcm16(b"\x80\x00\xff", SampleFormat.LINEAR_U8) == pcm(0, -32768, 32512)


def test_signed_8_bit_is_the_high_byte() -> None:
    assert to_pcm16(b"\x00\x80\x7f", SampleFormat.LINEAR_S8) == pcm(0, -32768, 32512)


@pytest.mark.parametrize("sample_format", [SampleFormat.LINEAR_U8, SampleFormat.LINEAR_S8])
def test_every_8_bit_linear_value_survives_the_round_trip(sample_format: SampleFormat) -> None:
    assert from_pcm16(to_pcm16(ALL_U8, sample_format), sample_format) == ALL_U8


def test_pcm_to_8_bit_linear_keeps_the_high_byte() -> None:
    assert from_pcm16(pcm(0, 255, -1, 32767, -32768), SampleFormat.LINEAR_U8) == bytes(
        [0x80, 0x80, 0x7F, 0xFF, 0x00]
    )


def test_a_20_ms_frame_is_160_modem_samples() -> None:
    frame = pcm(*range(-80, 80))
    assert len(frame) == PCM_FRAME_BYTES
    assert len(from_pcm16(frame, SampleFormat.LINEAR_U8)) == 160
    assert len(to_pcm16(b"\x80" * 160, SampleFormat.LINEAR_U8)) == PCM_FRAME_BYTES


@pytest.mark.parametrize("sample_format", [SampleFormat.ULAW, SampleFormat.ALAW])
def test_g711_samples_decode_and_encode_to_the_same_sound(sample_format: SampleFormat) -> None:
    decoded = to_pcm16(ALL_U8, sample_format)
    assert len(decoded) == 512
    assert to_pcm16(from_pcm16(decoded, sample_format), sample_format) == decoded


def test_ulaw_silence_is_zero() -> None:
    assert to_pcm16(b"\xff", SampleFormat.ULAW) == pcm(0)


def test_16_bit_linear_passes_through_whole_samples_only() -> None:
    assert to_pcm16(pcm(1, -2) + b"\x05", SampleFormat.LINEAR_S16) == pcm(1, -2)
    assert from_pcm16(pcm(1, -2) + b"\x05", SampleFormat.LINEAR_S16) == pcm(1, -2)


def test_a_half_sample_at_the_end_of_pcm_is_dropped() -> None:
    assert from_pcm16(pcm(0) + b"\x7f", SampleFormat.LINEAR_U8) == b"\x80"


def test_adpcm_is_not_converted() -> None:
    with pytest.raises(V253Error):
        to_pcm16(b"\x00", SampleFormat.OTHER)
    with pytest.raises(V253Error):
        from_pcm16(pcm(0), SampleFormat.OTHER)


def test_usr_offers_are_read_with_their_formats_and_rates() -> None:
    offers = parse_vsm_offers(USR_OFFERS)
    assert [(o.code, o.sample_format) for o in offers] == [
        (128, SampleFormat.LINEAR_U8),
        (129, SampleFormat.LINEAR_S16),
        (130, SampleFormat.ALAW),
        (131, SampleFormat.ULAW),
        (132, SampleFormat.OTHER),
    ]
    assert offers[0].rates_hz == (7200, 8000, 11025)
    assert offers[2].rates_hz == (8000,)


def test_conexant_offers_are_read_with_bits_and_signedness() -> None:
    offers = parse_vsm_offers(CONEXANT_OFFERS)
    assert [(o.code, o.bits, o.sample_format) for o in offers] == [
        (0, 8, SampleFormat.LINEAR_S8),
        (1, 8, SampleFormat.LINEAR_U8),
        (4, 8, SampleFormat.ULAW),
        (5, 8, SampleFormat.ALAW),
        (129, 4, SampleFormat.OTHER),
    ]


def test_the_information_prefix_and_a_rate_range_are_understood() -> None:
    (offer,) = parse_vsm_offers(['+VSM: 1,"UNSIGNED PCM",8,0,(4000-11025),(0),(0)'])
    assert offer.sample_format is SampleFormat.LINEAR_U8
    assert 8000 in offer.rates_hz


def test_unreadable_offer_lines_are_skipped() -> None:
    offers = parse_vsm_offers(["", "garbage\x00", "OK", '131,"8-BIT ULAW",(8000)'])
    assert [offer.code for offer in offers] == [131]


def test_ulaw_is_chosen_first() -> None:
    chosen = choose_vsm(parse_vsm_offers(USR_OFFERS))
    assert chosen is not None
    assert chosen.command() == "AT+VSM=131,8000"


def test_8_bit_linear_is_chosen_when_there_is_no_g711() -> None:
    chosen = choose_vsm(parse_vsm_offers(USR_OFFERS[:2] + USR_OFFERS[4:]))
    assert chosen is not None
    assert chosen.sample_format is SampleFormat.LINEAR_U8


def test_an_offer_without_8_khz_is_not_chosen() -> None:
    assert choose_vsm(parse_vsm_offers(['131,"8-BIT ULAW",(7200)'])) is None


def test_nothing_is_chosen_from_adpcm_alone() -> None:
    assert choose_vsm(parse_vsm_offers(CONEXANT_OFFERS[4:])) is None
