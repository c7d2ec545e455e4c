"""`linebox run`'s start-up order (firmware/cli.py): the web UI is forked before the daemon's own
modules are imported, with what both processes use imported first so that it is shared.

Each question is asked of a fresh interpreter (a subprocess): what this test process has
imported already says nothing about what `import firmware.cli` pulls in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT_S = 120.0
# The daemon's own packages: none of them may be imported before the fork.
DAEMON_ONLY = ("firmware.daemon", "firmware.calls", "firmware.core", "firmware.sip",
               "firmware.transport", "firmware.modems")
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
