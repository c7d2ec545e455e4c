"""Ring plans: the timed steps that start and stop ringing department members.

A strategy (strategies.py) decides, from a snapshot of the department and `now`, a `RingPlan` — a
list of timed steps that start and stop ringing members — plus the moment the department gives up
and its no-answer action takes over. The B2BUA carries the plan out; it never decides who rings.
This module holds only the plan's shape, so the B2BUA can import it without the strategies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, overload


class RingStep(NamedTuple):
    """At `at_s` seconds after the call reached the department: start and stop these members.

    A named tuple rather than a dataclass: a hunting plan for a 100-member department holds 100
    steps, and building them is most of a routing decision's cost (p99 budget: 100 µs)."""

    at_s: float
    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()


class HuntSteps(Sequence[RingStep]):
    """The steps of a hunt, built when asked for: member i starts at `at_s[i]` and the one
    before stops (with `stop_previous=False`, keeps ringing: cascading). A hunt through 100
    members is 100 steps, yet a call is answered (or given up) within the first few; building
    only those keeps a routing decision a few microseconds instead of tens. `lead` rings alone
    first, from `lead_at_s` (the sticky overlay), and stops when the hunt starts."""

    __slots__ = ("_at_s", "_order", "_lead", "_lead_at_s", "_length", "_stop_previous")

    def __init__(self, at_s: Sequence[float], order: Sequence[str], *,
                 lead: tuple[str, ...] = (), lead_at_s: float = 0.0,
                 stop_previous: bool = True) -> None:
        assert len(at_s) == len(order), "one start time per member"
        self._at_s = at_s
        self._order = order
        self._lead = lead
        self._lead_at_s = lead_at_s
        self._stop_previous = stop_previous
        self._length = len(order) + (1 if lead else 0)

    def with_lead(self, lead: tuple[str, ...], lead_at_s: float) -> HuntSteps:
        return HuntSteps(self._at_s, self._order, lead=lead, lead_at_s=lead_at_s,
                         stop_previous=self._stop_previous)

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> RingStep: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[RingStep, ...]: ...

    def __getitem__(self, index: int | slice) -> RingStep | tuple[RingStep, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self._length)))
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("hunt step out of range")
        order = self._order
        if self._lead:
            if index == 0:
                return RingStep(self._lead_at_s, self._lead)
            index -= 1
            previous = (order[index - 1],) if index else self._lead
        else:
            previous = (order[index - 1],) if index else ()
        if not self._stop_previous and index:
            previous = ()
        return RingStep(self._at_s[index], (order[index],), previous)

    def __iter__(self) -> Iterator[RingStep]:
        for index in range(self._length):
            yield self[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"HuntSteps({list(self)!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class RingPlan:
    steps: Sequence[RingStep]
    give_up_at_s: float
    # When every ringing leg of the current step fails early (busy, declined), jump to the next
    # step at once instead of waiting out the ring time (hunting, cascading, tiers).
    advance_on_failure: bool = False

    @property
    def is_empty(self) -> bool:
        return not any(step.start for step in self.steps)


# No member available: the B2BUA queues the call (or runs the no-answer action).
EMPTY_PLAN = RingPlan(steps=(), give_up_at_s=0.0)


class UnknownStrategyError(ValueError):
    """The department names a strategy routing does not implement."""


def make_step(at_s: float, start: tuple[str, ...], stop: tuple[str, ...] = ()) -> RingStep:
    return RingStep(at_s, start, stop)

