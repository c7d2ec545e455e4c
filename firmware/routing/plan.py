"""Ring plans: the timed steps that start and stop ringing department members.

A strategy (strategies.py) decides, from a snapshot of the department and `now`, a `RingPlan` — a
list of timed steps that start and stop ringing members — plus the moment the department gives up
and its no-answer action takes over. The B2BUA carries the plan out; it never decides who rings.
This module holds only the plan's shape, so the B2BUA can import it without the strategies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple


class RingStep(NamedTuple):
    """At `at_s` seconds after the call reached the department: start and stop these members.

    A named tuple rather than a dataclass: a hunting plan for a 100-member department holds 100
    steps, and building them is most of a routing decision's cost (p99 budget: 100 µs)."""

    at_s: float
    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RingPlan:
    steps: tuple[RingStep, ...]
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


def make_steps(
    at_s: Sequence[float], start: Sequence[tuple[str, ...]], stop: Sequence[tuple[str, ...]]
) -> tuple[RingStep, ...]:
    """Many `RingStep`s at once: step i is `RingStep(at_s[i], start[i], stop[i])`."""
    assert len(at_s) == len(start) == len(stop), "one time, start and stop per step"
    return tuple(map(RingStep, at_s, start, stop))
