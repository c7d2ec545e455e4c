"""The daemon: sockets, timers, signals and the control socket around the sans-IO gateway core.

Everything here is I/O. UDP datagrams and framed TCP messages go into `Gateway.receive`; what the
core wants sent is flushed right after, and one `loop.call_at` is re-armed to the core's next
timer (the aioquic `transmit` shape). Finished calls are written to SQLite in one transaction per
second. The control socket (a Unix socket beside the database) answers `linebox status` and,
later, the web UI; each request is one JSON line, each answer one JSON line.

Nothing that waits for the disk, the database or the network runs on the event loop once it
serves SIP: writes go to the recorder's thread, reads (configuration, greetings, the 30-day
conversion figures) to a thread with a connection of its own, trunk host look-ups to another,
and what calls need from files (prompts, greetings) is in memory before the first call.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import json
import logging
import os
import queue
import signal
import socket
import sqlite3
import threading
import time
import urllib.request
import zoneinfo
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from . import control_modems
from .agents import StatusChanged
from .clock import ClockStepped, WallClock
from .core import CallRecorder, Gateway, WebhookRequested, write_record
from .core.events import (
    CallAnswered,
    DatagramToSend,
    FailoverSwitched,
    LineStateChanged,
    MenuGreetingRecorded,
    ModemCommandRequested,
    RecordingAudio,
    RecordingFinished,
    RecordingStarted,
    RtpToSend,
    SmsArrived,
)
from .hardware import BoxHardware
from .mailer import Mailer
from .media import prompts
from .media.audio import AudioError, to_pcm8k, wav_bytes
from .media.ports import DEFAULT_FIRST_PORT, DEFAULT_LAST_PORT, PortRange
from .media.recorder_files import RecordingFiles
from .modems import DriverFactory, ModemRuntime, default_driver
from .reports import conversion_by_manager
from .routing.tollguard import OutboundCallRefused
from .sip.transaction import Address
from .store import Config, ConfigError, Store
from .store.backup import backup_if_due
from .store.clock_times import last_call_rowid, shift_after_step
from .store.db import BUSY_TIMEOUT_MS
from .store.durable import (
    live_registrations,
    mark_cut_off_calls,
    record_answered_calls,
    save_registrations,
)
from .store.recovery import NOTICE_CUT_OFF, add_box_notice
from .transport.tcp import TcpLimits, TcpTransport, descriptor_reserve
from .transport.udp import UdpEndpoint
from .update import Updater, update_dir_for, web_url_from_env
from .voicemail import VoicemailMessage

LOGGER = logging.getLogger(__name__)

RECORD_FLUSH_INTERVAL_S = 1.0
CLOCK_STEP_SETTLE_S = 2.0  # records converted before a clock step reach the disk first
# The recorder (issue 16): records waiting for a database that cannot be written (a full
# disk) are retried this often, and at most this many are kept in memory meanwhile.
RETRY_INTERVAL_S = 5.0
MAX_WAITING_RECORDS = 20_000
# Past MAX_WAITING_RECORDS these go first, the oldest of each kind, in this order: call records
# are the bulk; security and line events only once no call record is left to drop.
DROPPED_FIRST = ("call", "security", "line_event")
# Received SMS and voicemail messages exist nowhere else (the SIM is cleared, the caller is
# gone): never dropped to make room for other records, only past their own bound (a message's
# audio is up to ~2 MB of memory; a text a few hundred bytes).
MAX_WAITING_OF_KIND = {"sms": 2_000, "voicemail": 32}
RECORD_KIND_NAMES = {"call": "call records", "security": "security events",
                     "line_event": "line events", "sms": "SMS", "voicemail": "voicemail messages"}
MAX_RECORDS_PER_COMMIT = 2_000
# How long the writer gathers call records after the first before it writes them (group commit,
# as PostgreSQL's commit_delay): each commit costs a WAL write and an fsync whatever it holds, and
# at 400 calls/s — two records a call, answered and ended — the writer thread spent ~400 µs of
# CPU per call committing one or two records at a time. A caller's 200 OK waits this much
# longer for its record; a person does not hear 5 ms.
GROUP_COMMIT_WINDOW_S = 0.005
# How long a call's datagrams may wait for its record once it is answered (`_hold_for`): as
# long as the writer itself waits for a lock (SQLite's busy timeout), past which its write has
# failed and the answer goes anyway, the record waiting in memory. A commit takes milliseconds
# on a quiet box, but under load commits took 0.4-1.7 s on a shared two-core machine (an SD
# card's writes stall too): with a 250 ms cap the callers had their 200 OK before their records
# were on disk, and a kill then lost up to 51 answered calls (issue 16: on disk once answered).
ANSWER_RECORD_WAIT_S = BUSY_TIMEOUT_MS / 1000
# At most this many datagrams wait for records at once; past it the call that has waited
# longest goes out first (a burst of answers on a slow card must not grow memory without bound).
MAX_HELD_DATAGRAMS = 1024
CONFIG_POLL_INTERVAL_S = 2.0
BACKUP_CHECK_INTERVAL_S = 600.0  # whether today's automatic backup is made yet
GC_CHECK_INTERVAL_S = 60.0
DAILY_CHECK_INTERVAL_S = 60.0
WEBHOOK_MAX_ANSWER_BYTES = 64 * 1024
CONVERSION_WINDOW_S = 30 * 24 * 3600.0  # rank: auto ranks by the last 30 days
GC_FULL_MAX_INTERVAL_S = 600.0
UDP_RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
FAILOVER_HISTORY = 20  # the latest switches `linebox status` shows
LED_REFRESH_INTERVAL_S = 0.5
MAX_GREETING_S = 120.0
# How soon a greeting uploaded in the web UI plays (the upload does not change the
# configuration revision: the greetings table is polled on its own).
GREETING_POLL_INTERVAL_S = 2.0
# At shutdown the BYEs and the un-REGISTER get this long to be written before sockets close.
SHUTDOWN_SEND_TIMEOUT_S = 2.0

T = TypeVar("T")


def control_socket_path(db_path: str | Path) -> Path:
    """The control socket lives beside the database: every subcommand given the same --db
    finds the daemon that runs on it."""
    return Path(db_path).with_suffix(".sock")


def sip_call_id(data: bytes) -> bytes | None:
    """The Call-ID of the SIP message `data` (full or compact form), None without one: which
    call an outgoing datagram belongs to, looked at only while an answer waits (`_send`)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    at = head.find(b"\r\nCall-ID:")  # how our own messages spell it
    if at >= 0:
        return head[at + 10:].split(b"\r\n", 1)[0].strip()
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"call-id", b"i"):
            return value.strip()
    return None


class SqliteRecorder(CallRecorder):
    """Writes records from a thread of its own, so the event loop never waits for SQLite: with
    synchronous=FULL a commit waits for the disk (and now and then for a WAL checkpoint), which
    on a busy box or slow flash would stall SIP for long enough to set off retransmissions.

    Everything is handed over at once and written at once (issue 16: a crash must not lose what
    waited for a once-a-second batch); what queued up meanwhile goes in the same transaction
    (group commit), so under load a commit serves many calls. A call is written when it is
    answered (`call_answered`, 'in_progress') and again when it ends. When the database cannot
    be written (a full disk, a lock held too long) records wait in memory — at most
    MAX_WAITING_RECORDS, the oldest calls dropped beyond (`_bounded`) — and are retried every
    RETRY_INTERVAL_S; the condition is logged once, with its end, and `problem` says it."""

    def __init__(self, db_path: str | Path, *, wall_offset_s: float) -> None:
        self.db_path = Path(db_path)
        self.wall_offset_s = wall_offset_s
        # Set by the daemon as it reads the clock: rows converted while the kernel calls the
        # wall clock unsynchronised are marked (calls.clock_unsynced, schema version 14).
        self.clock_synchronised = True
        self._queue: queue.Queue[list[Any] | None] = queue.Queue()
        self._line_states: dict[str, str] = {}  # the state each line's last event gave it
        # Set by the writer thread, read by the loop (a str assignment is atomic): why records
        # are waiting in memory, or "" while the database is written.
        self.problem = ""
        self.waiting = 0  # records waiting in memory for the database
        self.dropped = 0  # records dropped from memory beyond their bounds (_bounded)
        self.dropped_by_kind: dict[str, int] = {}
        self._thread = threading.Thread(target=self._write_loop, name="call-records",
                                        daemon=True)
        self._thread.start()

    def record(self, call: dict[str, object], legs: list[dict[str, object]]) -> None:
        self._queue.put([(self._to_wall(call), [self._to_wall(leg) for leg in legs])])

    def call_answered(self, call: dict[str, object], legs: list[dict[str, object]],
                      done: Callable[[], None] | None = None) -> None:
        """Keep a call just answered; `done()` is called (in the writer thread) once it is
        committed, or once writing it failed (it then waits in memory like the others)."""
        self._queue.put([("answered", self._to_wall(call), [self._to_wall(leg) for leg in legs],
                          done)])

    def registrations(self, changes: dict[str, list[dict[str, object]]]) -> None:
        """The bindings of extensions whose registrations changed (wall-clock rows)."""
        self._queue.put([("bindings", changes)])

    def _to_wall(self, row: dict[str, object]) -> dict[str, object]:
        # The core runs on the monotonic clock; records carry Unix time.
        out = dict(row)
        for key, value in row.items():
            if key.endswith("_at") and isinstance(value, float):
                out[key] = value + self.wall_offset_s
        if not self.clock_synchronised:
            out["clock_unsynced"] = 1  # a call's column; a leg's row ignores it
        return out

    def callback_state(self, call_id: str, state: str) -> None:
        # After the call's own record in the same queue: the row exists when this is written.
        self._queue.put([("callback", call_id, state)])

    def callback_pending(self, request: dict[str, object]) -> None:
        self._queue.put([("pending", request)])

    def voicemail(self, message: VoicemailMessage, wall_time: float) -> None:
        self._queue.put([("voicemail", message, wall_time)])

    def flush(self) -> None:
        """Everything is handed to the writer as it comes; kept for the power-fail input."""

    def security_event(self, event: OutboundCallRefused) -> None:
        self._queue.put([("security", event, self.wall_offset_s)])

    def sms(self, message: SmsArrived) -> None:
        # An SMS exists nowhere else any more (the driver deleted it from the SIM once it was
        # handed over).
        self._queue.put([("sms", message)])

    def sms_sent(self, line: str, number: str, text: str) -> None:
        self._queue.put([("sms_out", line, number, text, time.time())])

    def line_event(self, event: LineStateChanged | FailoverSwitched) -> None:
        """A line's state change or a failover switch, in wall-clock time."""
        fields: dict[str, Any] = {"at": event.at + self.wall_offset_s, "reason": event.reason}
        if isinstance(event, LineStateChanged):
            fields.update(kind="state", line=event.name, state=event.state,
                          old=self._line_states.get(event.name))
            self._line_states[event.name] = event.state
        else:
            fields.update(kind="failover", line=event.new, old=event.old)
        self._queue.put([("line_event", fields)])

    def record_status(self, change: StatusChanged) -> None:
        """Agent statuses must survive a restart, and an admin expects `linebox status`
        elsewhere to agree."""
        self._queue.put([("status", change, self.wall_offset_s)])

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is pending and stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _write_loop(self) -> None:
        store: Store | None = None
        waiting: list[Any] = []
        stop = False
        try:
            while not stop:
                try:
                    batch = self._queue.get(timeout=RETRY_INTERVAL_S if waiting else None)
                except queue.Empty:
                    batch = []
                items: list[Any] = []
                # Group commit: call records wait up to GROUP_COMMIT_WINDOW_S after the first
                # for others to share their transactions; anything else (a status, an SMS, a
                # voicemail message, a binding) is written at once, with what has gathered.
                gather_until = time.monotonic() + GROUP_COMMIT_WINDOW_S
                calls_only = True
                while batch is not None:
                    items.extend(batch)
                    if len(items) >= MAX_RECORDS_PER_COMMIT:
                        break
                    calls_only = calls_only and all(_record_kind(item) == "call"
                                                    for item in batch)
                    wait_s = max(0.0, gather_until - time.monotonic()) if calls_only else 0.0
                    try:
                        batch = (self._queue.get(timeout=wait_s) if wait_s > 0
                                 else self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = batch is None
                if store is None:
                    store = self._open(waiting + items)
                waiting = (self._write(store, waiting + items) if store is not None
                           else waiting + items)
                for item in items:  # the answers held for these records may go now
                    if item and item[0] == "answered" and item[3] is not None:
                        item[3]()
                waiting = self._bounded(waiting)
        finally:
            if waiting:
                LOGGER.error("%d records could not be written before the stop", len(waiting))
            if store is not None:
                store.close()

    def _open(self, items: list[Any]) -> Store | None:
        try:
            return Store.open(self.db_path)
        except Exception as exc:
            self._failed(exc, items)
            return None

    def _bounded(self, waiting: list[Any]) -> list[Any]:
        """`waiting` within its bounds: the oldest call records dropped first, SMS and voicemail
        only past their own bound; bindings, statuses and callback items never (issue 16)."""
        self.waiting = len(waiting)
        if len(waiting) <= min(MAX_WAITING_RECORDS, *MAX_WAITING_OF_KIND.values()):
            return waiting  # within every bound (the usual case: nothing waits)
        kinds = [_record_kind(item) for item in waiting]
        drop: set[int] = set()
        dropped: dict[str, int] = {}
        for kind, bound in MAX_WAITING_OF_KIND.items():
            of_kind = [i for i, k in enumerate(kinds) if k == kind]
            oldest = of_kind[:max(0, len(of_kind) - bound)]
            if oldest:
                drop.update(oldest)
                dropped[kind] = len(oldest)
        excess = len(waiting) - len(drop) - MAX_WAITING_RECORDS
        for kind in DROPPED_FIRST:
            if excess <= 0:
                break
            oldest = [i for i, k in enumerate(kinds) if k == kind][:excess]
            if oldest:
                drop.update(oldest)
                dropped[kind] = len(oldest)
                excess -= len(oldest)
        if not drop:
            return waiting
        for kind, count in dropped.items():
            # Call records: said once (under load they are dropped at every batch); anything
            # else each time, with its count, so no SMS or message is lost unsaid.
            if kind != "call" or not self.dropped_by_kind.get(kind):
                LOGGER.error("records wait for the database beyond their bound: the oldest %d "
                             "%s dropped from memory (%d so far)", count,
                             RECORD_KIND_NAMES.get(kind, kind),
                             self.dropped_by_kind.get(kind, 0) + count)
            self.dropped_by_kind[kind] = self.dropped_by_kind.get(kind, 0) + count
        self.dropped += len(drop)
        kept = [item for i, item in enumerate(waiting) if i not in drop]
        self.waiting = len(kept)
        return kept

    def _failed(self, exc: BaseException, items: list[Any]) -> None:
        """Said once per spell of failures, not at every retry (a full disk lasts)."""
        problem = f"{type(exc).__name__}: {exc}"
        if not self.problem:
            LOGGER.error("cannot write to the database %s (%s): %d records wait in memory "
                         "(at most %d) and are written when it works again", self.db_path,
                         problem, len(items), MAX_WAITING_RECORDS)
        self.problem = problem

    def _write(self, store: Store, batch: list[Any]) -> list[Any]:
        """Write `batch`; what is left to retry (nothing when all went well)."""
        try:
            left = self._write_all(store, batch)
        except Exception as exc:  # left: every item not yet committed
            left = getattr(exc, "left", batch)
            self._failed(exc, left)
            return left
        if self.problem:
            LOGGER.warning("the database is written again; %d records that waited in memory "
                           "are on disk", len(batch))
            self.problem = ""
        return left

    @staticmethod
    def _write_all(store: Store, batch: list[Any]) -> list[Any]:
        bindings: dict[str, list[dict[str, object]]] = {}
        for item in batch:
            if item and item[0] == "bindings":
                bindings.update(item[1])  # the newest state of each extension wins
        answered = [(item[1], item[2]) for item in batch if item and item[0] == "answered"]
        statuses = [item for item in batch if item and item[0] == "status"]
        messages = [item for item in batch if item and item[0] == "voicemail"]
        events = [item for item in batch if item and item[0] == "security"]
        texts = [item for item in batch if item and item[0] in ("sms", "sms_out")]
        line_events = [item for item in batch if item and item[0] == "line_event"]
        calls = [item for item in batch if item and item[0] not in (
            "status", "callback", "voicemail", "pending", "security", "sms", "sms_out",
            "line_event", "answered", "bindings")]
        try:
            if bindings:
                save_registrations(store, bindings)
                bindings = {}
            if answered:
                record_answered_calls(store, answered)
                answered = []
            while line_events:
                store.add_line_event(**line_events[0][1])
                line_events.pop(0)
            while texts:
                item = texts[0]
                if item[0] == "sms":
                    sms: SmsArrived = item[1]
                    store.add_sms(line=sms.line, direction="in", number=sms.sender,
                                  text=sms.text, at=sms.received_at, complete=sms.complete)
                else:
                    _, line, number, text, at = item
                    store.add_sms(line=line, direction="out", number=number, text=text, at=at)
                texts.pop(0)
            while messages:
                _, message, wall_time = messages[0]
                store.add_voicemail(call_id=message.call_id, mailbox=message.mailbox,
                                    caller=message.caller, left_at=wall_time,
                                    duration_s=message.duration_s, audio=wav_bytes(message.pcm))
                messages.pop(0)
            while events:
                _, event, offset = events[0]
                store.add_security_event(
                    at=event.at + offset, kind=event.kind, extension=event.extension,
                    number=event.number, detail=event.number_class, repeated=event.repeated,
                )
                events.pop(0)
            while statuses:
                _, change, offset = statuses[0]
                store.set_agent_status(
                    change.extension, change.status, reason=change.reason,
                    at=change.at + offset, source=change.source,
                )
                statuses.pop(0)
            # Callback requests and states in the order they came (a request saved, then
            # maybe its final state), with the calls they follow from, in one transaction.
            store.record_finished_calls(calls, callback_events=[
                item if item[0] == "pending" else ("state", *item[1:])
                for item in batch if item and item[0] in ("pending", "callback")])
        except Exception as exc:
            # Keep what was not written for the next try: a busy or full database must not
            # lose records (those already written are not written twice).
            left: list[Any] = [("bindings", bindings)] if bindings else []
            left += [("answered", call, legs, None) for call, legs in answered]
            left += [item for item in batch if item and item[0] in ("pending", "callback")]
            left += calls + statuses + messages + events + texts + line_events
            exc.left = left  # type: ignore[attr-defined]
            raise
        return []


def _record_kind(item: Any) -> str:
    """What a waiting record is, for `_bounded`: "call" (answered or finished), "sms" (either
    way), or the item's own tag."""
    if not item:
        return ""
    tag = item[0]
    if isinstance(tag, dict) or tag == "answered":
        return "call"
    return "sms" if tag == "sms_out" else str(tag)


class StoreReads:
    """The database reads the daemon makes while it runs, on one thread of their own with a
    connection of that thread's (a `Store` is not thread-safe); the event loop awaits each
    result and applies it itself. A read may wait for the disk or for the web UI's write lock
    (the busy timeout), and the 30-day conversion query over a busy office's calls takes tens
    of milliseconds even on a PC: on the loop, either would hold up SIP."""

    def __init__(self, loop: asyncio.AbstractEventLoop, db_path: str | Path) -> None:
        self.loop = loop
        self.db_path = Path(db_path)
        # One thread: reads queue behind each other, and one connection serves them all.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reads")
        self._store: Store | None = None  # opened, used and closed in the worker thread only

    async def read(self, query: Callable[[Store], T]) -> T:
        return await self.loop.run_in_executor(self._executor, self._run, query)

    def _run(self, query: Callable[[Store], T]) -> T:
        if self._store is None:
            self._store = Store.open(self.db_path)
        return query(self._store)

    async def close(self) -> None:
        await self.loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


Greetings = tuple[dict[str, tuple[float, float]], dict[str, bytes]]


class GreetingCache:
    """Uploaded greetings as 16-bit 8 kHz mono PCM by mailbox, for the core's synchronous
    `greetings(mailbox)`: a caller reaching voicemail is served from memory. `read` runs in
    the store thread and converts only what was uploaded since; the loop `install`s its result,
    so the maps in use are never changed under a reader. (At most 120 s, 1.9 MB, a mailbox.)"""

    def __init__(self) -> None:
        self._versions: dict[str, tuple[float, float]] = {}  # mailbox → (uploaded_at, duration)
        self._pcm: dict[str, bytes] = {}

    def __call__(self, mailbox: str) -> bytes | None:
        """The mailbox's own greeting; None: the built-in one plays."""
        return self._pcm.get(mailbox)

    def read(self, store: Store) -> Greetings:
        versions = {mailbox: (float(info["uploaded_at"]), float(info["duration_s"]))
                    for mailbox, info in store.greetings().items()}
        pcm: dict[str, bytes] = {}
        for mailbox, version in versions.items():
            if self._versions.get(mailbox) == version:
                if mailbox in self._pcm:
                    pcm[mailbox] = self._pcm[mailbox]
                continue
            wav = store.greeting(mailbox)
            if wav is None:  # removed since the list was read: the next read forgets it
                continue
            try:
                pcm[mailbox] = to_pcm8k(wav, max_s=MAX_GREETING_S)
            except AudioError as exc:
                LOGGER.warning("greeting of mailbox %s is unusable (%s); the built-in one plays",
                               mailbox, exc)
        return versions, pcm

    def install(self, greetings: Greetings) -> None:
        self._versions, self._pcm = greetings


class SocketPorts:
    """RTP ports with a bound UDP socket each, read by the event loop (MediaPorts for the
    gateway). A port something else holds is skipped."""

    def __init__(self, daemon: Daemon, port_range: PortRange) -> None:
        self.daemon = daemon
        self.range = port_range
        self.sockets: dict[int, socket.socket] = {}

    def open(self) -> int | None:
        family = socket.AF_INET6 if ":" in self.daemon.sip_host else socket.AF_INET
        for port in self.range.candidates():
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((self.daemon.sip_host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            self.range.take(port)
            self.sockets[port] = sock
            self.daemon.loop.add_reader(sock.fileno(), self.daemon.on_rtp, port, sock)
            return port
        return None

    def close(self, port: int) -> None:
        self.range.close(port)
        sock = self.sockets.pop(port, None)
        if sock is not None:
            self.daemon.loop.remove_reader(sock.fileno())
            sock.close()

    def send(self, port: int, data: bytes, destination: tuple[str, int]) -> None:
        sock = self.sockets.get(port)
        if sock is None:
            return
        try:
            sock.sendto(data, destination)
        except OSError as exc:  # unreachable, or the buffer is full: RTP tolerates a loss
            LOGGER.debug("RTP from port %d to %s: %s", port, destination, exc)

    def close_all(self) -> None:
        for port in list(self.sockets):
            self.close(port)


class Daemon:
    def __init__(
        self, store: Store, *, sip_host: str, sip_port: int, db_path: str | Path,
        advertised_host: str | None = None,
        rtp_ports: tuple[int, int] = (DEFAULT_FIRST_PORT, DEFAULT_LAST_PORT),
        housekeeping_interval_s: float = DAILY_CHECK_INTERVAL_S,
        resolve: Callable[[Config], dict[str, Address]] | None = None,
        modem_driver: DriverFactory = default_driver,
    ) -> None:
        """Reads what it needs from `store` here, before the loop serves anything; from then
        on the store is read in a thread of its own (`StoreReads`) and `store` is not used.
        `resolve` looks up the trunks' hosts (tests give a slow one); it runs in a thread."""
        self.store = store
        self.sip_host = sip_host
        self.sip_port = sip_port
        self.db_path = Path(db_path)
        self.updater = Updater(update_dir_for(self.db_path))  # RAUC, the System page's update
        self.advertised_host = advertised_host or _advertised_host(sip_host)
        self.loop = asyncio.get_running_loop()
        self.housekeeping_interval_s = housekeeping_interval_s
        self.resolve = resolve or resolve_trunks
        self.reads = StoreReads(self.loop, db_path)
        # A look-up that hangs (an unreachable DNS server) holds up only the next reload.
        self._dns = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dns")
        self.greetings = GreetingCache()
        # Wall time for records, schedules and reports, re-read as events happen: an NTP step
        # (the Pi has no clock of its own) reaches the next record, not the next restart.
        self.clock = WallClock(monotonic=self.loop.time)
        # While the kernel says the clock is not synchronised, the calls this daemon records
        # (rows after this one) are moved by the step that sets it (firmware/store/clock_times).
        self._first_own_rowid = last_call_rowid(store)
        self._unsynced_since = None if self.clock.synchronised else self.loop.time()
        self._clock_tasks: set[asyncio.Task[None]] = set()
        # Before any new call is recorded: the calls a crash or a power cut interrupted.
        cut_off = mark_cut_off_calls(store)
        if cut_off:
            add_box_notice(store, {"kind": NOTICE_CUT_OFF, "detail": str(cut_off)},
                           at=time.time())
        self.recorder = SqliteRecorder(db_path, wall_offset_s=self.clock.offset_s)
        self.recordings = RecordingFiles(db_path, settings=lambda: self._config.recording)
        self.config_revision = store.config_revision()
        config = store.load_config()
        self.media_ports = SocketPorts(self, PortRange(*rtp_ports))
        self.gateway = Gateway(
            config, local=Address("udp", self.advertised_host, sip_port),
            trunk_addresses=self.resolve(config),
            now=self.loop.time(), wall_offset_s=self.clock.offset_s,
            media_ports=self.media_ports, greetings=self.greetings,
        )
        self._config = config
        self.failover_switches: deque[FailoverSwitched] = deque(maxlen=FAILOVER_HISTORY)
        self.hardware: BoxHardware | None = None
        self.modems = ModemRuntime(self.loop, self.gateway, flush=self.flush,
                                   factory=modem_driver)
        # E-mail and SMS notifications (issue 15): decided as the events pass, sent by a task.
        self.mailer = Mailer(self.loop, db_path, config=lambda: self._config,
                             wall_offset_s=self.clock.offset_s,
                             drivers=lambda: self.modems.drivers,
                             on_sms_sent=self.recorder.sms_sent)
        self.mailer.restore_pending(store.pending_callback_requests())
        self._restore_agent_statuses()
        self._restore_registrations()
        self.gateway.set_crm_owners(store.crm_owners())
        restored = self.gateway.restore_callbacks(store.pending_callback_requests(),
                                                  self.loop.time())
        if restored:
            LOGGER.info("%d callback requests from before the restart are back in their "
                        "queues", restored)
        self.tcp = TcpTransport(
            self.loop, on_message=self.on_message, limits=tcp_limits(config),
            in_use=self._registered_from, reserve_descriptors=descriptor_reserve(
                len(range(self.media_ports.range.first, self.media_ports.range.last, 2))),
        )
        self._udp: UdpEndpoint | None = None
        # Datagrams held until the records of calls just answered are committed (flush): by the
        # caller's Call-ID, so only those calls' own messages wait, in their order.
        self._held: dict[bytes, list[DatagramToSend]] = {}
        self._held_count = 0
        self._awaited: dict[int, bytes] = {}  # answer token → its Call-ID, oldest first
        self._awaiting: dict[bytes, set[int]] = {}  # Call-ID → the answers not yet committed
        self._answer_tokens = 0
        self._servers: list[asyncio.AbstractServer] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._connecting: set[asyncio.Task[None]] = set()
        self._last_full_gc = self.loop.time()
        self._today: datetime.date | None = None
        self.housekeeping_runs = 0  # in `linebox status`: the daily checks done since start

    def _restore_agent_statuses(self) -> None:
        offset = self.clock.offset_s
        for extension, saved in self.store.agent_statuses().items():
            if extension in self.gateway.extensions:
                self.gateway.agents.restore(
                    extension, str(saved["status"]), str(saved.get("reason") or ""),
                    float(saved["since"]) - offset,
                )

    def _restore_registrations(self) -> None:
        """The phones' bindings kept before the stop (issue 16), served at once: a phone is
        reachable, and not a stranger to the rate limiter, without registering again."""
        offset = self.clock.offset_s
        # An extension removed from the configuration while the box was off keeps nothing.
        rows = [row for row in live_registrations(self.store, time.time())
                if row["extension"] in self.gateway.extensions]
        taken = self.gateway.registrar.restore(rows, self.loop.time(), offset)
        self.gateway.registrar.take_changed()
        if taken:
            LOGGER.info("%d registrations from before the restart are served again", taken)

    # ------------------------------------------------------------------ start and stop
    async def start(self) -> None:
        # Before the first datagram: the prompts, the greetings and the day's figures are in
        # memory, so no call waits for them.
        await asyncio.to_thread(prompts.preload)
        await self.refresh_greetings()
        await self._daily_housekeeping()
        family = socket.AF_INET6 if ":" in self.sip_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER_BYTES)
        sock.bind((self.sip_host, self.sip_port))
        # Read with the kernel's receive timestamps: the overload control's signal.
        self._udp = UdpEndpoint(self.loop, sock, self.on_datagram, screen=self.screen_datagram,
                                after_batch=self.flush,
                                on_full=lambda: self.gateway.queue_full(self.loop.time()))
        self._servers.append(await self.tcp.serve(self.sip_host, self.sip_port))
        sock_path = control_socket_path(self.db_path)
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        self._servers.append(await asyncio.start_unix_server(self._control_client, str(sock_path)))
        os.chmod(sock_path, 0o660)
        self._background.append(self.loop.create_task(self._every(
            RECORD_FLUSH_INTERVAL_S, self._flush_records)))
        self._background.append(self.loop.create_task(self._every(
            CONFIG_POLL_INTERVAL_S, self._reload_if_changed)))
        self._background.append(self.loop.create_task(self._every(
            GREETING_POLL_INTERVAL_S, self.refresh_greetings)))
        self._background.append(self.loop.create_task(self._every(
            GC_CHECK_INTERVAL_S, self._collect_garbage)))
        self._background.append(self.loop.create_task(self._every(
            self.housekeeping_interval_s, self._daily_housekeeping)))
        self._background.append(self.loop.create_task(self._backups()))
        self._arm_timer()
        self._start_hardware(self._config)
        self._background.append(self.loop.create_task(self._every(
            LED_REFRESH_INTERVAL_S, self._refresh_leds)))
        await self.modems.apply(self._config)
        self._background.append(self.loop.create_task(self._watch_network()))
        self._background.append(self.loop.create_task(self.mailer.run()))
        LOGGER.info("SIP on %s:%d (UDP and TCP), control socket %s", self.sip_host,
                    self.sip_port, sock_path)

    async def run_until_stopped(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, self._stopping.set)
        await self._stopping.wait()
        await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        LOGGER.info("stopping")
        self.gateway.shutdown(self.loop.time())
        self.flush()
        self._send_held()
        for task in self._background:
            task.cancel()
        for server in self._servers:
            server.close()
        if self._timer is not None:
            self._timer.cancel()
        # The BYEs and the un-REGISTER are sent (UDP: in the kernel already) or in TCP's
        # buffers: a connection closes once its buffer is written (bounded: a peer not
        # reading is cut).
        if self._udp is not None:
            self._udp.close()
        await self.tcp.close_when_sent(SHUTDOWN_SEND_TIMEOUT_S)
        await self.modems.stop()
        if self.hardware is not None:
            self.hardware.close()
        self.media_ports.close_all()
        await asyncio.to_thread(self.recorder.close)  # the last records reach the disk
        await asyncio.to_thread(self.recordings.close)  # the files' headers fixed up
        await self.mailer.close()
        await self.reads.close()
        self._dns.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(FileNotFoundError):
            control_socket_path(self.db_path).unlink()

    async def _every(self, interval_s: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await action()
            except Exception:
                LOGGER.exception("periodic task failed")

    async def _collect_garbage(self) -> None:
        """The full cyclic collection, run by us rather than at a random moment under load:
        when no call is in progress, or at the latest every GC_FULL_MAX_INTERVAL_S."""
        now = self.loop.time()
        quiet = not self.gateway.calls
        if quiet or now - self._last_full_gc >= GC_FULL_MAX_INTERVAL_S:
            gc.collect()
            self._last_full_gc = now

    async def _daily_housekeeping(self) -> None:
        """At local midnight the per-day figures (talk time, calls, the caller's last agent)
        start again; conversion for `rank: auto` is re-read from the call records (the owner
        marks target calls and sales during the day). The query runs in the store thread; its
        result is applied here, on the loop."""
        zone_name = self.gateway.timezone
        today, conversion = await self.reads.read(
            lambda store: _today_and_conversion(store, zone_name))
        if self._today is not None and today != self._today:
            self.gateway.new_day()
            LOGGER.info("new day %s: daily agent figures reset", today)
        self._today = today
        self.gateway.set_conversion(conversion)
        self.housekeeping_runs += 1

    async def _backups(self) -> None:
        """The day's automatic backup (firmware/store/backup.py) at start and then whenever
        the day has none yet, in a thread: the online backup reads the whole file. A failure
        (a full disk) is logged once until a backup works again."""
        failing = False
        while True:
            today = datetime.date.fromtimestamp(self.clock.offset_s + self.loop.time())
            try:
                await asyncio.to_thread(backup_if_due, self.db_path, today)
                failing = False
            except Exception as exc:
                if not failing:
                    LOGGER.error("the daily backup of the database failed: %s", exc)
                failing = True
            await asyncio.sleep(BACKUP_CHECK_INTERVAL_S)

    async def _flush_records(self) -> None:
        self.recorder.flush()
        # Voicemail takes no message the database cannot keep (issue 16).
        full = bool(self.recorder.problem)
        if full != self.gateway.storage_full:
            self.gateway.set_storage_full(full)

    async def refresh_greetings(self) -> None:
        """Take up the greetings uploaded or removed since the last refresh (run every
        GREETING_POLL_INTERVAL_S)."""
        self.greetings.install(await self.reads.read(self.greetings.read))

    async def _save_menu_greeting(self, event: MenuGreetingRecorded) -> None:
        """A greeting recorded by phone, stored in the store's thread as the web UI stores an
        upload (webui/menus.py: a WAV file under the greeting `menu:NAME`), then taken up at
        once so the next caller hears it; the call says whether it worked."""
        duration_s = len(event.pcm) / (2 * 8000)
        try:
            await self.reads.read(lambda store: store.set_greeting(
                event.key, wav_bytes(event.pcm), duration_s=duration_s, at=event.wall_time))
            await self.refresh_greetings()
            ok = True
            LOGGER.info("menu %s: greeting of %.1f s recorded by phone saved", event.menu,
                        duration_s)
        except Exception:  # a full disk: the caller hears it was not saved
            LOGGER.exception("menu %s: the greeting recorded by phone was not saved", event.menu)
            ok = False
        self.gateway.menu_greeting_saved(event.call_id, ok, self.loop.time())
        self.flush()

    async def _reload_if_changed(self) -> None:
        revision = await self.reads.read(Store.config_revision)
        if revision == self.config_revision:
            return
        try:
            config, crm_owners = await self.reads.read(_config_and_crm_owners)
        except ConfigError as error:
            # Stored by other means than an import (older firmware, a hand-edited database):
            # the running configuration stays, and this is said once, not at every poll.
            LOGGER.error("configuration revision %d not applied: %s", revision, error)
            self.config_revision = revision
            return
        # Meanwhile calls go on under the running configuration; a resolver that hangs delays
        # this reload, not SIP.
        addresses = await self.loop.run_in_executor(self._dns, self.resolve, config)
        self.gateway.apply_config(config, addresses, self.loop.time())
        self.tcp.limits = tcp_limits(config)
        self.gateway.set_crm_owners(crm_owners)
        self.config_revision = revision
        await self.modems.apply(config)
        if config.hardware != self._config.hardware:
            self._start_hardware(config)
        self._config = config
        LOGGER.info("configuration revision %d applied", revision)
        self.flush()

    # ------------------------------------------------------------------ the SIP path
    def on_message(self, data: bytes, source: Address) -> None:
        self._sync_clock()
        self.gateway.receive(data, source, self.loop.time())
        self.flush()

    def on_datagram(self, data: bytes, source: Address) -> None:
        # Flushed once per batch of datagrams (UdpEndpoint's after_batch); screened (and its
        # wait observed) when it was read. The wall clock was sampled by the flush after the
        # read, at most a slice (firmware/transport/udp.py, 2 ms) ago: sampling it again for
        # each datagram cost ~1 % of a call's setup (profiled).
        self.gateway.receive(data, source, self.loop.time(), screened=True)

    def screen_datagram(self, data: bytes, source: Address, waited_s: float | None) -> str:
        return self.gateway.screen(data, source, self.loop.time(), waited_s)

    def on_rtp(self, port: int, sock: socket.socket) -> None:
        # Drain what is queued: one wake-up may find several packets.
        for _ in range(64):
            try:
                data, address = sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error reported on the socket
                LOGGER.debug("RTP port %d: %s", port, exc)
                break
            self.gateway.receive_rtp(port, data, self.loop.time(), source=address[:2])
        self.flush()

    def flush(self) -> None:
        """Perform what the core asks for (its one output, `next_event`), then re-arm its
        timer."""
        self._sync_clock()
        gateway = self.gateway
        while events := list(iter(gateway.next_event, None)):
            # A call's answer does not leave before its record is on disk (issue 16): what is
            # sent from here on in that call's dialog waits for the commit, in order,
            # ANSWER_RECORD_WAIT_S at most; every other message goes out at once.
            for answered in events:
                if isinstance(answered, CallAnswered):
                    self._hold_for(answered)
            for event in events:
                self._perform(event)
        changed = gateway.registrar.take_changed()
        if changed:
            offset = self.clock.offset_s
            self.recorder.registrations(
                {extension: gateway.registrar.rows(extension, offset) for extension in changed})
        self._arm_timer()

    def _hold_for(self, answered: CallAnswered) -> None:
        self._answer_tokens += 1
        token = self._answer_tokens
        call_id = answered.call.get("sip_call_id")
        # Held by the caller's Call-ID (the 200 OK and what follows it in that dialog); a call
        # without one (a modem line's caller) has no SIP answer to hold.
        if isinstance(call_id, str) and call_id:
            key = call_id.encode()
            self._awaited[token] = key
            self._awaiting.setdefault(key, set()).add(token)
        loop = self.loop

        def done() -> None:  # in the recorder's thread
            loop.call_soon_threadsafe(self._recorded, token)

        self.recorder.call_answered(answered.call, answered.legs, done=done)
        loop.call_later(ANSWER_RECORD_WAIT_S, self._recorded, token)

    def _recorded(self, token: int) -> None:
        """The answer `token` is committed, or waited ANSWER_RECORD_WAIT_S (whichever first)."""
        key = self._awaited.pop(token, None)
        tokens = self._awaiting.get(key) if key is not None else None
        if key is None or tokens is None:
            return  # already released (its other trigger, the bound or the stop)
        tokens.discard(token)
        if not tokens:
            self._release(key)

    def _release(self, key: bytes) -> None:
        """The datagrams of the call with Call-ID `key` go out, in the order they were held."""
        self._awaiting.pop(key, None)
        held = self._held.pop(key, [])
        self._held_count -= len(held)
        for datagram in held:
            self._transmit(datagram)

    def _send_held(self) -> None:
        """At the stop: nothing waits any more."""
        for key in list(self._awaiting):
            self._release(key)
        self._awaited.clear()

    def _send(self, event: DatagramToSend) -> None:
        if self._awaiting:
            key = sip_call_id(event.data)
            if key is not None and key in self._awaiting:
                if self._held_count >= MAX_HELD_DATAGRAMS:
                    self._release_oldest()
                if key in self._awaiting:
                    self._held.setdefault(key, []).append(event)
                    self._held_count += 1
                    return
        self._transmit(event)

    def _release_oldest(self) -> None:
        """Past MAX_HELD_DATAGRAMS: the call answered first (nearest its cap anyway) goes."""
        for key in self._awaited.values():
            if key in self._held:
                self._release(key)
                return

    def _transmit(self, event: DatagramToSend) -> None:
        address = event.destination
        if address.transport == "udp":
            if self._udp is not None:
                self._udp.send(event.data, (address.host, address.port))
        else:
            self.tcp.send(event.data, address)

    def _perform(self, event: object) -> None:
        if isinstance(event, CallAnswered):
            pass  # handed to the recorder by flush
        elif isinstance(event, DatagramToSend):
            self._send(event)
        elif isinstance(event, RtpToSend):
            self.media_ports.send(event.port, event.data, event.destination)
        elif isinstance(event, WebhookRequested):
            task = self.loop.create_task(self._ask_webhook(event))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
        elif isinstance(event, StatusChanged):
            self.recorder.record_status(event)
        elif isinstance(event, ModemCommandRequested):
            self.modems.perform(event)
        elif isinstance(event, FailoverSwitched):
            self.failover_switches.append(event)  # logged by the core; `status` shows it
            self.recorder.line_event(event)
        elif isinstance(event, LineStateChanged):
            self.recorder.line_event(event)
            LOGGER.log(logging.WARNING if event.state == "down" else logging.INFO,
                       "line %s (%s) is %s: %s", event.name, event.kind, event.state,
                       event.reason)
        elif isinstance(event, RecordingStarted | RecordingAudio | RecordingFinished):
            self.recordings.perform(event)  # written in a thread of its own
        elif isinstance(event, MenuGreetingRecorded):
            task = self.loop.create_task(self._save_menu_greeting(event))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
        elif write_record(self.recorder, event):
            self.mailer.notice(event)
        else:
            LOGGER.error("the core asked for something unknown: %r", event)

    def _sync_clock(self) -> None:
        """Re-read the wall clock's offset before the core decides or a record is converted
        (each datagram, timer and flush: ~1 µs). Timers stay on the monotonic clock; only the
        wall times given out (records, schedules, callbacks kept, mail) follow a step."""
        step = self.clock.sample()
        offset = self.clock.offset_s
        self.gateway.wall_offset_s = offset
        self.recorder.wall_offset_s = offset
        self.mailer.wall_offset_s = offset
        self.recorder.clock_synchronised = self.clock.synchronised
        if step is not None:
            self._clock_stepped(step)
        elif self.clock.synchronised:
            self._unsynced_since = None  # synchronised without a step: the times were right
        elif self._unsynced_since is None:
            self._unsynced_since = self.loop.time()

    def _clock_stepped(self, step: ClockStepped) -> None:
        LOGGER.warning("the wall clock stepped by %+.1f s (%s); timers are unaffected, records "
                       "from now on carry the new time", step.step_s,
                       "synchronised" if step.synchronised else "not synchronised")
        now = self.loop.time()
        unsynced = None
        if self._unsynced_since is not None:
            # What this daemon recorded while unsynchronised, by the clock before the step.
            unsynced = (self._first_own_rowid, self._unsynced_since + step.old_offset_s - 1.0,
                        now + step.old_offset_s + 1.0)
        self._unsynced_since = None if step.synchronised else now
        task = self.loop.create_task(self._shift_kept_times(step, unsynced))
        self._clock_tasks.add(task)
        task.add_done_callback(self._clock_tasks.discard)

    async def _shift_kept_times(self, step: ClockStepped,
                                unsynced: tuple[int, float, float] | None) -> None:
        # The recorder writes each record as it comes; the settle time lets those converted
        # before the step reach the database first.
        await asyncio.sleep(CLOCK_STEP_SETTLE_S)
        try:
            moved = await self.reads.read(
                lambda store: shift_after_step(store, step.step_s, unsynced=unsynced))
        except Exception:
            LOGGER.exception("kept times not moved after the clock step")
            return
        LOGGER.info("after the clock step: %d call records made before the sync, %d callback "
                    "requests, %d pending notifications and %d registrations moved by %+.1f s",
                    moved["calls"], moved["callback_requests"], moved["notifications"],
                    moved["registrations"], step.step_s)

    def _registered_from(self, peer: Address) -> bool:
        """A live registration came over `peer`'s connection: the phone may be reachable only
        through it (NAT, RFC 5626 connection reuse), so idleness does not close it."""
        now = self.loop.time()
        return any(b.source == peer for b in self.gateway.registrar.all_bindings(now))

    async def _ask_webhook(self, request: WebhookRequested) -> None:
        """POST the call's facts (with the caller's recent calls) and read where it goes, in a
        worker thread under the webhook's timeout; the answer or the error goes back to the
        core, which falls back to the configured route on any error."""
        try:
            destination = await asyncio.wait_for(
                self.loop.run_in_executor(None, _post_webhook, request, self.db_path),
                request.timeout_s,
            )
            error = ""
        except Exception as exc:  # timeouts, refused connections, HTTP errors, bad JSON
            destination, error = None, f"{type(exc).__name__}: {exc}"
        self.gateway.webhook_answered(request.call_id, destination, self.loop.time(),
                                      error=error)
        self.flush()

    def _arm_timer(self) -> None:
        when = self.gateway.get_timer()
        if when == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = None if when is None else self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._sync_clock()
        self.gateway.handle_timer(self.loop.time())
        self.flush()

    # ------------------------------------------------------------------ control socket
    async def _control_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    answer = await self._control(request)
                except Exception as exc:
                    answer = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    async def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        handler: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = {
            "status": self._control_status,
            "records": self._control_records,
            "agent": self._control_agent,
            "sms_send": self._control_sms_send,
            "ussd": self._control_ussd,
            "update": self._control_update,
        }.get(str(command))
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        return await handler(request)

    async def _control_update(self, request: dict[str, Any]) -> dict[str, Any]:
        """The System page's update (firmware/update.py): {"command": "update", "action":
        "status" | "install" (the bundle the web UI stored) | "reboot"}."""
        action = request.get("action")
        if action == "status":
            return {"ok": True, "update": await self.updater.status()}
        if action == "install":
            return self.updater.start_install(self.updater.bundle_path)
        if action == "reboot":
            return self.updater.request_reboot()
        return {"ok": False, "error": f"unknown update action {action!r}"}

    async def _control_agent(self, request: dict[str, Any]) -> dict[str, Any]:
        """Set an agent's status: {"command": "agent", "extension", "status", "reason"}."""
        change = self.gateway.set_agent_status(
            str(request.get("extension", "")), str(request.get("status", "")),
            reason=str(request.get("reason", "")), source=str(request.get("source", "cli")),
            now=self.loop.time(),
        )
        self.flush()
        return {"ok": True, "extension": change.extension, "status": change.status}

    def _start_hardware(self, config: Config) -> None:
        if self.hardware is not None:
            self.hardware.close()
        try:
            self.hardware = BoxHardware(
                self.loop, config.hardware,
                status=lambda: self.gateway.status(self.loop.time()),
                flush_database=self.recorder.flush, shutdown=self.request_stop)
        except Exception:
            LOGGER.exception("LEDs and the power-fail input are not working")
            self.hardware = None

    async def _refresh_leds(self) -> None:
        if self.hardware is not None:
            self.hardware.refresh()

    async def _watch_network(self) -> None:
        """Links, addresses and default routes from the kernel (hal/netmon.py) to the core's
        failover. Where netlink is not there (not Linux, a sandbox) the probes alone decide."""
        try:
            from hal.netmon import NetworkMonitor, deliver
        except ImportError as exc:
            LOGGER.warning("no network monitoring (%s): failover relies on the probes", exc)
            return

        def on_fact(fact: Any) -> None:
            self.gateway.network_fact(lambda monitor: deliver(fact, monitor), self.loop.time())
            self.flush()

        try:
            await NetworkMonitor(on_fact).run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # netlink refused (a sandbox), or a bug: said, not silent
            LOGGER.warning("no network monitoring (%r): failover relies on the probes", exc)

    async def _control_sms_send(self, request: dict[str, Any]) -> dict[str, Any]:
        return await control_modems.sms_send(self.modems.drivers, request,
                                             on_sent=self.recorder.sms_sent)

    async def _control_ussd(self, request: dict[str, Any]) -> dict[str, Any]:
        return await control_modems.ussd(self.modems.drivers, request)

    async def _control_records(self, request: dict[str, Any]) -> dict[str, Any]:
        """Whether records wait in memory for the database (issue 16): the web UI's notice."""
        recorder = self.recorder
        return {"ok": True, "problem": recorder.problem, "waiting": recorder.waiting,
                "dropped": recorder.dropped}

    async def _control_status(self, request: dict[str, Any]) -> dict[str, Any]:
        status = self.gateway.status(self.loop.time())
        status["sip"] = f"{self.sip_host}:{self.sip_port}"
        status["pid"] = os.getpid()
        status["housekeeping_runs"] = self.housekeeping_runs
        # Whether NTP keeps the wall clock (the kernel's word): records made while it does not
        # are moved when it is set (docs/https.md, "The clock").
        status["clock_synchronised"] = self.clock.synchronised
        # Records waiting in memory for a database that cannot be written (issue 16).
        status["records"] = {"problem": self.recorder.problem, "waiting": self.recorder.waiting,
                             "dropped": self.recorder.dropped}
        offset = self.clock.offset_s
        status["leds"] = self.hardware.states() if self.hardware is not None else {}
        status["failover_switches"] = [
            {"old": s.old, "new": s.new, "reason": s.reason, "at": round(s.at + offset, 3)}
            for s in self.failover_switches]
        return {"ok": True, "status": status}


def _post_webhook(request: WebhookRequested, db_path: Path) -> str | None:
    payload = dict(request.payload)
    history = request.payload.get("history")
    if isinstance(history, dict):  # routing webhooks get the caller's recent calls
        payload["history"] = {**history,
                              "recent_calls": _recent_calls_of(db_path, str(payload["caller"]))}
    body = json.dumps(payload, ensure_ascii=False).encode()
    http_request = urllib.request.Request(
        request.url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "Linebox"},
    )
    with urllib.request.urlopen(http_request, timeout=request.timeout_s) as response:
        answer = json.loads(response.read(WEBHOOK_MAX_ANSWER_BYTES))
    value = answer.get(request.answer_key) if isinstance(answer, dict) else None
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _recent_calls_of(db_path: Path, caller: str) -> list[dict[str, object]]:
    """The caller's last calls, read on a connection of this worker thread's own."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1.0)
    try:
        rows = conn.execute(
            "SELECT started_at, outcome, answered_by, department FROM calls WHERE caller = ? "
            "ORDER BY started_at DESC LIMIT 5", (caller,)
        ).fetchall()
    finally:
        conn.close()
    return [{"started_at": r[0], "outcome": r[1], "answered_by": r[2], "department": r[3]}
            for r in rows]


def _today_and_conversion(store: Store, zone_name: str) -> tuple[datetime.date,
                                                                 dict[str, float]]:
    """In the store thread: the date in the site's zone (its first use reads the zone's file)
    and each manager's conversion over the last 30 days."""
    today = datetime.datetime.now(_zone(zone_name)).date()
    until = time.time()
    return today, conversion_by_manager(store, until - CONVERSION_WINDOW_S, until)


def _config_and_crm_owners(store: Store) -> tuple[Config, dict[str, str]]:
    """In the store thread: the stored configuration (`ConfigError` if it is refused) and the
    CRM's phone → responsible extension table."""
    return store.load_config(), store.crm_owners()


def _zone(name: str) -> datetime.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        LOGGER.warning("time zone %s not found; using UTC", name)
        return datetime.UTC


def _advertised_host(bind_host: str) -> str:
    """The address to put in Via and Contact: the bound one, or the outgoing interface's."""
    if bind_host not in ("0.0.0.0", "::", ""):
        return bind_host
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # connect() on UDP sends nothing; it only asks the kernel which source address it
        # would use for that destination (a documentation prefix: never contacted).
        probe.connect(("192.0.2.1", 9))
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def tcp_limits(config: Config) -> TcpLimits:
    security = config.security
    return TcpLimits(
        max_connections=security.tcp_max_connections,
        max_per_address=security.tcp_max_connections_per_address,
        idle_s=security.tcp_idle_s, message_timeout_s=security.tcp_message_timeout_s,
    )


def resolve_trunks(config: Config) -> dict[str, Address]:
    addresses: dict[str, Address] = {}
    for trunk in config.trunks:
        if trunk.is_modem:
            continue  # a serial line: no host to look up
        try:
            info = socket.getaddrinfo(trunk.host, trunk.port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            LOGGER.warning("trunk %s: cannot resolve %s: %s", trunk.name, trunk.host, exc)
            continue
        addresses[trunk.name] = Address(trunk.transport, str(info[0][4][0]), trunk.port)
    return addresses


async def run_daemon(
    store: Store, *, sip_host: str, sip_port: int, db_path: str | Path,
    ready: Callable[[Daemon], None] | None = None,
    rtp_ports: tuple[int, int] = (DEFAULT_FIRST_PORT, DEFAULT_LAST_PORT),
    housekeeping_interval_s: float = DAILY_CHECK_INTERVAL_S,
) -> None:
    daemon = Daemon(store, sip_host=sip_host, sip_port=sip_port, db_path=db_path,
                    rtp_ports=rtp_ports, housekeeping_interval_s=housekeeping_interval_s)
    await daemon.start()
    # SIP is served: the booted system is good once the web UI answers too (firmware/update.py).
    daemon._background.append(asyncio.get_running_loop().create_task(
        daemon.updater.mark_good_when_ready(web_url_from_env())))
    if ready is not None:
        ready(daemon)
    await daemon.run_until_stopped()


async def control_request(db_path: str | Path, request: dict[str, Any],
                          timeout_s: float = 5.0) -> dict[str, Any]:
    """Send one request to the daemon running on `db_path` and return its answer."""
    path = control_socket_path(db_path)
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout_s)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout_s)
    finally:
        writer.close()
    answer: dict[str, Any] = json.loads(line)
    return answer
