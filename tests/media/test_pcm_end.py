"""A modem's audio as a media end: the bridge joins an RTP party and a stream of 8 kHz 16-bit
PCM frames (firmware/media/pcm.py) — packetising, the jitter buffer, concealment, gain, keys."""

from __future__ import annotations

from array import array

from firmware.media import g711
from firmware.media.bridge import BridgeSide, MediaBridge
from firmware.media.pcm import FRAME_BYTES, SILENCE_FRAME, PcmEnd
from firmware.media.rtp import RtpPacket, TelephoneEvent, parse_rtp
from firmware.media.sdp import AudioChoice

PHONE = AudioChoice(remote_host="127.0.0.2", remote_port=50000, payload_type=0, codec="PCMU",
                    telephone_event_pt=101, direction="sendrecv")
PHONE_PORT = 10000


def ramp(start: int) -> bytes:
    """A 20 ms frame whose samples are distinct and survive µ-law within its step."""
    return g711.pcm_bytes(array("h", ((start + i) * 64 for i in range(160))))


def through_ulaw(pcm: bytes) -> bytes:
    return g711.ulaw_decode(g711.ulaw_encode(pcm))


def from_phone(sequence: int, pcm: bytes, payload_type: int = 0, ssrc: int = 7) -> bytes:
    return RtpPacket(payload_type=payload_type, sequence=sequence, timestamp=160 * sequence,
                     ssrc=ssrc, payload=g711.ulaw_encode(pcm)).to_bytes()


def bridge(gain_db: float = 0.0, choice: AudioChoice = PHONE) -> tuple[MediaBridge, PcmEnd]:
    end = PcmEnd(name="mts", gain_db=gain_db)
    return MediaBridge(BridgeSide(PHONE_PORT, choice), end), end


def test_a_line_frame_becomes_one_ulaw_packet_toward_the_phone() -> None:
    b, _ = bridge()
    [(port, datagram, destination)] = b.frame_from_line(ramp(0))
    packet = parse_rtp(datagram)
    assert (port, destination) == (PHONE_PORT, ("127.0.0.2", 50000))
    assert packet.payload_type == 0 and packet.marker
    assert packet.payload == g711.ulaw_encode(ramp(0))


def test_the_lines_stream_counts_on_by_one_sequence_and_160_samples() -> None:
    b, _ = bridge()
    packets = [parse_rtp(b.frame_from_line(ramp(i))[0][1]) for i in range(3)]
    assert [(p.sequence - packets[0].sequence) % 65536 for p in packets] == [0, 1, 2]
    assert [(p.timestamp - packets[0].timestamp) % 2**32 for p in packets] == [0, 160, 320]
    assert len({p.ssrc for p in packets}) == 1
    assert [p.marker for p in packets] == [True, False, False]


def test_a_frame_of_the_wrong_size_is_dropped() -> None:
    b, end = bridge()
    assert b.frame_from_line(b"\x00" * 100) == []
    assert end.frames_in == 0


def test_nothing_goes_to_a_phone_on_hold() -> None:
    held = AudioChoice(remote_host="127.0.0.2", remote_port=50000, payload_type=0, codec="PCMU",
                       telephone_event_pt=101, direction="sendonly")
    b, _ = bridge(choice=held)
    assert b.frame_from_line(ramp(0)) == []


def test_the_phones_packets_reach_the_line_in_order_even_when_they_arrive_out_of_order() -> None:
    b, _ = bridge()
    for sequence in (1, 3, 2):
        assert b.receive(PHONE_PORT, from_phone(sequence, ramp(sequence))) == []
    frames = [b.frame_for_line() for _ in range(3)]  # (3 frames: past the start's 40 ms)
    assert frames == [through_ulaw(ramp(1)), through_ulaw(ramp(2)), through_ulaw(ramp(3))]


def test_before_the_phone_speaks_the_line_gets_silence() -> None:
    b, _ = bridge()
    assert b.frame_for_line() == SILENCE_FRAME


def test_the_line_hears_a_stream_once_two_frames_are_buffered() -> None:
    b, _ = bridge()
    b.receive(PHONE_PORT, from_phone(1, ramp(1)))
    assert b.frame_for_line() == SILENCE_FRAME  # 20 ms is not enough to start on
    b.receive(PHONE_PORT, from_phone(2, ramp(2)))
    assert b.frame_for_line() == through_ulaw(ramp(1))


def test_a_late_frame_is_concealed_then_played_when_it_comes() -> None:
    b, end = bridge()
    b.receive(PHONE_PORT, from_phone(1, ramp(1)))
    b.receive(PHONE_PORT, from_phone(2, ramp(2)))
    assert [b.frame_for_line() for _ in range(2)] == [through_ulaw(ramp(1)),
                                                      through_ulaw(ramp(2))]
    concealed = b.frame_for_line()  # 3 has not come: the last frame, faded
    assert concealed != through_ulaw(ramp(2)) and concealed != SILENCE_FRAME
    assert end.frames_concealed == 1
    b.receive(PHONE_PORT, from_phone(3, ramp(3)))
    assert b.frame_for_line() == through_ulaw(ramp(3))


def test_a_lost_frame_is_skipped_once_the_buffer_holds_the_ones_after_it() -> None:
    b, _ = bridge()
    for sequence in (1, 2):
        b.receive(PHONE_PORT, from_phone(sequence, ramp(sequence)))
    b.frame_for_line()
    b.frame_for_line()
    for sequence in (4, 5, 6):  # 3 is lost
        b.receive(PHONE_PORT, from_phone(sequence, ramp(sequence)))
    assert b.frame_for_line() == through_ulaw(ramp(4))


def test_a_packet_older_than_what_the_line_played_is_dropped() -> None:
    b, end = bridge()
    b.receive(PHONE_PORT, from_phone(5, ramp(5)))
    b.receive(PHONE_PORT, from_phone(6, ramp(6)))
    b.frame_for_line()
    b.receive(PHONE_PORT, from_phone(4, ramp(4)))
    assert end.packets_late == 1


def test_concealment_fades_to_silence() -> None:
    b, _ = bridge()
    for sequence in (1, 2):
        b.receive(PHONE_PORT, from_phone(sequence, ramp(sequence)))
    b.frame_for_line()
    b.frame_for_line()
    assert [b.frame_for_line() == SILENCE_FRAME for _ in range(4)] == [False, False, True, True]


def test_a_new_stream_is_heard_at_once_whatever_its_numbering() -> None:
    # The queue's announcements (one stream) give way to the member's voice (another SSRC,
    # numbered from anywhere): the line must not wait for the new numbers to catch up.
    b, end = bridge()
    for sequence in (30000, 30001, 30002):
        b.receive(PHONE_PORT, from_phone(sequence, ramp(1), ssrc=1))
    b.frame_for_line()
    for sequence in (10000, 10001):
        b.receive(PHONE_PORT, from_phone(sequence, ramp(sequence % 7), ssrc=2))
    assert b.frame_for_line() == through_ulaw(ramp(10000 % 7))
    assert end.packets_late == 0


def test_a_jump_in_numbering_within_one_stream_starts_again_too() -> None:
    b, _ = bridge()
    for sequence in (100, 101):
        b.receive(PHONE_PORT, from_phone(sequence, ramp(1)))
    b.frame_for_line()
    for sequence in (20000, 20001):
        b.receive(PHONE_PORT, from_phone(sequence, ramp(2)))
    assert b.frame_for_line() == through_ulaw(ramp(2))


def test_gain_is_applied_both_ways() -> None:
    b, _ = bridge(gain_db=6.0206)  # ×2
    packet = parse_rtp(b.frame_from_line(ramp(0))[0][1])
    louder = g711.ulaw_decode(packet.payload)
    assert g711.pcm_samples(louder)[10] == g711.pcm_samples(through_ulaw(
        g711.pcm_bytes(array("h", (s * 2 for s in g711.pcm_samples(ramp(0)))))))[10]
    b.receive(PHONE_PORT, from_phone(1, ramp(1)))
    b.receive(PHONE_PORT, from_phone(2, ramp(1)))
    heard = g711.pcm_samples(b.frame_for_line())
    assert abs(heard[100] - 2 * g711.pcm_samples(through_ulaw(ramp(1)))[100]) <= 2


def test_keys_the_phone_presses_are_kept_for_the_line_to_send() -> None:
    b, end = bridge()
    event = TelephoneEvent(event=5, end=True, volume=10, duration=800).to_bytes()
    b.receive(PHONE_PORT, RtpPacket(payload_type=101, sequence=9, timestamp=1, ssrc=7,
                                    payload=event).to_bytes())
    assert list(end.keys) == ["5"]


def test_a_40_ms_packet_becomes_two_frames() -> None:
    b, _ = bridge()
    b.receive(PHONE_PORT, from_phone(1, ramp(1) + ramp(2)))  # two frames: enough to start
    assert [b.frame_for_line() for _ in range(2)] == [through_ulaw(ramp(1)),
                                                      through_ulaw(ramp(2))]


def test_garbage_from_the_phone_changes_nothing() -> None:
    b, end = bridge()
    assert b.receive(PHONE_PORT, b"\x00garbage") == []
    assert b.packets_dropped == 1 and b.frame_for_line() == SILENCE_FRAME
    assert len(SILENCE_FRAME) == FRAME_BYTES and end.frames_out == 1
