"""Ring plans: a hunt's steps are built on demand and behave as the tuple they stand for."""

from __future__ import annotations

import pytest

from firmware.routing.plan import HuntSteps, RingPlan, RingStep

ORDER = ["101", "102", "103"]
AT_S = [0.0, 10.0, 25.0]


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
