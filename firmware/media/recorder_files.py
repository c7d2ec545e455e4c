"""The recordings on disk: the daemon's writer thread, the storage quota, the repair at start.

The core hands out a recorded call's audio as events (firmware/core/recordings.py); `perform`
queues them for a thread of its own, so the event loop never waits for the SD card. The thread
creates `recordings/<day>/<call id>.wav` beside the database with a header whose sizes say 0,
appends each second's bytes and puts what was appended on the card every second — one
syncfs(2) for all the calls, so 200 calls cost one sync a second, not 200 (a power cut loses
about the last second or two) — and at the call's end writes the real sizes into the header
and the recording's row (table `recordings`). A file a power cut left with its header
unfinished is found at the next start by its row (state 'recording'), its sizes taken from its
length (`repaired_sizes`).

Space: the recordings take at most `recording.quota_mb` (0: half the data partition), and the
partition keeps `recording.min_free_mb` free whatever the quota; past either the oldest finished
recordings are deleted first, and when nothing is left to delete a call's audio stops being
written (logged) rather than fill the disk. The web UI warns from 90 % of the quota (`usage`).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..core.events import RecordingAudio, RecordingEvent, RecordingFinished, RecordingStarted
from ..recording import RecordingSettings
from ..store.db import Store
from .recorder import HEADER_BYTES, read_header, repaired_sizes, wav_header, wav_sizes
from .recorder_store import MB, free_bytes, quota_bytes, recordings_dir

LOGGER = logging.getLogger(__name__)

MAX_WAITING_BYTES = 16 * MB  # ~8 minutes of stereo calls' audio waiting for the card
SYNC_INTERVAL_S = 1.0  # appended audio reaches the card at least this often

@dataclass(slots=True)
class _Open:
    file: BinaryIO
    path: Path
    channels: int
    data_bytes: int = 0
    stopped: bool = False  # out of space: the rest of the call is not written


class RecordingFiles:
    """Writes recordings in a thread of its own; `perform` never blocks."""

    def __init__(self, db_path: str | Path, *,
                 settings: Callable[[], RecordingSettings]) -> None:
        self.db_path = Path(db_path)
        self.directory = recordings_dir(db_path)
        self.settings = settings
        self._queue: queue.SimpleQueue[RecordingEvent | None] = queue.SimpleQueue()
        self._open: dict[str, _Open] = {}
        self.used_bytes = 0
        self.repaired = 0  # files a power cut left unfinished, mended at this start
        self.deleted = 0  # recordings deleted to stay under the quota
        # Audio waiting for the thread (the card slower than the calls): past
        # MAX_WAITING_BYTES it is dropped, logged, rather than take the box's memory.
        self._waiting_bytes = 0
        self._waiting_lock = threading.Lock()
        self.dropped_bytes = 0
        self.failed = False  # the database cannot be opened: nothing is recorded
        # The card's answer to the last sync when it failed (EIO, ...); None when it works.
        # A failing card is logged once, and when it works again.
        self.sync_error: str | None = None
        self._closed = False
        self._dirty: set[str] = set()  # calls written since the last sync
        self._synced_at = time.monotonic()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recordings", daemon=True)
        self._thread.start()

    def perform(self, event: RecordingEvent) -> None:
        if self.failed:
            return
        if not self._thread.is_alive():
            # Nothing would ever take what is queued now: say so once and stop queueing, or
            # every later call's audio is silently lost and held in memory.
            if not self._closed:
                LOGGER.error("recordings: the writer thread has stopped; no call is recorded "
                             "until the daemon restarts")
            self.failed = True
            return
        if isinstance(event, RecordingAudio):
            with self._waiting_lock:
                if self._waiting_bytes + len(event.data) > MAX_WAITING_BYTES:
                    if not self.dropped_bytes:
                        LOGGER.error("recordings: the data partition cannot keep up; audio "
                                     "is dropped until it does")
                    self.dropped_bytes += len(event.data)
                    return
                self._waiting_bytes += len(event.data)
        self._queue.put(event)

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued, close the files (their headers fixed up) and stop."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout_s)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        try:
            store = Store.open(self.db_path)
        except Exception:
            LOGGER.exception("recordings: cannot open the database; no call is recorded")
            self.failed = True
            self.ready.set()
            return
        try:
            self.repaired = repair(store, self.db_path)
            self.used_bytes = int(store.db.execute(
                "SELECT coalesce(sum(bytes), 0) FROM recordings").fetchone()[0])
            self.ready.set()
            while True:
                try:
                    event = self._queue.get(timeout=SYNC_INTERVAL_S if self._dirty else None)
                except queue.Empty:
                    event = None
                    self._sync_dirty()
                    continue
                if event is None:
                    break
                try:
                    self._handle(store, event)
                except Exception:  # one bad write must not stop the recordings of others
                    LOGGER.exception("recording of call %s: cannot write", event.call_id)
                if time.monotonic() - self._synced_at >= SYNC_INTERVAL_S:
                    self._sync_dirty()
            for call_id in list(self._open):  # the daemon stops: what was heard is kept
                try:  # one file's error must not leave the others open
                    self._finish(store, call_id, None)
                except Exception:
                    LOGGER.exception("recording of call %s: cannot finish", call_id)
        finally:
            self.ready.set()
            store.close()

    def _handle(self, store: Store, event: RecordingEvent) -> None:
        if isinstance(event, RecordingStarted):
            self._start(store, event)
        elif isinstance(event, RecordingAudio):
            self._append(store, event)
        elif isinstance(event, RecordingFinished):
            self._finish(store, event.call_id, event.duration_s)

    def _start(self, store: Store, event: RecordingStarted) -> None:
        if not self._make_room(store, HEADER_BYTES):
            LOGGER.error("call %s is not recorded: no space left for recordings",
                         event.call_id)
            return
        day = datetime.datetime.fromtimestamp(event.wall_time).strftime("%Y-%m-%d")
        folder = self.directory / day
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{event.call_id}.wav"
        handle = path.open("wb")
        try:
            handle.write(wav_header(0, codec=event.codec, channels=event.channels))
            _sync(handle)
        except BaseException:
            # Not in _open yet, so nothing else would ever close it (a full or failing card);
            # and without a row nothing would count or delete the file.
            with contextlib.suppress(OSError):
                handle.close()
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._open[event.call_id] = _Open(file=handle, path=path, channels=event.channels)
        self.used_bytes += HEADER_BYTES
        with store.db.conn:
            store.db.execute(
                "INSERT OR REPLACE INTO recordings (call_id, file, started_at, duration_s, "
                "channels, codec, bytes, state) VALUES (?, ?, ?, 0, ?, ?, ?, 'recording')",
                (event.call_id, f"{day}/{path.name}", event.wall_time, event.channels,
                 event.codec, HEADER_BYTES))

    def _append(self, store: Store, event: RecordingAudio) -> None:
        with self._waiting_lock:
            self._waiting_bytes -= len(event.data)
        entry = self._open.get(event.call_id)
        if entry is None or entry.stopped:
            return
        if not self._make_room(store, len(event.data)):
            entry.stopped = True
            LOGGER.error("recording of call %s stopped at %.0f s: no space left (quota or "
                         "free space), nothing older to delete", event.call_id,
                         entry.data_bytes / entry.channels / 8000)
            return
        entry.file.write(event.data)
        entry.file.flush()  # to the kernel now; to the card with the others each second
        self._dirty.add(event.call_id)
        entry.data_bytes += len(event.data)
        self.used_bytes += len(event.data)

    def _sync_dirty(self) -> None:
        """Put what was appended since the last time on the card: one syncfs(2) for the whole
        file system when the C library has it (one call a second however many calls are
        recorded), else each file's fdatasync."""
        self._synced_at = time.monotonic()
        entries = [entry for call_id in self._dirty if (entry := self._open.get(call_id))]
        self._dirty.clear()
        if not entries:
            return
        if _SYNCFS is not None and _SYNCFS(entries[0].file.fileno()) == 0:
            self._synced(None, [])
            return
        # The card's error (EIO, ENOSPC underneath) is the calls', not the thread's: it must
        # not stop the thread, which serves every call after it too.
        failed: list[_Open] = []
        error: OSError | None = None
        for entry in entries:
            try:
                os.fdatasync(entry.file.fileno())
            except OSError as exc:
                failed.append(entry)
                error = exc
        self._synced(error, failed)

    def _synced(self, error: OSError | None, failed: list[_Open]) -> None:
        """Log a failing card once (it fails every second while it does, EIO and ENOSPC in
        turn), and its end."""
        if error is None and self.sync_error is not None:
            LOGGER.warning("recordings: the data partition takes the audio again")
        elif error is not None and self.sync_error is None:
            LOGGER.error("recordings: the audio cannot be put on the data partition (%s); "
                         "a power cut may lose it: %s", error,
                         ", ".join(entry.path.name for entry in failed))
        self.sync_error = None if error is None else str(error)

    def _finish(self, store: Store, call_id: str, duration_s: float | None) -> None:
        self._dirty.discard(call_id)
        entry = self._open.pop(call_id, None)
        if entry is None:
            return
        entry.data_bytes -= entry.data_bytes % entry.channels
        try:
            for offset, value in wav_sizes(entry.data_bytes, entry.channels):
                entry.file.seek(offset)
                entry.file.write(value)
            _sync(entry.file)
        finally:
            # Out of _open already: closed here or never. A failed fix-up leaves the row in
            # state 'recording', which the next start mends from the file's length (repair).
            entry.file.close()
        duration = entry.data_bytes / entry.channels / 8000
        with store.db.conn:
            store.db.execute(
                "UPDATE recordings SET duration_s = ?, bytes = ?, state = 'done' "
                "WHERE call_id = ?", (round(duration, 2), HEADER_BYTES + entry.data_bytes,
                                      call_id))
        LOGGER.info("recording of call %s: %.1f s in %s", call_id, duration, entry.path)
        self._make_room(store, 0)

    def _make_room(self, store: Store, incoming: int) -> bool:
        """Delete the oldest finished recordings until `incoming` more bytes fit the quota and
        leave the partition's minimum free; False if they cannot."""
        settings = self.settings()
        quota = quota_bytes(settings, self.directory)
        min_free = settings.min_free_mb * MB
        while (self.used_bytes + incoming > quota
               or free_bytes(self.directory) - incoming < min_free):
            if not self._delete_oldest(store):
                return False
        return True

    def _delete_oldest(self, store: Store) -> bool:
        busy = list(self._open)
        row = store.db.execute(
            "SELECT call_id, file, bytes FROM recordings "
            f"WHERE call_id NOT IN ({', '.join('?' for _ in busy)}) "
            "ORDER BY started_at LIMIT 1", busy).fetchone()
        if row is None:
            return False
        call_id, file, size = row
        (self.directory / file).unlink(missing_ok=True)
        with store.db.conn:
            store.db.execute("DELETE FROM recordings WHERE call_id = ?", (call_id,))
        self.used_bytes -= int(size)
        self.deleted += 1
        LOGGER.warning("recording of call %s deleted: the recordings' quota or the free space "
                       "needed it (the oldest go first)", call_id)
        return True


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


_SYNCFS = _load_syncfs()


def _sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fdatasync(handle.fileno())


def repair(store: Store, db_path: str | Path) -> int:
    """Mend the recordings a power cut or a crash left unfinished (state 'recording'): the
    header's sizes from the file's length, the row's duration and size; a row whose file is gone
    is dropped. How many were mended."""
    directory = recordings_dir(db_path)
    mended = 0
    for call_id, file in store.db.execute(
            "SELECT call_id, file FROM recordings WHERE state = 'recording'").fetchall():
        path = directory / file
        try:
            with path.open("r+b") as handle:
                header = handle.read(HEADER_BYTES)
                length = os.fstat(handle.fileno()).st_size
                info = read_header(header)
                patches = repaired_sizes(header, length) or []
                for offset, value in patches:
                    handle.seek(offset)
                    handle.write(value)
                data = read_header(_patched(header, patches)).data_bytes
                handle.truncate(HEADER_BYTES + data)
                _sync(handle)
        except (OSError, ValueError) as exc:
            LOGGER.warning("recording of call %s cannot be mended (%s): its row is removed",
                           call_id, exc)
            with store.db.conn:
                store.db.execute("DELETE FROM recordings WHERE call_id = ?", (call_id,))
            continue
        duration = data / info.channels / 8000
        with store.db.conn:
            store.db.execute(
                "UPDATE recordings SET duration_s = ?, bytes = ?, state = 'repaired' "
                "WHERE call_id = ?", (round(duration, 2), HEADER_BYTES + data, call_id))
        LOGGER.warning("recording of call %s was cut off (power cut or crash): %.1f s kept",
                       call_id, duration)
        mended += 1
    return mended


def _patched(header: bytes, patches: list[tuple[int, bytes]]) -> bytes:
    fixed = bytearray(header)
    for offset, value in patches:
        fixed[offset:offset + len(value)] = value
    return bytes(fixed)

