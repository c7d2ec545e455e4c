"""One AT port driven from asyncio: one command in flight, per-command timeouts, unsolicited
results on a queue, and modem resets with backoff when the modem stops answering.

`AtChannel(reader, writer, ...)` wraps an asyncio stream pair (from serial_asyncio_fast's
`open_serial_connection`) and an `AtCodec`; it must be made inside a running loop.

- `await command(line, *, timeout_s=DEFAULT_TIMEOUT_S, prefix=None) -> CommandCompleted`: raises
  `AtCommandFailed` (with `.completion`) when the final result is not a success (ERROR,
  +CME/+CMS ERROR, NO CARRIER, BUSY, ...), `AtTimeout` when none came in time, `AtPortClosed`
  when the port is gone (also promptly for a command already waiting).
- `await command_with_pdu(line, pdu, *, timeout_s=LONG_TIMEOUT_S)`: +CMGS/+CMGW: waits for the
  `> ` prompt, writes the PDU and Ctrl-Z, returns the completion.
- `unsolicited`: an `asyncio.Queue[UnsolicitedResult]`, unless `on_unsolicited` is given.
- `on_data(bytes)`: raw bytes in data mode (after CONNECT); `write_data()`, `leave_data_mode()`.
- `on_closed(reason)`: called once when the port is lost or closed; `await wait_closed()`.

The shape is zigpy-znp's `api.py::request`: the waiter exists before the write, one lock keeps
one command outstanding, the wait runs under `asyncio.timeout`, and the waiter is removed in
`finally` so a timeout leaks nothing. A modem answers in order, so the late answer of a command we
gave up on comes before anything we send next: the next command is preceded by a bare `AT` and a
short quiet period, and stray final results are dropped, so no command ever takes another's
answer. `ResetPolicy` (pure, `now` passed in) turns repeated timeouts into `AT+CFUN=1,1` with
exponential backoff between resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hal.modem.at import (
    AtCodec,
    AtError,
    CommandCompleted,
    DataReceived,
    GarbageDiscarded,
    PromptReceived,
    StrayResultReceived,
    UnsolicitedResult,
)

LOGGER = logging.getLogger(__name__)

# chan_quectel's at_queue.h timeouts: 1 s for quick queries, 5 s by default (wdoekes#50: 2 s for
# ATA was too short), 40 s for hang-up and an SMS body, which wait on the network.
SHORT_TIMEOUT_S = 1.0
DEFAULT_TIMEOUT_S = 5.0
LONG_TIMEOUT_S = 40.0
# After a timeout: how long the line must stay free of stray final results before the next
# command goes (a modem answers a bare AT within milliseconds).
RESYNC_QUIET_S = 0.2
RESYNC_MAX_WAITS = 25  # bounds the quiet wait when a modem keeps sending results
READ_CHUNK_BYTES = 4096
UNSOLICITED_QUEUE_MAX = 1000  # a modem spewing URCs nobody reads loses its oldest, not memory
RESET_COMMAND = "AT+CFUN=1,1"  # 27.007 §8.2: full functionality, reset the MT first

# ResetPolicy defaults: three commands in a row unanswered mean a stuck modem; resets at most
# every 10 s at first, doubling to every 10 minutes while the modem keeps failing.
TIMEOUTS_BEFORE_RESET = 3
RESET_FIRST_DELAY_S = 10.0
RESET_MAX_DELAY_S = 600.0


class AtCommandFailed(AtError):
    """The modem answered with a final result that is not a success."""

    def __init__(self, completion: CommandCompleted) -> None:
        super().__init__(f"{completion.command!r} → {completion.final!r}")
        self.completion = completion


class AtTimeout(AtError):
    """No final result within the command's timeout."""

    def __init__(self, command: str, timeout_s: float) -> None:
        super().__init__(f"{command!r}: no answer within {timeout_s:g} s")
        self.command = command
        self.timeout_s = timeout_s


class AtPortClosed(AtError):
    """The port is gone (unplugged, EIO) or was closed; the reason says which."""


@dataclass
class ResetPolicy:
    """When to reset a modem that stopped answering, without ever looping tightly.

    `timeouts_before_reset` consecutive timeouts ask for a reset; after a reset the next one is
    allowed `delay` seconds later, the delay doubling from `first_delay_s` to `max_delay_s` while
    resets keep following each other, and starting again from `first_delay_s` once the modem went
    `max_delay_s` past its window without needing one. An answer (any final result) clears the
    count of timeouts.
    """

    timeouts_before_reset: int = TIMEOUTS_BEFORE_RESET
    first_delay_s: float = RESET_FIRST_DELAY_S
    max_delay_s: float = RESET_MAX_DELAY_S
    timeouts: int = field(default=0, init=False)
    delay_s: float = field(default=0.0, init=False)
    last_reset_at: float | None = field(default=None, init=False)

    @property
    def next_reset_allowed_at(self) -> float | None:
        return None if self.last_reset_at is None else self.last_reset_at + self.delay_s

    def command_answered(self) -> None:
        self.timeouts = 0

    def command_timed_out(self, now: float) -> bool:
        """Count a timeout; True when the modem should be reset now."""
        self.timeouts += 1
        if self.timeouts < self.timeouts_before_reset:
            return False
        allowed_at = self.next_reset_allowed_at
        if allowed_at is not None and now < allowed_at:
            return False
        assert self.last_reset_at is None or allowed_at is not None
        if allowed_at is None or now >= allowed_at + self.max_delay_s:
            self.delay_s = self.first_delay_s
        else:
            self.delay_s = min(self.delay_s * 2, self.max_delay_s)
        self.last_reset_at = now
        self.timeouts = 0
        return True


class AtChannel:
    """An AT port's commands and unsolicited results over an asyncio stream pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        name: str = "modem",
        on_unsolicited: Callable[[UnsolicitedResult], None] | None = None,
        on_data: Callable[[bytes], None] | None = None,
        on_closed: Callable[[str], None] | None = None,
        reset_policy: ResetPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.unsolicited: asyncio.Queue[UnsolicitedResult] = asyncio.Queue(
            UNSOLICITED_QUEUE_MAX)
        self.reset_policy = reset_policy if reset_policy is not None else ResetPolicy()
        self.resets_sent = 0
        self.garbage_events = 0
        self.close_reason: str | None = None
        self._reader = reader
        self._writer = writer
        self._on_unsolicited = on_unsolicited
        self._on_data = on_data
        self._on_closed = on_closed
        self._clock = clock
        self._codec = AtCodec()
        self._lock = asyncio.Lock()
        self._waiter: asyncio.Future[CommandCompleted] | None = None
        self._prompt_waiter: asyncio.Future[None] | None = None
        self._needs_resync = False
        self._last_final_at = float("-inf")
        self._closed = asyncio.Event()
        self._read_task = asyncio.get_running_loop().create_task(
            self._read_loop(), name=f"at-read-{name}")

    # ------------------------------------------------------------------ state for callers/tests

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def waiters(self) -> int:
        """Futures waiting for the modem (0 when no command is in flight)."""
        return (self._waiter is not None) + (self._prompt_waiter is not None)

    @property
    def data_mode(self) -> bool:
        return self._codec.data_mode

    # ------------------------------------------------------------------ commands

    async def command(self, line: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                      prefix: str | None = None) -> CommandCompleted:
        """Send one command and return its successful completion (see the module docstring)."""
        return self._succeeded(await self._command(line, None, timeout_s, prefix))

    async def command_with_pdu(self, line: str, pdu: bytes, *, timeout_s: float = LONG_TIMEOUT_S,
                               prefix: str | None = None) -> CommandCompleted:
        """+CMGS/+CMGW: the command, the `> ` prompt, then `pdu` and Ctrl-Z (27.005 §3.5.1)."""
        return self._succeeded(await self._command(line, pdu, timeout_s, prefix))

    async def _command(self, line: str, pdu: bytes | None, timeout_s: float,
                       prefix: str | None) -> CommandCompleted:
        async with self._lock:
            self._check_open()
            try:
                if self._needs_resync:
                    await self._resync(min(SHORT_TIMEOUT_S, timeout_s))
                completion = await self._exchange(line, pdu, timeout_s, prefix)
            except AtTimeout:
                if self.reset_policy.command_timed_out(self._clock()):
                    await self._reset(min(SHORT_TIMEOUT_S, timeout_s))
                raise
            self.reset_policy.command_answered()
            return completion

    @staticmethod
    def _succeeded(completion: CommandCompleted) -> CommandCompleted:
        if not completion.ok:
            raise AtCommandFailed(completion)
        return completion

    async def _exchange(self, line: str, pdu: bytes | None, timeout_s: float,
                        prefix: str | None) -> CommandCompleted:
        loop = asyncio.get_running_loop()
        # The waiters exist before the write: an answer read in the same loop turn finds them.
        done: asyncio.Future[CommandCompleted] = loop.create_future()
        prompt: asyncio.Future[None] | None = loop.create_future() if pdu is not None else None
        self._waiter, self._prompt_waiter = done, prompt
        try:
            self._check_open()  # the port may have gone while this command waited for the lock
            async with asyncio.timeout(timeout_s):
                self._write(self._codec.send_command(line, prefix=prefix))
                if prompt is not None and pdu is not None:
                    await asyncio.wait((prompt, done), return_when=asyncio.FIRST_COMPLETED)
                    if prompt.done() and not done.done():
                        self._write(self._codec.send_pdu(pdu))
                return await done
        except TimeoutError:
            self._codec.cancel_command()
            self._needs_resync = True
            LOGGER.warning("%s: %r got no answer within %g s", self.name, line, timeout_s)
            raise AtTimeout(line, timeout_s) from None
        finally:
            self._waiter = self._prompt_waiter = None
            if prompt is not None and not prompt.done():
                prompt.cancel()

    async def _resync(self, timeout_s: float) -> None:
        # The command that timed out may still be answered; the modem answers in order, so its
        # late result comes before the answer to this bare AT. Once a result arrived, wait until
        # no other (stray) one follows for RESYNC_QUIET_S: then the next answer is the next
        # command's.
        completion = await self._exchange("AT", None, timeout_s, "")
        LOGGER.debug("%s: resynchronised (%s)", self.name, completion.final)
        for _ in range(RESYNC_MAX_WAITS):
            quiet_for_s = self._clock() - self._last_final_at
            if quiet_for_s >= RESYNC_QUIET_S:
                break
            await asyncio.sleep(RESYNC_QUIET_S - quiet_for_s)
        else:
            LOGGER.warning("%s: results keep coming after a resync; carrying on", self.name)
        self._needs_resync = False

    async def _reset(self, timeout_s: float) -> None:
        LOGGER.warning("%s: %d commands unanswered; resetting the modem (%s), next reset not "
                       "before %+.0f s", self.name, self.reset_policy.timeouts_before_reset,
                       RESET_COMMAND, self.reset_policy.delay_s)
        self.resets_sent += 1
        # The modem may restart before it answers, or vanish from USB and come back: either way
        # the answer does not matter, and the next command resynchronises first.
        with contextlib.suppress(AtTimeout):
            await self._exchange(RESET_COMMAND, None, timeout_s, "")
        self._needs_resync = True

    # ------------------------------------------------------------------ data mode

    def write_data(self, data: bytes) -> None:
        """Raw bytes to the modem in data mode (a V.253 voice stream, DLE-shielded already)."""
        self._check_open()
        self._write(data)

    def leave_data_mode(self, unconsumed: bytes = b"") -> None:
        """Back to commands; `unconsumed` is data that was not data (see AtCodec)."""
        self._codec.leave_data_mode(unconsumed)
        self._dispatch()

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Close the port; a command still waiting fails with AtPortClosed."""
        if not self.closed:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._read_task
        await self.wait_closed()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _check_open(self) -> None:
        if self.closed:
            raise AtPortClosed(f"{self.name}: port closed ({self.close_reason})")

    def _write(self, data: bytes) -> None:
        LOGGER.debug("%s > %r", self.name, data)
        self._writer.write(data)

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        reason = "closed"
        try:
            while True:
                data = await self._reader.read(READ_CHUNK_BYTES)
                if not data:
                    reason = "end of file"
                    return
                LOGGER.debug("%s < %r", self.name, data)
                self._codec.receive_data(data)
                self._dispatch()
        except asyncio.CancelledError:
            reason = "closed"
            raise
        except Exception as error:  # a vanished port: SerialException / OSError (EIO)
            reason = f"{type(error).__name__}: {error}"
        finally:
            self._lost(reason)

    def _lost(self, reason: str) -> None:
        self.close_reason = reason
        self._closed.set()
        level = logging.INFO if reason == "closed" else logging.WARNING
        LOGGER.log(level, "%s: port lost (%s)", self.name, reason)
        error = AtPortClosed(f"{self.name}: port lost ({reason})")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if self._prompt_waiter is not None and not self._prompt_waiter.done():
            self._prompt_waiter.cancel()
        with contextlib.suppress(Exception):
            self._writer.close()
        if self._on_closed is not None:
            try:
                self._on_closed(reason)
            except Exception:
                LOGGER.exception("%s: on_closed failed", self.name)

    def _dispatch(self) -> None:
        while (event := self._codec.next_event()) is not None:
            if isinstance(event, CommandCompleted):
                self._last_final_at = self._clock()
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_result(event)
            elif isinstance(event, UnsolicitedResult):
                self._deliver(event)
            elif isinstance(event, PromptReceived):
                if self._prompt_waiter is not None and not self._prompt_waiter.done():
                    self._prompt_waiter.set_result(None)
            elif isinstance(event, DataReceived):
                self._data(event.data)
            elif isinstance(event, StrayResultReceived):
                self._last_final_at = self._clock()
            elif isinstance(event, GarbageDiscarded):
                self.garbage_events += 1

    def _deliver(self, event: UnsolicitedResult) -> None:
        if self._on_unsolicited is not None:
            try:
                self._on_unsolicited(event)
            except Exception:
                LOGGER.exception("%s: unsolicited handler failed on %r", self.name, event.line)
            return
        if self.unsolicited.full():
            dropped = self.unsolicited.get_nowait()
            LOGGER.warning("%s: unsolicited queue full; dropped %r", self.name, dropped.line)
        self.unsolicited.put_nowait(event)

    def _data(self, data: bytes) -> None:
        if self._on_data is None:
            LOGGER.debug("%s: %d data bytes with no data handler", self.name, len(data))
            return
        try:
            self._on_data(data)
        except Exception:
            LOGGER.exception("%s: data handler failed", self.name)
