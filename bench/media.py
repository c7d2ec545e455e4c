"""Media-path capacity: N simultaneous calls whose G.711 media goes through an element E.

Elements: Linebox with every call anchored (the caller waits in a department's queue hearing the
box's early media, then a member answers and the box bridges the two ports), and Debian's
rtpengine (user-space forwarding, `table = -1`, driven over its ng control protocol) as the
reference, both pinned to CPU 0 in the same run. For each N (stepped upward) every call carries
PCMU both ways in 20 ms packets (50 packets/s per direction) for `--duration` seconds, and the
step prints: packets lost, the one-way latency through E (p50/p99), the RFC 3550 interarrival
jitter the path added, E's CPU share and RSS. The capacity is the highest N with no loss and p99
under 5 ms; the summary prints both capacities and their ratio. See bench/README.md.

    python bench/media.py [--calls 25,50,100,...] [--duration 10] [--only linebox,rtpengine]

Signalling: SIPp (registering the members, the callers' INVITEs with digest auth, the members'
answers) for Linebox; rtpengine's ng `offer`/`answer`/`delete` for rtpengine. The RTP itself is
sent and received by `rtp_worker` (this file run with `--worker`, a separate process on CPU 1):
it stamps each packet's send time in its payload and reads each arrival's kernel receive time
(SO_TIMESTAMPNS), so a busy receiver does not inflate the figures, and counts every packet per
stream (SSRC). Loopback only; every process this script starts is stopped in a `finally`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
for _path in (str(REPO_ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from call_setup import cpu_seconds, read_status_kb, tail  # noqa: E402  (bench/ on sys.path)

from tests.e2e.sipp import Sipp, SippProcess, free_port, udp_port_bound  # noqa: E402

RESULTS_DIR = BENCH_DIR / "results"
ELEMENT_CPU = 0
PEER_CPU = 1
LOOPBACK = "127.0.0.1"
DEFAULT_CALLS = (25, 50, 100, 150, 200, 250, 300, 400)
DEFAULT_DURATION_S = 10.0
DEFAULT_MAX_TOTAL_S = 900.0
WARMUP_S = 1.0
DRAIN_S = 0.5
PTIME_MS = 20
PAYLOAD_BYTES = 160  # G.711 at 8 kHz, 20 ms
MAX_P99_MS = 5.0  # the capacity's latency limit (--max-p99-ms changes it, for the smoke test)
ELEMENT_START_TIMEOUT_S = 20.0
ELEMENT_STOP_TIMEOUT_S = 5.0
# New calls per second while a step is set up: gentle, so that the daemon's overload control
# (firmware/core/overload.py: 503 when requests wait too long to be read) does not shed them on
# a busy machine.
SETUP_RATE_CPS = 20
SETTLE_S = 2.0  # after a step's calls end, before the next step's begin
# Members per bench department; the calls of a step are set up a department at a time (a queue
# holds at most 100 callers anyway, firmware/routing/scheme.py).
DEPARTMENT_SIZE = 50
MAGIC = b"LBXM"
RTP_HEAD = struct.Struct("!BBHII")
STAMP = struct.Struct("!4sQ")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
WORKER_BUFFER_BYTES = 8 * 1024 * 1024
# The machine is shared: as root, the element and the RTP worker run at nice -10, so the other
# work on their CPUs delays their wake-ups less (the same for both elements).
NICE = ["nice", "-n", "-10"] if os.geteuid() == 0 else []


# --- the RTP generator and receiver (a process of its own on CPU 1) ---------------------------


def rtp_worker() -> int:
    """Bind the two sides' sockets, print their ports, then run each JSON command from stdin.

    {"streams": [[ssrc, side, host, port], ...], "warmup_s", "duration_s", "drain_s"} sends
    each stream (side "a": the callers' socket, "b": the members') at 50 packets/s with a random
    phase, receives on both sockets, and prints one JSON line of results.
    """
    socks = {}
    for side in ("a", "b"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, WORKER_BUFFER_BYTES)
                break
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WORKER_BUFFER_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        socks[side] = sock
    print(json.dumps({side: sock.getsockname()[1] for side, sock in socks.items()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("quit"):
            break
        print(json.dumps(_run_streams(socks, command)), flush=True)
    return 0


# The worker's sockets' drop counters as last seen (the kernel's count is cumulative).
OVERFLOW_SEEN: dict[str, int] = {}


def _run_streams(socks: dict[str, socket.socket], command: dict[str, Any]) -> dict[str, Any]:
    period_ns = PTIME_MS * 1_000_000
    fill = b"\xff" * (PAYLOAD_BYTES - STAMP.size)
    rng = random.Random(len(command["streams"]))
    streams = sorted(
        ((rng.randrange(period_ns), int(ssrc), socks[side], (host, int(port)))
         for ssrc, side, host, port in command["streams"]),
        key=lambda s: s[0],
    )
    count = len(streams)
    ancillary = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(4)
    # Whatever came before this run (ringback, announcements) is read and dropped; the sockets'
    # drop counters (SO_RXQ_OVFL, cumulative) are taken from there on.
    overflow_before = {side: OVERFLOW_SEEN.get(side, 0) for side in socks}
    for side, sock in socks.items():
        with contextlib.suppress(BlockingIOError):
            while True:
                _, old_cmsgs, _, _ = sock.recvmsg(4096, ancillary)
                for level, kind, value in old_cmsgs:
                    if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL:
                        overflow_before[side] = struct.unpack_from("=I", value)[0]
    rounds = max(1, round((command["warmup_s"] + command["duration_s"]) * 1000 / PTIME_MS))
    warm_ns = time.time_ns() + int(command["warmup_s"] * 1e9)
    expected = {ssrc: 0 for _, ssrc, _, _ in streams}
    seen: dict[int, bytearray] = {ssrc: bytearray(rounds) for ssrc in expected}
    transit_last: dict[int, int] = {}
    jitter: dict[int, float] = dict.fromkeys(expected, 0.0)
    latencies: list[int] = []
    late_sends: list[int] = []
    counts = {"received": 0, "duplicates": 0, "foreign": 0, "send_errors": 0}
    overflow = dict(overflow_before)
    poller = select.poll()
    by_fd = {sock.fileno(): (side, sock) for side, sock in socks.items()}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)

    def receive(side: str, sock: socket.socket) -> None:
        for _ in range(256):
            try:
                data, cmsgs, _flags, _addr = sock.recvmsg(2048, ancillary)
            except BlockingIOError:
                return
            rx_ns = 0
            for level, kind, value in cmsgs:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = struct.unpack_from("=qq", value)
                    rx_ns = seconds * 1_000_000_000 + nanos
                elif level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL:
                    overflow[side] = struct.unpack_from("=I", value)[0]
            if len(data) < 12 + STAMP.size or data[12:16] != MAGIC:
                counts["foreign"] += 1
                continue
            _, _, seq, _, ssrc = RTP_HEAD.unpack_from(data)
            marks = seen.get(ssrc)
            if marks is None or seq >= len(marks):
                counts["foreign"] += 1
                continue
            if marks[seq]:
                counts["duplicates"] += 1
                continue
            marks[seq] = 1
            counts["received"] += 1
            tx_ns = STAMP.unpack_from(data, 12)[1]
            transit = (rx_ns or time.time_ns()) - tx_ns
            if tx_ns >= warm_ns:
                latencies.append(transit)
            last = transit_last.get(ssrc)
            if last is not None:  # RFC 3550 §6.4.1 / A.8: J += (|D| - J) / 16
                jitter[ssrc] += (abs(transit - last) - jitter[ssrc]) / 16
            transit_last[ssrc] = transit

    start_ns = time.monotonic_ns() + 50_000_000
    index = 0
    rnd = 0
    pack_head = RTP_HEAD.pack
    pack_stamp = STAMP.pack
    while rnd < rounds:
        now = time.monotonic_ns()
        while rnd < rounds:
            phase, ssrc, sock, destination = streams[index]
            due = start_ns + rnd * period_ns + phase
            if due > now:
                break
            late_sends.append(now - due)
            packet = pack_head(0x80, 0, rnd, rnd * PAYLOAD_BYTES, ssrc) + \
                pack_stamp(MAGIC, time.time_ns()) + fill
            try:
                sock.sendto(packet, destination)
                expected[ssrc] += 1
            except OSError:
                counts["send_errors"] += 1
            index += 1
            if index == count:
                index = 0
                rnd += 1
            now = time.monotonic_ns()
        if rnd >= rounds:
            break
        wait_ms = max(0, (start_ns + rnd * period_ns + streams[index][0] - now) // 1_000_000)
        for fd, _ in poller.poll(wait_ms):
            receive(*by_fd[fd])
    drain_until = time.monotonic() + command["drain_s"]
    while (left := drain_until - time.monotonic()) > 0:
        for fd, _ in poller.poll(max(1, int(left * 1000))):
            receive(*by_fd[fd])
    OVERFLOW_SEEN.update(overflow)
    sent = sum(expected.values())
    lost_streams = sum(1 for ssrc, n in expected.items() if sum(seen[ssrc]) < n)
    latencies.sort()
    late_sends.sort()
    jitters = sorted(jitter.values())
    return {
        "streams": count,
        "sent": sent,
        "received": counts["received"],
        "lost": sent - counts["received"],
        "streams_with_loss": lost_streams,
        "duplicates": counts["duplicates"],
        "foreign": counts["foreign"],
        "send_errors": counts["send_errors"],
        "receiver_overflow": sum(overflow.values()) - sum(overflow_before.values()),
        "latency_us": _percentiles(latencies, 1000),
        "jitter_us": {"mean": round(sum(jitters) / len(jitters) / 1000, 1) if jitters else None,
                      "max": round(jitters[-1] / 1000, 1) if jitters else None},
        "send_late_us": _percentiles(late_sends, 1000),
    }


def _percentiles(sorted_ns: list[int], unit: int) -> dict[str, float | None]:
    if not sorted_ns:
        return {"p50": None, "p99": None, "max": None}

    def at(q: float) -> float:
        return round(sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / unit, 1)

    return {"p50": at(0.50), "p99": at(0.99), "max": round(sorted_ns[-1] / unit, 1)}


class RtpWorker:
    """The worker process, driven from here: `run(streams, ...)` returns its results."""

    def __init__(self, log_path: Path) -> None:
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [*NICE, "taskset", "-c", str(PEER_CPU), sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        ports = json.loads(self._line(10.0))
        self.a_port = int(ports["a"])
        self.b_port = int(ports["b"])

    def _line(self, timeout_s: float) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            raise RuntimeError(f"the RTP worker said nothing in {timeout_s:g} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the RTP worker exited")
        return line

    def run(self, streams: list[tuple[int, str, str, int]], duration_s: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        command = {"streams": streams, "warmup_s": WARMUP_S, "duration_s": duration_s,
                   "drain_s": DRAIN_S}
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        result: dict[str, Any] = json.loads(self._line(WARMUP_S + duration_s + DRAIN_S + 30))
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps({"quit": True}) + "\n")
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.log.close()


# --- measuring the element's process ---------------------------------------------------------


def socket_drops(pid: int) -> int:
    """Datagrams the kernel dropped on the process's UDP sockets (full receive queues): the
    `drops` column of /proc/net/udp for the socket inodes the process holds."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    drops = 0
    for table in ("udp", "udp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                parts = line.split()
                if len(parts) > 12 and parts[9] in inodes:
                    drops += int(parts[12])
    return drops


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


# --- the elements ------------------------------------------------------------------------------


class Element:
    name = "element"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [*NICE, "taskset", "-c", str(ELEMENT_CPU), *self.command()]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, cwd=self.workdir, env=self.environment(),
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ELEMENT_START_TIMEOUT_S
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start; see {self.log_path}:\n"
                                   f"{tail(self.log_path)}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=ELEMENT_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=ELEMENT_STOP_TIMEOUT_S)

    # When the first of the step's calls may end by itself (the callers' hold time).
    calls_last_until = math.inf

    def prepare(self, worker: RtpWorker, max_calls: int) -> None:
        """Once, after start: what every step needs (Linebox: the members register)."""

    def set_up(self, calls: int, worker: RtpWorker, hold_s: float, step_dir: Path) -> list[
            tuple[int, str, str, int]]:
        """Set up `calls` calls; return the streams: (ssrc, side, host, port) per direction."""
        raise NotImplementedError

    def tear_down(self) -> list[str]:
        """End the step's calls; return problems seen."""
        return []


# rtpengine ------------------------------------------------------------------------------------


def bencode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return str(len(value)).encode() + b":" + value
    if isinstance(value, str):
        return bencode(value.encode())
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, list):
        return b"l" + b"".join(bencode(item) for item in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(bencode(str(k)) + bencode(v) for k, v in sorted(value.items())) \
            + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes, at: int = 0) -> tuple[Any, int]:
    """One bencoded value at `at`: (value, next offset); strings come back as str."""
    kind = data[at:at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1:end]), end + 1
    if kind in (b"l", b"d"):
        at += 1
        items: list[Any] = []
        while data[at:at + 1] != b"e":
            item, at = bdecode(data, at)
            items.append(item)
        if kind == b"l":
            return items, at + 1
        return dict(zip(items[::2], items[1::2], strict=True)), at + 1
    colon = data.index(b":", at)
    length = int(data[at:colon])
    text = data[colon + 1:colon + 1 + length]
    return text.decode("utf-8", "replace"), colon + 1 + length


class NgClient:
    """rtpengine's ng control protocol: "COOKIE bencoded-dict" over UDP, answered in kind."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((LOOPBACK, port))
        self.sock.settimeout(5.0)
        self.serial = 0

    def command(self, message: dict[str, Any]) -> dict[str, Any]:
        self.serial += 1
        cookie = f"{os.getpid()}-{self.serial}".encode()
        self.sock.send(cookie + b" " + bencode(message))
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            reply = self.sock.recv(65536)
            got, _, body = reply.partition(b" ")
            if got == cookie:
                answer, _ = bdecode(body)
                expected = "pong" if message["command"] == "ping" else "ok"
                if not isinstance(answer, dict) or answer.get("result") != expected:
                    raise RuntimeError(f"rtpengine {message['command']}: {answer!r}")
                return answer
        raise RuntimeError(f"rtpengine did not answer {message['command']}")

    def close(self) -> None:
        self.sock.close()


def sdp_body(port: int) -> str:
    return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


def sdp_audio_port(body: str) -> int:
    for line in body.splitlines():
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise RuntimeError(f"no m=audio line in {body!r}")


class RtpengineElement(Element):
    """rtpengine (Debian's rtpengine-daemon) in the foreground, user-space forwarding only
    (`table = -1`: no kernel module), its own config and pid file, otherwise as shipped (worker
    threads: one per CPU; with `num-threads = 1` its p99 was 4 to 50 ms here, its timers and
    media sharing the one thread)."""

    name = "rtpengine"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.ng_port = free_port(LOOPBACK)
        self.ng: NgClient | None = None
        self.call_ids: list[tuple[str, str]] = []
        self.run_serial = 0

    def command(self) -> list[str]:
        config = self.workdir / "rtpengine.conf"
        config.write_text("\n".join([
            "[rtpengine]",
            "table = -1",
            f"interface = {LOOPBACK}",
            f"listen-ng = {LOOPBACK}:{self.ng_port}",
            "port-min = 30000",
            "port-max = 39999",
            "log-level = 4",
            "log-stderr = true",
            "foreground = true",
            f"pidfile = {self.workdir / 'rtpengine.pid'}",
            "",
        ]), encoding="utf-8")
        return [rtpengine_executable(), "--config-file", str(config)]

    def ready(self) -> bool:
        if not udp_port_bound(self.ng_port, LOOPBACK):
            return False
        if self.ng is None:
            self.ng = NgClient(self.ng_port)
        try:
            self.ng.command({"command": "ping"})
        except (OSError, RuntimeError):
            return False
        return True

    def command_ok(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.ng is not None
        return self.ng.command(message)

    def set_up(self, calls: int, worker: RtpWorker, hold_s: float,
               step_dir: Path) -> list[tuple[int, str, str, int]]:
        self.run_serial += 1
        streams: list[tuple[int, str, str, int]] = []
        for index in range(calls):
            call_id = f"bench-{self.run_serial}-{index}"
            offer = self.command_ok({"command": "offer", "call-id": call_id, "from-tag": "a",
                                     "sdp": sdp_body(worker.a_port), "replace": ["origin"]})
            answer = self.command_ok({"command": "answer", "call-id": call_id, "from-tag": "a",
                                      "to-tag": "b", "sdp": sdp_body(worker.b_port),
                                      "replace": ["origin"]})
            self.call_ids.append((call_id, "a"))
            # The caller sends where the answer points, the member where the offer points.
            streams.append((stream_ssrc(self.run_serial, index, "a"), "a", LOOPBACK,
                            sdp_audio_port(answer["sdp"])))
            streams.append((stream_ssrc(self.run_serial, index, "b"), "b", LOOPBACK,
                            sdp_audio_port(offer["sdp"])))
        return streams

    def tear_down(self) -> list[str]:
        problems = []
        for call_id, tag in self.call_ids:
            try:
                self.command_ok({"command": "delete", "call-id": call_id, "from-tag": tag})
            except (OSError, RuntimeError) as exc:
                problems.append(str(exc))
        self.call_ids.clear()
        return problems

    def stop(self) -> None:
        if self.ng is not None:
            self.ng.close()
            self.ng = None
        super().stop()


def rtpengine_executable() -> str:
    for candidate in ("/usr/bin/rtpengine", "/usr/sbin/rtpengine"):
        if Path(candidate).exists():
            return candidate
    raise RuntimeError("rtpengine is not installed: apt-get install rtpengine-daemon "
                       "(make bench installs it)")


def stream_ssrc(run: int, index: int, side: str) -> int:
    return ((run & 0x7FFF) << 16) | (index << 1) | (1 if side == "b" else 0)


# Linebox --------------------------------------------------------------------------------------

CALLER = "102"
CALLER_PASSWORD = "bench-102-pw"
FIRST_MEMBER = 3000

MEMBER_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="media_member">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="m=audio ([0-9]+)" search_in="body" check_it="true" assign_to="m,box_port" />
      <log message="member [$box_port] ([$m])" />
    </action>
  </recv>
  <send retrans="500"><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:member@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [rtp_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

  ]]></send>
  <recv request="ACK" crlf="true" />
  <recv request="BYE" />
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
</scenario>
"""

CALLER_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="media_caller">
  <Global variables="hold_ms" />
  <nop hide="true"><action><todouble assign_to="hold" variable="hold_ms" /></action></nop>
  <send retrans="500" start_txn="invite1"><![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-i1;rport
      From: <sip:[caller]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [rtp_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000

  ]]></send>
  <recv response="100" optional="true" response_txn="invite1" />
  <recv response="407" auth="true" response_txn="invite1" />
  <send ack_txn="invite1"><![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-i1;rport
      From: <sip:[caller]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <send retrans="500" start_txn="invite2"><![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-i2;rport
      From: <sip:[caller]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      [authentication]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [rtp_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000

  ]]></send>
  <recv response="100" optional="true" response_txn="invite2" />
  <recv response="180" optional="true" response_txn="invite2" />
  <recv response="183" optional="true" response_txn="invite2" />
  <recv response="200" rrs="true" response_txn="invite2">
    <action>
      <ereg regexp="sips?:[^&gt;]+" search_in="hdr" header="Contact:" check_it="true"
            assign_to="remote_target" />
      <ereg regexp="m=audio ([0-9]+)" search_in="body" check_it="true" assign_to="m,box_port" />
      <log message="caller [$box_port] ([$m])" />
    </action>
  </recv>
  <send ack_txn="invite2"><![CDATA[

      ACK [$remote_target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      From: <sip:[caller]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <pause variable="hold" />
  <send retrans="500"><![CDATA[

      BYE [$remote_target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      From: <sip:[caller]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200" crlf="true" />
</scenario>
"""


class LineboxElement(Element):
    """Linebox with every call anchored. Departments 200, 201, ... (a queue holds at most 100
    callers) with 100 members each; extension 102 calls them. Before a step the step's members
    go on break, so every caller waits in the queue hearing the box (183, ringback: the box holds
    the call's media from then on); then they go on line and the queue offers each caller to a
    member, whose answer the box bridges to the caller's port (firmware/anchor.py)."""

    name = "linebox"

    def __init__(self, workdir: Path, max_calls: int, root: Path = REPO_ROOT, *,
                 record: bool = False) -> None:
        self.record = record
        if record:
            self.name = "linebox-rec"
        super().__init__(workdir)
        self.root = root
        self.sip_port = free_port(LOOPBACK, tcp=True)
        # The control socket sits beside the database: a short directory of its own keeps its
        # path under AF_UNIX's 108 bytes wherever the results go.
        self.db_dir = Path(tempfile.mkdtemp(prefix="lbmedia-"))
        self.db_path = self.db_dir / "linebox.db"
        self.config_path = workdir / "linebox-media.yaml"
        self.members = [str(FIRST_MEMBER + i) for i in range(max_calls)]
        self.member_sipp: SippProcess | None = None
        self.callers: list[SippProcess] = []
        self.member_log = workdir / "members.log"
        self.member_seen = 0

    def config_text(self) -> str:
        lines = ["# Generated by bench/media.py", "extensions:",
                 f'  - {{number: "{CALLER}", name: "Caller", password: "{CALLER_PASSWORD}"}}']
        lines += [f'  - {{number: "{m}", name: "Agent {m}", password: "bench-pw-{m}"}}'
                  for m in self.members]
        lines.append("departments:")
        for index, start in enumerate(range(0, len(self.members), DEPARTMENT_SIZE)):
            chunk = self.members[start:start + DEPARTMENT_SIZE]
            lines += [
                f'  - number: "{200 + index}"',
                f'    name: "Bench {200 + index}"',
                "    strategy: in_order",
                "    ring_timeout_s: 30",
                "    members: [" + ", ".join(f'"{m}"' for m in chunk) + "]",
                f"    queue: {{max_callers: {DEPARTMENT_SIZE}, max_wait_s: 600, retry_s: 1, "
                "announce_s: 10}",
            ]
        lines += ["sip: {digest_algorithms: [MD5, SHA-256]}",
                  # One loopback address sends every request of the bench.
                  "security: {rate_limit_requests: 100000, rate_limit_window_s: 1.0}"]
        if self.record:
            # Every department's calls recorded (stereo G.711 WAV, docs/config.md `recording`):
            # each caller hears the warning first, then waits in the queue as without it.
            departments = range(200, 200 + math.ceil(len(self.members) / DEPARTMENT_SIZE))
            lines.append("recording: {channels: stereo, departments: {"
                         + ", ".join(f'"{d}": all' for d in departments) + "}}")
        lines.append("")
        return "\n".join(lines)

    def command(self) -> list[str]:
        for stale in (self.db_path, self.db_path.with_suffix(".db-wal")):
            stale.unlink(missing_ok=True)
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        last_port = 20000 + 4 * len(self.members) + 200
        return [sys.executable, "-m", "firmware", "--log-level", "WARNING", "run",
                "--db", str(self.db_path), "--sip", f"{LOOPBACK}:{self.sip_port}",
                "--config", str(self.config_path), "--rtp-ports", f"20000-{last_port}"]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.root)}

    def ready(self) -> bool:
        if not self.db_path.with_suffix(".sock").exists():
            return False
        try:
            self.control({"command": "status"})
        except OSError:
            return False
        return True

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.db_path.with_suffix(".sock")))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        answer: dict[str, Any] = json.loads(data)
        return answer

    def set_status(self, members: list[str], status: str) -> None:
        for member in members:
            answer = self.control({"command": "agent", "extension": member, "status": status})
            if not answer.get("ok"):
                raise RuntimeError(f"agent {member} {status}: {answer}")

    def prepare(self, worker: RtpWorker, max_calls: int) -> None:
        scenarios = self.workdir / "scenarios"
        scenarios.mkdir(exist_ok=True)
        (scenarios / "media_member.xml").write_text(MEMBER_XML, encoding="utf-8")
        (scenarios / "media_caller.xml").write_text(CALLER_XML, encoding="utf-8")
        member_port = free_port(LOOPBACK)
        self.member_sipp = Sipp(
            scenario=scenarios / "media_member.xml", local_ip=LOOPBACK, local_port=member_port,
            keys={"rtp_port": worker.b_port}, auto_answer=True, timeout_s=3600,
            trace_dir=self.workdir / "sipp", trace_msg=False, cpu=PEER_CPU, name="members",
            extra_args=["-trace_logs", "-log_file", str(self.member_log)],
        ).start()
        register_all(self.sip_port, member_port, self.members)
        # Nobody takes a call until a step puts its members on line: every caller waits first.
        self.set_status(self.members, "break")

    def set_up(self, calls: int, worker: RtpWorker, hold_s: float,
               step_dir: Path) -> list[tuple[int, str, str, int]]:
        members = self.members[:calls]
        scenarios = self.workdir / "scenarios"
        caller_logs: list[Path] = []
        # A department (50 members) at a time: its callers wait in its queue, then its members
        # go on line and take them. All N waiting at once would have the box play ringback to N
        # callers together (its own media: far more work per packet than relaying), which is
        # not the load measured here and made the daemon shed new calls (503) from ~100 on.
        for index, start in enumerate(range(0, calls, DEPARTMENT_SIZE)):
            count = min(DEPARTMENT_SIZE, calls - start)
            department = str(200 + index)
            log = step_dir / f"callers-{department}.log"
            caller_logs.append(log)
            self.callers.append(Sipp(
                scenario=scenarios / "media_caller.xml", remote=f"{LOOPBACK}:{self.sip_port}",
                local_ip=LOOPBACK, service=department, keys={"caller": CALLER,
                                                             "rtp_port": worker.a_port},
                auth_user=CALLER, auth_password=CALLER_PASSWORD,
                auth_uri=f"{department}@{LOOPBACK}:{self.sip_port}", calls=count,
                rate=SETUP_RATE_CPS, max_concurrent=count,
                variables={"hold_ms": int(hold_s * 1000)}, timeout_s=hold_s + 120,
                trace_dir=step_dir, trace_msg=False, cpu=PEER_CPU, name=f"callers-{department}",
                extra_args=["-trace_logs", "-log_file", str(log)],
            ).start())
            # Bounded generously: on a shared machine set-ups are slow.
            wait_for(lambda n=count: self.waiting() >= n, 30 + count / 5,
                     f"{count} callers waiting in queue {department}")
            if index == 0:
                # No call is answered before this, so none hangs up before its hold has passed.
                self.calls_last_until = time.monotonic() + hold_s
            self.set_status(members[start:start + count], "on_line")
            done = start + count
            wait_for(lambda n=done: len(logged_ports(caller_logs, "caller")) >= n
                     and len(logged_ports([self.member_log], "member")) - self.member_seen >= n,
                     30 + count / 5, f"{done} calls answered and bridged")
        caller_ports = logged_ports(caller_logs, "caller")
        member_ports = logged_ports([self.member_log], "member")[self.member_seen:]
        self.member_seen += len(member_ports)
        run = len(self.callers)
        streams = [(stream_ssrc(run, i, "a"), "a", LOOPBACK, port)
                   for i, port in enumerate(caller_ports)]
        streams += [(stream_ssrc(run, i, "b"), "b", LOOPBACK, port)
                    for i, port in enumerate(member_ports)]
        return streams

    def waiting(self) -> int:
        status = self.control({"command": "status"})["status"]
        return sum(len(queue["waiting"]) for queue in status.get("queues", []))

    def tear_down(self) -> list[str]:
        problems = []
        for caller in self.callers:
            result = caller.wait()
            if not result.ok:
                problems.append(result.describe(600))
        self.callers.clear()
        self.set_status(self.members, "break")
        wait_for(lambda: not self.control({"command": "status"})["status"].get("calls"), 15,
                 "the calls to end")
        time.sleep(SETTLE_S)
        return problems

    def stop(self) -> None:
        for caller in self.callers:
            caller.kill()
        if self.member_sipp is not None:
            self.member_sipp.kill()
            self.member_sipp = None
        super().stop()
        shutil.rmtree(self.db_dir, ignore_errors=True)


def register_all(sip_port: int, contact_port: int, members: list[str]) -> None:
    """REGISTER each member (RFC 3261 §10.2) with an MD5 digest answer to the 401 (RFC 7616
    §3.4, qop=auth), its Contact at the members' SIPp. Done here rather than by SIPp: SIPp 3.6.1
    cannot take the digest user name from an injection file ([authentication username=[field0]]
    is mangled), and the members are many."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(5.0)
        local = sock.getsockname()[1]
        for number in members:
            call_id = f"reg-{number}-{os.urandom(4).hex()}"
            authorization = ""
            for cseq in (1, 2):
                sock.sendto(register_request(sip_port, local, contact_port, number, call_id, cseq,
                                             authorization).encode(), (LOOPBACK, sip_port))
                reply = read_reply(sock, call_id, cseq)
                status = int(reply.split(None, 2)[1])
                if status == 200:
                    break
                if status != 401 or cseq == 2:
                    raise RuntimeError(f"REGISTER {number}: {reply.splitlines()[0]}")
                authorization = digest_authorization(reply, number, f"bench-pw-{number}",
                                                     f"sip:{LOOPBACK}:{sip_port}")


def register_request(sip_port: int, local: int, contact_port: int, number: str, call_id: str,
                     cseq: int, authorization: str) -> str:
    return (f"REGISTER sip:{LOOPBACK}:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bK{os.urandom(6).hex()};rport\r\n"
            f"From: <sip:{number}@{LOOPBACK}>;tag={call_id}\r\n"
            f"To: <sip:{number}@{LOOPBACK}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
            f"Contact: <sip:{number}@{LOOPBACK}:{contact_port}>\r\nExpires: 3600\r\n"
            f"{authorization}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def read_reply(sock: socket.socket, call_id: str, cseq: int) -> str:
    """The final reply to our request (provisional ones and strays skipped)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        text = sock.recv(65536).decode("utf-8", "replace")
        if f"Call-ID: {call_id}" in text and f"CSeq: {cseq} " in text \
                and not text.startswith("SIP/2.0 1"):
            return text
    raise RuntimeError(f"no final reply to {call_id}")


def digest_authorization(challenge: str, user: str, password: str, uri: str) -> str:
    line = next(h for h in challenge.split("\r\n") if h.lower().startswith("www-authenticate:")
                and "MD5" in h)
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', line.split(None, 2)[2]))
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()  # noqa: S324  (RFC 7616 MD5, not security)
    cnonce = os.urandom(8).hex()
    ha1 = md5(f"{user}:{params['realm']}:{password}")
    ha2 = md5(f"REGISTER:{uri}")
    response = md5(f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}")
    opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
    return (f'Authorization: Digest username="{user}", realm="{params["realm"]}", '
            f'nonce="{params["nonce"]}", uri="{uri}", response="{response}", algorithm=MD5, '
            f'qop=auth, nc=00000001, cnonce="{cnonce}"{opaque}\r\n')


def logged_ports(paths: list[Path], role: str) -> list[int]:
    ports: list[int] = []
    for path in paths:
        with contextlib.suppress(OSError):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == role and parts[1].isdigit():
                    ports.append(int(parts[1]))
    return ports


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.1)


# --- one step ----------------------------------------------------------------------------------


@dataclass
class StepResult:
    calls: int
    streams: int
    sent: int
    lost: int
    element_drops: int
    receiver_overflow: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    jitter_mean_ms: float | None
    jitter_max_ms: float | None
    send_late_p99_ms: float | None
    cpu_percent: float
    cpu_us_per_packet: float  # E's CPU time over the packets it relayed: steadier than CPU%
    rss_mb: float
    load: str
    attempt: int = 1
    passed: bool = False
    reasons: list[str] = field(default_factory=list)


def run_step(element: Element, worker: RtpWorker, calls: int, duration_s: float,
             step_dir: Path, max_p99_ms: float = MAX_P99_MS) -> StepResult:
    step_dir.mkdir(parents=True, exist_ok=True)
    hold_s = duration_s + WARMUP_S + DRAIN_S + 15 + 8 * math.ceil(calls / DEPARTMENT_SIZE)
    reasons: list[str] = []
    streams = element.set_up(calls, worker, hold_s, step_dir)
    if len(streams) < 2 * calls:
        reasons.append(f"only {len(streams)} of {2 * calls} streams set up")
    drops_before = socket_drops(element.pid)
    cpu_before = cpu_seconds(element.pid) or 0.0
    wall_before = time.monotonic()
    result = worker.run(streams, duration_s)
    cpu_after = cpu_seconds(element.pid) or cpu_before
    wall = time.monotonic() - wall_before
    rss_kb = read_status_kb(element.pid, "VmRSS") or 0
    drops = socket_drops(element.pid) - drops_before
    if time.monotonic() > element.calls_last_until:
        reasons.append("the set-up was so slow that calls ended during the step")
    # (On an exception above the sweep stops the element, and with it the step's calls.)
    reasons += element.tear_down()
    latency = result["latency_us"]
    jitter = result["jitter_us"]
    step = StepResult(
        calls=calls, streams=result["streams"], sent=result["sent"], lost=result["lost"],
        element_drops=drops, receiver_overflow=result["receiver_overflow"],
        latency_p50_ms=ms(latency["p50"]), latency_p99_ms=ms(latency["p99"]),
        latency_max_ms=ms(latency["max"]), jitter_mean_ms=ms(jitter["mean"]),
        jitter_max_ms=ms(jitter["max"]), send_late_p99_ms=ms(result["send_late_us"]["p99"]),
        cpu_percent=100.0 * (cpu_after - cpu_before) / wall if wall > 0 else 0.0,
        cpu_us_per_packet=round(1e6 * (cpu_after - cpu_before) / max(1, result["received"]), 1),
        rss_mb=rss_kb / 1024, load=load_average(),
    )
    if step.lost:
        reasons.append(f"{step.lost} packets lost")
    if step.latency_p99_ms is None or step.latency_p99_ms >= max_p99_ms:
        reasons.append(f"p99 latency {step.latency_p99_ms} ms >= {max_p99_ms:g}")
    if step.receiver_overflow and step.lost:
        # Only when the streams lost something: the drops may be of other packets (ringback).
        reasons.append(f"the bench's receiver dropped {step.receiver_overflow} (not E's fault)")
    step.reasons = reasons
    step.passed = not reasons
    return step


def ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000, 3)


TABLE_HEADER = (f"{'element':<9} {'calls':>5} {'pkts':>8} {'lost':>6} {'E drop':>6} "
                f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'jit ms':>7} {'CPU%':>5} "
                f"{'us/pkt':>6} "
                f"{'RSS MB':>7} {'load':>14}  verdict")


def fmt(value: float | None, width: int, digits: int = 2) -> str:
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def print_step(name: str, step: StepResult) -> None:
    verdict = "pass" if step.passed else "FAIL: " + "; ".join(step.reasons)
    if step.attempt > 1:
        verdict += " (2nd try)"
    print(f"{name:<9} {step.calls:>5} {step.sent:>8} {step.lost:>6} {step.element_drops:>6} "
          f"{fmt(step.latency_p50_ms, 7)} {fmt(step.latency_p99_ms, 7)} "
          f"{fmt(step.latency_max_ms, 7)} {fmt(step.jitter_mean_ms, 7, 3)} "
          f"{step.cpu_percent:>5.0f} {step.cpu_us_per_packet:>6.1f} {step.rss_mb:>7.1f} "
          f"{step.load:>14}  {verdict}", flush=True)


def sweep(elements: list[Element], args: argparse.Namespace, run_dir: Path,
          deadline: float) -> list[dict[str, Any]]:
    """Every element started (each with its own RTP worker), then the steps interleaved: N
    calls through one element, then through the next, so both see the machine in the same
    state. A step that fails is tried once more (other work on the shared CPUs can spoil one
    try's p99). The capacity is the last N passed before the first step that failed twice; the
    sweep goes on past latency failures (CPU and loss at larger N still tell something) and
    ends at the first step that loses packets twice."""
    reports = {e.name: {"element": e.name, "steps": [], "capacity_calls": None} for e in elements}
    workers: dict[str, RtpWorker] = {}
    active: list[Element] = []
    try:
        for element in elements:
            report = reports[element.name]
            try:
                workers[element.name] = RtpWorker(run_dir / f"{element.name}-worker.log")
                element.start()
                report["idle_rss_mb"] = round((read_status_kb(element.pid, "VmRSS") or 0)
                                              / 1024, 1)
                element.prepare(workers[element.name], max(args.calls))
                active.append(element)
            except RuntimeError as exc:
                report["error"] = str(exc)
                print(f"[{element.name}] {exc}", file=sys.stderr)
        for calls in args.calls:
            for element in list(active):
                report = reports[element.name]
                if time.monotonic() + 2 * (args.duration + 20 + calls / 10) > deadline:
                    report["stopped"] = f"time budget reached before {calls} calls"
                    active.remove(element)
                    continue
                try:
                    step = None
                    for attempt in (1, 2):
                        if not element.alive():
                            raise RuntimeError(f"{element.name} exited before {calls} calls")
                        step = run_step(element, workers[element.name], calls, args.duration,
                                        run_dir / element.name / f"n{calls}-{attempt}",
                                        args.max_p99_ms)
                        step.attempt = attempt
                        report["steps"].append(asdict(step))
                        print_step(element.name, step)
                        if step.passed:
                            break
                    assert step is not None
                    if step.passed and "first_failure" not in report:
                        report["capacity_calls"] = calls
                    elif not step.passed:
                        report.setdefault("first_failure", f"{calls} calls: "
                                          + "; ".join(step.reasons))
                    if step.lost:
                        # Latency alone does not end the sweep (the CPU and loss figures of
                        # larger steps still tell something); loss does.
                        report["stopped"] = f"{calls} calls lost packets: " \
                            + "; ".join(step.reasons)
                        active.remove(element)
                    else:
                        report["loss_free_calls"] = calls
                except RuntimeError as exc:
                    report["error"] = report["stopped"] = str(exc)
                    print(f"[{element.name}] {exc}", file=sys.stderr)
                    active.remove(element)
    finally:
        for element in elements:
            element.stop()
        for worker in workers.values():
            worker.close()
    return [reports[e.name] for e in elements]


def direct_baseline(run_dir: Path, calls: int, duration_s: float) -> dict[str, Any]:
    """The same streams from the callers' socket straight to the members' and back, no element:
    the floor of what the generator, the receiver and loopback add by themselves."""
    worker = RtpWorker(run_dir / "direct-worker.log")
    try:
        streams = [(stream_ssrc(1, i, "a"), "a", LOOPBACK, worker.b_port) for i in range(calls)]
        streams += [(stream_ssrc(1, i, "b"), "b", LOOPBACK, worker.a_port) for i in range(calls)]
        return worker.run(streams, duration_s)
    finally:
        worker.close()


def print_summary(reports: list[dict[str, Any]], direct: dict[str, Any] | None,
                  limit: float = MAX_P99_MS) -> dict[str, Any]:
    print("\n== summary ==")
    summary: dict[str, Any] = {}
    if direct is not None:
        print(f"no element (generator -> receiver directly, {direct['streams'] // 2} calls): "
              f"p50 {ms(direct['latency_us']['p50'])} ms, p99 {ms(direct['latency_us']['p99'])}"
              f" ms, lost {direct['lost']}")
    for report in reports:
        name = report["element"]
        print(f"{name}: capacity {report['capacity_calls'] or 'none'} calls "
              f"(no loss, p99 < {limit:g} ms); RSS idle {report.get('idle_rss_mb', '?')} MB")
        print(f"{name}: carried without loss up to {report.get('loss_free_calls') or 'none'} "
              f"calls; first failing step: {report.get('first_failure', 'none')}")
        if "stopped" in report:
            print(f"{name}: stopped: {report['stopped']}")
        summary[name] = {"capacity_calls": report["capacity_calls"],
                         "loss_free_calls": report.get("loss_free_calls")}
    by_name = {report["element"]: report for report in reports}
    if "linebox" in by_name and "rtpengine" in by_name:
        ours = by_name["linebox"]["capacity_calls"]
        theirs = by_name["rtpengine"]["capacity_calls"]
        ratio = ours / theirs if ours and theirs else None
        summary["capacity_ratio_linebox_over_rtpengine"] = ratio
        print("capacity ratio linebox/rtpengine: " + (f"{ratio:.2f}" if ratio else "n/a"))
        if theirs and "first_failure" not in by_name["rtpengine"]:
            print("(rtpengine passed every step run: its capacity is at least that, the ratio "
                  "an upper bound)")
    # CPU per relayed packet, at the most calls carried without loss (at a few calls the idle
    # work weighs in): steadier than latency on a shared machine. A call is 100 packets a
    # second through E (50 each way), so one core at that cost carries 1e4 / us calls.
    per: dict[str, dict[int, float]] = {}
    for name, report in by_name.items():
        clean = [step for step in report["steps"] if step["sent"] and not step["lost"]]
        per[name] = {n: median([s["cpu_us_per_packet"] for s in clean if s["calls"] == n]) or 0.0
                     for n in {step["calls"] for step in clean}}
        if per[name]:
            top = max(per[name])
            print(f"{name}: CPU {per[name][top]:.1f} us per relayed packet at {top} calls; one "
                  f"core at that cost: ~{1e4 / per[name][top]:.0f} calls")
    summary["cpu_us_per_packet"] = per

    def compare(ours: str, theirs: str) -> tuple[int, float] | None:
        """At the most calls both carried without loss: ours' CPU per packet over theirs'."""
        common = set(per.get(ours, {})) & set(per.get(theirs, {}))
        if not common:
            return None
        n = max(common)
        return n, per[ours][n] / per[theirs][n]

    if (versus := compare("linebox", "rtpengine")) is not None:
        summary["cpu_ratio_linebox_over_rtpengine"] = versus
        print(f"CPU per packet linebox/rtpengine at {versus[0]} calls: {versus[1]:.2f}")
    if (recording := compare("linebox-rec", "linebox")) is not None:
        extra = 100 * (recording[1] - 1)
        summary["recording_extra_cpu_percent"] = round(extra, 1)
        print(f"recording costs {extra:+.0f} % CPU per packet over plain relaying at "
              f"{recording[0]} calls (target < 25 %)")
    return summary


def median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default=list(DEFAULT_CALLS),
                        type=lambda text: sorted({int(n) for n in text.split(",") if n.strip()}),
                        help="comma-separated numbers of simultaneous calls, run in order")
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S,
                        help="seconds of media per step, after a 1 s warm-up (default %(default)s)")
    parser.add_argument("--only", type=lambda text: set(text.split(",")),
                        help="comma-separated elements to bench: linebox, linebox-rec, rtpengine")
    parser.add_argument("--max-total-s", type=float, default=DEFAULT_MAX_TOTAL_S,
                        help="start no new step after this many seconds (default %(default)s)")
    parser.add_argument("--max-p99-ms", type=float, default=MAX_P99_MS,
                        help="the capacity's p99 latency limit (default %(default)s)")
    parser.add_argument("--linebox-root", type=Path, default=REPO_ROOT,
                        help="the source tree whose firmware/ runs (default: this checkout)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR,
                        help="where the JSON and the run's files go (default bench/results)")
    args = parser.parse_args(argv)
    if not args.calls or min(args.calls) <= 0 or max(args.calls) > 2000:
        parser.error("--calls needs numbers from 1 to 2000")
    return args


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--worker"]:
        return rtp_worker()
    args = parse_args(argv)
    # Stopped by a signal (even when started in the background, where SIGINT is ignored): the
    # `finally`s stop the elements, the SIPps and the RTP workers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    deadline = started + args.max_total_s
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = args.results / f"media-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"calls {args.calls}, G.711 20 ms both ways, {args.duration:g} s of media per step "
          f"after {WARMUP_S:g} s warm-up; element on CPU {ELEMENT_CPU}, SIPp and the RTP worker "
          f"on CPU {PEER_CPU}; load average {load_average()}; files in {run_dir}")
    direct = direct_baseline(run_dir, max(args.calls), min(args.duration, 3.0))
    print(TABLE_HEADER)
    elements: list[Element] = []
    wanted = args.only or {"linebox", "linebox-rec", "rtpengine"}
    if "linebox" in wanted:
        elements.append(LineboxElement(run_dir / "linebox", max(args.calls),
                                       args.linebox_root.resolve()))
    if "linebox-rec" in wanted:
        elements.append(LineboxElement(run_dir / "linebox-rec", max(args.calls),
                                       args.linebox_root.resolve(), record=True))
    if "rtpengine" in wanted:
        elements.append(RtpengineElement(run_dir / "rtpengine"))
    reports = sweep(elements, args, run_dir, deadline)
    summary = print_summary(reports, direct, args.max_p99_ms)
    document = {
        "benchmark": "media", "started": stamp,
        "elapsed_s": round(time.monotonic() - started, 1),
        "parameters": {"calls": args.calls, "duration_s": args.duration, "warmup_s": WARMUP_S,
                       "ptime_ms": PTIME_MS, "codec": "PCMU", "max_p99_ms": args.max_p99_ms,
                       "element_cpu": ELEMENT_CPU, "peer_cpu": PEER_CPU},
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "load_at_end": load_average()},
        "direct": direct, "elements": reports, "summary": summary,
    }
    json_path = args.results / f"media-{stamp}.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"results: {json_path}")
    return 0 if all(report.get("capacity_calls") for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
