"""What-if replay speed: a year of a 30-member office's calls (about 100,000) replayed per variant.

Target (issue 17): one replay of a year under 30 s on this machine. The records are generated
(seeded) straight into a real Store — calls over 250 working days, 9:00 to 18:00, Poisson
arrivals; 30 members with their own answer probabilities and delays, lunch breaks and a little
do-not-disturb in the status log; rings written as call legs — then read back by the replay's
own loader, fitted, and replayed once per variant (as configured, ring_all, weighted with
uneven weights, one member fewer). The reference, measured in the same run: the routing core's
decisions alone — one `strategies.plan` per call over the same department with the same
snapshot builder — the floor under any replay that asks the routing core, so the ratio says what
the simulation around the decisions costs.

    python bench/whatif.py [--calls 100000] [--seed 1] [--seeds-check 0]

`--seeds-check N` also runs the N-seed summary of one variant (the web UI's default is 20) and
prints its time. Bounded: every loop is bounded by --calls; one run takes a few minutes at most.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from firmware.agents import AgentBook  # noqa: E402
from firmware.routing import strategies  # noqa: E402
from firmware.routing.model import CallFacts, RoutingMemory  # noqa: E402
from firmware.routing.snapshot import department_snapshot, member_state  # noqa: E402
from firmware.store import Store  # noqa: E402
from firmware.store.config import parse_config  # noqa: E402
from firmware.whatif.behaviour import fit  # noqa: E402
from firmware.whatif.history import load_history  # noqa: E402
from firmware.whatif.replay import Replay  # noqa: E402
from firmware.whatif.summary import run_variants  # noqa: E402
from firmware.whatif.variants import make_variant  # noqa: E402

MEMBERS = [str(101 + i) for i in range(30)]
TARGET_S = 30.0
START = datetime(2025, 1, 1, tzinfo=UTC)


def office_config() -> dict[str, object]:
    return {
        "extensions": [{"number": m, "name": f"Manager {m}", "password": f"secret-{m}-pw"}
                       for m in MEMBERS],
        "departments": [{
            "number": "200", "name": "Sales", "strategy": "longest_idle", "ring_timeout_s": 15,
            "members": MEMBERS, "wrap_up_s": 10,
            "queue": {"max_callers": 20, "max_wait_s": 180, "retry_s": 5},
        }],
        "trunks": [{"name": "provider", "host": "sip.example.ru", "register": False,
                    "channels": 30}],
        "numbers": [{"number": "+74950000200", "trunk": "provider", "channels": 30,
                     "destination": "200"}],
    }


def generate(store: Store, calls: int, seed: int) -> tuple[float, float]:
    """`calls` calls over 250 working days into `store`; the period (since, until)."""
    rng = random.Random(seed)
    answer_p = {m: rng.uniform(0.6, 0.97) for m in MEMBERS}
    days = []
    day = START
    while len(days) < 250:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    per_hour = calls / (250 * 9)
    batch: list[tuple[dict[str, object], list[dict[str, object]]]] = []
    statuses: list[tuple[str, str, str | None, float, str]] = []
    made = 0
    for day in days:
        opens = day.replace(hour=9).timestamp()
        at = opens
        for member in MEMBERS:  # lunch, and now and then a quarter hour of DND
            lunch = day.replace(hour=12).timestamp() + rng.uniform(0, 7200)
            statuses += [(member, "break", "lunch", lunch, "phone"),
                         (member, "on_line", None, lunch + 3600, "phone")]
            if rng.random() < 0.2:
                dnd = opens + rng.uniform(0, 8 * 3600)
                statuses += [(member, "dnd", None, dnd, "phone"),
                             (member, "on_line", None, dnd + 900, "phone")]
        while made < calls:
            at += rng.expovariate(per_hour / 3600.0)
            if at >= opens + 9 * 3600:
                break
            made += 1
            order = rng.sample(MEMBERS, 3)
            legs: list[dict[str, object]] = []
            clock = at
            call_id = f"c{made}"
            answered_by = None
            for member in order:
                delay = rng.uniform(1.0, 12.0)
                if rng.random() < answer_p[member] and delay < 15.0:
                    legs.append({"call_id": call_id, "target": member, "contact": "",
                                 "started_at": clock, "answered_at": clock + delay,
                                 "ended_at": clock + delay,
                                 "result": "answered"})
                    answered_by = member
                    clock += delay
                    break
                legs.append({"call_id": call_id, "target": member, "contact": "",
                             "started_at": clock, "ended_at": clock + 15.0,
                             "result": "no_answer"})
                clock += 15.0
            talk = rng.expovariate(1 / 180.0)
            # Half the callers nobody answered hung up themselves (the rest went on to the
            # no-answer action): the replay's patience comes from them.
            gave_up = answered_by is None and rng.random() < 0.5
            batch.append(({
                "id": call_id, "started_at": at, "direction": "inbound",
                "source": "provider", "caller": f"7916{rng.randrange(10**6, 10**7)}",
                "dialed": "+74950000200", "number": "+74950000200", "department": "200",
                "answered_by": answered_by,
                "answered_at": clock if answered_by else None,
                "ended_at": clock + talk if answered_by else clock,
                "outcome": "answered" if answered_by else "missed",
                "end_cause": ("hangup by caller" if answered_by else
                              "caller cancelled" if gave_up else "no answer"),
                "waited_s": 0.0, "talk_s": talk if answered_by else None,
                "target_call": int(answered_by is not None and rng.random() < 0.4),
                "sale": 0,
            }, legs))
            if len(batch) >= 5000:
                store.record_finished_calls(batch)
                batch = []
    store.record_finished_calls(batch)
    with store.db.conn:  # the status log in one transaction (a year of it, ~30,000 rows)
        store.db.conn.executemany(
            "INSERT INTO agent_status_log (extension, status, reason, at, source)"
            " VALUES (?, ?, ?, ?, ?)", sorted(statuses, key=lambda row: row[3]))
    return START.timestamp(), (days[-1] + timedelta(days=1)).timestamp()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds-check", type=int, default=0)
    args = parser.parse_args()
    if not 100 <= args.calls <= 1_000_000:
        parser.error("--calls from 100 to 1,000,000")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "year.db")
        store.replace_config(parse_config(office_config()))
        started = time.perf_counter()
        since, until = generate(store, args.calls, args.seed)
        print(f"generated {args.calls} calls over 250 working days "
              f"({time.perf_counter() - started:.1f} s)")

        started = time.perf_counter()
        history = load_history(store, "200", since, until, tz=UTC)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        behaviour = fit(history)
        fit_s = time.perf_counter() - started
        print(f"load_history: {len(history.calls)} calls, {len(history.rings)} rings, "
              f"{len(history.status_changes)} status changes in {load_s:.2f} s; "
              f"fit {fit_s:.2f} s")

        # The reference: the routing core's decisions alone, one per call.
        department = history.department
        book = AgentBook(started_at=since)
        memory = RoutingMemory()
        rng = random.Random(1)
        started = time.perf_counter()
        for call in history.calls:
            snapshot = department_snapshot(department, [
                member_state(m, book.agent(m.extension), registered=True, ringing=False)
                for m in department.members])
            strategies.plan(snapshot, CallFacts(caller=call.caller, dialed="200"), memory,
                            call.at, rng=rng)
        decisions_s = time.perf_counter() - started
        print(f"reference: {len(history.calls)} routing decisions alone: {decisions_s:.2f} s")

        variants = [
            make_variant(history.config, "200", [], name="as configured"),
            make_variant(history.config, "200", [("strategy", "ring_all")]),
            make_variant(history.config, "200", [("strategy", "weighted"), *[
                (f"weight.{m}", "6" if i < 10 else "2") for i, m in enumerate(MEMBERS)]]),
            make_variant(history.config, "200", [("remove", MEMBERS[-1])]),
        ]
        print(f"\n{'variant':<28} {'replay s':>9} {'target':>7} {'calls/s':>8} "
              f"{'x decisions':>11} {'answered':>9}")
        worst = 0.0
        for variant in variants:
            started = time.perf_counter()
            result = Replay(history, behaviour, variant.department, seed=1,
                            added=variant.added).run()
            elapsed = time.perf_counter() - started
            worst = max(worst, elapsed)
            name = variant.name if len(variant.name) <= 28 else variant.name[:25] + "..."
            print(f"{name:<28} {elapsed:>9.2f} {TARGET_S:>6.0f}s {result.offered / elapsed:>8.0f} "
                  f"{elapsed / decisions_s:>11.1f} {result.answered / result.offered:>9.1%}")
        print(f"\nslowest variant: {worst:.2f} s per replay of a year "
              f"({'passes' if worst < TARGET_S else 'MISSES'} the {TARGET_S:.0f} s target); "
              f"peak RSS {peak_rss_mb():.0f} MB")
        if args.seeds_check:
            started = time.perf_counter()
            run_variants(history, variants[:1], seeds=args.seeds_check, behaviour=behaviour)
            print(f"{args.seeds_check} seeds of one variant: "
                  f"{time.perf_counter() - started:.1f} s")
        store.close()
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
