"""The box's files are its own (issue 9 item 3): what `secure_data_files` mends and what it
leaves alone."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from firmware.store.files import data_files, secure_data_files


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make_box(folder: Path, file_mode: int, folder_mode: int) -> Path:
    folder.mkdir()
    db = folder / "linebox.db"
    for name in ("linebox.db", "linebox.db-wal", "linebox.db-shm", "linebox.log",
                 "linebox.log.1", "notes.txt"):
        (folder / name).write_text("x", encoding="utf-8")
        (folder / name).chmod(file_mode)
    folder.chmod(folder_mode)
    return db


def test_loose_files_and_folder_are_narrowed_and_each_mend_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    db = make_box(tmp_path / "data", 0o644, 0o755)
    caplog.set_level(logging.WARNING, logger="firmware.store.files")
    mended = secure_data_files(db)
    names = ["linebox.db", "linebox.db-wal", "linebox.db-shm", "linebox.log", "linebox.log.1"]
    paths = [tmp_path / "data", *(tmp_path / "data" / name for name in names)]
    assert mended == [f"permissions of {path} mended: {0o755 if path.is_dir() else 0o644:04o} "
                      f"-> {0o700 if path.is_dir() else 0o600:04o} (others could read it)"
                      for path in paths]
    assert [r.getMessage() for r in caplog.records] == mended
    assert mode(tmp_path / "data") == 0o700
    assert {p.name: mode(p) for p in data_files(db)} == {name: 0o600 for name in names}
    assert mode(tmp_path / "data" / "notes.txt") == 0o644  # not the box's: left as it is


def test_private_files_need_no_mending(tmp_path: Path) -> None:
    db = make_box(tmp_path / "data", 0o600, 0o700)
    assert secure_data_files(db) == []


def test_a_shared_folder_is_left_alone_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    shared = tmp_path / "shared"
    db = make_box(shared, 0o644, 0o1777)  # like /tmp
    caplog.set_level(logging.WARNING, logger="firmware.store.files")
    secure_data_files(db)
    assert mode(shared) == 0o1777
    assert any("keep the database in a folder of its own" in r.getMessage()
               for r in caplog.records)
    assert mode(db) == 0o600
