"""INVITE admission: a phone's call (feature codes, colleagues, departments, the outside through a
line) or a line's call to one of the office's numbers (channels, caller rules, schedules), each
refused call recorded once.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..callerid import caller_number, display_name
from ..calls import Call, CallInfo
from ..legs import CallerParty
from ..routing.model import BREAK, DND, LOGGED_OUT, ON_LINE, OUTBOUND
from ..routing.rules import reply_status
from ..routing.schedule import is_open
from ..sip.message import Request
from ..sip.transaction import Address
from ..sip.uri import OtherUri, SipUri
from ..sip_legs import SipCaller
from .distribution import EXTERNAL_RING_TIMEOUT_S
from .events import CallRecorded, SecurityNoticed
from .lines import Line

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

# Dialled from a phone to change its own status (documented in docs/agents.md).
FEATURE_CODES = {"*50": BREAK, "*51": ON_LINE, "*52": DND, "*53": OUTBOUND, "*54": LOGGED_OUT}
# What a phone may dial: digits, `+` in front, and the keypad's * and # (feature codes).
DIALLABLE_RE = re.compile(r"\+?[0-9*#]{1,32}")


def _dialed_number(request: Request) -> str:
    uri = request.uri
    user = uri.user_unescaped if isinstance(uri, (SipUri, OtherUri)) else None
    if not user:
        user = request.to.uri.user_unescaped
    return user or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RefusedCall:
    """What the record of a call refused at the door says."""

    signalling_id: str
    line: Line
    caller: str
    dialed: str
    number: str


class Admission:
    def __init__(self, core: Gateway) -> None:
        self.core = core

    def on_invite(self, tx_id: str, request: Request, source: Address, now: float) -> None:
        line = self.core.lines.of_request(request, source)
        if line is not None:
            self._on_line_invite(tx_id, request, source, line, now)
            return
        caller = self.core.edge.authenticate(
            tx_id, request, source, now, header="Proxy-Authorization", status=407
        )
        if caller is None:
            return
        if "Replaces" in request.headers:
            # A busy lamp pressed (RFC 3891): firmware/core/presence.py finds the call.
            self.core.presence.on_replaces(tx_id, request, source, caller, now)
            return
        dialed = _dialed_number(request)
        if not DIALLABLE_RE.fullmatch(dialed):
            # Whatever else the user part holds (escaped line breaks, letters) is no number to
            # ring or to hand to the provider.
            self.core.reply(tx_id, request, 404, now)
            return
        if dialed in FEATURE_CODES:
            status = FEATURE_CODES[dialed]
            self.core.set_agent_status(caller, status, reason="", source="phone",
                                        now=now)
            # No media yet to play a confirmation: the reason phrase, which phones display,
            # says what was done, and the call ends there.
            self.core.reply(tx_id, request, 480, now, reason=f"Status set: {status}")
            return
        if self.core.menu_greetings.on_invite(tx_id, request, source, caller, dialed, now):
            return  # *97 and a menu's number (firmware/core/menu_greetings.py)
        if self.core.pickup.on_invite(tx_id, request, source, caller, dialed, now):
            return  # *8 or **EXT (firmware/core/pickup.py)
        if dialed in self.core.extensions or dialed in self.core.departments:
            info = CallInfo(direction="internal", source="sip", caller=caller, dialed=dialed,
                            department=dialed if dialed in self.core.departments else None,
                            display=display_name(request.from_.display))
            call = self.core.new_sip_call(tx_id, request, source, info, [], now)
            self.core.agents.call_started(caller)
            self.core.distribution.route_internal(call, dialed, exclude=frozenset({caller}),
                                                  now=now)
            return
        refusal = self.core.toll_guard.admit(self.core.config, caller, dialed, now)  # toll fraud
        if refusal is not None:
            self.core.reply(tx_id, request, refusal.status, now, reason=refusal.reason)
            if refusal.event is not None:
                self.core.emit(SecurityNoticed(event=refusal.event))
            return
        out_line = self.core.lines.outbound(now)
        if out_line is None:
            self.core.reply(tx_id, request, 404, now)
            return
        channels = [out_line.channel_key]
        if not self.core.channels.acquire(channels):
            self.core.stats["rejected_busy"] += 1
            self.core.reply(tx_id, request, 486, now,
                            reason="Busy Here (all trunk channels in use)")
            return
        info = CallInfo(direction="outbound", source="sip", caller=caller, dialed=dialed,
                        display=display_name(request.from_.display), line=out_line.name)
        call = self.core.new_sip_call(tx_id, request, source, info, channels, now)
        self.core.agents.call_started(caller)
        call.ring_legs([out_line.place(dialed, now)], EXTERNAL_RING_TIMEOUT_S, now)

    def _on_line_invite(
        self, tx_id: str, request: Request, source: Address, line: Line, now: float
    ) -> None:
        # The edge: from here on the caller is digits and "+" (or "anonymous"), the name plain
        # text; nothing the provider — or whoever spoofed it — wrote reaches a phone verbatim.
        party = SipCaller(services=self.core, invite=request, invite_tx=tx_id, source=source)
        self.admit_line_call(
            line, party, key=tx_id, signalling_id=request.call_id,
            caller=caller_number(request.from_.uri.user_unescaped),
            dialed=_dialed_number(request), display=display_name(request.from_.display),
            now=now,
        )

    def admit_line_call(
        self, line: Line, party: CallerParty, *, key: str, signalling_id: str, caller: str,
        dialed: str, display: str | None, now: float,
    ) -> Call | None:
        """A call a line brings to one of the office's numbers — whatever the line: channels,
        caller rules, schedules, then the webhook or the department. The call, or None when
        it was refused (the party has been told why)."""
        number = self.core.numbers.get(dialed) or self.core.numbers.get(dialed.lstrip("+"))
        if number is None:
            party.reject(404, None, now)
            return None
        refused = RefusedCall(signalling_id=signalling_id, line=line, caller=caller,
                              dialed=dialed, number=number.number)
        channels = [f"number:{number.number}", line.channel_key]
        if not self.core.channels.acquire(channels):
            # Over capacity: busy at once, before anything rings (the product promise).
            self.core.stats["rejected_busy"] += 1
            party.reject(486, None, now)
            self._record_refused(refused, "over capacity", "over_capacity", now)
            return None
        destination = number.destination
        wall_now = now + self.core.wall_offset_s
        rule = self.core.rules.match(caller, wall_now, self.core.timezone)
        vip = False
        if rule is not None and rule.action == "blacklist":
            self.core.channels.release(channels)
            party.reject(reply_status(rule), None, now)
            self._record_refused(refused, f"blacklist {rule.match}", "blacklisted", now)
            return None
        if rule is not None and rule.to is not None:
            destination = rule.to  # vip straight to an employee, or a route rule
        vip = rule is not None and rule.action == "vip"
        schedule = self.core.schedules.get(number.schedule or "")
        closed = schedule is not None and not is_open(schedule, wall_now)
        if closed and schedule is not None:
            if schedule.after_hours is None:
                self.core.channels.release(channels)
                party.reject(480, "Closed", now)
                self._record_refused(refused, "after hours", "closed", now)
                return None
            destination = schedule.after_hours
        info = CallInfo(
            direction="inbound", source=line.source_label, caller=caller, dialed=dialed,
            number=number.number, line=line.name,
            department=destination if destination in self.core.departments else None,
            display=display,
        )
        call = self.core.new_call(party, key, signalling_id, info, channels, now)
        if number.webhook is not None and not closed and (rule is None or rule.to is None):
            self.core.lookups.ask_webhook(call, number.webhook, number.webhook_timeout_s,
                                          destination, vip, now)
            return call
        self.core.distribution.route_internal(call, destination, exclude=frozenset(), now=now,
                                              vip=vip)
        return call

    def _record_refused(self, refused: RefusedCall, cause: str, outcome: str, now: float) -> None:
        """A call from a line turned away before anything rang still gets its record: the owner
        asks who was told busy, closed or blacklisted."""
        self.core.emit(CallRecorded(
            call={"id": secrets.token_hex(16), "started_at": now, "ended_at": now,
                  "direction": "inbound", "source": refused.line.source_label,
                  "caller": refused.caller, "dialed": refused.dialed, "number": refused.number,
                  "end_cause": cause, "outcome": outcome,
                  "sip_call_id": refused.signalling_id},
            legs=[],
        ))
