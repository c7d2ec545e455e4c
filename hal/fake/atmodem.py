"""A fake GSM modem on pseudo-terminals: the behaviour every 3GPP TS 27.007/27.005 modem shares.

The fake reads the command line from the AT pty the way a modem does (echo while E1, a line ends
at <CR> per ITU-T V.250 §5.2.1, extended commands chained with ';'), answers with information
lines and a final result, and plays the network's side of calls and SMS through a control API
tests call from their own thread. Vendor profiles (hal/fake/gsm.py) add their commands and the
unsolicited results that make real modems differ. Audio travels on a second pty as 8 kHz 16-bit
PCM in 20 ms frames while a call is up and the profile's audio switch is on.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import pdu
from .device import DEFAULT_WAIT_S, FakeDevice
from .pty import FakePort

LOGGER = logging.getLogger(__name__)

RING_INTERVAL_S = 3.0       # between RINGs of an incoming call
RING_GIVE_UP_S = 60.0       # a caller nobody answers is cut off by the network
ALERT_DELAY_S = 0.2         # ATD → the far end's phone rings
USSD_REPLY_DELAY_S = 0.3    # the network's answer to AT+CUSD comes later, as a URC
RESET_DROP_S = 0.1          # AT+CFUN=1,1: the OK gets out, then the USB device vanishes
RESET_DELAY_S = 1.0         # ... and comes back this much later
BOOT_URC_DELAY_S = 0.05     # boot URCs after the port appears
LINE_MAX_BYTES = 1024       # a command line longer than this is garbage, dropped whole
OUTPUT_LIMIT_BYTES = 65536  # what waits for a client that does not read; beyond it is lost

AUDIO_RATE_HZ = 8000
AUDIO_FRAME_S = 0.020
AUDIO_FRAME_BYTES = 320     # 160 samples × 16 bit (chan_dongle FRAME_SIZE)
AUDIO_LATE_FRAMES = 5       # a loop this late resynchronises instead of bursting
AUDIO_KEEP_BYTES = AUDIO_RATE_HZ * 2 * 120  # what the client wrote, the last two minutes
TONE_HZ = 1000
TONE_AMPLITUDE = 8000


def _tone_frame() -> bytes:
    # 1 kHz at 8 kHz is 8 samples a period: every 20 ms frame is identical, easy to recognise
    samples = [round(TONE_AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * n / AUDIO_RATE_HZ))
               for n in range(AUDIO_FRAME_BYTES // 2)]
    return struct.pack(f"<{len(samples)}h", *samples)


TONE_FRAME = _tone_frame()

CTRL_Z = 0x1A
ESC = 0x1B

# TS 27.007 §9.2 / TS 27.005 §3.2.5 error texts (for +CMEE=2)
CME_TEXTS = {3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
             11: "SIM PIN required", 16: "incorrect password", 21: "invalid index",
             30: "no network service", 100: "unknown"}
CMS_TEXTS = {302: "operation not allowed", 303: "operation not supported",
             304: "invalid PDU mode parameter", 310: "SIM not inserted",
             311: "SIM PIN required", 321: "invalid memory index", 322: "memory full",
             331: "no network service"}

# TS 27.007 §7.18 +CLCC <stat>
CALL_ACTIVE = 0
CALL_DIALING = 2
CALL_ALERTING = 3
CALL_INCOMING = 4
CALL_STATE_NAMES = {CALL_ACTIVE: "active", CALL_DIALING: "dialing", CALL_ALERTING: "alerting",
                    CALL_INCOMING: "incoming"}
CAUSE_NORMAL = 16       # TS 24.008 Annex H: normal call clearing
CAUSE_BUSY = 17
CAUSE_NO_ANSWER = 19

# TS 27.007 §7.2 +CREG <stat>
REG_NONE = 0
REG_HOME = 1
REG_SEARCHING = 2
REG_DENIED = 3
REG_ROAMING = 5

DEFAULT_USSD = {"*100#": "Баланс: 123,45 р. Тариф «Умный»"}


class ModemUnplugged(RuntimeError):
    """A control call that needs the modem was made while it is unplugged."""


class _Failure(Exception):
    """A command failed: the final result line to send instead of OK."""

    def __init__(self, final: str) -> None:
        super().__init__(final)
        self.final = final


class _Prompt:
    """A handler's answer meaning: print the '> ' prompt and read a PDU (AT+CMGS)."""


PROMPT = _Prompt()
Info = list[str]
Handler = Callable[[str, list[str]], "Info | _Prompt"]


@dataclass
class Call:
    """The one call a modem carries (TS 27.007 §7.18 fields)."""

    index: int
    outgoing: bool
    number: str
    state: int
    private: bool = False
    began_at: float | None = None  # loop time when it became active

    @property
    def toa(self) -> int:
        return 145 if self.number.startswith("+") else 129

    def clcc(self) -> str:
        return (f'+CLCC: {self.index},{0 if self.outgoing else 1},{self.state},0,0,'
                f'"{self.number}",{self.toa}')


@dataclass(frozen=True, kw_only=True)
class CallEnded:
    """A record of a finished call, for tests: who ended it and why."""

    number: str
    outgoing: bool
    answered: bool
    cause: int
    by_remote: bool
    duration_s: float


@dataclass
class StoredSms:
    stat: int  # TS 27.005 §3.1 <stat>: 0 received unread, 1 received read
    pdu: str


def split_arguments(text: str) -> list[str]:
    """The comma-separated parameters of an extended command, quotes removed. (The box's own
    parser lives in hal/modem; the fake keeps its own so the two cannot share a mistake.)"""
    arguments: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            arguments.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if current or arguments:
        arguments.append("".join(current).strip())
    return arguments


class FakeAtModem(FakeDevice):
    """A GSM modem's common behaviour; profiles override the class attributes and hooks."""

    name = "gsm"
    MANUFACTURER = "generic"
    MODEL = "GSM modem"
    REVISION = "1.0"
    UNKNOWN_COMMAND = "ERROR"
    LTE = False                 # +CEREG exists and +CREG carries <AcT>
    ACCESS_TECHNOLOGY = 2       # TS 27.007 §7.3 <AcT>: 2 UTRAN, 7 E-UTRAN
    NOISE_EVERY = 0             # every Nth answer with information gets a URC in the middle

    def __init__(self, *, imei: str = "861234567890127", imsi: str = "250011234567890",
                 iccid: str = "89701012345678901234", number: str = "+79161234567",
                 operator: str = "MTS RUS", operator_numeric: str = "25001",
                 sim: str = "ready", pin: str = "1234", link: str | Path | None = None,
                 audio_link: str | Path | None = None,
                 ring_interval_s: float = RING_INTERVAL_S, reset_delay_s: float = RESET_DELAY_S,
                 sms_capacity: int = 20, ussd_replies: dict[str, str] | None = None,
                 noise_every: int | None = None) -> None:
        super().__init__()
        if sim not in ("ready", "pin", "absent"):
            raise ValueError(f"sim must be ready, pin or absent, not {sim!r}")
        self.imei, self.imsi, self.iccid, self.number = imei, imsi, iccid, number
        self.operator, self.operator_numeric = operator, operator_numeric
        self.sim, self.pin = sim, pin
        self._link = Path(link) if link is not None else None
        if audio_link is None and self._link is not None:
            audio_link = self._link.with_name(self._link.name + "-audio")
        self._audio_link = Path(audio_link) if audio_link is not None else None
        self.ring_interval_s, self.reset_delay_s = ring_interval_s, reset_delay_s
        self.sms_capacity = sms_capacity
        self.ussd_replies = dict(DEFAULT_USSD if ussd_replies is None else ussd_replies)
        self.noise_every = self.NOISE_EVERY if noise_every is None else noise_every
        self.rssi = 20
        self.registration = REG_HOME
        # what tests read
        self.commands: list[str] = []
        self.sms: dict[int, StoredSms] = {}
        self.sms_sent: list[str] = []
        self.dtmf_sent: list[str] = []
        self.calls_ended: list[CallEnded] = []
        self.resets = 0
        self.booted = False  # the boot URCs are out
        self.audio_frames_sent = 0
        self.audio_frames_dropped = 0
        self.audio_bytes_received = 0
        self.audio_received = bytearray()
        self.current_call: Call | None = None
        # inside the device
        self._at: FakePort | None = None
        self._audio: FakePort | None = None
        self._pending: dict[int, bytearray] = {}
        self._line = bytearray()
        self._pdu_length: int | None = None
        self._pdu = bytearray()
        self._silent = False
        self._ring_timer: asyncio.TimerHandle | None = None
        self._audio_timer: asyncio.TimerHandle | None = None
        self._audio_next = 0.0
        self._comeback: asyncio.TimerHandle | None = None
        self._answers = 0
        self._message_reference = 0
        self._handlers = self.handlers()
        self._defaults()

    # -- what tests see ---------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The AT port a client opens (the by-id style symlink when one was asked for)."""
        if self._at is not None:
            return self._at.path
        if self._link is not None:
            return str(self._link)
        raise ModemUnplugged(f"{self.name}: unplugged")

    @property
    def path(self) -> str:
        """The AT port again, under the name every fake device gives it."""
        return self.port

    @property
    def audio_port(self) -> str:
        if self._audio is not None:
            return self._audio.path
        if self._audio_link is not None:
            return str(self._audio_link)
        raise ModemUnplugged(f"{self.name}: unplugged")

    @property
    def plugged(self) -> bool:
        return self._at is not None

    @property
    def call_state(self) -> str:
        """idle, incoming, dialing, alerting or active."""
        return "idle" if self.current_call is None else CALL_STATE_NAMES[self.current_call.state]

    @property
    def audio_frames_received(self) -> int:
        return self.audio_bytes_received // AUDIO_FRAME_BYTES

    def wait_for_command(self, pattern: str, *, since: int = 0,
                         timeout_s: float = DEFAULT_WAIT_S) -> str:
        """The first command line from index since on that matches pattern (re.search)."""
        regex = re.compile(pattern)
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.commands[since:] if regex.search(line)][:1]
            return bool(found)

        self.wait_until(seen, timeout_s=timeout_s, what=f"a command matching {pattern!r}")
        return found[0]

    async def wait_for_command_async(self, pattern: str, *, since: int = 0,
                                     timeout_s: float = DEFAULT_WAIT_S) -> str:
        return await asyncio.to_thread(self.wait_for_command, pattern, since=since,
                                       timeout_s=timeout_s)

    def wait_for_call_state(self, state: str, *, timeout_s: float = DEFAULT_WAIT_S) -> None:
        self.wait_until(lambda: self.call_state == state, timeout_s=timeout_s,
                        what=f"call state {state}")

    def wait_for_audio_frames(self, count: int, *, timeout_s: float = DEFAULT_WAIT_S) -> None:
        """Until the client has written count frames in all on the audio port."""
        self.wait_until(lambda: self.audio_frames_received >= count, timeout_s=timeout_s,
                        what=f"{count} audio frames from the client")

    # -- the network's side (control API, any thread) ---------------------------------------

    def ring(self, caller_number: str, *, private: bool = False) -> None:
        """An incoming call: RING and +CLIP every ring_interval_s until answered or dropped."""
        self.call(self._ring, caller_number, private)

    def remote_answers(self) -> None:
        """The far end of our ATD picks up."""
        self.call(self._remote_answers)

    def remote_hangs_up(self, cause: int = CAUSE_NORMAL) -> None:
        """The far end hangs up (or gives up ringing) with a TS 24.008 cause."""
        self.call(self._remote_hangs_up, cause)

    def remote_sends_dtmf(self, digit: str) -> None:
        self.call(self._remote_dtmf, digit)

    def deliver_sms(self, pdu_hex: str) -> int | None:
        """An SMS arrives: stored with +CMTI (its index returned), or handed over directly with
        +CMT when +CNMI asks for it (None), or lost when the SIM is full (None)."""
        bytes.fromhex(pdu_hex)  # a test's typo should fail here, not inside the modem
        return self.call(self._deliver_sms, pdu_hex.upper())

    def deliver_text_sms(self, sender: str, text: str, *,
                         timestamp: datetime.datetime | None = None,
                         reference: int = 1) -> list[int | None]:
        """deliver_sms for each PDU of a text (concatenated parts for a long one)."""
        moment = timestamp or datetime.datetime.now(datetime.UTC).astimezone()
        pdus = pdu.sms_deliver_parts(sender, text, timestamp=moment.replace(microsecond=0),
                                     reference=reference)
        return [self.deliver_sms(one) for one in pdus]

    def set_signal(self, rssi: int) -> None:
        """TS 27.007 §8.5 <rssi> 0..31 or 99; the profile's signal URC follows."""
        self.call(self._set_signal, rssi)

    def set_registration(self, stat: int) -> None:
        """TS 27.007 §7.2 <stat>; +CREG/+CEREG URCs follow as the client enabled them."""
        self.call(self._set_registration, stat)

    def unplug(self) -> None:
        self.call(self._unplug)

    def replug(self) -> None:
        self.call(self._replug)

    def inject_garbage(self, data: bytes) -> None:
        """Raw bytes on the AT port, as a modem with a bad day sends them."""
        self.call(self._write_at, data)

    def go_silent(self) -> None:
        """The firmware hangs: commands are still read (and recorded) but never answered, no
        URC comes. A replug (or the reset it cannot hear) is the only way back."""
        self.call(setattr, self, "_silent", True)

    # -- plugging ---------------------------------------------------------------------------

    def _power_up(self) -> None:
        self._plug()

    def _power_down(self) -> None:
        if self._comeback is not None:
            self._comeback.cancel()
        self._unplug()

    def _plug(self) -> None:
        if self._comeback is not None:
            self._comeback.cancel()
            self._comeback = None
        if self._at is not None:
            return
        self._silent = False
        self.booted = False
        self._defaults()
        self._at = FakePort(self._link)
        self._audio = FakePort(self._audio_link)
        self.loop.add_reader(self._at.master, self._on_at_readable)
        self.loop.add_reader(self._audio.master, self._on_audio_readable)
        LOGGER.info("%s: plugged in on %s (audio %s)", self.name, self._at.slave_path,
                    self._audio.slave_path)
        self.later(BOOT_URC_DELAY_S, self._boot_urcs)
        self.notify()

    def boot_urcs(self) -> list[str]:
        """What the modem prints when it has started (profiles say)."""
        return []

    def _boot_urcs(self) -> None:
        for line in self.boot_urcs():
            self._urc(line)
        self.booted = True
        self.notify()

    def _unplug(self) -> None:
        if self.current_call is not None:
            # a modem that vanishes takes its call with it, without a word
            self._end_call(CAUSE_NORMAL, by_remote=False, quietly=True)
        self.cancel_timers()
        self._stop_audio()
        for port in (self._at, self._audio):
            if port is not None:
                self.loop.remove_reader(port.master)
                self.loop.remove_writer(port.master)
                self._pending.pop(port.master, None)
                port.close()
        self._at = self._audio = None
        self._line.clear()
        self._pdu_length = None
        LOGGER.info("%s: unplugged", self.name)
        self.notify()

    def _replug(self) -> None:
        self._unplug()
        self._plug()

    def _reset(self) -> None:
        self._unplug()
        # not a later(): unplugging cancels those, and this one is what brings the modem back
        self._comeback = self.loop.call_later(self.reset_delay_s, self._plug)

    def _defaults(self) -> None:
        """Power-on (and ATZ) settings."""
        self.echo = True
        self.cmee = 0
        self.creg_n = 0
        self.cereg_n = 0
        self.cmgf = 0
        self.cscs = "IRA"
        self.cnmi_mt = 0
        self.cops_format = 0
        self.radio_on = True

    # -- bytes in and out -------------------------------------------------------------------

    def _write_port(self, port: FakePort | None, data: bytes) -> None:
        if port is None or not data:
            return
        pending = self._pending.get(port.master)
        if pending:
            if len(pending) + len(data) > OUTPUT_LIMIT_BYTES:
                # a real modem's buffer overruns too when nobody reads the port
                LOGGER.debug("%s: client not reading, %d bytes lost", self.name, len(data))
                return
            pending += data
            return
        sent = port.write(data)
        if sent < len(data):
            self._pending[port.master] = bytearray(data[sent:])
            self.loop.add_writer(port.master, self._flush, port)

    def _flush(self, port: FakePort) -> None:
        pending = self._pending[port.master]
        del pending[:port.write(bytes(pending))]
        if not pending:
            del self._pending[port.master]
            self.loop.remove_writer(port.master)

    def _write_at(self, data: bytes) -> None:
        self._write_port(self._at, data)

    def _urc(self, line: str, *extra: str) -> None:
        """An unsolicited result (V.250 §5.7.1 framing: <CR><LF>text<CR><LF>)."""
        if self._silent or self._at is None:
            return
        text = f"\r\n{line}\r\n" + "".join(f"{more}\r\n" for more in extra)
        self._write_at(text.encode())

    def _noise(self) -> str:
        """What a Huawei stick throws into a response (profiles override)."""
        return ""

    def _respond(self, info: Info, final: str | None) -> None:
        text = "".join(f"\r\n{line}\r\n" for line in info)
        if info and self.noise_every:
            self._answers += 1
            if self._answers % self.noise_every == 0:
                text += self._noise()
        if final is not None:
            text += f"\r\n{final}\r\n"
        self._write_at(text.encode())

    def _on_at_readable(self) -> None:
        if self._at is None:
            return
        data = self._at.read()
        if not data:
            return
        LOGGER.debug("%s: <- %r", self.name, data)
        echo = bytearray()
        for byte in data:
            if self._pdu_length is not None:
                echo.append(byte)
                if byte in (CTRL_Z, ESC):
                    self._flush_echo(echo)
                    self._pdu_done(cancelled=byte == ESC)
                else:
                    self._pdu.append(byte)
                continue
            echo.append(byte)
            if byte == 0x0D:  # S3: the end of a command line
                self._flush_echo(echo)
                line = self._line.decode("ascii", "replace")
                self._line.clear()
                self._command_line(line)
            elif byte == 0x08 and self._line:  # S5: backspace edits the line
                self._line.pop()
            elif byte != 0x0A:
                self._line.append(byte)
                if len(self._line) > LINE_MAX_BYTES:
                    LOGGER.warning("%s: command line over %d bytes dropped", self.name,
                                   LINE_MAX_BYTES)
                    self._line.clear()
        self._flush_echo(echo)

    def _flush_echo(self, echo: bytearray) -> None:
        if echo and self.echo and not self._silent:
            self._write_at(bytes(echo))
        echo.clear()

    def _on_audio_readable(self) -> None:
        if self._audio is None:
            return
        data = self._audio.read()
        if data:
            self.audio_bytes_received += len(data)
            self.audio_received += data
            del self.audio_received[:-AUDIO_KEEP_BYTES]
            self.notify()

    # -- the command line -------------------------------------------------------------------

    def _command_line(self, line: str) -> None:
        start = line.upper().find("AT")
        if start < 0:
            if line.strip():
                LOGGER.debug("%s: not a command line: %r", self.name, line)
            return
        line = line[start:].strip()
        self.commands.append(line)
        self.notify()
        if self._silent:
            return
        info: Info = []
        final: str | None = "OK"
        try:
            for command in self._split(line[2:]):
                answer = self._execute(command)
                if isinstance(answer, _Prompt):
                    self._respond(info, None)
                    self._write_at(b"\r\n> ")
                    return
                info += answer
        except _Failure as failure:
            final = failure.final
        self._respond(info, final)

    def _split(self, body: str) -> list[str]:
        """V.250 §5.3: basic commands (one letter, & or S-register) and extended ones, the
        latter ended by ';'. D takes the rest of the line, its ';' meaning a voice call."""
        commands: list[str] = []
        index = 0
        while index < len(body):
            char = body[index].upper()
            if char in " ;":
                index += 1
            elif char in "+^":
                end, quoted = index, False
                while end < len(body) and (quoted or body[end] != ";"):
                    quoted ^= body[end] == '"'
                    end += 1
                commands.append(body[index:end])
                index = end + 1
            elif char == "D":
                commands.append(body[index:])
                break
            else:
                match = re.match(r"(&?[A-Z])(\d*)|(S\d+)(=\d*|\?)", body[index:], re.I)
                if match is None:
                    raise _Failure("ERROR")
                length = match.end()
                if match.group(1) and match.group(1).upper() == "S":
                    match = re.match(r"S\d+(=\d*|\?)?", body[index:], re.I)
                    length = match.end() if match else 1
                commands.append(body[index:index + length])
                index += length
        return commands

    def _execute(self, command: str) -> Info | _Prompt:
        if command[0] not in "+^":
            return self._basic(command[0].upper(), command[1:])
        match = re.match(r"([+^][A-Z0-9]+)(=\?|\?|=)?(.*)", command, re.I | re.S)
        if match is None:
            raise _Failure(self.UNKNOWN_COMMAND)
        name, operator, rest = match.group(1).upper(), match.group(2), match.group(3)
        handler = self._handlers.get(name)
        if handler is None:
            LOGGER.debug("%s: unknown command %s", self.name, command)
            raise _Failure(self.UNKNOWN_COMMAND)
        mode = {"=?": "test", "?": "read", "=": "set", None: "exec"}[operator]
        return handler(mode, split_arguments(rest) if mode == "set" else [])

    def _basic(self, letter: str, value: str) -> Info:
        if letter == "E":
            self.echo = value != "0"
        elif letter == "Z" or (letter == "&" and value.upper().startswith("F")):
            self._defaults()
        elif letter == "V" and value == "0":
            raise _Failure("ERROR")  # numeric result codes are not faked
        elif letter == "I":
            return self.identification()
        elif letter == "A":
            self._answer()
        elif letter == "H":
            self._hang_up(CAUSE_NORMAL)
        elif letter == "D":
            self._dial(value)
        elif letter not in "QVXLMS&":
            raise _Failure(self.UNKNOWN_COMMAND)
        return []

    # -- errors -----------------------------------------------------------------------------

    def cme(self, code: int) -> _Failure:
        """TS 27.007 §9.1: how +CMEE says it."""
        if self.cmee == 1:
            return _Failure(f"+CME ERROR: {code}")
        if self.cmee == 2:
            return _Failure(f"+CME ERROR: {CME_TEXTS.get(code, 'unknown')}")
        return _Failure("ERROR")

    def cms(self, code: int) -> _Failure:
        """TS 27.005 §3.2.5: SMS commands fail with +CMS ERROR (plain ERROR when +CMEE=0)."""
        if self.cmee == 0:
            return _Failure("ERROR")
        if self.cmee == 2:
            return _Failure(f"+CMS ERROR: {CMS_TEXTS.get(code, 'unknown error')}")
        return _Failure(f"+CMS ERROR: {code}")

    def need_sim(self, *, sms: bool = False) -> None:
        if self.sim == "absent":
            raise self.cms(310) if sms else self.cme(10)
        if self.sim == "pin":
            raise self.cms(311) if sms else self.cme(11)

    @property
    def reg_stat(self) -> int:
        return self.registration if self.sim == "ready" and self.radio_on else REG_NONE

    @property
    def registered(self) -> bool:
        return self.reg_stat in (REG_HOME, REG_ROAMING)

    # -- the command table ------------------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        """Extended commands by name; profiles add theirs to this table."""
        table: dict[str, Handler] = {
            "+CMEE": self._setting("cmee", "(0-2)", range(3)),
            "+CMGF": self._setting("cmgf", "(0,1)", range(2)),
            "+CFUN": self._at_cfun, "+CPIN": self._at_cpin, "+CSQ": self._at_csq,
            "+CREG": self._at_creg, "+COPS": self._at_cops, "+CNUM": self._at_cnum,
            "+CIMI": self._at_cimi, "+CCID": self._iccid("+CCID"), "+CSCS": self._at_cscs,
            "+CPMS": self._at_cpms, "+CNMI": self._at_cnmi, "+CMGL": self._at_cmgl,
            "+CMGR": self._at_cmgr, "+CMGD": self._at_cmgd, "+CMGS": self._at_cmgs,
            "+CSCA": self._at_csca, "+CSMS": self._at_csms, "+CUSD": self._at_cusd,
            "+CHUP": self._at_chup, "+CLCC": self._at_clcc, "+VTS": self._at_vts,
            "+CGATT": self._at_cgatt,
        }
        for name, value in (("+CGMI", self.MANUFACTURER), ("+GMI", self.MANUFACTURER),
                            ("+CGMM", self.MODEL), ("+GMM", self.MODEL),
                            ("+CGMR", self.REVISION), ("+GMR", self.REVISION),
                            ("+CGSN", self.imei), ("+GSN", self.imei)):
            table[name] = self._constant(value)
        for name in ("+CLIP", "+CLIR", "+COLP", "+CSSN", "+CRC", "+CNMA", "+CMUT", "+CLVL",
                     "+CGREG", "+CCWA", "+IFC", "+ICF", "+IPR"):
            table[name] = self._accepted
        return table

    def _constant(self, value: str) -> Handler:
        def answer(mode: str, args: list[str]) -> Info:
            if mode == "test":
                return []
            return [value]
        return answer

    def _accepted(self, mode: str, args: list[str]) -> Info:
        return []

    def _setting(self, attribute: str, choices: str, allowed: range) -> Handler:
        name = "+" + attribute.upper()

        def answer(mode: str, args: list[str]) -> Info:
            if mode == "test":
                return [f"{name}: {choices}"]
            if mode == "read":
                return [f"{name}: {getattr(self, attribute)}"]
            if mode == "set" and args and args[0].isdigit() and int(args[0]) in allowed:
                setattr(self, attribute, int(args[0]))
                return []
            raise self.cme(3) if mode == "set" else _Failure("ERROR")
        return answer

    def identification(self) -> Info:
        """ATI (V.250 §6.1.3)."""
        return [f"Manufacturer: {self.MANUFACTURER}", f"Model: {self.MODEL}",
                f"Revision: {self.REVISION}", f"IMEI: {self.imei}", "+GCAP: +CGSM,+DS,+ES"]

    def _at_cfun(self, mode: str, args: list[str]) -> Info:
        if mode == "read":
            return [f"+CFUN: {1 if self.radio_on else 4}"]
        if mode == "test":
            return ["+CFUN: (0,1,4),(0-1)"]
        if mode != "set" or not args or args[0] not in ("0", "1", "4"):
            raise self.cme(3)
        if len(args) > 1 and args[1] == "1":
            # the modem resets: the answer gets out, then the USB device drops off the bus
            self.resets += 1
            self.later(RESET_DROP_S, self._reset)
            return []
        was_registered = self.reg_stat
        self.radio_on = args[0] == "1"
        if self.reg_stat != was_registered:
            self.loop.call_soon(self._registration_urcs)
        return []

    def _at_cpin(self, mode: str, args: list[str]) -> Info:
        if mode == "test":
            return []
        if self.sim == "absent":
            raise self.cme(10)
        if mode == "read":
            return ["+CPIN: READY" if self.sim == "ready" else "+CPIN: SIM PIN"]
        if mode == "set" and self.sim == "pin":
            if args and args[0] == self.pin:
                self.sim = "ready"
                self.loop.call_soon(self._registration_urcs)
                return []
            raise self.cme(16)
        raise self.cme(3)

    def _at_csq(self, mode: str, args: list[str]) -> Info:
        if mode == "test":
            return ["+CSQ: (0-31,99),(0-7,99)"]
        return [f"+CSQ: {self.rssi if self.radio_on else 99},99"]

    def _registration_line(self, name: str, n: int, *, reply: bool) -> str:
        """+CREG/+CEREG: the read reply carries <n> first; the URC does not (§7.2, §7.36)."""
        fields = [str(self.reg_stat)]
        if n == 2 and self.registered:
            fields += ['"1A2B"', '"0C3D4E5"']
            if self.LTE:
                fields.append(str(self.ACCESS_TECHNOLOGY))
        if reply:
            fields.insert(0, str(n))
        return f"{name}: {','.join(fields)}"

    def _registration_command(self, name: str, attribute: str, mode: str,
                              args: list[str]) -> Info:
        if mode == "test":
            return [f"{name}: (0-2)"]
        if mode == "read":
            return [self._registration_line(name, getattr(self, attribute), reply=True)]
        if mode == "set" and args and args[0] in ("0", "1", "2"):
            setattr(self, attribute, int(args[0]))
            return []
        raise self.cme(3)

    def _at_creg(self, mode: str, args: list[str]) -> Info:
        return self._registration_command("+CREG", "creg_n", mode, args)

    def _at_cereg(self, mode: str, args: list[str]) -> Info:
        return self._registration_command("+CEREG", "cereg_n", mode, args)

    def _registration_urcs(self) -> None:
        if self.creg_n:
            self._urc(self._registration_line("+CREG", self.creg_n, reply=False))
        if self.LTE and self.cereg_n:
            self._urc(self._registration_line("+CEREG", self.cereg_n, reply=False))

    def _at_cops(self, mode: str, args: list[str]) -> Info:
        if mode == "test":
            return [f'+COPS: (2,"{self.operator}","{self.operator[:3]}",'
                    f'"{self.operator_numeric}",{self.ACCESS_TECHNOLOGY}),,(0-4),(0-2)']
        if mode == "set":
            if len(args) > 1 and args[1] in ("0", "1", "2"):
                self.cops_format = int(args[1])
            return []
        if not self.registered:
            return ["+COPS: 0"]
        name = {0: self.operator, 1: self.operator[:3], 2: self.operator_numeric}
        return [f'+COPS: 0,{self.cops_format},"{name[self.cops_format]}",'
                f"{self.ACCESS_TECHNOLOGY}"]

    def _at_cnum(self, mode: str, args: list[str]) -> Info:
        self.need_sim()
        toa = 145 if self.number.startswith("+") else 129
        return [f'+CNUM: "","{self.number}",{toa}']

    def _at_cimi(self, mode: str, args: list[str]) -> Info:
        self.need_sim()
        return [self.imsi] if mode == "exec" else []

    def _iccid(self, reply: str) -> Handler:
        """The SIM's ICCID under the vendor's command and reply name (+CCID, +QCCID, +ICCID)."""
        def answer(mode: str, args: list[str]) -> Info:
            if self.sim == "absent":
                raise self.cme(10)
            return [f"{reply}: {self.iccid}"] if mode == "exec" else []
        return answer

    def _switch(self, name: str, attribute: str) -> Handler:
        """A vendor's on/off setting (=1 on, =0 off, ? reads it)."""
        def answer(mode: str, args: list[str]) -> Info:
            if mode == "set" and args and args[0] in ("0", "1"):
                setattr(self, attribute, args[0] == "1")
            elif mode == "read":
                return [f"{name}: {int(getattr(self, attribute))}"]
            elif mode != "test":
                raise self.cme(3)
            return []
        return answer

    def _at_cscs(self, mode: str, args: list[str]) -> Info:
        if mode == "test":
            return ['+CSCS: ("IRA","GSM","UCS2")']
        if mode == "read":
            return [f'+CSCS: "{self.cscs}"']
        if mode == "set" and args and args[0].upper() in ("IRA", "GSM", "UCS2"):
            self.cscs = args[0].upper()
            return []
        raise self.cme(3)

    def _at_cgatt(self, mode: str, args: list[str]) -> Info:
        if mode == "read":
            return [f"+CGATT: {1 if self.registered else 0}"]
        if mode == "test":
            return ["+CGATT: (0,1)"]
        return []

    # -- SMS (TS 27.005, PDU mode) ----------------------------------------------------------

    def _storage_line(self) -> str:
        used = len(self.sms)
        return ",".join([f"{used},{self.sms_capacity}"] * 3)

    def _at_cpms(self, mode: str, args: list[str]) -> Info:
        if mode == "test":
            return ['+CPMS: ("SM"),("SM"),("SM")']
        self.need_sim(sms=True)
        if mode == "read":
            used = len(self.sms)
            return [f'+CPMS: "SM",{used},{self.sms_capacity},"SM",{used},{self.sms_capacity},'
                    f'"SM",{used},{self.sms_capacity}']
        if mode == "set" and args and all(memory.upper() == "SM" for memory in args):
            return [f"+CPMS: {self._storage_line()}"]
        raise self.cms(302)

    def _at_cnmi(self, mode: str, args: list[str]) -> Info:
        if mode == "test":
            return ["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)"]
        if mode == "read":
            return [f"+CNMI: 2,{self.cnmi_mt},0,0,0"]
        if mode == "set" and len(args) > 1 and args[1] in ("0", "1", "2", "3"):
            self.cnmi_mt = int(args[1])
            return []
        if mode == "set" and len(args) == 1:
            return []
        raise self.cms(302)

    def _pdu_mode_only(self) -> None:
        self.need_sim(sms=True)
        if self.cmgf != 0:
            raise self.cms(302)  # text mode is not faked: the box speaks PDU mode only

    def _sms_index(self, args: list[str]) -> int:
        if not args or not args[0].isdigit() or not 1 <= int(args[0]) <= self.sms_capacity:
            raise self.cms(321)
        return int(args[0])

    def _at_cmgl(self, mode: str, args: list[str]) -> Info:
        if mode == "test":
            return ["+CMGL: (0-4)"]
        self._pdu_mode_only()
        wanted = int(args[0]) if args and args[0].isdigit() else 0
        if wanted > 4:
            raise self.cms(304)
        info: Info = []
        for index, stored in sorted(self.sms.items()):
            if wanted == 4 or stored.stat == wanted:
                info += [f"+CMGL: {index},{stored.stat},,{pdu.tpdu_length(stored.pdu)}",
                         stored.pdu]
                stored.stat = 1 if stored.stat == 0 else stored.stat
        return info

    def _at_cmgr(self, mode: str, args: list[str]) -> Info:
        if mode == "test":
            return []
        self._pdu_mode_only()
        stored = self.sms.get(self._sms_index(args))
        if stored is None:
            raise self.cms(321)
        info = [f"+CMGR: {stored.stat},,{pdu.tpdu_length(stored.pdu)}", stored.pdu]
        stored.stat = 1 if stored.stat == 0 else stored.stat
        return info

    def _at_cmgd(self, mode: str, args: list[str]) -> Info:
        if mode == "test":
            return [f"+CMGD: (1-{self.sms_capacity}),(0-4)"]
        self.need_sim(sms=True)
        index = self._sms_index(args)
        flag = int(args[1]) if len(args) > 1 and args[1].isdigit() else 0
        if flag == 0:
            self.sms.pop(index, None)
        else:  # §3.5.4: 1 read, 2 read and sent, 3 all but unsent, 4 all
            for key in [key for key, stored in self.sms.items()
                        if flag == 4 or stored.stat == 1 or flag == 3]:
                del self.sms[key]
        self.notify()
        return []

    def _at_cmgs(self, mode: str, args: list[str]) -> Info | _Prompt:
        if mode == "test":
            return []
        self._pdu_mode_only()
        if mode != "set" or not args or not args[0].isdigit():
            raise self.cms(304)
        if not self.registered:
            raise self.cms(331)
        self._pdu_length = int(args[0])
        self._pdu.clear()
        return PROMPT

    def _pdu_done(self, *, cancelled: bool) -> None:
        length, self._pdu_length = self._pdu_length, None
        text = self._pdu.decode("ascii", "replace").strip()
        self._pdu.clear()
        if cancelled:
            self._respond([], "OK")
            return
        try:
            valid = pdu.tpdu_length(text) == length
        except (ValueError, IndexError):
            valid = False
        if not valid:
            LOGGER.info("%s: +CMGS PDU refused (length %s): %r", self.name, length, text)
            self._respond([], self.cms(304).final)
            return
        self.sms_sent.append(text.upper())
        self._message_reference = (self._message_reference + 1) % 256
        self._respond([f"+CMGS: {self._message_reference}"], "OK")
        self.notify()

    def _at_csca(self, mode: str, args: list[str]) -> Info:
        return ['+CSCA: "+79168999100",145'] if mode == "read" else []

    def _at_csms(self, mode: str, args: list[str]) -> Info:
        if mode == "read":
            return ["+CSMS: 0,1,1,1"]
        if mode == "test":
            return ["+CSMS: (0,1)"]
        return ["+CSMS: 1,1,1"]

    def _deliver_sms(self, pdu_hex: str) -> int | None:
        if self._at is None:
            raise ModemUnplugged(f"{self.name}: unplugged")
        if self.cnmi_mt == 2:
            # §3.4.1: routed straight to the TE, never stored
            self._urc(f"+CMT: ,{pdu.tpdu_length(pdu_hex)}", pdu_hex)
            return None
        free = [index for index in range(1, self.sms_capacity + 1) if index not in self.sms]
        if not free:
            self._storage_full()
            return None
        self.sms[free[0]] = StoredSms(stat=0, pdu=pdu_hex)
        if self.cnmi_mt in (1, 3):
            self._urc(f'+CMTI: "SM",{free[0]}')
        self.notify()
        return free[0]

    def _storage_full(self) -> None:
        """The SIM has no room: the message stays at the network (profiles may say so)."""
        LOGGER.info("%s: SIM storage full, SMS not stored", self.name)

    # -- USSD (TS 27.007 §7.15) -------------------------------------------------------------

    def _at_cusd(self, mode: str, args: list[str]) -> Info:
        if mode == "read":
            return ["+CUSD: 1"]
        if mode == "test":
            return ["+CUSD: (0-2)"]
        if mode != "set" or not args:
            raise self.cme(3)
        if len(args) < 2 or args[0] == "2":
            return []
        self.need_sim()
        if not self.registered:
            raise self.cme(30)
        code = self._ussd_request(args[1])
        self.later(USSD_REPLY_DELAY_S, self._ussd_reply, code)
        return []

    def _ussd_request(self, text: str) -> str:
        """The request as typed; some drivers send it 7-bit packed or UCS2 in hex."""
        if re.fullmatch(r"([0-9A-Fa-f]{2})+", text) and not re.fullmatch(r"[*#0-9]+", text):
            data = bytes.fromhex(text)
            if self.cscs == "UCS2" and len(data) % 2 == 0:
                return data.decode("utf-16-be", "replace")
            return pdu.gsm7_text(pdu.unpack_septets(data, len(data) * 8 // 7)).rstrip("\r@")
        if self.cscs == "UCS2" and re.fullmatch(r"([0-9A-Fa-f]{4})+", text):
            return bytes.fromhex(text).decode("utf-16-be", "replace")
        return text

    def _ussd_reply(self, code: str) -> None:
        reply = self.ussd_replies.get(code)
        if reply is None:
            self._urc("+CUSD: 4")  # operation not supported by the network
        elif reply.isascii() and self.cscs != "UCS2":
            self._urc(f'+CUSD: 0,"{reply}",15')
        else:
            # the network sends Cyrillic as UCS2 (DCS 0x48 = 72); the modem passes it as hex
            self._urc(f'+CUSD: 0,"{reply.encode("utf-16-be").hex().upper()}",72')

    # -- calls ------------------------------------------------------------------------------

    def _ring(self, number: str, private: bool) -> None:
        if self._at is None:
            raise ModemUnplugged(f"{self.name}: unplugged")
        if self.current_call is not None:
            raise RuntimeError(f"{self.name}: a call is already up ({self.call_state})")
        self.current_call = Call(index=1, outgoing=False, number="" if private else number,
                         state=CALL_INCOMING, private=private)
        self._call_state_changed(self.current_call)
        self._ring_once()
        self.later(RING_GIVE_UP_S, self._ring_given_up, self.current_call)
        self.notify()

    def _ring_once(self) -> None:
        call = self.current_call
        if call is None or call.state != CALL_INCOMING:
            return
        # TS 27.007 §7.6: CLI validity 1 is a withheld number
        clip = ('+CLIP: "",128,,,,1' if call.private
                else f'+CLIP: "{call.number}",{call.toa},,,,0')
        self._urc("RING")
        self._urc(clip)
        self._ring_timer = self.later(self.ring_interval_s, self._ring_once)

    def _ring_given_up(self, call: Call) -> None:
        if self.current_call is call and call.state == CALL_INCOMING:
            self._end_call(CAUSE_NO_ANSWER, by_remote=True)

    def _answer(self) -> None:
        call = self.current_call
        if call is None or call.state != CALL_INCOMING:
            raise _Failure("NO CARRIER")
        self.loop.call_soon(self._become_active, call)

    def _become_active(self, call: Call) -> None:
        if self.current_call is not call:
            return
        call.state = CALL_ACTIVE
        call.began_at = self.loop.time()
        self._call_state_changed(call)
        self._update_audio()
        self.notify()

    def _dial(self, dial_string: str) -> None:
        number = dial_string.strip()  # what follows the D
        if not number.endswith(";"):
            raise _Failure("NO CARRIER")  # a data call: not faked
        number = number.rstrip(";").strip()
        if self.current_call is not None or not re.fullmatch(r"\+?[0-9*#]+", number):
            raise self.cme(3)
        self.need_sim()
        if not self.registered:
            raise _Failure("NO CARRIER")
        call = Call(index=1, outgoing=True, number=number, state=CALL_DIALING)
        self.current_call = call
        self.loop.call_soon(self._call_state_changed, call)
        self.later(ALERT_DELAY_S, self._alerting, call)
        self.notify()

    def _alerting(self, call: Call) -> None:
        if self.current_call is call and call.state == CALL_DIALING:
            call.state = CALL_ALERTING
            self._call_state_changed(call)
            self.notify()

    def _remote_answers(self) -> None:
        call = self.current_call
        if call is None or not call.outgoing or call.state == CALL_ACTIVE:
            raise RuntimeError(f"{self.name}: no outgoing call ringing ({self.call_state})")
        self._become_active(call)

    def _remote_hangs_up(self, cause: int) -> None:
        if self.current_call is None:
            raise RuntimeError(f"{self.name}: no call to hang up")
        self._end_call(cause, by_remote=True)

    def _hang_up(self, cause: int) -> None:
        if self.current_call is not None:
            self.loop.call_soon(self._end_call, cause, False)

    def _at_chup(self, mode: str, args: list[str]) -> Info:
        if mode != "test":
            self._hang_up(CAUSE_NORMAL)
        return []

    def _end_call(self, cause: int, by_remote: bool, quietly: bool = False) -> None:
        call = self.current_call
        if call is None:
            return
        self.current_call = None
        duration = 0.0 if call.began_at is None else self.loop.time() - call.began_at
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None
        self._update_audio()
        self.calls_ended.append(CallEnded(number=call.number, outgoing=call.outgoing,
                                          answered=call.began_at is not None, cause=cause,
                                          by_remote=by_remote, duration_s=duration))
        if not quietly:
            self._call_ended(call, cause, by_remote, round(duration))
        self._call_audio_reset()
        self.notify()

    def _at_clcc(self, mode: str, args: list[str]) -> Info:
        if mode in ("exec",) and self.current_call is not None:
            return [self.current_call.clcc()]
        return []

    def _at_vts(self, mode: str, args: list[str]) -> Info:
        if mode == "test":
            return ["+VTS: (0-9,*,#,A-D)"]
        if mode != "set" or not args or not args[0]:
            raise self.cme(3)
        self._record_dtmf(args[0][0])
        return []

    def _record_dtmf(self, digit: str) -> None:
        call = self.current_call
        if call is None or call.state != CALL_ACTIVE or digit not in "0123456789*#ABCD":
            raise self.cme(3)
        self.dtmf_sent.append(digit)
        self.notify()

    # -- profile hooks ----------------------------------------------------------------------

    def _call_state_changed(self, call: Call) -> None:
        """A call appeared or moved (incoming, dialing, alerting, active): vendor URCs."""

    def _call_ended(self, call: Call, cause: int, by_remote: bool, duration_s: int) -> None:
        """A call ended: vendor URCs. By default the V.250 result a dialled call ends with."""
        if by_remote and (call.outgoing or call.began_at is not None):
            self._urc("BUSY" if cause == CAUSE_BUSY and call.began_at is None else "NO CARRIER")

    def _call_audio_reset(self) -> None:
        """Per-call audio switches fall back when a call ends."""

    def _audio_switched_on(self) -> bool:
        """Whether the profile's audio path is on (^DDSETEX, +QPCMV, +CPCMREG)."""
        return True

    def _remote_dtmf(self, digit: str) -> None:
        LOGGER.info("%s: DTMF %s from the far end is in-band only on this modem", self.name,
                    digit)

    def _set_signal(self, rssi: int) -> None:
        self.rssi = rssi
        self.notify()

    def _set_registration(self, stat: int) -> None:
        self.registration = stat
        self._registration_urcs()
        self.notify()

    # -- audio ------------------------------------------------------------------------------

    def _update_audio(self) -> None:
        """The tone plays while a call is active and the profile's audio path is on."""
        wanted = (self.current_call is not None and self.current_call.state == CALL_ACTIVE
                  and self._audio is not None and self._audio_switched_on())
        if wanted and self._audio_timer is None:
            self._audio_next = self.loop.time()
            self._audio_tick()
        elif not wanted:
            self._stop_audio()

    def _stop_audio(self) -> None:
        if self._audio_timer is not None:
            self._audio_timer.cancel()
            self._audio_timer = None

    def _audio_tick(self) -> None:
        now = self.loop.time()
        if now - self._audio_next > AUDIO_LATE_FRAMES * AUDIO_FRAME_S:
            self._audio_next = now  # a stalled loop does not burst: real time goes on
        if self._audio is not None:
            if self._pending.get(self._audio.master):
                self.audio_frames_dropped += 1  # the client does not read: frames are lost
            else:
                self._write_port(self._audio, TONE_FRAME)
                self.audio_frames_sent += 1
        self._audio_next += AUDIO_FRAME_S
        self._audio_timer = self.loop.call_at(self._audio_next, self._audio_tick)
