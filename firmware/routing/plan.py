"""Ring plans: which phones ring when, decided from a snapshot of the department and `now`.

A strategy is a pure function: it sees the department's configuration and each member's state,
and returns a `RingPlan` — a list of timed steps that start and stop ringing members — plus the
moment the department gives up and its no-answer action takes over. The B2BUA carries the plan
out; it never decides who rings. Nothing here knows whether the call came from SIP, GSM or FXO.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberState:
    """What routing needs to know about one department member at this moment."""

    extension: str
    ring_time_s: float | None = None
    registered: bool = True
    busy: bool = False  # already on a call: skipped (Asterisk ringinuse=no)

    @property
    def available(self) -> bool:
        return self.registered and not self.busy


@dataclass(frozen=True, slots=True, kw_only=True)
class DepartmentSnapshot:
    number: str
    strategy: str
    ring_timeout_s: float
    members: tuple[MemberState, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RingStep:
    """At `at_s` seconds after the call reached the department: start and stop these members."""

    at_s: float
    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RingPlan:
    steps: tuple[RingStep, ...]
    give_up_at_s: float
    # When every ringing leg of the current step fails early (busy, declined), jump to the next
    # step at once instead of waiting out the ring time (in_order, cascading).
    advance_on_failure: bool = False

    @property
    def is_empty(self) -> bool:
        return not any(step.start for step in self.steps)


class UnknownStrategyError(ValueError):
    pass


def _ring_all(department: DepartmentSnapshot, available: Sequence[MemberState]) -> RingPlan:
    members = tuple(m.extension for m in available)
    return RingPlan(
        steps=(RingStep(at_s=0.0, start=members),) if members else (),
        give_up_at_s=department.ring_timeout_s,
    )


def _in_order(department: DepartmentSnapshot, available: Sequence[MemberState]) -> RingPlan:
    # Each member rings for their own ring time (default: the department's ring_timeout_s,
    # as Asterisk's linear strategy uses the queue timeout per member); the previous stops.
    steps: list[RingStep] = []
    offset = 0.0
    previous: tuple[str, ...] = ()
    for member in available:
        steps.append(RingStep(at_s=offset, start=(member.extension,), stop=previous))
        previous = (member.extension,)
        offset += member.ring_time_s or department.ring_timeout_s
    return RingPlan(steps=tuple(steps), give_up_at_s=offset, advance_on_failure=True)


STRATEGIES: dict[str, Callable[[DepartmentSnapshot, Sequence[MemberState]], RingPlan]] = {
    "ring_all": _ring_all,
    "in_order": _in_order,
}


def plan_department_call(
    department: DepartmentSnapshot, *, exclude: frozenset[str] = frozenset()
) -> RingPlan:
    """The ring plan for a call to `department`; `exclude` removes e.g. the calling extension."""
    try:
        strategy = STRATEGIES[department.strategy]
    except KeyError:
        raise UnknownStrategyError(department.strategy) from None
    available = [m for m in department.members if m.available and m.extension not in exclude]
    return strategy(department, available)
