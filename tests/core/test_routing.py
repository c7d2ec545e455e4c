"""Ring plans: who rings when, as a pure function of the department snapshot."""

from __future__ import annotations

import pytest

from firmware.routing.plan import (
    DepartmentSnapshot,
    MemberState,
    RingStep,
    UnknownStrategyError,
    plan_department_call,
)


def department(
    strategy: str, *members: MemberState, ring_timeout_s: float = 30.0,
) -> DepartmentSnapshot:
    return DepartmentSnapshot(
        number="200", strategy=strategy, ring_timeout_s=ring_timeout_s, members=members,
    )


def member(
    extension: str, *, ring_time_s: float | None = None, registered: bool = True,
    busy: bool = False,
) -> MemberState:
    return MemberState(
        extension=extension, ring_time_s=ring_time_s, registered=registered, busy=busy,
    )


# --- ring_all ------------------------------------------------------------------------------------


def test_ring_all_starts_every_available_member_at_once() -> None:
    plan = plan_department_call(department("ring_all", member("101"), member("102")))
    assert plan.steps == (RingStep(at_s=0.0, start=("101", "102")),)


def test_ring_all_gives_up_at_the_department_ring_timeout() -> None:
    plan = plan_department_call(department("ring_all", member("101"), ring_timeout_s=25))
    assert plan.give_up_at_s == 25


def test_ring_all_waits_for_the_timeout_when_a_member_fails() -> None:
    plan = plan_department_call(department("ring_all", member("101"), member("102")))
    assert not plan.advance_on_failure


# --- in_order ------------------------------------------------------------------------------------


def test_in_order_starts_each_member_when_the_previous_ring_time_ends() -> None:
    plan = plan_department_call(department(
        "in_order", member("101", ring_time_s=10), member("102", ring_time_s=15), member("103"),
    ))
    assert [(s.at_s, s.start) for s in plan.steps] == [
        (0.0, ("101",)), (10.0, ("102",)), (25.0, ("103",)),
    ]


def test_in_order_stops_the_previous_member_when_the_next_starts() -> None:
    plan = plan_department_call(department(
        "in_order", member("101", ring_time_s=10), member("102", ring_time_s=15), member("103"),
    ))
    assert [s.stop for s in plan.steps] == [(), ("101",), ("102",)]


def test_in_order_member_without_ring_time_rings_for_the_department_timeout() -> None:
    plan = plan_department_call(department(
        "in_order", member("101"), member("102"), ring_timeout_s=20,
    ))
    assert [s.at_s for s in plan.steps] == [0.0, 20.0]


def test_in_order_gives_up_when_the_last_member_ring_time_ends() -> None:
    plan = plan_department_call(department(
        "in_order", member("101", ring_time_s=10), member("102"), ring_timeout_s=40,
    ))
    assert plan.give_up_at_s == 50.0


def test_in_order_moves_on_as_soon_as_the_ringing_member_fails() -> None:
    plan = plan_department_call(department("in_order", member("101"), member("102")))
    assert plan.advance_on_failure


def test_in_order_skipped_member_takes_no_ring_time() -> None:
    plan = plan_department_call(department(
        "in_order", member("101", ring_time_s=10), member("102", ring_time_s=15, busy=True),
        member("103", ring_time_s=20),
    ))
    assert [(s.at_s, s.start, s.stop) for s in plan.steps] == [
        (0.0, ("101",), ()), (10.0, ("103",), ("101",)),
    ]
    assert plan.give_up_at_s == 30.0


# --- who is left out -----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["ring_all", "in_order"])
def test_unregistered_members_are_skipped(strategy: str) -> None:
    plan = plan_department_call(department(
        strategy, member("101", registered=False), member("102"),
    ))
    assert [s.start for s in plan.steps] == [("102",)]


@pytest.mark.parametrize("strategy", ["ring_all", "in_order"])
def test_busy_members_are_skipped(strategy: str) -> None:
    plan = plan_department_call(department(strategy, member("101", busy=True), member("102")))
    assert [s.start for s in plan.steps] == [("102",)]


@pytest.mark.parametrize("strategy", ["ring_all", "in_order"])
def test_excluded_members_are_skipped(strategy: str) -> None:
    plan = plan_department_call(
        department(strategy, member("101"), member("102")), exclude=frozenset({"101"}),
    )
    assert [s.start for s in plan.steps] == [("102",)]


@pytest.mark.parametrize("strategy", ["ring_all", "in_order"])
def test_no_available_member_gives_an_empty_plan(strategy: str) -> None:
    plan = plan_department_call(department(
        strategy, member("101", registered=False), member("102", busy=True),
    ))
    assert plan.is_empty
    assert plan.steps == ()


@pytest.mark.parametrize("strategy", ["ring_all", "in_order"])
def test_department_without_members_gives_an_empty_plan(strategy: str) -> None:
    assert plan_department_call(department(strategy)).is_empty


def test_a_plan_with_members_is_not_empty() -> None:
    assert not plan_department_call(department("ring_all", member("101"))).is_empty


def test_member_state_is_available_only_registered_and_idle() -> None:
    assert member("101").available
    assert not member("101", registered=False).available
    assert not member("101", busy=True).available


# --- strategies not implemented ------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["longest_idle", "round_robin", "no_such_strategy"])
def test_unknown_strategy_raises(strategy: str) -> None:
    with pytest.raises(UnknownStrategyError) as info:
        plan_department_call(department(strategy, member("101")))
    assert str(info.value) == strategy
