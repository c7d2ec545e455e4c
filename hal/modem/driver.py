"""What every modem line driver (GSM: hal/modem/gsm.py, FXO: hal/modem/fxo.py) offers the
daemon, and the facts it reports: one vocabulary, so the core's modem line (a `Line` of kind
"gsm" or "fxo") is one class whatever the modem.

The driver owns the serial ports (through hal/serial's supervisor: a vanished port is reopened
and the modem found again by IMEI), runs the modem's init, and reports facts through the
`on_fact` callback given to it, on the event loop: its state, a call coming in (caller ID), the
far end ringing, answering or hanging up, a key pressed, an SMS. Audio flows as 20 ms frames of
8 kHz 16-bit signed little-endian PCM (320 bytes): `on_audio(frame)` for each frame heard from
the line, `write_audio(frame)` for each frame to say (the driver paces and buffers what the
modem needs). Commands are coroutines that raise `ModemCommandError` with a clear message.

A driver carries one call at a time (a GSM module's second call waits, an analog line has one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

FRAME_BYTES = 320  # 20 ms of 8 kHz 16-bit mono PCM


class ModemCommandError(Exception):
    """A command the modem refused or did not answer (the message says which and why)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModemStatus:
    """What `linebox status` shows of a modem line (issue 12: `lines[]`)."""

    state: str  # "up" | "degraded" | "down"
    reason: str  # why, in words: "registered (home)", "no SIM", "port vanished", ...
    registration: str = "none"  # home | roaming | searching | denied | none
    signal_dbm: int | None = None
    operator: str = ""
    imei: str = ""
    sim: str = "absent"  # ready | pin | absent (an FXO line: "ready" once the modem answers)
    port: str = ""  # the serial port in use
    manufacturer: str = ""
    model: str = ""
    imsi: str = ""  # GSM: the SIM's subscriber identity (+CIMI), "" when unknown
    iccid: str = ""  # GSM: the SIM card's serial number, "" when unknown


# ---------------------------------------------------------------------------- facts
@dataclass(frozen=True, slots=True, kw_only=True)
class StatusChanged:
    line: str
    status: ModemStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingCall:
    """The line rings (GSM: RING with +CLIP; FXO: a ring with caller ID between rings).
    `caller` is the number in international form where known (`+7...`), None when withheld
    (`reason`: "private", "unavailable")."""

    line: str
    caller: str | None
    reason: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRinging:
    """An outgoing call rings at the far end (GSM ^CONF / +CLCC alerting)."""

    line: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteAnswered:
    """An outgoing call was answered (GSM ^CONN / +CLCC active; FXO: at once after dialling,
    an analog line gives no answer signal)."""

    line: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded:
    """The call on the line ended: the far end hung up, an outgoing call failed, or an incoming
    one stopped ringing. `status` maps the cause onto SIP's words for the records (486 busy,
    480 unavailable, 408 no answer, 487 the caller gave up, 200 a normal end)."""

    line: str
    cause: str
    status: int = 200
    by_far_end: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPressed:
    line: str
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsReceived:
    line: str
    sender: str
    text: str
    received_at: float  # wall clock (the network's timestamp when the PDU has one)
    complete: bool = True  # False: parts of a long message never all came


ModemFact = (StatusChanged | IncomingCall | RemoteRinging | RemoteAnswered | CallEnded
             | KeyPressed | SmsReceived)


class ModemDriver(Protocol):
    """One modem line, as the daemon drives it."""

    name: str
    kind: str  # "gsm" | "fxo"

    @property
    def status(self) -> ModemStatus: ...

    async def start(self, on_fact: Callable[[ModemFact], None],
                    on_audio: Callable[[bytes], None]) -> None:
        """Open the port(s) and init the modem; returns at once, the driver keeps trying in
        the background (the line stays "down" with its reason until the modem answers)."""
        ...

    async def stop(self) -> None: ...

    async def answer(self) -> None:
        """Take the ringing call (GSM: ATA, then the profile's audio switch)."""
        ...

    async def dial(self, number: str) -> None:
        """Call `number`; returns once the modem took the command (progress comes as facts)."""
        ...

    async def hang_up(self) -> None: ...

    async def send_dtmf(self, key: str) -> None: ...

    def write_audio(self, frame: bytes) -> None:
        """One 20 ms frame to say on the line (dropped when no call is up)."""
        ...
