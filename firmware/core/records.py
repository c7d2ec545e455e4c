"""Call records: the recorder interface the daemon implements (SQLite) and an in-memory one for
tests, and the rows a finished call becomes.
"""

from __future__ import annotations

import logging

from ..calls import Call
from ..legs import LegRecord
from ..routing.tollguard import OutboundCallRefused
from ..voicemail import VoicemailMessage
from .events import (
    CallAnswered,
    CallbackPending,
    CallbackStateChanged,
    CallRecorded,
    SecurityNoticed,
    SmsArrived,
    VoicemailLeft,
)

LOGGER = logging.getLogger(__name__)


class CallRecorder:
    """Where finished calls go; the daemon's implementation writes them to SQLite in batches."""

    def record(self, call: dict[str, object], legs: list[dict[str, object]]) -> None:
        raise NotImplementedError

    def call_answered(self, call: dict[str, object], legs: list[dict[str, object]]) -> None:
        """A call just answered, to keep before its end (`record` completes it); a recorder
        that keeps nothing across a crash may ignore it."""

    def callback_state(self, call_id: str, state: str) -> None:
        """How the callback promised on an already recorded call went (done, expired,
        failed)."""
        raise NotImplementedError

    def voicemail(self, message: VoicemailMessage, wall_time: float) -> None:
        """Keep a message left in a mailbox (`wall_time`: when it was left, Unix seconds)."""
        raise NotImplementedError

    def callback_pending(self, request: dict[str, object]) -> None:
        """Keep a callback request still to be served (until its state becomes final)."""
        raise NotImplementedError

    def security_event(self, event: OutboundCallRefused) -> None:
        """Keep a security event for the web UI (`event.at` is on the gateway's clock)."""
        raise NotImplementedError

    def sms(self, message: SmsArrived) -> None:
        """Keep an SMS a modem line received."""
        raise NotImplementedError


class MemoryRecorder(CallRecorder):
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, object], list[dict[str, object]]]] = []
        self.callback_states: dict[str, str] = {}
        self.voicemails: list[VoicemailMessage] = []
        self.pending_callbacks: dict[str, dict[str, object]] = {}
        self.security_events: list[OutboundCallRefused] = []
        self.sms_received: list[SmsArrived] = []

    def record(self, call: dict[str, object], legs: list[dict[str, object]]) -> None:
        self.calls.append((call, legs))

    def callback_state(self, call_id: str, state: str) -> None:
        self.callback_states[call_id] = state
        self.pending_callbacks.pop(call_id, None)

    def callback_pending(self, request: dict[str, object]) -> None:
        self.pending_callbacks[str(request["origin_call_id"])] = request

    def voicemail(self, message: VoicemailMessage, wall_time: float) -> None:
        self.voicemails.append(message)

    def security_event(self, event: OutboundCallRefused) -> None:
        self.security_events.append(event)

    def sms(self, message: SmsArrived) -> None:
        self.sms_received.append(message)


def write_record(recorder: CallRecorder, event: object) -> bool:
    """Hand a record event of the core's to `recorder`; False for an event of another kind."""
    if isinstance(event, CallRecorded):
        recorder.record(event.call, event.legs)
    elif isinstance(event, CallAnswered):
        recorder.call_answered(event.call, event.legs)
    elif isinstance(event, CallbackStateChanged):
        recorder.callback_state(event.call_id, event.state)
    elif isinstance(event, CallbackPending):
        recorder.callback_pending(event.request)
    elif isinstance(event, VoicemailLeft):
        recorder.voicemail(event.message, event.wall_time)
    elif isinstance(event, SecurityNoticed):
        recorder.security_event(event.event)
    elif isinstance(event, SmsArrived):
        recorder.sms(event)
    else:
        return False
    return True


def call_row(call: Call) -> dict[str, object]:
    info = call.info
    return {
        "id": call.id, "started_at": call.started_at, "answered_at": call.answered_at,
        "ended_at": call.ended_at, "direction": info.direction, "source": info.source,
        "caller": info.caller, "dialed": info.dialed, "number": info.number,
        "department": info.department, "answered_by": call.answered_by,
        "end_cause": call.end_cause, "outcome": call.outcome,
        "sip_call_id": call.signalling_id, "strategy": info.strategy,
        "waited_s": round(call.waited_s, 3), "callback_state": call.callback_state,
        "line": info.line,
        "talk_s": (round(call.ended_at - call.answered_at, 3)
                   if call.answered_at is not None and call.ended_at is not None else None),
    }


def leg_row(call_id: str, record: LegRecord) -> dict[str, object]:
    return {
        "call_id": call_id, "target": record.target, "contact": record.contact,
        "started_at": record.started_at, "ringing_at": record.ringing_at,
        "answered_at": record.answered_at, "ended_at": record.ended_at,
        "result": record.result, "sip_status": record.sip_status,
    }
