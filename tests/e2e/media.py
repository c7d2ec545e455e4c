"""Media helpers for end-to-end tests: a socket that collects the box's RTP where a SIPp peer's
SDP points it, tone files for SIPp's rtp_stream and for softphones (WAV), measures of a tone in
what a peer heard, and scenario templates filled with file paths (SIPp reads rtp_stream and
play_pcap_audio attributes when it loads a scenario)."""

from __future__ import annotations

import math
import socket
import threading
import wave
from array import array
from pathlib import Path

from firmware.media import g711
from firmware.media.rtp import MalformedRtp, parse_rtp
from tests.e2e.sipp import SCENARIOS_DIR

SIPP_DTMF_DIR = Path("/usr/share/sip-tester")  # SIPp's own RFC 4733 recordings


class RtpListener:
    """Collects the RTP the box sends to the caller's SDP address."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.packets.append(self.sock.recv(2048))
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def audio(self) -> array[int]:
        """What arrived in PCMU, decoded, in arrival order."""
        payloads = []
        for data in self.packets:
            try:
                packet = parse_rtp(data)
            except MalformedRtp:
                continue
            if packet.payload_type == 0:
                payloads.append(g711.ulaw_decode(packet.payload))
        return g711.pcm_samples(b"".join(payloads))


SAMPLE_RATE_HZ = 8000  # G.711's, and so every peer's audio file here


def tone_samples(seconds: float, frequency_hz: float) -> array[int]:
    """A sine of amplitude 6000 (about -15 dBm0), 16-bit samples at 8 kHz."""
    return array("h", (int(6000 * math.sin(2 * math.pi * frequency_hz * i / SAMPLE_RATE_HZ))
                       for i in range(int(SAMPLE_RATE_HZ * seconds))))


def tone_file(directory: Path, seconds: float, frequency_hz: float) -> Path:
    """A raw u-law file for SIPp's rtp_stream: a tone."""
    path = directory / f"tone{frequency_hz:g}.ulaw"
    path.write_bytes(g711.ulaw_encode(g711.pcm_bytes(tone_samples(seconds, frequency_hz))))
    return path


def tone_wav(path: Path, seconds: float, frequency_hz: float) -> Path:
    """A tone as a WAV file: 8 kHz, mono, signed 16-bit little-endian (what baresip's aufile
    source insists on)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE_HZ)
        out.writeframes(g711.pcm_bytes(tone_samples(seconds, frequency_hz)))
    return path


def read_wav(path: Path) -> array[int]:
    """The samples of a mono 16-bit 8 kHz WAV file (as baresip's sndfile writes them)."""
    with wave.open(str(path), "rb") as stream:
        assert (stream.getnchannels(), stream.getsampwidth(), stream.getframerate()) == (
            1, 2, SAMPLE_RATE_HZ), f"{path}: not mono 16-bit {SAMPLE_RATE_HZ} Hz"
        return g711.pcm_samples(stream.readframes(stream.getnframes()))


def tone_share(block: array[int], frequency_hz: float) -> float:
    """How much of the block's energy is a tone of `frequency_hz`: about 1 for that tone alone,
    about 0 for silence, another tone or noise (Goertzel, as firmware/media/dtmf.py)."""
    energy = float(sum(s * s for s in block))
    if energy == 0:
        return 0.0
    coefficient = 2.0 * math.cos(2.0 * math.pi * frequency_hz / SAMPLE_RATE_HZ)
    s1 = s2 = 0.0
    for sample in block:
        s1, s2 = sample + coefficient * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coefficient * s1 * s2
    # A pure tone of amplitude A over N samples: power (A*N/2)^2, energy A^2*N/2.
    return 2.0 * power / (len(block) * energy)


def scenario(directory: Path, template: str, *, audio: Path | None = None,
             dtmf: str | None = None) -> Path:
    """`template` (in the scenarios folder) with @AUDIO@ and @DTMF@ filled in, written to
    `directory` without ".template"."""
    text = (SCENARIOS_DIR / template).read_bytes()
    if audio is not None:
        text = text.replace(b"@AUDIO@", bytes(audio))
    if dtmf is not None:
        text = text.replace(b"@DTMF@", bytes(SIPP_DTMF_DIR / dtmf))
    path = directory / template.replace(".template", "")
    path.write_bytes(text)
    return path


def crossings_per_s(samples: array[int]) -> float:
    rising = sum(1 for a, b in zip(samples, samples[1:], strict=False) if a < 0 <= b)
    return rising / (len(samples) / 8000)
