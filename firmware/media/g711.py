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


# Encoding: one entry per 4 sample values. The reference drops the two low bits before
# encoding (µ-law works on 14 bits, Sun's g711.c `pcm_val >>= 2`; A-law on 13, `>>= 3`), so
# entry i is the code of sample 4*i - 32768, and a sample's entry is (sample + 32768) >> 2.
_ENCODE_STEP_SHIFT = 2
_ENCODE_ENTRIES = 1 << (16 - _ENCODE_STEP_SHIFT)
_HALF = _ENCODE_ENTRIES // 2  # entries per sign: quarter magnitudes 0..8191 (or 1..8192)


def _runs(starts: list[int], total: int) -> bytes:
    """Codes 0, 1, 2... each repeated from its start to the next code's start, up to total:
    the table of a code that only grows with the magnitude."""
    ends = starts[1:] + [total]
    return b"".join(bytes([code]) * (end - start)
                    for code, (start, end) in enumerate(zip(starts, ends, strict=True)))


def _mulaw_encode_table() -> bytes:
    # The 128 sign-less codes (exponent << 4 | mantissa) in order of magnitude: code e, m
    # starts where the biased magnitude reaches (16 + m) << (e + 3) (G.711 Table 2a), i.e. at
    # that sample magnitude less the bias of 132; the clip at 32635 falls inside the last code.
    starts = [max(0, ((16 + (code & 0x0F)) << ((code >> 4) + 3)) - MULAW_BIAS)
              >> _ENCODE_STEP_SHIFT for code in range(128)]
    # By quarter magnitude q (|sample| = 4q), q = 0..8192: a negative sample -4k has q = k
    # (k = 1..8192), a positive one 4j has q = j (j = 0..8191).
    by_magnitude = _runs(starts, _HALF + 1)
    positive = bytes(~code & 0xFF for code in range(256))
    negative = bytes(~(0x80 | code) & 0xFF for code in range(256))
    return (by_magnitude[1:][::-1].translate(negative)
            + by_magnitude[:_HALF].translate(positive))


def _alaw_encode_table() -> bytes:
    # The 128 sign-less codes (segment << 4 | step) in order of the 12-bit magnitude v
    # (G.711 Table 1a): segment 0 starts step m at v = 2m, segment e >= 1 at (16 + m) << e;
    # 0xFFF, the largest v, is in segment 7, so the reference's overflow code never occurs.
    value_starts = [(code & 0x0F) << 1 if code < 16 else (16 + (code & 0x0F)) << (code >> 4)
                    for code in range(128)]
    # A sample 4j (j = 0..8191) has v = j >> 1; a sample -4k (k = 1..8192) has
    # v = -((-4k) >> 3) - 1 = (k - 1) >> 1: both index the table by half-steps h with v = h >> 1.
    by_half_step = _runs([start << 1 for start in value_starts], _HALF)
    positive = bytes(code ^ 0xD5 for code in range(256))
    negative = bytes(code ^ 0x55 for code in range(256))
    return by_half_step[::-1].translate(negative) + by_half_step.translate(positive)


# Built from the codes' ranges (about 300 small operations), not by encoding each of the 16384
# entries (32768 Python calls: ~27 ms at import natively, far more on an emulated or small
# CPU on the way to ready); tests/media/test_g711_rtp.py checks every entry against the
# per-sample functions above.
_MULAW_ENCODE = _mulaw_encode_table()
_ALAW_ENCODE = _alaw_encode_table()
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
ALAW_TO_ULAW = ulaw_encode(alaw_decode(bytes(range(256))))
ULAW_TO_ALAW = alaw_encode(ulaw_decode(bytes(range(256))))
