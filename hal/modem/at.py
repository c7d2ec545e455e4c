"""Sans-IO AT command codec (ITU-T V.250, 3GPP TS 27.007 / 27.005): bytes in, events out.

The shape is h11's: the caller writes what `send_command(line, prefix=...)` returns, feeds every
byte read from the port to `receive_data(data)` and drains `next_event()` until it returns None.
Events (frozen, keyword-only):

- `CommandCompleted(ok, final, info, error_code, command)`: the pending command's final result
  (`OK`, `ERROR`, `+CME ERROR: n`, `+CMS ERROR: n`, `NO CARRIER`, `BUSY`, `NO ANSWER`,
  `NO DIALTONE`, `CONNECT [text]`, `VCON`, Huawei's `COMMAND NOT SUPPORT`) with its information
  lines;
- `UnsolicitedResult(line, extra)`: anything else the modem says (`RING`, `+CLIP:`, `^RSSI:`,
  `+CMT:` with its PDU line in `extra`, ...), also when it arrives in the middle of a response;
- `PromptReceived()`: the `> ` of +CMGS/+CMGW; answer it with `send_pdu(data)`;
- `DataReceived(data)`: raw bytes while in data mode (after `CONNECT`, for V.253 voice streams);
- `GarbageDiscarded(data)`: a line that was not text (non-UTF-8, control bytes) or too long;
- `StrayResultReceived(line)`: a final result with no command pending (the late answer of a
  command the caller gave up on).

Which `+XXX:` lines belong to the pending command is decided by its prefix (pyserial's
`at_protocol.py` warns that they can be either): by default the name of the command's first
extended command (`AT+CSQ` → `+CSQ`, `AT^CVOICE?` → `^CVOICE`); pass `prefix=` to override,
`prefix=""` for none. Bare lines (an IMEI, a PDU, `ATI`'s text) are information while a command is
pending; any prefixed line that does not match is unsolicited, so a `^RSSI:` in the middle of an
`AT+CSQ` cannot desync the answer (chan_dongle's most common field failure, wdoekes#143).
`cancel_command()` forgets the pending command (after a timeout); `enter_data_mode()` /
`leave_data_mode(unconsumed)` switch the byte stream between lines and raw data.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass

LOGGER = logging.getLogger(__name__)

# A PDU line is at most 2 × 176 hex digits; a +CUSD text or an ATI banner is a few hundred bytes.
# Anything longer without a line end is noise (a wrong baud rate, an audio port) and is dropped.
MAX_LINE_BYTES = 2048
# GarbageDiscarded carries at most this much of what was dropped (enough to recognise it in a log).
GARBAGE_SAMPLE_BYTES = 64
# A +CUSD text may hold line breaks inside its quotes; at most this many lines are joined.
MAX_CONTINUATION_LINES = 16

CTRL_Z = b"\x1a"  # 27.005 §3.5.1: ends the PDU (or text) after the prompt
ESC = b"\x1b"  # 27.005 §3.5.1: aborts sending

OK_FINALS = frozenset({"OK", "VCON"})  # VCON: V.253 §10.1.1, a voice call connected
ERROR_FINALS = frozenset({
    "ERROR",
    "COMMAND NOT SUPPORT",  # Huawei for an unknown command (python-gsmmodem-new's E1752 profile)
    "TOO MANY PARAMETERS",  # Huawei
})
# V.250 §6.3.1 / §5.7.1: call progress results end a dial or answer command; with no such command
# pending they tell that a call ended (a GSM `ATD<n>;` is answered `OK` at once, the call's end
# comes later as `NO CARRIER`).
CALL_PROGRESS = frozenset({"NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE", "NO DIAL TONE"})
CME_ERROR = "+CME ERROR:"  # 27.007 §9.2
CMS_ERROR = "+CMS ERROR:"  # 27.005 §3.2.5

# Unsolicited results that are followed by one more line: the PDU (or text) of a message.
# 27.005 §3.4.1: +CMT (delivered SMS), +CDS (status report), +CBM (cell broadcast).
URC_WITH_EXTRA_LINE = frozenset({"+CMT", "+CDS", "+CBM"})
# Names that are never a command's information, even when they match its prefix: the network's
# answer to AT+CUSD=1,... arrives when it arrives (27.007 §7.15), before or after the OK.
ALWAYS_UNSOLICITED = frozenset({"+CUSD", "+CMTI", "+CMT", "+CDS", "+CBM", "+CDSI"})
# 27.007 §7.2: the +CREG? answer is `<n>,<stat>[,...]`, the +CREG URC is `<stat>[,<lac>,...]`;
# the second field tells them apart (a 1-2 digit <stat> against a quoted or hex <lac>).
REGISTRATION_NAMES = frozenset({"+CREG", "+CGREG", "+CEREG", "+C5GREG"})
# Bare (unprefixed) lines that are unsolicited even while a command is pending: ring, SIMCom's
# call notices, and V.253 caller ID between rings (`DATE=0805`, also spaced: `DATE = 0805`).
BARE_URC_RE = re.compile(
    r"^(?:RING\b|VOICE CALL:|MISSED_CALL:|(?:DATE|TIME|NMBR|NAME|MESG|DDN_NMBR)\s*=)"
)

# A prefixed line: `+CSQ: 20,99`, `^RSSI:18`, `^SMMEMFULL` (no colon), `+CME ERROR: 10`.
PREFIXED_RE = re.compile(r"^([+^$%#*][A-Za-z0-9_]+)\s*(?::|$)")
# The name of a command's first extended command: `AT+CSQ`, `AT^CVOICE?`, `AT+CMGS=23`.
COMMAND_NAME_RE = re.compile(r"^AT\s*([+^$%#*][A-Za-z0-9_]+)", re.IGNORECASE)
# Commands whose final result may be a call progress result or CONNECT: dial, answer, online,
# hang up (V.250 §6.3), V.253 voice commands (+VTX, +VRX, +VTR, +VLS ...), also inside a compound
# command line such as Quectel's `AT+QPCMV=0;+QPCMV=1,0;D<n>;`.
CALL_COMMAND_RE = re.compile(r"(?:^AT\s*|;\s*)(?:[DAOH]|\+V)", re.IGNORECASE)
LINE_ENDS = b"\r\n"


class AtError(Exception):
    """Root of the AT layer's errors."""


class AtLocalProtocolError(AtError):
    """Our own misuse of the codec (a bug): a second command while one is pending, a bad line."""


@dataclass(frozen=True, kw_only=True)
class CommandCompleted:
    """The pending command ended with a final result; `info` holds its information lines."""

    ok: bool
    final: str
    info: tuple[str, ...]
    error_code: int | None
    command: str = ""


@dataclass(frozen=True, kw_only=True)
class UnsolicitedResult:
    """A line the modem sent on its own; `extra` holds the line(s) that belong to it (a PDU)."""

    line: str
    extra: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PromptReceived:
    """The modem waits for the message body (27.005 §3.5.1 `> `)."""


@dataclass(frozen=True, kw_only=True)
class DataReceived:
    """Raw bytes received in data mode."""

    data: bytes


@dataclass(frozen=True, kw_only=True)
class GarbageDiscarded:
    """Bytes that were not a line of text were dropped; `data` is a sample of them."""

    data: bytes


@dataclass(frozen=True, kw_only=True)
class StrayResultReceived:
    """A final result (`OK`, `ERROR`, ...) arrived with no command pending."""

    line: str


AtEvent = (
    CommandCompleted
    | UnsolicitedResult
    | PromptReceived
    | DataReceived
    | GarbageDiscarded
    | StrayResultReceived
)


@dataclass
class _Pending:
    command: str
    prefix: str
    call: bool  # a dial/answer/voice command: call progress results and CONNECT are its finals
    echo_expected: bool = True
    pdu_echo: str | None = None
    info: list[str] | None = None


def command_prefix(command: str) -> str:
    """The information prefix a command's answer carries: `AT+CSQ` → `+CSQ`, `ATI` → ``."""
    match = COMMAND_NAME_RE.match(command)
    return match.group(1).upper() if match else ""


def final_result(line: str) -> tuple[bool, int | None] | None:
    """(ok, error code) when `line` is a final result code that ends any command, else None.

    Call progress results and CONNECT are not included: whether they end a command depends on the
    command (see `CALL_COMMAND_RE`).
    """
    if line in OK_FINALS:
        return True, None
    if line in ERROR_FINALS:
        return False, None
    for head in (CME_ERROR, CMS_ERROR):
        if line.startswith(head):
            # Numeric with +CMEE=1, verbose text with +CMEE=2 (27.007 §9.1).
            text = line[len(head):].strip()
            return False, int(text) if text.isdigit() else None
    return None


def _is_connect(line: str) -> bool:
    return line == "CONNECT" or line.startswith("CONNECT ")


def _registration_reply(line: str) -> bool:
    """True when a +CREG-family line is the read command's answer `<n>,<stat>...`."""
    fields = line.split(":", 1)[1].split(",")
    return len(fields) >= 2 and fields[1].strip().isdigit() and len(fields[1].strip()) <= 2


class AtCodec:
    """One AT port's conversation, without I/O. See the module docstring for the events."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._events: deque[AtEvent] = deque()
        self._pending: _Pending | None = None
        self._discarding = False  # inside an overlong line, until its end
        self._skip_lf = False  # the CR of a CONNECT line was seen; its LF may follow
        self._data_mode = False
        self._urc_waiting: str | None = None  # a +CMT: line waiting for its PDU line
        self._continuation: list[str] | None = None  # a +CUSD: line with an open quote

    # ------------------------------------------------------------------ what the caller sends

    @property
    def pending(self) -> str | None:
        """The command awaiting its final result, if any."""
        return self._pending.command if self._pending else None

    @property
    def data_mode(self) -> bool:
        return self._data_mode

    def send_command(self, line: str, *, prefix: str | None = None) -> bytes:
        """Start a command; returns the bytes to write (V.250 §5.2.1: the line ends with S3, CR).

        `prefix` names the information lines of the answer; None derives it from the command.
        """
        if self._pending is not None:
            raise AtLocalProtocolError(f"{line!r} while {self._pending.command!r} is pending")
        if self._data_mode:
            raise AtLocalProtocolError(f"{line!r} in data mode")
        command = line.strip()
        if not command.upper().startswith("AT") or any(c in command for c in "\r\n\x1a\x1b"):
            raise AtLocalProtocolError(f"not an AT command line: {line!r}")
        self._pending = _Pending(
            command=command,
            prefix=(command_prefix(command) if prefix is None else prefix).upper(),
            call=bool(CALL_COMMAND_RE.search(command)),
            info=[],
        )
        return command.encode("ascii", "strict") + b"\r"

    def send_pdu(self, data: bytes) -> bytes:
        """The message body to write after `PromptReceived`, ended by Ctrl-Z (27.005 §3.5.1).

        `data` is written as it is: the PDU's hex digits in PDU mode (+CMGF=0), the text in text
        mode. The modem may echo it; that echo is not taken for information.
        """
        if self._pending is None:
            raise AtLocalProtocolError("a PDU with no command pending")
        if CTRL_Z in data or ESC in data:
            raise AtLocalProtocolError("a PDU may not hold Ctrl-Z or ESC")
        self._pending.pdu_echo = data.decode("ascii", "replace").strip().upper()
        return data + CTRL_Z

    def cancel_command(self) -> None:
        """Forget the pending command (the caller gave up on it); its late answer will arrive as
        `StrayResultReceived` and its information lines as unsolicited lines."""
        self._pending = None
        self._urc_waiting = None

    def enter_data_mode(self) -> None:
        """Pass bytes through raw as `DataReceived` (V.250 §6.3.1: after CONNECT the DCE is in
        the online data state). A CONNECT final result does this by itself."""
        self._data_mode = True
        self._data(bytes(self._buffer))
        self._buffer.clear()

    def leave_data_mode(self, unconsumed: bytes = b"") -> None:
        """Back to lines. `unconsumed`: bytes given out as data that were not data after all
        (what followed a V.253 stream's <DLE><ETX>, such as its `OK`), parsed as lines."""
        self._data_mode = False
        self._skip_lf = False
        self._buffer[:0] = unconsumed
        self._parse()

    # ------------------------------------------------------------------ what the modem sends

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the port (any split: a byte at a time works)."""
        if not data:
            return
        if self._data_mode:
            self._data(data)
            return
        self._buffer += data
        self._parse()

    def next_event(self) -> AtEvent | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ parsing

    def _parse(self) -> None:
        buffer = self._buffer
        while buffer and not self._data_mode:
            end = _first_line_end(buffer)
            if end < 0:
                break
            raw = bytes(buffer[:end])
            ended_by_cr = buffer[end] == 0x0D
            del buffer[: end + 1]
            if self._discarding:
                self._discarding = False  # the overlong line's end; it was reported already
                continue
            self._raw_line(raw)
            if self._data_mode:
                # The CONNECT line's CR LF: its LF is not data (it may come in the next read).
                self._skip_lf = ended_by_cr
        if self._data_mode:
            self._data(bytes(buffer))
            buffer.clear()
            return
        if self._discarding:
            buffer.clear()
            return
        # 27.005 §3.5.1: the prompt is `<CR><LF>> ` with no line end after it.
        if self._pending is not None and buffer.lstrip(b" \r\n\x00").startswith(b">"):
            buffer.clear()
            self._events.append(PromptReceived())
            return
        if len(buffer) > MAX_LINE_BYTES:
            LOGGER.warning("AT line over %d bytes discarded", MAX_LINE_BYTES)
            LOGGER.debug("discarded: %r", bytes(buffer[:GARBAGE_SAMPLE_BYTES]))
            self._events.append(GarbageDiscarded(data=bytes(buffer[:GARBAGE_SAMPLE_BYTES])))
            buffer.clear()
            self._discarding = True

    def _data(self, data: bytes) -> None:
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0:1] == b"\n":
                data = data[1:]
        if data:
            self._events.append(DataReceived(data=bytes(data)))

    def _raw_line(self, raw: bytes) -> None:
        stripped = raw.strip(b" \t\x00" + CTRL_Z)
        if not stripped:
            return  # V.250 §5.7.1: responses are framed by CR LF; empty lines carry nothing
        text = _as_text(stripped)
        if text is None:
            # Noise glued to the front of a real result (a modem booting, a bad USB frame) must
            # not cost the result: keep a trailing printable final result code.
            tail = _printable_tail(stripped)
            head = stripped[: len(stripped) - len(tail)] if tail else stripped
            LOGGER.warning("AT garbage discarded (%d bytes)", len(head))
            LOGGER.debug("garbage: %r", head[:GARBAGE_SAMPLE_BYTES])
            self._events.append(GarbageDiscarded(data=head[:GARBAGE_SAMPLE_BYTES]))
            if not tail:
                return
            text = tail
        self._line(text)

    def _line(self, line: str) -> None:
        if self._continuation is not None:
            if self._is_final(line) or len(self._continuation) >= MAX_CONTINUATION_LINES:
                self._flush_continuation()
            else:
                self._continuation.append(line)
                if "\n".join(self._continuation).count('"') % 2 == 0:
                    self._flush_continuation()
                return
        if self._urc_waiting is not None:
            head, self._urc_waiting = self._urc_waiting, None
            if not self._is_final(line):
                self._events.append(UnsolicitedResult(line=head, extra=(line,)))
                return
            self._events.append(UnsolicitedResult(line=head))  # its PDU never came
        pending = self._pending
        if pending is None:
            self._unsolicited_or_stray(line)
            return
        upper = line.upper()
        if pending.echo_expected and upper == pending.command.upper():
            pending.echo_expected = False  # V.250 §6.2.4 (E1): the command line echoed back
            return
        if pending.pdu_echo is not None and upper == pending.pdu_echo:
            pending.pdu_echo = None
            return
        if self._is_final(line):
            self._complete(line)
            return
        name = _prefixed_name(line)
        if name is not None:
            if name == pending.prefix and self._is_information(name, line):
                assert pending.info is not None
                pending.info.append(line)
            else:
                self._unsolicited(line, name)
            return
        if BARE_URC_RE.match(line) or line in CALL_PROGRESS:
            self._unsolicited(line, None)
            return
        assert pending.info is not None
        pending.info.append(line)

    def _is_final(self, line: str) -> bool:
        if final_result(line) is not None:
            return True
        pending = self._pending
        return (
            pending is not None
            and pending.call
            and (line in CALL_PROGRESS or _is_connect(line))
        )

    @staticmethod
    def _is_information(name: str, line: str) -> bool:
        if name in ALWAYS_UNSOLICITED:
            return False
        if name in REGISTRATION_NAMES:
            return _registration_reply(line)
        return True

    def _complete(self, line: str) -> None:
        pending = self._pending
        assert pending is not None and pending.info is not None
        self._pending = None
        result = final_result(line)
        if result is None:  # a call progress result or CONNECT of a call command
            ok, code = _is_connect(line), None
        else:
            ok, code = result
        self._events.append(CommandCompleted(
            ok=ok, final=line, info=tuple(pending.info), error_code=code,
            command=pending.command,
        ))
        if _is_connect(line):
            self._data_mode = True

    def _unsolicited_or_stray(self, line: str) -> None:
        if final_result(line) is not None or _is_connect(line):
            LOGGER.info("AT result %r with no command pending", line)
            self._events.append(StrayResultReceived(line=line))
            return
        self._unsolicited(line, _prefixed_name(line))

    def _unsolicited(self, line: str, name: str | None) -> None:
        if name in URC_WITH_EXTRA_LINE:
            self._urc_waiting = line
            return
        if name == "+CUSD" and line.count('"') % 2 == 1:
            self._continuation = [line]
            return
        self._events.append(UnsolicitedResult(line=line))

    def _flush_continuation(self) -> None:
        assert self._continuation is not None
        joined, self._continuation = "\n".join(self._continuation), None
        self._events.append(UnsolicitedResult(line=joined))


def _first_line_end(buffer: bytearray) -> int:
    cr = buffer.find(b"\r")
    lf = buffer.find(b"\n")
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)


def _as_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in text):
        return None
    return text


def _printable_tail(raw: bytes) -> str:
    """The final result code at the end of a garbled line, or '' when there is none."""
    start = len(raw)
    while start > 0 and 0x20 <= raw[start - 1] < 0x7F:
        start -= 1
    tail = raw[start:].decode("ascii").strip()
    if final_result(tail) is not None or tail in CALL_PROGRESS or _is_connect(tail):
        return tail
    return ""


def _prefixed_name(line: str) -> str | None:
    match = PREFIXED_RE.match(line)
    return match.group(1).upper() if match else None
