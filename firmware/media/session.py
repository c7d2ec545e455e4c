"""One RTP audio session of the box's own: it plays prompts and records what it hears.

Sans-IO in the aioquic manner: `receive(data, now)` takes a datagram from the session's port,
`get_timer()` says when the next 20 ms frame is due and `handle_timer(now)` produces it;
`datagrams_to_send()` hands the packets over, and `next_event()` what happened (a key pressed,
a prompt finished). While nothing is playing the session sends silence, as phones and
providers expect a steady stream (many hang up after some seconds without RTP).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

from . import g711
from .dtmf import EventDtmfReceiver, ToneDtmfDetector
from .rtp import MalformedRtp, RtpPacket, parse_rtp, sequence_newer
from .sdp import AudioChoice

LOGGER = logging.getLogger(__name__)

FRAME_S = 0.020
SAMPLES_PER_FRAME = 160  # 20 ms at 8 kHz, one octet per sample in G.711
BYTES_PER_PCM_FRAME = SAMPLES_PER_FRAME * 2
MAX_CATCH_UP_FRAMES = 5  # late by more (a stalled loop): skip ahead rather than burst
SPEECH_LEVEL = 500  # mean absolute sample value above which a frame counts as sound
# Prompts and tones are encoded once for all sessions (each caller in a queue hears the same
# ringback and numbers); what is longer, such as a long uploaded greeting, is not kept.
MAX_CACHED_PCM_BYTES = 10 * 8000 * 2
PROMPT_CACHE_SIZE = 64


def _encode(codec: str, pcm: bytes) -> bytes:
    return g711.ulaw_encode(pcm) if codec == "PCMU" else g711.alaw_encode(pcm)


@lru_cache(maxsize=PROMPT_CACHE_SIZE)
def _encoded_prompt(codec: str, pcm: bytes) -> bytes:
    return _encode(codec, pcm)


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfReceived:
    key: str
    via: str  # "rfc4733" | "inband" | "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackFinished:
    name: str


MediaEvent = DtmfReceived | PlaybackFinished


@dataclass(slots=True)
class _Playback:
    name: str
    encoded: bytes
    offset: int = 0


class Recording:
    """PCM collected from the peer, with how long it has been quiet."""

    def __init__(self, *, started_at: float) -> None:
        self.started_at = started_at
        self.pcm = bytearray()
        self.heard_sound = False
        self.silent_frames = 0  # consecutive quiet frames at the end

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / (2 * 8000)

    @property
    def trailing_silence_s(self) -> float:
        return self.silent_frames * FRAME_S

    def add(self, pcm: bytes) -> None:
        self.pcm += pcm
        samples = g711.pcm_samples(pcm)
        level = sum(abs(s) for s in samples) / max(1, len(samples))
        if level >= SPEECH_LEVEL:
            self.heard_sound = True
            self.silent_frames = 0
        else:
            self.silent_frames += 1


class MediaSession:
    def __init__(self, *, local_port: int, choice: AudioChoice, now: float,
                 ssrc: int | None = None) -> None:
        self.local_port = local_port
        self.choice = choice
        self.ssrc = ssrc if ssrc is not None else random.getrandbits(32)
        self._sequence = random.getrandbits(16)
        self._timestamp = random.getrandbits(32)
        self._set_codec(choice.codec)
        self._next_frame_at = now
        self._first = True
        self._playing: deque[_Playback] = deque()
        self._out: list[bytes] = []
        self._events: deque[MediaEvent] = deque()
        self._event_dtmf = EventDtmfReceiver()
        self._tone_dtmf = ToneDtmfDetector() if choice.telephone_event_pt is None else None
        self._last_sequence: int | None = None
        self.recording: Recording | None = None
        self.closed = False
        self.packets_received = 0
        self.packets_dropped = 0

    # ------------------------------------------------------------------ sending
    @property
    def destination(self) -> tuple[str, int]:
        return self.choice.remote_host, self.choice.remote_port

    def update(self, choice: AudioChoice) -> None:
        """The peer's address or format changed (a re-INVITE, or the answer to our offer):
        send there from now on, in the format agreed."""
        if choice.codec != self.choice.codec:
            self._set_codec(choice.codec)
        if (choice.telephone_event_pt is None) != (self.choice.telephone_event_pt is None):
            self._tone_dtmf = ToneDtmfDetector() if choice.telephone_event_pt is None else None
        self.choice = choice

    def _set_codec(self, codec: str) -> None:
        self._codec = codec
        self._decode = g711.ulaw_decode if codec == "PCMU" else g711.alaw_decode
        silence = g711.MULAW_SILENCE if codec == "PCMU" else g711.ALAW_SILENCE
        self._silence = bytes([silence]) * SAMPLES_PER_FRAME

    def restart_clock(self, now: float) -> None:
        """Frames are due from `now` on (a session that waited for the SDP answer)."""
        self._next_frame_at = now

    def play(self, name: str, pcm: bytes) -> None:
        """Queue `pcm` (16-bit 8 kHz mono) behind whatever is playing."""
        if len(pcm) <= MAX_CACHED_PCM_BYTES:
            encoded = _encoded_prompt(self._codec, pcm)
        else:  # a long uploaded greeting: encoded for this call only
            encoded = _encode(self._codec, pcm)
        self._playing.append(_Playback(name, encoded))

    def stop_playing(self) -> None:
        self._playing.clear()

    @property
    def is_playing(self) -> bool:
        return bool(self._playing)

    def get_timer(self) -> float | None:
        return None if self.closed else self._next_frame_at

    def handle_timer(self, now: float) -> None:
        if self.closed:
            return
        due = int((now - self._next_frame_at) / FRAME_S) + 1
        if due > MAX_CATCH_UP_FRAMES:
            skipped = due - 1
            self._timestamp += skipped * SAMPLES_PER_FRAME
            self._next_frame_at += skipped * FRAME_S
            due = 1
        for _ in range(max(due, 0)):
            self._send_frame()
            self._next_frame_at += FRAME_S

    def _send_frame(self) -> None:
        payload = self._silence
        while self._playing:
            current = self._playing[0]
            chunk = current.encoded[current.offset:current.offset + SAMPLES_PER_FRAME]
            current.offset += SAMPLES_PER_FRAME
            if current.offset >= len(current.encoded):
                self._playing.popleft()
                self._events.append(PlaybackFinished(name=current.name))
            if chunk:
                payload = chunk + self._silence[len(chunk):]
                break
        if not self.choice.on_hold:
            packet = RtpPacket(payload_type=self.choice.payload_type, sequence=self._sequence,
                               timestamp=self._timestamp, ssrc=self.ssrc, payload=payload,
                               marker=self._first)
            self._out.append(packet.to_bytes())
            self._first = False
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._timestamp = (self._timestamp + SAMPLES_PER_FRAME) & 0xFFFFFFFF

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ receiving
    def receive(self, data: bytes, now: float) -> None:
        if self.closed:
            return
        try:
            packet = parse_rtp(data)
        except MalformedRtp as exc:
            self.packets_dropped += 1
            LOGGER.debug("port %d: dropped a datagram: %s", self.local_port, exc)
            return
        self.packets_received += 1
        choice = self.choice
        if packet.payload_type == choice.telephone_event_pt:
            try:
                key = self._event_dtmf.receive(packet)
            except MalformedRtp:
                self.packets_dropped += 1
                return
            if key is not None:
                self._events.append(DtmfReceived(key=key, via="rfc4733"))
            return
        if packet.payload_type != choice.payload_type:
            self.packets_dropped += 1  # comfort noise, a format we did not agree on
            return
        if self._last_sequence is not None and not sequence_newer(packet.sequence,
                                                                 self._last_sequence):
            self.packets_dropped += 1  # late or duplicated: the recording moved on
            return
        self._last_sequence = packet.sequence
        pcm = self._decode(packet.payload)
        if self.recording is not None:
            self.recording.add(pcm)
        if self._tone_dtmf is not None:
            for key in self._tone_dtmf.feed(g711.pcm_samples(pcm)):
                self._events.append(DtmfReceived(key=key, via="inband"))

    def start_recording(self, now: float) -> Recording:
        self.recording = Recording(started_at=now)
        return self.recording

    def stop_recording(self) -> Recording | None:
        recording, self.recording = self.recording, None
        return recording

    def next_event(self) -> MediaEvent | None:
        return self._events.popleft() if self._events else None

    def close(self) -> None:
        self.closed = True
        self._playing.clear()
