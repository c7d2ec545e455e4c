"""Many runs of each variant, and what the owner reads: means with their spread across seeds.

A single replay is one possible day (or year) of the office: which member answers a given ring,
and after how long, is drawn at random from their recorded behaviour. Each variant is therefore
replayed with `seeds` different seeds (20 by default) and every figure is shown as its mean and
the range the middle 90 % of runs fell in (5th to 95th percentile). The seeds are the same for
every variant (run k of every variant draws its callers' patience from the same stream), so two
variants are compared run by run: a difference whose 5–95 % range excludes zero is one the
owner can trust; one whose range straddles zero may be luck.
"""

from __future__ import annotations

import multiprocessing
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from .behaviour import Behaviour, fit
from .history import History
from .replay import Replay, ReplayResult, percentile
from .variants import Variant

DEFAULT_SEEDS = 20


@dataclass(frozen=True, slots=True)
class Spread:
    mean: float
    low: float  # 5th percentile across runs
    high: float  # 95th percentile across runs

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(0.0, 0.0, 0.0)
        return cls(statistics.fmean(values), percentile(list(values), 0.05),
                   percentile(list(values), 0.95))

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self, digits: int = 4) -> dict[str, float]:
        return {"mean": round(self.mean, digits), "low": round(self.low, digits),
                "high": round(self.high, digits)}


@dataclass(frozen=True, slots=True, kw_only=True)
class VariantSummary:
    name: str
    settings: tuple[tuple[str, str], ...]
    runs: tuple[ReplayResult, ...]

    def _share(self, pick: Callable[[ReplayResult], int]) -> Spread:
        return Spread.of([pick(r) / r.offered if r.offered else 0.0 for r in self.runs])

    @property
    def offered(self) -> int:
        return self.runs[0].offered if self.runs else 0

    @property
    def answered(self) -> Spread:
        return self._share(lambda r: r.answered)

    @property
    def missed(self) -> Spread:
        return self._share(lambda r: r.missed)

    @property
    def abandoned(self) -> Spread:
        return self._share(lambda r: r.abandoned)

    @property
    def abandoned_in_queue(self) -> Spread:
        return self._share(lambda r: r.abandoned_in_queue)

    @property
    def mean_wait_s(self) -> Spread:
        return Spread.of([r.mean_wait_s for r in self.runs])

    @property
    def p90_wait_s(self) -> Spread:
        return Spread.of([r.p90_wait_s for r in self.runs])

    @property
    def conversion(self) -> Spread | None:
        values = [r.conversion for r in self.runs if r.conversion is not None]
        return Spread.of(values) if values else None

    @property
    def expected_sales(self) -> Spread:
        return Spread.of([r.expected_sales for r in self.runs])

    def member_calls(self) -> dict[str, Spread]:
        members = sorted({m for r in self.runs for m in r.member_calls})
        return {m: Spread.of([r.member_calls.get(m, 0) for r in self.runs]) for m in members}

    def member_talk_s(self) -> dict[str, Spread]:
        members = sorted({m for r in self.runs for m in r.member_talk_s})
        return {m: Spread.of([r.member_talk_s.get(m, 0.0) for r in self.runs])
                for m in members}

    @property
    def load_spread(self) -> Spread:
        """How unevenly calls fall on members: the coefficient of variation of answered calls
        per member (0: perfectly even)."""
        values = []
        for run in self.runs:
            counts = list(run.member_calls.values())
            mean = statistics.fmean(counts) if counts else 0.0
            values.append(statistics.pstdev(counts) / mean if mean else 0.0)
        return Spread.of(values)

    def answered_difference(self, baseline: VariantSummary) -> Spread:
        """This variant's answered share minus the baseline's, run by run (same seeds)."""
        return Spread.of([
            (mine.answered / mine.offered if mine.offered else 0.0)
            - (theirs.answered / theirs.offered if theirs.offered else 0.0)
            for mine, theirs in zip(self.runs, baseline.runs, strict=False)
        ])

    def as_dict(self, baseline: VariantSummary | None = None) -> dict[str, Any]:
        conversion = self.conversion
        data: dict[str, Any] = {
            "name": self.name, "settings": dict(self.settings), "runs": len(self.runs),
            "offered": self.offered,
            "answered": self.answered.as_dict(), "missed": self.missed.as_dict(),
            "abandoned": self.abandoned.as_dict(),
            "abandoned_in_queue": self.abandoned_in_queue.as_dict(),
            "mean_wait_s": self.mean_wait_s.as_dict(2), "p90_wait_s": self.p90_wait_s.as_dict(2),
            "load_spread": self.load_spread.as_dict(),
            "conversion": conversion.as_dict() if conversion is not None else None,
            "expected_sales": self.expected_sales.as_dict(1),
            "members": {
                m: {"calls": calls.as_dict(1), "talk_s": self.member_talk_s()[m].as_dict(0)}
                for m, calls in self.member_calls().items()
            },
        }
        if baseline is not None and baseline is not self:
            difference = self.answered_difference(baseline)
            data["answered_vs_baseline"] = {**difference.as_dict(),
                                            "real": difference.excludes_zero}
        return data


def recorded_figures(history: History) -> dict[str, Any]:
    """What actually happened in the period, in the replay's terms."""
    offered = [c for c in history.calls
               if c.outcome not in ("over_capacity", "blacklisted", "closed")]
    answered = [c for c in offered if c.answered]
    abandoned = [c for c in offered if c.abandoned]
    waits = [c.waited_s for c in answered]
    members: dict[str, int] = {}
    for call in answered:
        if call.answered_by is not None:
            members[call.answered_by] = members.get(call.answered_by, 0) + 1
    count = len(offered) or 1
    return {
        "offered": len(offered),
        "answered": round(len(answered) / count, 4),
        "abandoned": round(len(abandoned) / count, 4),
        "missed": round((len(offered) - len(answered) - len(abandoned)) / count, 4),
        "abandoned_in_queue": round(sum(c.abandoned_in_queue for c in offered) / count, 4),
        "mean_wait_s": round(statistics.fmean(waits), 2) if waits else 0.0,
        "p90_wait_s": round(percentile(waits, 0.9), 2),
        "members": members,
    }


def run_variants(history: History, variants: Sequence[Variant], *, seeds: int = DEFAULT_SEEDS,
                 behaviour: Behaviour | None = None, workers: int = 1,
                 progress: Callable[[float], None] | None = None) -> list[VariantSummary]:
    """Replay every variant `seeds` times (seeds 1..N, the same for every variant), in
    `workers` processes (each replay is independent and pure CPU: a Pi 4's four cores make a
    year's 20 runs four times quicker). Results do not depend on `workers`."""
    behaviour = behaviour if behaviour is not None else fit(history)
    jobs = [(index, seed) for index in range(len(variants)) for seed in range(1, seeds + 1)]
    results: dict[tuple[int, int], ReplayResult] = {}
    if workers > 1 and len(jobs) > 1:
        # Forked workers inherit the history (no pickling of 100,000 records per job).
        _SHARED[:] = [history, behaviour, list(variants)]
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_replay_job, index, seed): (index, seed)
                       for index, seed in jobs}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if progress is not None:
                    progress(len(results) / len(jobs))
        _SHARED.clear()
    else:
        for index, seed in jobs:
            done = len(results)

            def step(fraction: float, done: int = done) -> None:
                if progress is not None:
                    progress((done + fraction) / len(jobs))
            variant = variants[index]
            results[(index, seed)] = Replay(history, behaviour, variant.department, seed=seed,
                                            added=variant.added, progress=step).run()
            if progress is not None:
                progress(len(results) / len(jobs))
    return [VariantSummary(name=variant.name, settings=variant.settings,
                           runs=tuple(results[(index, seed)] for seed in range(1, seeds + 1)))
            for index, variant in enumerate(variants)]


_SHARED: list[Any] = []


def _replay_job(index: int, seed: int) -> ReplayResult:
    history, behaviour, variants = _SHARED
    variant = variants[index]
    return Replay(history, behaviour, variant.department, seed=seed, added=variant.added).run()
