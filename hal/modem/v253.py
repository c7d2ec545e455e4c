"""The pure half of an analog line (FXO) through an ITU-T V.253 voice modem.

Nothing here touches a port or reads the clock: the DLE-shielded voice stream codec (bytes in,
samples and shielded events out; samples in, shielded bytes out), the sample formats and their
conversion to the box's PCM end (8 kHz 16-bit signed little-endian, 320 bytes per 20 ms), caller ID
between rings, a profile per modem model, and `FxoCall`, the state machine of one call on the line,
which is handed `now` and hands back the AT commands to send and what happened.

What a voice modem cannot do, said plainly:

- **Echo.** No V.253 modem cancels echo: the USR 5637 and the Conexant CX930xx reference manuals
  both say their full-duplex mode (`+VTR`) works "without acoustic or line echo cancellation". The
  far end of a conversation hears itself back through the hybrid unless the box cancels echo.
- **Half duplex.** A modem without `+VTR` (the `generic` profile) streams one direction at a time:
  `+VRX` (the box hears the line) or `+VTX` (the line hears the box). It can answer, record a
  message, play a prompt and take DTMF while receiving, but it cannot carry a conversation: while
  it listens the caller hears nothing, while it plays the box hears nothing, and switching costs a
  stop sequence, a final result and a new `CONNECT`. `FxoCall` therefore starts half-duplex calls
  in receive (the member hears the caller) and says so in its log.
- **Answer supervision.** An analog line gives no signal when the called party answers (no
  polarity reversal on most lines, and `L` is not reliable where it exists). An outgoing call is
  treated as connected as soon as the number is dialled, and the member hears the progress tones
  (ringback, busy) through the audio.
- **Far-end hang-up.** Only some exchanges break the loop current (`l`) when the far end hangs up;
  most play a busy or congestion tone (`b`), and some go silent (`s`/`q`). All three end a call.
- **Caller ID** is the FSK kind (Bellcore/ETSI) the modem decodes after the first ring (`+VCID=1`).
  DTMF caller ID sent before the first ring and the Russian AON are not decoded by these modems.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from firmware.media import g711

LOGGER = logging.getLogger(__name__)

# V.253 §8 (after ITU-T T.50): the shielding characters of the voice data stream.
DLE = 0x10
ETX = 0x03
CAN = 0x18
SUB = 0x1A
DLE_BYTE = bytes([DLE])
END_OF_TRANSMIT = bytes([DLE, ETX])
ABORT = bytes([DLE, CAN, DLE, ETX])

# The box's PCM end: 8 kHz, 16-bit signed little-endian, one frame every 20 ms.
PCM_RATE_HZ = 8000
PCM_FRAME_BYTES = 320
PCM_FRAME_S = 0.02

# A ring cadence is at most 2 s on and 4 s off (North America) or 1 s on and 4-5 s off (Europe,
# Russia); no ring for this long means the caller gave up before anyone answered.
RINGS_GONE_AFTER_S = 8.0
# Off hook, how long to listen for dial tone (`d`) before dialling anyway: behind some PBXs and on
# lines whose tone the modem does not recognise it never comes.
DIAL_TONE_WAIT_S = 3.0


class DleKind(StrEnum):
    """What a shielded code means (V.253 §9.3.2 and Table 20; vgetty's IS_101.c for the IS-101
    codes that modems still send)."""

    END_OF_STREAM = "end_of_stream"  # <DLE><ETX>: the modem left the voice stream
    RING = "ring"
    RINGBACK = "ringback"
    BUSY = "busy"
    DIAL_TONE = "dial_tone"
    QUIET = "quiet"  # silence after voice (+VSD)
    SILENCE = "silence"  # no voice energy at all (+VSD)
    VOICE = "voice"
    HANDSET_ON_HOOK = "handset_on_hook"
    HANDSET_OFF_HOOK = "handset_off_hook"
    LOOP_BREAK = "loop_break"  # loop-current break: the far end hung up on lines that send it
    POLARITY_REVERSAL = "polarity_reversal"
    DTMF = "dtmf"
    DTMF_START = "dtmf_start"  # `/`: a tone starts (DTMF shielding)
    DTMF_END = "dtmf_end"  # `~`: the tone ended
    FAX_CALLING = "fax_calling"
    DATA_CALLING = "data_calling"
    DATA_OR_FAX_ANSWER = "data_or_fax_answer"
    SIT_TONE = "sit_tone"  # special information tone: number unobtainable and the like
    CALL_WAITING = "call_waiting"
    BONG = "bong"
    TDD = "tdd"
    BUFFER_OVERRUN = "buffer_overrun"
    BUFFER_UNDERRUN = "buffer_underrun"
    LOST_DATA = "lost_data"
    INVALID_FORMAT = "invalid_format"
    TIMING_MARK = "timing_mark"
    XON = "xon"
    XOFF = "xoff"
    UNKNOWN = "unknown"


DTMF_DIGITS = "0123456789*#ABCD"

DLE_CODES: dict[str, DleKind] = {
    chr(ETX): DleKind.END_OF_STREAM,
    "R": DleKind.RING,
    "r": DleKind.RINGBACK,
    "b": DleKind.BUSY,
    "K": DleKind.BUSY,
    "d": DleKind.DIAL_TONE,
    "i": DleKind.DIAL_TONE,
    "q": DleKind.QUIET,
    "s": DleKind.SILENCE,
    "v": DleKind.VOICE,
    "V": DleKind.VOICE,
    "h": DleKind.HANDSET_ON_HOOK,
    "p": DleKind.HANDSET_ON_HOOK,
    "H": DleKind.HANDSET_OFF_HOOK,
    "P": DleKind.HANDSET_OFF_HOOK,
    "l": DleKind.LOOP_BREAK,
    "L": DleKind.POLARITY_REVERSAL,
    "/": DleKind.DTMF_START,
    "~": DleKind.DTMF_END,
    "c": DleKind.FAX_CALLING,
    "m": DleKind.FAX_CALLING,
    "e": DleKind.DATA_CALLING,
    "f": DleKind.DATA_CALLING,
    "a": DleKind.DATA_OR_FAX_ANSWER,
    "J": DleKind.SIT_TONE,
    "w": DleKind.CALL_WAITING,
    "$": DleKind.BONG,
    "t": DleKind.TDD,
    "o": DleKind.BUFFER_OVERRUN,
    "u": DleKind.BUFFER_UNDERRUN,
    "Y": DleKind.LOST_DATA,
    "E": DleKind.INVALID_FORMAT,
    "T": DleKind.TIMING_MARK,
    "Q": DleKind.XON,
    "S": DleKind.XOFF,
    **{digit: DleKind.DTMF for digit in DTMF_DIGITS},
}


class V253Error(Exception):
    """Root of this module's errors."""


class IllegalTransition(V253Error):
    """`FxoCall` was asked for a move its table does not have (our own misuse: a bug)."""


# --- the DLE stream -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class VoiceSamples:
    """Sample bytes from the modem, shielding removed, in the modem's sample format."""

    data: bytes


@dataclass(frozen=True, kw_only=True)
class DleEvent:
    """A shielded code from the modem: `code` is the character after <DLE>."""

    code: str
    kind: DleKind

    @property
    def digit(self) -> str | None:
        return self.code if self.kind is DleKind.DTMF else None


StreamEvent = VoiceSamples | DleEvent


class DleDecoder:
    """Bytes from a modem in voice receive (`+VRX`) or duplex (`+VTR`) mode → events.

    h11's shape: `receive_data(bytes)`, then `next_event()` until it returns None. <DLE><DLE> is
    one sample byte 0x10, <DLE><SUB> two of them (V.253 §9.3.2); every other code becomes a
    `DleEvent`, unknown ones too (kind UNKNOWN, logged), so a modem's vendor codes never stop the
    stream. A <DLE> at the end of one read is held until the next. After <DLE><ETX> the modem is
    back in command mode: what follows is its final result, kept in `trailing_data` for the AT
    codec, not taken for samples.

    Modems shield events in voice command mode too (<DLE>d after `+VLS=1`, vgetty reads them
    there): a decoder fed command-mode bytes hands the AT text back as `VoiceSamples` and the
    events apart, so a driver can pass the text on to the AT codec.
    """

    def __init__(self) -> None:
        self._events: deque[StreamEvent] = deque()
        self._samples = bytearray()
        self._escaped = False
        self._ended = False
        self._trailing = bytearray()

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def trailing_data(self) -> bytes:
        """What arrived after <DLE><ETX> (the modem's result lines)."""
        return bytes(self._trailing)

    def receive_data(self, data: bytes) -> None:
        index = 0
        size = len(data)
        while index < size:
            if self._ended:
                self._trailing += data[index:]
                return
            if self._escaped:
                self._escaped = False
                self._shielded(data[index])
                index += 1
                continue
            found = data.find(DLE_BYTE, index)
            if found < 0:
                self._samples += data[index:]
                return
            self._samples += data[index:found]
            self._escaped = True
            index = found + 1

    def next_event(self) -> StreamEvent | None:
        self._flush_samples()
        return self._events.popleft() if self._events else None

    def _shielded(self, byte: int) -> None:
        if byte == DLE:
            self._samples.append(DLE)
            return
        if byte == SUB:
            self._samples += bytes([DLE, DLE])
            return
        self._flush_samples()
        code = chr(byte)
        kind = DLE_CODES.get(code, DleKind.UNKNOWN)
        if kind is DleKind.UNKNOWN:
            LOGGER.info("unknown shielded code <DLE> 0x%02x from the modem, ignored", byte)
        self._events.append(DleEvent(code=code, kind=kind))
        if kind is DleKind.END_OF_STREAM:
            self._ended = True

    def _flush_samples(self) -> None:
        if self._samples:
            self._events.append(VoiceSamples(data=bytes(self._samples)))
            self._samples.clear()


class DleEncoder:
    """What the box writes to a modem in voice transmit (`+VTX`) or duplex (`+VTR`) mode.

    Sample bytes equal to <DLE> are doubled (V.253 §9.3.1); the control sequences end or abort a
    stream. `stop_receive_code` comes from the profile: the USR 5637 stops `+VRX` on <DLE>!, the
    Conexant and Zoom modems on <DLE>^.
    """

    def __init__(self, *, stop_receive_code: bytes = b"^") -> None:
        self.stop_receive_code = stop_receive_code

    def encode(self, samples: bytes) -> bytes:
        return samples.replace(DLE_BYTE, DLE_BYTE + DLE_BYTE)

    def end_of_transmit(self) -> bytes:
        return END_OF_TRANSMIT

    def stop_receive(self) -> bytes:
        return DLE_BYTE + self.stop_receive_code

    def stop_duplex(self) -> bytes:
        # +VTR is left the way the modem leaves +VRX: the profile's stop code.
        return DLE_BYTE + self.stop_receive_code

    def abort(self) -> bytes:
        return ABORT


# --- sample formats -------------------------------------------------------------------------


class SampleFormat(StrEnum):
    LINEAR_U8 = "linear_u8"  # 8-bit linear, offset binary (USR `+VSM=128`, V.253 `+VSM=1`)
    LINEAR_S8 = "linear_s8"  # 8-bit linear, two's complement (V.253 `+VSM=0`)
    LINEAR_S16 = "linear_s16"  # 16-bit linear little-endian
    ULAW = "ulaw"  # G.711 µ-law
    ALAW = "alaw"  # G.711 A-law
    OTHER = "other"  # ADPCM and vendor formats: not used


# Flipping the top bit turns two's complement into offset binary and back.
_FLIP_SIGN = bytes(code ^ 0x80 for code in range(256))


def to_pcm16(data: bytes, sample_format: SampleFormat) -> bytes:
    """Modem samples → 16-bit signed little-endian PCM (the box's PCM end)."""
    if sample_format is SampleFormat.ULAW:
        return g711.ulaw_decode(data)
    if sample_format is SampleFormat.ALAW:
        return g711.alaw_decode(data)
    if sample_format is SampleFormat.LINEAR_S16:
        return data[: len(data) & ~1]
    high = data.translate(_FLIP_SIGN) if sample_format is SampleFormat.LINEAR_U8 else data
    if sample_format not in (SampleFormat.LINEAR_U8, SampleFormat.LINEAR_S8):
        raise V253Error(f"no conversion from {sample_format}")
    pcm = bytearray(2 * len(high))
    pcm[1::2] = high
    return bytes(pcm)


def from_pcm16(pcm: bytes, sample_format: SampleFormat) -> bytes:
    """16-bit signed little-endian PCM → modem samples (8-bit linear keeps the high byte)."""
    if sample_format is SampleFormat.ULAW:
        return g711.ulaw_encode(pcm)
    if sample_format is SampleFormat.ALAW:
        return g711.alaw_encode(pcm)
    pcm = pcm[: len(pcm) & ~1]
    if sample_format is SampleFormat.LINEAR_S16:
        return pcm
    if sample_format is SampleFormat.LINEAR_U8:
        return pcm[1::2].translate(_FLIP_SIGN)
    if sample_format is SampleFormat.LINEAR_S8:
        return pcm[1::2]
    raise V253Error(f"no conversion to {sample_format}")


@dataclass(frozen=True, kw_only=True)
class VsmOffer:
    """One line of the modem's `AT+VSM=?` answer (V.253 §10.1.3: `<cml>,"<name>",<bps>,<tm>,
    (<rates>),(<sensitivity>),(<period>)`)."""

    code: int
    name: str
    bits: int | None
    rates_hz: tuple[int, ...]
    sample_format: SampleFormat

    def command(self, rate_hz: int = PCM_RATE_HZ) -> str:
        return f"AT+VSM={self.code},{rate_hz}"


_VSM_LINE = re.compile(r'^\s*(\d+)\s*,\s*"([^"]*)"\s*(?:,\s*(\d+))?\s*(.*)$')


def _rates(rest: str) -> tuple[int, ...]:
    # The first parenthesised list after <bps>,<tm> holds the rates: "(8000)", "(7200,8000,11025)"
    # or a range "(4800-11025)"; some modems give the rates bare after the name.
    group = re.search(r"\(([^)]*)\)", rest)
    text = group.group(1) if group else rest
    rates: list[int] = []
    for part in text.split(","):
        part = part.strip()
        span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if span:
            low, high = int(span.group(1)), int(span.group(2))
            rates.extend(rate for rate in (low, PCM_RATE_HZ, high) if low <= rate <= high)
        elif part.isdigit() and int(part) >= 1000:
            rates.append(int(part))
    return tuple(sorted(set(rates)))


def _format_of(code: int, name: str, bits: int | None) -> SampleFormat:
    upper = name.upper().replace("-", "").replace(" ", "")
    if "ULAW" in upper or "MULAW" in upper or "G711U" in upper:
        return SampleFormat.ULAW
    if "ALAW" in upper or "G711A" in upper:
        return SampleFormat.ALAW
    if "ADPCM" in upper:
        return SampleFormat.OTHER
    if "LINEAR" in upper or "PCM" in upper:
        if bits == 16 or "16BIT" in upper:
            return SampleFormat.LINEAR_S16
        if upper.startswith("SIGNED") or (code == 0 and "UNSIGNED" not in upper):
            return SampleFormat.LINEAR_S8
        return SampleFormat.LINEAR_U8
    return SampleFormat.OTHER


def parse_vsm_offers(lines: Iterable[str]) -> tuple[VsmOffer, ...]:
    """The information lines of `AT+VSM=?`; lines that do not parse are logged and skipped."""
    offers = []
    for line in lines:
        text = line.strip()
        if text.upper().startswith("+VSM:"):
            text = text[5:]
        match = _VSM_LINE.match(text)
        if not match:
            if text:
                LOGGER.info("unreadable +VSM=? line from the modem ignored: %r", line)
            continue
        code, name = int(match.group(1)), match.group(2).strip()
        bits = int(match.group(3)) if match.group(3) else None
        offers.append(
            VsmOffer(
                code=code,
                name=name,
                bits=bits,
                rates_hz=_rates(match.group(4)),
                sample_format=_format_of(code, name, bits),
            )
        )
    return tuple(offers)


# µ-law and A-law carry 13-14 bits of range in a byte, twice what 8-bit linear does; 16-bit linear
# is exact but needs 128 kbit/s, more than a 115200 baud port carries.
_FORMAT_PREFERENCE = (
    SampleFormat.ULAW,
    SampleFormat.ALAW,
    SampleFormat.LINEAR_U8,
    SampleFormat.LINEAR_S8,
)


def choose_vsm(offers: Iterable[VsmOffer]) -> VsmOffer | None:
    """The best 8 kHz format the modem offers, or None when it offers none the box can convert."""
    usable = [offer for offer in offers if PCM_RATE_HZ in offer.rates_hz or not offer.rates_hz]
    for wanted in _FORMAT_PREFERENCE:
        for offer in usable:
            if offer.sample_format is wanted:
                return offer
    return None


# --- caller ID ------------------------------------------------------------------------------


class NumberAbsence(StrEnum):
    """Why caller ID has no number (Bellcore GR-30: `P` private, `O` out of area/unavailable)."""

    PRIVATE = "private"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, kw_only=True)
class CallerIdTime:
    """DATE=MMDD and TIME=HHMM as sent: the exchange's local time, no year."""

    month: int
    day: int
    hour: int
    minute: int


@dataclass(frozen=True, kw_only=True)
class CallerId:
    number: str | None
    number_absence: NumberAbsence | None
    name: str | None
    sent_at: CallerIdTime | None


_CID_LINE = re.compile(r"^\s*([A-Z_]+)\s*=\s*(.*?)\s*$", re.IGNORECASE)
CALLER_ID_FIELDS = frozenset({"DATE", "TIME", "NMBR", "NAME", "DDN_NMBR", "MESG"})
_ABSENCE = {"P": NumberAbsence.PRIVATE, "O": NumberAbsence.UNAVAILABLE}
_NUMBER = re.compile(r"^\+?[0-9*#]+$")


def caller_id_field(line: str) -> tuple[str, str] | None:
    """(`NMBR`, `5551234`) for a caller ID line in any spacing, None for any other line."""
    match = _CID_LINE.match(line)
    if not match:
        return None
    key = match.group(1).upper()
    if key not in CALLER_ID_FIELDS:
        return None
    return key, match.group(2)


class CallerIdCollector:
    """Gathers the caller ID lines a modem sends between the first and second ring."""

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}

    @property
    def empty(self) -> bool:
        return not self._fields

    def add(self, line: str) -> bool:
        """Take a line; False when it is not a caller ID line."""
        found = caller_id_field(line)
        if found is None:
            return False
        key, value = found
        self._fields[key] = value
        return True

    def result(self) -> CallerId | None:
        if not self._fields:
            return None
        fields = self._fields
        number, absence = _number(fields.get("NMBR", fields.get("DDN_NMBR")))
        name = fields.get("NAME") or None
        if name is not None and name.upper() in _ABSENCE:
            name = None
        return CallerId(
            number=number,
            number_absence=absence,
            name=name,
            sent_at=_sent_at(fields.get("DATE"), fields.get("TIME")),
        )


def _number(value: str | None) -> tuple[str | None, NumberAbsence | None]:
    if value is None:
        return None, NumberAbsence.UNAVAILABLE
    compact = value.replace(" ", "").replace("-", "")
    if compact.upper() in _ABSENCE:
        return None, _ABSENCE[compact.upper()]
    if not _NUMBER.match(compact):
        LOGGER.info("caller ID number %r is not a number; taken as unavailable", value)
        return None, NumberAbsence.UNAVAILABLE
    return compact, None


def _sent_at(date: str | None, time: str | None) -> CallerIdTime | None:
    if not date or not time or not (date.isdigit() and time.isdigit()):
        return None
    if len(date) != 4 or len(time) != 4:
        return None
    month, day, hour, minute = int(date[:2]), int(date[2:]), int(time[:2]), int(time[2:])
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60):
        LOGGER.info("caller ID date %s time %s out of range, ignored", date, time)
        return None
    return CallerIdTime(month=month, day=day, hour=hour, minute=minute)


def parse_caller_id(lines: Iterable[str]) -> CallerId | None:
    """Caller ID from the lines between rings (`RING` and other lines are skipped)."""
    collector = CallerIdCollector()
    for line in lines:
        collector.add(line)
    return collector.result()


# --- profiles -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class V253Profile:
    """What differs between voice modem models."""

    name: str
    init: tuple[str, ...]
    sample_format: SampleFormat
    full_duplex: bool  # has +VTR
    stop_receive_code: bytes  # after <DLE>: ends +VRX (and +VTR)
    dial_with_vts: bool = False  # dial off hook with +VTS tones instead of ATD<n>;

    def encoder(self) -> DleEncoder:
        return DleEncoder(stop_receive_code=self.stop_receive_code)

    @property
    def voice_command(self) -> str:
        return "AT+VTR" if self.full_duplex else "AT+VRX"

    @property
    def leave_voice(self) -> bytes:
        return DLE_BYTE + self.stop_receive_code


# Common to every model: voice mode, on hook, caller ID formatted, inactivity timer (the modem
# goes back on hook by itself if the box stops talking to it for a minute: a dead daemon must not
# hold the line), silence reported after 5 s (+VSD units are 0.1 s), gains at the maker's
# default, hardware flow control (V.253 §10.1, §10.2; vgetty V253modem.c).
_COMMON_TAIL = (
    "AT+VLS=0",
    "AT+VCID=1",
    "AT+VIT=60",
    "AT+VSD=128,50",
    "AT+VGT=128",
    "AT+VGR=128",
    "AT+IFC=2,2",
)

PROFILES: dict[str, V253Profile] = {
    "usr5637": V253Profile(
        name="usr5637",
        init=("ATE0", "AT+FCLASS=8", "AT+VSM=128,8000", *_COMMON_TAIL),
        sample_format=SampleFormat.LINEAR_U8,
        full_duplex=True,
        stop_receive_code=b"!",
    ),
    "cx930xx": V253Profile(
        name="cx930xx",
        init=("ATE0", "AT+FCLASS=8", "AT+VSM=1,8000,0,0", *_COMMON_TAIL),
        sample_format=SampleFormat.LINEAR_U8,
        full_duplex=True,
        stop_receive_code=b"^",
    ),
    "generic": V253Profile(
        name="generic",
        init=("ATE0", "AT+FCLASS=8", "AT+VSM=1,8000", *_COMMON_TAIL),
        sample_format=SampleFormat.LINEAR_U8,
        full_duplex=False,
        stop_receive_code=b"^",
        dial_with_vts=True,
    ),
}


# --- one call on the line -------------------------------------------------------------------


class FxoState(StrEnum):
    IDLE = "idle"
    RINGING = "ringing"
    ANSWERING = "answering"  # off hook, voice stream asked for, CONNECT awaited
    SEIZING = "seizing"  # off hook for an outgoing call, listening for dial tone
    DIALING = "dialing"  # number sent, voice stream asked for, CONNECT awaited
    CONNECTED = "connected"
    ENDED = "ended"


class FxoInput(StrEnum):
    RING = "ring"
    RINGS_GONE = "rings_gone"
    ANSWER = "answer"
    DIAL = "dial"
    DIAL_TONE = "dial_tone"
    DIAL_TONE_WAITED = "dial_tone_waited"
    VOICE_STARTED = "voice_started"
    FAR_END_GONE = "far_end_gone"
    HANG_UP = "hang_up"
    MODEM_FAILED = "modem_failed"


_S = FxoState
_I = FxoInput
TRANSITIONS: dict[tuple[FxoState, FxoInput], FxoState] = {
    (_S.IDLE, _I.RING): _S.RINGING,
    (_S.IDLE, _I.DIAL): _S.SEIZING,
    (_S.RINGING, _I.RING): _S.RINGING,
    (_S.RINGING, _I.RINGS_GONE): _S.ENDED,
    (_S.RINGING, _I.ANSWER): _S.ANSWERING,
    (_S.RINGING, _I.HANG_UP): _S.ENDED,
    (_S.ANSWERING, _I.VOICE_STARTED): _S.CONNECTED,
    (_S.ANSWERING, _I.FAR_END_GONE): _S.ENDED,
    (_S.ANSWERING, _I.HANG_UP): _S.ENDED,
    (_S.ANSWERING, _I.MODEM_FAILED): _S.ENDED,
    (_S.SEIZING, _I.DIAL_TONE): _S.DIALING,
    (_S.SEIZING, _I.DIAL_TONE_WAITED): _S.DIALING,
    (_S.SEIZING, _I.HANG_UP): _S.ENDED,
    (_S.SEIZING, _I.MODEM_FAILED): _S.ENDED,
    (_S.DIALING, _I.VOICE_STARTED): _S.CONNECTED,
    (_S.DIALING, _I.FAR_END_GONE): _S.ENDED,
    (_S.DIALING, _I.HANG_UP): _S.ENDED,
    (_S.DIALING, _I.MODEM_FAILED): _S.ENDED,
    (_S.CONNECTED, _I.FAR_END_GONE): _S.ENDED,
    (_S.CONNECTED, _I.HANG_UP): _S.ENDED,
    (_S.CONNECTED, _I.MODEM_FAILED): _S.ENDED,
}


class EndReason(StrEnum):
    LOOP_BREAK = "loop_break"
    BUSY_TONE = "busy_tone"
    SILENCE = "silence"
    CALLER_GAVE_UP = "caller_gave_up"  # the rings stopped before anyone answered
    LOCAL_HANG_UP = "local_hang_up"
    MODEM_FAILED = "modem_failed"


_FAR_END_KINDS = {
    DleKind.LOOP_BREAK: EndReason.LOOP_BREAK,
    DleKind.BUSY: EndReason.BUSY_TONE,
    DleKind.SILENCE: EndReason.SILENCE,
    DleKind.QUIET: EndReason.SILENCE,
}


@dataclass(frozen=True, kw_only=True)
class SendCommand:
    """Send this AT command once the previous one completed."""

    line: str


@dataclass(frozen=True, kw_only=True)
class LeaveVoice:
    """Write these bytes to end the voice stream, then await the modem's final result."""

    data: bytes


@dataclass(frozen=True, kw_only=True)
class RingDetected:
    count: int
    caller_id: CallerId | None


@dataclass(frozen=True, kw_only=True)
class CallerIdReceived:
    caller_id: CallerId


@dataclass(frozen=True, kw_only=True)
class Answered:
    """The voice stream is up. For an outgoing call this is not the far end answering (an analog
    line does not say so): it is the number dialled, progress tones to be heard."""

    outgoing: bool


@dataclass(frozen=True, kw_only=True)
class DtmfReceived:
    digit: str


@dataclass(frozen=True, kw_only=True)
class FarEndHungUp:
    reason: EndReason


@dataclass(frozen=True, kw_only=True)
class CallEnded:
    """The line is (being put) back on hook; the call is over."""

    reason: EndReason


FxoEvent = (
    SendCommand
    | LeaveVoice
    | RingDetected
    | CallerIdReceived
    | Answered
    | DtmfReceived
    | FarEndHungUp
    | CallEnded
)


@dataclass
class FxoCall:
    """One call on an FXO line, from the first ring or the dial to back on hook.

    Inputs: the modem's lines outside the voice stream (`line_received`: RING, caller ID, BUSY,
    NO DIALTONE, NO CARRIER), its shielded events inside it (`dle_received`), `voice_started`
    when a voice command answered CONNECT, `command_failed`, and the box's own `answer`, `dial`
    and `hang_up`; `handle_timer(now)` at `get_timer()`. Outputs from `next_event()`: commands
    and stream endings to perform in order, and the facts above. A local request the state table
    does not allow raises `IllegalTransition`; a modem's event that does not fit is logged and
    ignored.
    """

    profile: V253Profile
    state: FxoState = FxoState.IDLE
    rings: int = 0
    caller_id: CallerId | None = None
    end_reason: EndReason | None = None
    number: str | None = None
    _collector: CallerIdCollector = field(default_factory=CallerIdCollector, init=False)
    _caller_id_sent: bool = field(default=False, init=False)
    _timer: float | None = field(default=None, init=False)
    _in_dtmf_shield: bool = field(default=False, init=False)
    _shield_digit_seen: bool = field(default=False, init=False)
    _events: deque[FxoEvent] = field(default_factory=deque, init=False)

    # -- outputs

    def next_event(self) -> FxoEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        return self._timer

    # -- the modem

    def line_received(self, line: str, now: float) -> None:
        text = line.strip()
        upper = text.upper()
        if upper == "RING" or upper.startswith("RING "):
            self._ring(now)
        elif self._collector.add(text):
            if self.state is not FxoState.RINGING:
                LOGGER.info("caller ID line outside ringing ignored: %r", text)
        elif upper == "BUSY":
            self._far_end_gone(EndReason.BUSY_TONE)
        elif upper in ("NO CARRIER", "NO ANSWER") and self.state in (
            FxoState.DIALING,
            FxoState.CONNECTED,
        ):
            self._far_end_gone(EndReason.LOOP_BREAK)
        elif upper in ("NO DIALTONE", "NO DIAL TONE"):
            self._fail("the modem hears no dial tone")
        elif text:
            LOGGER.debug("modem line %r ignored in %s", text, self.state)

    def dle_received(self, event: DleEvent, now: float) -> None:
        kind = event.kind
        if kind is DleKind.RING:
            self._ring(now)
        elif kind is DleKind.DIAL_TONE and self.state is FxoState.SEIZING:
            self._move(FxoInput.DIAL_TONE)
            self._dial_now()
        elif kind in _FAR_END_KINDS:
            self._far_end_gone(_FAR_END_KINDS[kind])
        elif kind is DleKind.DTMF_START:
            self._in_dtmf_shield, self._shield_digit_seen = True, False
        elif kind is DleKind.DTMF_END:
            self._in_dtmf_shield = False
        elif kind is DleKind.DTMF:
            self._dtmf(event.code)
        else:
            LOGGER.debug("shielded %s ignored in %s", kind, self.state)

    def voice_started(self, now: float) -> None:
        """The voice command (+VTR/+VRX) answered CONNECT."""
        if self.state is FxoState.ENDED:
            # Hung up while the voice command was on its way: leave the stream it opened.
            LOGGER.info("voice stream started after the call ended; leaving it")
            self._events.append(LeaveVoice(data=self.profile.leave_voice))
            self._send("AT+VLS=0")
            return
        outgoing = self.state is FxoState.DIALING
        self._move(FxoInput.VOICE_STARTED)
        self._timer = None
        if not self.profile.full_duplex:
            LOGGER.info("half-duplex modem %s: receiving only", self.profile.name)
        self._events.append(Answered(outgoing=outgoing))

    def command_failed(self, command: str, now: float) -> None:
        if self.state in (FxoState.IDLE, FxoState.ENDED):
            LOGGER.info("%s failed with no call up", command)
            return
        self._fail(f"{command} failed")

    # -- the box

    def answer(self, now: float) -> None:
        self._move(FxoInput.ANSWER)
        self._timer = None
        self._finish_caller_id()
        self._send("AT+VLS=1", self.profile.voice_command)

    def dial(self, number: str, now: float) -> None:
        if not number or not _NUMBER.match(number.replace(",", "")):
            raise V253Error(f"cannot dial {number!r}")
        self._move(FxoInput.DIAL)
        self.number = number
        self._timer = now + DIAL_TONE_WAIT_S
        self._send("AT+VLS=1")

    def hang_up(self, now: float) -> None:
        streaming = self.state is FxoState.CONNECTED
        self._move(FxoInput.HANG_UP)
        self._end(EndReason.LOCAL_HANG_UP, streaming=streaming)

    def handle_timer(self, now: float) -> None:
        if self._timer is None or now < self._timer:
            return
        self._timer = None
        if self.state is FxoState.RINGING:
            self._move(FxoInput.RINGS_GONE)
            self._finish_caller_id()
            self._events.append(FarEndHungUp(reason=EndReason.CALLER_GAVE_UP))
            self.end_reason = EndReason.CALLER_GAVE_UP
            self._events.append(CallEnded(reason=EndReason.CALLER_GAVE_UP))
        elif self.state is FxoState.SEIZING:
            LOGGER.info("no dial tone after %.0f s; dialling anyway", DIAL_TONE_WAIT_S)
            self._move(FxoInput.DIAL_TONE_WAITED)
            self._dial_now()

    # -- inside

    def _move(self, what: FxoInput) -> None:
        target = TRANSITIONS.get((self.state, what))
        if target is None:
            raise IllegalTransition(f"{what} in {self.state}")
        self.state = target

    def _allowed(self, what: FxoInput) -> bool:
        if (self.state, what) in TRANSITIONS:
            return True
        LOGGER.debug("%s ignored in %s", what, self.state)
        return False

    def _send(self, *lines: str) -> None:
        self._events.extend(SendCommand(line=line) for line in lines)

    def _ring(self, now: float) -> None:
        if not self._allowed(FxoInput.RING):
            return
        self._move(FxoInput.RING)
        self.rings += 1
        if self.rings > 1:
            self._finish_caller_id()
        self._timer = now + RINGS_GONE_AFTER_S
        self._events.append(RingDetected(count=self.rings, caller_id=self.caller_id))

    def _finish_caller_id(self) -> None:
        if self._caller_id_sent or self._collector.empty:
            return
        self._caller_id_sent = True
        self.caller_id = self._collector.result()
        if self.caller_id is not None:
            self._events.append(CallerIdReceived(caller_id=self.caller_id))

    def _dial_now(self) -> None:
        self._timer = None
        assert self.number is not None
        if self.profile.dial_with_vts:
            digits = ",".join(self.number)
            self._send(f"AT+VTS={digits}", self.profile.voice_command)
        else:
            self._send(f"ATD{self.number};", self.profile.voice_command)

    def _dtmf(self, digit: str) -> None:
        if self.state is not FxoState.CONNECTED:
            LOGGER.debug("DTMF %s ignored in %s", digit, self.state)
            return
        if self._in_dtmf_shield:
            # Inside /…~ a modem may repeat the digit for the tone's length: count it once.
            if self._shield_digit_seen:
                return
            self._shield_digit_seen = True
        self._events.append(DtmfReceived(digit=digit))

    def _far_end_gone(self, reason: EndReason) -> None:
        if not self._allowed(FxoInput.FAR_END_GONE):
            return
        streaming = self.state is FxoState.CONNECTED
        self._move(FxoInput.FAR_END_GONE)
        self._events.append(FarEndHungUp(reason=reason))
        self._end(reason, streaming=streaming)

    def _fail(self, why: str) -> None:
        if not self._allowed(FxoInput.MODEM_FAILED):
            return
        LOGGER.warning("FXO call failed: %s", why)
        streaming = self.state is FxoState.CONNECTED
        self._move(FxoInput.MODEM_FAILED)
        self._end(EndReason.MODEM_FAILED, streaming=streaming)

    def _end(self, reason: EndReason, *, streaming: bool) -> None:
        self._timer = None
        self.end_reason = reason
        if streaming:
            self._events.append(LeaveVoice(data=self.profile.leave_voice))
        # Back on hook whatever ended the call: a line left off hook blocks the next call.
        self._send("AT+VLS=0")
        self._events.append(CallEnded(reason=reason))
