"""Network namespaces a test makes, and a SIP provider that answers OPTIONS inside one.

`office_and_provider()` builds two namespaces joined by a veth pair, as an office box and its
internet: the box (`v0`, 10.9.0.1/24, default route via 10.9.0.2) and the provider's side (`v1`,
10.9.0.2/24, with the provider's own address PROVIDER_HOST on its loopback). The provider is
reachable from the box only through that default route, so deleting the route or setting `v0`
down cuts it off as an outage would. Each namespace is held by a `sleep` under `unshare -n`;
every program run inside goes through `nsenter -t PID -n`. Nothing touches the host's network:
each command first checks that its target namespace is not the test's own, and the namespaces
vanish with the processes the context manager kills on the way out.

`python -m tests.e2e.netns respond HOST PORT` is the provider: it answers every OPTIONS with
200 OK (RFC 3261 §11.2) and prints one line per answer, so a test can count the probes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
BOX_HOST = "10.9.0.1"
GATEWAY_HOST = "10.9.0.2"
PROVIDER_HOST = "198.51.100.10"  # TEST-NET-2 (RFC 5737): never a real provider
COMMAND_TIMEOUT_S = 10.0
SETUP_TIMEOUT_S = 5.0
KILL_TIMEOUT_S = 5.0
RESPONDER_READY = "answering OPTIONS"


def namespaces_available() -> bool:
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("unshare", "nsenter", "ip"))


def _netns_of(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


class Namespace:
    """A network namespace held open by a `sleep` under `unshare -n`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"],
                                        stdin=subprocess.DEVNULL)
        self._started: list[subprocess.Popen[bytes]] = []
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        # unshare makes the namespace, then execs sleep: until then the pid is in ours.
        while _netns_of(self._holder.pid) == _netns_of("self"):
            if time.monotonic() > deadline or self._holder.poll() is not None:
                self.close()
                raise RuntimeError(f"namespace {name}: unshare -n did not make one")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        return self._holder.pid

    def prefix(self) -> list[str]:
        """The argv prefix that runs a program inside (nsenter execs it: same pid)."""
        self._check()
        return ["nsenter", "-t", str(self.pid), "-n", "--"]

    def ip(self, *args: str) -> None:
        """`ip ARGS` inside, bounded in time; a failure raises with ip's message."""
        result = subprocess.run([*self.prefix(), "ip", *args], capture_output=True, text=True,
                                timeout=COMMAND_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: ip {' '.join(args)}: {result.stderr.strip()}")

    def popen(self, argv: Sequence[str], *, stdout: IO[bytes] | int | None = None
              ) -> subprocess.Popen[bytes]:
        """A program inside, killed by close() if it still runs."""
        process = subprocess.Popen([*self.prefix(), *argv], cwd=REPO_ROOT, stdout=stdout,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._started.append(process)
        return process

    def close(self) -> None:
        for process in [*self._started, self._holder]:
            if process.poll() is None:
                process.kill()
            # Never wait unbounded: a process that outlives this shows in the caller's checks.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=KILL_TIMEOUT_S)

    def _check(self) -> None:
        # Never run a command in the test's own namespace (the holder gone, its pid reused).
        if self._holder.poll() is not None or _netns_of(self.pid) == _netns_of("self"):
            raise RuntimeError(f"namespace {self.name} is gone")


@contextmanager
def office_and_provider(log_dir: Path, provider_port: int = 5060
                        ) -> Iterator[tuple[Namespace, Namespace, Path]]:
    """(box namespace, provider namespace, the provider's log), wired as the module says."""
    box = Namespace("box")
    net: Namespace | None = None
    try:
        net = Namespace("provider")
        box.ip("link", "set", "lo", "up")
        box.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", str(net.pid))
        box.ip("addr", "add", f"{BOX_HOST}/24", "dev", "v0")
        box.ip("link", "set", "v0", "up")
        net.ip("link", "set", "lo", "up")
        net.ip("addr", "add", f"{PROVIDER_HOST}/32", "dev", "lo")
        net.ip("addr", "add", f"{GATEWAY_HOST}/24", "dev", "v1")
        net.ip("link", "set", "v1", "up")
        box.ip("route", "add", "default", "via", GATEWAY_HOST)
        log = log_dir / "provider.log"
        with log.open("wb") as out:
            net.popen([sys.executable, "-u", "-m", "tests.e2e.netns", "respond", PROVIDER_HOST,
                       str(provider_port)], stdout=out)
        wait_for_line(log, RESPONDER_READY, SETUP_TIMEOUT_S)
        yield box, net, log
    finally:
        if net is not None:
            net.close()
        box.close()


def wait_for_line(path: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not in {path} within {timeout_s} s:\n{path.read_text()}")


def answered_probes(log: Path) -> int:
    return log.read_text(errors="replace").count("200 OK to ")


# --- the provider, run inside its namespace -----------------------------------------------------

def _answer(request: bytes) -> bytes | None:
    head = request.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
    if not head[0].startswith("OPTIONS "):
        return None
    copied = [line for line in head[1:]
              if line.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")]
    copied = [line + ";tag=netns-provider" if line.lower().startswith("to:") else line
              for line in copied]
    return "\r\n".join(["SIP/2.0 200 OK", *copied, "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS",
                        "Content-Length: 0", "", ""]).encode()


def respond(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, port))
        print(f"{RESPONDER_READY} on {host}:{port}", flush=True)
        while True:
            data, source = sock.recvfrom(65535)
            answer = _answer(data)
            if answer is not None:
                sock.sendto(answer, source)  # to the source, as rport asks (RFC 3581)
                call_id = next((line.split(":", 1)[1].strip() for line in
                                data.decode("utf-8", "replace").split("\r\n")
                                if line.lower().startswith("call-id:")), "")
                print(f"{time.time():.3f} 200 OK to {source[0]}:{source[1]} {call_id}",
                      flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["respond"] and len(sys.argv) == 4:
        respond(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("usage: python -m tests.e2e.netns respond HOST PORT")
