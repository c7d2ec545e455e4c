"""What routing decides from: snapshots of a department, its members and the call, plus memory.

Everything here is plain data. The gateway builds a `DepartmentSnapshot` and a `CallFacts` at the
moment a call needs a ring plan; strategies (strategies.py) turn them into a `RingPlan`
(plan.py). The only state routing keeps between calls is `RoutingMemory` (where round robin
stopped, the weighted round robin's running counters), owned by the gateway and passed in.
Nothing here reads a clock or knows whether a call came from SIP, GSM or FXO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .scheme import DEPARTMENT_DEFAULTS

# Agent statuses (the product's words: On line / Break / Do not disturb / Outbound / Logged out).
ON_LINE = "on_line"
BREAK = "break"
DND = "dnd"
OUTBOUND = "outbound"
LOGGED_OUT = "logged_out"
AGENT_STATUSES = (ON_LINE, BREAK, DND, OUTBOUND, LOGGED_OUT)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberState:
    """One department member at this moment, as routing sees them."""

    extension: str
    ring_time_s: float | None = None  # per-member ring time (in_order, cascading)
    registered: bool = True  # at least one phone registered
    status: str = ON_LINE
    busy: bool = False  # talking on another call (Asterisk ringinuse=no)
    wrap_up_until: float | None = None  # after-call work ends at this `now`
    rank: int | None = None  # by_rank: 1 is best (manual), or from conversion (auto)
    tier: int = 1  # tiers: 1 rings first
    weight: float = 0.0  # weighted: percentage share of offered calls
    skills: frozenset[str] = frozenset()  # e.g. {"lang:en", "product:windows"}
    last_call_ended_at: float | None = None  # longest_idle: the END of their last call
    talk_time_s: float = 0.0  # least_talk_time: within the department's window (today)
    calls_answered: int = 0  # fewest_calls: within the window
    conversion: float | None = None  # sales / target calls answered, for rank: auto

    def available(self, now: float) -> bool:
        """Can be offered a call now: registered, On line, not talking, not in wrap-up."""
        return (
            self.registered
            and self.status == ON_LINE
            and not self.busy
            and (self.wrap_up_until is None or now >= self.wrap_up_until)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DepartmentSnapshot:
    number: str
    strategy: str
    ring_timeout_s: float
    members: tuple[MemberState, ...]  # in configured order (position 1 first)
    # The department's knobs (firmware.routing.scheme.DepartmentSettings says what each is).
    step_delay_s: float = DEPARTMENT_DEFAULTS.step_delay_s
    tier_time_s: float = DEPARTMENT_DEFAULTS.tier_time_s
    tier_mode: str = DEPARTMENT_DEFAULTS.tier_mode
    rank_mode: str = DEPARTMENT_DEFAULTS.rank_mode
    sticky_ring_s: float = DEPARTMENT_DEFAULTS.sticky_ring_s


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFacts:
    """What routing may know about the call (never where it physically came from)."""

    caller: str
    dialed: str
    attributes: dict[str, str] = field(default_factory=dict)  # e.g. {"lang": "en"} → skills
    sticky_member: str | None = None  # who spoke with this caller last (within the window)
    crm_owner: str | None = None  # the caller's responsible manager per the CRM
    vip: bool = False


@dataclass(slots=True)
class RoutingMemory:
    """Per-department memory between calls; mutated only by `strategies.plan`."""

    round_robin_last: str | None = None  # rrmemory: the member rung first last time
    # ...and their position (0-based, configured order), so the rotation carries on from the same
    # place when that member has left the department since.
    round_robin_position: int | None = None
    weighted_current: dict[str, float] = field(default_factory=dict)  # smooth WRR counters
    offered: dict[str, int] = field(default_factory=dict)  # first offers per member (weighted)
