"""The `linebox` command line as an admin uses it: config import/export, status, first start."""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.e2e.linebox import REPO_ROOT, base_config, running_linebox
from tests.e2e.sipp import free_port


def linebox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware", *args], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=30, check=False,
    )


def write_config(path: Path, config: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def test_config_import_then_export_round_trips(tmp_path: Path) -> None:
    db = str(tmp_path / "box.db")
    source = write_config(tmp_path / "in.yaml", base_config())
    imported = linebox("config", "import", str(source), "--db", db)
    assert imported.returncode == 0, imported.stderr
    exported = linebox("config", "export", "--db", db)
    assert exported.returncode == 0, exported.stderr
    data = yaml.safe_load(exported.stdout)
    assert [e["number"] for e in data["extensions"]] == [f"10{i}" for i in range(1, 10)]
    assert data["numbers"][0]["destination"] == "200"
    again = write_config(tmp_path / "again.yaml", data)
    assert linebox("config", "import", str(again), "--db", db).returncode == 0
    assert linebox("config", "export", "--db", db).stdout == exported.stdout


def test_invalid_config_is_refused_naming_the_key_and_nothing_changes(tmp_path: Path) -> None:
    db = str(tmp_path / "box.db")
    assert linebox("config", "import", str(write_config(tmp_path / "ok.yaml", base_config())),
                   "--db", db).returncode == 0
    before = linebox("config", "export", "--db", db).stdout
    broken = base_config()
    broken["numbers"] = [{"number": "74951234567", "trunk": "provider", "channels": 500,
                          "destination": "200"}]
    result = linebox("config", "import", str(write_config(tmp_path / "bad.yaml", broken)),
                     "--db", db)
    assert result.returncode == 1
    assert "numbers[0].channels" in result.stderr and "nothing was changed" in result.stderr
    assert linebox("config", "export", "--db", db).stdout == before


def test_yaml_syntax_error_is_refused_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("extensions: [\n  {number: '101'\n", encoding="utf-8")
    result = linebox("config", "import", str(bad), "--db", str(tmp_path / "box.db"))
    assert result.returncode == 1
    assert "line" in result.stderr


def test_status_reads_the_running_daemon_over_its_control_socket(tmp_path: Path) -> None:
    with running_linebox(tmp_path / "box", base_config()) as daemon:
        as_json = linebox("status", "--db", str(daemon.db), "--json")
        assert as_json.returncode == 0, as_json.stderr
        status = json.loads(as_json.stdout)
        assert status["sip"] == daemon.address
        assert {c["key"]: c["capacity"] for c in status["channels"]} == {
            "number:74951234567": 3, "trunk:provider": 10,
        }
        human = linebox("status", "--db", str(daemon.db))
        assert human.returncode == 0
        assert "number:74951234567: 0/3" in human.stdout


def test_status_lists_the_lines_with_their_state_and_channels(tmp_path: Path) -> None:
    config = base_config()
    config["trunks"].append({"name": "nowhere", "host": "nowhere.invalid", "register": False,
                             "channels": 5})
    with running_linebox(tmp_path / "box", config) as daemon:
        status = json.loads(linebox("status", "--db", str(daemon.db), "--json").stdout)
        assert status["lines"] == [
            {"name": "provider", "kind": "sip", "state": "up",
             "reason": "no registration (calls by address)", "channels_in_use": 0,
             "channels": 10},
            {"name": "nowhere", "kind": "sip", "state": "down",
             "reason": "cannot resolve nowhere.invalid", "channels_in_use": 0, "channels": 5},
        ]
        human = linebox("status", "--db", str(daemon.db)).stdout
        assert "provider (sip): up, no registration (calls by address); 0 of 10 channels" in human
        assert "nowhere (sip): down, cannot resolve nowhere.invalid" in human


def test_status_without_a_daemon_says_so(tmp_path: Path) -> None:
    result = linebox("status", "--db", str(tmp_path / "nothing.db"))
    assert result.returncode == 1
    assert "no daemon is running" in result.stderr


def test_first_start_seeds_the_default_department_and_prints_the_password(
    tmp_path: Path,
) -> None:
    db = tmp_path / "fresh.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "firmware", "run", "--db", str(db),
         "--sip", f"127.0.0.1:{free_port()}"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while len(lines) < 20 and not any("password" in line for line in lines):
            lines.append(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert any("Отдел продаж" in line for line in lines), lines
    password_line = next(line for line in lines if "password" in line)
    assert len(password_line.rsplit(":", 1)[1].strip()) >= 8
    exported = yaml.safe_load(linebox("config", "export", "--db", str(db)).stdout)
    assert exported["departments"][0]["number"] == "200"
    assert exported["departments"][0]["members"] == ["101"]


def test_agent_status_is_set_through_the_daemon_and_survives_a_restart(tmp_path: Path) -> None:
    with running_linebox(tmp_path / "box", base_config()) as daemon:
        result = linebox("agent", "101", "status", "break", "--reason", "lunch",
                         "--db", str(daemon.db))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "101: break"
        assert "break (lunch)" in linebox("status", "--db", str(daemon.db)).stdout
    with running_linebox(tmp_path / "box", base_config()) as again:
        agents = {a["extension"]: a for a in again.status()["agents"]}
        assert (agents["101"]["status"], agents["101"]["reason"]) == ("break", "lunch")


def test_agent_status_for_an_unknown_extension_is_refused(tmp_path: Path) -> None:
    with running_linebox(tmp_path / "box", base_config()) as daemon:
        result = linebox("agent", "999", "status", "dnd", "--db", str(daemon.db))
    assert result.returncode == 1
    assert "no extension 999" in result.stderr


def test_crm_import_replaces_the_owner_table_and_refuses_unknown_extensions(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "box.db")
    assert linebox("config", "import", str(write_config(tmp_path / "c.yaml", base_config())),
                   "--db", db).returncode == 0
    good = tmp_path / "owners.csv"
    good.write_text("phone,extension\n+7 916 123-45-67,101\n84951112233,102\n", encoding="utf-8")
    result = linebox("crm", "import", str(good), "--db", db)
    assert result.returncode == 0, result.stderr
    assert "imported 2" in result.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("79161234567,101\n79160000000,999\n", encoding="utf-8")
    refused = linebox("crm", "import", str(bad), "--db", db)
    assert refused.returncode == 1
    assert "bad.csv:2: unknown extension '999'; nothing was changed" in refused.stderr
    from firmware.store import Store

    with Store.open(db) as store:
        assert store.crm_owners() == {"79161234567": "101", "74951112233": "102"}


def _get(url: str) -> tuple[int, str]:
    """GET without following redirects: (status, Location or body)."""
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", "")


def _wait_for_web(url: str, process: subprocess.Popen[str], timeout_s: float = 15.0) -> tuple[
        int, str]:
    import time
    import urllib.error

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "linebox exited"
        try:
            return _get(url)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_run_with_http_serves_the_web_ui_and_stops_it_with_the_daemon(tmp_path: Path) -> None:
    import signal
    import socket

    db = tmp_path / "box.db"
    port = free_port(tcp=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "firmware", "run", "--db", str(db),
         "--sip", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # A fresh box: the web UI sends everyone to the first-run page (no default password).
        status, location = _wait_for_web(f"http://127.0.0.1:{port}/", process)
        assert (status, location) == (302, "/setup")
        status, page = _get(f"http://127.0.0.1:{port}/setup")
        assert status == 200 and "Первый запуск" in page
        assert db.with_suffix(".log").exists()  # the daemon's log beside the database
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
    assert process.returncode == 0
    with socket.socket() as probe:  # the web UI stopped with the daemon: nobody listens
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT only
        probe.bind(("127.0.0.1", port))


def start_web(db: Path) -> tuple[subprocess.Popen[str], int]:
    """`linebox web` on a free port of 127.0.0.1, its output piped."""
    port = free_port(tcp=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "firmware", "web", "--db", str(db), "--http",
         f"127.0.0.1:{port}"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return process, port


def test_web_serves_the_ui_alone(tmp_path: Path) -> None:
    db = tmp_path / "box.db"
    assert linebox("config", "import", str(write_config(tmp_path / "c.yaml", base_config())),
                   "--db", str(db)).returncode == 0
    process, port = start_web(db)
    try:
        assert _wait_for_web(f"http://127.0.0.1:{port}/login", process) == (302, "/setup")
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_voicemail_list_and_save_read_the_mailboxes(tmp_path: Path) -> None:
    from firmware.media import tones
    from firmware.media.audio import wav_bytes
    from firmware.store import Store

    db = tmp_path / "linebox.db"
    with Store.open(db) as store:
        message = store.add_voicemail(call_id="c1", mailbox="200", caller="79161234567",
                                      left_at=1_795_000_000.0, duration_s=0.5,
                                      audio=wav_bytes(tones.beep()))
    listed = linebox("voicemail", "list", "--db", str(db), "--tz", "UTC")
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.splitlines()[1].split()
    assert row[0] == str(message) and row[3:5] == ["200", "79161234567"] and row[-1] == "*"
    target = tmp_path / "message.wav"
    saved = linebox("voicemail", "save", str(message), str(target), "--heard", "--db", str(db))
    assert saved.returncode == 0, saved.stderr
    assert target.read_bytes() == wav_bytes(tones.beep())
    assert not linebox("voicemail", "list", "--db", str(db)).stdout.splitlines()[1].endswith("*")
    missing = linebox("voicemail", "save", "999", str(target), "--db", str(db))
    assert missing.returncode == 1 and "no message with id 999" in missing.stderr


# --- issue 9: private files, the setup code, nothing from outside obeyed by the terminal ------

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"  # retitle, clear, C1 CSI, bidi override
EVIL_CALLER = f"7916{ESCAPES}1234567"
SETUP_CODE_RE = re.compile(r"Web UI setup code \(the first-run page asks for it\): (\S+)")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(folder: Path, db: Path) -> None:
    assert mode(folder) == 0o700
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), db.with_suffix(".log")]
    assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}


def test_run_keeps_the_database_wal_and_log_private(tmp_path: Path) -> None:
    folder = tmp_path / "data"  # made by the daemon, under its umask
    db = folder / "linebox.db"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "firmware", "run", "--db", str(db), "--sip", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while len(lines) < 40 and not any(SETUP_CODE_RE.search(line) for line in lines):
            lines.append(process.stdout.readline())
        deadline = time.monotonic() + 10
        while not db.with_suffix(".sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert_private(folder, db)
    finally:
        process.terminate()
        process.wait(timeout=10)
    code = next(SETUP_CODE_RE.search(line) for line in lines if SETUP_CODE_RE.search(line))
    assert code is not None and len(code.group(1)) == 14  # what make run shows the newcomer


def test_start_mends_loose_permissions_and_names_what_it_mended(tmp_path: Path) -> None:
    from firmware.store import Store

    folder = tmp_path / "data"
    folder.mkdir()
    db = folder / "linebox.db"
    db.with_suffix(".log").write_text("an old log\n", encoding="utf-8")
    write_config(tmp_path / "c.yaml", base_config())
    assert linebox("config", "import", str(tmp_path / "c.yaml"), "--db", str(db)) \
        .returncode == 0
    # As files were made before this fix: 0644 in a 0755 folder. A reader holding the
    # database open keeps its WAL and shared-memory files there (made 0644 beside it).
    for path in (folder, db, db.with_suffix(".log")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    reader = Store.open(db)
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    for path in (wal, shm):
        path.chmod(0o644)
    process, port = start_web(db)
    try:
        _wait_for_web(f"http://127.0.0.1:{port}/login", process)
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
        reader.close()
    for path in (folder, db, wal, shm, db.with_suffix(".log")):
        assert f"permissions of {path} mended" in output, output
    assert mode(folder) == 0o700 and mode(db) == 0o600
    assert mode(db.with_suffix(".log")) == 0o600


def test_status_shows_the_setup_code_until_an_admin_exists(tmp_path: Path) -> None:
    from firmware.store import Store
    from webui.security import hash_password

    with running_linebox(tmp_path / "box", base_config()) as daemon:
        printed = SETUP_CODE_RE.search(daemon.log())
        assert printed, daemon.log()
        human = linebox("status", "--db", str(daemon.db))
        assert f"Web UI setup code (no administrator yet; the first-run page asks for it): " \
               f"{printed.group(1)}" in human.stdout
        as_json = json.loads(linebox("status", "--db", str(daemon.db), "--json").stdout)
        assert as_json["setup_code"] == printed.group(1)
        with Store.open(daemon.db) as store:
            assert store.claim_first_admin(hash_password("long enough"), printed.group(1))
        assert json.loads(linebox("status", "--db", str(daemon.db), "--json").stdout)[
            "setup_code"] is None
        assert "setup code" not in linebox("status", "--db", str(daemon.db)).stdout


def test_status_prints_outside_values_without_their_control_characters() -> None:
    from firmware.cli import format_status

    status = {
        "sip": "127.0.0.1:5060", "pid": 1,
        "registrations": [{"extension": "101", "contact": f"sip:101@x{ESCAPES}",
                           "source": "udp:127.0.0.1:5062", "expires_in_s": 60,
                           "user_agent": f"Phone{ESCAPES}"}],
        "trunks": [{"name": "provider", "state": "failed", "error": f"403 {ESCAPES}"}],
        "agents": [], "channels": [], "bans": [],
        "calls": [{"caller": EVIL_CALLER, "dialed": "200", "state": "ringing",
                   "answered_by": None, "ringing": ["101"], "duration_s": 3}],
    }
    text = format_status(status)
    assert all(char not in text for char in "\x1b\x07\x9b\u202e")
    assert "7916\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202e1234567" in text
    assert "Phone\\x1b" in text


def test_status_says_when_the_clock_is_not_synchronised() -> None:
    from firmware.cli import format_status

    status: dict[str, object] = {"sip": "127.0.0.1:5060", "pid": 1, "registrations": [],
                              "trunks": [], "agents": [], "channels": [], "bans": [],
                              "calls": []}
    assert "Clock:" not in format_status({**status, "clock_synchronised": True})
    assert "Clock: not synchronised by NTP yet" in format_status(
        {**status, "clock_synchronised": False})


def test_the_status_json_is_still_json_and_obeys_nothing() -> None:
    from firmware.display import terminal_json

    raw = json.dumps({"caller": EVIL_CALLER, "name": "Мария"}, ensure_ascii=False)
    safe = terminal_json(raw)
    assert all(char not in safe for char in "\x1b\x07\x9b\u202e")
    assert json.loads(safe) == {"caller": EVIL_CALLER, "name": "Мария"}
    assert "Мария" in safe


def test_csv_cells_that_would_be_formulas_start_with_an_apostrophe() -> None:
    from firmware.display import csv_cell

    assert csv_cell("=1+1") == "'=1+1"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("-2+3") == "'-2+3"
    assert csv_cell("+7 916 =1") == "'+7 916 =1"
    assert csv_cell("\r=1") == "'\r=1"
    assert csv_cell("+79161234567") == "+79161234567"  # a caller's number stays usable
    assert csv_cell("79161234567") == "79161234567"
    assert csv_cell("Мария") == "Мария"


def test_call_list_report_and_voicemail_list_escape_what_callers_sent(tmp_path: Path) -> None:
    from firmware.store import Store, new_call_id

    db = tmp_path / "linebox.db"
    started = 1_795_000_000.0
    with Store.open(db) as store:
        call_id = new_call_id()
        store.record_finished_calls([({
            "id": call_id, "started_at": started, "ended_at": started + 20,
            "direction": "inbound", "source": "trunk:provider", "caller": EVIL_CALLER,
            "dialed": "=HYPERLINK(\"http://evil.example\")", "number": "74951234567",
            "department": "200", "end_cause": "test", "outcome": "missed",
            "sip_call_id": call_id,
        }, [])])
        store.add_voicemail(call_id=call_id, mailbox="200", caller=EVIL_CALLER,
                            left_at=started, duration_s=1.0, audio=b"RIFF")
    day = datetime.datetime.fromtimestamp(started, datetime.UTC).date().isoformat()
    outputs = {
        "call list": linebox("call", "list", "--db", str(db), "--tz", "UTC"),
        "report": linebox("report", "--from", day, "--to", day, "--tz", "UTC", "--db",
                          str(db)),
        "voicemail list": linebox("voicemail", "list", "--db", str(db), "--tz", "UTC"),
    }
    for name, result in outputs.items():
        assert result.returncode == 0, (name, result.stderr)
        assert all(char not in result.stdout for char in "\x1b\x07\x9b\u202e"), name
        assert "7916\\x1b]0;pwned" in result.stdout, name
    as_csv = linebox("report", "--csv", "--kind", "missed", "--from", day, "--to", day,
                     "--tz", "UTC", "--db", str(db))
    row = next(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert row["caller"] == EVIL_CALLER  # digits first: no formula, kept as it came


def test_status_shows_a_modem_lines_details_the_internet_and_the_leds() -> None:
    from firmware.cli import format_status

    status = {
        "sip": "127.0.0.1:5060", "pid": 1, "registrations": [], "trunks": [], "agents": [],
        "channels": [], "bans": [], "calls": [],
        "lines": [{"name": "mts", "kind": "gsm", "state": "up", "reason": "registered (home)",
                   "channels_in_use": 0, "channels": 1, "signal_dbm": -71, "operator": "MTS",
                   "registration": "home", "imei": "861234567890127", "sim": "ready",
                   "port": "/dev/ttyUSB2"}],
        "internet": {"state": "down", "since": 1.7e9, "reason": "default route lost"},
        "outbound_line": "mts", "leds": {"power": "on", "gsm": "blink"},
    }
    text = format_status(status)
    assert "home, MTS, signal -71 dBm, SIM ready, IMEI 861234567890127, port /dev/ttyUSB2" in text
    assert "Internet: down since" in text and "(default route lost); calls out via mts" in text
    assert "LEDs: power on, gsm blink" in text
