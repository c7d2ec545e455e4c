"""The smoke image boots to ready on emulated 64-bit ARM.

images/smoke/build.sh packs the box's own rootfs overlay and init scripts on a root file system
made of Debian 12's arm64 packages (kernel, BusyBox, Python 3.11) and the project's wheel with its
aarch64 dependencies; here it boots under `qemu-system-aarch64 -M virt` with user-mode networking
(sealed off, forwarded to loopback only) until the daemon answers a SIP OPTIONS (over TCP) and
the web UI serves its first-run or login page. It proves the firmware and its init scripts run on
arm64; it is not the Buildroot image (images/smoke/README.md).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "images" / "smoke" / "build.sh"
QEMU = "qemu-system-aarch64"
BUILD_TIMEOUT_S = 900
# The wait for ready is bounded; the target (issue 13) is 15 s, the bound leaves room for a
# loaded 2-core machine and is what the test fails on.
READY_BOUND_S = 180.0
READY_TARGET_S = 15.0
POLL_INTERVAL_S = 0.2
SIP_ANSWER_TIMEOUT_S = 1.0
MAX_SIP_REPLY_BYTES = 65536
HTTP_TIMEOUT_S = 2.0
QEMU_STOP_TIMEOUT_S = 10.0
GUEST_SIP_PORT = 5060
GUEST_HTTP_PORT = 80
QEMU_MEMORY_MB = 1024
CONSOLE_TAIL_LINES = 60
# Idle memory: read from the guest's report some seconds after ready (it reports every 5 s).
IDLE_AFTER_READY_S = 5.0
MEMORY_REPORT_WAIT_S = 12.0
DATA_DISK_BYTES = 64 * 1024 * 1024
# Issue 13's budget for the daemon and the web UI at idle, in PSS (shared pages counted once).
IDLE_RAM_TARGET_MB = 80.0
PSS_REPORT = re.compile(r"PSS (\d+) kB")


@dataclass
class Console:
    """The guest's serial console, each line with the host's monotonic time it arrived."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read_from(self, stream: object) -> None:
        for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self.lock:
                self.lines.append((time.monotonic(), text))

    def first(self, pattern: str) -> tuple[float, str] | None:
        regex = re.compile(pattern)
        with self.lock:
            return next(((at, text) for at, text in self.lines if regex.search(text)), None)

    def tail(self) -> str:
        with self.lock:
            return "\n".join(text for _, text in self.lines[-CONSOLE_TAIL_LINES:])


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sip_options(port: int) -> str | None:
    """One OPTIONS over TCP to 127.0.0.1:port: the final answer's status line, or None.

    TCP, not UDP: QEMU's user-mode network with restrict=on (the guest sealed off from
    everything but the forwarded ports) drops every UDP datagram the guest sends, replies to a
    forwarded port included; TCP connections made through a forward carry both ways."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=SIP_ANSWER_TIMEOUT_S) as sock:
            host, local_port = sock.getsockname()[:2]
            call_id = f"smoke-{os.urandom(6).hex()}@{host}"
            request = "\r\n".join([
                f"OPTIONS sip:{host}:{port};transport=tcp SIP/2.0",
                f"Via: SIP/2.0/TCP {host}:{local_port};branch=z9hG4bK-smoke-{os.urandom(6).hex()}",
                "Max-Forwards: 70",
                f"From: <sip:smoke@{host}>;tag={os.urandom(4).hex()}",
                f"To: <sip:{host}:{port}>",
                f"Call-ID: {call_id}",
                "CSeq: 1 OPTIONS",
                f"Contact: <sip:smoke@{host}:{local_port};transport=tcp>",
                "Accept: application/sdp",
                "Content-Length: 0",
                "",
                "",
            ]).encode()
            sock.sendall(request)
            deadline = time.monotonic() + SIP_ANSWER_TIMEOUT_S
            data = b""
            while b"\r\n\r\n" not in data and len(data) < MAX_SIP_REPLY_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                sock.settimeout(remaining)
                chunk = sock.recv(65535)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    text = data.decode("utf-8", "replace")
    if re.match(r"SIP/2\.0 [2-6]\d\d ", text) and call_id in text:
        return text.split("\r\n", 1)[0]
    return None


def web_page(port: int) -> tuple[str, str] | None:
    """GET / (redirects followed): (final path, body) if served with 200, else None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=HTTP_TIMEOUT_S) as reply:
            if reply.status != 200:
                return None
            path = urllib.parse.urlparse(reply.geturl()).path
            return path, reply.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def idle_memory(console: Console, *, process_started: float, ready_s: float) -> str:
    """The guest's first report of the gateway's resident memory (smoke-mem, every 5 s) made
    at least IDLE_AFTER_READY_S after ready: the daemon and the web UI idle."""
    wanted = process_started + ready_s + IDLE_AFTER_READY_S
    deadline = time.monotonic() + IDLE_AFTER_READY_S + MEMORY_REPORT_WAIT_S
    while time.monotonic() < deadline:
        with console.lock:
            report = next((text for at, text in console.lines
                           if at >= wanted and text.startswith("smoke-mem: ")), None)
        if report:
            return report.removeprefix("smoke-mem: ")
        time.sleep(POLL_INTERVAL_S)
    return "no report from the guest"


@pytest.fixture(scope="module")
def smoke_image() -> Iterator[Path]:
    """images/smoke/build.sh run now (its downloads cached outside the repository), into a
    directory of its own: not pytest's, whose old run directories another pytest session on
    the machine may remove while this one is booting from it."""
    with tempfile.TemporaryDirectory(prefix="linebox-smoke-") as directory:
        yield build_image(Path(directory))


def build_image(out: Path) -> Path:
    started = time.monotonic()
    result = subprocess.run(
        ["sh", str(BUILD_SCRIPT), str(out)], cwd=REPO, capture_output=True, text=True,
        timeout=BUILD_TIMEOUT_S, check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, (
        f"images/smoke/build.sh failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    summary = result.stderr.strip().splitlines()[-1]
    print(f"\nsmoke image built in {elapsed:.1f} s: {summary}")
    return out


@dataclass
class Boot:
    """One boot of the smoke image until ready: what answered, when (host seconds from QEMU's
    start), and the console."""

    console: Console
    started: float
    sip_answer: str
    sip_at: float
    page_path: str
    page_body: str
    web_at: float
    memory: str

    @property
    def ready_s(self) -> float:
        return max(self.sip_at, self.web_at) - self.started

    def since_start(self, line: tuple[float, str] | None) -> str:
        return f"{line[0] - self.started:.1f} s" if line else "?"


def qemu_command(image: Path, disk: Path, sip_port: int, http_port: int) -> list[str]:
    qemu = shutil.which(QEMU)
    assert qemu, f"{QEMU} is missing: `make test` installs Debian's qemu-system-arm"
    return [
        qemu, "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", str(QEMU_MEMORY_MB),
        "-accel", "tcg,thread=multi",
        "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
        "-kernel", str(image / "vmlinuz"),
        "-initrd", str(image / "initramfs.cpio"),
        # quiet: the kernel's few hundred boot lines through the emulated UART cost ~0.5 s.
        # linebox.data: the overlay's boot script takes the data partition from here.
        "-append", "console=ttyAMA0 panic=-1 quiet linebox.data=/dev/vda",
        "-drive", f"file={disk},format=raw,if=virtio",
        # restrict=on: the guest reaches nothing outside; only the two forwards reach it, and
        # they listen on the host's loopback only.
        "-netdev", (f"user,id=net0,restrict=on,"
                    f"hostfwd=tcp:127.0.0.1:{sip_port}-:{GUEST_SIP_PORT},"
                    f"hostfwd=tcp:127.0.0.1:{http_port}-:{GUEST_HTTP_PORT}"),
        "-device", "virtio-net-pci,netdev=net0,romfile=",
        "-device", "virtio-rng-pci",
    ]


def boot_until_ready(image: Path, disk: Path, *, power_cut: bool = False) -> Boot:
    """Boot, wait (bounded) for SIP and the web UI, read the idle memory, stop QEMU: with
    SIGTERM, or with SIGKILL for a power cut (the guest gets no chance to unmount)."""
    sip_port = free_port(socket.SOCK_STREAM)
    http_port = free_port(socket.SOCK_STREAM)
    command = qemu_command(image, disk, sip_port, http_port)
    console = Console()
    started = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    reader = threading.Thread(target=console.read_from, args=(process.stdout,), daemon=True)
    reader.start()
    sip_answer: str | None = None
    sip_at = web_at = 0.0
    page: tuple[str, str] | None = None
    try:
        deadline = started + READY_BOUND_S
        while time.monotonic() < deadline and (sip_answer is None or page is None):
            assert process.poll() is None, (
                f"QEMU exited with {process.returncode} before ready:\n{console.tail()}")
            if sip_answer is None:
                sip_answer = sip_options(sip_port)
                sip_at = time.monotonic()
            if page is None:
                page = web_page(http_port)
                web_at = time.monotonic()
            if sip_answer is None or page is None:
                time.sleep(POLL_INTERVAL_S)
        assert sip_answer is not None, (
            f"no SIP answer within {READY_BOUND_S:.0f} s:\n{console.tail()}")
        assert page is not None, (
            f"the web UI served no page within {READY_BOUND_S:.0f} s:\n{console.tail()}")
        memory = "" if power_cut else idle_memory(
            console, process_started=started, ready_s=max(sip_at, web_at) - started)
    finally:
        if power_cut:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=QEMU_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=QEMU_STOP_TIMEOUT_S)
        reader.join(timeout=QEMU_STOP_TIMEOUT_S)
    return Boot(console=console, started=started, sip_answer=sip_answer, sip_at=sip_at,
                page_path=page[0], page_body=page[1], web_at=web_at, memory=memory)


def blank_disk(path: Path) -> Path:
    """A sparse, empty raw disk: the data partition of a box's first boot."""
    with path.open("wb") as disk:
        disk.truncate(DATA_DISK_BYTES)
    return path


@pytest.mark.timeout(BUILD_TIMEOUT_S + READY_BOUND_S + 60)
def test_smoke_image_boots_to_sip_and_web_ready_on_aarch64(smoke_image: Path) -> None:
    boot = boot_until_ready(smoke_image, blank_disk(smoke_image / "first-boot-data.img"))
    console = boot.console
    assert boot.page_path in ("/setup", "/login"), f"the web UI's first page: {boot.page_path}"
    assert "<form" in boot.page_body, "the web UI's first-run/login page has no form"
    init = console.first(r"^smoke-init: /init at ")
    assert init, f"the smoke image's /init never ran:\n{console.tail()}"
    assert init[1].endswith(" aarch64"), f"not a 64-bit ARM kernel: {init[1]}"
    service = console.first(r"linebox-init: starting: exec (?:env \S+ )?linebox run")
    assert service, f"the box's init scripts did not start the gateway:\n{console.tail()}"
    assert console.first(r"linebox-init: first boot: creating the data file system on /dev/vda")
    assert console.first(r"^First start: created department"), "no first-start seeding"
    ready = boot.ready_s
    guest_uptime = re.search(r"at ([0-9.]+) s of uptime", init[1])
    print(f"\nsmoke boot ({QEMU} -M virt, cortex-a72 x2, TCG, first boot): "
          f"kernel to /init {boot.since_start(init)} "
          f"(guest uptime {guest_uptime.group(1) if guest_uptime else '?'} s), "
          f"`linebox run` started at {boot.since_start(service)}, "
          f"daemon listening at {boot.since_start(console.first(r'firmware.daemon: SIP on '))}, "
          f"web UI listening at {boot.since_start(console.first(r'linebox.web: web UI on '))}, "
          f"SIP OPTIONS (TCP) answered at {boot.sip_at - boot.started:.1f} s "
          f"({boot.sip_answer}), web UI {boot.page_path} served at "
          f"{boot.web_at - boot.started:.1f} s; boot to ready {ready:.1f} s "
          f"(target {READY_TARGET_S:.0f} s: "
          f"{'met' if ready <= READY_TARGET_S else f'missed by {ready - READY_TARGET_S:.1f} s'})")
    print(f"smoke idle memory: {boot.memory}")
    pss = PSS_REPORT.search(boot.memory)
    if pss:
        pss_mb = int(pss.group(1)) / 1024
        print(f"smoke idle RAM (daemon + web UI, PSS) {pss_mb:.1f} MB (target "
              f"{IDLE_RAM_TARGET_MB:.0f} MB: "
              f"{'met' if pss_mb < IDLE_RAM_TARGET_MB else 'missed'})")
    assert pss, f"the guest reported no idle memory: {boot.memory}"
    assert ready < READY_BOUND_S


@pytest.mark.timeout(BUILD_TIMEOUT_S + 2 * READY_BOUND_S + 60)
def test_smoke_image_data_partition_survives_a_power_cut(smoke_image: Path) -> None:
    disk = blank_disk(smoke_image / "power-cut-data.img")
    first = boot_until_ready(smoke_image, disk, power_cut=True)
    assert first.console.first(r"^First start: created department"), first.console.tail()
    second = boot_until_ready(smoke_image, disk)
    console = second.console
    checked = console.first(r"linebox-init: (e2fsck|fsck\.ext4) /dev/vda: exit [0-3]$")
    assert checked, f"the data partition was not checked after the power cut:\n{console.tail()}"
    assert not console.first(r"/data is in RAM"), console.tail()
    assert not console.first(r"first boot: creating the data file system"), console.tail()
    assert not console.first(r"^First start: created department"), (
        f"the database made on the first boot was lost:\n{console.tail()}")
    print(f"\nsmoke power cut: first boot ready in {first.ready_s:.1f} s, QEMU killed; "
          f"second boot: {checked[1].removeprefix('linebox-init: ')} at "
          f"{second.since_start(checked)}, ready in {second.ready_s:.1f} s")
