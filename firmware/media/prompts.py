"""The built-in voice prompts, per language: `prompts/<language>/<name>.wav`, 16-bit 8 kHz
mono, made by `scripts/make_prompts.sh` (espeak-ng and sox). An office replaces the voicemail
greeting with its own recording through the web UI (stored with the mailbox, not here)."""

from __future__ import annotations

import wave
from functools import cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent / "prompts"
FALLBACK_LANGUAGE = "en"


class MissingPromptError(LookupError):
    pass


@cache
def prompt(language: str, name: str) -> bytes:
    """The prompt's 16-bit 8 kHz mono PCM, read once."""
    for lang in (language, FALLBACK_LANGUAGE):
        path = PROMPTS_DIR / lang / f"{name}.wav"
        if path.is_file():
            with wave.open(str(path), "rb") as wav:
                if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, 8000):
                    raise MissingPromptError(f"{path} is not 16-bit 8 kHz mono")
                return wav.readframes(wav.getnframes())
    raise MissingPromptError(f"no prompt {name!r} for language {language!r}")


def preload() -> int:
    """Read every prompt of every language into `prompt`'s cache now; how many there are.

    The daemon calls this in a worker thread before it takes calls: a prompt read on first use
    would be a disk read on the event loop in the middle of a call (and the language may change
    with any configuration save, so all of them are read)."""
    languages = sorted(path.name for path in PROMPTS_DIR.iterdir() if path.is_dir())
    names = sorted({wav.stem for language in languages
                    for wav in (PROMPTS_DIR / language).glob("*.wav")})
    for language in languages:
        for name in names:
            prompt(language, name)
    return len(languages) * len(names)
