"""Run SIPp scenarios from Python for the end-to-end tests and the benchmarks.

`Sipp` describes one SIPp process (a scenario from tests/e2e/scenarios, addresses, `-key` and
`-set` values, call counts and rates); `Sipp.start()` runs it in the foreground of a
subprocess with stdin disabled and a global `-timeout`, so it always ends, and
`SippProcess.wait()` returns a `SippResult` read from SIPp's own records: the exit code, the
`-trace_stat` CSV (calls, failures, retransmissions, response times, generic counters) and the
`-trace_counts` CSV (messages per scenario line). Every file SIPp writes lands in one trace
directory. Only loopback addresses are meant to be used.
"""

from __future__ import annotations

import contextlib
import csv
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
SIPP_EXE = "sipp"
SIPP_MISSING_HINT = (
    "SIPp is not installed (no `sipp` on PATH): install the Debian package sip-tester, "
    "e.g. `make deb-test` or `apt-get install sip-tester`"
)

# SIPp's exit codes (`sipp -h`, "Exit codes"); -1 and -2 arrive as 255 and 254.
EXIT_ALL_CALLS_OK = 0
EXIT_SOME_CALLS_FAILED = 1
EXIT_INTERNAL_COMMAND = 97
EXIT_NO_CALLS_PROCESSED = 99
EXIT_BIND_FAILED = 254
EXIT_FATAL_ERROR = 255

# Time we give SIPp beyond its own -timeout before we kill it.
KILL_GRACE_S = 5.0
# How long a soft stop (SIGUSR1: finish ongoing calls, start no new ones) may take.
SOFT_STOP_GRACE_S = 10.0
# Where SIPp's remote-control socket listens (-ci): the address its port is found free on.
CONTROL_HOST = "127.0.0.1"
# How long a UAS SIPp may take to bind its port: a bound, not a pace (it is polled). SIPp binds
# within milliseconds on a quiet machine; on two cores shared with a full test run it may wait
# seconds for a CPU.
BIND_TIMEOUT_S = 15.0


class SippMissingError(RuntimeError):
    """The `sipp` binary is not on PATH."""


def sipp_executable(name: str = SIPP_EXE) -> str:
    """Full path of the SIPp binary, or SippMissingError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise SippMissingError(SIPP_MISSING_HINT)
    return path


def scenario_path(scenario: str | Path) -> Path:
    """A scenario given by bare name ("register" or "register.xml") or by path."""
    path = Path(scenario)
    if path.suffix != ".xml":
        path = path.with_suffix(".xml")
    if not path.is_absolute() and not path.exists():
        path = SCENARIOS_DIR / path.name
    if not path.is_file():
        raise FileNotFoundError(f"no SIPp scenario {scenario!r} (looked in {SCENARIOS_DIR})")
    return path


def free_ports(count: int, host: str = "127.0.0.1", *, tcp: bool = False) -> list[int]:
    """`count` distinct ports free for UDP on `host` (and for TCP too when `tcp`).

    All sockets stay bound until every port is chosen, so the ports differ; another process
    may still take one before SIPp binds it, which on loopback in a test run is rare.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(udp)
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            if tcp:
                stream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(stream)
                try:
                    stream.bind((host, port))
                except OSError:
                    continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def free_port(host: str = "127.0.0.1", *, tcp: bool = False) -> int:
    """One port free for UDP (and TCP when `tcp`) on `host`."""
    return free_ports(1, host, tcp=tcp)[0]


def parse_sipp_duration_ms(text: str) -> float | None:
    """SIPp's "HH:MM:SS:uuuuuu" (as in ResponseTime1(C)) in milliseconds; None if empty."""
    parts = text.strip().split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    hours, minutes, seconds, micros = (int(p) for p in parts)
    return ((hours * 60 + minutes) * 60 + seconds) * 1000.0 + micros / 1000.0


def read_last_csv_row(path: Path) -> dict[str, str]:
    """The header and last data row of a SIPp CSV (';'-separated) as a dict."""
    with path.open(newline="", encoding="utf-8", errors="replace") as stream:
        rows = [row for row in csv.reader(stream, delimiter=";") if row]
    if len(rows) < 2:
        return {}
    return {name: value for name, value in zip(rows[0], rows[-1], strict=False) if name}


def _as_int(value: str | None) -> int:
    try:
        return int(float(value)) if value else 0
    except ValueError:
        return 0


@dataclass(frozen=True, kw_only=True)
class SippResult:
    """What one SIPp run did, from its exit code and its -trace_stat / -trace_counts files."""

    command: tuple[str, ...]
    returncode: int
    killed: bool
    elapsed_s: float
    stats: Mapping[str, str]
    counts: Mapping[str, int]
    trace_dir: Path
    stdout_path: Path
    stderr_path: Path
    stat_path: Path | None
    message_log: Path | None
    error_log: Path | None

    @property
    def successful_calls(self) -> int:
        return _as_int(self.stats.get("SuccessfulCall(C)"))

    @property
    def failed_calls(self) -> int:
        return _as_int(self.stats.get("FailedCall(C)"))

    @property
    def created_calls(self) -> int:
        return _as_int(self.stats.get("TotalCallCreated"))

    @property
    def current_calls(self) -> int:
        return _as_int(self.stats.get("CurrentCall"))

    @property
    def retransmissions(self) -> int:
        return _as_int(self.stats.get("Retransmissions(C)"))

    @property
    def counters(self) -> dict[str, int]:
        """Scenario counters (`counter="busy"` on a send/recv) by name, cumulative.

        SIPp puts them, as NAME(P);NAME(C), between CallLengthStDev(C) and the repartitions.
        """
        names = list(self.stats)
        try:
            start = names.index("CallLengthStDev(C)") + 1
        except ValueError:
            return {}
        found: dict[str, int] = {}
        for name in names[start:]:
            if name.startswith(("ResponseTimeRepartition", "CallLengthRepartition")):
                break
            if name.endswith("(C)"):
                found[name[: -len("(C)")]] = _as_int(self.stats[name])
        return found

    @property
    def response_time_ms(self) -> float | None:
        """Mean of response time 1 (start_rtd ... rtd, e.g. INVITE->200), cumulative."""
        return parse_sipp_duration_ms(self.stats.get("ResponseTime1(C)", ""))

    @property
    def messages_sent(self) -> int:
        """First transmissions of requests and responses (retransmissions excluded)."""
        return sum(v for k, v in self.counts.items() if k.endswith("_Sent"))

    @property
    def messages_received(self) -> int:
        return sum(v for k, v in self.counts.items() if k.endswith("_Recv"))

    @property
    def ok(self) -> bool:
        """SIPp ended by itself, every call succeeded, and at least one call was made."""
        return (
            not self.killed
            and self.returncode == EXIT_ALL_CALLS_OK
            and self.failed_calls == 0
            and self.successful_calls > 0
        )

    @property
    def stdout(self) -> str:
        return _read_text(self.stdout_path)

    @property
    def stderr(self) -> str:
        return _read_text(self.stderr_path)

    @property
    def errors(self) -> str:
        """SIPp's -trace_err log (unexpected messages, aborted calls), empty if none."""
        return _read_text(self.error_log) if self.error_log else ""

    def describe(self, tail_chars: int = 2000) -> str:
        """A summary for assertion messages: counts, exit code, and the tail of the errors."""
        lines = [
            f"sipp exit={self.returncode} killed={self.killed} elapsed={self.elapsed_s:.1f}s "
            f"created={self.created_calls} ok={self.successful_calls} "
            f"failed={self.failed_calls} retrans={self.retransmissions} "
            f"counters={self.counters}",
            "command: " + " ".join(self.command),
            f"trace dir: {self.trace_dir}",
        ]
        for label, text in (("stderr", self.stderr), ("errors", self.errors)):
            if text.strip():
                lines.append(f"--- {label} (tail) ---\n{text[-tail_chars:]}")
        return "\n".join(lines)


def _read_text(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    return path.read_text(encoding="utf-8", errors="replace")


@dataclass(kw_only=True)
class Sipp:
    """One SIPp process: which scenario, where, and how much traffic.

    `remote` ("host:port") makes it a client; without it the scenario must start with a
    <recv> (a UAS). `keys` become `-key NAME VALUE` ([NAME] in the XML, always required by
    the scenario that uses them), `variables` become `-set NAME VALUE` (the scenarios' optional
    timings such as hold_ms, with defaults in the XML). `timeout_s` is SIPp's own global
    -timeout (with -timeout_error, so hitting it fails the run).
    """

    scenario: str | Path
    local_ip: str = "127.0.0.1"
    local_port: int | None = None
    remote: str | None = None
    service: str | None = None
    keys: Mapping[str, str | int] = field(default_factory=dict)
    variables: Mapping[str, str | int | float] = field(default_factory=dict)
    auth_user: str | None = None
    auth_password: str | None = None
    auth_uri: str | None = None
    calls: int | None = None
    rate: float | None = None
    rate_period_ms: int | None = None
    max_concurrent: int | None = None
    lost_percent: float | None = None
    transport: str = "u1"
    timeout_s: float = 30.0
    recv_timeout_ms: int | None = None
    auto_answer: bool = False
    trace_dir: Path | None = None
    trace_msg: bool = True
    trace_rtt: bool = False
    stats_period_s: int = 1
    cpu: int | None = None
    extra_args: Sequence[str] = ()
    name: str | None = None
    executable: str = SIPP_EXE

    def __post_init__(self) -> None:
        self.scenario_file = scenario_path(self.scenario)
        if self.local_port is None:
            self.local_port = free_port(self.local_ip, tcp=self.transport.startswith("t"))
        if self.name is None:
            self.name = f"{self.scenario_file.stem}-{self.local_port}"

    def command(self, trace_dir: Path) -> list[str]:
        """The argument vector (SIPp's, behind `taskset -c CPU` when `cpu` is set)."""
        assert self.name is not None
        args: list[str] = [sipp_executable(self.executable)]
        if self.remote:
            args.append(self.remote)
        args += ["-sf", str(self.scenario_file), "-t", self.transport]
        args += ["-i", self.local_ip, "-p", str(self.local_port)]
        # The control socket (the default 8888 is shared), never on the SIP port itself: that
        # one is chosen free but is not bound yet, so free_port() may offer it again. Bound to
        # CONTROL_HOST, where the port was found free: without -ci SIPp binds it on every
        # address, and a port free on 127.0.0.1 may be taken on 127.0.0.2 (a provider's SIPp,
        # an RTP listener, a flood's sockets) — SIPp then exits at once, "Unable to bind remote
        # control socket ... Address already in use".
        control_port = next(
            port for port in (free_port(CONTROL_HOST) for _ in range(20))
            if port != self.local_port
        )
        args += ["-ci", CONTROL_HOST, "-cp", str(control_port)]
        args += ["-nostdin", "-timeout", f"{max(1, round(self.timeout_s))}s", "-timeout_error"]
        if self.service is not None:
            args += ["-s", self.service]
        for key, value in self.keys.items():
            args += ["-key", key, str(value)]
        for var, value in self.variables.items():
            args += ["-set", var, str(value)]
        if self.auth_user is not None:
            args += ["-au", self.auth_user]
        if self.auth_password is not None:
            args += ["-ap", self.auth_password]
        if self.auth_uri is not None:
            args += ["-auth_uri", self.auth_uri]
        if self.calls is not None:
            args += ["-m", str(self.calls)]
        if self.rate is not None:
            args += ["-r", f"{self.rate:g}"]
        if self.rate_period_ms is not None:
            args += ["-rp", str(self.rate_period_ms)]
        if self.max_concurrent is not None:
            args += ["-l", str(self.max_concurrent)]
        if self.lost_percent is not None:
            args += ["-lost", f"{self.lost_percent:g}"]
        if self.recv_timeout_ms is not None:
            args += ["-recv_timeout", str(self.recv_timeout_ms)]
        if self.auto_answer:
            args.append("-aa")
        args += ["-trace_stat", "-stf", str(trace_dir / f"{self.name}_stat.csv")]
        args += ["-fd", str(self.stats_period_s), "-trace_counts"]
        args += ["-trace_err", "-error_file", str(trace_dir / f"{self.name}_errors.log")]
        if self.trace_msg:
            args += ["-trace_msg", "-message_file", str(trace_dir / f"{self.name}_messages.log")]
        if self.trace_rtt:
            args += ["-trace_rtt", "-rtt_freq", "1"]
        args += list(self.extra_args)
        if self.cpu is not None:
            args = ["taskset", "-c", str(self.cpu), *args]
        return args

    def start(self) -> SippProcess:
        """Start SIPp in a subprocess; files go to `trace_dir` (a new temp dir if unset)."""
        trace_dir = self.trace_dir or Path(tempfile.mkdtemp(prefix="sipp-"))
        trace_dir.mkdir(parents=True, exist_ok=True)
        return SippProcess(self, trace_dir)

    def run(self, wait_s: float | None = None) -> SippResult:
        """Start SIPp and wait for it to end (see SippProcess.wait)."""
        with self.start() as process:
            return process.wait(wait_s)


class SippProcess:
    """A running SIPp. Use as a context manager so it is killed if the test fails early."""

    def __init__(self, sipp: Sipp, trace_dir: Path) -> None:
        assert sipp.name is not None
        self.sipp = sipp
        self.trace_dir = trace_dir
        self.argv = sipp.command(trace_dir)
        self.stdout_path = trace_dir / f"{sipp.name}_stdout.log"
        self.stderr_path = trace_dir / f"{sipp.name}_stderr.log"
        self.started_at = time.monotonic()
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            # SIPp writes -trace_counts/-trace_rtt files into its working directory.
            self.popen = subprocess.Popen(
                self.argv, cwd=trace_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        self._killed = False
        self._result: SippResult | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, wait_s: float | None = None) -> SippResult:
        """Wait for SIPp to end by itself; past `wait_s` (default: its -timeout plus a grace)
        it is killed and the result says `killed`. `wait_s` counts from SIPp's start, not from
        this call: a SIPp that must end by itself is best waited for with the default (its
        own -timeout bounds it), since what ran before may have used most of a short limit."""
        if self._result is not None:
            return self._result
        limit = self.sipp.timeout_s + KILL_GRACE_S if wait_s is None else wait_s
        remaining = limit - (time.monotonic() - self.started_at)
        try:
            self.popen.wait(timeout=max(0.0, remaining))
        except subprocess.TimeoutExpired:
            self.kill()
        return self._collect()

    def stop(self, grace_s: float = SOFT_STOP_GRACE_S) -> SippResult:
        """Soft stop (SIGUSR1: no new calls, finish ongoing ones), killed after `grace_s`."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGUSR1)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self._collect()

    def kill(self) -> None:
        """SIGTERM, then SIGKILL; only this process (SIPp has no children)."""
        if not self.running():
            return
        self._killed = True
        self.popen.terminate()
        try:
            self.popen.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)

    def __enter__(self) -> SippProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def _collect(self) -> SippResult:
        if self._result is not None:
            return self._result
        sipp = self.sipp
        assert sipp.name is not None
        stat_path = self.trace_dir / f"{sipp.name}_stat.csv"
        counts_path = _find_pid_file(self.trace_dir, sipp.scenario_file.stem, self.pid, "counts")
        counts = (
            {k: _as_int(v) for k, v in read_last_csv_row(counts_path).items()}
            if counts_path
            else {}
        )
        message_log = self.trace_dir / f"{sipp.name}_messages.log"
        error_log = self.trace_dir / f"{sipp.name}_errors.log"
        self._result = SippResult(
            command=tuple(self.argv),
            returncode=self.popen.returncode,
            killed=self._killed,
            elapsed_s=time.monotonic() - self.started_at,
            stats=read_last_csv_row(stat_path) if stat_path.exists() else {},
            counts=counts,
            trace_dir=self.trace_dir,
            stdout_path=self.stdout_path,
            stderr_path=self.stderr_path,
            stat_path=stat_path if stat_path.exists() else None,
            message_log=message_log if message_log.exists() else None,
            error_log=error_log if error_log.exists() else None,
        )
        return self._result


def _find_pid_file(directory: Path, stem: str, pid: int, kind: str) -> Path | None:
    path = directory / f"{stem}_{pid}_{kind}.csv"
    return path if path.exists() else None


@contextlib.contextmanager
def running(*sipps: Sipp) -> Iterator[list[SippProcess]]:
    """Start several SIPps (servers first, in the order given); kill any left on exit."""
    processes: list[SippProcess] = []
    try:
        for sipp in sipps:
            processes.append(sipp.start())
        yield processes
    finally:
        for process in processes:
            process.kill()


def udp_port_bound(port: int, host: str = "127.0.0.1") -> bool:
    """True if some socket is bound to UDP `host:port` (or to the wildcard on `port`).

    Reads /proc/net/udp rather than probing with bind(), which could steal the port from a
    SIPp that is about to bind it.
    """
    wanted = {socket.inet_aton(host)[::-1].hex().upper(), "00000000"}
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        local = line.split()[1]
        address, _, port_hex = local.partition(":")
        if int(port_hex, 16) == port and address in wanted:
            return True
    return False


def wait_until_bound(port: int, host: str = "127.0.0.1",
                     timeout_s: float = BIND_TIMEOUT_S) -> bool:
    """Wait until a UAS SIPp is listening on UDP `host:port`; False after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if udp_port_bound(port, host):
            return True
        time.sleep(0.02)
    return False


__all__ = [
    "EXIT_ALL_CALLS_OK",
    "EXIT_BIND_FAILED",
    "EXIT_FATAL_ERROR",
    "EXIT_INTERNAL_COMMAND",
    "EXIT_NO_CALLS_PROCESSED",
    "EXIT_SOME_CALLS_FAILED",
    "SCENARIOS_DIR",
    "Sipp",
    "SippMissingError",
    "SippProcess",
    "SippResult",
    "free_port",
    "free_ports",
    "running",
    "scenario_path",
    "sipp_executable",
    "udp_port_bound",
    "wait_until_bound",
]
