"""How the office behaved, fitted from its records: who answers, how fast, how long callers wait.

Answering. Every ring of a member's phone is an observation: it rang `t` seconds and was
answered at `t`, or it stopped at `t` unanswered — because it rang out, or because the caller hung
up or a colleague answered first. The last kind says only "not answered within t", so the answer
time is right-censored, and a plain "answered / rung" ratio would make members of ring-all
departments look lazy (they lose races, not calls). The Kaplan–Meier estimator handles exactly
this: it gives P(answered by t) for every t up to the longest ring observed. Its remaining mass
is the probability that the member does not answer at all (within the longest ring observed —
beyond that the records say nothing). A member's model is kept per local hour of the day where
that hour has enough rings (`MIN_RINGS_PER_HOUR`), else their whole-day model, else the
department's pooled one (a member who never rang, or one added in a variant).

Patience. Callers who hung up before an answer waited exactly their patience; callers who were
answered or sent on to the no-answer action had at least their wait. Taking patience as
exponential (memoryless: the standard assumption of Erlang A), its rate's maximum-likelihood
estimate from such censored data is hang-ups / total time spent waiting, and a caller answered
after waiting w gets a patience of w + Exp(rate).

Talk time: an answered call keeps its recorded talk time whoever answers it in the replay (the
caller's business sets it); a call nobody answered in reality draws one of the department's
recorded talk times. Conversion: each member's recorded sales / target calls answered.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .history import History

MIN_RINGS_PER_HOUR = 20
MIN_RINGS_PER_MEMBER = 10


@dataclass(frozen=True, slots=True)
class AnswerModel:
    """P(answered by delays[i]) = cumulative[i]; 1 − cumulative[-1]: never answers."""

    delays: tuple[float, ...] = ()
    cumulative: tuple[float, ...] = ()
    observations: int = 0

    @property
    def answer_probability(self) -> float:
        return self.cumulative[-1] if self.cumulative else 0.0

    def draw(self, rng: random.Random) -> float | None:
        """An answer delay for one ring, or None: this ring would not be answered."""
        u = rng.random()
        index = bisect_right(self.cumulative, u)
        return self.delays[index] if index < len(self.delays) else None


def kaplan_meier(rings: Iterable[tuple[float, bool]]) -> AnswerModel:
    """The answer-time distribution from (rang_s, answered) observations, censored ones
    included (Kaplan & Meier 1958: answers at a time count before censorings at that time)."""
    ordered = sorted(rings, key=lambda ring: (ring[0], not ring[1]))
    at_risk = len(ordered)
    survival = 1.0
    delays: list[float] = []
    cumulative: list[float] = []
    index = 0
    while index < len(ordered):
        time = ordered[index][0]
        answered = censored = 0
        while index < len(ordered) and ordered[index][0] == time:
            if ordered[index][1]:
                answered += 1
            else:
                censored += 1
            index += 1
        if answered:
            survival *= 1.0 - answered / at_risk
            delays.append(time)
            cumulative.append(1.0 - survival)
        at_risk -= answered + censored
    return AnswerModel(tuple(delays), tuple(cumulative), len(ordered))


@dataclass(frozen=True, slots=True)
class MemberBehaviour:
    overall: AnswerModel
    by_hour: dict[int, AnswerModel] = field(default_factory=dict)

    def model(self, hour: int) -> AnswerModel:
        return self.by_hour.get(hour, self.overall)


@dataclass(frozen=True, slots=True, kw_only=True)
class Behaviour:
    members: dict[str, MemberBehaviour]
    pooled: MemberBehaviour
    patience_rate: float  # hang-ups per second of waiting; 0: nobody hung up
    talk_times: tuple[float, ...]  # recorded talk times of answered calls
    conversion: dict[str, float]  # member -> sales / target calls answered
    pooled_conversion: float
    target_share: float  # of answered calls, the share marked as target calls

    def member(self, extension: str) -> MemberBehaviour:
        return self.members.get(extension, self.pooled)

    def patience(self, waited: float, abandoned: bool, rng: random.Random) -> float:
        """Seconds this caller would wait for an answer before hanging up."""
        if abandoned:
            return waited
        if self.patience_rate <= 0:
            return float("inf")
        return waited + rng.expovariate(self.patience_rate)

    def talk_time(self, recorded: float | None, rng: random.Random) -> float:
        if recorded is not None:
            return recorded
        return rng.choice(self.talk_times) if self.talk_times else 0.0


def _behaviour(rings: Sequence[tuple[int, float, bool]]) -> MemberBehaviour:
    by_hour: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for hour, rang_s, answered in rings:
        by_hour[hour].append((rang_s, answered))
    return MemberBehaviour(
        overall=kaplan_meier((rang_s, answered) for _, rang_s, answered in rings),
        by_hour={hour: kaplan_meier(observed) for hour, observed in by_hour.items()
                 if len(observed) >= MIN_RINGS_PER_HOUR},
    )


def fit(history: History) -> Behaviour:
    per_member: dict[str, list[tuple[int, float, bool]]] = defaultdict(list)
    for ring in history.rings:
        per_member[ring.extension].append((ring.hour, ring.rang_s, ring.answered))
    pooled = _behaviour([r for rings in per_member.values() for r in rings])
    members = {extension: _behaviour(rings) for extension, rings in per_member.items()
               if len(rings) >= MIN_RINGS_PER_MEMBER}

    hang_ups = 0
    waited_total = 0.0
    talk_times = []
    target_answered: dict[str, int] = defaultdict(int)
    sales: dict[str, int] = defaultdict(int)
    answered = targets = 0
    for call in history.calls:
        if call.abandoned:
            hang_ups += 1
        waited_total += call.waited_s
        if call.answered and call.answered_by is not None:
            answered += 1
            if call.talk_s is not None:
                talk_times.append(call.talk_s)
            if call.target_call:
                targets += 1
                target_answered[call.answered_by] += 1
                sales[call.answered_by] += int(call.sale)
    all_targets = sum(target_answered.values())
    return Behaviour(
        members=members, pooled=pooled,
        patience_rate=hang_ups / waited_total if waited_total > 0 else 0.0,
        talk_times=tuple(talk_times),
        conversion={m: sales[m] / n for m, n in target_answered.items() if n},
        pooled_conversion=sum(sales.values()) / all_targets if all_targets else 0.0,
        target_share=targets / answered if answered else 0.0,
    )
