"""Distribution: a department's call offered to its members by the routing plan, the queue while
nobody is free, and the no-answer scheme (steps, forwarding, members' mobiles, the reserve).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

from ..callback import CallbackCall
from ..calls import Call, CallState
from ..legs import Leg
from ..routing import strategies
from ..routing.model import (
    LOGGED_OUT,
    ON_LINE,
    CallFacts,
    DepartmentSnapshot,
    RoutingMemory,
)
from ..routing.plan import RingPlan, UnknownStrategyError
from ..routing.rules import normalise_number
from ..routing.schedule import is_open
from ..routing.scheme import (
    DepartmentSettings,
    QueueSettings,
    mobiles_of,
    voicemail_box,
)
from ..routing.snapshot import department_snapshot, member_state
from ..sip_legs import SipLeg, Target
from ..store.config import Department

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

DIRECT_RING_TIMEOUT_S = 60.0
RESERVE_RING_S = 60.0
EXTERNAL_RING_TIMEOUT_S = 180.0


@dataclass(slots=True, kw_only=True)
class DepartmentCall:
    """A call's routing state while a department (or its no-answer scheme) handles it."""

    department: str
    exclude: frozenset[str]
    facts: CallFacts
    entered_at: float
    step: int = -1  # index into the no-answer steps; -1 while still with the department


def department_call(call: Call) -> DepartmentCall:
    ctx = call.context
    assert isinstance(ctx, DepartmentCall), "a department call without its routing state"
    return ctx


def is_dialable(text: str) -> bool:
    digits = text[1:] if text.startswith("+") else text
    return digits.isdigit() and 3 <= len(digits) <= 15


def _queue_turn(call: Call) -> tuple[bool, float]:
    """The order of a queue: VIP callers first, then by arrival (a callback by its caller's)."""
    ctx = department_call(call)
    return (not ctx.facts.vip, ctx.entered_at)


def _queue_deadline(call: Call, settings: QueueSettings) -> float:
    if isinstance(call, CallbackCall):
        return call.expires_at
    return department_call(call).entered_at + settings.max_wait_s


class Distribution:
    def __init__(self, core: Gateway) -> None:
        self.core = core

    def route_internal(
        self, call: Call, destination: str, *, exclude: frozenset[str], now: float,
        vip: bool = False,
    ) -> None:
        department = self.core.departments.get(destination)
        if department is not None and department.schedule:
            schedule = self.core.schedules.get(department.schedule)
            if schedule is not None and not is_open(schedule, now + self.core.wall_offset_s):
                if schedule.after_hours is None:
                    # As for a closed number: the same answer, the same record.
                    call.fail(480, "after hours", now, outcome="closed", reason="Closed")
                    return
                destination = schedule.after_hours
                department = self.core.departments.get(destination)
        if self.core.menus.is_menu(destination):  # a voice menu (firmware/core/menus.py)
            self.core.menus.enter(call, destination, now)
            return
        mailbox = voicemail_box(destination)
        if mailbox is not None:  # after hours, a rule or a webhook chose voicemail
            call.info.department = mailbox if mailbox in self.core.departments else None
            self.core.box_media.voicemail(call, mailbox, now)
            return
        # The call is recorded under the department that actually takes it (after hours, a
        # VIP rule or a webhook may have chosen another), or none when a person or an outside
        # number does.
        call.info.department = destination if department is not None else None
        if department is None:
            if destination in self.core.extensions:
                ring = partial(self._ring_extension, call, destination)
                if not self.core.recordings.warn_first(call, members=[destination],
                                                       department=None, then=ring, now=now):
                    ring(now)
            else:
                self._forward(call, destination, EXTERNAL_RING_TIMEOUT_S, now)
            return
        call.info.strategy = department.strategy
        call.context = DepartmentCall(
            department=destination, exclude=exclude, entered_at=now,
            facts=CallFacts(caller=call.info.caller, dialed=call.info.dialed, vip=vip,
                            sticky_member=self.sticky_member(department, call.info.caller),
                            crm_owner=self.crm_owner(department, call.info.caller)),
        )
        # A call that may be recorded: the caller hears the warning before anyone rings.
        if not self.core.recordings.warn_first(
                call, members=[m.extension for m in department.members], department=destination,
                then=partial(self._distribute, call, department), now=now):
            self._distribute(call, department, now)

    def _ring_extension(self, call: Call, extension: str, now: float) -> None:
        call.ring_legs(self.extension_legs(extension), DIRECT_RING_TIMEOUT_S, now)

    def _distribute(self, call: Call, department: Department, now: float) -> None:
        crm = self.core.config.crm
        if crm.url is not None and self.settings(department).sticky == "crm_owner":
            self.core.lookups.ask_crm(call, crm.url, crm.timeout_s, now)
            return
        self.offer(call, now)

    def settings(self, department: Department) -> DepartmentSettings:
        """Parsed once with the configuration (`firmware.routing.scheme`)."""
        return department.settings

    def is_destination(self, text: str) -> bool:
        mailbox = voicemail_box(text)
        if mailbox is not None:
            return mailbox in self.core.extensions or mailbox in self.core.departments
        if self.core.menus.is_menu(text):
            return True
        return text in self.core.extensions or text in self.core.departments or is_dialable(text)

    def offer(self, call: Call, now: float) -> None:
        """Offer a department call to its members now; otherwise queue or no-answer scheme."""
        ctx = department_call(call)
        department = self.core.departments[ctx.department]
        settings = self.settings(department)
        plan = self._plan(department, ctx, now)
        if not plan.is_empty:
            self._ring_members(call, plan, now)
            return
        reserve = settings.no_answer.reserve
        if reserve is not None and ctx.step < 0 and not self._anyone_online(department, now):
            # Every member is offline (logged out, not registered): straight to the reserve.
            ctx.step = len(settings.no_answer.steps)  # the scheme is skipped: reserve is final
            self._ring_destination(call, reserve, RESERVE_RING_S, now)
            return
        self._department_no_answer(call, now)

    def _department_no_answer(self, call: Call, now: float) -> None:
        """The department did not answer (or nobody was free): wait in its queue while the
        caller may still wait, else the next step of the no-answer scheme."""
        ctx = department_call(call)
        department = self.core.departments[ctx.department]
        queue_settings = self.settings(department).queue
        if isinstance(call, CallbackCall):
            # Nobody took the callback this time: it keeps its place until it expires.
            if queue_settings is not None and now < call.expires_at:
                self.enqueue(call, department, queue_settings, now)
            else:
                self.core.callbacks.callback_expired(call, now)
            return
        if ctx.step < 0 and queue_settings is not None:
            waiting = self.core.queues.setdefault(department.number, [])
            may_wait = now - ctx.entered_at < queue_settings.max_wait_s
            has_room = call in waiting or len(waiting) < queue_settings.max_callers
            if may_wait and has_room:
                self.enqueue(call, department, queue_settings, now)
                return
        self._next_step(call, now)

    def enqueue(
        self, call: Call, department: Department, settings: QueueSettings, now: float
    ) -> None:
        waiting = self.core.queues.setdefault(department.number, [])
        if not isinstance(call, CallbackCall):
            self.core.box_media.start_queue_media(call, settings, now)
        if call not in waiting:
            # VIP callers go ahead of everyone who is not VIP; otherwise arrival order, so a
            # caller offered in vain (or a callback tried in vain) keeps their place.
            turn = _queue_turn(call)
            position = next((i for i, other in enumerate(waiting) if _queue_turn(other) > turn),
                            len(waiting))
            waiting.insert(position, call)
        call.wait_in_queue(now)
        call.timers.append(self.core.call_at(now + settings.retry_s, partial(self._retry, call)))
        call.timers.append(self.core.call_at(_queue_deadline(call, settings),
                                        partial(self._queue_timeout, call)))

    def _retry(self, call: Call, now: float) -> None:
        if call.state != CallState.QUEUED:
            return
        ctx = department_call(call)
        self.serve_queue(ctx.department, now)
        if call.state == CallState.QUEUED:
            settings = self.settings(self.core.departments[ctx.department]).queue
            assert settings is not None
            call.timers.append(
                self.core.call_at(now + settings.retry_s, partial(self._retry, call))
            )

    def _queue_timeout(self, call: Call, now: float) -> None:
        if call.state == CallState.QUEUED:
            self._queue_timeout_now(call, now)

    def remove_from_queue(self, call: Call) -> None:
        ctx = call.context
        if isinstance(ctx, DepartmentCall):
            waiting = self.core.queues.get(ctx.department)
            if waiting and call in waiting:
                waiting.remove(call)

    def serve_queue(self, number: str, now: float) -> None:
        """Offer waiting callers, in queue order, to whoever is free now."""
        waiting = self.core.queues.get(number)
        department = self.core.departments.get(number)
        if not waiting or department is None:
            return
        for call in list(waiting):
            if call.state != CallState.QUEUED:
                waiting.remove(call)
                continue
            plan = self._plan(department, department_call(call), now)
            if plan.is_empty:
                break  # nobody free for the head of the queue: those behind wait too
            waiting.remove(call)
            self._ring_members(call, plan, now)

    def _ring_members(self, call: Call, plan: RingPlan, now: float) -> None:
        """Ring a department's members — but never past the caller's queue deadline
        (`max_wait_s` from their arrival, or a callback's expiry): the deadline wins, as the
        documentation promises, even while a member's phone rings."""
        department = self.core.departments[department_call(call).department]
        queue = self.settings(department).queue
        if queue is not None:
            left = _queue_deadline(call, queue) - now
            if left <= 0:
                self._queue_timeout_now(call, now)
                return
            if plan.give_up_at_s > left:
                plan = replace(plan, give_up_at_s=left)
        call.ring(plan, self.extension_legs, now, on_no_answer=self._department_no_answer)

    def _queue_timeout_now(self, call: Call, now: float) -> None:
        self.remove_from_queue(call)
        if isinstance(call, CallbackCall):
            self.core.callbacks.callback_expired(call, now)
        else:
            self._next_step(call, now)

    def serve_all_queues(self, now: float) -> None:
        for number in [n for n, waiting in self.core.queues.items() if waiting]:
            self.serve_queue(number, now)

    def _next_step(self, call: Call, now: float) -> None:
        """The next destination of the no-answer scheme, or the end: the call is missed."""
        ctx = department_call(call)
        self.remove_from_queue(call)
        steps = self.settings(self.core.departments[ctx.department]).no_answer.steps
        ctx.step += 1
        if ctx.step >= len(steps):
            # Everyone busy → 486; someone declined → 603; otherwise 480 (RFC 3261 §21.4).
            call.fail(call.failure_status(), "no answer", now, outcome="missed")
            return
        step = steps[ctx.step]
        self._ring_destination(call, step.to, step.time_s, now)

    def _ring_destination(self, call: Call, to: str, time_s: float, now: float) -> None:
        """Ring a no-answer step's destination for `time_s`: a department (its own strategy),
        an employee's phones, or an external number through the provider (forwarding); or
        take a message (voicemail, the last step)."""
        mailbox = voicemail_box(to)
        if mailbox is not None:
            self.core.box_media.voicemail(call, mailbox, now)
            return
        if self.core.menus.is_menu(to):  # the menu's choice routes the call from here on
            self.core.menus.enter(call, to, now)
            return
        of_department = mobiles_of(to)
        if of_department is not None:
            self._ring_mobiles(call, of_department, time_s, now)
            return
        department = self.core.departments.get(to)
        if department is not None:
            facts = department_call(call).facts
            sub = DepartmentCall(department=to, exclude=department_call(call).exclude, facts=facts,
                                 entered_at=now)
            plan = self._plan(department, sub, now)
            if plan.give_up_at_s > time_s:
                plan = replace(plan, give_up_at_s=time_s)
            call.ring(plan, self.extension_legs, now, on_no_answer=self._next_step)
            return
        if to in self.core.extensions:
            call.ring_legs(self.extension_legs(to), time_s, now,
                              on_no_answer=self._next_step)
            return
        self._forward(call, to, time_s, now, on_no_answer=self._next_step)

    def _ring_mobiles(self, call: Call, number: str, time_s: float, now: float) -> None:
        """Ring at once, through the provider, the mobiles of the department's members who
        are On line and not on a call (away from their desk phone, not on a break); each
        ringing mobile holds a trunk channel until it stops ringing."""
        department = self.core.departments.get(number)
        line = self.core.lines.outbound(now)
        mobiles: dict[str, str] = {}  # mobile number → whose
        if department is not None and line is not None:
            for member in department.members:
                extension = self.core.extensions.get(member.extension)
                state = self.core.agents.agent(member.extension)
                if (extension is not None and extension.mobile and state.status == ON_LINE
                        and state.calls_in_progress == 0
                        and member.extension not in department_call(call).exclude):
                    mobiles.setdefault(extension.mobile, extension.number)
        legs: list[Leg] = []
        if line is not None:
            for mobile, employee in mobiles.items():
                if not self.core.channels.acquire([line.channel_key]):
                    LOGGER.warning("call %s: no free channel on %s for the mobile %s", call.id,
                                   line.name, mobile)
                    break
                leg = line.place(mobile, now)
                leg.employee = employee
                leg.channel = line.channel_key  # held for this leg alone
                legs.append(leg)
        if not legs:
            LOGGER.info("call %s: no member's mobile to ring for department %s", call.id,
                        number)
            self._next_step(call, now)
            return
        call.ring_legs(legs, time_s, now, on_no_answer=self._next_step)

    def _forward(
        self, call: Call, to: str, time_s: float, now: float, *,
        on_no_answer: Callable[[Call, float], None] | None = None,
    ) -> None:
        """Ring an external number through the provider (a trunk channel for the call)."""
        line = self.core.lines.outbound(now)
        # A forwarded inbound call holds two line channels: the caller's and ours out.
        if line is None or not self.core.channels.acquire([line.channel_key]):
            LOGGER.warning("call %s: cannot forward to %s (no free trunk channel)", call.id, to)
            if on_no_answer is not None:
                on_no_answer(call, now)
            else:
                call.fail(503, "no trunk channel", now, outcome="failed")
            return
        call.channels.append(line.channel_key)
        call.ring_legs([line.place(to, now)], time_s, now, on_no_answer=on_no_answer)

    def _plan(self, department: Department, ctx: DepartmentCall, now: float) -> RingPlan:
        snapshot = self.snapshot(department, now)
        memory = self.core.routing_memory.setdefault(department.number, RoutingMemory())
        try:
            return strategies.plan(snapshot, ctx.facts, memory, now, exclude=ctx.exclude,
                                   rng=self.core.rng)
        except UnknownStrategyError:
            LOGGER.error("department %s: unknown strategy %s; ringing everyone",
                         department.number, department.strategy)
            return strategies.plan(replace(snapshot, strategy="ring_all"), ctx.facts, memory,
                                   now, exclude=ctx.exclude, rng=self.core.rng)

    def snapshot(self, department: Department, now: float) -> DepartmentSnapshot:
        settings = self.settings(department)
        # With a queue, a member ringing for one caller is not offered another at the same
        # time (FreeSWITCH's agent states); without one, every caller may ring them.
        ringing = self._ringing_extensions() if settings.queue is not None else set()
        members = []
        for member in department.members:
            extension = member.extension
            employee = self.core.extensions.get(extension)
            members.append(member_state(
                member, self.core.agents.agent(extension),
                registered=self.core.registrar.is_registered(extension, now),
                ringing=extension in ringing,
                employee_skills=employee.skills if employee is not None else (),
                conversion=self.core.conversion.get(extension),
            ))
        return department_snapshot(department, members)

    def _ringing_extensions(self) -> set[str]:
        return {
            leg.label for call in self.core.calls.values() if call.state == CallState.RINGING
            for leg in call.legs if leg.active
        }

    def _anyone_online(self, department: Department, now: float) -> bool:
        return any(
            self.core.registrar.is_registered(m.extension, now)
            and self.core.agents.agent(m.extension).status not in (LOGGED_OUT,)
            for m in department.members
        )

    def crm_owner(self, department: Department, caller: str) -> str | None:
        if self.settings(department).sticky != "crm_owner":
            return None
        return self.core.crm_owners.get(normalise_number(caller))

    def sticky_member(self, department: Department, caller: str) -> str | None:
        if self.settings(department).sticky != "last_agent":
            return None
        return self.core.last_agent.get(caller)

    def extension_legs(self, extension: str) -> list[Leg]:
        """A leg to each phone registered for `extension` (RFC 3261 §10: one user, several
        contacts, all rung)."""
        return [
            SipLeg(services=self.core, target=Target(
                kind="extension", label=extension, request_uri=b.contact_text,
                destination=b.destination, to_uri=f"sip:{extension}@{self.core.local_host}",
            ))
            for b in self.core.registrar.bindings(extension, self.core.now)
        ]
