"""The recordings on disk (firmware/media/recorder_files.py) with a real database and real files:
a recording written as it goes and closed with its header's sizes; the oldest deleted first once
over the quota, the running ones never; a file a power cut left unfinished mended at the next
start; the 90 % warning.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from firmware.core.events import RecordingAudio, RecordingFinished, RecordingStarted
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
