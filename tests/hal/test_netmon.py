"""The network monitor against the real kernel, in a network namespace each test makes.

Each test runs this file as a child process under `unshare -n` (we run as root): inside, a
veth pair `v0`/`v1` with 10.9.0.1/24 on `v0` and a default route via 10.9.0.2; the child starts
a `NetworkMonitor`, changes the network with `ip`, waits (at most WAIT_S) for the facts, and
prints them as JSON with the time from the `ip` command to the fact. Nothing leaves the
namespace, which vanishes with the child.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 5.0  # the child gives up on a fact after this long
CHILD_TIMEOUT_S = 30.0
ROUTE_LOSS_BOUND_S = 3.0  # the issue: reserve line within 3 s of a default-route loss
SETUP = (
    "ip link set lo up",
    "ip link add v0 type veth peer name v1",
    "ip link set v1 up",
    "ip addr add 10.9.0.1/24 dev v0",
    "ip link set v0 up",
    "ip route add default via 10.9.0.2",
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs root, unshare and ip to make a network namespace",
)


def run_in_namespace(scenario: str) -> dict[str, Any]:
    result = subprocess.run(
        ["unshare", "-n", sys.executable, __file__, scenario],
        cwd=REPO, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def kinds(outcome: dict[str, Any]) -> list[str]:
    return [fact["kind"] for fact in outcome["facts"]]


def test_the_initial_state_reports_the_default_route_present() -> None:
    outcome = run_in_namespace("start")
    assert kinds(outcome) == ["DefaultRoutePresent"]


def test_the_initial_state_without_a_default_route_reports_it_lost() -> None:
    outcome = run_in_namespace("start_without_route")
    assert kinds(outcome) == ["DefaultRouteLost"]


def test_deleting_the_default_route_is_reported_within_3_s() -> None:
    outcome = run_in_namespace("route_deleted")
    print(f"\ndefault route deleted -> DefaultRouteLost in {outcome['elapsed_s'] * 1000:.1f} ms")
    assert kinds(outcome) == ["DefaultRouteLost"]
    assert outcome["elapsed_s"] < ROUTE_LOSS_BOUND_S


def test_a_link_going_down_reports_the_link_and_the_route_it_took_with_it() -> None:
    # The kernel sends no RTM_DELROUTE here: the loss is found by re-reading the routes.
    outcome = run_in_namespace("link_down")
    print(f"\nlink down -> DefaultRouteLost in {outcome['elapsed_s'] * 1000:.1f} ms")
    # v1 loses its carrier with its peer: reported too.
    assert sorted(map(json.dumps, outcome["facts"])) == sorted(map(json.dumps, [
        {"kind": "LinkWentDown", "name": "v0"}, {"kind": "DefaultRouteLost"},
        {"kind": "LinkWentDown", "name": "v1"}]))
    assert outcome["elapsed_s"] < ROUTE_LOSS_BOUND_S


def test_a_default_route_added_again_is_reported_present() -> None:
    outcome = run_in_namespace("route_back")
    assert kinds(outcome) == ["DefaultRouteLost", "DefaultRoutePresent"]


def test_a_global_address_added_is_reported() -> None:
    outcome = run_in_namespace("address_added")
    assert outcome["facts"] == [{"kind": "AddressChanged", "link": "v0",
                                 "address": "10.9.1.7", "added": True}]


def test_outgoing_calls_switch_to_the_reserve_line_within_3_s_of_a_route_loss() -> None:
    outcome = run_in_namespace("failover")
    print(f"\ndefault route removed -> outgoing calls via {outcome['outbound']} in "
          f"{outcome['elapsed_s'] * 1000:.1f} ms")
    assert outcome["outbound"] == "mts"
    assert outcome["elapsed_s"] < ROUTE_LOSS_BOUND_S


# --- the child, inside the namespace ------------------------------------------------------------

def _ip(*commands: str) -> None:
    for command in commands:
        subprocess.run(command.split(), check=True)


async def _child(scenario: str) -> dict[str, Any]:
    from firmware.failover import FailoverMonitor, FailoverSettings
    from hal.netmon import NetworkFact, NetworkMonitor, deliver

    _ip(*(SETUP[:-1] if scenario == "start_without_route" else SETUP))
    loop = asyncio.get_running_loop()
    facts: list[tuple[float, NetworkFact]] = []
    failover = FailoverMonitor(FailoverSettings(order=("provider", "mts")),
                               sip_lines=["provider"], now=loop.time())
    failover.line_went_up("mts", loop.time())
    switched_at: list[float] = []
    changed = asyncio.Event()

    def on_fact(fact: NetworkFact) -> None:
        facts.append((loop.time(), fact))
        deliver(fact, failover)
        if failover.outbound_line == "mts" and not switched_at:
            switched_at.append(loop.time())
        changed.set()

    monitor = NetworkMonitor(on_fact)
    task = asyncio.create_task(monitor.run())
    await asyncio.wait_for(monitor.started.wait(), WAIT_S)
    if scenario not in ("start", "start_without_route"):
        facts.clear()

    async def act(command: str, until: Callable[[], bool]) -> float:
        started = loop.time()
        _ip(command)
        deadline = started + WAIT_S
        while not until() and loop.time() < deadline:
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), deadline - loop.time())
            except TimeoutError:
                break
        return started

    def has(kind: str) -> Callable[[], bool]:
        return lambda: any(type(fact).__name__ == kind for _, fact in facts)

    started = loop.time()
    if scenario in ("route_deleted", "failover"):
        started = await act("ip route del default", has("DefaultRouteLost"))
    elif scenario == "link_down":
        started = await act("ip link set v0 down", has("DefaultRouteLost"))
    elif scenario == "route_back":
        await act("ip route del default", has("DefaultRouteLost"))
        await act("ip route add default via 10.9.0.2", has("DefaultRoutePresent"))
    elif scenario == "address_added":
        await act("ip addr add 10.9.1.7/24 dev v0", has("AddressChanged"))
    await asyncio.sleep(0.2)  # anything that would follow (it must not) has arrived by now
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    last_at = facts[-1][0] if facts else started
    return {
        "facts": [{"kind": type(fact).__name__,
                   **{k: v for k, v in dataclasses.asdict(fact).items() if k != "at"}}
                  for _, fact in facts],
        "elapsed_s": (switched_at[0] if scenario == "failover" and switched_at else last_at)
        - started,
        "outbound": failover.outbound_line,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(asyncio.wait_for(_child(sys.argv[1]), CHILD_TIMEOUT_S))))
