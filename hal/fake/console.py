"""`linebox dev fake-modem`: a fake modem for a developer's terminal.

It prints the port(s) to put in a `trunks` entry, then reads simple commands on standard input
(`ring +79161234567`, `hangup`, `sms +79161234567 текст`, `help`) and plays them as the network,
until Ctrl-C (or end of input, when the terminal is not interactive and stdin is closed, it
keeps running until SIGINT/SIGTERM).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .registry import FAKE_MODEMS

LOGGER = logging.getLogger(__name__)

HELP = """commands:
  ring NUMBER [private]   an incoming call (RING and caller ID until answered or hung up)
  answer                  the far end of the box's outgoing call picks up
  hangup [CAUSE]          the far end hangs up (TS 24.008 cause, 16 normal, 17 busy)
  dtmf DIGIT              the far end presses a key
  sms NUMBER TEXT...      an SMS arrives (Cyrillic and long texts work)
  signal RSSI             signal strength 0-31 (99 unknown)
  reg STAT                registration: 0 none, 1 home, 2 searching, 3 denied, 5 roaming
  unplug | replug         the USB device goes away / comes back (maybe on another pts)
  silent                  the firmware hangs: nothing is answered until a replug
  garbage TEXT            raw bytes on the AT port
  commands                what the box sent so far
  help | quit"""

# each console word → the modem's method names that do it, first one present wins
ACTIONS: dict[str, tuple[str, ...]] = {
    "answer": ("remote_answers",),
    "hangup": ("remote_hangs_up", "far_end_hangs_up"),
    "dtmf": ("remote_sends_dtmf", "send_dtmf"),
    "signal": ("set_signal",),
    "reg": ("set_registration",),
    "unplug": ("unplug",),
    "replug": ("replug",),
    "silent": ("go_silent",),
}


def run_fake_modem(kind: str, *, imei: str | None, link: str | None, stdin: TextIO,
                   stdout: TextIO) -> int:
    """Runs the fake until interrupted; 0 on a clean stop."""
    options: dict[str, Any] = {"link": Path(link) if link else None}
    if imei:
        options["imei"] = imei
    modem = FAKE_MODEMS[kind](**options)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with modem:
            _print_ports(modem, kind, stdout)
            for line in stdin:
                if not _perform(modem, line, stdout):
                    return 0
            threading.Event().wait()  # stdin closed: run until a signal
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_ports(modem: Any, kind: str, stdout: TextIO) -> None:
    print(f"fake {kind} modem", file=stdout)
    print(f"port: {modem.port}", file=stdout)
    with contextlib.suppress(AttributeError):
        print(f"audio_port: {modem.audio_port}", file=stdout)
    with contextlib.suppress(AttributeError):
        print(f"imei: {modem.imei}", file=stdout)
    print("type help for commands, Ctrl-C to stop", file=stdout, flush=True)


def _perform(modem: Any, line: str, stdout: TextIO) -> bool:
    """One console line; False when the developer asked to quit."""
    try:
        words = shlex.split(line)
    except ValueError as error:
        print(f"? {error}", file=stdout, flush=True)
        return True
    if not words:
        return True
    word, args = words[0].lower(), words[1:]
    try:
        if word in ("quit", "exit"):
            return False
        if word == "help":
            print(HELP, file=stdout)
        elif word == "ring" and args:
            modem.ring(args[0], private=args[1:] == ["private"])
        elif word == "sms" and len(args) >= 2:
            indices = modem.deliver_text_sms(args[0], " ".join(args[1:]))
            print(f"stored at {indices}", file=stdout)
        elif word == "garbage" and args:
            modem.inject_garbage(" ".join(args).encode() + b"\r\n")
        elif word == "commands":
            print("\n".join(modem.commands), file=stdout)
        elif word in ACTIONS:
            _method(modem, ACTIONS[word])(*[_number(arg) for arg in args])
        else:
            print(f"? {line.strip()} (help lists the commands)", file=stdout)
    except (RuntimeError, ValueError, TypeError, AttributeError) as error:
        print(f"! {error}", file=stdout)
    stdout.flush()
    return True


def _method(modem: Any, names: tuple[str, ...]) -> Callable[..., object]:
    for name in names:
        method = getattr(modem, name, None)
        if method is not None:
            return method  # type: ignore[no-any-return]
    raise AttributeError(f"this modem cannot {names[0].replace('_', ' ')}")


def _number(text: str) -> int | str:
    return int(text) if text.isdigit() else text
