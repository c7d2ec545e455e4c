"""The gateway's state as plain data: registrations, lines, calls, queues, channels, bans,
agents and counters — what `linebox status` prints and the web UI's monitor polls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..callback import CallbackCall
from .distribution import department_call
from .lines import SipTrunkLine

if TYPE_CHECKING:
    from .gateway import Gateway


def gateway_status(core: Gateway, now: float) -> dict[str, object]:
    return {
        "registrations": [
            {"extension": b.extension, "contact": b.contact_text,
             "source": f"{b.source.transport}:{b.source.host}:{b.source.port}",
             "expires_in_s": round(b.expires_at - now), "user_agent": b.user_agent}
            for b in core.registrar.all_bindings(now)
        ],
        "trunks": [
            line.registration.status(now) if line.registration is not None else
            {"name": line.name, "state": "static" if line.address is not None
             else "unresolved"}
            for line in core.lines if isinstance(line, SipTrunkLine)
        ],
        "lines": [status.as_dict() for status in core.lines.statuses(now)],
        "internet": ({"state": internet.state,
                      "since": round(internet.since + core.wall_offset_s, 3),
                      "reason": internet.reason}
                     if (internet := core.failover.internet) is not None else None),
        "outbound_line": (line.name if (line := core.lines.outbound(now)) is not None
                          else None),
        "calls": [
            {"id": c.id, "state": c.state, "direction": c.info.direction,
             "caller": c.info.caller, "dialed": c.info.dialed,
             "department": c.info.department, "answered_by": c.answered_by,
             "duration_s": round(now - c.started_at, 1),
             "answered_s": (round(now - c.answered_at, 1)
                            if c.answered_at is not None else None),
             # The box itself on the line: its voicemail, or its media in the middle.
             "media": ("box" if c.local is not None else
                       "anchored" if c.anchor is not None else "direct"),
             "ringing": sorted({leg.label for leg in c.legs if leg.active}),
             # How long each ringing extension (or number) has been offered this call.
             # (several phones of one extension: the earliest, written last, counts)
             "ringing_s": {leg.label: round(now - leg.record.started_at, 1)
                           for leg in sorted(c.legs,
                                             key=lambda leg: -leg.record.started_at)
                           if leg.active}}
            for c in core.calls.values()
        ],
        "queues": [
            {"department": number, "waiting": [
                {"position": i + 1, "caller": c.info.caller,
                 "wait_s": round(now - department_call(c).entered_at, 1),
                 "vip": department_call(c).facts.vip, "callback": isinstance(c, CallbackCall)}
                for i, c in enumerate(waiting)]}
            for number, waiting in core.queues.items() if waiting
        ],
        "channels": [
            {"key": key, "in_use": core.channels.in_use.get(key, 0), "capacity": cap}
            for key, cap in sorted(core.channels.capacity.items())
        ],
        "bans": [
            {"source": b.source, "since": b.since, "until": b.until, "requests": b.requests}
            for b in [*core.limiter.bans(now), *core.auth_guard.bans(now)]
        ],
        "agents": [
            {"extension": number, "name": core.extensions[number].name,
             "status": state.status, "reason": state.reason,
             "since_s": round(now - state.since, 1),
             "registered": core.registrar.is_registered(number, now),
             "on_call": state.calls_in_progress > 0,
             "wrap_up_s": (round(state.wrap_up_until - now, 1)
                           if state.wrap_up_until and state.wrap_up_until > now else 0),
             "call_ended_s": (round(now - state.last_call_ended_at, 1)
                              if state.last_call_ended_at is not None else None),
             "calls_answered_today": state.calls_answered,
             "talk_time_today_s": round(state.talk_time_s)}
            for number in core.extensions
            for state in (core.agents.agent(number),)
        ],
        # Busy lamps: which phone (extension) watches which extension (RFC 4235).
        "lamps": core.presence.statuses(),
        "stats": dict(core.stats),
        "overload": core.overload.status(now).as_dict(),
        "transactions": core.layer.transaction_count,
    }
