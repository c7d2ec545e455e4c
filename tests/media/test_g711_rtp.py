"""G.711 tables against the reference (the standard library's audioop, while Python still has
it), RTP header parsing (RFC 3550 §5.1) and telephone-event payloads (RFC 4733 §2.3)."""

from __future__ import annotations

import hashlib
import warnings
from array import array

import pytest

from firmware.media import g711
from firmware.media.rtp import (
    MalformedRtp,
    RtpPacket,
    TelephoneEvent,
    parse_rtp,
    parse_telephone_event,
    sequence_newer,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:  # Python 3.13 removed it
        audioop = None

EVERY_SAMPLE = array("h", range(-32768, 32768)).tobytes()
EVERY_CODE = bytes(range(256))
# SHA-256 of the reference's output (audioop, which implements G.711 as Sun's g711.c does),
# taken while it was there: the tables are checked against it on every Python.
REFERENCE = {
    "ulaw_encode": ("lin2ulaw", EVERY_SAMPLE,
                    "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a"),
    "alaw_encode": ("lin2alaw", EVERY_SAMPLE,
                    "38488f6fd710f4686360edc4d38639f96c491595ef93f8eb8d62d5e07ca6ce7b"),
    "ulaw_decode": ("ulaw2lin", EVERY_CODE,
                    "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"),
    "alaw_decode": ("alaw2lin", EVERY_CODE,
                    "e04788d110e58ff8c70c93b8480190d973e3b67876b6119abbaec766cc75c174"),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_every_sample_and_every_code_match_the_reference(name: str) -> None:
    reference, data, digest = REFERENCE[name]
    ours = getattr(g711, name)(data)
    assert hashlib.sha256(ours).hexdigest() == digest
    if audioop is not None:  # and byte for byte, where the reference still exists
        assert ours == getattr(audioop, reference)(data, 2)


def test_silence_codes_decode_to_near_zero() -> None:
    assert abs(g711.pcm_samples(g711.ulaw_decode(bytes([g711.MULAW_SILENCE])))[0]) == 0
    assert abs(g711.pcm_samples(g711.alaw_decode(bytes([g711.ALAW_SILENCE])))[0]) <= 8


def test_an_rtp_packet_round_trips() -> None:
    packet = RtpPacket(payload_type=8, sequence=65535, timestamp=2**32 - 1, ssrc=0xDEADBEEF,
                       payload=b"\xd5" * 160, marker=True)
    assert parse_rtp(packet.to_bytes()) == packet


def test_csrc_list_extension_and_padding_are_skipped() -> None:
    header = bytes([0x80 | 0x20 | 0x10 | 0x02, 0x00]) + (7).to_bytes(2, "big") + bytes(8)
    csrcs = bytes(8)
    extension = b"\xbe\xde\x00\x01" + bytes(4)
    payload = b"\x01\x02\x03"
    padding = b"\x00\x00\x03"
    packet = parse_rtp(header + csrcs + extension + payload + padding)
    assert packet.payload == payload and packet.sequence == 7


@pytest.mark.parametrize("data", [
    b"", b"\x80\x00", bytes(12),  # too short; version 0
    bytes([0x80 | 0x0F, 0]) + bytes(10),  # 15 CSRCs announced, none there
    bytes([0xA0, 0]) + bytes(10) + b"\x00",  # padding count 0
    bytes([0x80, 0xC8]) + bytes(10),  # RTCP sender report on the RTP port
])
def test_malformed_packets_raise(data: bytes) -> None:
    with pytest.raises(MalformedRtp):
        parse_rtp(data)


def test_telephone_event_round_trips_and_names_its_key() -> None:
    event = TelephoneEvent(event=11, end=True, volume=10, duration=800)
    parsed = parse_telephone_event(event.to_bytes())
    assert parsed == event and parsed.key == "#"
    assert TelephoneEvent(event=40, end=False, volume=0, duration=0).key is None


def test_sequence_numbers_compare_across_the_wrap() -> None:
    assert sequence_newer(0, 65535)
    assert sequence_newer(5, 4)
    assert not sequence_newer(4, 5)
    assert not sequence_newer(4, 4)


def test_the_law_to_law_tables_agree_with_decoding_and_encoding() -> None:
    codes = bytes(range(256))
    assert codes.translate(g711.ALAW_TO_ULAW) == g711.ulaw_encode(g711.alaw_decode(codes))
    assert codes.translate(g711.ULAW_TO_ALAW) == g711.alaw_encode(g711.ulaw_decode(codes))


@pytest.mark.parametrize(("table", "encode_one"), [
    ("_MULAW_ENCODE", "_mulaw_encode_one"), ("_ALAW_ENCODE", "_alaw_encode_one")])
def test_the_encode_tables_built_from_code_ranges_match_the_per_sample_reference(
        table: str, encode_one: str) -> None:
    # The tables are built from each code's range of inputs (cheap at import); entry i must be
    # what the per-sample reference gives for sample 4i - 32768, the sample it stands for, and
    # every sample must find the entry of its own two-low-bits-dropped value.
    built = getattr(g711, table)
    reference = getattr(g711, encode_one)
    assert len(built) == 16384
    assert built == bytes(reference((i << 2) - 32768) for i in range(16384))
    assert all(built[(sample + 32768) >> 2] == reference(sample & ~3)
               for sample in range(-32768, 32768))
