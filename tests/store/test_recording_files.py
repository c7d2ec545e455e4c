"""The recordings on disk (firmware/media/recorder_files.py) with a real database and real files:
a recording written as it goes and closed with its header's sizes; the oldest deleted first once
over the quota, the running ones never; a file a power cut left unfinished mended at the next
start; the 90 % warning. A failing card (ext4 on a loop device whose backing file is on a tiny
tmpfs that is then filled: writes land in the page cache and their writeback fails with EIO, as
a dying SD card's do) neither stops the writer thread nor leaves a file open.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from firmware.core.events import RecordingAudio, RecordingFinished, RecordingStarted
from firmware.media import recorder_files
from firmware.media.recorder import HEADER_BYTES, read_header
from firmware.media.recorder_files import RecordingFiles
from firmware.media.recorder_store import MB, recordings_dir, usage
from firmware.recording import RecordingSettings
from firmware.store.db import Store

WALL = 1_780_000_000.0  # 2026-05-28, any fixed time
SECOND_STEREO = b"\xd5\x2a" * 8000  # one second of 2-channel A-law


def files(db: Path, settings: RecordingSettings) -> RecordingFiles:
    writer = RecordingFiles(db, settings=lambda: settings)
    assert writer.ready.wait(10)
    return writer


def rows(db: Path) -> list[tuple[str, str, float, str, int]]:
    store = Store.open(db)
    try:
        return [tuple(r) for r in store.db.execute(
            "SELECT call_id, file, duration_s, state, bytes FROM recordings ORDER BY started_at")]
    finally:
        store.close()


def record(writer: RecordingFiles, call_id: str, seconds: int, at: float) -> None:
    writer.perform(RecordingStarted(call_id=call_id, codec="PCMA", channels=2, wall_time=at))
    for _ in range(seconds):
        writer.perform(RecordingAudio(call_id=call_id, data=SECOND_STEREO))
    writer.perform(RecordingFinished(call_id=call_id, duration_s=float(seconds)))


def test_a_recording_is_written_and_closed_with_its_sizes(tmp_path: Path) -> None:
    db = tmp_path / "linebox.db"
    writer = files(db, RecordingSettings(quota_mb=10, min_free_mb=1))
    record(writer, "call-1", 3, WALL)
    writer.close()
    [(call_id, file, duration, state, size)] = rows(db)
    assert (call_id, duration, state) == ("call-1", 3.0, "done")
    path = recordings_dir(db) / file
    data = path.read_bytes()
    assert size == len(data) == HEADER_BYTES + 3 * len(SECOND_STEREO)
    info = read_header(data)
    assert (info.codec, info.channels, info.duration_s) == ("PCMA", 2, 3.0)
    assert data[HEADER_BYTES:] == SECOND_STEREO * 3


def test_over_the_quota_the_oldest_recordings_go_first(tmp_path: Path) -> None:
    db = tmp_path / "linebox.db"
    # Each recording is 3 s of stereo (48 kB); a 0.1 MB quota holds two of them.
    settings = RecordingSettings(quota_mb=1, min_free_mb=1)
    writer = files(db, settings)
    quota = 1 * MB
    per = HEADER_BYTES + 3 * len(SECOND_STEREO)
    fits = quota // per
    for n in range(fits + 3):
        record(writer, f"call-{n:02d}", 3, WALL + n)
    writer.close()
    kept = [row[0] for row in rows(db)]
    assert kept == [f"call-{n:02d}" for n in range(3, fits + 3)]  # the three oldest went
    assert writer.deleted == 3
    on_disk = sorted(p.name for p in recordings_dir(db).rglob("*.wav"))
    assert on_disk == [f"{call_id}.wav" for call_id in kept]
    assert sum(p.stat().st_size for p in recordings_dir(db).rglob("*.wav")) <= quota


def test_a_running_recording_is_never_deleted_and_stops_when_nothing_else_can_go(
    tmp_path: Path,
) -> None:
    db = tmp_path / "linebox.db"
    writer = files(db, RecordingSettings(quota_mb=1, min_free_mb=1))
    writer.perform(RecordingStarted(call_id="long", codec="PCMA", channels=2, wall_time=WALL))
    seconds = MB // len(SECOND_STEREO) + 5  # more than the quota holds
    for _ in range(seconds):
        writer.perform(RecordingAudio(call_id="long", data=SECOND_STEREO))
    writer.perform(RecordingFinished(call_id="long", duration_s=float(seconds)))
    writer.close()
    [(call_id, file, duration, state, size)] = rows(db)
    assert state == "done" and size <= MB
    assert duration == (size - HEADER_BYTES) / 2 / 8000  # what was written, no more
    assert (recordings_dir(db) / file).stat().st_size == size


# A process that records two seconds and is killed (SIGKILL: no close, no fix-ups) once they
# are on disk — as a power cut finds it.
CUT_OFF_WRITER = """
import os, signal, sys, time
from pathlib import Path
from firmware.core.events import RecordingAudio, RecordingStarted
from firmware.media.recorder import HEADER_BYTES
from firmware.media import recorder_files
from firmware.media.recorder_files import RecordingFiles
from firmware.media.recorder_store import recordings_dir
from firmware.recording import RecordingSettings
db = Path(sys.argv[1])
writer = RecordingFiles(db, settings=lambda: RecordingSettings(quota_mb=10, min_free_mb=1))
writer.perform(RecordingStarted(call_id="cut", codec="PCMU", channels=2, wall_time=WALL_TIME))
for _ in range(2):
    writer.perform(RecordingAudio(call_id="cut", data=b"\\xd5\\x2a" * 8000))
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    found = list(recordings_dir(db).rglob("cut.wav"))
    if found and found[0].stat().st_size == HEADER_BYTES + 32000:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.01)
sys.exit(3)
""".replace("WALL_TIME", repr(WALL))


def test_a_file_cut_off_by_a_power_cut_is_mended_at_the_next_start(tmp_path: Path) -> None:
    db = tmp_path / "linebox.db"
    Store.open(db).close()
    child = subprocess.run([sys.executable, "-c", CUT_OFF_WRITER, str(db)], timeout=30,
                           cwd=Path(__file__).resolve().parents[2], capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    [(_, file, _, state, _)] = rows(db)
    path = recordings_dir(db) / file
    assert state == "recording"
    with path.open("ab") as handle:
        handle.write(b"\xd5")  # the last write was cut mid-frame
    assert read_header(path.read_bytes()).data_bytes == 0  # the header still says empty
    # The next start mends it.
    again = files(db, RecordingSettings(quota_mb=10, min_free_mb=1))
    again.close()
    assert again.repaired == 1
    [(_, _, duration, state, size)] = rows(db)
    data = path.read_bytes()
    assert (state, duration, size) == ("repaired", 2.0, len(data))
    assert read_header(data).data_bytes == len(data) - HEADER_BYTES == 2 * len(SECOND_STEREO)


def test_usage_warns_from_ninety_percent_of_the_quota(tmp_path: Path) -> None:
    db = tmp_path / "linebox.db"
    writer = files(db, RecordingSettings(quota_mb=1, min_free_mb=1))
    seconds = int(0.92 * MB // len(SECOND_STEREO))
    record(writer, "big", seconds, WALL)
    writer.close()
    store = Store.open(db)
    try:
        low = usage(store, db, RecordingSettings(quota_mb=2))
        high = usage(store, db, RecordingSettings(quota_mb=1))
    finally:
        store.close()
    assert not low.warning and high.warning and high.count == 1
    assert high.free_bytes > 0 and high.quota_bytes == MB


def test_the_cli_writes_a_calls_recording_to_a_file(tmp_path: Path) -> None:
    db = tmp_path / "linebox.db"
    writer = files(db, RecordingSettings(quota_mb=10, min_free_mb=1))
    record(writer, "call-7", 2, WALL)
    writer.close()
    [(_, file, _, _, _)] = rows(db)
    target = tmp_path / "out.wav"
    root = Path(__file__).resolve().parents[2]
    saved = subprocess.run([sys.executable, "-m", "firmware", "call", "recording", "call-7",
                            str(target), "--db", str(db)], cwd=root, capture_output=True,
                           text=True, timeout=30, check=False)
    assert saved.returncode == 0, saved.stderr
    assert target.read_bytes() == (recordings_dir(db) / file).read_bytes()
    missing = subprocess.run([sys.executable, "-m", "firmware", "call", "recording", "nope",
                              str(target), "--db", str(db)], cwd=root, capture_output=True,
                             text=True, timeout=30, check=False)
    assert missing.returncode == 1 and "no recording of call nope" in missing.stderr


# ------------------------------------------------------------------ a failing card

CARD_BYTES = "64M"  # what the file system on the loop device believes it has
BACKING_SIZE = "3m"  # what its backing file may really take
FILL_CHUNK = 64 * 1024
WAIT_S = 10.0
# Audio enough to need room the backing file does not have (a few hundred kB may still land in
# blocks mkfs left backed): 4 MB, more than the whole backing tmpfs.
UNBACKED_S = 4 * MB // len(SECOND_STEREO)
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mkfs.ext4") or not Path("/dev/loop-control").exists(),
    reason="a loop device and mounts need root, mkfs.ext4 and loop support")


class Card:
    """A mounted file system whose writes fail at writeback once `fill()` is called."""

    def __init__(self, backing: Path) -> None:
        self.filler = backing / "filler"

    def fill(self) -> None:
        with self.filler.open("wb", buffering=0) as stream:
            while True:
                try:
                    stream.write(b"\0" * FILL_CHUNK)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    return

    def heal(self) -> None:
        self.filler.unlink()


@contextmanager
def failing_card(mount_point: Path) -> Iterator[Card]:
    backing = mount_point.parent / "backing"
    backing.mkdir(parents=True)
    mount_point.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={BACKING_SIZE}", "tmpfs", str(backing)],
                   check=True, timeout=10)
    try:
        image = backing / "card.img"
        subprocess.run(["truncate", "-s", CARD_BYTES, str(image)], check=True, timeout=10)
        # No journal: a failed journal write would turn the card read-only, another error.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E",
                        "lazy_itable_init=1", str(image)], check=True, timeout=30)
        subprocess.run(["mount", "-o", "loop,errors=continue", str(image), str(mount_point)],
                       check=True, timeout=10)
        try:
            yield Card(backing)
        finally:
            subprocess.run(["umount", "-l", str(mount_point)], check=False, timeout=10)
    finally:
        subprocess.run(["umount", "-l", str(backing)], check=False, timeout=10)


def open_under(folder: Path) -> list[str]:
    """The files under `folder` this process holds open."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        with_target = os.path.realpath(fd) if fd.is_symlink() else ""
        if with_target.startswith(f"{folder}/"):
            found.append(with_target)
    return found


def wait_until(predicate: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        time.sleep(0.05)


def started(call_id: str) -> RecordingStarted:
    return RecordingStarted(call_id=call_id, codec="PCMA", channels=2, wall_time=WALL)


def started_then_card_full(db: Path, card: Card, call_id: str) -> RecordingFiles:
    """A writer whose recording of `call_id` began while the card worked; the card full now."""
    writer = files(db, RecordingSettings(quota_mb=10, min_free_mb=1))
    writer.perform(started(call_id))
    # Its row is written after the header's sync (recorder_files._start): once it is there
    # the start is complete, and only then may the card fill (filled between the header's
    # write and its sync, the start itself would fail — a clean-clone run saw it).
    wait_until(lambda: any(row[0] == call_id for row in rows(db)), "the recording's row")
    card.fill()
    return writer


@needs_root
def test_a_card_error_in_the_seconds_sync_is_logged_once_and_later_calls_are_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    db = tmp_path / "data" / "linebox.db"
    with failing_card(recordings_dir(db)) as card:
        writer = started_then_card_full(db, card, "during")
        # Three seconds of audio a little more than a second apart: each second's sync fails.
        for _ in range(3):
            writer.perform(RecordingAudio(call_id="during", data=SECOND_STEREO * UNBACKED_S))
            time.sleep(1.3)
        wait_until(lambda: writer.sync_error is not None, "the sync's failure seen")
        card.heal()
        writer.perform(started("after"))
        writer.perform(RecordingAudio(call_id="after", data=SECOND_STEREO))
        wait_until(lambda: writer.sync_error is None, "the next second's sync working")
        writer.perform(RecordingAudio(call_id="after", data=SECOND_STEREO))
        writer.perform(RecordingFinished(call_id="after", duration_s=2.0))
        writer.close()
        failures = [r for r in caplog.records if r.name == recorder_files.__name__
                    and "cannot be put on the data partition" in r.getMessage()]
        assert len(failures) == 1 and "during.wav" in failures[0].getMessage()
        kept = {row[0]: row for row in rows(db)}
        _, file, duration, state, size = kept["after"]
        assert (duration, state) == (2.0, "done")  # the thread outlived the card's error
        assert (recordings_dir(db) / file).read_bytes()[HEADER_BYTES:] == SECOND_STEREO * 2
        assert not open_under(recordings_dir(db))


@needs_root
def test_a_recording_whose_header_cannot_be_written_leaves_no_file_open(tmp_path: Path) -> None:
    db = tmp_path / "data" / "linebox.db"
    with failing_card(recordings_dir(db)) as card:
        writer = files(db, RecordingSettings(quota_mb=10, min_free_mb=1))
        card.fill()
        writer.perform(started("refused"))  # the header's sync fails with EIO
        writer.close()
        assert not open_under(recordings_dir(db))
        assert list(recordings_dir(db).rglob("refused.wav")) == []  # nothing nobody counts
        assert rows(db) == []


@needs_root
def test_a_recording_whose_header_cannot_be_fixed_up_is_closed_and_mended_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The second's sync put off, so the fix-up's sync at the call's end is the one that hears
    # the card's error.
    monkeypatch.setattr(recorder_files, "SYNC_INTERVAL_S", 3600.0)
    db = tmp_path / "data" / "linebox.db"
    with failing_card(recordings_dir(db)) as card:
        writer = started_then_card_full(db, card, "ended")
        writer.perform(RecordingAudio(call_id="ended", data=SECOND_STEREO * UNBACKED_S))
        writer.perform(RecordingFinished(call_id="ended", duration_s=float(UNBACKED_S)))
        writer.close()
        assert not open_under(recordings_dir(db))
        [(_, _, _, state, _)] = rows(db)
        assert state == "recording"
        card.heal()
        files(db, RecordingSettings(quota_mb=10, min_free_mb=1)).close()
        [(_, _, _, state, _)] = rows(db)
        assert state == "repaired"  # the next start mended it from the file's length


# The thread's death is what this test makes happen.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_writer_thread_that_died_is_noticed_and_nothing_more_is_queued(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    db = tmp_path / "linebox.db"
    with Store.open(db) as store, store.db.conn:
        # A recording a power cut left unfinished: the start mends it (a write)...
        store.db.execute("INSERT INTO recordings (call_id, file, started_at, channels, codec) "
                         "VALUES ('cut', 'gone.wav', ?, 2, 'PCMA')", (WALL,))
    # ...while another process holds the database's write lock past the busy timeout.
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        writer = RecordingFiles(db, settings=lambda: RecordingSettings(quota_mb=10))
        writer._thread.join(WAIT_S + 5)
        assert not writer._thread.is_alive()
    finally:
        holder.rollback()
        holder.close()
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            writer.perform(started("lost"))
    said = [r for r in caplog.records if "writer thread has stopped" in r.getMessage()]
    assert len(said) == 1 and writer.failed
    assert writer._queue.empty()
