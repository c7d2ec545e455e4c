"""bench/media.py at a tiny size, so the benchmark cannot rot: three anchored calls through the
real daemon (SIPp signalling, the bench's RTP worker), three more with recording on, and three
through rtpengine, each with two seconds of G.711 both ways. Figures are not judged here (the
machine is shared); that the run completes, that every stream was set up, and that no packet
was lost on the way are."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CALLS = 3
DURATION_S = 2.0
PACKETS_PER_S = 50  # 20 ms G.711 packets
WARMUP_S = 1.0

pytestmark = pytest.mark.timeout(300)


def test_the_media_bench_carries_three_calls_through_linebox_recording_and_rtpengine(
    tmp_path: Path,
) -> None:
    for tool in ("sipp", "taskset"):
        assert shutil.which(tool), f"{tool} is missing: make test installs it (make deb-test)"
    assert Path("/usr/bin/rtpengine").exists(), "rtpengine is missing: make deb-test installs it"
    run = subprocess.run(
        [sys.executable, "bench/media.py", "--calls", str(CALLS), "--duration", str(DURATION_S),
         # Latency is not what this test is about: on a busy machine a p99 spike must not fail
         # it, lost packets and broken set-ups must.
         "--max-p99-ms", "1000", "--max-total-s", "180", "--results", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=280, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "capacity ratio linebox/rtpengine: 1.00" in run.stdout, run.stdout
    [result_file] = tmp_path.glob("media-*.json")
    document = json.loads(result_file.read_text())
    expected_packets = 2 * CALLS * round((WARMUP_S + DURATION_S) * PACKETS_PER_S)
    for report in document["elements"]:
        [step] = [s for s in report["steps"] if s["passed"]]
        assert (step["calls"], step["streams"]) == (CALLS, 2 * CALLS), report["element"]
        assert step["sent"] == expected_packets, step
        assert step["lost"] == 0, step
        assert step["latency_p50_ms"] is not None and step["latency_p50_ms"] > 0, step
        assert step["cpu_percent"] > 0 and step["rss_mb"] > 0, step
    assert [r["element"] for r in document["elements"]] == ["linebox", "linebox-rec", "rtpengine"]
    assert "recording costs" in run.stdout and "CPU per packet linebox/rtpengine" in run.stdout
