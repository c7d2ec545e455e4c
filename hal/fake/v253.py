"""A fake V.253 voice modem on a pseudo-terminal, answering like a USRobotics 5637.

It plays the analog line too: tests make it ring with caller ID, have the far end press digits,
hang up (a loop-current break) or leave a busy tone. In a voice stream it sends a known sample
pattern paced at 8000 bytes a second and collects what the box sends. It shields and unshields the
stream with its own few lines of code, not with hal.modem.v253, so each keeps the other honest.

What it answers (V.253 §10 and the USR 5637 manual's voice chapter): echo until `ATE0`, `ATI`,
`AT+FCLASS=?` → `0,1,8`, `+FCLASS=8`, `+VSM=?` (USR formats 128-132) and `+VSM=<n>,8000`, `+VLS`,
`+VCID`, `+VIT`, `+VSD`, `+VGT`, `+VGR`, `+IFC`, `+VTS`, `+VTR`/`+VTX`/`+VRX` → `CONNECT`, `ATD`,
`ATH`. Voice commands before `+FCLASS=8` answer ERROR, and so does streaming on hook.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from hal.fake.device import FakeDevice
from hal.fake.pty import FakePort

LOGGER = logging.getLogger(__name__)

# Shielding characters, written out here on purpose (see the module docstring).
_DLE = 0x10
_ETX = 0x03
_CAN = 0x18

VOICE_RATE_HZ = 8000
VOICE_TICK_S = 0.02
SAMPLES_PER_TICK = 160
# The pattern in every stream: a ramp over all byte values, so <DLE> (0x10) comes up 31 times a
# second and a client that forgets to unshield it is caught.
PATTERN = bytes(range(256))
RING_PERIOD_S = 5.0  # a European cadence: a ring every 5 s
OUTPUT_LIMIT_BYTES = 65536  # a real modem overruns too when nobody reads
IDENTITY = "U.S. Robotics 56K FAX USB V1.2.23"
VSM_OFFERS = (
    '128,"8-BIT LINEAR",(7200,8000,11025)',
    '129,"16-BIT LINEAR",(7200,8000,11025)',
    '130,"8-BIT ALAW",(8000)',
    '131,"8-BIT ULAW",(8000)',
    '132,"IMA ADPCM",(7200,8000,11025)',
)
# Settings the fake accepts with a number and otherwise ignores.
_PLAIN_SETTINGS = ("+VCID", "+VIT", "+VSD", "+VGT", "+VGR", "+IFC", "+VNH", "+VRA", "+VRN",
                   "+VDR", "S0", "&F", "X", "Q", "V")


@dataclass
class _Stream:
    transmit: bool  # the box sends samples (VTX, VTR)
    receive: bool  # the modem sends samples (VRX, VTR)


class FakeV253Modem(FakeDevice):
    """The fake. Control from the test's thread: `ring`, `far_end_hangs_up`, `busy_tone`,
    `send_dtmf`, `inject_garbage`, `unplug`, `replug`; read `commands`, `received_samples`,
    `sent_sample_count`."""

    name = "v253"

    def __init__(self, link: str | Path | None = None, *, ring_period_s: float = RING_PERIOD_S,
                 reports_dial_tone: bool = True) -> None:
        super().__init__()
        self._link = Path(link) if link is not None else None
        self.ring_period_s = ring_period_s
        self.reports_dial_tone = reports_dial_tone
        self._pty: FakePort | None = None
        self.commands: list[str] = []
        self.received_samples = bytearray()
        self.sent_sample_count = 0
        self.dialled: list[str] = []
        self._reset()

    def _reset(self) -> None:
        self.echo = True
        self.fclass = 0
        self.vsm = 128
        self.off_hook = False
        self.caller_id_on = False
        self._input = bytearray()
        self._output = bytearray()
        self._stream: _Stream | None = None
        self._tx_escape = False
        self._next_tick = 0.0
        self._pattern_at = 0
        self._rings_left = 0

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The port a client opens (the by-id style symlink when one was asked for)."""
        if self._pty is None:
            raise RuntimeError("v253: unplugged")
        return self._pty.path

    @property
    def path(self) -> str:
        return self.port

    def _power_up(self) -> None:
        self._reset()
        self._pty = FakePort(self._link)
        self.loop.add_reader(self._pty.master, self._readable)
        self.notify()

    def _power_down(self) -> None:
        self.cancel_timers()
        if self._pty is not None:
            self.loop.remove_reader(self._pty.master)
            self.loop.remove_writer(self._pty.master)
            self._pty.close()
            self._pty = None
        self.notify()

    # -- control (any thread) ------------------------------------------------------------------

    def unplug(self) -> None:
        self.call(self._power_down)

    def replug(self) -> None:
        self.call(self._power_up)

    def ring(self, number: str, *, private: bool = False, name: str | None = None,
             rings: int = 4) -> None:
        """The line rings `rings` times, caller ID between the first and second ring."""
        self.call(self._start_ringing, number, private, name, rings)

    def far_end_hangs_up(self) -> None:
        """The exchange breaks the loop current: <DLE>l in a stream."""
        self.call(self._line_event, "l")

    def busy_tone(self) -> None:
        self.call(self._line_event, "b")

    def inject_garbage(self, data: bytes) -> None:
        """Raw bytes on the port, as a modem with a bad day sends them (line noise, a bad USB
        frame); inside a stream they arrive among the samples. `linebox dev fake-modem`'s
        `garbage` command calls this, as it does on the GSM fakes."""
        self.call(self._send, data)

    def send_dtmf(self, digits: str) -> None:
        """The far end presses keys: <DLE><digit> each in a receiving stream."""
        for digit in digits:
            self.call(self._line_event, digit)

    # -- the port ------------------------------------------------------------------------------

    def _readable(self) -> None:
        if self._pty is None:
            return
        data = self._pty.read()
        if self._stream is not None:
            self._stream_input(data)
        else:
            self._command_input(data)

    def _send(self, data: bytes) -> None:
        if self._pty is None:
            return
        self._output += data
        if len(self._output) > OUTPUT_LIMIT_BYTES:
            LOGGER.info("v253 fake: nobody reads; %d bytes dropped", len(self._output))
            del self._output[: len(self._output) - OUTPUT_LIMIT_BYTES]
        self._flush()

    def _flush(self) -> None:
        if self._pty is None:
            return
        written = self._pty.write(bytes(self._output)) if self._output else 0
        del self._output[:written]
        if self._output:
            self.loop.add_writer(self._pty.master, self._writable)

    def _writable(self) -> None:
        if self._pty is not None:
            self.loop.remove_writer(self._pty.master)
        self._flush()

    def _result(self, *lines: str) -> None:
        self._send(b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines))

    # -- command mode --------------------------------------------------------------------------

    def _command_input(self, data: bytes) -> None:
        if self.echo:
            self._send(data)
        self._input += data
        while (end := self._input.find(b"\r")) >= 0:
            raw = bytes(self._input[:end])
            del self._input[: end + 1]
            line = raw.replace(b"\n", b"").decode("ascii", "replace").strip()
            if not line:
                continue
            self.commands.append(line)
            self.notify()
            if not line.upper().startswith("AT"):
                LOGGER.info("v253 fake: not a command: %r", line)
                self._result("ERROR")
                continue
            self._command(line[2:])

    def _command(self, body: str) -> None:
        upper = body.upper()
        if upper.startswith("D"):
            self._dial(body[1:])
            return
        answers: list[str] = []
        for part in upper.split(";") if upper else [""]:
            reply = self._one(part.strip())
            if reply is None:
                self._result("ERROR")
                return
            if reply == ["CONNECT"]:
                self._result(*answers, "CONNECT")
                self._start_stream(part)
                return
            answers.extend(reply)
        self._result(*answers, "OK")

    def _one(self, command: str) -> list[str] | None:
        """The information lines for one command, ["CONNECT"] to stream, None for ERROR."""
        if command in ("", "Z", "&F"):
            if command == "Z":
                self._reset()
            return []
        if command in ("E0", "E1", "E"):
            self.echo = command == "E1"
            return []
        if command in ("I", "I0", "I3", "+GMM", "+GMR"):
            return [IDENTITY]
        if command == "+GMI":
            return ["U.S. Robotics"]
        if command in ("H", "H0"):
            self._hang_up()
            return []
        if command == "A":
            self.off_hook = True
            return []
        if command.startswith("+FCLASS"):
            return self._fclass(command[7:])
        if command.startswith("+V") and self.fclass != 8:
            return None
        if command.startswith("+VSM"):
            return self._vsm(command[4:])
        if command.startswith("+VLS"):
            return self._vls(command[4:])
        if command.startswith("+VTS="):
            return [] if self.off_hook else None
        if command in ("+VTR", "+VTX", "+VRX"):
            return ["CONNECT"] if self.off_hook else None
        if command.startswith("+VCID="):
            self.caller_id_on = command[6:] in ("1", "2")
            return []
        for setting in _PLAIN_SETTINGS:
            if command.startswith(setting):
                value = command[len(setting):].lstrip("=")
                return [] if all(p.strip().isdigit() for p in value.split(",") if p) else None
        return None

    def _fclass(self, rest: str) -> list[str] | None:
        if rest == "=?":
            return ["0,1,8"]
        if rest == "?":
            return [str(self.fclass)]
        if rest in ("=0", "=1", "=8"):
            self.fclass = int(rest[1:])
            return []
        return None

    def _vsm(self, rest: str) -> list[str] | None:
        if rest == "=?":
            return list(VSM_OFFERS)
        if rest == "?":
            return [f"{self.vsm},{VOICE_RATE_HZ}"]
        fields = rest.lstrip("=").split(",")
        codes = {int(offer.split(",")[0]) for offer in VSM_OFFERS}
        if len(fields) >= 2 and fields[0].isdigit() and int(fields[0]) in codes and fields[1] in (
                "7200", "8000", "11025"):
            self.vsm = int(fields[0])
            return []
        return None

    def _vls(self, rest: str) -> list[str] | None:
        if rest == "=?":
            return ["0,1"]
        if rest == "?":
            return ["1" if self.off_hook else "0"]
        if rest in ("=0", "=1"):
            if rest == "=1":
                self._go_off_hook()
            else:
                self._hang_up()
            return []
        return None

    def _go_off_hook(self) -> None:
        self.off_hook = True
        self._rings_left = 0
        self.cancel_timers()
        if self.reports_dial_tone:
            self.later(0.1, self._dial_tone)

    def _dial_tone(self) -> None:
        if self.off_hook and self._stream is None:
            self._send(bytes([_DLE]) + b"d")

    def _hang_up(self) -> None:
        self.off_hook = False
        self.notify()

    def _dial(self, rest: str) -> None:
        number = rest.strip().rstrip(";").lstrip("TP")
        if self.fclass != 8 or not number or not all(c in "0123456789*#,+" for c in number):
            self._result("ERROR")
            return
        self.off_hook = True
        self.dialled.append(number)
        self.notify()
        self.later(0.05, self._result, "OK")

    # -- ringing -------------------------------------------------------------------------------

    def _start_ringing(self, number: str, private: bool, name: str | None, rings: int) -> None:
        self._rings_left = rings
        self._ring_once(number, private, name, True)

    def _ring_once(self, number: str, private: bool, name: str | None, first: bool) -> None:
        if self._rings_left <= 0 or self.off_hook or self._pty is None:
            return
        self._rings_left -= 1
        self._result("RING")
        if first and self.caller_id_on:
            # FSK caller ID arrives in the silence after the first ring (Bellcore GR-30).
            self.later(self.ring_period_s / 3, self._caller_id, number, private, name)
        self.later(self.ring_period_s, self._ring_once, number, private, name, False)

    def _caller_id(self, number: str, private: bool, name: str | None) -> None:
        if self.off_hook:
            return
        stamp = time.localtime()
        lines = [f"DATE={stamp.tm_mon:02d}{stamp.tm_mday:02d}",
                 f"TIME={stamp.tm_hour:02d}{stamp.tm_min:02d}",
                 f"NMBR={'P' if private else number}"]
        if name is not None:
            lines.append(f"NAME={name}")
        self._send(b"\r\n" + b"".join(line.encode() + b"\r\n" for line in lines))

    # -- the voice stream ----------------------------------------------------------------------

    def _start_stream(self, command: str) -> None:
        self._stream = _Stream(transmit=command in ("+VTR", "+VTX"),
                               receive=command in ("+VTR", "+VRX"))
        self._tx_escape = False
        self.notify()
        if self._stream.receive:
            self._next_tick = self.loop.time()
            self._tick()

    def _tick(self) -> None:
        if self._stream is None or not self._stream.receive:
            return
        chunk = bytearray()
        for _ in range(SAMPLES_PER_TICK):
            sample = PATTERN[self._pattern_at]
            self._pattern_at = (self._pattern_at + 1) % len(PATTERN)
            chunk.append(sample)
            if sample == _DLE:
                chunk.append(_DLE)
        self.sent_sample_count += SAMPLES_PER_TICK
        self._send(bytes(chunk))
        # Paced against the loop's clock, not by sleeping a tick each time (no drift).
        self._next_tick += VOICE_TICK_S
        self.later(max(0.0, self._next_tick - self.loop.time()), self._tick)

    def _line_event(self, code: str) -> None:
        if self._stream is not None:
            self._send(bytes([_DLE]) + code.encode())
        elif code == "l" and self.off_hook:
            LOGGER.info("v253 fake: loop break outside a stream is not reported")

    def _stream_input(self, data: bytes) -> None:
        for index, byte in enumerate(data):
            if self._stream is None:  # the stream ended inside this read: the rest is commands
                self._command_input(data[index:])
                break
            if not self._tx_escape:
                if byte == _DLE:
                    self._tx_escape = True
                elif self._stream.transmit:
                    self.received_samples.append(byte)
                continue
            self._tx_escape = False
            if byte == _DLE and self._stream.transmit:
                self.received_samples.append(_DLE)
            elif byte in (_ETX, ord("!"), ord("^")):
                self._end_stream()
            elif byte == _CAN:
                self._output.clear()
            else:
                LOGGER.info("v253 fake: unknown <DLE> 0x%02x from the box", byte)
        self.notify()

    def _end_stream(self) -> None:
        self._stream = None
        self.cancel_timers()
        self._send(bytes([_DLE, _ETX]))
        self._result("OK")
        self.notify()

    @property
    def streaming(self) -> bool:
        return self._stream is not None
