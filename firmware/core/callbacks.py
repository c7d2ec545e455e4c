"""Callback requests: a waiting caller keeps their place and is called back when a member is free,
retried and expired by the department's policy; requests outlive a restart.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

from ..callback import CallbackCall
from ..calls import Call, CallInfo, CallState
from ..legs import Leg, NobodyCalling
from ..routing.model import CallFacts
from ..routing.scheme import CallbackSettings
from .distribution import DepartmentCall, department_call, is_dialable
from .events import CallbackPending, CallbackStateChanged
from .lines import LineState

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)


class Callbacks:
    def __init__(self, core: Gateway) -> None:
        self.core = core

    def request_callback(self, call: Call, now: float) -> CallbackCall | None:
        """The waiting caller asked to be called back: their call ends, and a callback request
        takes their place in the department's queue. None if this call cannot be called back
        (not waiting in a queue with callback, or nobody to call: an anonymous caller)."""
        ctx = call.context
        if not isinstance(ctx, DepartmentCall) or isinstance(call, CallbackCall):
            return None
        department = self.core.departments[ctx.department]
        queue = self.core.distribution.settings(department).queue
        waiting = call.state in (CallState.QUEUED, CallState.RINGING)
        if queue is None or queue.callback is None or not waiting:
            return None
        trunk = call.info.line  # called back the way they came in
        customer = call.info.caller
        if customer not in self.core.extensions if trunk is None else not is_dialable(customer):
            LOGGER.info("call %s: no number to call %s back on", call.id, customer)
            return None
        callback = self._new_callback(
            signalling_id=call.signalling_id, info=call.info, origin_call_id=call.id, ctx=ctx,
            trunk=trunk,
            expires_at=ctx.entered_at + queue.callback.expire_s, attempt=1, now=now,
        )
        call.callback_state = "requested"
        call.fail(480, "callback requested", now, outcome="callback")
        LOGGER.info("call %s: %s will be called back (request %s)", call.id, customer,
                    callback.id)
        self.core.distribution.enqueue(callback, department, queue, now)
        self.core.distribution.serve_queue(department.number, now)
        return callback

    def _new_callback(
        self, *, signalling_id: str, info: CallInfo, origin_call_id: str, ctx: DepartmentCall,
        trunk: str | None, expires_at: float, attempt: int, now: float,
    ) -> CallbackCall:
        """One attempt at calling back `info.caller` (who they are, what they dialled), for
        the call `origin_call_id` that came in on line `trunk` (None: an office phone);
        `signalling_id` is that call's for the record."""
        callback_id = uuid.uuid4().hex
        callback = CallbackCall(
            services=self.core, caller=NobodyCalling(), key=f"callback:{callback_id}",
            signalling_id=signalling_id, id=callback_id, started_at=now,
            info=CallInfo(direction="callback", source="callback", caller=info.caller,
                          dialed=info.dialed, number=info.number, department=ctx.department,
                          strategy=self.core.departments[ctx.department].strategy),
            origin_call_id=origin_call_id,
            customer=info.caller, customer_trunk=trunk, expires_at=expires_at,
            attempt=attempt, dial_customer=self._dial_customer,
            customer_unreached=self._callback_unreached,
        )
        callback.context = DepartmentCall(department=ctx.department, exclude=frozenset(),
                                          facts=ctx.facts, entered_at=ctx.entered_at)
        self.core.calls[callback.key] = callback
        # Kept on disk until it is done, expired or failed: a restart must not forget it.
        self.core.emit(CallbackPending(request={
            "origin_call_id": callback.origin_call_id, "department": ctx.department,
            "customer": callback.customer, "trunk": trunk, "dialed": info.dialed,
            "number": info.number, "vip": int(ctx.facts.vip),
            "entered_at": ctx.entered_at + self.core.wall_offset_s,
            "expires_at": expires_at + self.core.wall_offset_s, "attempt": attempt,
        }))
        return callback

    def restore_callbacks(self, requests: list[dict[str, Any]], now: float) -> int:
        """Put callback requests saved before a restart back in their queues, in their
        callers' order; one that expired meanwhile expires now (and is apologised for).
        How many were restored."""
        restored = 0
        distribution = self.core.distribution
        for saved in requests:
            origin_id = str(saved["origin_call_id"])
            department = self.core.departments.get(str(saved["department"]))
            queue = (self.core.distribution.settings(department).queue
                     if department is not None else None)
            if department is None or queue is None or queue.callback is None:
                LOGGER.warning("callback request %s: department %s no longer calls back",
                               origin_id, saved["department"])
                self.core.emit(CallbackStateChanged(call_id=origin_id, state="failed"))
                continue
            customer, dialed = str(saved["customer"]), str(saved["dialed"])
            ctx = DepartmentCall(
                department=department.number, exclude=frozenset(),
                entered_at=float(saved["entered_at"]) - self.core.wall_offset_s,
                facts=CallFacts(caller=customer, dialed=dialed, vip=bool(saved["vip"]),
                                sticky_member=distribution.sticky_member(department, customer),
                                crm_owner=distribution.crm_owner(department, customer)),
            )
            trunk = saved.get("trunk")
            callback = self._new_callback(
                signalling_id=f"restored-{origin_id}",
                info=CallInfo(direction="inbound", source="restored", caller=customer,
                              dialed=dialed, number=saved.get("number")),
                origin_call_id=origin_id, ctx=ctx, trunk=str(trunk) if trunk else None,
                expires_at=float(saved["expires_at"]) - self.core.wall_offset_s,
                attempt=int(saved["attempt"]), now=now,
            )
            restored += 1
            if now >= callback.expires_at:
                self.callback_expired(callback, now)
                continue
            self.core.distribution.enqueue(callback, department, queue, now)
        self.core.distribution.serve_all_queues(now)
        return restored

    def callback_settings(self, callback: CallbackCall) -> CallbackSettings:
        department = self.core.departments[department_call(callback).department]
        queue = self.core.distribution.settings(department).queue
        settings = queue.callback if queue is not None else None
        return settings if settings is not None else CallbackSettings()

    def _dial_customer(self, callback: CallbackCall, now: float) -> None:
        """The member answered: call the customer the way they reached us."""
        ring_s = self.callback_settings(callback).customer_ring_s
        leg, channel = self.customer_leg(callback)
        if leg is None:
            callback.customer_unavailable(channel or "customer unreachable", now)
            return
        if channel is not None:
            callback.channels.append(channel)
        callback.ring_customer(leg, ring_s, now)

    def customer_leg(self, callback: CallbackCall) -> tuple[Leg | None, str | None]:
        """How to reach the customer the way they reached us: (a leg, the line channel
        taken), or (None, why not)."""
        if callback.customer_trunk is None:
            legs = self.core.distribution.extension_legs(callback.customer)
            if not legs:
                return None, "customer's phone not registered"
            return legs[0], None
        line = self.core.lines.named(callback.customer_trunk)
        if line is None or line.state(self.core.now)[0] is LineState.DOWN:
            return None, f"line {callback.customer_trunk} is gone"
        if not self.core.channels.acquire([line.channel_key]):
            return None, "no free line channel"
        return line.place(callback.customer, self.core.now), line.channel_key

    def _callback_unreached(self, callback: CallbackCall, now: float) -> None:
        """The customer did not answer (or could not be called): try again later, a set
        number of times (the callback regimen); then the request has failed."""
        settings = self.callback_settings(callback)
        if callback.attempt >= settings.attempts:
            LOGGER.info("callback %s to %s failed after %d attempts", callback.origin_call_id,
                        callback.customer, callback.attempt)
            self.core.emit(
                CallbackStateChanged(call_id=callback.origin_call_id, state="failed")
            )
            return
        self.core.call_at(now + settings.retry_s, partial(self._callback_retry, callback))

    def _callback_retry(self, previous: CallbackCall, now: float) -> None:
        ctx = department_call(previous)
        department = self.core.departments.get(ctx.department)
        queue = (self.core.distribution.settings(department).queue
                 if department is not None else None)
        if department is None or queue is None or queue.callback is None:
            self.core.emit(
                CallbackStateChanged(call_id=previous.origin_call_id, state="failed")
            )
            return  # the configuration changed meanwhile
        callback = self._new_callback(
            signalling_id=previous.signalling_id, info=previous.info,
            origin_call_id=previous.origin_call_id, ctx=ctx, trunk=previous.customer_trunk,
            expires_at=max(previous.expires_at, now + queue.callback.expire_s),
            attempt=previous.attempt + 1, now=now,
        )
        self.core.distribution.enqueue(callback, department, queue, now)
        self.core.distribution.serve_queue(department.number, now)

    def callback_expired(self, callback: CallbackCall, now: float) -> None:
        """No member was free in time: the request shows as expired in the missed-calls
        list, where a manager sees whom to call, and the box calls the customer to apologise
        and offer voicemail (unless the queue's `callback.apology` is off)."""
        self.core.distribution.remove_from_queue(callback)
        LOGGER.info("callback request %s for %s expired", callback.origin_call_id,
                    callback.customer)
        callback.fail(480, "callback expired", now, outcome="missed")
        self.core.emit(CallbackStateChanged(call_id=callback.origin_call_id, state="expired"))
        if self.callback_settings(callback).apology:
            self.core.box_media.apologise(callback, now)
