"""What the core hands the daemon, one event at a time through `Gateway.next_event()` (the
aioquic shape): datagrams to send, webhook and CRM questions, records to write, status changes.
Each is a frozen fact; the daemon performs it and feeds any result back through a method."""

from __future__ import annotations

from dataclasses import dataclass

from ..agents import StatusChanged
from ..routing.tollguard import OutboundCallRefused
from ..sip.transaction import Address
from ..voicemail import VoicemailMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class DatagramToSend:
    """A SIP message for `destination` (UDP, or the TCP connection to it)."""

    data: bytes
    destination: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpToSend:
    """A datagram from the box's RTP port `port` (its own media) to `destination`."""

    port: int
    data: bytes
    destination: tuple[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookRequested:
    """Ask `url` about call `call_id`: the daemon POSTs `payload` as JSON and hands the answer's
    `answer_key` to `Gateway.webhook_answered` — where the call goes ("destination"), or who
    the caller's responsible manager is ("extension", a CRM lookup)."""

    call_id: str
    url: str
    payload: dict[str, object]
    timeout_s: float
    answer_key: str = "destination"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecorded:
    """A finished call and its legs, as rows (`firmware.core.records`)."""

    call: dict[str, object]
    legs: list[dict[str, object]]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered:
    """A call was just answered (its caller is connected): its rows so far, to keep on disk
    before its end, so a crash leaves it recorded as cut off rather than missing (issue 16)."""

    call: dict[str, object]
    legs: list[dict[str, object]]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackStateChanged:
    """How the callback promised on an already recorded call went: done, expired or failed."""

    call_id: str
    state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackPending:
    """A callback request still to be served, to keep until its state becomes final."""

    request: dict[str, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailLeft:
    """A message left in a mailbox; `wall_time` is when (Unix seconds)."""

    message: VoicemailMessage
    wall_time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MenuGreetingRecorded:
    """A menu's greeting recorded by phone, to store as the web UI stores an upload (greeting
    `key`, 16-bit 8 kHz mono `pcm`); the daemon answers with `Gateway.menu_greeting_saved`."""

    call_id: str
    menu: str
    key: str
    pcm: bytes
    wall_time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityNoticed:
    """A security event for the web UI (`event.at` is on the gateway's clock)."""

    event: OutboundCallRefused


@dataclass(frozen=True, slots=True, kw_only=True)
class LineStateChanged:
    """A line went up, degraded or down (`firmware.core.lines`), noticed at `at` (the
    gateway's clock)."""

    name: str
    kind: str
    state: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModemCommandRequested:
    """The core wants a modem line's driver to act: "answer", "dial" (`number`), "hang_up",
    "dtmf" (`key`). The daemon awaits the driver and reports a failure back as the line's
    `CallEnded` fact."""

    line: str
    action: str
    number: str = ""
    key: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverSwitched:
    """Calls out now go through line `new` (None: no line is up), no longer `old`."""

    old: str | None
    new: str | None
    reason: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsArrived:
    """An SMS a modem line received, to keep (`received_at`: wall clock)."""

    line: str
    sender: str
    text: str
    received_at: float
    complete: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStarted:
    """Call `call_id` is recorded from `wall_time` (Unix seconds): G.711 `codec` in WAV,
    `channels` 2 (caller left, member right) or 1 (mixed). Its audio follows."""

    call_id: str
    codec: str
    channels: int
    wall_time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingAudio:
    """The next bytes of a recording's WAV data (about a second's), to append."""

    call_id: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingFinished:
    """The call ended: the recording is `duration_s` long and its file can be closed."""

    call_id: str
    duration_s: float


# A recorded call's file (firmware/media/recorder_files.py writes it).
RecordingEvent = RecordingStarted | RecordingAudio | RecordingFinished
# The record events a `CallRecorder` writes (firmware.core.records.write).
RecordEvent = (
    CallAnswered | CallRecorded | CallbackStateChanged | CallbackPending | VoicemailLeft
    | SecurityNoticed | SmsArrived
)
Event = (
    DatagramToSend | RtpToSend | WebhookRequested | StatusChanged | LineStateChanged
    | ModemCommandRequested | FailoverSwitched | RecordEvent | RecordingEvent
    | MenuGreetingRecorded
)
