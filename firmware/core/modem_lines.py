"""Modem lines: a GSM module or an analog line through a V.253 voice modem, as lines of the core
(docs/design.md, "A new kind of line").

The driver (hal/modem: gsm.py, fxo.py) runs in the daemon; the core hears its facts
(`Gateway.modem_fact`: status, a call coming in, the far end ringing, answering, hanging up, a
key, an SMS) and asks for what it wants done with `ModemCommandRequested` events (answer, dial,
hang up, a key). A modem line carries one call at a time (its channel limit is 1).

Media: the line's audio is 20 ms PCM frames. Toward the rest of the box each call on the line is
an RTP party on a port of ours (`LineMedia`): the box offers SDP for that port, and a
`MediaBridge` joins the port to the line's `PcmEnd`. So a phone, the queue's early media,
voicemail or a callback talk to a GSM caller exactly as to a SIP one — routing, admission and
distribution never learn where the call came from. Frames reach the core with
`Gateway.line_audio` and leave with `Gateway.line_frame` (the daemon's 20 ms pacer).

The box answers the modem only when someone must speak: a member answers, or the box itself
plays something (the queue's announcements, voicemail) — until then the GSM caller hears the
network's ringing and pays nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from hal.modem.driver import (
    CallEnded,
    IncomingCall,
    KeyPressed,
    ModemFact,
    ModemStatus,
    RemoteAnswered,
    RemoteRinging,
    SmsReceived,
    StatusChanged,
)

from ..callerid import caller_number
from ..calls import Call, CallState
from ..legs import (
    LegAnswered,
    LegEnded,
    LegEvent,
    LegFailed,
    LegListener,
    LegRecord,
    LegRinging,
    LegSetup,
    LegState,
    LegStates,
    ListenerRef,
    SessionDescription,
    result_of,
)
from ..media import sdp
from ..media.bridge import BridgeSide, MediaBridge
from ..media.pcm import PcmEnd
from ..store.config import Trunk
from .events import ModemCommandRequested, SmsArrived

if TYPE_CHECKING:
    from .gateway import Gateway
    from .lines import LineState

LOGGER = logging.getLogger(__name__)

class LineMedia:
    """One call's audio on a modem line: an RTP port of ours bridged to the line's PCM."""

    def __init__(self, core: Gateway, line: ModemLine) -> None:
        self.core = core
        self.port = core.open_media_port()
        self.end = PcmEnd(name=line.name, gain_db=line.trunk.gain_db)
        self.bridge: MediaBridge | None = None
        self.closed = False
        self.last_sdp = b""  # what the party was last told of this end (offer or answer)
        if self.port is not None:
            core.route_media(self.port, self._receive)

    def offer(self) -> bytes:
        if self.port is None:
            raise sdp.SdpError("no RTP port free for the line's audio")
        self.last_sdp = sdp.offer(host=self.core.local_host, port=self.port)
        return self.last_sdp

    def answer_offer(self, offer: bytes) -> bytes:
        """Our answer to a party's offer (an outgoing call's caller), joining the bridge."""
        if self.port is None:
            raise sdp.SdpError("no RTP port free for the line's audio")
        body, choice = sdp.answer(offer, host=self.core.local_host, port=self.port)
        self._join(choice)
        self.last_sdp = body
        return body

    def accept_answer(self, answer: bytes) -> None:
        """The party's answer to our offer: where its audio goes."""
        self._join(sdp.accept_answer(answer))

    def _join(self, choice: sdp.AudioChoice) -> None:
        if self.port is None or self.closed:
            return
        if self.bridge is None:
            self.bridge = MediaBridge(BridgeSide(self.port, choice), self.end)
        else:
            self.bridge.update(self.port, choice)

    def _receive(self, data: bytes, now: float) -> None:
        if self.bridge is not None:
            self.bridge.receive(self.port or 0, data)

    def from_line(self, frame: bytes) -> None:
        if self.bridge is None:
            return
        for port, datagram, destination in self.bridge.frame_from_line(frame):
            self.core.send_rtp(port, datagram, destination)

    def key_from_line(self, key: str) -> None:
        if self.bridge is None:
            return
        for port, datagram, destination in self.bridge.key_from_line(key):
            self.core.send_rtp(port, datagram, destination)

    def for_line(self) -> bytes | None:
        return self.bridge.frame_for_line() if self.bridge is not None else None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.bridge = None
        if self.port is not None:
            self.core.close_media(self.port)


@dataclass(eq=False, slots=True, kw_only=True)
class ModemCaller:
    """A call coming in on a modem line, as the caller's side of a `Call`."""

    line: ModemLine
    media: LineMedia
    call: Call | None = None
    answered: bool = False
    ended: bool = False
    _offer: SessionDescription | None = None

    @property
    def offer(self) -> SessionDescription | None:
        if self._offer is None:
            try:
                self._offer = SessionDescription(body=self.media.offer())
            except sdp.SdpError as exc:
                LOGGER.warning("line %s: %s", self.line.name, exc)
                return None
        return self._offer

    @property
    def hints(self) -> Mapping[str, str]:
        return MappingProxyType({})

    def ringing(self, early_media: SessionDescription | None, now: float) -> None:
        # Plain ringing needs nothing: the network already rings the caller. The box's own
        # early media (the queue speaks: the call holds the media) means the modem is
        # answered for it; a ringing phone's early media does not — the caller would pay for
        # a call nobody has taken.
        call = self.call
        if early_media is not None and call is not None and call.anchor is not None:
            self._take(early_media, now)

    def answerable(self) -> bool:
        return not self.ended

    def answer(self, media: SessionDescription, now: float) -> None:
        self._take(media, now)

    def _take(self, media: SessionDescription, now: float) -> None:
        try:
            self.media.accept_answer(media.body)
        except sdp.SdpError as exc:
            LOGGER.warning("line %s: the answer's SDP is unusable: %s", self.line.name, exc)
        if not self.answered and not self.ended:
            self.answered = True
            self.line.command("answer")

    def reject(self, status: int, reason: str | None, now: float) -> None:
        self._end(now)

    def hang_up(self, now: float) -> None:
        self._end(now)

    def _end(self, now: float) -> None:
        if not self.ended:
            self.ended = True
            self.line.command("hang_up")
        self.media.close()
        self.line.call_over(self)
        self.call = None

    # A SIP party's requests inside the call (firmware/sip_legs.py): the box holds this
    # party's session, so it answers them itself (RFC 3264 §8).
    @property
    def current_sdp(self) -> bytes:
        return self.media.last_sdp

    def renegotiate(self, offer: bytes) -> bytes:
        return self.media.answer_offer(offer)

    def key_pressed(self, key: str, now: float) -> None:
        if not self.ended:
            self.line.command("dtmf", key=key)

    def far_end_hung_up(self, fact: CallEnded, now: float) -> None:
        self.ended = True
        self.line.call_over(self)
        call, self.call = self.call, None  # no cycle left behind (see legs.ListenerRef)
        if call is None:
            return
        if call.state == CallState.ANSWERED:
            call.party_hung_up("a", now)
        else:
            call.caller_cancelled(now)


@dataclass(eq=False, slots=True, kw_only=True)
class ModemLeg(LegStates):
    """A call placed through a modem line: `ATD` and the far end's progress."""

    line: ModemLine
    number: str
    employee: str | None = None
    channel: str | None = None
    record: LegRecord = field(init=False)
    media: LineMedia | None = None
    _state: LegState = LegState.CALLING
    _listener: ListenerRef = field(default_factory=ListenerRef)
    _setup: LegSetup | None = None
    _offer_made: bool = False

    def __post_init__(self) -> None:
        self.record = LegRecord(target=self.number, contact=f"{self.line.kind}:{self.line.name}",
                                started_at=0.0)

    @property
    def label(self) -> str:
        return self.number

    def _emit(self, event: LegEvent, now: float) -> None:
        self._listener.tell(event, now)

    def start(self, setup: LegSetup, listener: LegListener, now: float) -> None:
        self._setup, self._listener = setup, ListenerRef(listener)
        self.record.started_at = now
        line = self.line
        state, reason = line.state(now)
        if line.current is not None or state.value == "down":
            why = "line busy" if line.current is not None else reason
            LOGGER.info("line %s cannot call %s: %s", line.name, self.number, why)
            # Told on the next turn of the timers: the call is still starting its legs.
            status = 486 if line.current is not None else 503
            line.core.call_at(now, lambda at: self._failed(status, at))
            return
        line.current = self
        self.media = LineMedia(line.core, line)
        line.command("dial", number=self.number)

    def remote_ringing(self, now: float) -> None:
        if self._state is LegState.CALLING:
            self._move(LegState.RINGING)
            self.record.ringing_at = now
            self._emit(LegRinging(leg=self), now)

    def remote_answered(self, now: float) -> None:
        if not self.active or self.media is None:
            return
        offer = self._setup.offer if self._setup is not None else None
        try:
            if offer is not None and offer.body:
                body = self.media.answer_offer(offer.body)
            else:
                body = self.media.offer()  # the far end's answer comes in complete_answer
                self._offer_made = True
        except sdp.SdpError as exc:
            LOGGER.warning("line %s: no common audio with the caller: %s", self.line.name, exc)
            self.record.result, self.record.sip_status = "failed", 488
            self.hang_up(now)
            self._emit(LegFailed(leg=self, status=488, result="failed"), now)
            return
        self._move(LegState.ANSWERED)
        self._emit(LegAnswered(leg=self, media=SessionDescription(body=body)), now)

    def complete_answer(self, answer: SessionDescription | None, now: float) -> None:
        if self.media is not None and self._offer_made and answer is not None and answer.body:
            self._offer_made = False  # once: later ACKs (of re-INVITEs) change nothing here
            try:
                self.media.accept_answer(answer.body)
            except sdp.SdpError as exc:
                LOGGER.warning("line %s: the answer's SDP is unusable: %s", self.line.name, exc)

    @property
    def current_sdp(self) -> bytes:
        return self.media.last_sdp if self.media is not None else b""

    def renegotiate(self, offer: bytes) -> bytes:
        if self.media is None:
            raise sdp.SdpError("the call on the line has ended")
        return self.media.answer_offer(offer)

    def key_pressed(self, key: str, now: float) -> None:
        if self._state is LegState.ANSWERED:
            self.line.command("dtmf", key=key)

    def ended(self, fact: CallEnded, now: float) -> None:
        self.line.call_over(self)
        if self.media is not None:
            self.media.close()
        if self.active:
            self._failed(fact.status if fact.status >= 300 else 480, now)
        elif self._state is LegState.ANSWERED:
            self._move(LegState.DONE)
            self.record.ended_at = now
            self._emit(LegEnded(leg=self, cause=fact.cause), now)

    def _failed(self, status: int, now: float) -> None:
        if not self.active:
            return
        self._move(LegState.DONE)
        self.record.result = self.record.result or result_of(status)
        self.record.sip_status = status
        self.record.ended_at = now
        self._emit(LegFailed(leg=self, status=status, result=self.record.result), now)

    def cancel(self, now: float, *, result: str = "cancelled") -> None:
        if not self.active:
            return
        self.record.result = result
        self._move(LegState.DONE)
        self.record.ended_at = now
        self._release()

    def hang_up(self, now: float) -> None:
        if self._state is not LegState.DONE:
            self._move(LegState.DONE)
        if self.record.ended_at is None:
            self.record.ended_at = now
        self._release()

    def _release(self) -> None:
        if self.line.current is self:
            self.line.command("hang_up")
            self.line.call_over(self)
        if self.media is not None:
            self.media.close()


ModemCall = ModemCaller | ModemLeg


class ModemLine:
    """A GSM or FXO line of the configuration: its last status from the driver, and the one
    call it carries."""

    def __init__(self, trunk: Trunk, core: Gateway) -> None:
        self.reconfigure(trunk)
        self.core = core
        self.status = ModemStatus(state="down", reason="starting")
        self.status_since = core.now
        self.current: ModemCall | None = None

    def reconfigure(self, trunk: Trunk) -> None:
        """A changed configuration of the same line: its state and its call carry on."""
        self.trunk = trunk
        self.name = trunk.name
        self.kind = trunk.type
        self.channels = 1

    @property
    def channel_key(self) -> str:
        return f"line:{self.name}"

    @property
    def source_label(self) -> str:
        return f"{self.kind}:{self.name}"

    def state(self, now: float) -> tuple[LineState, str]:
        from .lines import LineState
        try:
            return LineState(self.status.state), self.status.reason
        except ValueError:
            return LineState.DOWN, self.status.reason

    def place(self, number: str, now: float) -> ModemLeg:
        return ModemLeg(line=self, number=number)

    def command(self, action: str, *, number: str = "", key: str = "") -> None:
        self.core.emit(ModemCommandRequested(line=self.name, action=action, number=number,
                                             key=key))

    def call_over(self, call: ModemCall) -> None:
        if self.current is call:
            self.current = None

    # ------------------------------------------------------------------ the driver's facts
    def fact(self, fact: ModemFact, now: float) -> None:
        current = self.current
        if isinstance(fact, StatusChanged):
            if (fact.status.state, fact.status.reason) != (self.status.state,
                                                           self.status.reason):
                self.status_since = now
            self.status = fact.status
        elif isinstance(fact, IncomingCall):
            self._incoming(fact, now)
        elif isinstance(fact, RemoteRinging) and isinstance(current, ModemLeg):
            current.remote_ringing(now)
        elif isinstance(fact, RemoteAnswered) and isinstance(current, ModemLeg):
            current.remote_answered(now)
        elif isinstance(fact, CallEnded):
            if not fact.by_far_end:
                # The driver confirming a hang-up the core asked for: that call is over for
                # the core already (the line was freed when it asked), and whatever the line
                # carries now is another call.
                return
            if isinstance(current, ModemLeg):
                current.ended(fact, now)
            elif isinstance(current, ModemCaller):
                current.media.close()
                current.far_end_hung_up(fact, now)
        elif isinstance(fact, KeyPressed):
            self._key(fact.key, now)
        elif isinstance(fact, SmsReceived):
            self.core.emit(SmsArrived(line=self.name, sender=fact.sender, text=fact.text,
                                      received_at=fact.received_at, complete=fact.complete))

    def _incoming(self, fact: IncomingCall, now: float) -> None:
        if self.current is not None:
            LOGGER.warning("line %s: a second call while one is up; the driver should not "
                           "report it", self.name)
            return
        caller = ModemCaller(line=self, media=LineMedia(self.core, self))
        self.current = caller
        number = caller_number(fact.caller) if fact.caller else "anonymous"
        key = f"{self.name}:{uuid.uuid4().hex}"
        try:
            call = self.core.admission.admit_line_call(
                self, caller, key=key, signalling_id=f"{self.kind}-{uuid.uuid4().hex}",
                caller=number, dialed=self.dialed_number(), display=fact.name or None,
                now=now,
            )
        except Exception:
            # A bug must not leave the line taken and the caller ringing forever.
            LOGGER.exception("line %s: the call from %s could not be routed", self.name,
                             number)
            failed = self.core.calls.get(key)
            if failed is not None:
                failed.fail(500, "internal error", now, outcome="failed")
            caller.reject(500, None, now)
            return
        if call is None or call.state == CallState.ENDED:
            caller.media.close()
            self.call_over(caller)
            return
        caller.call = call
        LOGGER.info("line %s: call from %s", self.name, number)

    def dialed_number(self) -> str:
        """The office number this line's calls arrive at: the `numbers` entry on this line,
        or the SIM's own number."""
        for number in self.core.config.numbers:
            if number.trunk == self.name:
                return number.number
        return self.trunk.number

    def _key(self, key: str, now: float) -> None:
        current = self.current
        call = current.call if isinstance(current, ModemCaller) else None
        if call is not None and call.state in (CallState.QUEUED, CallState.RINGING):
            self.core.edge.key_while_waiting(call, key, now)
        elif call is not None and call.local is not None:
            call.local.key_pressed(key, now)
        elif current is not None and current.media is not None:
            current.media.key_from_line(key)  # to the party talking, as RFC 4733

    # ------------------------------------------------------------------ audio
    def frame_from_line(self, frame: bytes) -> None:
        media = self.current.media if self.current is not None else None
        if media is not None:
            media.from_line(frame)

    def frame_for_line(self) -> bytes | None:
        media = self.current.media if self.current is not None else None
        if media is None:
            return None
        frame = media.for_line()
        # Keys the party pressed (RFC 4733) go to the line as the modem's own DTMF: tones
        # squeezed through G.711 and a GSM codec are not reliably heard as keys.
        while media.end.keys:
            self.command("dtmf", key=media.end.keys.popleft())
        return frame

    def as_status(self, now: float) -> dict[str, object]:
        """The fields `linebox status` adds for a modem line."""
        status = self.status
        return {"signal_dbm": status.signal_dbm, "operator": status.operator,
                "registration": status.registration, "imei": status.imei, "sim": status.sim,
                "port": status.port,
                "since": round(self.status_since + self.core.wall_offset_s, 3)}
