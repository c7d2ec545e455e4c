"""Agent state: each employee's status, calls, wrap-up and the figures routing needs.

Pure: every method takes `now` (the daemon's monotonic clock) and the caller persists what it
must. Statuses are the product's: On line, Break, Do not disturb, Outbound, Logged out — each
with a reason and a since-when. After an answered call an agent is in wrap-up for the configured
time (Asterisk wrapuptime, FreeSWITCH wrap-up-time); after N offers in a row that they did not
answer they are put on Break automatically, with the reason saying so (Asterisk autopause,
FreeSWITCH max-no-answer). Talk time and answered calls are counted per local day for
least_talk_time / fewest_calls; the day boundary is the caller's to announce (`new_day`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .routing.model import AGENT_STATUSES, BREAK, ON_LINE

LOGGER = logging.getLogger(__name__)

AUTO_BREAK_REASON = "auto: {count} unanswered calls in a row"


@dataclass(slots=True)
class AgentState:
    extension: str
    status: str = ON_LINE
    reason: str = ""
    since: float = 0.0
    calls_in_progress: int = 0
    wrap_up_until: float | None = None
    last_call_ended_at: float | None = None
    talk_time_s: float = 0.0  # today
    calls_answered: int = 0  # today
    unanswered_in_row: int = 0
    auto_break: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusChanged:
    """A status change to persist and to show (source: cli, phone, web, auto)."""

    extension: str
    status: str
    reason: str
    at: float
    source: str


@dataclass(slots=True)
class AgentBook:
    """Every agent's state. Wrap-up time and the auto-break limit are the department's (as in
    Asterisk, per queue): the caller passes them with each event."""

    agents: dict[str, AgentState] = field(default_factory=dict)
    # An agent nobody has set a status for has been On line since the book began (the daemon
    # started), not since the clock's epoch.
    started_at: float = 0.0

    def agent(self, extension: str) -> AgentState:
        state = self.agents.get(extension)
        if state is None:
            state = self.agents[extension] = AgentState(extension, since=self.started_at)
        return state

    def set_status(
        self, extension: str, status: str, now: float, *, reason: str = "", source: str
    ) -> StatusChanged:
        if status not in AGENT_STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(AGENT_STATUSES)}")
        state = self.agent(extension)
        if state.status != status or state.reason != reason:
            state.since = now
        state.status = status
        state.reason = reason
        state.auto_break = source == "auto"
        if status == ON_LINE:
            state.unanswered_in_row = 0
        LOGGER.info("agent %s is now %s (%s, by %s)", extension, status, reason or "-", source)
        return StatusChanged(extension=extension, status=status, reason=reason, at=now,
                             source=source)

    def restore(self, extension: str, status: str, reason: str, since: float) -> None:
        """Load a status saved before a restart (`since` already on the current clock)."""
        state = self.agent(extension)
        state.status, state.reason, state.since = status, reason, since

    # ---------------------------------------------------------------- call events
    def offer_answered(self, extension: str, now: float) -> None:
        state = self.agent(extension)
        state.unanswered_in_row = 0
        state.calls_in_progress += 1
        state.calls_answered += 1

    def offer_unanswered(
        self, extension: str, now: float, *, auto_break_after: int
    ) -> StatusChanged | None:
        """An offer rang out: after `auto_break_after` in a row (0: never) the agent has
        probably walked away, and is put on Break so callers stop waiting for them."""
        state = self.agent(extension)
        state.unanswered_in_row += 1
        if (
            auto_break_after > 0
            and state.status == ON_LINE
            and state.unanswered_in_row >= auto_break_after
        ):
            reason = AUTO_BREAK_REASON.format(count=state.unanswered_in_row)
            return self.set_status(extension, BREAK, now, reason=reason, source="auto")
        return None

    def call_started(self, extension: str) -> None:
        """The agent placed a call (not an offer): busy, but no answered-offer statistics."""
        self.agent(extension).calls_in_progress += 1

    def call_ended(
        self, extension: str, now: float, *, talk_s: float, wrap_up_s: float = 0.0
    ) -> None:
        """A call of the agent's ended; `wrap_up_s` of after-call work follow an answered offer
        (0 for the agent's own calls and departments without wrap-up)."""
        state = self.agent(extension)
        state.calls_in_progress = max(0, state.calls_in_progress - 1)
        state.last_call_ended_at = now
        state.talk_time_s += talk_s
        if wrap_up_s > 0:
            state.wrap_up_until = now + wrap_up_s

    def new_day(self) -> None:
        """Local midnight: the per-day figures start again."""
        for state in self.agents.values():
            state.talk_time_s = 0.0
            state.calls_answered = 0

    def busy(self, extension: str) -> bool:
        return self.agent(extension).calls_in_progress > 0

    def next_wrap_up_end(self, now: float) -> float | None:
        ends = [s.wrap_up_until for s in self.agents.values()
                if s.wrap_up_until is not None and s.wrap_up_until > now]
        return min(ends) if ends else None
