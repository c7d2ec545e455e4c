"""`linebox run`'s start-up order (firmware/cli.py): the web UI is forked before the daemon's own
modules are imported, with what both processes use imported first so that it is shared.

Each question is asked of a fresh interpreter (a subprocess): what this test process has
imported already says nothing about what `import firmware.cli` pulls in.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT_S = 120.0
WEB_WAIT_S = 60.0
POLL_S = 0.02
STOP_TIMEOUT_S = 15.0
SIGTERM_TRIES = 5
# The daemon's own packages (asyncio too: the web UI is threads under waitress): none of them
# may be imported before the fork.
DAEMON_ONLY = ("firmware.daemon", "firmware.calls", "firmware.core", "firmware.sip",
               "firmware.transport", "firmware.modems", "asyncio")
# Needed only when a configuration file is read or written (firmware/store/config_yaml.py).
ON_USE_ONLY = ("yaml",)


def modules_after(code: str, tmp_path: Path) -> set[str]:
    """The modules a fresh interpreter holds after running `code` (in the repository, with a
    database at tmp_path/linebox.db for code that opens one)."""
    script = (f"import json, sys\nDB = {str(tmp_path / 'linebox.db')!r}\n{code}\n"
              "print(json.dumps(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def ours(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in ("firmware", "hal")}


# What `linebox run` has imported when it forks the web UI: the CLI, the store opened and
# seeded (as _run does before _start_web), and the modules named as shared.
BEFORE_FORK = """
from firmware import cli
from firmware.store import Store, seed_default
store = Store.open(DB)
seed_default(store)
store.close()
import importlib
for name in cli.SHARED_WITH_WEB:
    importlib.import_module(name)
"""
# What the web UI imports to serve its first page.
WEB = """
from webui import create_app
app = create_app({"DB": DB})
assert app.test_client().get("/", follow_redirects=True).status_code == 200
"""
DAEMON = "import firmware.daemon"


def test_the_cli_does_not_import_the_daemon_before_the_web_ui_is_forked(tmp_path: Path) -> None:
    before_fork = modules_after(BEFORE_FORK, tmp_path)
    imported = sorted(name for name in before_fork
                      if any(name == package or name.startswith(package + ".")
                             for package in DAEMON_ONLY))
    assert imported == [], f"imported before the fork, though only the daemon uses them: {imported}"


def test_neither_process_imports_yaml_to_start(tmp_path: Path) -> None:
    for code in (BEFORE_FORK, WEB, DAEMON):
        modules = modules_after(code, tmp_path)
        assert not [name for name in ON_USE_ONLY if name in modules], code


def test_every_firmware_module_both_processes_use_is_imported_before_the_fork(
        tmp_path: Path) -> None:
    before_fork = modules_after(BEFORE_FORK, tmp_path)
    web = modules_after(WEB, tmp_path)
    daemon = modules_after(DAEMON, tmp_path)
    shared = ours(web & daemon)
    assert shared, "the web UI and the daemon import no firmware module in common?"
    missing = sorted(shared - before_fork)
    # Each missing one would be imported twice, once in each process (more idle RAM, and time
    # on the web UI's way to its first page): name it in firmware/cli.py SHARED_WITH_WEB.
    assert missing == [], f"imported by both after the fork: {missing}"


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(word) for word in text.split()]


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path(f"/proc/self/task/{os.getpid()}/children").exists(),
                    reason="needs /proc/PID/task/PID/children (Linux) to see the forked web UI")
def test_sigterm_while_the_daemon_imports_stops_the_web_ui_too(tmp_path: Path) -> None:
    # Right after the fork the daemon imports its own modules while the web UI starts (that is
    # the point of the order); init's SIGTERM may come then. It must stop both processes, not
    # the daemon alone (a web UI left behind holds its port against the next start), and not
    # hang: an exception raised by a signal handler inside logging's fork handler left
    # logging's lock held (cli._StartUpStop).
    for attempt in range(SIGTERM_TRIES):
        web_port = free_tcp_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "firmware", "--log-level", "WARNING", "run",
             "--db", str(tmp_path / f"try{attempt}" / "linebox.db"),
             "--sip", f"127.0.0.1:{free_tcp_port()}", "--http", f"127.0.0.1:{web_port}"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        web: list[int] = []
        try:
            deadline = time.monotonic() + WEB_WAIT_S
            while not (web := children(process.pid)):
                assert process.poll() is None, f"linebox run exited with {process.returncode}"
                assert time.monotonic() < deadline, "linebox run started no web UI"
                time.sleep(POLL_S / 10)
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=STOP_TIMEOUT_S)
            assert code == 0, f"linebox run ended with {code}"  # a stop asked for, done
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while any(running(pid) for pid in web) and time.monotonic() < deadline:
                time.sleep(POLL_S)
            assert not [pid for pid in web if running(pid)], "the web UI outlived the daemon"
        finally:
            for pid in web:
                if running(pid):
                    os.kill(pid, signal.SIGKILL)
            if process.poll() is None:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        with socket.socket() as probe:  # nobody listens on the web UI's port
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", web_port))
