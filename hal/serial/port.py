"""Opening a modem's serial port, listing the ports a modem may have moved to, and asking a port
which modem is behind it (by IMEI).

- `open_port(path)` → (reader, writer): pyserial-asyncio-fast at 115200 8N1, no flow control,
  locked exclusively so two users in the box (or two probes) never share a port.
- `candidate_paths(globs)`: /dev/serial/by-id/*, /dev/ttyUSB*, /dev/ttyACM*, one path per device.
- `await probe_imei(path)` → `ProbedPort(path, channel, imei, answered)`: the port opened with an
  `AtChannel` and asked `AT+CGSN` (27.007 §5.4); the caller keeps or closes the channel.
- `Backoff(first_s, max_s)`: delays doubling from `first_s` to `max_s` (pure).
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import serial
import serial_asyncio_fast

from hal.modem.channel import SHORT_TIMEOUT_S, AtChannel, AtCommandFailed, AtPortClosed, AtTimeout

LOGGER = logging.getLogger(__name__)

BAUD_RATE = 115200  # USB modems ignore it; a UART module (SIM7600 on a HAT) is at 115200 by default
# by-id first: its names say which interface a port is (…-if02-port0), ttyUSB names say nothing.
CANDIDATE_GLOBS = ("/dev/serial/by-id/*", "/dev/ttyUSB*", "/dev/ttyACM*")
# 3GPP TS 23.003 §6.2.1: an IMEI is 15 digits (an IMEISV 16); some modems answer 14 without the
# check digit, some quote it or put it after `+CGSN: `.
IMEI_RE = re.compile(r"(?<!\d)(\d{14,16})(?!\d)")


@dataclass
class Backoff:
    """Delays between attempts: first_s, doubling, at most max_s; `reset()` after a success."""

    first_s: float = 0.5
    max_s: float = 5.0
    _next_s: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        delay = self._next_s or self.first_s
        self._next_s = min(delay * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next_s = 0.0


async def open_port(path: str, *, baudrate: int = BAUD_RATE, rtscts: bool = False,
                    exclusive: bool = True,
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open `path` 8N1 (raises OSError / serial.SerialException when it is absent or busy)."""
    return await serial_asyncio_fast.open_serial_connection(
        url=path, baudrate=baudrate, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
        stopbits=serial.STOPBITS_ONE, rtscts=rtscts, xonxoff=False, exclusive=exclusive)


async def open_channel(path: str, *, name: str | None = None, baudrate: int = BAUD_RATE,
                       rtscts: bool = False) -> AtChannel:
    reader, writer = await open_port(path, baudrate=baudrate, rtscts=rtscts)
    return AtChannel(reader, writer, name=name or path)


def candidate_paths(globs: Iterable[str] = CANDIDATE_GLOBS) -> list[str]:
    """Existing serial device paths, one per device (a by-id link hides the ttyUSB it names)."""
    seen: set[str] = set()
    paths: list[str] = []
    for pattern in globs:
        for path in sorted(glob.glob(pattern)):
            device = os.path.realpath(path)
            if device in seen or not os.path.exists(device):
                continue
            seen.add(device)
            paths.append(path)
    return paths


def parse_imei(info: Iterable[str]) -> str | None:
    for line in info:
        match = IMEI_RE.search(line)
        if match:
            return match.group(1)
    return None


@dataclass
class ProbedPort:
    """A port opened and asked for its IMEI. `answered`: it spoke AT (an ERROR to +CGSN counts:
    some sticks lose their IMEI, wdoekes#171); `imei` is None when it had none to give."""

    path: str
    channel: AtChannel
    imei: str | None
    answered: bool


async def probe_imei(path: str, *, timeout_s: float = SHORT_TIMEOUT_S,
                     name: str | None = None) -> ProbedPort | None:
    """Open `path` and ask AT+CGSN; None when it cannot be opened (absent, busy, not a tty)."""
    try:
        channel = await open_channel(path, name=name)
    except (OSError, ValueError) as error:  # serial.SerialException is an OSError
        LOGGER.debug("%s: cannot open (%s)", path, error)
        return None
    try:
        done = await channel.command("AT+CGSN", timeout_s=timeout_s)
        return ProbedPort(path=path, channel=channel, imei=parse_imei(done.info), answered=True)
    except AtCommandFailed as failure:
        LOGGER.info("%s: AT+CGSN → %s (no IMEI)", path, failure.completion.final)
        return ProbedPort(path=path, channel=channel, imei=None, answered=True)
    except (AtTimeout, AtPortClosed) as error:
        LOGGER.debug("%s: no AT answer (%s)", path, error)
        return ProbedPort(path=path, channel=channel, imei=None, answered=False)
