"""Build routing's snapshot of a department from its configuration and its agents' states.

One function for both who route: the daemon (firmware/core/distribution.py, at every offer) and
the what-if replay (firmware/whatif/replay.py, on a simulated clock) — so the replay offers calls
to exactly the members the daemon would, with the same ranks, tiers, weights and skills.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from .model import DepartmentSnapshot, MemberState

if TYPE_CHECKING:
    from ..agents import AgentState
    from ..store.config import Department, Member


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def member_state(member: Member, state: AgentState, *, registered: bool, ringing: bool,
                 employee_skills: Collection[str] = (),
                 conversion: float | None = None) -> MemberState:
    """`member` of a department as routing sees it now. `ringing`: their phone rings for
    another caller of a department with a queue (they are not offered two at once)."""
    extra = member.extra
    # The member's own skills when the department sets them, else the employee's.
    skills = (frozenset(str(skill) for skill in extra["skills"] or []) if "skills" in extra
              else frozenset(employee_skills))
    return MemberState(
        extension=member.extension, ring_time_s=member.ring_time_s, registered=registered,
        status=state.status,
        busy=state.calls_in_progress > 0 or ringing,
        wrap_up_until=state.wrap_up_until,
        rank=_optional_int(extra.get("rank")),
        tier=_optional_int(extra.get("tier")) or 1,
        weight=float(extra.get("weight", 0) or 0),
        skills=skills,
        last_call_ended_at=state.last_call_ended_at,
        talk_time_s=state.talk_time_s, calls_answered=state.calls_answered,
        conversion=conversion,
    )


def department_snapshot(department: Department,
                        members: Iterable[MemberState]) -> DepartmentSnapshot:
    settings = department.settings
    return DepartmentSnapshot(
        number=department.number, strategy=department.strategy,
        ring_timeout_s=department.ring_timeout_s, members=tuple(members),
        step_delay_s=settings.step_delay_s, tier_time_s=settings.tier_time_s,
        tier_mode=settings.tier_mode, rank_mode=settings.rank_mode,
        sticky_ring_s=settings.sticky_ring_s,
    )
