"""Look-ups that make one call wait while the daemon asks the office's web services: webhook routing
and the CRM's responsible manager, each with its fallback on a timer.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from ..calls import Call, CallState
from .distribution import department_call
from .events import WebhookRequested

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

WEBHOOK_GRACE_S = 0.25  # beyond the webhook's own timeout, for the daemon to report it


class Lookups:
    def __init__(self, core: Gateway) -> None:
        self.core = core

    def ask_webhook(
        self, call: Call, url: str, timeout_s: float, fallback: str, vip: bool, now: float
    ) -> None:
        """Ask the office's web service where this call goes. The call waits (the caller has
        had 100 Trying); nothing else does: the daemon asks in the background, and the
        fallback route is taken by a timer if no answer comes in time."""
        self.core._awaiting_webhook[call.id] = (call, fallback, vip)
        self.core.emit(WebhookRequested(
            call_id=call.id, url=url, timeout_s=timeout_s,
            payload={
                "call_id": call.id, "caller": call.info.caller, "called": call.info.dialed,
                "number": call.info.number, "time": now + self.core.wall_offset_s,
                "history": {"last_agent": self.core.last_agent.get(call.info.caller)},
            },
        ))
        call.timers.append(self.core.call_at(
            now + timeout_s + WEBHOOK_GRACE_S,
            partial(self._webhook_fallback, call.id, "no answer in time"),
        ))

    def webhook_answered(self, call_id: str, destination: str | None, now: float,
                         *, error: str = "") -> None:
        """The daemon's result: a destination (or a CRM owner), or None with the error that
        prevented one."""
        if call_id in self.core._awaiting_crm:
            self._crm_answered(call_id, destination, now, error=error)
            return
        if destination is None or not self.core.distribution.is_destination(destination):
            self._webhook_fallback(call_id, error or f"unusable answer {destination!r}", now)
            return
        waiting = self.core._awaiting_webhook.pop(call_id, None)
        if waiting is None:
            return  # too late: the fallback was taken, or the caller hung up
        call, _, vip = waiting
        if call.state != CallState.ROUTING:
            return
        LOGGER.info("webhook routes call %s to %s", call_id, destination)
        self.core.distribution.route_internal(call, destination, exclude=frozenset(), now=now,
                                              vip=vip)

    def _webhook_fallback(self, call_id: str, reason: str, now: float) -> None:
        waiting = self.core._awaiting_webhook.pop(call_id, None)
        if waiting is None:
            return
        call, fallback, vip = waiting
        if call.state != CallState.ROUTING:
            return
        LOGGER.warning("webhook for call %s failed (%s); routing to %s", call_id, reason,
                       fallback)
        self.core.distribution.route_internal(call, fallback, exclude=frozenset(), now=now, vip=vip)

    def ask_crm(self, call: Call, url: str, timeout_s: float, now: float) -> None:
        """Ask the office CRM who the caller's responsible manager is. Like webhook routing,
        only this call waits; the imported table's owner (if any) stands when the CRM errs,
        answers nonsense or is slow."""
        self.core._awaiting_crm[call.id] = call
        self.core.emit(WebhookRequested(
            call_id=call.id, url=url, timeout_s=timeout_s, answer_key="extension",
            payload={"call_id": call.id, "caller": call.info.caller,
                     "called": call.info.dialed, "department": department_call(call).department},
        ))
        call.timers.append(self.core.call_at(
            now + timeout_s + WEBHOOK_GRACE_S,
            partial(self._crm_answered, call.id, None, error="no answer in time"),
        ))

    def _crm_answered(self, call_id: str, owner: str | None, now: float, *,
                      error: str = "") -> None:
        call = self.core._awaiting_crm.pop(call_id, None)
        if call is None or call.state not in (CallState.ROUTING, CallState.TRANSFERRING):
            return  # too late: the fallback was taken, or the caller hung up
        ctx = department_call(call)
        if owner is not None and owner in self.core.extensions:
            ctx.facts = replace(ctx.facts, crm_owner=owner)
        elif owner is not None or error:
            LOGGER.warning("CRM lookup for call %s failed (%s); owner from the table: %s",
                           call_id, error or f"unknown extension {owner!r}",
                           ctx.facts.crm_owner or "none")
        self.core.distribution.offer(call, now)
