"""Call-setup capacity of a SIP element E in the path SIPp uac -> E -> SIPp uas.

UDP, no media, calls held `--hold-ms` (1 s), E pinned to CPU 0 and both SIPps to CPU 1.
For each rate (calls/s, stepped upward for `--duration` seconds each) it records calls
attempted/succeeded/failed, SIPp retransmissions, the mean INVITE->200 time seen by the uac
(SIPp response time 1) and E's resident memory and CPU use. A rate passes with at most 0.1 %
failed calls, retransmissions at most 1 % of the messages sent, and a mean INVITE->200 under
50 ms; the element's capacity is the highest rate passed before the first failure. It also
measures E's RSS idle and with 100 calls up. Elements: sippy's b2bua_simple (the reference)
and Linebox. Results go to bench/results/ as JSON; see bench/README.md.

    python bench/call_setup.py [--rates 100,200,...] [--duration 20] [--only sippy|linebox]

Only loopback addresses are used; every SIPp is bounded by -m and -timeout, and every
process this script starts is stopped in a `finally`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.sipp import (  # noqa: E402  (needs the repository root on sys.path)
    Sipp,
    SippProcess,
    SippResult,
    free_port,
    sipp_executable,
    udp_port_bound,
    wait_until_bound,
)

RESULTS_DIR = REPO_ROOT / "bench" / "results"
ELEMENT_CPU = 0
SIPP_CPU = 1
DEFAULT_RATES = (25, 50, 75, 100, 125, 150, 200, 250, 300, 400, 500, 600, 800, 1000)
DEFAULT_DURATION_S = 20
DEFAULT_HOLD_MS = 1000
DEFAULT_MAX_TOTAL_S = 900
MAX_FAILED_RATIO = 0.001
MAX_RETRANS_RATIO = 0.01
MAX_MEAN_SETUP_MS = 50.0
SETTLE_S = 2.0
ELEMENT_START_TIMEOUT_S = 15.0
ELEMENT_STOP_TIMEOUT_S = 5.0
RSS_SAMPLE_PERIOD_S = 0.25
MEMORY_CALLS = 100
MEMORY_RATE = 50
MEMORY_HOLD_MS = 120_000
MEMORY_WAIT_S = 20.0
SIPP_LOG_LIMIT_BYTES = 20_000_000

SIPPY_SERVICE = "1000"
LINEBOX_EXTENSION = "101"
LINEBOX_EXTENSION_PASSWORD = "bench-101-pw"
LINEBOX_CALLER = "102"
LINEBOX_CALLER_PASSWORD = "bench-102-pw"
LOOPBACK = "127.0.0.1"


# --- the elements under test -----------------------------------------------------------------


class Element:
    """A SIP element on CPU 0 between the bench uac and uas. Subclasses give the command."""

    name = "element"
    uac_ip = LOOPBACK
    service = SIPPY_SERVICE

    def __init__(self, workdir: Path, uas_port: int) -> None:
        self.workdir = workdir
        self.uas_port = uas_port
        self.sip_port = free_port(LOOPBACK, tcp=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> None:
        """Start the element pinned to CPU 0 and wait until its SIP port is bound."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if udp_port_bound(self.sip_port):
            raise RuntimeError(f"{self.name}: port {self.sip_port} is already taken")
        argv = ["taskset", "-c", str(ELEMENT_CPU), *self.command()]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ELEMENT_START_TIMEOUT_S
        while not udp_port_bound(self.sip_port, LOOPBACK):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} did not start listening on {LOOPBACK}:{self.sip_port}; "
                    f"see {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.05)
        time.sleep(SETTLE_S)
        self.after_start()

    def after_start(self) -> None:
        """Hook: what must happen before calls can flow (Linebox: the agent registers)."""

    def uac_options(self) -> dict[str, Any]:
        """Scenario and credentials of the calling side (sippy: a plain INVITE)."""
        return {"scenario": "bench_uac"}

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM, then SIGKILL: only the process this script started."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=ELEMENT_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=ELEMENT_STOP_TIMEOUT_S)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class SippyElement(Element):
    """sippy's b2bua_simple (PyPI sippy==2.5.0) forwarding every INVITE to the uas.

    Quirks handled here: it binds with SO_REUSEPORT, so a stale instance could silently share
    the port (we use a port nothing is bound to and stop our instance in `finally`); its
    default next hop is a LAN address, so -n is always given; it compares ;transport=UDP
    case-sensitively, so bench_uas.xml puts no ;transport= in its Contact.
    """

    name = "sippy"

    def command(self) -> list[str]:
        return [
            b2bua_simple_executable(),
            "-f",
            "-l",
            LOOPBACK,
            "-p",
            str(self.sip_port),
            "-n",
            f"{LOOPBACK}:{self.uas_port}",
        ]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "SIPLOG_BEND": "none"}


class LineboxElement(Element):
    """Linebox with a generated config: extension 102 calls extension 101, which is registered
    at the bench uas's port. Every INVITE is challenged (407) and authenticated with digest, as
    a phone's call in the office is — more work per call than sippy's plain relay does.

    Why not the provider path (trunk → DID)? A number and a trunk carry at most 100
    simultaneous calls (the product's 3..100 range), so with 1 s calls that path saturates at
    ~90 calls/s by configuration, not by CPU; extension-to-extension calls have no such cap.
    """

    name = "linebox"
    uac_ip = LOOPBACK
    service = LINEBOX_EXTENSION

    def __init__(self, workdir: Path, uas_port: int) -> None:
        super().__init__(workdir, uas_port)
        self.uac_port = free_port(LOOPBACK)
        self.config_path = workdir / "linebox-bench.yaml"
        self.db_path = workdir / "linebox-bench.db"

    def config_text(self) -> str:
        return "\n".join(
            [
                "# Generated by bench/call_setup.py",
                "extensions:",
                f'  - {{number: "{LINEBOX_EXTENSION}", name: "Bench agent", '
                f'password: "{LINEBOX_EXTENSION_PASSWORD}"}}',
                f'  - {{number: "{LINEBOX_CALLER}", name: "Bench caller", '
                f'password: "{LINEBOX_CALLER_PASSWORD}"}}',
                # SIPp answers only the first challenge and only MD5 (tests/e2e/sipp.py).
                "sip: {digest_algorithms: [MD5, SHA-256]}",
                "",
            ]
        )

    def uac_options(self) -> dict[str, Any]:
        return {
            "scenario": "caller_auth",
            "keys": {"caller": LINEBOX_CALLER},
            "auth_user": LINEBOX_CALLER,
            "auth_password": LINEBOX_CALLER_PASSWORD,
            "auth_uri": f"{LINEBOX_EXTENSION}@{LOOPBACK}:{self.sip_port}",
        }

    def command(self) -> list[str]:
        for stale in (self.db_path, self.db_path.with_suffix(".db-wal")):
            stale.unlink(missing_ok=True)
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        argv = [sys.executable, "-m", "firmware"]
        if linebox_supports_log_level():
            argv += ["--log-level", "WARNING"]
        return [
            *argv,
            "run",
            "--db",
            str(self.db_path),
            "--sip",
            f"{LOOPBACK}:{self.sip_port}",
            # No --http: the web UI is a process of its own, not part of the SIP element.
            "--config",
            str(self.config_path),
        ]

    def after_start(self) -> None:
        """Register extension 101 with Contact pointing at the bench uas port."""
        result = Sipp(
            scenario="register",
            remote=f"{LOOPBACK}:{self.sip_port}",
            local_ip=LOOPBACK,
            service=LINEBOX_EXTENSION,
            auth_user=LINEBOX_EXTENSION,
            auth_password=LINEBOX_EXTENSION_PASSWORD,
            keys={"contact_port": self.uas_port, "expires": 3600},
            calls=1,
            timeout_s=15,
            trace_dir=self.workdir / "register",
            cpu=SIPP_CPU,
        ).run()
        if not result.ok:
            raise RuntimeError(
                f"linebox: extension {LINEBOX_EXTENSION} did not register\n" + result.describe()
            )


def b2bua_simple_executable() -> str:
    """b2bua_simple next to this Python (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("b2bua_simple")
    if beside.exists():
        return str(beside)
    found = shutil.which("b2bua_simple")
    if found is None:
        raise RuntimeError(
            "sippy's b2bua_simple is not installed: .venv/bin/pip install 'sippy==2.5.0' "
            "(or pip install -e '.[bench]')"
        )
    return found


def linebox_supports_log_level() -> bool:
    probe = subprocess.run(
        [sys.executable, "-m", "firmware", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "--log-level" in probe.stdout


# --- measuring the element's process ---------------------------------------------------------


def read_status_kb(pid: int, field_name: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process from /proc/PID/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


class ProcessSampler:
    """Samples a process's RSS in a thread; gives the peak and the CPU share over the run."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cpu_start = cpu_seconds(pid) or 0.0
        self._wall_start = time.monotonic()
        self.cpu_percent = 0.0

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_PERIOD_S):
            rss = read_status_kb(self.pid, "VmRSS")
            if rss is not None:
                self.peak_rss_kb = max(self.peak_rss_kb, rss)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        wall = time.monotonic() - self._wall_start
        cpu_end = cpu_seconds(self.pid)
        if cpu_end is not None and wall > 0:
            self.cpu_percent = 100.0 * (cpu_end - self._cpu_start) / wall


# --- one rate step -----------------------------------------------------------------------------


@dataclass
class StepResult:
    rate: int
    duration_s: float
    planned: int
    attempted: int
    succeeded: int
    failed: int
    retransmissions: int
    messages_sent: int
    retrans_ratio: float
    mean_setup_ms: float | None
    peak_rss_kb: int
    element_cpu_percent: float
    uac_elapsed_s: float
    uac_exit: int
    uas_exit: int
    passed: bool
    reasons: list[str] = field(default_factory=list)


def judge(result: StepResult, uac_killed: bool) -> None:
    """Apply the pass criteria to a step, filling `passed` and `reasons`."""
    reasons: list[str] = []
    if uac_killed:
        reasons.append("uac did not finish in time")
    if result.attempted < result.planned:
        reasons.append(f"only {result.attempted}/{result.planned} calls attempted")
    if result.failed > MAX_FAILED_RATIO * max(1, result.attempted):
        reasons.append(f"{result.failed} failed calls > {MAX_FAILED_RATIO:.1%}")
    if result.retrans_ratio > MAX_RETRANS_RATIO:
        reasons.append(f"retransmissions {result.retrans_ratio:.2%} > {MAX_RETRANS_RATIO:.0%}")
    if result.mean_setup_ms is None:
        reasons.append("no INVITE->200 time measured")
    elif result.mean_setup_ms >= MAX_MEAN_SETUP_MS:
        reasons.append(f"mean INVITE->200 {result.mean_setup_ms:.1f} ms >= {MAX_MEAN_SETUP_MS:g}")
    result.reasons = reasons
    result.passed = not reasons


TRACE_MESSAGES = False  # --trace-msg: SIPp message logs for every step (large at high rates)


def bench_uas(element: Element, calls: int | None, timeout_s: float, trace_dir: Path) -> Sipp:
    return Sipp(
        scenario="bench_uas",
        local_ip=LOOPBACK,
        local_port=element.uas_port,
        calls=calls,
        auto_answer=True,
        timeout_s=timeout_s,
        trace_dir=trace_dir,
        trace_msg=TRACE_MESSAGES,
        cpu=SIPP_CPU,
        extra_args=["-max_log_size", str(SIPP_LOG_LIMIT_BYTES)],
    )


def bench_uac(
    element: Element,
    *,
    rate: float,
    calls: int,
    max_concurrent: int,
    hold_ms: int,
    timeout_s: float,
    trace_dir: Path,
) -> Sipp:
    local_port = element.uac_port if isinstance(element, LineboxElement) else None
    return Sipp(
        **element.uac_options(),
        remote=f"{LOOPBACK}:{element.sip_port}",
        local_ip=element.uac_ip,
        local_port=local_port,
        service=element.service,
        calls=calls,
        rate=rate,
        max_concurrent=max_concurrent,
        variables={"hold_ms": hold_ms},
        timeout_s=timeout_s,
        trace_dir=trace_dir,
        trace_msg=TRACE_MESSAGES,
        cpu=SIPP_CPU,
        extra_args=["-max_log_size", str(SIPP_LOG_LIMIT_BYTES)],
    )


def wait_port_free(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while udp_port_bound(port, LOOPBACK):
        if time.monotonic() > deadline:
            raise RuntimeError(f"UDP port {port} is still bound")
        time.sleep(0.05)


def run_step(
    element: Element, rate: int, duration_s: float, hold_ms: int, trace_dir: Path
) -> StepResult:
    """One rate for `duration_s`: the uas on the element's next hop, the uac through it."""
    planned = max(1, round(rate * duration_s))
    hold_s = hold_ms / 1000.0
    timeout_s = duration_s + hold_s + 20.0
    wait_port_free(element.uas_port)
    uas = bench_uas(element, planned, timeout_s + 10.0, trace_dir).start()
    uac_process: SippProcess | None = None
    try:
        if not wait_until_bound(element.uas_port, LOOPBACK):
            raise RuntimeError(
                f"bench uas did not bind {element.uas_port}\n{uas.wait(5).describe()}"
            )
        with ProcessSampler(element.pid) as sampler:
            uac_process = bench_uac(
                element,
                rate=rate,
                calls=planned,
                max_concurrent=max(100, math.ceil(rate * (hold_s + 5.0))),
                hold_ms=hold_ms,
                timeout_s=timeout_s,
                trace_dir=trace_dir,
            ).start()
            uac = uac_process.wait()
        uas_result = uas.wait(5.0) if not uas.running() else uas.stop(grace_s=5.0)
    finally:
        if uac_process is not None:
            uac_process.kill()
        uas.kill()
    return summarise_step(rate, duration_s, planned, uac, uas_result, sampler)


def summarise_step(
    rate: int,
    duration_s: float,
    planned: int,
    uac: SippResult,
    uas: SippResult,
    sampler: ProcessSampler,
) -> StepResult:
    sent = uac.messages_sent + uas.messages_sent
    retrans = uac.retransmissions + uas.retransmissions
    step = StepResult(
        rate=rate,
        duration_s=duration_s,
        planned=planned,
        attempted=uac.created_calls,
        succeeded=uac.successful_calls,
        failed=uac.failed_calls
        + max(0, uac.created_calls - uac.successful_calls - uac.failed_calls),
        retransmissions=retrans,
        messages_sent=sent,
        retrans_ratio=retrans / sent if sent else 0.0,
        mean_setup_ms=uac.response_time_ms,
        peak_rss_kb=sampler.peak_rss_kb,
        element_cpu_percent=sampler.cpu_percent,
        uac_elapsed_s=uac.elapsed_s,
        uac_exit=uac.returncode,
        uas_exit=uas.returncode,
        passed=False,
    )
    judge(step, uac.killed)
    return step


# --- memory with calls up ----------------------------------------------------------------------


def last_stat_row(path: Path | None) -> dict[str, str]:
    if path is None or not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8", errors="replace") as stream:
        rows = [row for row in csv.reader(stream, delimiter=";") if row]
    return dict(zip(rows[0], rows[-1], strict=False)) if len(rows) > 1 else {}


def measure_memory(element: Element, trace_dir: Path) -> dict[str, Any]:
    """RSS of a freshly started element idle, then with MEMORY_CALLS long calls up."""
    idle_kb = read_status_kb(element.pid, "VmRSS")
    timeout_s = MEMORY_HOLD_MS / 1000.0 + 30.0
    uas_sipp = bench_uas(element, None, timeout_s, trace_dir)
    uas = uas_sipp.start()
    uac: SippProcess | None = None
    up = 0
    try:
        if not wait_until_bound(element.uas_port, LOOPBACK):
            raise RuntimeError("bench uas did not bind for the memory measurement")
        uac = bench_uac(
            element,
            rate=MEMORY_RATE,
            calls=MEMORY_CALLS,
            max_concurrent=MEMORY_CALLS,
            hold_ms=MEMORY_HOLD_MS,
            timeout_s=timeout_s,
            trace_dir=trace_dir,
        ).start()
        stat_path = trace_dir / f"{uas_sipp.name}_stat.csv"
        deadline = time.monotonic() + MEMORY_WAIT_S
        while time.monotonic() < deadline and uac.running():
            up = int(last_stat_row(stat_path).get("CurrentCall", "0") or 0)
            if up >= MEMORY_CALLS:
                break
            time.sleep(0.5)
        time.sleep(1.0)
        loaded_kb = read_status_kb(element.pid, "VmRSS")
    finally:
        if uac is not None:
            uac.kill()
        uas.kill()
    return {"idle_rss_kb": idle_kb, "calls_up": up, "loaded_rss_kb": loaded_kb}


# --- driving one element -----------------------------------------------------------------------


def bench_element(
    make: Any, name: str, args: argparse.Namespace, run_dir: Path, deadline: float
) -> dict[str, Any]:
    """Memory phase on a fresh element, then the rate sweep on another fresh one."""
    report: dict[str, Any] = {"element": name, "steps": [], "capacity_cps": None}
    uas_port = free_port(LOOPBACK)
    element: Element = make(run_dir / name / "memory", uas_port)
    try:
        element.start()
        report["memory"] = measure_memory(element, run_dir / name / "memory")
    except RuntimeError as exc:
        report["memory"] = {"error": str(exc)}
        print(f"[{name}] memory measurement failed: {exc}", file=sys.stderr)
    finally:
        element.stop()

    element = make(run_dir / name / "sweep", uas_port)
    try:
        element.start()
        capacity: int | None = None
        for rate in args.rates:
            if time.monotonic() + args.duration + args.hold_ms / 1000 + 30 > deadline:
                report["stopped"] = f"time budget reached before {rate} cps"
                print(f"[{name}] time budget reached, not running {rate} cps")
                break
            if not element.alive():
                report["stopped"] = f"{name} exited before {rate} cps"
                break
            step = run_step(element, rate, args.duration, args.hold_ms, run_dir / name / f"r{rate}")
            report["steps"].append(asdict(step))
            print_step(name, step)
            if not step.passed:
                report["stopped"] = f"{rate} cps failed: " + "; ".join(step.reasons)
                break
            capacity = rate
            time.sleep(SETTLE_S)
        report["capacity_cps"] = capacity
    except RuntimeError as exc:
        report["error"] = str(exc)
        print(f"[{name}] {exc}", file=sys.stderr)
    finally:
        element.stop()
    return report


def make_sippy(workdir: Path, uas_port: int) -> Element:
    return SippyElement(workdir, uas_port)


def make_linebox(workdir: Path, uas_port: int) -> Element:
    return LineboxElement(workdir, uas_port)


# --- output ------------------------------------------------------------------------------------

TABLE_HEADER = (
    f"{'element':<8} {'rate':>5} {'calls':>6} {'ok':>6} {'failed':>6} {'retrans':>7} "
    f"{'retr%':>6} {'setup ms':>8} {'RSS MB':>7} {'CPU%':>5}  verdict"
)


def print_step(name: str, step: StepResult) -> None:
    setup = f"{step.mean_setup_ms:.1f}" if step.mean_setup_ms is not None else "-"
    verdict = "pass" if step.passed else "FAIL: " + "; ".join(step.reasons)
    print(
        f"{name:<8} {step.rate:>5} {step.attempted:>6} {step.succeeded:>6} {step.failed:>6} "
        f"{step.retransmissions:>7} {100 * step.retrans_ratio:>6.2f} {setup:>8} "
        f"{step.peak_rss_kb / 1024:>7.1f} {step.element_cpu_percent:>5.0f}  {verdict}",
        flush=True,
    )


def print_summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    print("\n== summary ==")
    summary: dict[str, Any] = {}
    for report in reports:
        name = report["element"]
        memory = report.get("memory", {})
        failed = {step["rate"]: step["failed"] for step in report["steps"]}
        capacity = report["capacity_cps"]
        print(
            f"{name}: capacity {capacity if capacity is not None else 'none'} cps; "
            f"failed calls by rate {failed}"
        )
        if "idle_rss_kb" in memory:
            print(
                f"{name}: RSS idle {kb_to_mb(memory['idle_rss_kb'])} MB, "
                f"with {memory['calls_up']} calls up {kb_to_mb(memory['loaded_rss_kb'])} MB"
            )
        if "stopped" in report:
            print(f"{name}: stopped: {report['stopped']}")
        summary[name] = {"capacity_cps": capacity, "failed_by_rate": failed, "memory": memory}
    by_name = {report["element"]: report for report in reports}
    if "linebox" in by_name and "sippy" in by_name:
        ours, theirs = by_name["linebox"]["capacity_cps"], by_name["sippy"]["capacity_cps"]
        ratio = ours / theirs if ours and theirs else None
        summary["capacity_ratio_linebox_over_sippy"] = ratio
        print("capacity ratio linebox/sippy: " + (f"{ratio:.2f}" if ratio else "n/a"))
    return summary


def kb_to_mb(kb: int | None) -> str:
    return f"{kb / 1024:.1f}" if kb else "?"


def environment_facts() -> dict[str, Any]:
    sipp_version = subprocess.run(
        [sipp_executable(), "-v"], capture_output=True, text=True, check=False, timeout=10
    ).stdout
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "sipp": next((line.strip() for line in sipp_version.splitlines() if "SIPp" in line), ""),
    }
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        facts["sippy"] = importlib.metadata.version("sippy")
    return facts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates",
        type=lambda text: sorted({int(r) for r in text.split(",") if r.strip()}),
        default=list(DEFAULT_RATES),
        help="comma-separated call rates (calls/s), run in increasing order",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION_S,
        help="seconds of traffic per rate (default %(default)s)",
    )
    parser.add_argument(
        "--hold-ms",
        type=int,
        default=DEFAULT_HOLD_MS,
        help="hold time of each call (default %(default)s)",
    )
    parser.add_argument(
        "--trace-msg", action="store_true", help="keep SIPp message logs (debugging)"
    )
    parser.add_argument("--only", choices=("sippy", "linebox"), help="bench one element")
    parser.add_argument(
        "--max-total-s",
        type=float,
        default=DEFAULT_MAX_TOTAL_S,
        help="stop starting new rates after this many seconds (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if not args.rates or min(args.rates) <= 0:
        parser.error("--rates needs positive integers")
    return args


def main(argv: list[str] | None = None) -> int:
    global TRACE_MESSAGES
    args = parse_args(argv)
    TRACE_MESSAGES = args.trace_msg
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 CPUs; element and SIPp will share one", file=sys.stderr)
    started = time.monotonic()
    deadline = started + args.max_total_s
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = RESULTS_DIR / f"call_setup-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    elements: list[tuple[str, Any]] = []
    if args.only in (None, "sippy"):
        elements.append(("sippy", make_sippy))
    if args.only in (None, "linebox"):
        elements.append(("linebox", make_linebox))

    print(
        f"rates {args.rates} cps, {args.duration:g} s each, calls held {args.hold_ms} ms; "
        f"element on CPU {ELEMENT_CPU}, SIPp on CPU {SIPP_CPU}; traces in {run_dir}"
    )
    print(TABLE_HEADER)
    reports = [bench_element(make, name, args, run_dir, deadline) for name, make in elements]
    summary = print_summary(reports)
    document = {
        "benchmark": "call_setup",
        "started": stamp,
        "elapsed_s": round(time.monotonic() - started, 1),
        "parameters": {
            "rates": args.rates,
            "duration_s": args.duration,
            "hold_ms": args.hold_ms,
            "linebox_path": "extension 102 -> extension 101, digest auth on every INVITE",
            "criteria": {
                "max_failed_ratio": MAX_FAILED_RATIO,
                "max_retrans_ratio": MAX_RETRANS_RATIO,
                "max_mean_setup_ms": MAX_MEAN_SETUP_MS,
            },
            "element_cpu": ELEMENT_CPU,
            "sipp_cpu": SIPP_CPU,
        },
        "environment": environment_facts(),
        "elements": reports,
        "summary": summary,
    }
    json_path = RESULTS_DIR / f"call_setup-{stamp}.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"results: {json_path}")
    return 0 if all(report.get("capacity_cps") for report in reports) else 1


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
