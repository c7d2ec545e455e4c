"""A media end that is a stream of PCM frames: a modem's audio (GSM voice port, V.253 voice
mode) joined to an RTP party through the media bridge.

The modem speaks 8 kHz 16-bit signed little-endian linear PCM in 20 ms frames of 320 bytes (the
Huawei voice port's frame, MODEMS.md §1; the V.253 formats are converted to it in
hal/modem/v253.py). Toward the RTP party the end packetises each frame as one G.711 packet of
its own stream (RFC 3550 §5.1: its own SSRC, the sequence number +1 and the timestamp +160 per
frame, the marker bit on the first). From the RTP party it takes packets through a small jitter
buffer ordered by sequence number (40 ms held at a stream's start, up to 60 ms): a frame
is handed to the modem every 20 ms (the daemon's
pacing asks `frame_for_line(now)`), a packet late past the buffer is dropped, a missing one is
replaced by the previous frame faded (packet loss concealment, ITU-T G.711 Appendix I in
spirit) and then by silence. `gain_db` is the line's gain, applied both ways (an analog line is
often quiet). Keys pressed by the RTP party (RFC 4733) are collected for the line to send
(AT+VTS) — a modem cannot carry them as tones reliably.

Sans-IO: frames and packets in, frames and packets out, time passed in.
"""

from __future__ import annotations

import logging
import secrets
from array import array
from collections import deque
from dataclasses import dataclass, field

from . import g711
from .dtmf import EventDtmfReceiver
from .rtp import DTMF_EVENT_KEYS, RtpPacket, TelephoneEvent
from .sdp import AudioChoice

LOGGER = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 8000
FRAME_MS = 20
SAMPLES_PER_FRAME = SAMPLE_RATE_HZ * FRAME_MS // 1000  # 160
FRAME_BYTES = SAMPLES_PER_FRAME * 2  # 320: 16-bit samples
SILENCE_FRAME = bytes(FRAME_BYTES)
JITTER_DEPTH_FRAMES = 3  # 60 ms: what a LAN phone needs; frames wait no longer
JITTER_START_FRAMES = 2  # 40 ms held at a stream's start before the line hears it
# A sequence number this far from the expected one (either way) is a new stream, not a late or
# lost packet: 50 frames is a second of audio.
MAX_SEQUENCE_JUMP = 50
CONCEALED_FRAMES_MAX = 2  # a lost frame is replaced by the last one faded, twice, then silence
SEQUENCE_MODULO = 1 << 16
KEY_DURATION_UNITS = 800  # 100 ms at 8 kHz: a key the line heard, told to the party
TIMESTAMP_MODULO = 1 << 32


def _scaled(pcm: bytes, factor: float) -> bytes:
    samples = g711.pcm_samples(pcm)
    out = array("h", (max(-32768, min(32767, int(s * factor))) for s in samples))
    return g711.pcm_bytes(out)


def _encode(pcm: bytes, codec: str) -> bytes:
    return g711.ulaw_encode(pcm) if codec == "PCMU" else g711.alaw_encode(pcm)


def _decode(payload: bytes, codec: str) -> bytes:
    return g711.ulaw_decode(payload) if codec == "PCMU" else g711.alaw_decode(payload)


@dataclass(slots=True)
class PcmEnd:
    """One modem's audio inside a bridge. `name` is the line's; `choice` is what the RTP party
    of the bridge agreed (the codec the frames are turned into and out of)."""

    name: str
    gain_db: float = 0.0
    frames_in: int = 0  # from the modem
    frames_out: int = 0  # to the modem
    packets_late: int = 0
    frames_concealed: int = 0
    keys: deque[str] = field(default_factory=deque)  # RFC 4733 keys for the line to send
    _ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    _sequence: int = field(default_factory=lambda: secrets.randbits(16))
    _timestamp: int = field(default_factory=lambda: secrets.randbits(32))
    _first_sent: bool = False
    _buffer: dict[int, bytes] = field(default_factory=dict)  # sequence → PCM frame
    _next_sequence: int | None = None
    _last_frame: bytes = SILENCE_FRAME
    _concealed_run: int = 0
    _dtmf: EventDtmfReceiver = field(default_factory=EventDtmfReceiver)
    _party_ssrc: int | None = None
    _filling: bool = True

    @property
    def _factor(self) -> float:
        return float(10 ** (self.gain_db / 20))

    # ------------------------------------------------------------------ modem → RTP
    def packet_from_line(self, frame: bytes, choice: AudioChoice) -> RtpPacket | None:
        """One frame the modem sent, as an RTP packet of this end's stream; None for a frame
        of the wrong size (a modem out of step: logged, dropped)."""
        if len(frame) != FRAME_BYTES:
            LOGGER.debug("line %s: a %d-byte audio frame dropped", self.name, len(frame))
            return None
        self.frames_in += 1
        if self.gain_db:
            frame = _scaled(frame, self._factor)
        packet = RtpPacket(payload_type=choice.payload_type, sequence=self._sequence,
                           timestamp=self._timestamp, ssrc=self._ssrc,
                           payload=_encode(frame, choice.codec),
                           marker=not self._first_sent)
        self._first_sent = True
        self._sequence = (self._sequence + 1) % SEQUENCE_MODULO
        self._timestamp = (self._timestamp + SAMPLES_PER_FRAME) % TIMESTAMP_MODULO
        return packet

    def key_packets(self, key: str, choice: AudioChoice) -> list[RtpPacket]:
        """A key heard on the line, as RFC 4733 events in this end's stream: one packet at the
        key's start and the end packet three times (§2.5.1.4), 100 ms long; none when the
        party agreed to no telephone-event."""
        if choice.telephone_event_pt is None or key not in DTMF_EVENT_KEYS:
            return []
        event = DTMF_EVENT_KEYS.index(key)
        packets = []
        for index, (end, duration) in enumerate(((False, SAMPLES_PER_FRAME),
                                                 (True, KEY_DURATION_UNITS),
                                                 (True, KEY_DURATION_UNITS),
                                                 (True, KEY_DURATION_UNITS))):
            packets.append(RtpPacket(
                payload_type=choice.telephone_event_pt, sequence=self._sequence,
                timestamp=self._timestamp, ssrc=self._ssrc, marker=index == 0,
                payload=TelephoneEvent(event=event, end=end, volume=10,
                                       duration=duration).to_bytes()))
            self._sequence = (self._sequence + 1) % SEQUENCE_MODULO
        # The event's timestamp is its start; the audio after it goes on past its duration.
        self._timestamp = (self._timestamp + KEY_DURATION_UNITS) % TIMESTAMP_MODULO
        return packets

    # ------------------------------------------------------------------ RTP → modem
    def packet_from_party(self, packet: RtpPacket, choice: AudioChoice) -> None:
        """A packet of the RTP party: audio into the jitter buffer, a key to the queue."""
        if packet.payload_type == choice.telephone_event_pt:
            key = self._dtmf.receive(packet)
            if key is not None:
                self.keys.append(key)
            return
        if packet.payload_type != choice.payload_type:
            return  # comfort noise, or a format nobody agreed on
        pcm = _decode(packet.payload, choice.codec)
        if self.gain_db:
            pcm = _scaled(pcm, self._factor)
        if packet.ssrc != self._party_ssrc or self._far_from_expected(packet.sequence):
            # A new stream (the queue's announcements gave way to the member's voice, the
            # phone restarted its stream): its numbering has nothing to do with the last one
            # (RFC 3550 §8.2), so the buffer starts again with it.
            self._party_ssrc = packet.ssrc
            self._buffer.clear()
            self._next_sequence = None
            self._filling = True
        expected = self._next_sequence
        if expected is not None and (packet.sequence - expected) % SEQUENCE_MODULO >= (
            SEQUENCE_MODULO // 2
        ):
            self.packets_late += 1  # its turn has passed: the line already had a frame
            return
        # A packet of another size than 20 ms is cut or padded to frames of its own.
        for index, offset in enumerate(range(0, max(len(pcm), 1), FRAME_BYTES)):
            chunk = pcm[offset:offset + FRAME_BYTES].ljust(FRAME_BYTES, b"\x00")
            self._buffer[(packet.sequence + index) % SEQUENCE_MODULO] = chunk
        if expected is None:
            self._next_sequence = packet.sequence
        while len(self._buffer) > JITTER_DEPTH_FRAMES * 4:
            self._buffer.pop(next(iter(self._buffer)))

    def _far_from_expected(self, sequence: int) -> bool:
        expected = self._next_sequence
        if expected is None:
            return False
        distance = (sequence - expected) % SEQUENCE_MODULO
        return MAX_SEQUENCE_JUMP < distance < SEQUENCE_MODULO - MAX_SEQUENCE_JUMP

    def frame_for_line(self) -> bytes:
        """The next 20 ms for the modem (called every 20 ms by the line's writer)."""
        self.frames_out += 1
        expected = self._next_sequence
        if expected is None:
            return SILENCE_FRAME
        if self._filling:
            # The playout waits for JITTER_START_FRAMES frames at a stream's start: a packet
            # a little late then still comes in time.
            if len(self._buffer) < JITTER_START_FRAMES:
                return SILENCE_FRAME
            self._filling = False
        frame = self._buffer.pop(expected, None)
        if frame is None and len(self._buffer) < JITTER_DEPTH_FRAMES:
            # Not here yet, and the buffer is not deep enough to give up on it: conceal.
            return self._conceal()
        if frame is None:
            # Lost: skip to the earliest frame the buffer holds.
            lost_at = expected
            expected = min(self._buffer, key=lambda s: (s - lost_at) % SEQUENCE_MODULO)
            frame = self._buffer.pop(expected)
        self._next_sequence = (expected + 1) % SEQUENCE_MODULO
        self._last_frame = frame
        self._concealed_run = 0
        return frame

    def _conceal(self) -> bytes:
        self.frames_concealed += 1
        self._concealed_run += 1
        if self._concealed_run > CONCEALED_FRAMES_MAX:
            return SILENCE_FRAME
        return _scaled(self._last_frame, 0.5 ** self._concealed_run)
