"""Replay a department's recorded calls under other settings: a discrete-event simulation that
drives the routing core itself.

The callers come as they came (same times, same numbers, same patience where the records show
it); the members are On line, on a break or busy with calls of their own as the records say; what
changes is the department's settings — strategy, ring times, weights, queue, wrap-up, members.
Each ring plan comes from `firmware.routing.strategies.plan` with the department's
`RoutingMemory`, and each member's state (calls, wrap-up, talk time today, auto-break after
unanswered offers) is kept by `firmware.agents.AgentBook`, the same objects the daemon uses, on a
simulated clock. How a member answers a ring is drawn from their fitted behaviour
(`behaviour.py`) with a seeded generator, so a run repeats exactly.

What the daemon does and the replay follows (firmware/core/distribution.py): a plan's steps
start and stop members at their times; the first to answer takes the call and the others stop;
with a queue, a member ringing for one caller is not offered another; when the plan gives up the
caller waits in the queue while they may (room, `max_wait_s` from arrival — the deadline wins
even while a phone rings), offered again every `retry_s` and whenever a member becomes free;
otherwise the call goes to the no-answer action, which the replay counts as missed by the
department. A member who is not free when their step comes fails at once, and a plan that
advances on failure moves to its next step at once.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

from ..agents import AgentBook
from ..routing import strategies
from ..routing.model import (
    BREAK,
    ON_LINE,
    CallFacts,
    DepartmentSnapshot,
    MemberState,
    RoutingMemory,
)
from ..routing.plan import RingPlan, UnknownStrategyError
from ..routing.snapshot import department_snapshot, member_state
from ..store.config import Department
from .behaviour import Behaviour
from .history import History

NEW, RINGING, QUEUED, DONE = range(4)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    offered: int
    answered: int
    missed: int  # went to the no-answer action (nobody answered in time, queue full or over)
    abandoned: int  # hung up before an answer (while ringing or waiting)
    abandoned_in_queue: int
    waits: tuple[float, ...]  # of answered calls, seconds from arrival to answer
    member_calls: Mapping[str, int]
    member_talk_s: Mapping[str, float]
    target_answered: float
    expected_sales: float

    @property
    def mean_wait_s(self) -> float:
        return sum(self.waits) / len(self.waits) if self.waits else 0.0

    @property
    def p90_wait_s(self) -> float:
        return percentile(self.waits, 0.9)

    @property
    def conversion(self) -> float | None:
        return self.expected_sales / self.target_answered if self.target_answered else None


def percentile(values: tuple[float, ...] | list[float], fraction: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True, eq=False)
class _Call:
    caller: str
    arrival: float
    patience_at: float
    deadline: float  # queue deadline (arrival + max_wait_s); inf without a queue
    talk_s: float
    target: bool
    state: int = NEW
    attempt: int = 0  # a new ring attempt makes the previous attempt's events stale
    plan: RingPlan | None = None
    started: float = 0.0  # when the current plan started
    step: int = 0
    ringing: dict[str, bool] = field(default_factory=dict)  # extension -> answer pending


class Replay:
    """One run: `Replay(history, behaviour, department, seed).run()`."""

    def __init__(self, history: History, behaviour: Behaviour, department: Department, *,
                 seed: int, added: Mapping[str, str] | None = None,
                 progress: Callable[[float], None] | None = None) -> None:
        self.history = history
        self.behaviour = behaviour
        self.department = department
        self.settings = department.settings
        self.rng = random.Random(seed)
        self.route_rng = random.Random(seed ^ 0x5EED)
        self.progress = progress
        self.members = [m.extension for m in department.members]
        self.member_set = frozenset(self.members)
        # Added members (a variant's "one more"): on line whenever anyone recorded is.
        self.added = dict(added or {})
        self.book = AgentBook(started_at=history.since)
        self.skills = {e.number: e.skills for e in history.config.extensions}
        self._member_states: dict[str, tuple[tuple[object, ...], MemberState]] = {}
        self.memory = RoutingMemory()
        self.queue: list[_Call] = []
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self.sequence = itertools.count()
        self.now = history.since
        self.ringing_members: dict[str, int] = {}  # extension -> rings in progress
        self.last_agent: dict[str, str] = {}
        self.online_recorded = 0
        self.recorded_status: dict[str, str] = {}
        # results
        self.answered = self.missed = self.abandoned = self.abandoned_in_queue = 0
        self.waits: list[float] = []
        self.member_calls: dict[str, int] = {m: 0 for m in self.members}
        self.member_talk: dict[str, float] = {m: 0.0 for m in self.members}
        self.target_answered = 0.0
        self.expected_sales = 0.0
        self._hour_bucket = -1
        self._hour_value = 0

    # ------------------------------------------------------------------ the event loop
    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.events, (when, next(self.sequence), action))

    def run(self) -> ReplayResult:
        history = self.history
        for extension, status in history.initial_status.items():
            self._set_recorded_status(extension, status)
        for change in history.status_changes:
            self.at(change.at, partial(self._status_changed, change.extension, change.status))
        for span in history.busy:
            if span.extension in self.member_set:
                self.at(span.start, partial(self.book.call_started, span.extension))
                self.at(span.end, partial(self._own_call_ended, span.extension))
        self._schedule_midnights()
        calls = history.calls
        behaviour = self.behaviour
        rng = self.rng
        offered = 0
        for record in calls:
            if record.outcome in ("over_capacity", "blacklisted", "closed"):
                continue  # never reached the members, whatever the department's settings
            offered += 1
            queue = self.settings.queue
            deadline = record.at + queue.max_wait_s if queue is not None else math.inf
            target = record.target_call if record.answered else (
                rng.random() < behaviour.target_share)
            call = _Call(
                caller=record.caller, arrival=record.at,
                patience_at=record.at + behaviour.patience(record.waited_s, record.abandoned,
                                                           rng),
                deadline=deadline, talk_s=behaviour.talk_time(record.talk_s, rng),
                target=target,
            )
            self.at(record.at, partial(self._arrive, call))
        total = max(1, len(self.events))
        done = 0
        events = self.events
        while events:
            when, _, action = heapq.heappop(events)
            self.now = when
            action()
            done += 1
            if self.progress is not None and done % 20_000 == 0:
                self.progress(min(1.0, done / total))
        return ReplayResult(
            offered=offered, answered=self.answered, missed=self.missed,
            abandoned=self.abandoned, abandoned_in_queue=self.abandoned_in_queue,
            waits=tuple(self.waits), member_calls=dict(self.member_calls),
            member_talk_s=dict(self.member_talk), target_answered=self.target_answered,
            expected_sales=self.expected_sales,
        )

    def _schedule_midnights(self) -> None:
        tz = self.history.tz
        day = datetime.fromtimestamp(self.history.since, tz).date()
        while True:
            day += timedelta(days=1)
            midnight = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
            if midnight >= self.history.until:
                return
            self.at(midnight, self._new_day)

    def _new_day(self) -> None:
        self.book.new_day()
        self.last_agent.clear()  # sticky: "the manager who spoke to this caller today"

    # ------------------------------------------------------------------ members
    def _set_recorded_status(self, extension: str, status: str) -> None:
        was_online = self.recorded_status.get(extension) == ON_LINE
        self.recorded_status[extension] = status
        self.online_recorded += (status == ON_LINE) - was_online
        # AgentBook.restore: the status as recorded, without logging a change per event.
        if extension in self.member_set:
            self.book.restore(extension, status, "", self.now)
        for added in self.added:
            self.book.restore(added, ON_LINE if self.online_recorded else BREAK, "", self.now)

    def _status_changed(self, extension: str, status: str) -> None:
        self._set_recorded_status(extension, status)
        if status == ON_LINE:
            self._serve_queue()

    def _own_call_ended(self, extension: str) -> None:
        self.book.call_ended(extension, self.now, talk_s=0.0)
        self._serve_queue()

    def _snapshot(self) -> DepartmentSnapshot:
        # The daemon's own snapshot builder (firmware/routing/snapshot.py); every phone is
        # taken as registered while its member is On line (the records keep no registrations).
        # Between two decisions only a member or two change, so each member's state is built
        # again only when what it is made of changed (building 30 of them per decision was 70 %
        # of a replay's time).
        ringing = self.ringing_members if self.settings.queue is not None else {}
        book = self.book
        cache = self._member_states
        members = []
        for member in self.department.members:
            extension = member.extension
            state = book.agent(extension)
            is_ringing = extension in ringing
            key = (state.status, state.calls_in_progress, is_ringing, state.wrap_up_until,
                   state.last_call_ended_at, state.talk_time_s, state.calls_answered)
            cached = cache.get(extension)
            if cached is not None and cached[0] == key:
                members.append(cached[1])
                continue
            built = member_state(member, state, registered=True, ringing=is_ringing,
                                 employee_skills=self.skills.get(extension, ()),
                                 conversion=self.behaviour.conversion.get(extension))
            cache[extension] = (key, built)
            members.append(built)
        return department_snapshot(self.department, members)

    def _plan(self, call: _Call) -> RingPlan:
        sticky = self.last_agent.get(call.caller) if self.settings.sticky == "last_agent" \
            else None
        facts = CallFacts(caller=call.caller, dialed=self.department.number,
                          sticky_member=sticky)
        snapshot = self._snapshot()
        try:
            return strategies.plan(snapshot, facts, self.memory, self.now, rng=self.route_rng)
        except UnknownStrategyError:
            return strategies.plan(replace(snapshot, strategy="ring_all"), facts, self.memory,
                                   self.now, rng=self.route_rng)

    def _hour(self) -> int:
        # The local hour, computed once per quarter hour of simulated time (a time zone
        # conversion per ring would cost more than the ring; every zone's offset is a whole
        # number of quarter hours).
        bucket = int(self.now // 900)
        if bucket != self._hour_bucket:
            self._hour_bucket = bucket
            self._hour_value = self.history.hour_of(self.now)
        return self._hour_value

    def _free(self, extension: str) -> bool:
        state = self.book.agent(extension)
        return (state.status == ON_LINE and state.calls_in_progress == 0
                and (state.wrap_up_until is None or self.now >= state.wrap_up_until))

    # ------------------------------------------------------------------ calls
    def _arrive(self, call: _Call) -> None:
        if call.patience_at < math.inf:
            self.at(call.patience_at, partial(self._hang_up, call))
        self._offer(call)

    def _offer(self, call: _Call) -> None:
        plan = self._plan(call)
        if plan.is_empty:
            self._no_answer(call)
            return
        self._ring(call, plan)

    def _ring(self, call: _Call, plan: RingPlan) -> None:
        if self.settings.queue is not None:
            left = call.deadline - self.now
            if left <= 0:
                self._miss(call)
                return
            if plan.give_up_at_s > left:
                plan = replace(plan, give_up_at_s=left)
        call.state = RINGING
        call.attempt += 1
        call.plan = plan
        call.started = self.now
        call.step = 0
        attempt = call.attempt
        self.at(self.now + plan.give_up_at_s, partial(self._give_up, call, attempt))
        self._next_step(call, attempt)

    def _next_step(self, call: _Call, attempt: int) -> None:
        plan = call.plan
        if call.attempt != attempt or call.state != RINGING or plan is None:
            return
        if call.step >= len(plan.steps):
            return
        step = plan.steps[call.step]
        call.step += 1
        for extension in step.stop:
            self._stop_ring(call, extension, rang_out=True)
        started = 0
        hour = self._hour()
        for extension in step.start:
            if extension in call.ringing or not self._free(extension):
                continue
            started += 1
            call.ringing[extension] = True
            self.ringing_members[extension] = self.ringing_members.get(extension, 0) + 1
            delay = self.behaviour.member(self.added.get(extension, extension)).model(
                hour).draw(self.rng)
            if delay is not None:
                self.at(self.now + delay,
                        partial(self._answer, call, attempt, extension))
        if call.step < len(plan.steps):
            if not started and not call.ringing and plan.advance_on_failure:
                self._next_step(call, attempt)
            else:
                self.at(call.started + plan.steps[call.step].at_s,
                        partial(self._next_step, call, attempt))

    def _stop_ring(self, call: _Call, extension: str, *, rang_out: bool) -> None:
        if call.ringing.pop(extension, None) is None:
            return
        left = self.ringing_members.get(extension, 0) - 1
        if left > 0:
            self.ringing_members[extension] = left
        else:
            self.ringing_members.pop(extension, None)
        if rang_out:
            self.book.offer_unanswered(extension, self.now,
                                       auto_break_after=self.settings.auto_break_after)

    def _stop_all(self, call: _Call, *, rang_out: bool) -> None:
        for extension in list(call.ringing):
            self._stop_ring(call, extension, rang_out=rang_out)

    def _answer(self, call: _Call, attempt: int, extension: str) -> None:
        if call.attempt != attempt or call.state != RINGING or extension not in call.ringing:
            return
        call.ringing.pop(extension)
        self._stop_ring_count(extension)
        self._stop_all(call, rang_out=False)
        call.state = DONE
        self.answered += 1
        self.waits.append(self.now - call.arrival)
        self.book.offer_answered(extension, self.now)
        self.last_agent[call.caller] = extension
        self.member_calls[extension] = self.member_calls.get(extension, 0) + 1
        self.member_talk[extension] = self.member_talk.get(extension, 0.0) + call.talk_s
        if call.target:
            self.target_answered += 1
            self.expected_sales += self.behaviour.conversion.get(
                self.added.get(extension, extension), self.behaviour.pooled_conversion)
        self.at(self.now + call.talk_s, partial(self._talk_ended, extension, call.talk_s))

    def _stop_ring_count(self, extension: str) -> None:
        left = self.ringing_members.get(extension, 0) - 1
        if left > 0:
            self.ringing_members[extension] = left
        else:
            self.ringing_members.pop(extension, None)

    def _talk_ended(self, extension: str, talk_s: float) -> None:
        wrap_up_s = self.settings.wrap_up_s
        self.book.call_ended(extension, self.now, talk_s=talk_s, wrap_up_s=wrap_up_s)
        if wrap_up_s > 0:
            self.at(self.now + wrap_up_s, self._serve_queue)
        else:
            self._serve_queue()

    def _give_up(self, call: _Call, attempt: int) -> None:
        if call.attempt != attempt or call.state != RINGING:
            return
        self._stop_all(call, rang_out=True)
        self._no_answer(call)

    def _no_answer(self, call: _Call) -> None:
        queue = self.settings.queue
        if queue is not None:
            may_wait = self.now - call.arrival < queue.max_wait_s
            has_room = call in self.queue or len(self.queue) < queue.max_callers
            if may_wait and has_room:
                self._enqueue(call)
                return
        self._miss(call)

    def _enqueue(self, call: _Call) -> None:
        queue = self.settings.queue
        assert queue is not None
        if call not in self.queue:
            self.queue.append(call)
        call.state = QUEUED
        call.attempt += 1
        attempt = call.attempt
        self.at(self.now + queue.retry_s, partial(self._retry, call, attempt))
        self.at(call.deadline, partial(self._queue_deadline, call, attempt))

    def _retry(self, call: _Call, attempt: int) -> None:
        if call.state != QUEUED or call.attempt != attempt:
            return
        self._serve_queue()
        if call.state == QUEUED and call.attempt == attempt:
            queue = self.settings.queue
            assert queue is not None
            self.at(self.now + queue.retry_s, partial(self._retry, call, attempt))

    def _queue_deadline(self, call: _Call, attempt: int) -> None:
        if call.state == QUEUED and call.attempt == attempt:
            self.queue.remove(call)
            self._miss(call)

    def _serve_queue(self) -> None:
        for call in list(self.queue):
            if call.state != QUEUED:
                self.queue.remove(call)
                continue
            plan = self._plan(call)
            if plan.is_empty:
                break
            self.queue.remove(call)
            self._ring(call, plan)

    def _miss(self, call: _Call) -> None:
        if call.state == DONE:
            return
        self._stop_all(call, rang_out=False)
        call.state = DONE
        self.missed += 1

    def _hang_up(self, call: _Call) -> None:
        if call.state == DONE:
            return
        if call.state == QUEUED:
            self.abandoned_in_queue += 1
            self.queue.remove(call)
        self._stop_all(call, rang_out=False)
        call.state = DONE
        self.abandoned += 1
