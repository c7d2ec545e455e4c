"""Distribution strategies: who rings when, as a pure function of the department's state and `now`.

Every test builds a snapshot, steps `now` by hand and reads the plan; nothing sleeps or reads a
clock. Extensions are 101, 102, … in configured order unless a test says otherwise.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from itertools import product
from typing import Any

import pytest

from firmware.routing.model import (
    AGENT_STATUSES,
    BREAK,
    DND,
    LOGGED_OUT,
    ON_LINE,
    OUTBOUND,
    CallFacts,
    DepartmentSnapshot,
    MemberState,
    RoutingMemory,
)
from firmware.routing.plan import EMPTY_PLAN, RingPlan, RingStep, UnknownStrategyError
from firmware.routing.strategies import STRATEGIES, plan

NOW = 10_000.0
HUNTING = (
    "in_order", "longest_idle", "round_robin", "by_rank", "least_talk_time", "fewest_calls",
    "random", "weighted",
)
ALL_STRATEGIES = tuple(sorted(STRATEGIES))


def member(extension: str, **state: Any) -> MemberState:
    return MemberState(extension=extension, **state)


def department(
    strategy: str, *members: MemberState, ring_timeout_s: float = 30.0, **settings: Any
) -> DepartmentSnapshot:
    return DepartmentSnapshot(
        number="200", strategy=strategy, ring_timeout_s=ring_timeout_s, members=members,
        **settings,
    )


def facts(**details: Any) -> CallFacts:
    return CallFacts(caller="0441234567", dialed="200", **details)


def decide(
    snapshot: DepartmentSnapshot, *, call: CallFacts | None = None,
    memory: RoutingMemory | None = None, now: float = NOW,
    exclude: frozenset[str] = frozenset(), rng: random.Random | None = None,
) -> RingPlan:
    return plan(snapshot, call or facts(), memory if memory is not None else RoutingMemory(), now,
                exclude=exclude, rng=rng)


def order(result: RingPlan) -> list[str]:
    """The members a hunting plan offers the call to, one per step, in turn."""
    assert all(len(step.start) == 1 for step in result.steps)
    return [step.start[0] for step in result.steps]


def started(result: RingPlan) -> list[str]:
    return [extension for step in result.steps for extension in step.start]


def members(*extensions: str, **state: Any) -> tuple[MemberState, ...]:
    return tuple(member(extension, **state) for extension in extensions)


# --- ring_all ------------------------------------------------------------------------------------


def test_ring_all_starts_every_available_member_at_once() -> None:
    result = decide(department("ring_all", *members("101", "102", "103")))
    assert result.steps == (RingStep(at_s=0.0, start=("101", "102", "103")),)


def test_ring_all_gives_up_at_the_department_ring_timeout() -> None:
    assert decide(department("ring_all", member("101"), ring_timeout_s=25)).give_up_at_s == 25


def test_ring_all_waits_for_the_timeout_when_a_member_fails() -> None:
    assert not decide(department("ring_all", *members("101", "102"))).advance_on_failure


# --- hunting: one member at a time ---------------------------------------------------------------


def test_in_order_offers_members_in_configured_order() -> None:
    assert order(decide(department("in_order", *members("103", "101", "102")))) == [
        "103", "101", "102",
    ]


def test_hunting_starts_each_member_when_the_previous_ring_time_ends() -> None:
    result = decide(department(
        "in_order", member("101", ring_time_s=10), member("102", ring_time_s=15), member("103"),
    ))
    assert [step.at_s for step in result.steps] == [0.0, 10.0, 25.0]


def test_hunting_stops_the_previous_member_when_the_next_starts() -> None:
    result = decide(department("in_order", *members("101", "102", "103")))
    assert [step.stop for step in result.steps] == [(), ("101",), ("102",)]


def test_hunting_member_without_ring_time_rings_for_the_department_timeout() -> None:
    result = decide(department("in_order", *members("101", "102"), ring_timeout_s=20))
    assert [step.at_s for step in result.steps] == [0.0, 20.0]


def test_hunting_gives_up_when_the_last_member_ring_time_ends() -> None:
    result = decide(department(
        "in_order", member("101", ring_time_s=10), member("102"), ring_timeout_s=40,
    ))
    assert result.give_up_at_s == 50.0


def test_hunting_ring_times_follow_the_member_not_the_position() -> None:
    result = decide(department(
        "longest_idle", member("101", ring_time_s=10, last_call_ended_at=NOW - 5),
        member("102", ring_time_s=20, last_call_ended_at=NOW - 50),
    ))
    assert [(step.at_s, step.start) for step in result.steps] == [
        (0.0, ("102",)), (20.0, ("101",)),
    ]
    assert result.give_up_at_s == 30.0


def test_hunting_skipped_member_takes_no_ring_time() -> None:
    result = decide(department(
        "in_order", member("101", ring_time_s=10), member("102", ring_time_s=15, busy=True),
        member("103", ring_time_s=20),
    ))
    assert [(s.at_s, s.start, s.stop) for s in result.steps] == [
        (0.0, ("101",), ()), (10.0, ("103",), ("101",)),
    ]
    assert result.give_up_at_s == 30.0


@pytest.mark.parametrize("strategy", HUNTING)
def test_hunting_moves_on_as_soon_as_the_ringing_member_fails(strategy: str) -> None:
    result = decide(department(strategy, *members("101", "102")), rng=random.Random(1))
    assert result.advance_on_failure


@pytest.mark.parametrize("strategy", HUNTING)
def test_hunting_offers_every_available_member_exactly_once(strategy: str) -> None:
    result = decide(department(strategy, *members("101", "102", "103", "104", weight=25.0)),
                    rng=random.Random(7))
    assert sorted(order(result)) == ["101", "102", "103", "104"]


# --- longest_idle --------------------------------------------------------------------------------


def test_longest_idle_offers_first_the_member_whose_last_call_ended_longest_ago() -> None:
    result = decide(department(
        "longest_idle", member("101", last_call_ended_at=NOW - 60),
        member("102", last_call_ended_at=NOW - 600), member("103", last_call_ended_at=NOW - 6),
    ))
    assert order(result) == ["102", "101", "103"]


def test_longest_idle_member_who_never_had_a_call_goes_first() -> None:
    result = decide(department(
        "longest_idle", member("101", last_call_ended_at=NOW - 3600), member("102"),
    ))
    assert order(result) == ["102", "101"]


def test_longest_idle_ties_go_in_configured_order() -> None:
    result = decide(department(
        "longest_idle", member("101", last_call_ended_at=NOW - 60), member("102"),
        member("103", last_call_ended_at=NOW - 60), member("104"),
    ))
    assert order(result) == ["102", "104", "101", "103"]


def test_longest_idle_with_nobody_having_had_a_call_goes_in_configured_order() -> None:
    assert order(decide(department("longest_idle", *members("103", "101", "102")))) == [
        "103", "101", "102",
    ]


def test_longest_idle_counts_from_the_end_of_the_call_not_its_talk_time() -> None:
    # 101 talked for an hour but hung up long ago; 102 had a short call that ended just now.
    result = decide(department(
        "longest_idle", member("101", last_call_ended_at=NOW - 900, talk_time_s=3600),
        member("102", last_call_ended_at=NOW - 10, talk_time_s=30),
    ))
    assert order(result) == ["101", "102"]


# --- round_robin (Asterisk rrmemory) -------------------------------------------------------------


def test_round_robin_first_call_starts_with_the_first_configured_member() -> None:
    assert order(decide(department("round_robin", *members("101", "102", "103")))) == [
        "101", "102", "103",
    ]


def test_round_robin_starts_after_the_member_offered_first_last_time() -> None:
    memory = RoutingMemory(round_robin_last="101")
    result = decide(department("round_robin", *members("101", "102", "103")), memory=memory)
    assert order(result)[0] == "102"


def test_round_robin_offers_the_others_in_rotation_wrapping_round() -> None:
    memory = RoutingMemory(round_robin_last="102")
    result = decide(department("round_robin", *members("101", "102", "103", "104")),
                    memory=memory)
    assert order(result) == ["103", "104", "101", "102"]


def test_round_robin_remembers_the_member_offered_first() -> None:
    memory = RoutingMemory(round_robin_last="101")
    decide(department("round_robin", *members("101", "102", "103")), memory=memory)
    assert memory.round_robin_last == "102"
    assert memory.round_robin_position == 1


def test_round_robin_rotates_across_consecutive_calls() -> None:
    snapshot = department("round_robin", *members("101", "102", "103"))
    memory = RoutingMemory()
    firsts = [order(decide(snapshot, memory=memory, now=NOW + i))[0] for i in range(4)]
    assert firsts == ["101", "102", "103", "101"]


def test_round_robin_passes_over_an_unavailable_member_without_losing_its_place() -> None:
    memory = RoutingMemory(round_robin_last="101")
    busy_102 = department("round_robin", member("101"), member("102", busy=True), member("103"))
    assert order(decide(busy_102, memory=memory)) == ["103", "101"]
    everyone = department("round_robin", *members("101", "102", "103"))
    assert order(decide(everyone, memory=memory, now=NOW + 1))[0] == "101"


def test_round_robin_continues_from_the_next_position_when_the_last_member_left() -> None:
    memory = RoutingMemory()
    for i in range(2):  # offers 101, then 102 first
        decide(department("round_robin", *members("101", "102", "103", "104")), memory=memory,
               now=NOW + i)
    assert memory.round_robin_last == "102"
    without_102 = department("round_robin", *members("101", "103", "104"))
    assert order(decide(without_102, memory=memory, now=NOW + 2)) == ["103", "104", "101"]


def test_round_robin_wraps_when_the_member_who_left_was_last() -> None:
    memory = RoutingMemory(round_robin_last="103", round_robin_position=2)
    result = decide(department("round_robin", *members("101", "102")), memory=memory)
    assert order(result)[0] == "101"


def test_round_robin_skips_the_excluded_caller_in_rotation() -> None:
    memory = RoutingMemory(round_robin_last="101")
    result = decide(department("round_robin", *members("101", "102", "103")), memory=memory,
                    exclude=frozenset({"102"}))
    assert order(result) == ["103", "101"]
    assert memory.round_robin_last == "103"


# --- by_rank -------------------------------------------------------------------------------------


def test_by_rank_manual_offers_the_best_rank_first() -> None:
    result = decide(department(
        "by_rank", member("101", rank=3), member("102", rank=1), member("103", rank=2),
    ))
    assert order(result) == ["102", "103", "101"]


def test_by_rank_manual_offers_unranked_members_last() -> None:
    result = decide(department("by_rank", member("101"), member("102", rank=5)))
    assert order(result) == ["102", "101"]


def test_by_rank_manual_ties_go_to_the_longest_idle() -> None:
    result = decide(department(
        "by_rank", member("101", rank=1, last_call_ended_at=NOW - 10),
        member("102", rank=1, last_call_ended_at=NOW - 100), member("103", rank=1),
    ))
    assert order(result) == ["103", "102", "101"]


def test_by_rank_auto_offers_the_best_conversion_first() -> None:
    result = decide(department(
        "by_rank", member("101", conversion=0.1), member("102", conversion=0.4),
        member("103", conversion=0.2), rank_mode="auto",
    ))
    assert order(result) == ["102", "103", "101"]


def test_by_rank_auto_ignores_the_manual_rank() -> None:
    result = decide(department(
        "by_rank", member("101", rank=1, conversion=0.1), member("102", rank=9, conversion=0.3),
        rank_mode="auto",
    ))
    assert order(result) == ["102", "101"]


def test_by_rank_auto_offers_members_without_a_conversion_figure_last() -> None:
    result = decide(department(
        "by_rank", member("101"), member("102", conversion=0.0), rank_mode="auto",
    ))
    assert order(result) == ["102", "101"]


def test_by_rank_auto_ties_go_to_the_longest_idle() -> None:
    result = decide(department(
        "by_rank", member("101", conversion=0.3, last_call_ended_at=NOW - 10),
        member("102", conversion=0.3, last_call_ended_at=NOW - 100), rank_mode="auto",
    ))
    assert order(result) == ["102", "101"]


def test_by_rank_unknown_rank_mode_raises() -> None:
    with pytest.raises(UnknownStrategyError):
        decide(department("by_rank", member("101"), rank_mode="by_mood"))


# --- least_talk_time / fewest_calls --------------------------------------------------------------


def test_least_talk_time_offers_the_member_with_least_talk_time_first() -> None:
    result = decide(department(
        "least_talk_time", member("101", talk_time_s=600), member("102", talk_time_s=60),
        member("103", talk_time_s=300),
    ))
    assert order(result) == ["102", "103", "101"]


def test_least_talk_time_ties_go_to_the_longest_idle() -> None:
    result = decide(department(
        "least_talk_time", member("101", talk_time_s=60, last_call_ended_at=NOW - 10),
        member("102", talk_time_s=60, last_call_ended_at=NOW - 100),
    ))
    assert order(result) == ["102", "101"]


def test_fewest_calls_offers_the_member_with_fewest_answered_calls_first() -> None:
    result = decide(department(
        "fewest_calls", member("101", calls_answered=9), member("102", calls_answered=2),
        member("103", calls_answered=4),
    ))
    assert order(result) == ["102", "103", "101"]


def test_fewest_calls_ties_go_to_the_longest_idle() -> None:
    result = decide(department(
        "fewest_calls", member("101", calls_answered=3, last_call_ended_at=NOW - 10),
        member("102", calls_answered=3), member("103", calls_answered=3,
                                                last_call_ended_at=NOW - 100),
    ))
    assert order(result) == ["102", "103", "101"]


# --- random --------------------------------------------------------------------------------------


def test_random_order_follows_one_rng_draw_per_available_member() -> None:
    twin = random.Random(42)
    draws = {extension: twin.random() for extension in ("101", "103", "104", "105")}
    result = decide(department("random", member("101"), member("102", busy=True),
                               *members("103", "104", "105")), rng=random.Random(42))
    assert order(result) == sorted(draws, key=draws.__getitem__)


def test_random_offers_each_member_first_equally_often() -> None:
    snapshot = department("random", *members("101", "102", "103", "104"))
    rng = random.Random(11)
    firsts = Counter(order(decide(snapshot, rng=rng, now=NOW + i))[0] for i in range(4000))
    assert set(firsts) == {"101", "102", "103", "104"}
    assert all(abs(count - 1000) < 120 for count in firsts.values())  # ~4 standard deviations


def test_random_puts_each_member_in_each_place_equally_often() -> None:
    snapshot = department("random", *members("101", "102", "103"))
    rng = random.Random(12)
    orders = Counter(tuple(order(decide(snapshot, rng=rng, now=NOW + i))) for i in range(6000))
    assert len(orders) == 6  # every permutation of three
    assert all(abs(count - 1000) < 130 for count in orders.values())


def test_random_with_the_same_seed_gives_the_same_order() -> None:
    snapshot = department("random", *members(*(str(100 + i) for i in range(10))))
    assert order(decide(snapshot, rng=random.Random(3))) == order(
        decide(snapshot, rng=random.Random(3))
    )


def test_random_orders_differ_from_call_to_call() -> None:
    snapshot = department("random", *members(*(str(100 + i) for i in range(10))))
    rng = random.Random(5)
    orders = {tuple(order(decide(snapshot, rng=rng, now=NOW + i))) for i in range(20)}
    assert len(orders) > 1


def test_random_without_an_rng_still_offers_every_available_member() -> None:
    result = decide(department("random", *members("101", "102", "103")))
    assert sorted(order(result)) == ["101", "102", "103"]


# --- weighted (smooth weighted round robin) ------------------------------------------------------


def weighted_firsts(
    weights: dict[str, float], calls: int, memory: RoutingMemory | None = None
) -> list[str]:
    snapshot = department("weighted", *(member(e, weight=w) for e, w in weights.items()))
    memory = memory if memory is not None else RoutingMemory()
    return [order(decide(snapshot, memory=memory, now=NOW + i))[0] for i in range(calls)]


def test_weighted_first_call_goes_to_the_heaviest_member() -> None:
    assert weighted_firsts({"101": 20, "102": 50, "103": 30}, 1) == ["102"]


def test_weighted_offers_the_rest_in_descending_weight() -> None:
    result = decide(department(
        "weighted", member("101", weight=20), member("102", weight=50), member("103", weight=30),
    ))
    assert order(result) == ["102", "103", "101"]


def test_weighted_rest_with_equal_weights_goes_in_configured_order() -> None:
    result = decide(department(
        "weighted", member("101", weight=10), member("102", weight=80), member("103", weight=10),
    ))
    assert order(result) == ["102", "101", "103"]


def test_weighted_picks_the_nginx_smooth_sequence() -> None:
    # nginx's own example: weights 5, 1, 1 give a a b a c a a.
    assert weighted_firsts({"a": 5, "b": 1, "c": 1}, 7) == ["a", "a", "b", "a", "c", "a", "a"]


def test_weighted_ties_go_in_configured_order() -> None:
    assert weighted_firsts({"101": 50, "102": 50}, 4) == ["101", "102", "101", "102"]


def test_weighted_counts_first_offers_in_memory() -> None:
    memory = RoutingMemory()
    weighted_firsts({"101": 60, "102": 40}, 5, memory)
    assert memory.offered == {"101": 3, "102": 2}


def test_weighted_first_offers_match_the_weights_exactly_over_a_full_cycle() -> None:
    firsts = weighted_firsts({"101": 50, "102": 30, "103": 20}, 30)
    assert Counter(firsts) == {"101": 15, "102": 9, "103": 6}


def widest_window_deviation(firsts: Sequence[str], weights: dict[str, float]) -> Fraction:
    """The most any member's first offers, over any run of consecutive calls, stray from their
    share of that run. A window's deviation is the difference of the running deviations at its
    ends, so the widest is the spread of the running deviation."""
    total = Fraction(sum(weights.values()))
    widest = Fraction(0)
    for extension, weight in weights.items():
        share = Fraction(weight) / total
        running = [Fraction(0)]
        count = 0
        for calls, first in enumerate(firsts, start=1):
            count += first == extension
            running.append(count - calls * share)
        widest = max(widest, max(running) - min(running))
    return widest


@pytest.mark.parametrize("weights", [
    {"101": 50, "102": 50}, {"101": 60, "102": 40}, {"101": 70, "102": 30},
    {"101": 90, "102": 10}, {"101": 50, "102": 30, "103": 20},
    {"101": 40, "102": 40, "103": 20}, {"101": 50, "102": 25, "103": 15, "104": 10},
    {"101": 25, "102": 25, "103": 25, "104": 25},
], ids=lambda weights: "/".join(str(w) for w in weights.values()))
def test_weighted_any_window_of_consecutive_calls_is_within_one_call_of_the_share(
    weights: dict[str, float],
) -> None:
    assert widest_window_deviation(weighted_firsts(weights, 200), weights) <= 1


@pytest.mark.parametrize("weights", [
    {"101": 40, "102": 30, "103": 20, "104": 10}, {"101": 34, "102": 33, "103": 33},
    {"101": 30, "102": 30, "103": 20, "104": 10, "105": 10},
    {str(101 + i): w for i, w in enumerate((23, 17, 13, 11, 7, 5, 3, 2))},
], ids=lambda weights: "/".join(str(w) for w in weights.values()))
def test_weighted_any_window_is_within_two_calls_of_the_share_for_uneven_splits(
    weights: dict[str, float],
) -> None:
    # Within one call in every window cannot hold for every split of three or more members
    # (such an order would be a "balanced word", which most rates do not have); smooth weighted
    # round robin keeps these within two.
    deviation = widest_window_deviation(weighted_firsts(weights, 200), weights)
    assert deviation < 2


def test_weighted_unavailable_member_counter_does_not_move() -> None:
    memory = RoutingMemory()
    weighted_firsts({"101": 50, "102": 30, "103": 20}, 1, memory)
    before = memory.weighted_current["103"]
    away_103 = department("weighted", member("101", weight=50), member("102", weight=30),
                          member("103", weight=20, status=BREAK))
    for i in range(5):
        decide(away_103, memory=memory, now=NOW + 1 + i)
    assert memory.weighted_current["103"] == before


def test_weighted_shares_among_the_available_stay_exact_while_one_is_away() -> None:
    memory = RoutingMemory()
    weighted_firsts({"101": 50, "102": 30, "103": 20}, 3, memory)
    offered_before = dict(memory.offered)
    away_103 = department("weighted", member("101", weight=50), member("102", weight=30),
                          member("103", weight=20, status=BREAK))
    for i in range(16):
        decide(away_103, memory=memory, now=NOW + 3 + i)
    gained = {e: memory.offered.get(e, 0) - offered_before.get(e, 0) for e in ("101", "102")}
    assert abs(gained["101"] - 10) <= 1 and abs(gained["102"] - 6) <= 1
    assert gained["101"] + gained["102"] == 16


@pytest.mark.parametrize("seed", range(5))
def test_weighted_shares_of_eligible_calls_stay_within_one_call_as_members_come_and_go(
    seed: int,
) -> None:
    # 1,000 calls; before each, a member may go on break or come back. A member's fair share of
    # a call is weight / (sum of the weights of those available for it); each member's first
    # offers must stay within one call of the sum of their shares of the calls they could take.
    weights = {"101": 50.0, "102": 30.0, "103": 20.0}
    rng = random.Random(seed)
    away: set[str] = set()
    memory = RoutingMemory()
    owed = dict.fromkeys(weights, 0.0)
    for i in range(1000):
        if rng.random() < 0.1:
            away ^= {rng.choice(sorted(weights))}
        if len(away) == len(weights):
            away.clear()
        snapshot = department("weighted", *(
            member(e, weight=w, status=BREAK if e in away else ON_LINE)
            for e, w in weights.items()
        ))
        eligible = sum(w for e, w in weights.items() if e not in away)
        for e, w in weights.items():
            if e not in away:
                owed[e] += w / eligible
        decide(snapshot, memory=memory, now=NOW + i)
        for e in weights:
            assert abs(memory.offered.get(e, 0) - owed[e]) <= 1 + 1e-9, (i, e)


def test_weighted_member_without_weight_is_never_offered_first() -> None:
    firsts = weighted_firsts({"101": 0, "102": 100}, 5)
    assert set(firsts) == {"102"}


def test_weighted_member_without_weight_is_offered_after_the_others() -> None:
    result = decide(department("weighted", member("101", weight=0), member("102", weight=100)))
    assert order(result) == ["102", "101"]


def test_weighted_without_any_weight_hunts_in_configured_order() -> None:
    memory = RoutingMemory()
    result = decide(department("weighted", *members("101", "102")), memory=memory)
    assert order(result) == ["101", "102"]
    assert memory.offered == {}


# --- cascading (FreeSWITCH ring-progressively) ---------------------------------------------------


def test_cascading_starts_each_member_a_step_delay_after_the_previous() -> None:
    result = decide(department("cascading", *members("101", "102", "103"), step_delay_s=5.0))
    assert [(step.at_s, step.start) for step in result.steps] == [
        (0.0, ("101",)), (5.0, ("102",)), (10.0, ("103",)),
    ]


def test_cascading_keeps_earlier_members_ringing() -> None:
    result = decide(department("cascading", *members("101", "102", "103")))
    assert all(step.stop == () for step in result.steps)


def test_cascading_skipped_member_takes_no_step() -> None:
    result = decide(department(
        "cascading", member("101"), member("102", registered=False), member("103"),
        step_delay_s=4.0,
    ))
    assert [(step.at_s, step.start) for step in result.steps] == [
        (0.0, ("101",)), (4.0, ("103",)),
    ]


def test_cascading_gives_up_at_the_ring_timeout_when_the_steps_end_sooner() -> None:
    result = decide(department("cascading", *members("101", "102"), step_delay_s=5.0,
                               ring_timeout_s=30))
    assert result.give_up_at_s == 30.0


def test_cascading_gives_up_after_every_member_had_a_step_when_that_is_later() -> None:
    result = decide(department("cascading", *members("101", "102", "103", "104"),
                               step_delay_s=10.0, ring_timeout_s=30))
    assert result.give_up_at_s == 40.0


def test_cascading_adds_the_next_member_at_once_when_all_ringing_ones_fail() -> None:
    assert decide(department("cascading", *members("101", "102"))).advance_on_failure


# --- tiers ---------------------------------------------------------------------------------------


def tiered(*tiers: int, **settings: Any) -> DepartmentSnapshot:
    return department("tiers", *(
        member(str(101 + i), tier=tier) for i, tier in enumerate(tiers)
    ), **settings)


def test_tiers_ring_the_lowest_tier_all_together_first() -> None:
    result = decide(tiered(2, 1, 1, 3))
    assert result.steps[0] == RingStep(at_s=0.0, start=("102", "103"))


def test_tiers_add_mode_adds_the_next_tier_after_tier_time() -> None:
    result = decide(tiered(1, 2, 3, tier_time_s=15.0, tier_mode="add"))
    assert result.steps == (
        RingStep(at_s=0.0, start=("101",)),
        RingStep(at_s=15.0, start=("102",)),
        RingStep(at_s=30.0, start=("103",)),
    )


def test_tiers_replace_mode_stops_the_previous_tier_as_the_next_starts() -> None:
    result = decide(tiered(1, 1, 2, 3, tier_time_s=15.0, tier_mode="replace"))
    assert result.steps == (
        RingStep(at_s=0.0, start=("101", "102")),
        RingStep(at_s=15.0, start=("103",), stop=("101", "102")),
        RingStep(at_s=30.0, start=("104",), stop=("103",)),
    )


def test_tiers_without_an_available_member_are_skipped() -> None:
    result = decide(department(
        "tiers", member("101", tier=1, busy=True), member("102", tier=2), member("103", tier=5),
        tier_time_s=15.0,
    ))
    assert [(step.at_s, step.start) for step in result.steps] == [
        (0.0, ("102",)), (15.0, ("103",)),
    ]


def test_tiers_give_up_at_the_ring_timeout_when_the_tiers_end_sooner() -> None:
    assert decide(tiered(1, 2, tier_time_s=10.0, ring_timeout_s=30)).give_up_at_s == 30.0


def test_tiers_give_up_after_every_tier_had_its_time_when_that_is_later() -> None:
    assert decide(tiered(1, 2, 3, tier_time_s=15.0, ring_timeout_s=30)).give_up_at_s == 45.0


def test_tiers_bring_in_the_next_tier_at_once_when_the_ringing_one_fails() -> None:
    assert decide(tiered(1, 2)).advance_on_failure


def test_tiers_unknown_tier_mode_raises() -> None:
    with pytest.raises(UnknownStrategyError):
        decide(tiered(1, 2, tier_mode="shuffle"))


# --- skills --------------------------------------------------------------------------------------


def skilled_department(**settings: Any) -> DepartmentSnapshot:
    return department(
        "skills",
        member("101", skills=frozenset({"lang:de"})),
        member("102", skills=frozenset({"lang:en", "product:windows"})),
        member("103", skills=frozenset({"lang:en"})),
        member("104"),
        **settings,
    )


def test_skills_ring_members_with_every_required_skill_first() -> None:
    result = decide(skilled_department(), call=facts(attributes={"lang": "en"}))
    assert result.steps[0] == RingStep(at_s=0.0, start=("102", "103"))


def test_skills_add_the_rest_after_tier_time() -> None:
    result = decide(skilled_department(tier_time_s=12.0), call=facts(attributes={"lang": "en"}))
    assert result.steps[1] == RingStep(at_s=12.0, start=("101", "104"))


def test_skills_member_missing_one_attribute_waits_with_the_rest() -> None:
    result = decide(skilled_department(),
                    call=facts(attributes={"lang": "en", "product": "windows"}))
    assert result.steps[0].start == ("102",)
    assert result.steps[1].start == ("101", "103", "104")


def test_skills_give_up_at_the_later_of_ring_timeout_and_two_tier_times() -> None:
    call = facts(attributes={"lang": "en"})
    assert decide(skilled_department(tier_time_s=10.0), call=call).give_up_at_s == 30.0
    assert decide(skilled_department(tier_time_s=20.0), call=call).give_up_at_s == 40.0


def test_skills_call_without_attributes_rings_everyone_at_once() -> None:
    result = decide(skilled_department())
    assert result.steps == (RingStep(at_s=0.0, start=("101", "102", "103", "104")),)
    assert result.give_up_at_s == 30.0


def test_skills_without_a_skilled_member_available_rings_everyone_at_once() -> None:
    result = decide(skilled_department(), call=facts(attributes={"lang": "fr"}))
    assert result.steps == (RingStep(at_s=0.0, start=("101", "102", "103", "104")),)


def test_skills_when_only_a_busy_member_has_the_skill_ring_everyone_else() -> None:
    snapshot = department("skills", member("101", skills=frozenset({"lang:en"}), busy=True),
                          *members("102", "103"))
    result = decide(snapshot, call=facts(attributes={"lang": "en"}))
    assert result.steps == (RingStep(at_s=0.0, start=("102", "103")),)


# --- who can be offered a call -------------------------------------------------------------------


@pytest.mark.parametrize("status", [BREAK, DND, OUTBOUND, LOGGED_OUT])
@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_member_not_on_line_is_skipped(strategy: str, status: str) -> None:
    result = decide(department(strategy, member("101", status=status), member("102")),
                    rng=random.Random(0))
    assert started(result) == ["102"]


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_member_talking_on_another_call_is_skipped(strategy: str) -> None:
    result = decide(department(strategy, member("101", busy=True), member("102")),
                    rng=random.Random(0))
    assert started(result) == ["102"]


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_unregistered_member_is_skipped(strategy: str) -> None:
    result = decide(department(strategy, member("101", registered=False), member("102")),
                    rng=random.Random(0))
    assert started(result) == ["102"]


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_member_in_wrap_up_is_skipped_until_it_ends(strategy: str) -> None:
    snapshot = department(strategy, member("101", wrap_up_until=NOW + 30), member("102"))
    assert started(decide(snapshot, now=NOW, rng=random.Random(0))) == ["102"]
    assert started(decide(snapshot, now=NOW + 29.9, rng=random.Random(0))) == ["102"]
    assert sorted(started(decide(snapshot, now=NOW + 30, rng=random.Random(0)))) == [
        "101", "102",
    ]


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_excluded_member_is_skipped(strategy: str) -> None:
    result = decide(department(strategy, *members("101", "102")), exclude=frozenset({"101"}),
                    rng=random.Random(0))
    assert started(result) == ["102"]


def test_availability_is_member_state_available() -> None:
    # The filter in `plan` is inlined for speed; it must say exactly what `available(now)` says.
    for registered, status, busy, wrap_up_until in product(
        (True, False), AGENT_STATUSES, (True, False), (None, NOW - 1, NOW, NOW + 1),
    ):
        candidate = member("101", registered=registered, status=status, busy=busy,
                           wrap_up_until=wrap_up_until)
        rung = started(decide(department("ring_all", candidate)))
        assert (rung == ["101"]) == candidate.available(NOW), candidate


# --- nobody available ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_no_available_member_gives_an_empty_plan(strategy: str) -> None:
    result = decide(department(
        strategy, member("101", registered=False), member("102", busy=True),
        member("103", status=BREAK), member("104", wrap_up_until=NOW + 1),
    ))
    assert result == EMPTY_PLAN
    assert result.steps == () and result.give_up_at_s == 0.0


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_department_without_members_gives_an_empty_plan(strategy: str) -> None:
    assert decide(department(strategy)) == EMPTY_PLAN


@pytest.mark.parametrize("strategy", ["round_robin", "weighted"])
def test_empty_plan_leaves_the_routing_memory_as_it_was(strategy: str) -> None:
    memory = RoutingMemory(round_robin_last="101", weighted_current={"101": 0.25})
    decide(department(strategy, member("101", busy=True, weight=10)), memory=memory)
    assert memory == RoutingMemory(round_robin_last="101", weighted_current={"101": 0.25})


@pytest.mark.parametrize("strategy", ["no_such_strategy", "ringall", ""])
def test_unknown_strategy_raises_even_with_nobody_available(strategy: str) -> None:
    with pytest.raises(UnknownStrategyError):
        decide(department(strategy, member("101", busy=True)))


# --- sticky overlays -----------------------------------------------------------------------------


def sticky_department(strategy: str = "in_order", **settings: Any) -> DepartmentSnapshot:
    return department(strategy, *members("101", "102", "103"), sticky_ring_s=10.0, **settings)


def test_sticky_member_rings_alone_first() -> None:
    result = decide(sticky_department(), call=facts(sticky_member="102"))
    assert result.steps[0] == RingStep(at_s=0.0, start=("102",))


def test_strategy_plan_follows_shifted_by_sticky_ring_s_without_the_sticky_member() -> None:
    result = decide(sticky_department(ring_timeout_s=20), call=facts(sticky_member="102"))
    assert [(step.at_s, step.start) for step in result.steps[1:]] == [
        (10.0, ("101",)), (30.0, ("103",)),
    ]


def test_sticky_member_stops_ringing_when_the_strategy_plan_starts() -> None:
    result = decide(sticky_department(), call=facts(sticky_member="102"))
    assert result.steps[1].stop == ("102",)


def test_sticky_overlay_shifts_the_give_up_time() -> None:
    result = decide(sticky_department("ring_all", ring_timeout_s=30),
                    call=facts(sticky_member="102"))
    assert result.steps == (
        RingStep(at_s=0.0, start=("102",)),
        RingStep(at_s=10.0, start=("101", "103"), stop=("102",)),
    )
    assert result.give_up_at_s == 40.0


def test_sticky_overlay_moves_on_at_once_when_the_sticky_member_declines() -> None:
    result = decide(sticky_department("ring_all"), call=facts(sticky_member="102"))
    assert result.advance_on_failure


def test_crm_owner_rings_first_when_there_is_no_sticky_member() -> None:
    result = decide(sticky_department(), call=facts(crm_owner="103"))
    assert result.steps[0].start == ("103",)


def test_sticky_member_comes_before_the_crm_owner() -> None:
    result = decide(sticky_department(), call=facts(sticky_member="102", crm_owner="103"))
    assert result.steps[0].start == ("102",)


def test_crm_owner_rings_first_when_the_sticky_member_cannot_take_the_call() -> None:
    snapshot = department("in_order", member("101"), member("102", busy=True), member("103"))
    result = decide(snapshot, call=facts(sticky_member="102", crm_owner="103"))
    assert result.steps[0] == RingStep(at_s=0.0, start=("103",))


def test_unavailable_sticky_member_gets_no_overlay() -> None:
    snapshot = department("in_order", member("101"), member("102", status=DND), member("103"))
    result = decide(snapshot, call=facts(sticky_member="102"))
    assert order(result) == ["101", "103"]
    assert result.steps[0].at_s == 0.0


def test_excluded_sticky_member_gets_no_overlay() -> None:
    result = decide(sticky_department(), call=facts(sticky_member="102"),
                    exclude=frozenset({"102"}))
    assert order(result) == ["101", "103"]


def test_sticky_member_outside_the_department_gets_no_overlay() -> None:
    result = decide(sticky_department(), call=facts(sticky_member="555"))
    assert order(result) == ["101", "102", "103"]


def test_sticky_member_alone_in_the_department_rings_the_strategy_full_time() -> None:
    snapshot = department("ring_all", member("101"), member("102", busy=True),
                          ring_timeout_s=30, sticky_ring_s=10.0)
    result = decide(snapshot, call=facts(sticky_member="101"))
    assert result.steps == (RingStep(at_s=0.0, start=("101",)),)
    assert result.give_up_at_s == 30.0


def test_sticky_overlay_on_round_robin_remembers_the_strategy_first_offer() -> None:
    memory = RoutingMemory()
    decide(sticky_department("round_robin"), call=facts(sticky_member="101"), memory=memory)
    assert memory.round_robin_last == "102"


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_sticky_overlay_applies_to_every_strategy(strategy: str) -> None:
    snapshot = department(strategy, *(
        member(str(101 + i), tier=1 + i % 2, weight=10.0) for i in range(4)
    ), sticky_ring_s=8.0)
    plain = decide(department(strategy, *(
        member(str(101 + i), tier=1 + i % 2, weight=10.0) for i in (0, 1, 3)
    )), rng=random.Random(9))
    result = decide(snapshot, call=facts(sticky_member="103"), rng=random.Random(9))
    assert result.steps[0] == RingStep(at_s=0.0, start=("103",))
    assert [(s.at_s - 8.0, s.start) for s in result.steps[1:]] == [
        (s.at_s, s.start) for s in plain.steps
    ]
    assert result.give_up_at_s == plain.give_up_at_s + 8.0


# --- purity --------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_same_state_memory_and_rng_give_the_same_plan(strategy: str) -> None:
    snapshot = department(strategy, *(
        member(str(101 + i), tier=1 + i % 3, weight=float(i), rank=i % 4 or None,
               last_call_ended_at=NOW - 7 * i if i % 2 else None, talk_time_s=13.0 * (i % 5),
               calls_answered=i % 3)
        for i in range(8)
    ))
    first_memory, second_memory = RoutingMemory(), RoutingMemory()
    for i in range(5):
        first = decide(snapshot, memory=first_memory, now=NOW + i, rng=random.Random(i))
        second = decide(snapshot, memory=second_memory, now=NOW + i, rng=random.Random(i))
        assert first == second
    assert first_memory == second_memory


def test_every_configured_strategy_name_is_implemented() -> None:
    from firmware.store.config import STRATEGIES as CONFIGURED

    assert set(STRATEGIES) == set(CONFIGURED)
