"""Idle memory of the gateway (issue 13's budget: daemon + web UI under 80 MB), and the network
monitor's netlink reader against the library it replaced, in the same run.

1. `linebox run --http` on loopback with a fresh database: once SIP and the web UI answer and
   IDLE_S more seconds have passed, each process's PSS (shared pages counted once between them)
   and RSS from /proc; their PSS sum is printed beside the 80 MB target.
2. The netlink reader: a fresh interpreter's RSS after `import hal.netmon` (Linebox's own
   rtnetlink codec, hal/rtnl.py) against one after `from pyroute2 import AsyncIPRoute` (the
   named peer, pyroute2 0.9.7 from the bench extra), over the floor of an interpreter that has
   imported asyncio (both need it, and the daemon has it anyway: it alone adds ~10 MB RSS here,
   libssl's pages mostly); printed with the ratio of what each import adds.

    python bench/idle_memory.py [--idle-s 5] [--no-json]

This host's x86-64 CPython is not the box's aarch64 one: the figures compare, they are not the
box's (tests/image/test_smoke_qemu.py prints the guest's). Every wait is bounded; the daemon is
stopped in `finally` (it stops its web UI).
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
TARGET_MB = 80.0
READY_TIMEOUT_S = 60.0
POLL_S = 0.2
STOP_TIMEOUT_S = 15.0
IMPORT_TIMEOUT_S = 60.0
RSS_PROBE = ("import sys\n{statement}\n"
             "rss = next(line.split()[1] for line in open('/proc/self/status')\n"
             "           if line.startswith('VmRSS:'))\n"
             "print(rss, len(sys.modules))")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_kb(pid: int, field: str, source: str = "status") -> int:
    for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/{source}")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def web_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def measure_gateway(idle_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="linebox-idle-") as directory:
        db = Path(directory) / "linebox.db"
        http = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "firmware", "run", "--db", str(db),
             "--sip", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{http}"],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL)
        try:
            started = time.monotonic()
            while not (db.with_suffix(".sock").exists() and web_answers(http)):
                if process.poll() is not None:
                    raise RuntimeError(f"linebox run exited with {process.returncode}")
                if time.monotonic() - started > READY_TIMEOUT_S:
                    raise RuntimeError(f"not ready in {READY_TIMEOUT_S:.0f} s")
                time.sleep(POLL_S)
            ready_s = time.monotonic() - started
            time.sleep(idle_s)
            web = children(process.pid)
            if len(web) != 1:
                raise RuntimeError(f"expected one web UI process, found {web}")
            figures = {}
            for name, pid in (("daemon", process.pid), ("web_ui", web[0])):
                figures[name] = {"pss_kb": status_kb(pid, "Pss", "smaps_rollup"),
                                 "rss_kb": status_kb(pid, "VmRSS")}
            return {"ready_s": ready_s, **figures,
                    "pss_total_kb": figures["daemon"]["pss_kb"] + figures["web_ui"]["pss_kb"]}
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)


def import_rss(statement: str) -> tuple[int, int]:
    """(RSS in kB, modules) of a fresh interpreter after `statement`."""
    result = subprocess.run(
        [sys.executable, "-c", RSS_PROBE.format(statement=statement)], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S, check=True)
    rss, modules = result.stdout.split()
    return int(rss), int(modules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)

    gateway = measure_gateway(args.idle_s)
    total_mb = gateway["pss_total_kb"] / 1024
    print(f"idle gateway ({platform.machine()}, CPython {platform.python_version()}, "
          f"{args.idle_s:.0f} s after ready at {gateway['ready_s']:.1f} s):")
    for name in ("daemon", "web_ui"):
        print(f"  {name:7s} PSS {gateway[name]['pss_kb'] / 1024:6.1f} MB  "
              f"RSS {gateway[name]['rss_kb'] / 1024:6.1f} MB")
    print(f"  total   PSS {total_mb:6.1f} MB (target {TARGET_MB:.0f} MB: "
          f"{'met' if total_mb < TARGET_MB else 'missed'})")

    floor, floor_modules = import_rss("import asyncio")
    ours, ours_modules = import_rss("import hal.netmon")
    try:
        peer, peer_modules = import_rss("from pyroute2 import AsyncIPRoute")
    except subprocess.CalledProcessError:
        peer = peer_modules = 0
        print("pyroute2 is not installed (pip install -e '.[bench]'): no peer figure")
    ours_added = ours - floor
    print("netlink reader, RSS an interpreter with asyncio adds by importing it:")
    print(f"  hal.netmon (hal/rtnl.py)   +{ours_added / 1024:5.1f} MB, "
          f"{ours_modules - floor_modules} modules")
    result: dict[str, Any] = {"when": datetime.now().isoformat(timespec="seconds"),
                              "machine": platform.machine(), "gateway": gateway,
                              "import_rss_kb": {"floor": floor, "hal.netmon": ours}}
    if peer:
        peer_added = peer - floor
        print(f"  pyroute2 AsyncIPRoute      +{peer_added / 1024:5.1f} MB, "
              f"{peer_modules - floor_modules} modules")
        print(f"  ratio Linebox/pyroute2: {ours_added / max(peer_added, 1):.2f}")
        result["import_rss_kb"]["pyroute2"] = peer
    if not args.no_json:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"idle_memory-{datetime.now():%Y%m%d-%H%M%S}.json"
        out.write_text(json.dumps(result, indent=2))
        print(f"written {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
