"""The media bridge of an anchored call: forwarding, transcoding between the G.711 laws,
telephone-event payload types, hold, and what it drops."""

from __future__ import annotations

from firmware.media import g711, tones
from firmware.media.bridge import BridgeSide, MediaBridge
from firmware.media.rtp import RtpPacket, TelephoneEvent, parse_rtp
from firmware.media.sdp import AudioChoice

CALLER = AudioChoice(remote_host="127.0.0.2", remote_port=50000, payload_type=8, codec="PCMA",
                     telephone_event_pt=101, direction="sendrecv")
MEMBER = AudioChoice(remote_host="10.0.0.11", remote_port=40000, payload_type=0, codec="PCMU",
                     telephone_event_pt=96, direction="sendrecv")


def bridge(member: AudioChoice = MEMBER) -> MediaBridge:
    return MediaBridge(BridgeSide(10000, CALLER), BridgeSide(10002, member))


def frame(payload_type: int, payload: bytes, sequence: int = 1) -> bytes:
    return RtpPacket(payload_type=payload_type, sequence=sequence, timestamp=160 * sequence,
                     ssrc=42, payload=payload).to_bytes()


def test_the_same_law_is_forwarded_byte_for_byte() -> None:
    same = AudioChoice(remote_host="10.0.0.11", remote_port=40000, payload_type=8,
                       codec="PCMA", telephone_event_pt=101, direction="sendrecv")
    data = frame(8, b"\xd5" * 160)
    assert bridge(same).receive(10000, data) == [(10002, data, ("10.0.0.11", 40000))]


def test_a_law_becomes_mu_law_keeping_sequence_timestamp_and_ssrc() -> None:
    pcm = tones.tone(440, 0.02, 6000)
    [(port, data, to)] = bridge().receive(10000, frame(8, g711.alaw_encode(pcm), 7))
    packet = parse_rtp(data)
    assert (port, to) == (10002, ("10.0.0.11", 40000))
    assert (packet.payload_type, packet.sequence, packet.ssrc) == (0, 7, 42)
    assert packet.payload == g711.ulaw_encode(g711.alaw_decode(g711.alaw_encode(pcm)))


def test_the_other_way_goes_to_the_caller_from_the_callers_port() -> None:
    [(port, data, to)] = bridge().receive(10002, frame(0, b"\xff" * 160))
    assert (port, to) == (10000, ("127.0.0.2", 50000)) and parse_rtp(data).payload_type == 8


def test_telephone_events_take_the_other_sides_payload_type() -> None:
    event = TelephoneEvent(event=1, end=False, volume=10, duration=160).to_bytes()
    [(_, data, _)] = bridge().receive(10000, frame(101, event))
    assert parse_rtp(data).payload_type == 96 and parse_rtp(data).payload == event


def test_events_are_dropped_toward_a_side_without_telephone_event() -> None:
    plain = AudioChoice(remote_host="10.0.0.11", remote_port=40000, payload_type=0,
                        codec="PCMU", telephone_event_pt=None, direction="sendrecv")
    event = TelephoneEvent(event=1, end=False, volume=10, duration=160).to_bytes()
    b = bridge(plain)
    assert b.receive(10000, frame(101, event)) == [] and b.packets_dropped == 1


def test_nothing_goes_to_a_side_on_hold_and_garbage_or_comfort_noise_is_dropped() -> None:
    b = bridge()
    b.update(10002, AudioChoice(remote_host="10.0.0.11", remote_port=40000, payload_type=0,
                                codec="PCMU", telephone_event_pt=96, direction="recvonly"))
    assert b.receive(10000, frame(8, b"\xd5" * 160)) != []  # recvonly still receives
    b.update(10002, AudioChoice(remote_host="10.0.0.11", remote_port=40000, payload_type=0,
                                codec="PCMU", telephone_event_pt=96, direction="inactive"))
    assert b.receive(10000, frame(8, b"\xd5" * 160)) == []
    assert b.receive(10002, b"\x00junk") == []
    assert b.receive(10002, frame(13, b"\x40")) == []  # comfort noise (RFC 3389)
    assert b.receive(12345, frame(8, b"\xd5")) == []  # not one of its ports


# The same law on both sides: most packets take the unparsed path (bridge.py); these check it
# decides as the full path does.
SAME_LAW = AudioChoice(remote_host="10.0.0.11", remote_port=40000, payload_type=8,
                       codec="PCMA", telephone_event_pt=101, direction="sendrecv")


class Ears:
    """A recorder's stand-in: what the bridge's tap hands over, by side and sequence."""

    def __init__(self) -> None:
        self.packets: list[tuple[str, int]] = []

    def heard(self, side: str, packet: RtpPacket, codec: str, now: float) -> None:
        self.packets.append((side, packet.sequence))


def test_plain_packets_are_forwarded_unchanged_and_counted_both_ways() -> None:
    b = bridge(SAME_LAW)
    marked = bytes([0x80, 0x80 | 8]) + frame(8, b"\xd5" * 160, 2)[2:]  # a talkspurt's first
    assert b.receive(10000, marked) == [(10002, marked, ("10.0.0.11", 40000))]
    back = frame(8, b"\x55" * 160, 3)
    assert b.receive(10002, back) == [(10000, back, ("127.0.0.2", 50000))]
    assert (b.a.packets_in, b.sides[10002].packets_in) == (1, 1)


def test_packets_with_csrcs_an_extension_or_padding_are_still_forwarded_whole() -> None:
    b = bridge(SAME_LAW)
    payload = b"\xd5" * 160
    plain = frame(8, payload, 5)
    with_csrc = bytes([0x81]) + plain[1:12] + b"\x00\x00\x00\x07" + payload
    with_extension = bytes([0x90]) + plain[1:12] + b"\xbe\xde\x00\x01" + b"\x10\xaa\x00\x00" \
        + payload
    padded = bytes([0xA0]) + plain[1:] + b"\x00\x00\x03"
    for data in (with_csrc, with_extension, padded):
        assert b.receive(10000, data) == [(10002, data, ("10.0.0.11", 40000))]
        assert parse_rtp(data).payload == payload
    assert b.a.packets_in == 3


def test_a_muted_or_held_side_gets_nothing_on_the_unparsed_path_either() -> None:
    b = bridge(SAME_LAW)
    b.muted.add(10002)
    assert b.receive(10000, frame(8, b"\xd5" * 160)) == []
    b.muted.clear()
    b.update(10002, AudioChoice(remote_host="10.0.0.11", remote_port=40000, payload_type=8,
                                codec="PCMA", telephone_event_pt=101, direction="inactive"))
    assert b.receive(10000, frame(8, b"\xd5" * 160)) == []
    assert b.receive(10002, frame(8, b"\xd5" * 160)) != []  # the held side still talks


def test_a_recorded_bridge_hears_every_plain_packet() -> None:
    b = bridge(SAME_LAW)
    ears = Ears()
    b.tap = ears
    data = frame(8, b"\xd5" * 160, 9)
    assert b.receive(10000, data, 1.0) == [(10002, data, ("10.0.0.11", 40000))]
    assert ears.packets == [("a", 9)]


def test_rtcp_on_the_rtp_port_is_not_taken_for_audio_with_a_dynamic_payload_type() -> None:
    # A peer that named its G.711 with payload type 72 (RFC 3551 §6 allows dynamic ones): an
    # RTCP sender report (packet type 200 = marker bit + 72, RFC 5761 §4) is not audio.
    dynamic = AudioChoice(remote_host="127.0.0.2", remote_port=50000, payload_type=72,
                          codec="PCMA", telephone_event_pt=None, direction="sendrecv")
    b = MediaBridge(BridgeSide(10000, dynamic), BridgeSide(10002, dynamic))
    sender_report = bytes([0x80, 200, 0x00, 0x06]) + b"\x00" * 24
    assert b.receive(10000, sender_report) == []
    assert b.packets_dropped == 1
