"""Linebox at twice its call-setup capacity: does it shed the excess cheaply and keep its
goodput, or fall off the cliff? (issue 16, "Overload").

The path and the calls are bench/call_setup.py's (SIPp uac -> Linebox -> SIPp uas, UDP, digest
auth on every INVITE, calls held 1 s, Linebox pinned to CPU 0 and both SIPps to CPU 1), with
the caller bench/scenarios/overload_uac.xml, which also takes a 503 to either INVITE. The
capacity is measured first, in the same run and so under the same load of the machine: a quick
sweep of `--rates` with call_setup's pass criteria (`--capacity` skips it). Then one step at
`--factor` (2) x that capacity for `--duration` seconds. Targets, printed beside the figures:

* goodput (calls completed per second of offered load) >= 90 % of the capacity;
* no retransmission storm: SIPp's retransmissions at most 1 % of the messages sent (the
  call_setup criterion), printed for the uac and the uas;
* the excess is told at once: 503s to the first INVITE arrive within 10 ms (SIPp's response
  time 2, whole milliseconds; the share under 10 ms and the mean are printed).

sippy's b2bua_simple (no overload control) gets the same offered rate for reference
(`--no-sippy` skips it). Results go to bench/results/overload-STAMP.json.

    python bench/overload.py [--rates 200,300,...] [--capacity CPS] [--factor 2]
                             [--duration 20] [--no-sippy]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from call_setup import (  # noqa: E402  (bench/ on sys.path)
    LINEBOX_CALLER,
    LINEBOX_CALLER_PASSWORD,
    LINEBOX_EXTENSION,
    LOOPBACK,
    MAX_RETRANS_RATIO,
    RESULTS_DIR,
    SIPP_CPU,
    SIPP_LOG_LIMIT_BYTES,
    TABLE_HEADER,
    Element,
    LineboxElement,
    ProcessSampler,
    SippyElement,
    bench_uas,
    print_step,
    run_step,
    wait_port_free,
)

from tests.e2e.sipp import Sipp, SippProcess, SippResult, free_port, wait_until_bound  # noqa: E402

SCENARIO = BENCH_DIR / "scenarios" / "overload_uac.xml"
DEFAULT_SWEEP_RATES = (200, 300, 400, 500, 600, 700, 800, 900, 1000)
SWEEP_DURATION_S = 10.0
DEFAULT_FACTOR = 2.0
DEFAULT_DURATION_S = 20.0
HOLD_MS = 1000
# SIPp's socket buffers: its default (64 KB) overflows at these rates on a shared CPU, and what
# the kernel drops at SIPp's socket comes back as SIPp's own retransmissions — a storm of the
# load generator's making, not of the element's (the drops at each socket are printed).
SIPP_BUFFER_ARGS = ["-buff_size", str(4 * 1024 * 1024)]
GOODPUT_TARGET = 0.90  # of the capacity
SHED_ANSWER_TARGET_MS = 10.0
SHED_WITHIN_TARGET_SHARE = 0.95  # of the 503s to the first INVITE, within the 10 ms


@dataclass
class OverloadStep:
    element: str
    capacity_cps: int
    offered_cps: float
    duration_s: float
    attempted: int
    completed: int
    shed_first: int
    shed_second: int
    failed_other: int
    goodput_cps: float
    goodput_share: float
    uac_retransmissions: int
    uas_retransmissions: int
    retrans_ratio: float
    mean_setup_ms: float | None
    mean_503_ms: float | None
    share_503_within_10ms: float | None
    element_cpu_percent: float
    peak_rss_kb: int
    box_overload: dict[str, Any] | None
    drops: dict[str, int | None]  # the kernel's drops at each socket: lost, then retransmitted
    verdicts: dict[str, bool]


def udp_drops(port: int) -> int | None:
    """Datagrams the kernel dropped at the UDP socket bound to 127.0.0.1:`port` (its receive
    buffer full: /proc/net/udp's last column), None when there is no such socket."""
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return None
    wanted = f"0100007F:{port:04X}"
    for line in lines:
        fields = line.split()
        if len(fields) > 12 and fields[1] == wanted:
            return int(fields[-1])
    return None


def measure_capacity(rates: list[int], run_dir: Path) -> int | None:
    """call_setup's sweep, shorter: the highest rate passed before the first failure."""
    element = LineboxElement(run_dir / "sweep", free_port(LOOPBACK))
    capacity: int | None = None
    try:
        element.start()
        for rate in rates:
            step = run_step(element, rate, SWEEP_DURATION_S, HOLD_MS,
                            run_dir / "sweep" / f"r{rate}")
            print_step("linebox", step)
            if not step.passed:
                break
            capacity = rate
    finally:
        element.stop()
    return capacity


def repartition_share(stats: dict[str, str], number: int, below_ms: float) -> float | None:
    """Share of response time `number` samples under `below_ms` (SIPp's repartition columns,
    `ResponseTimeRepartitionN_<X` and `..._>=X`, cumulative in the last row)."""
    prefix = f"ResponseTimeRepartition{number}_"
    buckets: list[tuple[float, int]] = []
    over = 0
    for name, value in stats.items():
        if not name.startswith(prefix):
            continue
        bound = name[len(prefix):]
        count = int(float(value or 0))
        if bound.startswith("<"):
            buckets.append((float(bound[1:]), count))
        elif bound.startswith(">="):
            over += count
    total = sum(count for _, count in buckets) + over
    if not total:
        return None
    return sum(count for bound, count in buckets if bound <= below_ms) / total


def mean_ms(stats: dict[str, str], number: int) -> float | None:
    from tests.e2e.sipp import parse_sipp_duration_ms
    return parse_sipp_duration_ms(stats.get(f"ResponseTime{number}(C)", ""))


def overload_uac(element: Element, rate: float, calls: int, timeout_s: float,
                 trace_dir: Path) -> Sipp:
    common: dict[str, Any] = dict(
        remote=f"{LOOPBACK}:{element.sip_port}", local_ip=LOOPBACK, calls=calls, rate=rate,
        max_concurrent=max(100, math.ceil(rate * (HOLD_MS / 1000 + 5.0))),
        variables={"hold_ms": HOLD_MS}, timeout_s=timeout_s, trace_dir=trace_dir,
        trace_msg=False, cpu=SIPP_CPU,
        extra_args=["-max_log_size", str(SIPP_LOG_LIMIT_BYTES), *SIPP_BUFFER_ARGS],
    )
    if isinstance(element, LineboxElement):
        return Sipp(scenario=SCENARIO, service=LINEBOX_EXTENSION, local_port=element.uac_port,
                    keys={"caller": LINEBOX_CALLER}, auth_user=LINEBOX_CALLER,
                    auth_password=LINEBOX_CALLER_PASSWORD,
                    auth_uri=f"{LINEBOX_EXTENSION}@{LOOPBACK}:{element.sip_port}", **common)
    return Sipp(scenario="bench_uac", service=element.service, **common)


def box_overload_status(element: Element) -> dict[str, Any] | None:
    if not isinstance(element, LineboxElement):
        return None
    probe = subprocess.run(
        [sys.executable, "-m", "firmware", "status", "--db", str(element.db_path), "--json"],
        cwd=BENCH_DIR.parent, capture_output=True, text=True, timeout=30, check=False)
    try:
        status = json.loads(probe.stdout)
    except ValueError:
        return None
    found = status.get("overload") if isinstance(status, dict) else None
    return found if isinstance(found, dict) else None


def run_overload(element: Element, capacity: int, factor: float, duration_s: float,
                 trace_dir: Path) -> OverloadStep:
    rate = capacity * factor
    planned = max(1, round(rate * duration_s))
    timeout_s = duration_s + HOLD_MS / 1000 + 40.0
    wait_port_free(element.uas_port)
    uas_sipp = bench_uas(element, None, timeout_s + 10.0, trace_dir)
    uas_sipp.extra_args = [*uas_sipp.extra_args, *SIPP_BUFFER_ARGS]
    uas = uas_sipp.start()
    uac_process: SippProcess | None = None
    try:
        if not wait_until_bound(element.uas_port, LOOPBACK):
            raise RuntimeError(f"bench uas did not bind {element.uas_port}")
        with ProcessSampler(element.pid) as sampler:
            uac_sipp = overload_uac(element, rate, planned, timeout_s, trace_dir)
            uac_process = uac_sipp.start()
            drops: dict[str, int | None] = {}
            deadline = time.monotonic() + timeout_s + 10
            while uac_process.running() and time.monotonic() < deadline:
                # Read while the sockets exist: their drop counts go with them.
                drops = {"element": udp_drops(element.sip_port),
                         "uac": udp_drops(uac_sipp.local_port or 0),
                         "uas": udp_drops(element.uas_port)}
                time.sleep(0.5)
            uac = uac_process.wait()
        status = box_overload_status(element)
        uas_result = uas.stop(grace_s=5.0) if uas.running() else uas.wait(5.0)
    finally:
        if uac_process is not None:
            uac_process.kill()
        uas.kill()
    step = summarise(element.name, capacity, rate, duration_s, uac, uas_result, sampler, status)
    step.drops = drops
    return step


def summarise(name: str, capacity: int, rate: float, duration_s: float, uac: SippResult,
              uas: SippResult, sampler: ProcessSampler,
              status: dict[str, Any] | None) -> OverloadStep:
    counters = uac.counters
    # sippy's uac (bench_uac.xml) has no counters: a successful call is a completed one.
    completed = counters.get("completed", uac.successful_calls if name == "sippy" else 0)
    shed_first, shed_second = counters.get("shed_first", 0), counters.get("shed_second", 0)
    sent = uac.messages_sent + uas.messages_sent
    retrans = uac.retransmissions + uas.retransmissions
    goodput = completed / duration_s
    share_503 = repartition_share(dict(uac.stats), 2, SHED_ANSWER_TARGET_MS)
    step = OverloadStep(
        element=name, capacity_cps=capacity, offered_cps=rate, duration_s=duration_s,
        attempted=uac.created_calls, completed=completed, shed_first=shed_first,
        shed_second=shed_second,
        failed_other=max(0, uac.created_calls - completed - shed_first - shed_second),
        goodput_cps=goodput, goodput_share=goodput / capacity,
        uac_retransmissions=uac.retransmissions, uas_retransmissions=uas.retransmissions,
        retrans_ratio=retrans / sent if sent else 0.0,
        mean_setup_ms=uac.response_time_ms, mean_503_ms=mean_ms(dict(uac.stats), 2),
        share_503_within_10ms=share_503,
        element_cpu_percent=sampler.cpu_percent, peak_rss_kb=sampler.peak_rss_kb,
        box_overload=status, drops={}, verdicts={},
    )
    step.verdicts = {
        "goodput": step.goodput_share >= GOODPUT_TARGET,
        "no retransmission storm": step.retrans_ratio <= MAX_RETRANS_RATIO,
        # Nothing shed: nothing to be late with.
        "503 within 10 ms": (share_503 is None and shed_first == 0
                             or share_503 is not None and share_503 >= SHED_WITHIN_TARGET_SHARE),
    }
    return step


def print_overload(step: OverloadStep) -> None:
    def mark(key: str) -> str:
        return "ok" if step.verdicts.get(key) else "MISSED"
    print(f"\n[{step.element}] offered {step.offered_cps:.0f} calls/s for {step.duration_s:g} s "
          f"({step.offered_cps / step.capacity_cps:.1f} x the capacity {step.capacity_cps})")
    print(f"  calls attempted {step.attempted}, completed {step.completed}, 503 to the first "
          f"INVITE {step.shed_first}, to the second {step.shed_second}, other failures "
          f"{step.failed_other}")
    print(f"  goodput {step.goodput_cps:.0f} calls/s = {100 * step.goodput_share:.0f} % of "
          f"capacity   target >= {100 * GOODPUT_TARGET:.0f} %   {mark('goodput')}")
    print(f"  retransmissions uac {step.uac_retransmissions}, uas {step.uas_retransmissions} "
          f"= {100 * step.retrans_ratio:.2f} % of messages sent   target <= "
          f"{100 * MAX_RETRANS_RATIO:.0f} %   {mark('no retransmission storm')}")
    if step.element != "sippy":
        share = (f"{100 * step.share_503_within_10ms:.1f} %"
                 if step.share_503_within_10ms is not None else "none sent")
        mean = f"{step.mean_503_ms:.1f}" if step.mean_503_ms is not None else "-"
        print(f"  503 answered within 10 ms: {share} (mean {mean} ms)   target >= "
              f"{100 * SHED_WITHIN_TARGET_SHARE:.0f} %   {mark('503 within 10 ms')}")
    print(f"  datagrams the kernel dropped (a full receive buffer): {step.drops}")
    setup = f"{step.mean_setup_ms:.1f}" if step.mean_setup_ms is not None else "-"
    print(f"  mean setup (INVITE->200) {setup} ms; element CPU {step.element_cpu_percent:.0f} %, "
          f"peak RSS {step.peak_rss_kb / 1024:.1f} MB")
    if step.box_overload is not None:
        print(f"  the box says: {step.box_overload}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=int, help="calls/s (default: measured first)")
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_SWEEP_RATES)),
                        type=lambda text: sorted({int(r) for r in text.split(",") if r}),
                        help="the capacity sweep's rates (calls/s)")
    parser.add_argument("--factor", type=float, default=DEFAULT_FACTOR)
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S)
    parser.add_argument("--no-sippy", action="store_true", help="skip sippy's reference run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = RESULTS_DIR / f"overload-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load = os.getloadavg()
    print(f"load average before the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"on {os.cpu_count()} CPUs")
    capacity = args.capacity
    if capacity is None:
        print(f"capacity sweep, {SWEEP_DURATION_S:g} s per rate: {args.rates}")
        print(TABLE_HEADER)
        capacity = measure_capacity(args.rates, run_dir)
        if capacity is None:
            print("linebox passed no rate of the sweep: no capacity to double", file=sys.stderr)
            return 1
        print(f"capacity {capacity} calls/s")
    makers: list[tuple[str, type[Element]]] = [("linebox", LineboxElement)]
    if not args.no_sippy:
        makers.append(("sippy", SippyElement))
    steps: list[OverloadStep] = []
    for name, make in makers:
        element = make(run_dir / name, free_port(LOOPBACK))
        try:
            element.start()
            step = run_overload(element, capacity, args.factor, args.duration, run_dir / name)
        except RuntimeError as exc:
            print(f"[{name}] {exc}", file=sys.stderr)
            continue
        finally:
            element.stop()
        print_overload(step)
        steps.append(step)
    document = {"benchmark": "overload", "started": stamp, "load_average": load,
                "capacity_cps": capacity, "capacity_measured": args.capacity is None,
                "elapsed_s": round(time.monotonic() - started, 1),
                "targets": {"goodput_share": GOODPUT_TARGET,
                            "max_retrans_ratio": MAX_RETRANS_RATIO,
                            "shed_answer_ms": SHED_ANSWER_TARGET_MS,
                            "shed_within_share": SHED_WITHIN_TARGET_SHARE},
                "steps": [asdict(step) for step in steps]}
    path = RESULTS_DIR / f"overload-{stamp}.json"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    by_name = {step.element: step for step in steps}
    if "linebox" in by_name and "sippy" in by_name and by_name["sippy"].goodput_cps:
        print(f"\ngoodput at the same offered load, linebox/sippy: "
              f"{by_name['linebox'].goodput_cps / by_name['sippy'].goodput_cps:.2f}")
    print(f"results: {path}")
    linebox = by_name.get("linebox")
    return 0 if linebox is not None and all(linebox.verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
