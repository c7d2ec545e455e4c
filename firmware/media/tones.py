"""Tones the box makes itself (16-bit 8 kHz mono PCM): the voicemail beep, silence."""

from __future__ import annotations

import math
from array import array
from functools import cache

from .g711 import pcm_bytes

SAMPLE_RATE_HZ = 8000
BEEP_HZ = 1000
BEEP_S = 0.5
BEEP_AMPLITUDE = 8000  # about -12 dBFS: clearly audible, not harsh


def tone(frequency_hz: float, duration_s: float, amplitude: int) -> bytes:
    count = int(SAMPLE_RATE_HZ * duration_s)
    step = 2.0 * math.pi * frequency_hz / SAMPLE_RATE_HZ
    return pcm_bytes(array("h", (int(amplitude * math.sin(step * i)) for i in range(count))))


def silence(duration_s: float) -> bytes:
    return bytes(2 * int(SAMPLE_RATE_HZ * duration_s))


@cache
def beep() -> bytes:
    return tone(BEEP_HZ, BEEP_S, BEEP_AMPLITUDE)


# The ringback a caller hears while the box plays early media: 425 Hz, 1 s on, 4 s off (the
# CEPT cadence, ITU-T E.180 supplement 2; Russia's 0.8/3.2 s differs little to the ear).
RINGBACK_HZ = 425
RINGBACK_ON_S = 1.0
RINGBACK_CYCLE_S = 5.0


@cache
def ringback() -> bytes:
    """One cycle of ringback tone."""
    return tone(RINGBACK_HZ, RINGBACK_ON_S, BEEP_AMPLITUDE) + silence(
        RINGBACK_CYCLE_S - RINGBACK_ON_S)
