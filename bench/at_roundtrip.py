"""AT round trips over a pseudo-terminal: Linebox's AtChannel (asyncio, pyserial-asyncio-fast,
the sans-IO codec) against the plainest peer, blocking pyserial in a thread writing a command
and reading until `OK`, both in the same run against the same minimal device.

The device is a separate process on the pty's master side that answers every CR-ended line with
`+CSQ: 20,99` and `OK`, so its own cost does not share the clients' interpreter. Each client runs
`--count` round trips of `AT+CSQ` after `--warmup`, one at a time; printed: round trips per second,
p50/p99/max latency in µs, and Linebox's rate as a ratio of the peer's. A JSON summary goes to
bench/results/ unless --no-json.

    python bench/at_roundtrip.py [--count 5000] [--warmup 200] [--no-json]

Every loop is bounded by --count; the device process is stopped in `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
import tty
from datetime import datetime
from pathlib import Path
from typing import Any

import serial

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hal.modem.channel import AtChannel  # noqa: E402  (needs the repository root on sys.path)
from hal.serial.port import open_port  # noqa: E402

ANSWER = b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
COMMAND = "AT+CSQ"
RESULTS_DIR = REPO_ROOT / "bench" / "results"


def device(master: int) -> None:
    """The minimal modem: one answer per CR received, until the slave side goes away."""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            return
        if not data:
            return
        answers = data.count(b"\r")
        if answers:
            os.write(master, ANSWER * answers)


def figures(latencies_s: list[float], wall_s: float) -> dict[str, float]:
    ordered = sorted(latencies_s)
    return {
        "round_trips": len(ordered),
        "per_s": len(ordered) / wall_s,
        "p50_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
        "max_us": ordered[-1] * 1e6,
    }


async def linebox(path: str, count: int, warmup: int) -> dict[str, float]:
    reader, writer = await open_port(path)
    channel = AtChannel(reader, writer, name="bench")
    try:
        for _ in range(warmup):
            await channel.command(COMMAND)
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(count):
            sent = time.perf_counter()
            await channel.command(COMMAND)
            latencies.append(time.perf_counter() - sent)
        return figures(latencies, time.perf_counter() - started)
    finally:
        await channel.close()


def pyserial_blocking(path: str, count: int, warmup: int) -> dict[str, float]:
    result: dict[str, float] = {}

    def loop() -> None:
        port = serial.Serial(path, 115200, timeout=1.0)
        try:
            def once() -> None:
                port.write(COMMAND.encode() + b"\r")
                if not port.read_until(b"OK\r\n").endswith(b"OK\r\n"):
                    raise RuntimeError("pyserial peer: no OK within 1 s")
            for _ in range(warmup):
                once()
            latencies: list[float] = []
            started = time.perf_counter()
            for _ in range(count):
                sent = time.perf_counter()
                once()
                latencies.append(time.perf_counter() - sent)
            result.update(figures(latencies, time.perf_counter() - started))
        finally:
            port.close()

    thread = threading.Thread(target=loop, name="pyserial-peer")
    thread.start()
    thread.join()
    if not result:
        raise RuntimeError("the pyserial peer failed")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--no-json", action="store_true")
    options = parser.parse_args()

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    context = multiprocessing.get_context("fork")
    process = context.Process(target=device, args=(master,), daemon=True)
    process.start()
    try:
        ours = asyncio.run(linebox(path, options.count, options.warmup))
        peer = pyserial_blocking(path, options.count, options.warmup)
    finally:
        process.terminate()
        process.join(5.0)
        os.close(master)
        os.close(slave)

    print(f"AT round trips over a pty ({COMMAND} → +CSQ, OK), {options.count} each")
    print(f"{'client':<28}{'per s':>10}{'p50 µs':>10}{'p99 µs':>10}{'max µs':>10}")
    for label, row in (("linebox AtChannel (asyncio)", ours),
                       ("pyserial blocking (thread)", peer)):
        print(f"{label:<28}{row['per_s']:>10.0f}{row['p50_us']:>10.0f}{row['p99_us']:>10.0f}"
              f"{row['max_us']:>10.0f}")
    ratio = ours["per_s"] / peer["per_s"]
    print(f"ratio linebox / pyserial: {ratio:.2f}")
    if not options.no_json:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        summary: dict[str, Any] = {
            "bench": "at_roundtrip", "count": options.count, "python": platform.python_version(),
            "linebox": ours, "pyserial_blocking": peer, "ratio": ratio,
        }
        out = RESULTS_DIR / f"at_roundtrip-{stamp}.json"
        out.write_text(json.dumps(summary, indent=2))
        print(f"written: {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
