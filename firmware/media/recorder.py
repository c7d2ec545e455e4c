"""A call's two directions recorded as G.711 in WAV, sans-IO: packets in, file bytes out.

The recorder taps an anchored call's `MediaBridge` (firmware/media/bridge.py): every audio packet
either party sends reaches `heard`, already parsed. Each side's samples are placed on the call's
timeline by their RTP timestamps (RFC 3550 §5.1: the sampling instant), anchored to the arrival
time of the side's first packet — so network jitter does not stretch or squeeze a side, and a
side that sends nothing (silence suppression, hold) is silence in the file. What is older than
`LAG_S` is final; `take(now)` hands it out about once a second (`FLUSH_S`) for the daemon to
append to the file, and `take(now, final=True)` the rest at the call's end.

The file is G.711 in WAV (format tag 6 A-law / 7 µ-law, RFC 2361 appendix A): the packets'
payload as it came, one byte a sample — half of 16-bit PCM and no encoding work at all (a law
the other side used is translated with a 256-byte table). Stereo puts the caller on the left and
the member on the right (one byte each, interleaved); mono mixes the two through a table.
The header's sizes are known only at the end: `wav_header(0, ...)` starts a file, `wav_sizes`
gives the patches at close, `repaired_sizes` recovers a file a power cut left unfinished.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from functools import cache

from . import g711
from .rtp import RtpPacket

# The standard library's audioop mixes in C. CPython 3.11 (the box's, Buildroot's) has it,
# deprecated; 3.13 removed it, and then the table below does the same, slower.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop as _audioop
    except ImportError:  # CPython 3.13 and later
        _audioop = None  # type: ignore[assignment]

SAMPLE_RATE_HZ = 8000
FLUSH_S = 1.0  # how much audio at most waits in memory (a power cut loses no more)
LAG_S = 0.3  # packets this late still land in place; older ones are past the written edge
REANCHOR_SAMPLES = SAMPLE_RATE_HZ  # a timestamp 1 s off its arrival: the sender restarted
TIMESTAMP_MODULO = 1 << 32
WAVE_FORMAT_ALAW = 6  # RFC 2361 appendix A
WAVE_FORMAT_MULAW = 7
CALLER, MEMBER = "a", "b"
SILENCE = {"PCMA": g711.ALAW_SILENCE, "PCMU": g711.MULAW_SILENCE}
FORMAT_TAGS = {"PCMA": WAVE_FORMAT_ALAW, "PCMU": WAVE_FORMAT_MULAW}
# RIFF header, `fmt ` with cbSize (18 bytes: non-PCM formats carry it), `fact` (the sample
# count, which non-PCM WAV files must have), then `data`.
HEADER = struct.Struct("<4sI4s4sIHHIIHHH4sII4sI")
HEADER_BYTES = HEADER.size  # 58
RIFF_SIZE_OFFSET = 4
FACT_COUNT_OFFSET = 46
DATA_SIZE_OFFSET = 54


def wav_header(data_bytes: int, *, codec: str, channels: int) -> bytes:
    """The 58-byte header of a G.711 WAV file holding `data_bytes` of samples."""
    return HEADER.pack(
        b"RIFF", HEADER_BYTES - 8 + data_bytes, b"WAVE",
        b"fmt ", 18, FORMAT_TAGS[codec], channels, SAMPLE_RATE_HZ, SAMPLE_RATE_HZ * channels,
        channels, 8, 0,
        b"fact", 4, data_bytes // channels,
        b"data", data_bytes)


def wav_sizes(data_bytes: int, channels: int) -> list[tuple[int, bytes]]:
    """(offset, bytes) to write into a finished file's header: the RIFF, fact and data sizes."""
    return [(RIFF_SIZE_OFFSET, struct.pack("<I", HEADER_BYTES - 8 + data_bytes)),
            (FACT_COUNT_OFFSET, struct.pack("<I", data_bytes // channels)),
            (DATA_SIZE_OFFSET, struct.pack("<I", data_bytes))]


@dataclass(frozen=True, slots=True, kw_only=True)
class WavInfo:
    codec: str
    channels: int
    data_bytes: int  # what the header says

    @property
    def duration_s(self) -> float:
        return self.data_bytes / self.channels / SAMPLE_RATE_HZ


def read_header(header: bytes) -> WavInfo:
    """The header of a file this module wrote; ValueError if it is not one."""
    if len(header) < HEADER_BYTES:
        raise ValueError("shorter than a WAV header")
    fields = HEADER.unpack(header[:HEADER_BYTES])
    riff, wave, fmt, tag, channels = fields[0], fields[2], fields[3], fields[5], fields[6]
    data = fields[15]
    if (riff, wave, fmt, data) != (b"RIFF", b"WAVE", b"fmt ", b"data") or channels not in (1, 2):
        raise ValueError("not a G.711 WAV file of the box")
    codec = {WAVE_FORMAT_ALAW: "PCMA", WAVE_FORMAT_MULAW: "PCMU"}.get(tag)
    if codec is None:
        raise ValueError(f"WAV format tag {tag} is not G.711")
    return WavInfo(codec=codec, channels=channels, data_bytes=fields[16])


def repaired_sizes(header: bytes, file_bytes: int) -> list[tuple[int, bytes]] | None:
    """The header patches a file of `file_bytes` needs when its header's sizes are not its
    length (a power cut came before the close fixed them up); None when they are right. A last
    partial sample frame is left out of the data."""
    info = read_header(header)
    data = max(0, file_bytes - HEADER_BYTES)
    data -= data % info.channels
    if data == info.data_bytes:
        return None
    return wav_sizes(data, info.channels)


@cache
def _mix_table(codec: str) -> bytes:
    """G.711 code pair (a << 8 | b) → the code of their sum, clipped: mono mixing as one
    lookup a sample. 64 KiB, made on the first mono recording."""
    decode = g711.alaw_decode if codec == "PCMA" else g711.ulaw_decode
    encode = g711.alaw_encode if codec == "PCMA" else g711.ulaw_encode
    linear = g711.pcm_samples(decode(bytes(range(256))))
    mixed = g711.pcm_samples(b"\x00\x00" * 65536)
    for a in range(256):
        for b in range(256):
            mixed[a << 8 | b] = max(-32768, min(32767, linear[a] + linear[b]))
    return encode(g711.pcm_bytes(mixed))


def mix(a: bytes, b: bytes, codec: str) -> bytes:
    """Two equally long G.711 signals as one (their sum, clipped)."""
    if _audioop is not None:  # in C: a fifteenth of the table's time, the same bytes
        if codec == "PCMA":
            return bytes(_audioop.lin2alaw(_audioop.add(
                _audioop.alaw2lin(a, 2), _audioop.alaw2lin(b, 2), 2), 2))
        return bytes(_audioop.lin2ulaw(_audioop.add(
            _audioop.ulaw2lin(a, 2), _audioop.ulaw2lin(b, 2), 2), 2))
    table = _mix_table(codec)
    pairs = bytearray(2 * len(a))
    pairs[0::2] = a
    pairs[1::2] = b
    indices = struct.unpack(f">{len(a)}H", pairs)
    return bytes(map(table.__getitem__, indices))


@dataclass(slots=True)
class _Side:
    buffer: bytearray = field(default_factory=bytearray)  # samples from the written edge on
    ssrc: int | None = None
    anchor_timestamp: int = 0
    anchor_position: int = 0
    packets: int = 0


class Recorder:
    """One recorded call: `codec` is the file's law, `channels` 2 (stereo) or 1 (mono)."""

    def __init__(self, *, codec: str, channels: int, started_at: float) -> None:
        if codec not in FORMAT_TAGS or channels not in (1, 2):
            raise ValueError(f"cannot record {codec} in {channels} channels")
        self.codec = codec
        self.channels = channels
        self.started_at = started_at
        self.silence = SILENCE[codec]
        self.sides = {CALLER: _Side(), MEMBER: _Side()}
        self.written = 0  # samples per channel handed out so far (the written edge)
        self._last_take = started_at
        self.closed = False

    @property
    def duration_s(self) -> float:
        return self.written / SAMPLE_RATE_HZ

    def heard(self, side: str, packet: RtpPacket, codec: str, now: float) -> None:
        """An audio packet `side` ("a" the caller, "b" the member) sent, in `codec`."""
        self.heard_plain(side, packet.timestamp, packet.ssrc, packet.payload, codec, now)

    def heard_plain(self, side: str, timestamp: int, ssrc: int, payload: bytes, codec: str,
                    now: float) -> None:
        """The same from the packet's header fields and payload (not parsed by the bridge)."""
        if self.closed:
            return
        state = self.sides[side]
        if codec != self.codec:
            payload = payload.translate(
                g711.ALAW_TO_ULAW if codec == "PCMA" else g711.ULAW_TO_ALAW)
        arrival = round((now - self.started_at) * SAMPLE_RATE_HZ)
        position = (state.anchor_position
                    + (timestamp - state.anchor_timestamp) % TIMESTAMP_MODULO)
        if state.ssrc != ssrc or abs(position - arrival) > REANCHOR_SAMPLES:
            # The first packet, a new source (RFC 3550 §8.2), or a jump: time from arrival.
            state.ssrc = ssrc
            state.anchor_timestamp = timestamp
            state.anchor_position = position = arrival
        state.packets += 1
        buffer = state.buffer
        if position - self.written == len(buffer):  # the usual case: right after the last one
            buffer += payload
            return
        self._place(state, payload, position)

    def place(self, side: str, payload: bytes, position: int) -> None:
        """Samples in the file's law for `side`, from sample `position` of the call's timeline
        (the box's own warning at 0, say)."""
        self._place(self.sides[side], payload, position)

    def _place(self, state: _Side, payload: bytes, position: int) -> None:
        offset = position - self.written
        if offset < 0:  # older than the written edge: what fits after it
            payload = payload[-offset:]
            offset = 0
        if not payload:
            return
        buffer = state.buffer
        end = offset + len(payload)
        if end > len(buffer):
            buffer.extend(bytes([self.silence]) * (end - len(buffer)))
        buffer[offset:end] = payload

    def take(self, now: float, *, final: bool = False) -> bytes:
        """The file bytes that are final by `now` (b"" until about FLUSH_S has gathered);
        with `final`, everything heard (the call ended)."""
        if self.closed:
            return b""
        if final:
            self.closed = True
            edge = self.written + max(len(side.buffer) for side in self.sides.values())
        else:
            if now - self._last_take < FLUSH_S:
                return b""
            edge = round((now - LAG_S - self.started_at) * SAMPLE_RATE_HZ)
        count = edge - self.written
        if count <= 0:
            return b""
        self._last_take = now
        a, b = (self._cut(self.sides[name], count) for name in (CALLER, MEMBER))
        self.written += count
        if self.channels == 1:
            return mix(a, b, self.codec)
        frames = bytearray(2 * count)
        frames[0::2] = a
        frames[1::2] = b
        return bytes(frames)

    def _cut(self, side: _Side, count: int) -> bytes:
        chunk = bytes(side.buffer[:count])
        del side.buffer[:count]
        if len(chunk) < count:
            chunk += bytes([self.silence]) * (count - len(chunk))
        return chunk
