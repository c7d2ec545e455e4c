"""Ring plans (plan.py): the shape the B2BUA carries out, how strategies build it, and a hunt's
steps built on demand that behave as the tuple they stand for.

Who rings when, strategy by strategy, is specified in tests/routing/test_strategies.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from firmware.routing.model import CallFacts, DepartmentSnapshot, MemberState, RoutingMemory
from firmware.routing.plan import (
    EMPTY_PLAN,
    HuntSteps,
    RingPlan,
    RingStep,
    UnknownStrategyError,
    make_step,
)
from firmware.routing.strategies import plan

ORDER = ["101", "102", "103"]
AT_S = [0.0, 10.0, 25.0]


def decide(strategy: str, *members: MemberState) -> RingPlan:
    department = DepartmentSnapshot(
        number="200", strategy=strategy, ring_timeout_s=30.0, members=members,
    )
    return plan(department, CallFacts(caller="101", dialed="200"), RoutingMemory(), 0.0)


# --- RingStep / RingPlan -------------------------------------------------------------------------


def test_a_step_starts_and_stops_nobody_by_default() -> None:
    assert RingStep(at_s=5.0) == RingStep(at_s=5.0, start=(), stop=())


def test_steps_and_plans_are_immutable() -> None:
    with pytest.raises(AttributeError):  # a named tuple
        RingStep(at_s=0.0).at_s = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        EMPTY_PLAN.give_up_at_s = 1.0  # type: ignore[misc]


def test_a_plan_with_members_is_not_empty() -> None:
    assert not RingPlan(steps=(RingStep(at_s=0.0, start=("101",)),), give_up_at_s=30.0).is_empty


def test_a_plan_whose_steps_start_nobody_is_empty() -> None:
    assert RingPlan(steps=(RingStep(at_s=0.0, stop=("101",)),), give_up_at_s=30.0).is_empty


def test_the_empty_plan_has_no_steps_and_gives_up_at_once() -> None:
    assert EMPTY_PLAN.steps == ()
    assert EMPTY_PLAN.give_up_at_s == 0.0
    assert EMPTY_PLAN.is_empty


def test_a_plan_waits_out_the_ring_time_on_failure_by_default() -> None:
    assert not RingPlan(steps=(), give_up_at_s=0.0).advance_on_failure


# --- building steps without the dataclass __init__ -----------------------------------------------


def test_make_step_equals_the_dataclass_step() -> None:
    built = make_step(10.0, ("102",), ("101",))
    assert built == RingStep(at_s=10.0, start=("102",), stop=("101",))
    assert hash(built) == hash(RingStep(at_s=10.0, start=("102",), stop=("101",)))
    assert type(built) is RingStep


def test_make_step_stops_nobody_by_default() -> None:
    assert make_step(0.0, ("101",)) == RingStep(at_s=0.0, start=("101",))


# --- what strategies return ----------------------------------------------------------------------


def test_strategies_return_steps_equal_to_dataclass_steps() -> None:
    result = decide("in_order", MemberState(extension="101", ring_time_s=10.0),
                    MemberState(extension="102"))
    assert result == RingPlan(
        steps=(
            RingStep(at_s=0.0, start=("101",)),
            RingStep(at_s=10.0, start=("102",), stop=("101",)),
        ),
        give_up_at_s=40.0,
        advance_on_failure=True,
    )


def test_no_available_member_gives_the_empty_plan() -> None:
    assert decide("ring_all", MemberState(extension="101", registered=False)) == EMPTY_PLAN


def test_unknown_strategy_error_names_the_strategy() -> None:
    with pytest.raises(UnknownStrategyError) as info:
        decide("no_such_strategy", MemberState(extension="101"))
    assert str(info.value) == "no_such_strategy"


def test_unknown_strategy_error_is_a_value_error() -> None:
    assert issubclass(UnknownStrategyError, ValueError)


# --- hunt steps ----------------------------------------------------------------------------------


def test_hunt_steps_start_each_member_and_stop_the_one_before() -> None:
    steps = HuntSteps(AT_S, ORDER)
    assert len(steps) == 3
    assert steps == (
        RingStep(0.0, ("101",)),
        RingStep(10.0, ("102",), ("101",)),
        RingStep(25.0, ("103",), ("102",)),
    )
    assert steps[-1] == RingStep(25.0, ("103",), ("102",))
    assert steps[1:] == (RingStep(10.0, ("102",), ("101",)), RingStep(25.0, ("103",), ("102",)))
    with pytest.raises(IndexError):
        steps[3]
    with pytest.raises(IndexError):
        steps[-4]


def test_a_lead_rings_alone_first_and_stops_when_the_hunt_starts() -> None:
    steps = HuntSteps([8.0, 18.0], ["102", "103"]).with_lead(("101",), 0.0)
    assert list(steps) == [
        RingStep(0.0, ("101",)),
        RingStep(8.0, ("102",), ("101",)),
        RingStep(18.0, ("103",), ("102",)),
    ]


def test_hunt_steps_compare_and_hash_like_their_tuple() -> None:
    steps = HuntSteps(AT_S, ORDER)
    as_tuple = tuple(steps)
    assert as_tuple == steps and steps == as_tuple and steps == HuntSteps(AT_S, ORDER)
    assert steps != HuntSteps(AT_S, ["101", "103", "102"])
    assert hash(RingPlan(steps=steps, give_up_at_s=40.0)) == hash(
        RingPlan(steps=as_tuple, give_up_at_s=40.0)
    )
    assert not RingPlan(steps=steps, give_up_at_s=40.0).is_empty
    assert RingPlan(steps=HuntSteps([], []), give_up_at_s=0.0).is_empty


def test_cascading_steps_keep_the_earlier_phones_ringing() -> None:
    steps = HuntSteps([0.0, 5.0, 10.0], ORDER, stop_previous=False)
    assert steps == (
        RingStep(0.0, ("101",)), RingStep(5.0, ("102",)), RingStep(10.0, ("103",)),
    )
    led = steps.with_lead(("109",), 0.0)
    assert led[1] == RingStep(0.0, ("101",), ("109",))  # the lead still stops at the start
    assert led[2] == RingStep(5.0, ("102",))
