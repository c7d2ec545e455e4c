"""Media helpers for end-to-end tests: a socket that collects the box's RTP where a SIPp peer's
SDP points it, tone files for SIPp's rtp_stream, and scenario templates filled with file paths
(SIPp reads rtp_stream and play_pcap_audio attributes when it loads a scenario)."""

from __future__ import annotations

import math
import socket
import threading
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


def tone_file(directory: Path, seconds: float, frequency_hz: float) -> Path:
    """A raw u-law file for SIPp's rtp_stream: a tone."""
    samples = array("h", (int(6000 * math.sin(2 * math.pi * frequency_hz * i / 8000))
                          for i in range(int(8000 * seconds))))
    path = directory / f"tone{frequency_hz:g}.ulaw"
    path.write_bytes(g711.ulaw_encode(g711.pcm_bytes(samples)))
    return path


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
