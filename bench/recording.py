"""What call recording costs the media path: the bridge relaying anchored calls' packets alone,
and the same bridge with the recorder tapping it (stereo, mono), measured side by side in one
run on the same packets — the issue's target is recording under 25 % more CPU than plain
relaying. Then the daemon's writer thread (firmware/media/recorder_files.py) taking the same
calls' audio to real files, as seconds of audio written per second.

This measures the Python work per packet only (parsing, forwarding decisions, the recorder's
placement and its per-second hand-out); the sockets around it are bench/media.py's (the whole
daemon against rtpengine). Run: `python bench/recording.py [--calls N] [--seconds S]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware.core.events import (  # noqa: E402
    RecordingAudio,
    RecordingFinished,
    RecordingStarted,
)
from firmware.media.bridge import BridgeSide, MediaBridge  # noqa: E402
from firmware.media.recorder import Recorder  # noqa: E402
from firmware.media.recorder_files import MAX_WAITING_BYTES, RecordingFiles  # noqa: E402
from firmware.media.rtp import RtpPacket  # noqa: E402
from firmware.media.sdp import AudioChoice  # noqa: E402
from firmware.recording import RecordingSettings  # noqa: E402

PACKET_S = 0.02
REPEATS = 3


class CollectingTap:
    """What firmware/core/recordings.py's tap does: the recorder, then each second's bytes out."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.out: list[bytes] = []

    def heard(self, side: str, packet: RtpPacket, codec: str, now: float) -> None:
        self.heard_plain(side, packet.timestamp, packet.ssrc, packet.payload, codec, now)

    def heard_plain(self, side: str, timestamp: int, ssrc: int, payload: bytes, codec: str,
                    now: float) -> None:
        self.recorder.heard_plain(side, timestamp, ssrc, payload, codec, now)
        data = self.recorder.take(now)
        if data:
            self.out.append(data)


def choice(codec: str, port: int) -> AudioChoice:
    return AudioChoice(codec=codec, payload_type=8 if codec == "PCMA" else 0,
                       remote_host="127.0.0.1", remote_port=port, telephone_event_pt=101,
                       direction="sendrecv")


def bridges(calls: int, channels: int | None, member_codec: str) -> list[MediaBridge]:
    made = []
    for n in range(calls):
        bridge = MediaBridge(BridgeSide(10000 + 2 * n, choice("PCMA", 40000 + 2 * n)),
                             BridgeSide(10001 + 2 * n, choice(member_codec, 50000 + 2 * n)))
        if channels is not None:
            bridge.tap = CollectingTap(Recorder(codec="PCMA", channels=channels,
                                                started_at=0.0))
        made.append(bridge)
    return made


def packets(seconds: float, payload_type: int, ssrc: int) -> list[bytes]:
    payload = bytes(range(160))
    return [RtpPacket(payload_type=payload_type, sequence=i & 0xFFFF, timestamp=160 * i,
                      ssrc=ssrc, payload=payload).to_bytes()
            for i in range(int(seconds / PACKET_S))]


def relay_cpu_s(calls: int, seconds: float, channels: int | None, member_codec: str) -> float:
    """CPU seconds to pass `seconds` of both directions of `calls` calls through bridges."""
    made = bridges(calls, channels, member_codec)
    caller = packets(seconds, 8, 7)
    member = packets(seconds, 8 if member_codec == "PCMA" else 0, 9)
    started = time.process_time()
    for i, (a, b) in enumerate(zip(caller, member, strict=True)):
        now = i * PACKET_S
        for bridge in made:
            bridge.receive(bridge.a.port, a, now)
            bridge.receive(bridge.b.port, b, now)  # type: ignore[union-attr]
    return time.process_time() - started


def writer_rate(calls: int, seconds: int) -> tuple[float, float]:
    """Seconds of stereo audio per wall second the writer thread takes to real files, and the
    wall seconds it took (on this machine's disk, synced every second). All of
    it is queued at once, so `calls * seconds` must stay within the writer's bound on waiting
    audio (MAX_WAITING_BYTES): nothing may be dropped."""
    second = b"\xd5\x2a" * 8000
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        writer = RecordingFiles(db, settings=lambda: RecordingSettings(quota_mb=0,
                                                                       min_free_mb=1))
        writer.ready.wait(10)
        started = time.monotonic()
        for n in range(calls):
            writer.perform(RecordingStarted(call_id=f"c{n}", codec="PCMA", channels=2,
                                            wall_time=time.time()))
        for _ in range(seconds):
            for n in range(calls):
                writer.perform(RecordingAudio(call_id=f"c{n}", data=second))
        for n in range(calls):
            writer.perform(RecordingFinished(call_id=f"c{n}", duration_s=float(seconds)))
        writer.close(timeout_s=600)
        took = time.monotonic() - started
    if writer.dropped_bytes:
        raise SystemExit(f"the writer dropped {writer.dropped_bytes} bytes: fewer calls")
    return calls * seconds / took, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    packets_total = 2 * args.calls * int(args.seconds / PACKET_S)
    print(f"call recording: {args.calls} anchored calls, {args.seconds:g} s of 20 ms G.711 "
          f"packets both ways ({packets_total} packets), best of {REPEATS}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'member codec':>12}  {'variant':>14}  {'CPU s':>7}  {'us/packet':>9}  "
          f"{'vs relaying':>11}")
    for member_codec in ("PCMA", "PCMU"):
        plain = min(relay_cpu_s(args.calls, args.seconds, None, member_codec)
                    for _ in range(REPEATS))
        rows = [("relay only", plain)]
        for label, channels in (("record stereo", 2), ("record mono", 1)):
            rows.append((label, min(relay_cpu_s(args.calls, args.seconds, channels,
                                                member_codec) for _ in range(REPEATS))))
        for label, cpu in rows:
            print(f"{member_codec:>12}  {label:>14}  {cpu:7.3f}  "
                  f"{cpu / packets_total * 1e6:9.2f}  {cpu / plain:10.2f}x")
    # As much as the writer may hold waiting (16 MB), queued at once.
    seconds = max(1, MAX_WAITING_BYTES // (args.calls * 16000) - 1)
    rates = [writer_rate(args.calls, seconds) for _ in range(2)]
    best = max(rate for rate, _ in rates)
    print(f"writer thread: {args.calls} calls x {seconds} s stereo to files (synced every "
          "second): "
          f"{best:.0f} s of audio per s "
          f"(x{best / args.calls:.1f} real time for {args.calls} calls; "
          f"walls {statistics.mean(t for _, t in rates):.2f} s)")


if __name__ == "__main__":
    main()
