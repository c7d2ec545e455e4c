"""DTMF detection (RFC 4733 and in-band), the RTP session's pacing and recording, the port
range, and WAV conversion of uploaded greetings."""

from __future__ import annotations

import io
import math
import random
import wave
from array import array

import pytest

from firmware.media import g711, tones
from firmware.media.audio import AudioError, to_pcm8k, wav_bytes
from firmware.media.dtmf import EventDtmfReceiver, ToneDtmfDetector
from firmware.media.ports import PortRange
from firmware.media.rtp import RtpPacket, TelephoneEvent, parse_rtp
from firmware.media.sdp import AudioChoice
from firmware.media.session import DtmfReceived, MediaSession, PlaybackFinished

CHOICE = AudioChoice(remote_host="127.0.0.1", remote_port=40000, payload_type=0, codec="PCMU",
                     telephone_event_pt=101, direction="sendrecv")
KEYS = {"1": (697, 1209), "5": (770, 1336), "9": (852, 1477), "0": (941, 1336),
        "*": (941, 1209), "#": (941, 1477), "A": (697, 1633), "D": (941, 1633)}


def dual_tone(key: str, seconds: float, amplitude: int = 5000) -> array[int]:
    low, high = KEYS[key]
    return array("h", (int(amplitude * (math.sin(2 * math.pi * low * i / 8000)
                                        + math.sin(2 * math.pi * high * i / 8000)))
                       for i in range(int(8000 * seconds))))


def event_packet(timestamp: int, event: int, *, end: bool) -> RtpPacket:
    return RtpPacket(payload_type=101, sequence=timestamp // 10, timestamp=timestamp, ssrc=1,
                     payload=TelephoneEvent(event=event, end=end, volume=10,
                                            duration=400).to_bytes())


def test_an_rfc4733_key_is_reported_once_for_all_its_packets() -> None:
    receiver = EventDtmfReceiver()
    keys = [receiver.receive(event_packet(1000, 5, end=e)) for e in (False, False, True, True)]
    assert keys == ["5", None, None, None]
    assert receiver.receive(event_packet(2000, 5, end=False)) == "5"  # pressed again


@pytest.mark.parametrize("key", sorted(KEYS))
def test_inband_keys_are_detected_once(key: str) -> None:
    detector = ToneDtmfDetector()
    signal = dual_tone(key, 0.1) + array("h", bytes(1600)) + dual_tone(key, 0.1)
    found: list[str] = []
    for start in range(0, len(signal), 160):
        found += detector.feed(signal[start:start + 160])
    assert found == [key, key]


def test_a_tone_shorter_than_q24s_minimum_is_ignored() -> None:
    assert ToneDtmfDetector().feed(dual_tone("5", 0.02)) == []


def test_noise_and_single_tones_do_not_make_keys() -> None:
    rng = random.Random(3)
    noise = array("h", (rng.randint(-8000, 8000) for _ in range(16000)))
    single = array("h", (int(8000 * math.sin(2 * math.pi * 941 * i / 8000))
                         for i in range(8000)))
    beep = g711.pcm_samples(tones.beep())
    assert ToneDtmfDetector().feed(noise) == []
    assert ToneDtmfDetector().feed(single) == []
    assert ToneDtmfDetector().feed(beep) == []


def test_the_session_sends_one_frame_per_20_ms_and_reports_the_end_of_a_prompt() -> None:
    session = MediaSession(local_port=10000, choice=CHOICE, now=100.0, ssrc=5)
    session.play("hello", tones.tone(400, 0.1, 4000))  # five frames
    now = 100.0
    packets: list[RtpPacket] = []
    events = []
    for _ in range(11):  # 0.00 ... 0.20
        timer = session.get_timer()
        assert timer is not None
        now = timer
        session.handle_timer(now)
        packets += [parse_rtp(d) for d in session.datagrams_to_send()]
        while (event := session.next_event()) is not None:
            events.append((round(now - 100.0, 2), event))
    assert len(packets) == 11 and now == pytest.approx(100.2)
    assert [p.timestamp - packets[0].timestamp for p in packets[:3]] == [0, 160, 320]
    assert events == [(0.08, PlaybackFinished(name="hello"))]
    assert packets[5].payload == bytes([g711.MULAW_SILENCE]) * 160  # then silence


def test_a_stalled_loop_skips_ahead_instead_of_bursting() -> None:
    session = MediaSession(local_port=10000, choice=CHOICE, now=0.0)
    session.handle_timer(0.0)
    session.datagrams_to_send()
    session.handle_timer(2.0)  # a 2 s stall
    sent = [parse_rtp(d) for d in session.datagrams_to_send()]
    assert len(sent) == 1
    assert session.get_timer() == pytest.approx(2.02)


def test_received_audio_is_recorded_in_order_and_late_packets_are_dropped() -> None:
    session = MediaSession(local_port=10000, choice=CHOICE, now=0.0)
    recording = session.start_recording(0.0)
    frame = g711.ulaw_encode(tones.tone(440, 0.02, 6000))
    for sequence in (10, 11, 11, 9, 12):
        session.receive(RtpPacket(payload_type=0, sequence=sequence, timestamp=sequence * 160,
                                  ssrc=2, payload=frame).to_bytes(), 0.0)
    assert recording.duration_s == pytest.approx(0.06)
    assert session.packets_dropped == 2 and recording.heard_sound


def test_rfc4733_events_reach_the_owner() -> None:
    session = MediaSession(local_port=10000, choice=CHOICE, now=0.0)
    session.receive(event_packet(500, 11, end=False).to_bytes(), 0.0)
    assert session.next_event() == DtmfReceived(key="#", via="rfc4733")


def test_a_session_on_hold_sends_nothing() -> None:
    held = AudioChoice(remote_host="127.0.0.1", remote_port=40000, payload_type=0,
                       codec="PCMU", telephone_event_pt=None, direction="inactive")
    session = MediaSession(local_port=10000, choice=held, now=0.0)
    session.handle_timer(0.1)
    assert session.datagrams_to_send() == []


def test_ports_are_even_and_not_reused_at_once() -> None:
    ports = PortRange(10001, 10010)
    taken = [ports.open() for _ in range(4)]
    assert taken == [10002, 10004, 10006, 10008]
    assert ports.open() is None
    ports.close(10004)
    ports.close(10008)
    assert ports.open() == 10004  # the first free one after the last handed out... wrapping
    with pytest.raises(ValueError):
        PortRange(80, 100)


def _wav(rate: int, channels: int, width: int, samples: list[int]) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        if width == 1:
            wav.writeframes(bytes((s >> 8) + 128 for s in samples))
        else:
            wav.writeframes(g711.pcm_bytes(array("h", samples)))
    return buffer.getvalue()


def test_a_48khz_stereo_upload_becomes_8khz_mono_keeping_its_pitch() -> None:
    tone = [int(6000 * math.sin(2 * math.pi * 440 * i / 48000)) for i in range(48000)]
    stereo = [s for sample in tone for s in (sample, sample)]
    pcm = to_pcm8k(_wav(48000, 2, 2, stereo), max_s=60)
    samples = g711.pcm_samples(pcm)
    assert len(samples) == 8000
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if a < 0 <= b)
    assert 435 <= crossings <= 445


def test_an_8bit_upload_is_accepted() -> None:
    pcm = to_pcm8k(_wav(8000, 1, 1, [0, 12800, -12800] * 100), max_s=60)
    assert g711.pcm_samples(pcm)[1] == 12800


@pytest.mark.parametrize(("data", "message"), [
    (b"not a wav", "not a PCM WAV"),
    (_wav(4000, 1, 2, [0] * 100), "4000 Hz"),
    (_wav(8000, 1, 2, [0] * 8000 * 3), "at most 2 s"),
])
def test_bad_uploads_are_refused_saying_why(data: bytes, message: str) -> None:
    with pytest.raises(AudioError, match=message):
        to_pcm8k(data, max_s=2)


def test_wav_bytes_round_trip() -> None:
    pcm = tones.beep()
    assert to_pcm8k(wav_bytes(pcm), max_s=5) == pcm
