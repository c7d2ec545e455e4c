"""The FXO line driver: an analog phone line through an ITU-T V.253 voice modem, as a `ModemDriver`
of kind "fxo" (hal/modem/driver.py).

`FxoDriver(name, port=..., profile=...)` keeps the modem's port open through `PortSupervisor`
(a vanished port marks the line down and is reopened, the init runs again), speaks AT through
`AtChannel`, and runs each call through `FxoCall`, the pure state table of hal/modem/v253.py: the
driver only performs what the table asks (commands in order, stream endings awaited) and turns
its facts into the driver facts. Audio is the V.253 voice stream (`AT+VTR`, or `AT+VRX` on a
half-duplex modem) after `CONNECT`: unshielded, converted to 8 kHz 16-bit PCM and handed out in
320-byte frames; what the box says is converted to the modem's sample format, <DLE>-doubled and
written every 20 ms from a queue of at most 100 ms.

What an analog line cannot give, said plainly (see also hal/modem/v253.py's docstring):

- **No answer signal.** An outgoing call is reported answered (`RemoteAnswered`) as soon as the
  number is dialled and the voice stream is up; the member hears ringback or busy through the
  audio. A busy tone soon after dialling ends the call with 486.
- **Half duplex.** The `generic` profile (a modem without `+VTR`) receives only: the box hears
  the caller, the caller hears nothing from the box, and `write_audio` frames are dropped. The
  status reason says so.
- **No echo cancellation** on any V.253 modem (USR 5637, Conexant CX930xx reference manuals).
- **DTMF out** (`send_dtmf`) uses `AT+VTS`, which a modem takes in voice command mode only: the
  driver leaves the stream, sends `AT+VTS=<key>` and starts the stream again (a gap of a few
  tens of milliseconds in both directions).
- **Events in command mode.** Modems shield events outside a stream too (`<DLE>d` dial tone
  after `AT+VLS=1`, vgetty reads them there); the driver reads the port through a small tap that
  takes them out before the AT codec sees the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from hal.modem import v253
from hal.modem.at import AtError, UnsolicitedResult
from hal.modem.channel import (
    DEFAULT_TIMEOUT_S,
    READ_CHUNK_BYTES,
    SHORT_TIMEOUT_S,
    AtChannel,
    AtCommandFailed,
    AtPortClosed,
    AtTimeout,
)
from hal.modem.driver import (
    FRAME_BYTES,
    CallEnded,
    IncomingCall,
    KeyPressed,
    ModemCommandError,
    ModemFact,
    ModemStatus,
    RemoteAnswered,
    StatusChanged,
)
from hal.modem.v253 import DleDecoder, DleEvent, DleKind, EndReason, FxoCall, FxoState
from hal.serial.port import open_port
from hal.serial.supervisor import PortSupervisor

LOGGER = logging.getLogger(__name__)

KIND = "fxo"
PROFILE_NAMES = ("v253", *v253.PROFILES)  # "v253": detected from ATI, else generic
# V.253 §10.2.4/§10.2.5: +VGR/+VGT 128 is the modem's nominal gain; larger is louder, in steps
# the maker chooses (about 0.5 dB on the USR 5637).
NOMINAL_GAIN = 128
TX_QUEUE_FRAMES = 5  # 100 ms of the box's audio waiting for the modem; older frames are dropped
PACE_RESYNC_S = 0.1  # the pacer fell this far behind (a stalled loop): start afresh, no burst
STREAM_END_TIMEOUT_S = 2.0  # <DLE>! → <DLE><ETX>: a modem answers within a few frames
ANSWER_TIMEOUT_S = 2 * DEFAULT_TIMEOUT_S + 1.0  # AT+VLS=1, then AT+VTR → CONNECT
HANG_UP_TIMEOUT_S = STREAM_END_TIMEOUT_S + DEFAULT_TIMEOUT_S + 1.0
DTMF_TIMEOUT_S = STREAM_END_TIMEOUT_S + 2 * DEFAULT_TIMEOUT_S + 1.0
# A busy line's tone comes within seconds of dialling; a busy tone later in an outgoing call is
# the exchange saying the far end hung up (an analog line gives no answer signal to tell them
# apart).
BUSY_IS_BUSY_WITHIN_S = 30.0
# Init commands a modem must take for the line to work; the others (timers, gains, flow control)
# are logged when refused and the line comes up anyway.
REQUIRED_INIT = ("AT+FCLASS=8", "AT+VSM", "AT+VLS=0", "AT+VCID")
VOICE_COMMANDS = frozenset({"AT+VTR", "AT+VRX", "AT+VTX"})
# After <DLE><ETX> the modem sends its final result (V.253 §10.1.7: `OK` once the stream is
# left); the next command must wait for it, or it would take that `OK` for its own answer.
_RESULT_LINE = re.compile(rb"(?:^|[\r\n])(?:OK|ERROR)\r")
_RESULT_SCAN_BYTES = 256

# Words for the call records (driver.CallEnded.cause) and the SIP status they map to.
_ENDINGS: dict[EndReason, tuple[str, int]] = {
    EndReason.LOOP_BREAK: ("far end hung up (loop-current break)", 200),
    EndReason.BUSY_TONE: ("busy tone", 200),
    EndReason.SILENCE: ("silence on the line", 200),
    EndReason.CALLER_GAVE_UP: ("the caller hung up before the answer", 487),
    EndReason.LOCAL_HANG_UP: ("hung up by the box", 200),
    EndReason.MODEM_FAILED: ("the modem failed the call", 480),
}

SupervisorFactory = Callable[..., PortSupervisor]


def detect_profile(identity: str) -> str:
    """The profile for a modem's `ATI` text: USR and Conexant (Zoom) chips by name, else the
    half-duplex `generic` one, which every V.253 modem can do."""
    text = identity.upper()
    if "ROBOTICS" in text or "USR" in text or "5637" in text:
        return "usr5637"
    if "CONEXANT" in text or "CX93" in text or "ZOOM" in text:
        return "cx930xx"
    return "generic"


@dataclass
class _CallOnLine:
    """One FxoCall and what the driver knows about it beyond the table."""

    call: FxoCall
    outgoing: bool
    started_at: float
    announced: bool = False  # IncomingCall was reported (outgoing calls: always)
    lost_reason: str = ""


@dataclass
class _Barrier:
    """Resolved when the worker reaches it: everything queued before it was performed."""

    done: asyncio.Future[None]


@dataclass
class _KeyOut:
    key: str
    done: asyncio.Future[None]


@dataclass
class _CallStep:
    line: _CallOnLine
    event: v253.FxoEvent


_Step = _CallStep | _Barrier | _KeyOut


@dataclass
class AudioCounters:
    """What passed through the voice stream (for tests and `linebox status`)."""

    frames_heard: int = 0  # 320-byte frames handed to on_audio
    frames_said: int = 0  # write_audio frames written to the modem
    silence_frames: int = 0  # written because nothing was queued (a stream must not starve)
    frames_dropped: int = 0  # write_audio frames with no stream to take them, or too old
    samples_written: int = 0  # sample bytes in the modem's format, before <DLE> doubling
    dle_events: int = 0


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class StreamWatch:
    """Where, in the port's bytes as they come, a voice stream ends (<DLE><ETX>, doubled
    <DLE>s respected) and the modem's result line after it arrives. Pure: bytes in, answers out.
    """

    def __init__(self) -> None:
        self._escaped = False
        self._after: bytearray | None = None  # text since the stream ended, until its result

    @property
    def awaiting_result(self) -> bool:
        return self._after is not None

    def stream_started(self) -> None:
        self._escaped = False
        self._after = None

    def end_of_stream(self, data: bytes) -> int:
        """The index just past <DLE><ETX> in `data`, or -1 when the stream goes on."""
        for index, byte in enumerate(data):
            if self._escaped:
                self._escaped = False
                if byte == v253.ETX:
                    self._after = bytearray()
                    return index + 1
            elif byte == v253.DLE:
                self._escaped = True
        return -1

    def result_seen(self, text: bytes) -> bool:
        """Text after the stream's end; True once the result line is complete."""
        if self._after is None:
            return False
        self._after += text
        if _RESULT_LINE.search(self._after):
            self._after = None
            return True
        del self._after[:-_RESULT_SCAN_BYTES]
        return False


@dataclass
class _Session:
    """The open port's state, made afresh each time the port opens."""

    channel: AtChannel
    tap: DleDecoder = field(default_factory=DleDecoder)  # command mode: events out, text on
    watch: StreamWatch = field(default_factory=StreamWatch)
    # Set when a stream ended, resolved when the modem's result line after it passed.
    back_to_commands: asyncio.Future[None] | None = None


class FxoDriver:
    """An analog line through a V.253 voice modem (see the module docstring).

    Facts (through `on_fact`, on the event loop): `StatusChanged` when the line comes up
    ("ready") or goes down (port vanished, not a voice modem, no answer); `IncomingCall` once
    per call at the second ring, when the caller ID sent after the first ring is complete
    (caller None with reason "private" or "unavailable" for `P`/`O` or no caller ID);
    `KeyPressed` for the far end's digits; `RemoteAnswered` once an outgoing call is dialled;
    `CallEnded` when the far end goes (`l` loop break, `b` busy, `s` silence: by_far_end, the
    line back on hook), the rings stop (487), a dialled line is busy (486), the box hangs up
    (by_far_end False) or the port vanishes.
    """

    kind = KIND

    def __init__(
        self,
        name: str,
        *,
        port: str,
        profile: str = "v253",
        receive_gain: int = NOMINAL_GAIN,
        transmit_gain: int = NOMINAL_GAIN,
        supervisor_factory: SupervisorFactory = PortSupervisor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if profile not in PROFILE_NAMES:
            raise ValueError(f"unknown V.253 profile {profile!r} (one of {PROFILE_NAMES})")
        self.name = name
        self.port = port
        self.profile_setting = profile
        self.receive_gain = receive_gain
        self.transmit_gain = transmit_gain
        self.counters = AudioCounters()
        self.profile: v253.V253Profile = v253.PROFILES[
            "generic" if profile == "v253" else profile]
        self.sample_format = self.profile.sample_format
        self.up_at: float | None = None  # loop time the line last came up (replug measurements)
        self._supervisor_factory = supervisor_factory
        self._clock = clock
        self._status = ModemStatus(state="down", reason="not started", sim="absent", port=port)
        self._on_fact: Callable[[ModemFact], None] | None = None
        self._on_audio: Callable[[bytes], None] | None = None
        self._supervisor: PortSupervisor | None = None
        self._session: _Session | None = None
        self._line: _CallOnLine | None = None
        self._steps: deque[_Step] = deque()
        self._kick = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # The voice stream.
        self._stream_wanted = False  # a voice command was sent: the port's bytes are the stream's
        self._streaming = False
        self._stream_decoder = DleDecoder()
        self._stream_ended: asyncio.Future[None] | None = None
        self._rx_pcm = bytearray()
        self._tx_queue: deque[bytes] = deque(maxlen=TX_QUEUE_FRAMES)
        self._pacer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the driver contract

    @property
    def status(self) -> ModemStatus:
        return self._status

    @property
    def call_state(self) -> str:
        """The call's FxoState ("idle" when there is none)."""
        return self._line.call.state.value if self._line is not None else "idle"

    @property
    def rings(self) -> int:
        """Rings heard for the call on the line (0 when there is none)."""
        return self._line.call.rings if self._line is not None else 0

    async def start(self, on_fact: Callable[[ModemFact], None],
                    on_audio: Callable[[bytes], None]) -> None:
        self._on_fact, self._on_audio = on_fact, on_audio
        loop = asyncio.get_running_loop()
        self._worker = loop.create_task(self._work(), name=f"fxo-{self.name}")
        self._set_status(state="down", reason=f"opening {self.port}")
        self._supervisor = self._supervisor_factory(
            self.port, name=self.name, on_opened=self._initialise, on_lost=self._port_lost,
            opener=self._open)
        self._supervisor.start()

    async def stop(self) -> None:
        line = self._line
        if line is not None and line.call.state not in (FxoState.IDLE, FxoState.ENDED):
            with contextlib.suppress(ModemCommandError):
                await self.hang_up()
        self._cancel_timer()
        await self._stop_pacer()
        if self._supervisor is not None:
            await self._supervisor.stop()
        for task in (self._worker, *self._tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._worker = None
        self._session = None
        self._set_status(state="down", reason="stopped")

    async def answer(self) -> None:
        """Off hook (`AT+VLS=1`) and the voice stream (`AT+VTR`; `AT+VRX` on a half-duplex
        modem, which then only receives). Returns once the stream is up."""
        line = self._line
        if line is None or line.call.state is not FxoState.RINGING or not line.announced:
            raise ModemCommandError(f"{self.name}: no call is ringing")
        line.call.answer(self._clock())
        self._take_events(line)
        await self._barrier(ANSWER_TIMEOUT_S, "answer")
        state: FxoState = line.call.state  # moved while the steps ran
        if state is not FxoState.CONNECTED:
            raise ModemCommandError(f"{self.name}: the modem did not take the call "
                                    f"({line.call.end_reason or line.call.state})")

    async def dial(self, number: str) -> None:
        """Off hook, dial tone (`<DLE>d`, or dialling anyway after v253.DIAL_TONE_WAIT_S), the
        number (`ATD<n>;`, or `AT+VTS` tones on the generic profile), the voice stream, then
        `RemoteAnswered` at once: an analog line gives no answer signal. Returns once the line
        took the request; progress and failure come as facts. The number is dialled as given
        (turning +7… into what the exchange wants is the dial plan's business)."""
        if self._status.state != "up":
            raise ModemCommandError(f"{self.name} is down: {self._status.reason}")
        if self._line is not None and self._line.call.state is not FxoState.ENDED:
            raise ModemCommandError(f"{self.name}: the line carries a call already")
        now = self._clock()
        line = _CallOnLine(call=FxoCall(profile=self.profile), outgoing=True, started_at=now,
                           announced=True)
        try:
            line.call.dial(number, now)
        except v253.V253Error as error:
            raise ModemCommandError(f"{self.name}: {error}") from None
        self._line = line
        self._take_events(line)

    async def hang_up(self) -> None:
        """Leave the voice stream (the profile's <DLE>! or <DLE>^; a transmit-only stream would
        end with <DLE><ETX>, but this driver never opens one), back on hook (`AT+VLS=0`, `ATH`
        if refused), then `CallEnded(by_far_end=False)`. Nothing happens with no call up."""
        line = self._line
        if line is None or line.call.state in (FxoState.IDLE, FxoState.ENDED):
            return
        line.call.hang_up(self._clock())
        self._take_events(line)
        await self._barrier(HANG_UP_TIMEOUT_S, "hang up")

    async def send_dtmf(self, key: str) -> None:
        """`AT+VTS=<key>` in voice command mode: the stream is left and started again."""
        if len(key) != 1 or key.upper() not in v253.DTMF_DIGITS:
            raise ModemCommandError(f"{self.name}: {key!r} is not a DTMF key")
        line = self._line
        if line is None or line.call.state is not FxoState.CONNECTED:
            raise ModemCommandError(f"{self.name}: no call is up")
        done = asyncio.get_running_loop().create_future()
        self._steps.append(_KeyOut(key=key.upper(), done=done))
        self._kick.set()
        try:
            async with asyncio.timeout(DTMF_TIMEOUT_S):
                await done
        except TimeoutError:
            raise ModemCommandError(f"{self.name}: DTMF {key} not sent in time") from None

    def write_audio(self, frame: bytes) -> None:
        if len(frame) != FRAME_BYTES:
            LOGGER.info("%s: a %d-byte audio frame dropped (frames are %d bytes)", self.name,
                        len(frame), FRAME_BYTES)
            self.counters.frames_dropped += 1
            return
        if not (self._streaming and self._pacer is not None):
            self.counters.frames_dropped += 1
            return
        if len(self._tx_queue) == self._tx_queue.maxlen:
            self.counters.frames_dropped += 1  # the deque drops the oldest on append
        self._tx_queue.append(frame)

    # ------------------------------------------------------------------ the port

    async def _open(self, path: str) -> AtChannel:
        """The supervisor's opener: the port read through the command-mode tap."""
        reader, writer = await open_port(path)
        tapped = asyncio.StreamReader(limit=2**20)
        channel = AtChannel(tapped, writer, name=self.name, on_unsolicited=self._line_received,
                            on_data=self._stream_data, clock=self._clock)
        self._session = _Session(channel=channel)
        self._stream_wanted = self._streaming = False
        self._spawn(self._pump(reader, tapped, self._session), f"fxo-tap-{self.name}")
        return channel

    async def _pump(self, raw: asyncio.StreamReader, tapped: asyncio.StreamReader,
                    session: _Session) -> None:
        """Port → channel. Outside a stream, shielded events are taken out here (the AT codec
        would discard `<DLE>d` as garbage); inside one the bytes go on untouched, and the
        channel's data handler unshields them."""
        watch = session.watch
        try:
            while data := await raw.read(READ_CHUNK_BYTES):
                if self._stream_wanted:
                    cut = watch.end_of_stream(data)
                    if cut < 0:
                        tapped.feed_data(data)
                        continue
                    # The stream ends inside this read: the rest is text again.
                    self._stream_wanted = False
                    session.back_to_commands = asyncio.get_running_loop().create_future()
                    tapped.feed_data(data[:cut])
                    data = data[cut:]
                text = self._command_mode_bytes(session, data)
                if text:
                    tapped.feed_data(text)
                settled = session.back_to_commands
                if watch.result_seen(text) and settled is not None:
                    # Resolved a turn later: the channel's read task, woken by feed_data, is
                    # ahead in the ready queue, so the codec has taken the result line as a
                    # stray one before the next command can be sent.
                    asyncio.get_running_loop().call_soon(_resolve, settled)
            tapped.feed_eof()
        except asyncio.CancelledError:
            tapped.feed_eof()
            raise
        except Exception as error:  # the port vanished: the channel reports it lost
            tapped.set_exception(error)

    def _command_mode_bytes(self, session: _Session, data: bytes) -> bytes:
        text = bytearray()
        while data:
            session.tap.receive_data(data)
            data = b""
            while (event := session.tap.next_event()) is not None:
                if isinstance(event, v253.VoiceSamples):
                    text += event.data
                elif event.kind is DleKind.END_OF_STREAM:
                    # A stream's late end: what follows is text again, read by a fresh tap.
                    data = session.tap.trailing_data
                    session.tap = DleDecoder()
                    break
                else:
                    self._dle_received(event)
        return bytes(text)

    async def _initialise(self, channel: AtChannel, path: str) -> None:
        """The supervisor's on_opened: the profile's init; raises (and the supervisor tries
        again later) when the modem does not answer or is not a voice modem."""
        self._set_status(state="down", reason=f"initialising the modem at {path}", port=path)
        try:
            await self._init_commands(channel)
        except AtCommandFailed as failure:
            command = failure.completion.command
            if command.upper() == "AT+FCLASS=8":
                reason = f"not a voice modem ({command} → {failure.completion.final})"
            else:
                reason = f"the modem refused {command} ({failure.completion.final})"
            self._set_status(state="down", reason=reason)
            raise
        except AtTimeout as timeout:
            self._set_status(state="down", reason=f"no answer from the modem ({timeout})")
            raise
        self.up_at = asyncio.get_running_loop().time()
        duplex = ("full duplex, no echo cancellation" if self.profile.full_duplex else
                  "half duplex: the line cannot carry both directions, the box only hears it")
        self._set_status(state="up", sim="ready", port=path,
                         reason=f"ready ({self.profile.name}, {self.sample_format}, {duplex})")

    async def _init_commands(self, channel: AtChannel) -> None:
        await channel.command("ATE0")
        identity = await self._optional(channel, "ATI")
        manufacturer = await self._optional(channel, "AT+GMI")
        if self.profile_setting == "v253":
            self.profile = v253.PROFILES[detect_profile(identity)]
            LOGGER.info("%s: %r → profile %s", self.name, identity, self.profile.name)
        self._set_status(manufacturer=manufacturer, model=identity)
        await channel.command("AT+FCLASS=8")
        vsm = await self._choose_format(channel)
        for line in self.profile.init:
            upper = line.upper()
            if upper in ("ATE0", "AT+FCLASS=8") or upper.startswith("AT+VSM"):
                continue
            if upper.startswith("AT+VGR="):
                line = f"AT+VGR={self.receive_gain}"
            elif upper.startswith("AT+VGT="):
                line = f"AT+VGT={self.transmit_gain}"
            if any(upper.startswith(required) for required in REQUIRED_INIT):
                await channel.command(line)
            else:
                await self._optional(channel, line)
        LOGGER.info("%s: voice modem ready (%s, %s)", self.name, self.profile.name, vsm)

    async def _choose_format(self, channel: AtChannel) -> str:
        """The best 8 kHz format of `AT+VSM=?` (µ-law, A-law, 8-bit linear), else the
        profile's own +VSM line."""
        offer: v253.VsmOffer | None = None
        try:
            offers = v253.parse_vsm_offers((await channel.command("AT+VSM=?")).info)
            offer = v253.choose_vsm(offers)
        except AtCommandFailed as failure:
            LOGGER.info("%s: AT+VSM=? → %s", self.name, failure.completion.final)
        if offer is not None:
            try:
                await channel.command(offer.command())
                self.sample_format = offer.sample_format
                return offer.command()
            except AtCommandFailed:
                LOGGER.warning("%s: the modem offered but refused %s", self.name,
                               offer.command())
        fallback = next(line for line in self.profile.init if line.upper().startswith("AT+VSM"))
        await channel.command(fallback)
        self.sample_format = self.profile.sample_format
        return fallback

    async def _optional(self, channel: AtChannel, line: str) -> str:
        """A command the line works without: its information, or "" when refused."""
        try:
            return " ".join((await channel.command(line)).info).strip()
        except AtCommandFailed as failure:
            LOGGER.info("%s: %s → %s (carrying on without it)", self.name, line,
                        failure.completion.final)
            return ""

    def _port_lost(self, reason: str) -> None:
        self._session = None
        self._stream_wanted = self._streaming = False
        self._tx_queue.clear()
        if self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None
        if self._stream_ended is not None and not self._stream_ended.done():
            self._stream_ended.set_result(None)
        self._set_status(state="down", reason=f"port vanished ({reason})", sim="absent")
        line = self._line
        if line is not None and line.call.state not in (FxoState.IDLE, FxoState.ENDED):
            line.lost_reason = f"port vanished ({reason})"
            line.call.command_failed("the port", self._clock())
            if line.call.state is FxoState.RINGING:
                # Nothing on the table ends a ringing call for a lost modem; the rings the
                # modem no longer reports would end it by the timer anyway.
                line.call.handle_timer(float("inf"))
            self._take_events(line)

    # ------------------------------------------------------------------ from the modem

    def _line_received(self, result: UnsolicitedResult) -> None:
        text = result.line.strip()
        line = self._line
        if line is None or line.call.state is FxoState.ENDED:
            if text.upper() != "RING" and not text.upper().startswith("RING "):
                LOGGER.debug("%s: %r with no call", self.name, text)
                return
            line = self._new_incoming()
        line.call.line_received(text, self._clock())
        self._take_events(line)

    def _dle_received(self, event: DleEvent) -> None:
        self.counters.dle_events += 1
        line = self._line
        if line is None or line.call.state is FxoState.ENDED:
            if event.kind is not DleKind.RING:
                LOGGER.debug("%s: <DLE>%r with no call", self.name, event.code)
                return
            line = self._new_incoming()
        line.call.dle_received(event, self._clock())
        self._take_events(line)

    def _new_incoming(self) -> _CallOnLine:
        self._line = _CallOnLine(call=FxoCall(profile=self.profile), outgoing=False,
                                 started_at=self._clock())
        return self._line

    def _stream_data(self, data: bytes) -> None:
        """The channel's data handler: the voice stream, shielded."""
        decoder = self._stream_decoder
        decoder.receive_data(data)
        while (event := decoder.next_event()) is not None:
            if isinstance(event, v253.VoiceSamples):
                self._heard(event.data)
            elif event.kind is DleKind.END_OF_STREAM:
                self._stream_stopped(decoder.trailing_data)
                return
            else:
                self._dle_received(event)

    def _heard(self, samples: bytes) -> None:
        # Samples may come in the read that brought CONNECT, before the voice command's
        # caller resumed: they are the stream's all the same.
        self._rx_pcm += v253.to_pcm16(samples, self.sample_format)
        while len(self._rx_pcm) >= FRAME_BYTES:
            frame = bytes(self._rx_pcm[:FRAME_BYTES])
            del self._rx_pcm[:FRAME_BYTES]
            self.counters.frames_heard += 1
            if self._on_audio is not None:
                try:
                    self._on_audio(frame)
                except Exception:
                    LOGGER.exception("%s: on_audio failed", self.name)

    def _stream_stopped(self, trailing: bytes) -> None:
        """<DLE><ETX>: the modem is back in command mode; its result line follows."""
        self._stream_wanted = self._streaming = False
        self._rx_pcm.clear()
        if self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None
        session = self._session
        if session is not None:
            session.channel.leave_data_mode(trailing)
        if self._stream_ended is not None and not self._stream_ended.done():
            self._stream_ended.set_result(None)
        LOGGER.info("%s: voice stream ended", self.name)

    # ------------------------------------------------------------------ the call's steps

    def _take_events(self, line: _CallOnLine) -> None:
        while (event := line.call.next_event()) is not None:
            self._steps.append(_CallStep(line=line, event=event))
        self._kick.set()
        if line is self._line:
            self._arm_timer(line)

    def _arm_timer(self, line: _CallOnLine) -> None:
        self._cancel_timer()
        at = line.call.get_timer()
        if at is not None:
            delay = max(0.0, at - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._timer_fired, line)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timer_fired(self, line: _CallOnLine) -> None:
        self._timer = None
        line.call.handle_timer(self._clock())
        self._take_events(line)

    async def _barrier(self, timeout_s: float, what: str) -> None:
        done = asyncio.get_running_loop().create_future()
        self._steps.append(_Barrier(done=done))
        self._kick.set()
        try:
            async with asyncio.timeout(timeout_s):
                await done
        except TimeoutError:
            raise ModemCommandError(f"{self.name}: {what} not done in {timeout_s:g} s") from None

    async def _work(self) -> None:
        """Performs the steps in order: a command waits for the one before it."""
        while True:
            while self._steps:
                step = self._steps.popleft()
                try:
                    await self._perform(step)
                except Exception:
                    LOGGER.exception("%s: %r failed", self.name, step)
            self._kick.clear()
            await self._kick.wait()

    async def _perform(self, step: _Step) -> None:
        if isinstance(step, _Barrier):
            if not step.done.done():
                step.done.set_result(None)
            return
        if isinstance(step, _KeyOut):
            await self._key_out(step)
            return
        line, event = step.line, step.event
        if isinstance(event, v253.SendCommand):
            await self._command_for(line, event.line)
        elif isinstance(event, v253.LeaveVoice):
            await self._leave_stream(event.data)
        elif isinstance(event, v253.RingDetected):
            if event.count >= 2 and not line.announced:
                self._announce(line, event.caller_id)
        elif isinstance(event, v253.Answered):
            if event.outgoing:
                self._emit(RemoteAnswered(line=self.name))
        elif isinstance(event, v253.DtmfReceived):
            self._emit(KeyPressed(line=self.name, key=event.digit))
        elif isinstance(event, v253.CallEnded):
            self._ended(line, event.reason)
        # CallerIdReceived and FarEndHungUp: told with the ring and the end that follow them.

    def _announce(self, line: _CallOnLine, caller_id: v253.CallerId | None) -> None:
        line.announced = True
        if caller_id is None:
            caller, reason, name = None, "unavailable", ""
        else:
            caller, name = caller_id.number, caller_id.name or ""
            reason = caller_id.number_absence.value if caller_id.number_absence else ""
        LOGGER.info("%s: incoming call from %s", self.name, caller or reason)
        self._emit(IncomingCall(line=self.name, caller=caller, reason=reason, name=name))

    def _ended(self, line: _CallOnLine, reason: EndReason) -> None:
        if not line.announced:
            LOGGER.info("%s: rings stopped before the call was reported", self.name)
            return
        cause, status = _ENDINGS[reason]
        if line.lost_reason:
            cause, status = line.lost_reason, 480
        elif (reason is EndReason.BUSY_TONE and line.outgoing
              and self._clock() - line.started_at <= BUSY_IS_BUSY_WITHIN_S):
            cause, status = "busy", 486
        LOGGER.info("%s: call ended: %s", self.name, cause)
        self._emit(CallEnded(line=self.name, cause=cause, status=status,
                             by_far_end=reason is not EndReason.LOCAL_HANG_UP))

    async def _command_for(self, line: _CallOnLine, command: str) -> None:
        session = self._session
        voice = command.upper() in VOICE_COMMANDS
        if voice and line.call.state is FxoState.ENDED:
            return  # hung up while the answer was on its way: no stream to open
        if session is None:
            line.call.command_failed(command, self._clock())
            self._take_events(line)
            return
        if self._streaming:
            await self._leave_stream(self.profile.leave_voice)
        await self._settle(session)
        try:
            await self._send(session.channel, command, voice=voice)
        except (AtCommandFailed, AtTimeout) as error:
            if command.upper() == "AT+VLS=0":
                LOGGER.warning("%s: %s (%s); ATH instead", self.name, command, error)
                with contextlib.suppress(AtError):
                    await session.channel.command("ATH")
                return
            LOGGER.warning("%s: %s failed (%s)", self.name, command, error)
            line.call.command_failed(command, self._clock())
            self._take_events(line)
            return
        except AtError as error:  # the port went: on_lost ends the call
            LOGGER.warning("%s: %s not sent (%s)", self.name, command, error)
            return
        if voice:
            line.call.voice_started(self._clock())
            self._take_events(line)

    async def _send(self, channel: AtChannel, command: str, *, voice: bool) -> None:
        if not voice:
            await channel.command(command)
            return
        self._stream_decoder = DleDecoder()
        self._rx_pcm.clear()
        if self._session is not None:
            self._session.watch.stream_started()
        self._stream_wanted = True
        try:
            await channel.command(command)
        except BaseException:
            self._stream_wanted = False
            raise
        self._streaming = True
        if self.profile.full_duplex and command.upper() != "AT+VRX":
            self._tx_queue.clear()
            self._pacer = asyncio.get_running_loop().create_task(
                self._pace(channel), name=f"fxo-pace-{self.name}")
        LOGGER.info("%s: voice stream up (%s)", self.name, command)

    async def _leave_stream(self, stop: bytes) -> None:
        session = self._session
        if not self._streaming or session is None:
            return
        await self._stop_pacer()
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        self._stream_ended = ended
        try:
            session.channel.write_data(stop)
            async with asyncio.timeout(STREAM_END_TIMEOUT_S):
                await ended
        except TimeoutError:
            LOGGER.warning("%s: no <DLE><ETX> within %g s of the stop code; taking the modem as "
                           "back in command mode", self.name, STREAM_END_TIMEOUT_S)
            self._stream_stopped(b"")
        except AtPortClosed:
            pass
        finally:
            self._stream_ended = None

    @staticmethod
    async def _settle(session: _Session) -> None:
        """Wait (briefly) for the result line of a stream that just ended."""
        waiting = session.back_to_commands
        if waiting is None:
            return
        try:
            async with asyncio.timeout(SHORT_TIMEOUT_S):
                await waiting
        except TimeoutError:
            LOGGER.info("no result line after the voice stream; sending on")
        finally:
            session.back_to_commands = None

    async def _key_out(self, step: _KeyOut) -> None:
        line, session = self._line, self._session
        try:
            if line is None or session is None or line.call.state is not FxoState.CONNECTED:
                raise ModemCommandError(f"{self.name}: no call is up")
            restart = self._streaming
            if restart:
                await self._leave_stream(self.profile.leave_voice)
            await self._settle(session)
            try:
                await session.channel.command(f"AT+VTS={step.key}")
            except AtError as error:
                raise ModemCommandError(f"{self.name}: AT+VTS={step.key}: {error}") from None
            finally:
                if restart and line.call.state is FxoState.CONNECTED:
                    with contextlib.suppress(AtError):
                        await self._send(session.channel, self.profile.voice_command,
                                         voice=True)
        except ModemCommandError as error:
            if not step.done.done():
                step.done.set_exception(error)
            return
        if not step.done.done():
            step.done.set_result(None)

    # ------------------------------------------------------------------ audio out

    async def _pace(self, channel: AtChannel) -> None:
        """One frame every 20 ms while the stream is up; silence when none is queued (a stream
        that starves makes the modem report underruns and click)."""
        loop = asyncio.get_running_loop()
        encoder = self.profile.encoder()
        silence = encoder.encode(v253.from_pcm16(bytes(FRAME_BYTES), self.sample_format))
        silence_samples = FRAME_BYTES // 2
        due = loop.time()
        while self._streaming and not channel.closed:
            if self._tx_queue:
                samples = v253.from_pcm16(self._tx_queue.popleft(), self.sample_format)
                channel.write_data(encoder.encode(samples))
                self.counters.frames_said += 1
                self.counters.samples_written += len(samples)
            else:
                channel.write_data(silence)
                self.counters.silence_frames += 1
                self.counters.samples_written += silence_samples
            due += v253.PCM_FRAME_S
            late = loop.time() - due
            if late > PACE_RESYNC_S:
                due = loop.time()
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def _stop_pacer(self) -> None:
        pacer, self._pacer = self._pacer, None
        if pacer is not None:
            pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pacer

    # ------------------------------------------------------------------ facts and status

    def _emit(self, fact: ModemFact) -> None:
        if self._on_fact is None:
            return
        try:
            self._on_fact(fact)
        except Exception:
            LOGGER.exception("%s: on_fact failed on %r", self.name, fact)

    def _set_status(self, **changes: object) -> None:
        status = dataclasses.replace(self._status, **changes)  # type: ignore[arg-type]
        if status == self._status:
            return
        self._status = status
        LOGGER.info("%s: %s (%s)", self.name, status.state, status.reason)
        self._emit(StatusChanged(line=self.name, status=status))

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
