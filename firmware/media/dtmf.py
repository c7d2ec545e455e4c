"""DTMF from the media stream: RFC 4733 telephone-events and in-band tones (ITU-T Q.23/Q.24).

A phone that negotiated telephone-event sends each key press as a run of RTP packets sharing
one timestamp, the last three marked "end" (RFC 4733 §2.5.1.4); `EventDtmfReceiver` reports a
key once, at its first packet. A phone or line that did not (an analog line, a GSM gateway)
sends the tones in the audio itself; `ToneDtmfDetector` finds them with the Goertzel algorithm
over 102-sample blocks at 8 kHz, and reports a key once it has held for two blocks — the
minimum Q.24 tone length of 40 ms — and not again until a gap.
"""

from __future__ import annotations

import math
from array import array

from .rtp import RtpPacket, parse_telephone_event

SAMPLE_RATE_HZ = 8000
ROW_FREQUENCIES_HZ = (697, 770, 852, 941)
COLUMN_FREQUENCIES_HZ = (1209, 1336, 1477, 1633)
KEYPAD = ("123A", "456B", "789C", "*0#D")
BLOCK_SAMPLES = 102  # 12.75 ms: frequency bins ~78 Hz wide, fine enough for the DTMF grid
# Thresholds on the Goertzel power relative to the block's energy, tuned so that speech and
# the prompts we play do not trigger, while tones down to -25 dBm0 are found.
MIN_TONE_SHARE = 0.30  # the row and column tones together hold this much of the energy
MAX_TWIST_DB = 8.0  # Q.24: the two tones within 8 dB of each other
MIN_BLOCK_ENERGY = 102 * 300.0**2  # below this a block is silence
BLOCKS_TO_CONFIRM = 2


class EventDtmfReceiver:
    """RFC 4733 events of one RTP stream, each reported once."""

    def __init__(self) -> None:
        self._last_timestamp: int | None = None

    def receive(self, packet: RtpPacket) -> str | None:
        event = parse_telephone_event(packet.payload)
        if packet.timestamp == self._last_timestamp:
            return None  # the same event again: its updates, its end and their copies
        self._last_timestamp = packet.timestamp
        return event.key


def _coefficient(frequency_hz: float) -> float:
    return 2.0 * math.cos(2.0 * math.pi * frequency_hz / SAMPLE_RATE_HZ)


_ROW_COEFFICIENTS = tuple(_coefficient(f) for f in ROW_FREQUENCIES_HZ)
_COLUMN_COEFFICIENTS = tuple(_coefficient(f) for f in COLUMN_FREQUENCIES_HZ)


def _power(block: array[int] | list[int], coefficient: float) -> float:
    s1 = s2 = 0.0
    for sample in block:
        s1, s2 = sample + coefficient * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coefficient * s1 * s2


def detect_block(block: array[int] | list[int]) -> str | None:
    """The DTMF key sounding throughout `block` (BLOCK_SAMPLES samples), if any."""
    energy = float(sum(s * s for s in block))
    if energy < MIN_BLOCK_ENERGY:
        return None
    rows = [_power(block, c) for c in _ROW_COEFFICIENTS]
    columns = [_power(block, c) for c in _COLUMN_COEFFICIENTS]
    row = max(range(4), key=rows.__getitem__)
    column = max(range(4), key=columns.__getitem__)
    row_power, column_power = rows[row], columns[column]
    if row_power <= 0 or column_power <= 0:
        return None
    # Goertzel power of a pure tone of amplitude A over N samples is (A*N/2)^2, its energy
    # A^2*N/2: the tone's share of the block's energy is power * 2 / (N * energy).
    share = 2.0 * (row_power + column_power) / (len(block) * energy)
    twist_db = 10.0 * math.log10(max(row_power, column_power) / min(row_power, column_power))
    if share < MIN_TONE_SHARE or twist_db > MAX_TWIST_DB:
        return None
    # Each tone must stand clear of the other tones of its group (no chord, no speech).
    if any(p * 4 > row_power for i, p in enumerate(rows) if i != row):
        return None
    if any(p * 4 > column_power for i, p in enumerate(columns) if i != column):
        return None
    return KEYPAD[row][column]


class ToneDtmfDetector:
    """In-band DTMF in a stream of 8 kHz samples fed in any chunk size."""

    def __init__(self) -> None:
        self._pending: array[int] = array("h")
        self._candidate: str | None = None
        self._held = 0
        self._reported = False

    def feed(self, samples: array[int]) -> list[str]:
        keys: list[str] = []
        pending = self._pending
        pending.extend(samples)
        start = 0
        while len(pending) - start >= BLOCK_SAMPLES:
            key = detect_block(pending[start:start + BLOCK_SAMPLES])
            start += BLOCK_SAMPLES
            if key is None or key != self._candidate:
                self._candidate, self._held, self._reported = key, 1 if key else 0, False
                continue
            self._held += 1
            if self._held >= BLOCKS_TO_CONFIRM and not self._reported:
                self._reported = True
                keys.append(key)
        del pending[:start]
        return keys
