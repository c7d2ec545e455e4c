"""`linebox config import` and the daemon against hostile configurations (issue 9 items 8 and
13): a one-line message and exit status 1, never a traceback, and nothing changes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.e2e.linebox import base_config, running_linebox
from tests.e2e.sipp import free_port
from tests.store.hostile import HOSTILE_FILES
from tests.test_cli import linebox, write_config


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "box.db")
    imported = linebox("config", "import", str(write_config(tmp_path / "ok.yaml", base_config())),
                       "--db", path)
    assert imported.returncode == 0, imported.stderr
    return path


@pytest.mark.parametrize("name", list(HOSTILE_FILES))
def test_a_hostile_file_is_refused_in_one_line_and_nothing_changes(
    tmp_path: Path, db: str, name: str,
) -> None:
    content, message = HOSTILE_FILES[name]
    before = linebox("config", "export", "--db", db).stdout
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    result = linebox("config", "import", str(path), "--db", db)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"linebox: {path}: ") and message in line
    assert line.endswith("; nothing was changed")
    assert linebox("config", "export", "--db", db).stdout == before


def test_a_name_with_a_line_break_is_refused_by_its_key_path(tmp_path: Path, db: str) -> None:
    config = base_config()
    config["sip"] = {"user_agent": "Linebox\r\nCall-Info: <sip:x>;answer-after=0"}
    result = linebox("config", "import", str(write_config(tmp_path / "ua.yaml", config)),
                     "--db", db)
    assert result.returncode == 1
    assert "sip.user_agent: the text must not contain a control character" in result.stderr
    assert "U+000D at character 8" in result.stderr


def test_export_of_a_stored_configuration_it_cannot_read_says_why(db: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE extensions SET name = 'Agent\t101' WHERE number = '101'")
    result = linebox("config", "export", "--db", db)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "extensions[0].name: the text must not contain a control character" in result.stderr


def test_the_daemon_keeps_its_configuration_when_the_stored_one_cannot_be_read(
    tmp_path: Path,
) -> None:
    with running_linebox(tmp_path / "linebox", base_config()) as box:
        with sqlite3.connect(box.db) as conn:
            conn.execute("UPDATE extensions SET name = 'Agent\t101' WHERE number = '101'")
            conn.execute("UPDATE settings SET value = value + 1 WHERE key = 'config_revision'")
        box.wait_for(lambda: "not applied" in box.log(), timeout_s=10.0,
                     what="the reload's refusal in the log")
        assert "extensions[0].name: the text must not contain" in box.log()
        assert box.status()["pid"]  # still running, still answering
    # running_linebox checked the log holds no traceback and the daemon stopped cleanly.


def test_run_over_a_stored_configuration_it_cannot_read_says_why_without_a_traceback(
    db: str,
) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE extensions SET name = 'Agent\t101' WHERE number = '101'")
    result = linebox("run", "--db", db, "--sip", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "the stored configuration cannot be used" in result.stderr
    assert "extensions[0].name" in result.stderr and "linebox config import" in result.stderr
