"""The network monitor's netlink sockets are not leaked when the second cannot be made.

A child process (its file descriptor limit is its own) fills its descriptor table up to a
limit, leaves k slots free and runs a `NetworkMonitor`: for small k the monitor runs out of
descriptors while it opens its thread's event loop or its sockets (EMFILE, a real error from
the kernel). One of those k is the case that matters: the event socket made, the query socket
not. Whatever k, once `run()` has ended, no netlink socket is left open.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 60

CHILD = r"""
import asyncio, json, os, resource, traceback
from hal.netmon import NetworkMonitor

resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
loop = asyncio.new_event_loop()  # the caller's loop, made while descriptors are left

def netlink_sockets():
    with open("/proc/self/net/netlink") as table:
        inodes = {f"socket:[{line.split()[-1]}]" for line in table.read().splitlines()[1:]}
    return [fd for fd in os.listdir("/proc/self/fd")
            if os.path.realpath(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1] in inodes]

def fill_leaving(free):
    fillers = []
    while True:
        try:
            fillers.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            break
    for fd in fillers[-free:]:
        os.close(fd)
    return fillers[:-free]

report = []
for free in range(1, 8):
    fillers = fill_leaving(free)
    outcome, second_failed = "ran", False
    try:
        loop.run_until_complete(asyncio.wait_for(NetworkMonitor(lambda fact: None).run(), 0.5))
    except TimeoutError:
        pass
    except OSError as exc:
        outcome = str(exc)
        second_failed = any(frame.name == "_watch" and "RtnlSocket()" in (frame.line or "")
                            for frame in traceback.extract_tb(exc.__traceback__))
    for fd in fillers:
        os.close(fd)
    report.append({"free": free, "outcome": outcome, "second_failed": second_failed,
                   "netlink_open": len(netlink_sockets())})
print(json.dumps(report))
"""


@pytest.mark.skipif(not hasattr(socket, "AF_NETLINK"), reason="netlink is Linux's")
def test_no_netlink_socket_is_left_open_when_the_second_cannot_be_made() -> None:
    child = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True,
                           text=True, timeout=CHILD_TIMEOUT_S, check=False)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert any(case["second_failed"] for case in report), report  # the case that matters ran
    assert [case["netlink_open"] for case in report] == [0] * len(report), report
