"""Call recording on a call: the warning before distribution rings anyone, the recorder on the
bridge once a member answers, the file's bytes out as events.

A call that may be recorded (firmware/recording.py: the employee's, the department's or the
number's setting) has its media anchored in the box from the start — the caller's offer answered
in a 183 and the warning played as early media (RFC 3960 §3.1), as the queue and the menus do —
so that the member who answers is bridged through the box (firmware/anchor.py) and the recorder
(firmware/media/recorder.py) hears both directions on that bridge. The warning plays once per
call, whole (keys do not skip it: the law wants it heard), and distribution starts when it ends.
The file starts with the warning, in the caller's channel (the proof it was played), and is
written only for a call a member answered whose setting records it: a call nobody answered, or
answered by someone not recorded, leaves no file. Only a warned call is ever recorded. A call
whose media the box cannot hold (no SDP offer, no free port) goes on unrecorded, logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..anchor import CallMedia
from ..calls import Call, CallState
from ..ivr import RingbackScript
from ..media import g711
from ..media.bridge import MediaBridge
from ..media.recorder import CALLER, Recorder
from ..media.rtp import RtpPacket
from ..media.session import MediaEvent, PlaybackFinished
from ..recording import PROMPT_RECORDING_WARNING, STEREO, decide, may_record, warning_greeting
from ..voicemail import LocalParty, Script
from .events import RecordingAudio, RecordingFinished, RecordingStarted

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class _Tap:
    """What the bridge hands each audio packet to: the recorder, and the gateway for the
    bytes that became final."""

    recordings: Recordings
    call_id: str
    recorder: Recorder

    def heard(self, side: str, packet: RtpPacket, codec: str, now: float) -> None:
        self.heard_plain(side, packet.timestamp, packet.ssrc, packet.payload, codec, now)

    def heard_plain(self, side: str, timestamp: int, ssrc: int, payload: bytes, codec: str,
                    now: float) -> None:
        self.recorder.heard_plain(side, timestamp, ssrc, payload, codec, now)
        data = self.recorder.take(now)
        if data:
            self.recordings.core.emit(RecordingAudio(call_id=self.call_id, data=data))


class WarningScript(Script):
    """The recording warning, once, then `then(now)` (the call's distribution goes on, the
    caller hearing ringback). Keys are ignored: the warning is not skipped."""

    def __init__(self, warning: bytes, then: Callable[[float], None]) -> None:
        self.warning = warning
        self.then = then
        self.done = False

    def start(self, party: LocalParty, now: float) -> None:
        party.session.play(PROMPT_RECORDING_WARNING, self.warning)

    def on_event(self, party: LocalParty, event: MediaEvent, now: float) -> None:
        if (isinstance(event, PlaybackFinished) and event.name == PROMPT_RECORDING_WARNING
                and not self.done):
            self.done = True
            self.then(now)


class Recordings:
    def __init__(self, core: Gateway) -> None:
        self.core = core
        # Call id → when its warning began, and the warning (16-bit PCM).
        self.warned: dict[str, tuple[float, bytes]] = {}
        self.active: dict[str, _Tap] = {}

    def warn_first(self, call: Call, *, members: Collection[str], department: str | None,
                   then: Callable[[float], None], now: float) -> bool:
        """Play the warning, then `then`, if the call may be recorded; False: go on at once."""
        settings = self.core.config.recording
        if call.id in self.warned or not may_record(
                settings, direction=call.info.direction, members=members,
                department=department, number=call.info.number):
            return False
        warning = self._warning()
        self.warned[call.id] = (now, warning)
        script = WarningScript(warning, lambda t: self._warned(call, then, t))
        anchor = call.anchor
        if isinstance(anchor, CallMedia) and not anchor.bridged and not anchor.party.closed:
            anchor.party.switch(script, now)  # already hearing the box (a menu)
            return True
        if self.core.box_media.start_early_media(call, script, now):
            LOGGER.info("call %s may be recorded: the caller hears the warning first", call.id)
            return True
        LOGGER.warning("call %s may be recorded but the box cannot hold its media (no SDP "
                       "offer, or no free RTP port): it goes on unrecorded", call.id)
        del self.warned[call.id]
        return False

    def _warning(self) -> bytes:
        uploaded = self.core.greeting(warning_greeting(self.core.config.site.language))
        return uploaded or self.core.prompt(PROMPT_RECORDING_WARNING)

    def _warned(self, call: Call, then: Callable[[float], None], now: float) -> None:
        if call.state in (CallState.ANSWERED, CallState.ENDED):
            return
        anchor = call.anchor
        if isinstance(anchor, CallMedia) and not anchor.bridged and not anchor.party.closed:
            anchor.party.switch(RingbackScript(), now)
        then(now)

    def member_connected(self, call: Call, now: float) -> None:
        """A member answered (or took over after a transfer): start recording if their
        setting says so, or put the running recorder on the call's bridge."""
        # The bridge of the box's anchor (firmware/anchor.py), or of the media a hold or a
        # transfer put through the box since (firmware/core/hold.py): both have one.
        bridge = getattr(call.anchor, "bridge", None)
        if not isinstance(bridge, MediaBridge):
            bridge = None
        tap = self.active.get(call.id)
        if tap is not None:
            if bridge is not None and bridge.tap is None:
                bridge.tap = tap
            return
        rule = decide(self.core.config.recording, direction=call.info.direction,
                      employee=call.answered_by, department=call.info.department,
                      number=call.info.number)
        warned = self.warned.get(call.id)
        if rule is None or warned is None:
            return
        if bridge is None:
            LOGGER.warning("call %s should be recorded but its media does not pass the box",
                           call.id)
            return
        codec = bridge.a.choice.codec
        channels = 2 if rule.channels == STEREO else 1
        started_at, warning = warned
        recorder = Recorder(codec=codec, channels=channels, started_at=started_at)
        encode = g711.alaw_encode if codec == "PCMA" else g711.ulaw_encode
        recorder.place(CALLER, encode(warning), 0)
        tap = _Tap(self, call.id, recorder)
        self.active[call.id] = tap
        bridge.tap = tap
        LOGGER.info("call %s: recording (%s, %d channels)", call.id, codec, channels)
        self.core.emit(RecordingStarted(call_id=call.id, codec=codec, channels=channels,
                                        wall_time=started_at + self.core.wall_offset_s))

    def call_ended(self, call: Call, now: float) -> None:
        self.warned.pop(call.id, None)
        tap = self.active.pop(call.id, None)
        if tap is None:
            return
        data = tap.recorder.take(now, final=True)
        if data:
            self.core.emit(RecordingAudio(call_id=call.id, data=data))
        self.core.emit(RecordingFinished(call_id=call.id,
                                         duration_s=round(tap.recorder.duration_s, 2)))
