"""Distribution strategies: who rings when, as a pure function of the department's state and `now`.

`plan(department, call, memory, now)` takes a snapshot of the department (its members, their
status, last call end, talk time, tier, weight, skills), the facts routing may know about the call,
and the department's `RoutingMemory`, and returns a `RingPlan` for the B2BUA to carry out. It reads
no clock, does no I/O and keeps no state of its own: the only thing it changes is `memory` (where
round robin stopped, the weighted round robin's counters), and its only randomness is `rng`. The
strategies and their names follow FreeSWITCH mod_callcenter and Asterisk app_queue where they have
one (ring-all, linear, rrmemory, longest-idle-agent, top-down, ring-progressively, tiers), so people
who know either feel at home; the rest are named plainly.

Routing runs on every call, inside the event loop, for departments of up to 100 members, so the
strategies are written for speed (bench/routing.py: 9-45 µs at p50 for 100 members): one pass to
find who is available, no sort where the order is given, C-level sort keys where one is needed
(stable sorts give the "ties by configured order" rules for free), and a hunt's steps built only
when the B2BUA reaches them (`plan.HuntSteps`): building 100 of them would cost more than all the
rest, and a call is answered within the first few.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from itertools import accumulate
from operator import attrgetter
from types import MappingProxyType

from .model import ON_LINE, CallFacts, DepartmentSnapshot, MemberState, RoutingMemory
from .plan import (
    EMPTY_PLAN,
    HuntSteps,
    RingPlan,
    RingStep,
    UnknownStrategyError,
    make_step,
)

# (department, available members in configured order, call, memory, rng, offset_s) -> plan whose
# steps start at offset_s (the sticky overlay runs a strategy after the sticky member's turn).
Strategy = Callable[
    [DepartmentSnapshot, list[MemberState], CallFacts, RoutingMemory, random.Random | None, float],
    RingPlan,
]

TIER_MODES = ("add", "replace")

_EXTENSION = attrgetter("extension")
_ENDED_AT = attrgetter("last_call_ended_at")
_RANK = attrgetter("rank")
_CONVERSION = attrgetter("conversion")
_TALK_TIME = attrgetter("talk_time_s")
_CALLS_ANSWERED = attrgetter("calls_answered")
_WEIGHT = attrgetter("weight")


def plan(
    department: DepartmentSnapshot,
    call: CallFacts,
    memory: RoutingMemory,
    now: float,
    *,
    exclude: frozenset[str] = frozenset(),
    rng: random.Random | None = None,
) -> RingPlan:
    """The ring plan for `call` reaching `department` at `now`.

    Only members that are `available(now)` (registered, On line, not talking, wrap-up over) and
    not in `exclude` (e.g. the calling extension) are considered. With none, the plan is empty
    (`EMPTY_PLAN`) and the B2BUA queues the call.

    Sticky overlay (any strategy): the caller's last agent (`call.sticky_member`), or when that one
    is unset or cannot take the call, the caller's CRM owner (`call.crm_owner`), rings alone for
    the department's `sticky_ring_s` first; the strategy's own plan over everyone else follows,
    shifted by `sticky_ring_s` and stopping the sticky member as it starts. When the sticky member
    is the only one available, the strategy's plan is simply theirs (they ring its full time, not
    just `sticky_ring_s`).

    Randomness (the `random` strategy only) comes from `rng`; without one, a new
    `random.Random` seeded from the OS. Pass a long-lived one to save ~7 µs a random decision.

    Raises `UnknownStrategyError` for a strategy (or a tier/rank mode) not implemented here.
    """
    strategy = STRATEGIES.get(department.strategy)
    if strategy is None:
        raise UnknownStrategyError(department.strategy)
    # MemberState.available(now), inlined: a method call per member would cost three times this
    # whole filter (tests check the two agree).
    if exclude:
        available = [
            m for m in department.members
            if m.registered and m.status == ON_LINE and not m.busy
            and (m.wrap_up_until is None or now >= m.wrap_up_until)
            and m.extension not in exclude
        ]
    else:
        available = [
            m for m in department.members
            if m.registered and m.status == ON_LINE and not m.busy
            and (m.wrap_up_until is None or now >= m.wrap_up_until)
        ]
    if not available:
        return EMPTY_PLAN
    sticky = _sticky_member(call, available)
    if sticky is None or len(available) == 1:
        return strategy(department, available, call, memory, rng, 0.0)
    others = [m for m in available if m.extension != sticky]
    rest = strategy(department, others, call, memory, rng, department.sticky_ring_s)
    alone = (sticky,)
    if isinstance(rest.steps, HuntSteps):
        return RingPlan(steps=rest.steps.with_lead(alone, 0.0), give_up_at_s=rest.give_up_at_s,
                        advance_on_failure=True)
    first = rest.steps[0]
    return RingPlan(
        steps=(
            make_step(0.0, alone),
            make_step(first.at_s, first.start, alone + first.stop),
            *rest.steps[1:],
        ),
        give_up_at_s=rest.give_up_at_s,
        # If the sticky member declines or is busy on another device, go to the others at once.
        advance_on_failure=True,
    )


def _sticky_member(call: CallFacts, available: Sequence[MemberState]) -> str | None:
    for candidate in (call.sticky_member, call.crm_owner):
        if candidate is not None:
            for member in available:
                if member.extension == candidate:
                    return candidate
    return None


# --- everyone at once ----------------------------------------------------------------------------


def _ring_all(
    department: DepartmentSnapshot, available: list[MemberState], call: CallFacts,
    memory: RoutingMemory, rng: random.Random | None, offset_s: float,
) -> RingPlan:
    return RingPlan(
        steps=(make_step(offset_s, tuple([m.extension for m in available])),),
        give_up_at_s=offset_s + department.ring_timeout_s,
    )


# --- hunting: one member at a time ---------------------------------------------------------------


def _hunt(
    department: DepartmentSnapshot, ordered: Sequence[MemberState], offset_s: float
) -> RingPlan:
    # Each member rings for their own ring time (unset: the department's ring_timeout_s, as
    # Asterisk's linear strategy uses the queue timeout per member); the previous one stops.
    default_s = department.ring_timeout_s
    at_s = list(accumulate([m.ring_time_s or default_s for m in ordered], initial=offset_s))
    give_up_at_s = at_s.pop()
    return RingPlan(
        steps=HuntSteps(at_s, list(map(_EXTENSION, ordered))), give_up_at_s=give_up_at_s,
        advance_on_failure=True,
    )


def _by_longest_idle(members: list[MemberState]) -> list[MemberState]:
    """Longest since the END of their last call first; never had a call = first of all.

    Python's sort is stable, so members with equal ends keep their configured order.
    """
    never = [m for m in members if m.last_call_ended_at is None]
    if not never:
        return sorted(members, key=_ENDED_AT)
    had = [m for m in members if m.last_call_ended_at is not None]
    had.sort(key=_ENDED_AT)
    never.extend(had)
    return never


def _in_order(
    department: DepartmentSnapshot, available: list[MemberState], call: CallFacts,
    memory: RoutingMemory, rng: random.Random | None, offset_s: float,
) -> RingPlan:
    return _hunt(department, available, offset_s)


def _longest_idle(
    department: DepartmentSnapshot, available: list[MemberState], call: CallFacts,
    memory: RoutingMemory, rng: random.Random | None, offset_s: float,
) -> RingPlan:
    return _hunt(department, _by_longest_idle(available), offset_s)


def _round_robin(
    department: DepartmentSnapshot, available: list[MemberState], call: CallFacts,
    memory: RoutingMemory, rng: random.Random | None, offset_s: float,
) -> RingPlan:
    # Asterisk rrmemory: start with the member after the one offered first last time, in
    # configured order, wrapping; unavailable ones are passed over, not waited for.
    members = department.members
    position = {m.extension: index for index, m in enumerate(members)}
    start = 0
    if memory.round_robin_last is not None:
        last = position.get(memory.round_robin_last)
        if last is not None:
            start = last + 1
        elif memory.round_robin_position is not None:
            # They left: whoever now holds their old position is the one who came after them.
            start = memory.round_robin_position
    if start >= len(members):
        start = 0
    split = len(available)
    for index, member in enumerate(available):
        if position[member.extension] >= start:
            split = index
            break
    ordered = available[split:] + available[:split]
    first = ordered[0].extension
    memory.round_robin_last = first
    memory.round_robin_position = position[first]
    return _hunt(department, ordered, offset_s)


def _by_rank(
    department: DepartmentSnapshot, available: list[MemberState], call: CallFacts,
    memory: RoutingMemory, rng: random.Random | None, offset_s: float,
) -> RingPlan:
    idle_order = _by_longest_idle(available)
    mode = department.rank_mode
    if mode == "manual":  # rank 1 is best; unranked last
        last = [m for m in idle_order if m.rank is None]
        ranked = [m for m in idle_order if m.rank is not None] if last else idle_order
        ranked.sort(key=_RANK)
    elif mode == "auto":  # best conversion first; no figure yet last
        last = [m for m in idle_order if m.conversion is None]
        ranked = [m for m in idle_order if m.conversion is not None] if last else idle_order
        ranked.sort(key=_CONVERSION, reverse=True)  # reverse keeps the sort stable
    else:
        raise UnknownStrategyError(f"by_rank rank_mode={mode}")
    ranked += last
    return _hunt(department, ranked, offset_s)


def _fewest_first(
    key: Callable[[MemberState], float],
) -> Callable[
    [DepartmentSnapshot, list[MemberState], CallFacts, RoutingMemory, random.Random | None,
     float],
    RingPlan,
]:
    """least_talk_time / fewest_calls: ascending by the figure, ties by longest idle."""

    def strategy(
        department: DepartmentSnapshot, available: list[MemberState], call: CallFacts,
        memory: RoutingMemory, rng: random.Random | None, offset_s: float,
    ) -> RingPlan:
        ordered = _by_longest_idle(available)
        ordered.sort(key=key)
        return _hunt(department, ordered, offset_s)

    return strategy


_least_talk_time = _fewest_first(_TALK_TIME)
_fewest_calls = _fewest_first(_CALLS_ANSWERED)


def _random(
    department: DepartmentSnapshot, available: list[MemberState], call: CallFacts,
    memory: RoutingMemory, rng: random.Random | None, offset_s: float,
) -> RingPlan:
    # A uniform shuffle: each member draws one rng.random() and they ring in the order of their
    # draws. rng.shuffle gives the same distribution but draws through a Python-level
    # _randbelow per member, 2-3x the cost (~25 µs for 80 members here) of this C-level sort.
    draw = (rng if rng is not None else _new_rng()).random
    return _hunt(department, sorted(available, key=lambda _member: draw()), offset_s)


def _new_rng() -> random.Random:
    # What random.Random() does, seeded with 256 bits of OS entropy instead of 19,968: reading
    # the whole Mersenne Twister state from os.urandom costs ~13 µs a call here, this ~7 µs.
    return random.Random(os.urandom(32))


def _weighted(
    department: DepartmentSnapshot, available: list[MemberState], call: CallFacts,
    memory: RoutingMemory, rng: random.Random | None, offset_s: float,
) -> RingPlan:
    # nginx's smooth weighted round robin, over the members available for this call. Each one's
    # counter grows by their share of this call (weight / sum of the available weights) and the
    # one offered first gives back one whole call. nginx adds the raw weight and gives back the
    # sum of the weights: the same picks while the set of members is fixed, but kept in shares a
    # counter is exactly "calls owed" (the shares of the calls they were eligible for, minus the
    # first offers they got), so members who were away leave the others' shares exact, and a
    # returning member resumes with what they were owed. Counters of unavailable members do not
    # move.
    sharing = [m for m in available if m.weight > 0]
    if not sharing:  # nobody has a share: hunt in configured order
        return _hunt(department, available, offset_s)
    total = sum(map(_WEIGHT, sharing))
    current = memory.weighted_current
    counter = current.get
    best = sharing[0]
    best_value = -math.inf
    for member in sharing:
        extension = member.extension
        value = counter(extension, 0.0) + member.weight / total
        current[extension] = value
        if value > best_value:  # strict: ties go to the earlier in configured order
            best, best_value = member, value
    current[best.extension] = best_value - 1.0
    memory.offered[best.extension] = memory.offered.get(best.extension, 0) + 1
    # Then everyone else by descending weight; reverse=True keeps the sort stable, so equal
    # weights stay in configured order.
    ordered = sorted(available, key=_WEIGHT, reverse=True)
    for index, member in enumerate(ordered):
        if member is best:
            del ordered[index]
            break
    ordered.insert(0, best)
    return _hunt(department, ordered, offset_s)


# --- growing groups ------------------------------------------------------------------------------


def _cascading(
    department: DepartmentSnapshot, available: list[MemberState], call: CallFacts,
    memory: RoutingMemory, rng: random.Random | None, offset_s: float,
) -> RingPlan:
    # FreeSWITCH ring-progressively: a phone joins every step_delay_s, earlier ones keep ringing.
    delay_s = department.step_delay_s
    count = len(available)
    steps = HuntSteps([offset_s + index * delay_s for index in range(count)],
                      list(map(_EXTENSION, available)), stop_previous=False)
    return RingPlan(
        steps=steps,
        give_up_at_s=offset_s + max(department.ring_timeout_s, count * delay_s),
        advance_on_failure=True,
    )


def _tiers(
    department: DepartmentSnapshot, available: list[MemberState], call: CallFacts,
    memory: RoutingMemory, rng: random.Random | None, offset_s: float,
) -> RingPlan:
    mode = department.tier_mode
    if mode not in TIER_MODES:
        raise UnknownStrategyError(f"tiers tier_mode={mode}")
    by_tier: dict[int, list[str]] = {}
    for member in available:
        group = by_tier.get(member.tier)
        if group is None:
            by_tier[member.tier] = [member.extension]
        else:
            group.append(member.extension)
    tier_time_s = department.tier_time_s
    steps: list[RingStep] = []
    previous: tuple[str, ...] = ()
    for index, tier in enumerate(sorted(by_tier)):
        start = tuple(by_tier[tier])
        stop = previous if mode == "replace" else ()
        steps.append(make_step(offset_s + index * tier_time_s, start, stop))
        previous = start
    return RingPlan(
        steps=tuple(steps),
        give_up_at_s=offset_s + max(department.ring_timeout_s, len(steps) * tier_time_s),
        advance_on_failure=True,
    )


def _skills(
    department: DepartmentSnapshot, available: list[MemberState], call: CallFacts,
    memory: RoutingMemory, rng: random.Random | None, offset_s: float,
) -> RingPlan:
    if not call.attributes:
        return _ring_all(department, available, call, memory, rng, offset_s)
    required = {f"{key}:{value}" for key, value in call.attributes.items()}
    skilled = tuple([m.extension for m in available if required <= m.skills])
    if not skilled or len(skilled) == len(available):
        return _ring_all(department, available, call, memory, rng, offset_s)
    rest = tuple([m.extension for m in available if not required <= m.skills])
    tier_time_s = department.tier_time_s
    return RingPlan(
        steps=(make_step(offset_s, skilled), make_step(offset_s + tier_time_s, rest)),
        give_up_at_s=offset_s + max(department.ring_timeout_s, 2 * tier_time_s),
        advance_on_failure=True,
    )


# Config name -> strategy; read-only, like everything at module level here.
STRATEGIES: Mapping[str, Strategy] = MappingProxyType({
    "ring_all": _ring_all,
    "in_order": _in_order,
    "longest_idle": _longest_idle,
    "round_robin": _round_robin,
    "by_rank": _by_rank,
    "least_talk_time": _least_talk_time,
    "fewest_calls": _fewest_calls,
    "random": _random,
    "weighted": _weighted,
    "cascading": _cascading,
    "tiers": _tiers,
    "skills": _skills,
})
