"""G.711 µ-law and A-law (ITU-T G.711), the two codecs every SIP phone and provider speaks.

Samples are signed 16-bit little-endian PCM (what WAV files hold). Both directions go through
lookup tables built once at import, so a 20 ms frame is one pass of table lookups; the tables
follow the reference algorithm of ITU-T G.711 as published in Sun's g711.c.
"""

from __future__ import annotations

import sys
from array import array

MULAW_BIAS = 0x84
MULAW_CLIP = 32635
ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
MULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _mulaw_encode_one(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sign else sample, MULAW_CLIP) + MULAW_BIAS
    exponent = max(0, magnitude.bit_length() - 8)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _mulaw_decode_one(code: int) -> int:
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + MULAW_BIAS) << exponent
    magnitude -= MULAW_BIAS
    return -magnitude if code & 0x80 else magnitude


def _alaw_encode_one(sample: int) -> int:
    value = sample >> 3  # A-law works on 13 bits
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = next((i for i, end in enumerate(ALAW_SEGMENT_ENDS) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (value >> 1) & 0x0F if segment < 2 else (value >> segment) & 0x0F
    return code ^ mask


def _alaw_decode_one(code: int) -> int:
    code ^= 0x55
    value = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        value += 8
    elif segment == 1:
        value += 0x108
    else:
        value = (value + 0x108) << (segment - 1)
    return value if code & 0x80 else -value


def _decode_table(decode_one: object) -> list[bytes]:
    assert callable(decode_one)
    return [int(decode_one(code)).to_bytes(2, "little", signed=True) for code in range(256)]


# Encoding: one entry per 4 sample values (the two low bits never change the code).
_ENCODE_STEP_SHIFT = 2
_MULAW_ENCODE = bytes(_mulaw_encode_one((i << _ENCODE_STEP_SHIFT) - 32768) for i in range(16384))
_ALAW_ENCODE = bytes(_alaw_encode_one((i << _ENCODE_STEP_SHIFT) - 32768) for i in range(16384))
_MULAW_DECODE = _decode_table(_mulaw_decode_one)
_ALAW_DECODE = _decode_table(_alaw_decode_one)


def _samples(pcm: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) & ~1])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _encode(pcm: bytes, table: bytes) -> bytes:
    return bytes([table[(s + 32768) >> _ENCODE_STEP_SHIFT] for s in _samples(pcm)])


def ulaw_encode(pcm: bytes) -> bytes:
    return _encode(pcm, _MULAW_ENCODE)


def alaw_encode(pcm: bytes) -> bytes:
    return _encode(pcm, _ALAW_ENCODE)


def ulaw_decode(data: bytes) -> bytes:
    table = _MULAW_DECODE
    return b"".join([table[code] for code in data])


def alaw_decode(data: bytes) -> bytes:
    table = _ALAW_DECODE
    return b"".join([table[code] for code in data])


def pcm_samples(pcm: bytes) -> array[int]:
    """16-bit little-endian PCM as an array of ints, whatever this machine's byte order."""
    return _samples(pcm)


def pcm_bytes(samples: array[int]) -> bytes:
    """The inverse of `pcm_samples`."""
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


# A-law ↔ µ-law code for code (through the linear value, as G.711 §3 defines both): a 20 ms
# frame is then one bytes.translate, not a decode and an encode.
ALAW_TO_ULAW = bytes(ulaw_encode(alaw_decode(bytes([code])))[0] for code in range(256))
ULAW_TO_ALAW = bytes(alaw_encode(ulaw_decode(bytes([code])))[0] for code in range(256))
