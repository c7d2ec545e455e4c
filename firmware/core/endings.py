"""The end of a call: what the core does once a call is over — its channels, transactions and
dialogs let go, the queue served again (someone may be free now), agents' figures and wrap-up,
the autopause after offers that rang out, the callback's state, and the record written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..callback import CallbackCall
from ..calls import Call
from ..sip_legs import SipLeg
from .events import CallbackStateChanged, CallRecorded
from .records import call_row, leg_row

if TYPE_CHECKING:
    from .gateway import Gateway


class Endings:
    def __init__(self, core: Gateway) -> None:
        self.core = core

    def finished(self, call: Call, now: float) -> None:
        core = self.core
        core.channels.release(call.channels)
        call.channels = []
        # Legs that already had their final response need nothing from the call any more; a
        # leg still waiting (a CANCEL may cross a 200) keeps its handler, so a late answer is
        # still ACKed and hung up.
        for leg in call.legs:
            if isinstance(leg, SipLeg) and leg.record.sip_status is not None:
                core._handlers.pop(leg.tx_id, None)
        core.calls.pop(call.key, None)
        for key in core._dialog_keys.pop(call.id, []):
            core.dialogs.pop(key, None)
        if call.outcome == "answered":
            core.stats["answered"] += 1
        core.distribution.remove_from_queue(call)
        core.menus.call_ended(call)
        core.hold.call_ended(call)
        core._awaiting_webhook.pop(call.id, None)
        core._awaiting_crm.pop(call.id, None)
        spoke = call.answered_at is not None and call.info.direction in ("inbound", "callback")
        if spoke and call.answered_by in core.extensions:
            core.last_agent[call.info.caller] = call.answered_by
        self._update_agents(call, now)
        # Someone may be free now (or when their wrap-up ends): offer the waiting callers.
        if any(core.queues.values()):
            core.distribution.serve_all_queues(now)
            wrap_up_end = core.agents.next_wrap_up_end(now)
            if wrap_up_end is not None:
                core.call_at(wrap_up_end, core.distribution.serve_all_queues)
        if isinstance(call, CallbackCall):
            if call.outcome == "answered":
                core.emit(CallbackStateChanged(call_id=call.origin_call_id, state="done"))
            if not call.leg_records:
                return  # a request that waited and was never tried is not a call
        core.emit(CallRecorded(call=call_row(call),
                               legs=[leg_row(call.id, r) for r in call.leg_records]))

    def _update_agents(self, call: Call, now: float) -> None:
        core = self.core
        # The member talking now since they answered (a transfer's referrer was counted when
        # it left: call.transferred_by).
        since = call.member_since if call.member_since is not None else call.answered_at
        talk_s = now - since if since is not None else 0.0
        settled = call.transferred_by
        department = core.departments.get(call.info.department or "")
        settings = core.distribution.settings(department) if department is not None else None
        if call.answered_by in core.extensions and call.answered_by not in settled:
            wrap_up_s = settings.wrap_up_s if settings is not None else 0.0
            core.agents.call_ended(call.answered_by, now, talk_s=talk_s, wrap_up_s=wrap_up_s)
        if (call.info.direction in ("internal", "outbound") and call.info.caller in core.extensions
                and call.info.caller not in settled):
            core.agents.call_ended(call.info.caller, now, talk_s=talk_s)
        if settings is None or settings.auto_break_after <= 0:
            return
        for record in call.leg_records:
            # Only an offer that rang out counts against the agent (Asterisk autopause): a leg
            # cancelled because a colleague answered, or the caller hung up, does not.
            if record.result == "no_answer" and record.target in core.extensions:
                change = core.agents.offer_unanswered(
                    record.target, now, auto_break_after=settings.auto_break_after
                )
                if change is not None:
                    core.emit(change)

