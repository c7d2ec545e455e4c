"""Routing core: decision latency per strategy, and a simulated office day through the strategies.

(1) Latency: for each strategy, ring-plan decisions for a 100-member department (about 85 % of
members available, states varying from decision to decision, the department's routing memory
carried across decisions, the garbage collector tuned as the daemon tunes it), after a warm-up:
3 rounds of 10,000 decisions, the strategies interleaved, each reporting its best round's
p50/p99/max in µs and the worst round's p99; a strategy passes with p99 under 100 µs. This runs
on shared machines whose timing noise is large, so the same timer around a fixed pure-Python loop
of about a hunting decision's cost is printed as the reference: its p99/p50 is the noise alone.

(2) Office day: 10,000 calls arriving over 10 hours (seeded) at a 30-member department, run once
per strategy. Members go on break, do-not-disturb, lunch (logged out) and drop registration on a
seeded schedule; the plan is walked in time order and each offered member answers with their own
probability after a few seconds of ringing, if still within their ring window; the answering
member talks (exponential, mean 60 s), then wraps up (20 s), which updates last_call_ended_at,
talk_time_s and calls_answered for the next decisions. Prints each day's wall time (passes under
10 s) and fairness figures: per-member answered calls and talk time (coefficient of variation,
and the ratio to the `random` strategy as the reference spread), round robin's first-offer
spread, weighted first offers against their targets (the shares of the calls each member was
eligible for) next to nginx's smooth weighted round robin with raw counters as the reference, and
by_rank's concentration on the best ranks.

    python bench/routing.py [--decisions 10000] [--rounds 3] [--snapshots 8] [--calls 10000]
                            [--seed 1] [--only STRATEGY,...] [--no-json]

Pure Python, no I/O but a JSON summary in bench/results/; every loop is bounded by its inputs.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from firmware.cli import GC_THRESHOLDS  # noqa: E402  (needs the repository root on sys.path)
from firmware.routing.model import (  # noqa: E402
    BREAK,
    DND,
    LOGGED_OUT,
    ON_LINE,
    CallFacts,
    DepartmentSnapshot,
    MemberState,
    RoutingMemory,
)
from firmware.routing.plan import RingPlan  # noqa: E402
from firmware.routing.strategies import STRATEGIES, plan  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"

# (1) latency
LATENCY_MEMBERS = 100
LATENCY_DECISIONS = 10_000
LATENCY_WARMUP = 2_000
# Distinct department states cycled through (built before timing). The gateway builds a fresh
# snapshot for every decision, so it is in the CPU cache: 8 snapshots (~200 KB) stay there;
# `--snapshots 64` (~1.5 MB) shows the cold case.
LATENCY_SNAPSHOTS = 8
LATENCY_CALLS = 61
LATENCY_ROUNDS = 3
REFERENCE_NAME = "(fixed loop: noise)"
MAX_P99_US = 100.0
REFERENCE_LOOP = 1_200  # iterations of the fixed reference loop (~40 µs here)

# (2) office day
DAY_S = 10 * 3600.0
DAY_CALLS = 10_000
DAY_MEMBERS = 30
MAX_DAY_WALL_S = 10.0
RING_TIMEOUT_S = 20.0
MEMBER_RING_TIME_S = 15.0
TALK_MEAN_S = 60.0
TALK_MAX_S = 1800.0
WRAP_UP_S = 20.0
ANSWER_DELAY_S = (2.0, 10.0)
ANSWER_PROBABILITY = (0.55, 0.95)  # each member's own, drawn once
BREAKS_PER_DAY = 4
BREAK_S = (300.0, 900.0)
LUNCH_S = (1800.0, 3600.0)
DND_PER_DAY = 2
DND_S = (120.0, 600.0)
UNREGISTERED_PER_DAY = 1
UNREGISTERED_S = (30.0, 300.0)
CALLERS = 2_000  # distinct callers; repeat callers carry their last agent (sticky variant)
WEIGHTS = (40.0, 25.0, 15.0, 10.0, 5.0, 5.0)  # cycled over the members (weighted)
SKILLS = ("lang:en", "lang:de", "lang:fr")
HUNTING = frozenset({
    "in_order", "longest_idle", "round_robin", "by_rank", "least_talk_time", "fewest_calls",
    "random", "weighted",
})


# --- (1) decision latency ------------------------------------------------------------------------


def latency_members(rng: random.Random, now: float) -> tuple[MemberState, ...]:
    members = []
    for i in range(LATENCY_MEMBERS):
        roll = rng.random()
        members.append(MemberState(
            extension=str(1000 + i),
            ring_time_s=rng.choice((None, 10.0, 15.0)),
            registered=roll > 0.02,
            status=ON_LINE if roll > 0.07 else rng.choice((BREAK, DND, LOGGED_OUT)),
            busy=0.07 < roll < 0.12,
            wrap_up_until=now + 10 if 0.12 < roll < 0.15 else None,
            rank=rng.choice((None, 1, 2, 3, 4, 5)),
            tier=1 + i % 4,
            weight=WEIGHTS[i % len(WEIGHTS)],
            skills=frozenset(rng.sample(SKILLS, rng.randint(0, 2))),
            last_call_ended_at=None if rng.random() < 0.1 else now - rng.uniform(0, 3600),
            talk_time_s=rng.uniform(0, 7200),
            calls_answered=rng.randint(0, 80),
            conversion=None if rng.random() < 0.2 else rng.random(),
        ))
    return tuple(members)


@dataclass
class LatencyRow:
    name: str
    p50_us: float
    p99_us: float
    max_us: float
    worst_round_p99_us: float
    passed: bool


class LatencyCase:
    """One strategy's decisions: varied snapshots and calls, the memory carried across them."""

    def __init__(self, strategy: str, seed: int, snapshots: int, *, sticky: bool) -> None:
        rng = random.Random(seed)
        self.name = f"{strategy}+sticky" if sticky else strategy
        self.now = 50_000.0
        self.snapshots = [
            DepartmentSnapshot(number="200", strategy=strategy, ring_timeout_s=RING_TIMEOUT_S,
                               members=latency_members(rng, self.now))
            for _ in range(snapshots)
        ]
        self.calls = [
            CallFacts(caller=f"04412{k:05d}", dialed="200", attributes={"lang": "en"},
                      sticky_member=str(1000 + rng.randrange(LATENCY_MEMBERS)) if sticky else None)
            for k in range(LATENCY_CALLS)
        ]
        self.memory = RoutingMemory()

    def run(self, decisions: int) -> list[int]:
        """Nanoseconds per decision, sorted. `rng` stays at its default, as the gateway calls
        it: `random` pays for a fresh random.Random() every time."""
        timer = time.perf_counter_ns
        snapshots, calls, memory, now = self.snapshots, self.calls, self.memory, self.now
        samples = [0] * decisions
        for k in range(decisions):
            snapshot = snapshots[k % len(snapshots)]
            call = calls[k % LATENCY_CALLS]
            started = timer()
            plan(snapshot, call, memory, now)
            samples[k] = timer() - started
        samples.sort()
        return samples


def percentile_us(samples: list[int], fraction: float) -> float:
    return samples[min(len(samples) - 1, math.ceil(len(samples) * fraction) - 1)] / 1000


def reference_work() -> int:
    total = 0
    for i in range(REFERENCE_LOOP):
        total += i
    return total


def reference_run(decisions: int) -> list[int]:
    """The same timer around a fixed pure-Python loop of about a hunting decision's cost: its
    spread is this machine's timing noise (other tenants, frequency, interrupts), not ours."""
    timer = time.perf_counter_ns
    samples = [0] * decisions
    for k in range(decisions):
        started = timer()
        reference_work()
        samples[k] = timer() - started
    samples.sort()
    return samples


def measure_latency(names: list[tuple[str, bool]], args: argparse.Namespace) -> list[LatencyRow]:
    """`args.rounds` rounds of `args.decisions` decisions per case, the cases interleaved so a
    busy spell of the machine hits different cases in different rounds; each case reports its
    best round (lowest p99) and the worst round's p99."""
    cases = [LatencyCase(strategy, args.seed, args.snapshots, sticky=sticky)
             for strategy, sticky in names]
    for case in cases:
        case.run(LATENCY_WARMUP)
    reference_run(LATENCY_WARMUP)
    rounds: dict[str, list[list[int]]] = {case.name: [] for case in cases}
    rounds[REFERENCE_NAME] = []
    for _ in range(args.rounds):
        for case in cases:
            rounds[case.name].append(case.run(args.decisions))
        rounds[REFERENCE_NAME].append(reference_run(args.decisions))
    rows = []
    for name, runs in rounds.items():
        best = min(runs, key=lambda samples: percentile_us(samples, 0.99))
        p99 = percentile_us(best, 0.99)
        rows.append(LatencyRow(
            name, percentile_us(best, 0.50), p99, best[-1] / 1000,
            max(percentile_us(samples, 0.99) for samples in runs), p99 < MAX_P99_US,
        ))
    return rows


# --- (2) the office day --------------------------------------------------------------------------


@dataclass
class Agent:
    """One simulated member: configuration, an absence schedule, and the running figures."""

    extension: str
    answer_probability: float
    rank: int
    tier: int
    weight: float
    skills: frozenset[str]
    conversion: float
    absences: list[tuple[float, float, str]]  # (start, end, status|"unregistered"), sorted
    absence_starts: list[float] = field(default_factory=list)
    busy_until: float = 0.0
    wrap_up_until: float | None = None
    last_call_ended_at: float | None = None
    talk_time_s: float = 0.0
    calls_answered: int = 0
    first_offers: int = 0
    eligible_share: float = 0.0  # Σ weight / Σ available weights over the calls they could take
    reference_offers: int = 0  # nginx raw-counter reference (weighted)
    snapshot: MemberState | None = None
    snapshot_key: tuple[Any, ...] = ()

    def absence(self, now: float) -> str | None:
        index = bisect.bisect_right(self.absence_starts, now) - 1
        if index >= 0:
            start, end, what = self.absences[index]
            if start <= now < end:
                return what
        return None

    def state(self, now: float) -> MemberState:
        absence = self.absence(now)
        status = absence if absence in (BREAK, DND, LOGGED_OUT) else ON_LINE
        registered = absence != "unregistered"
        busy = now < self.busy_until
        wrap_up = self.wrap_up_until if self.wrap_up_until and self.wrap_up_until > now else None
        key = (status, registered, busy, wrap_up, self.last_call_ended_at, self.calls_answered)
        if self.snapshot is None or key != self.snapshot_key:
            self.snapshot_key = key
            self.snapshot = MemberState(
                extension=self.extension, ring_time_s=MEMBER_RING_TIME_S, registered=registered,
                status=status, busy=busy, wrap_up_until=wrap_up, rank=self.rank, tier=self.tier,
                weight=self.weight, skills=self.skills,
                last_call_ended_at=self.last_call_ended_at, talk_time_s=self.talk_time_s,
                calls_answered=self.calls_answered, conversion=self.conversion,
            )
        return self.snapshot


def absence_schedule(rng: random.Random) -> list[tuple[float, float, str]]:
    spans: list[tuple[float, float, str]] = []

    def add(count: int, length: tuple[float, float], what: str) -> None:
        for _ in range(count):
            start = rng.uniform(0, DAY_S)
            spans.append((start, start + rng.uniform(*length), what))

    add(BREAKS_PER_DAY, BREAK_S, BREAK)
    add(1, LUNCH_S, LOGGED_OUT)
    add(DND_PER_DAY, DND_S, DND)
    add(UNREGISTERED_PER_DAY, UNREGISTERED_S, "unregistered")
    spans.sort()
    # Overlaps: the earlier absence is cut short where the next begins.
    return [
        (start, min(end, spans[i + 1][0]) if i + 1 < len(spans) else end, what)
        for i, (start, end, what) in enumerate(spans)
    ]


def make_agents(rng: random.Random) -> list[Agent]:
    agents = []
    for i in range(DAY_MEMBERS):
        absences = absence_schedule(rng)
        agents.append(Agent(
            extension=str(101 + i),
            answer_probability=rng.uniform(*ANSWER_PROBABILITY),
            rank=1 + i % 5,
            tier=1 + i % 3,
            weight=WEIGHTS[i % len(WEIGHTS)],
            skills=frozenset({SKILLS[i % len(SKILLS)], "lang:en"} if i % 2 else {SKILLS[i % 3]}),
            conversion=rng.uniform(0.05, 0.4),
            absences=absences,
            absence_starts=[start for start, _, _ in absences],
        ))
    return agents


@dataclass
class DayResult:
    strategy: str
    wall_s: float
    decide_s: float
    answered: int
    missed: int
    no_agent: int
    sticky_hits: int
    answered_cv: float
    talk_cv: float
    first_offer_spread: int | None  # hunting strategies only
    mean_answer_s: float
    weighted_max_dev: float | None = None
    weighted_reference_max_dev: float | None = None
    weighted_shares: list[tuple[float, float, float]] = field(default_factory=list)
    top_rank_share: float | None = None
    passed: bool = True


def walk(result: RingPlan, agents: dict[str, Agent], arrival: float,
         rng: random.Random) -> tuple[Agent | None, float]:
    """Who answers, and when (seconds after arrival): each offered member rolls once."""
    windows: dict[str, list[float]] = {}
    for step in result.steps:
        for extension in step.stop:
            window = windows.get(extension)
            if window is not None and window[1] > step.at_s:
                window[1] = step.at_s
        for extension in step.start:
            windows[extension] = [step.at_s, result.give_up_at_s]
    winner: Agent | None = None
    best = math.inf
    for extension, (start, end) in windows.items():
        agent = agents[extension]
        if rng.random() < agent.answer_probability:
            answer = start + rng.uniform(*ANSWER_DELAY_S)
            if answer < end and answer < best:
                winner, best = agent, answer
    return winner, best


def nginx_reference_pick(available: list[MemberState], counters: dict[str, float]) -> str | None:
    """nginx's smooth WRR as nginx writes it: raw weights, the pick gives back their sum."""
    total = sum(m.weight for m in available if m.weight > 0)
    best: str | None = None
    best_value = 0.0
    for m in available:
        if m.weight > 0:
            value = counters.get(m.extension, 0.0) + m.weight
            counters[m.extension] = value
            if best is None or value > best_value:
                best, best_value = m.extension, value
    if best is not None:
        counters[best] = best_value - total
    return best


def office_day(strategy: str, calls: int, seed: int, *, sticky: bool = False) -> DayResult:
    rng = random.Random(seed)
    agents = make_agents(rng)
    by_extension = {agent.extension: agent for agent in agents}
    arrivals = sorted(rng.uniform(0, DAY_S) for _ in range(calls))
    callers = [f"0441{rng.randrange(CALLERS):06d}" for _ in range(calls)]
    languages = [rng.choice(("en", "en", "en", "de", "fr")) for _ in range(calls)]
    last_agent: dict[str, str] = {}
    memory = RoutingMemory()
    plan_rng = random.Random(seed + 1)
    walk_rng = random.Random(seed + 2)
    reference_counters: dict[str, float] = {}
    answered = missed = no_agent = sticky_hits = 0
    answer_delays: list[float] = []
    decide_ns = 0
    started = time.perf_counter()
    for arrival, caller, language in zip(arrivals, callers, languages, strict=True):
        states = tuple(agent.state(arrival) for agent in agents)
        snapshot = DepartmentSnapshot(
            number="200", strategy=strategy, ring_timeout_s=RING_TIMEOUT_S, members=states,
            step_delay_s=5.0, tier_time_s=15.0, sticky_ring_s=10.0,
        )
        facts = CallFacts(
            caller=caller, dialed="200", attributes={"lang": language},
            sticky_member=last_agent.get(caller) if sticky else None,
        )
        before = time.perf_counter_ns()
        result = plan(snapshot, facts, memory, arrival, rng=plan_rng)
        decide_ns += time.perf_counter_ns() - before
        if not result.steps:
            no_agent += 1
            continue
        first = result.steps[0].start
        if len(first) == 1:
            by_extension[first[0]].first_offers += 1
        if strategy == "weighted" and not sticky:
            available = [m for m in states if m.available(arrival)]
            eligible = sum(m.weight for m in available if m.weight > 0)
            for m in available:
                if m.weight > 0:
                    by_extension[m.extension].eligible_share += m.weight / eligible
            reference = nginx_reference_pick(available, reference_counters)
            if reference is not None:
                by_extension[reference].reference_offers += 1
        winner, delay = walk(result, by_extension, arrival, walk_rng)
        if winner is None:
            missed += 1
            continue
        answered += 1
        answer_delays.append(delay)
        if sticky and facts.sticky_member == winner.extension:
            sticky_hits += 1
        talk = min(rng.expovariate(1 / TALK_MEAN_S), TALK_MAX_S)
        end = arrival + delay + talk
        winner.busy_until = end
        winner.wrap_up_until = end + WRAP_UP_S
        winner.last_call_ended_at = end
        winner.talk_time_s += talk
        winner.calls_answered += 1
        last_agent[caller] = winner.extension
    wall_s = time.perf_counter() - started

    answered_counts = [agent.calls_answered for agent in agents]
    talk_times = [agent.talk_time_s for agent in agents]
    firsts = [agent.first_offers for agent in agents]
    day = DayResult(
        strategy=f"{strategy}+sticky" if sticky else strategy,
        wall_s=wall_s,
        decide_s=decide_ns / 1e9,
        answered=answered,
        missed=missed,
        no_agent=no_agent,
        sticky_hits=sticky_hits,
        answered_cv=coefficient_of_variation(answered_counts),
        talk_cv=coefficient_of_variation(talk_times),
        first_offer_spread=max(firsts) - min(firsts) if strategy in HUNTING else None,
        mean_answer_s=statistics.fmean(answer_delays) if answer_delays else 0.0,
        passed=wall_s < MAX_DAY_WALL_S,
    )
    if strategy == "weighted" and not sticky:
        day.weighted_max_dev = max(
            abs(memory.offered.get(a.extension, 0) - a.eligible_share) for a in agents
        )
        day.weighted_reference_max_dev = max(
            abs(a.reference_offers - a.eligible_share) for a in agents
        )
        for weight in sorted(set(WEIGHTS), reverse=True):
            group = [a for a in agents if a.weight == weight]
            day.weighted_shares.append((
                weight,
                sum(memory.offered.get(a.extension, 0) for a in group),
                sum(a.eligible_share for a in group),
            ))
    if strategy == "by_rank":
        best = sum(a.calls_answered for a in agents if a.rank == 1)
        day.top_rank_share = best / answered if answered else 0.0
    return day


def coefficient_of_variation(values: list[float] | list[int]) -> float:
    mean = statistics.fmean(values)
    return statistics.pstdev(values) / mean if mean else 0.0


# --- report --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=LATENCY_DECISIONS,
                        help="timed decisions per strategy (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=LATENCY_ROUNDS,
                        help="latency rounds per strategy, best reported (default %(default)s)")
    parser.add_argument("--snapshots", type=int, default=LATENCY_SNAPSHOTS,
                        help="distinct department states cycled (default %(default)s)")
    parser.add_argument("--calls", type=int, default=DAY_CALLS,
                        help="calls in the office day (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated strategies (default: all)")
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    strategies = [s for s in STRATEGIES if not args.only or s in args.only.split(",")]
    # The collector as the daemon runs it (firmware/cli.py): start-up objects frozen, young
    # collections automatic, older ones rare.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load:.2f} at start; gc thresholds {gc.get_threshold()} as the daemon")

    print(f"\n(1) decision latency: best of {args.rounds} rounds of {args.decisions} decisions"
          f" (after {LATENCY_WARMUP} warm-up), {args.snapshots} department states cycled;"
          f" target p99 < {MAX_P99_US:.0f} µs")
    print(f"{'strategy':<22}{'p50 µs':>9}{'p99 µs':>9}{'max µs':>9}{'worst p99':>11}  result")
    variants = [(s, False) for s in strategies]
    variants += [(s, True) for s in ("in_order", "weighted") if s in strategies]
    all_rows = measure_latency(variants, args)
    rows = [row for row in all_rows if row.name != REFERENCE_NAME]
    for row in all_rows:
        verdict = "PASS" if row.passed else "FAIL"
        if row.name == REFERENCE_NAME:
            verdict = f"reference: a constant workload, p99/p50 x{row.p99_us / row.p50_us:.1f}"
        print(f"{row.name:<22}{row.p50_us:>9.1f}{row.p99_us:>9.1f}{row.max_us:>9.1f}"
              f"{row.worst_round_p99_us:>11.1f}  {verdict}")

    print(f"\n(2) office day: {args.calls} calls over {DAY_S / 3600:.0f} h, {DAY_MEMBERS} members, "
          f"talk ~{TALK_MEAN_S:.0f} s, wrap-up {WRAP_UP_S:.0f} s; target wall < "
          f"{MAX_DAY_WALL_S:.0f} s per day")
    print(f"{'strategy':<22}{'wall s':>7}{'plan s':>7}{'answ':>6}{'miss':>6}{'none':>6}"
          f"{'ans CV':>8}{'talk CV':>8}{'1st spr':>8}{'answ s':>7}  result")
    days = []
    day_variants = [(s, False) for s in strategies]
    day_variants += [("longest_idle", True)] if "longest_idle" in strategies else []
    for strategy, sticky in day_variants:
        day = office_day(strategy, args.calls, args.seed, sticky=sticky)
        days.append(day)
        print(f"{day.strategy:<22}{day.wall_s:>7.2f}{day.decide_s:>7.2f}{day.answered:>6}"
              f"{day.missed:>6}{day.no_agent:>6}{day.answered_cv:>8.3f}{day.talk_cv:>8.3f}"
              f"{'-' if day.first_offer_spread is None else day.first_offer_spread:>8}"
              f"{day.mean_answer_s:>7.1f}  "
              f"{'PASS' if day.passed else 'FAIL'}")
    print("  answ/miss/none: answered, rang out, nobody available (would queue); ans CV / talk"
          " CV: spread of answered calls / talk time over members (stdev/mean); 1st spr: max-min"
          " first offers (hunting); answ s: mean ring time before answer")

    by_name = {day.strategy: day for day in days}
    reference = by_name.get("random")
    if reference is not None and reference.answered_cv:
        print("\n  fairness vs random (reference; < 1 = more even than random):")
        for day in days:
            if day.strategy != "random":
                answered_ratio = day.answered_cv / reference.answered_cv
                talk_ratio = day.talk_cv / reference.talk_cv
                print(f"    {day.strategy:<20} answered CV x{answered_ratio:.2f}"
                      f"   talk CV x{talk_ratio:.2f}")
    weighted = by_name.get("weighted")
    if weighted is not None and weighted.weighted_max_dev is not None:
        print("\n  weighted: first offers vs target (shares of the calls each could take)")
        for weight, offered, target in weighted.weighted_shares:
            print(f"    weight {weight:>4.0f}: offered {offered:>6.0f}   target {target:>8.1f}")
        print(f"    largest member deviation: Linebox {weighted.weighted_max_dev:.2f} calls;"
              f" reference nginx raw counters {weighted.weighted_reference_max_dev:.2f} calls")
    by_rank = by_name.get("by_rank")
    if by_rank is not None and by_rank.top_rank_share is not None:
        share_of_members = sum(1 for i in range(DAY_MEMBERS) if i % 5 == 0) / DAY_MEMBERS
        print(f"\n  by_rank: rank-1 members ({share_of_members:.0%} of the department) answered "
              f"{by_rank.top_rank_share:.0%} of the calls")
    sticky_day = by_name.get("longest_idle+sticky")
    if sticky_day is not None:
        print(f"\n  sticky: {sticky_day.sticky_hits} of {sticky_day.answered} answered calls went"
              " to the caller's last agent")

    passed = all(row.passed for row in rows) and all(day.passed for day in days)
    print(f"\n{'PASS' if passed else 'FAIL'}: latency p99 < {MAX_P99_US:.0f} µs for "
          f"{sum(r.passed for r in rows)}/{len(rows)}; office day < {MAX_DAY_WALL_S:.0f} s for "
          f"{sum(d.passed for d in days)}/{len(days)}")
    if not args.no_json:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = RESULTS_DIR / f"routing-{stamp}.json"
        document = {
            "python": platform.python_version(), "seed": args.seed,
            "latency": [row.__dict__ for row in all_rows],
            "office_day": [day.__dict__ for day in days],
        }
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"results: {path.relative_to(REPO_ROOT)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
