"""WAV files in and out: prompts, uploaded greetings, recorded messages.

The box plays and records 16-bit 8 kHz mono PCM. `to_pcm8k` takes what an office is likely to
upload — a WAV file in 8- or 16-bit PCM, mono or stereo, at any common rate — and converts it
(channels averaged, resampled by averaging each output sample's window); anything
else is refused with a message saying what the file is and what is wanted.
"""

from __future__ import annotations

import io
import wave
from array import array

from .g711 import pcm_bytes, pcm_samples

SAMPLE_RATE_HZ = 8000
MIN_RATE_HZ = 8000
MAX_RATE_HZ = 48000


class AudioError(ValueError):
    pass


def to_pcm8k(data: bytes, *, max_s: float) -> bytes:
    """The audio of a WAV file as 16-bit 8 kHz mono PCM; at most `max_s` long."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width = wav.getnchannels(), wav.getsampwidth()
            rate, frames = wav.getframerate(), wav.getnframes()
            raw = wav.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"not a PCM WAV file ({exc})") from exc
    if width not in (1, 2) or channels not in (1, 2):
        raise AudioError(f"{8 * width}-bit {channels}-channel audio: use 16-bit mono or stereo")
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise AudioError(f"{rate} Hz: use {MIN_RATE_HZ} to {MAX_RATE_HZ} Hz")
    if frames / rate > max_s:
        raise AudioError(f"{frames / rate:.0f} s long: at most {max_s:.0f} s")
    # 8-bit WAV is unsigned.
    samples = array("h", ((b - 128) << 8 for b in raw)) if width == 1 else pcm_samples(raw)
    if channels == 2:
        samples = array("h", ((samples[i] + samples[i + 1]) // 2
                              for i in range(0, len(samples) - 1, 2)))
    if rate != SAMPLE_RATE_HZ:
        samples = _resample(samples, rate)
    return pcm_bytes(samples)


def _resample(samples: array[int], rate: int) -> array[int]:
    """Down to 8 kHz: each output sample is the mean of the input samples in its window (a
    box filter), which keeps most of what lies above 4 kHz from folding back into the band."""
    count = len(samples) * SAMPLE_RATE_HZ // rate
    step = rate / SAMPLE_RATE_HZ
    out = array("h", bytes(2 * count))
    for i in range(count):
        start = int(i * step)
        end = max(start + 1, int((i + 1) * step))
        window = samples[start:end]
        out[i] = sum(window) // len(window)
    return out


def wav_bytes(pcm: bytes) -> bytes:
    """16-bit 8 kHz mono PCM as a WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE_HZ)
        wav.writeframes(pcm)
    return buffer.getvalue()
