"""Updates of the box's system with RAUC: the daemon's side.

The web UI stores an uploaded bundle in the update folder beside the database and asks the
daemon (control socket, `update_install`) to install it; the daemon runs `rauc install` as a
subprocess (RAUC's service does the work as root over D-Bus; the gateway stays unprivileged),
reads its progress lines ("40% Checking bundle done.") and keeps the outcome for the page
(`update_status`, which also reads `rauc status` for the booted slot and the other one's
state). The bundle's signature is checked by RAUC against the box's keyring before anything is
written; a refused bundle changes nothing and its reason is shown.

Rollback (images/README.md): a new system is booted once on trial (the Pi firmware's tryboot);
`mark_good_when_ready` runs `rauc status mark-good` only once SIP is served (the daemon has
started) and the web UI answers, so a system that never gets there is not committed and the
next reboot (the watchdog's, or a power cut) returns to the old slot.

Where RAUC is not present (a development machine), every answer says so and nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .update_files import BUNDLE_NAME, update_dir_for

__all__ = ["Updater", "parse_status", "update_dir_for", "web_url_from_env"]

LOGGER = logging.getLogger(__name__)

# Overridable for tests (a system.conf of plain-file slots, RAUC's service on a session bus).
SYSTEM_CONF = Path(os.environ.get("LINEBOX_RAUC_SYSTEM_CONF", "/etc/rauc/system.conf"))
# The reboot-watch service (root) reboots when this file appears (the overlay's reboot-watch).
REBOOT_REQUEST = Path(os.environ.get("LINEBOX_REBOOT_REQUEST", "/run/linebox/requests/reboot"))
# rauc-boot's mark of a try armed in this boot (tmpfs: gone after any restart).
TRYBOOT_MARK = Path(os.environ.get("LINEBOX_RUN_DIR", "/run/linebox")) / "tryboot"
STATUS_TIMEOUT_S = 30.0  # `rauc status`: D-Bus activation of the service included
INSTALL_TIMEOUT_S = 30 * 60.0  # a 100 MB slot on a slow SD card, with room
MARK_GOOD_TIMEOUT_S = 60.0
# Readiness before the slot is marked good: the web UI polled this often, this long at most.
READY_POLL_S = 2.0
READY_WAIT_S = 300.0
HTTP_PROBE_TIMEOUT_S = 3.0
ERROR_TEXT_MAX = 2000  # of rauc's output kept for the page
PROGRESS = re.compile(r"^\s*(\d{1,3})% (.+)$")
LAST_ERROR = re.compile(r"^(?:LastError: |rauc-\w+: |Failed to \w+)")


@dataclass(kw_only=True)
class InstallState:
    """The last installation since the daemon started (one at a time)."""

    phase: str = "idle"  # idle, installing, installed, failed
    percent: int = 0
    step: str = ""
    error: str = ""
    started_at: float | None = None  # wall clock, for the page
    finished_at: float | None = None
    lines: list[str] = field(default_factory=list)


class Updater:
    """Runs RAUC for the daemon. `command` is how to call rauc (tests give a wrapper)."""

    def __init__(self, update_dir: Path, *, command: Sequence[str] | None = None,
                 system_conf: Path = SYSTEM_CONF, reboot_request: Path = REBOOT_REQUEST) -> None:
        self.update_dir = update_dir
        found = shutil.which("rauc")
        self.command: tuple[str, ...] | None = (
            tuple(command) if command is not None
            else (found,) if found and system_conf.exists() else None)
        self.reboot_request = reboot_request
        self.state = InstallState()
        self.marked_good: str | None = None  # the slot marked good at this start, once
        self.previous_try_failed: str | None = None  # a slot that was tried and not kept
        self._task: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        return self.command is not None

    @property
    def bundle_path(self) -> Path:
        return self.update_dir / BUNDLE_NAME

    async def _run(self, *args: str, timeout_s: float) -> tuple[int, str]:
        assert self.command is not None
        process = await asyncio.create_subprocess_exec(
            *self.command, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            return -1, f"rauc {args[0]} took longer than {timeout_s:.0f} s"
        return process.returncode or 0, output.decode("utf-8", "replace")

    async def status(self) -> dict[str, Any]:
        """What the System page shows: RAUC present or not, the booted slot, each slot's
        state, the last installation."""
        answer: dict[str, Any] = {"available": self.available, "install": asdict(self.state),
                                  "previous_try_failed": self.previous_try_failed}
        answer["install"].pop("lines")
        if not self.available:
            return answer
        code, output = await self._run("status", "--detailed", "--output-format=json",
                                       timeout_s=STATUS_TIMEOUT_S)
        if code != 0:
            answer["error"] = _short(output)
            return answer
        try:
            answer.update(parse_status(output))
        except ValueError as exc:
            answer["error"] = f"unreadable rauc status: {exc}"
        return answer

    def start_install(self, path: Path) -> dict[str, Any]:
        """Begin installing `path` (it must be the uploaded bundle in the update folder);
        the answer comes at once, the progress through `status()`."""
        if not self.available:
            return {"ok": False, "error": "RAUC is not installed on this system"}
        if self._task is not None and not self._task.done():
            return {"ok": False, "error": "an installation is already running"}
        try:
            resolved = path.resolve(strict=True)
        except OSError:
            return {"ok": False, "error": f"no bundle at {path}"}
        if resolved.parent != self.update_dir.resolve():
            return {"ok": False, "error": "the bundle must be in the update folder"}
        self.state = InstallState(phase="installing", started_at=time.time())
        self._task = asyncio.get_running_loop().create_task(self._install(resolved))
        return {"ok": True}

    async def _install(self, path: Path) -> None:
        assert self.command is not None
        state = self.state
        LOGGER.info("update: rauc install %s", path)
        process: asyncio.subprocess.Process | None = None
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command, "install", str(path), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            assert process.stdout is not None
            async with asyncio.timeout(INSTALL_TIMEOUT_S):
                while line := await process.stdout.readline():
                    self._progress(state, line.decode("utf-8", "replace").rstrip())
                code = await process.wait()
        except TimeoutError:
            code, state.lines = -1, [*state.lines, "timed out"]
        except Exception as exc:  # any failure must end the install, not leave it hanging
            # OSError (rauc cannot start), ValueError from readline (a line over the stream's
            # limit), ...: left to escape, the page would show "installing" for good.
            code, state.lines = -1, [*state.lines, f"{type(exc).__name__}: {exc}"]
        finally:
            if process is not None and process.returncode is None:
                # Killed and waited for, whatever happened: never a zombie, never a rauc left
                # running half an install nobody watches. A cancelled task waits too (shielded).
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.shield(process.wait())
        state.finished_at = time.time()
        if code == 0:
            state.phase, state.percent = "installed", 100
            LOGGER.info("update: installed; the other slot boots on trial at the next restart")
        else:
            state.phase = "failed"
            state.error = _failure(state.lines)
            LOGGER.warning("update: rauc install failed: %s", state.error)
        with contextlib.suppress(OSError):  # the slot holds it now, or it was refused
            path.unlink()

    @staticmethod
    def _progress(state: InstallState, line: str) -> None:
        state.lines = [*state.lines[-50:], line]
        match = PROGRESS.match(line)
        if match:
            state.percent = min(100, int(match.group(1)))
            state.step = match.group(2)

    def request_reboot(self) -> dict[str, Any]:
        """Ask the root reboot-watch service to restart the box (into the trial slot, if
        one is pending)."""
        if not self.available:
            return {"ok": False, "error": "RAUC is not installed on this system"}
        try:
            self.reboot_request.touch()
        except OSError as exc:
            return {"ok": False, "error": f"cannot ask for a restart: {exc}"}
        LOGGER.warning("update: restart requested from the web UI")
        return {"ok": True}

    async def mark_good_when_ready(self, web_url: str | None) -> None:
        """Once the web UI answers (SIP is served already: the daemon has started), tell
        RAUC the booted slot is good. Never if the web UI does not come up in READY_WAIT_S:
        a trial system that cannot serve is then left to the rollback."""
        if not self.available:
            return
        before = await self.status()
        booted = before.get("booted")
        for slot in before.get("slots", []):
            # The primary is a slot that is not the booted one and was marked bad: a try of
            # it ended here (the firmware fell back): worth telling the admin.
            # Not while a try is armed in this boot (installed, not yet restarted).
            if (slot.get("bootname") == before.get("primary") and slot.get("bootname") != booted
                    and slot.get("boot_status") == "bad" and not TRYBOOT_MARK.exists()):
                self.previous_try_failed = str(slot.get("bootname"))
                LOGGER.warning("update: slot %s was tried and did not come up; %s runs",
                               self.previous_try_failed, booted)
        if web_url is not None:
            deadline = time.monotonic() + READY_WAIT_S
            while not await asyncio.to_thread(_http_answers, web_url):
                if time.monotonic() > deadline:
                    LOGGER.error("update: the web UI did not answer in %.0f s: slot %s not "
                                 "marked good", READY_WAIT_S, booted)
                    return
                await asyncio.sleep(READY_POLL_S)
        code, output = await self._run("status", "mark-good", timeout_s=MARK_GOOD_TIMEOUT_S)
        if code == 0:
            self.marked_good = str(booted)
            LOGGER.info("update: %s", output.strip().splitlines()[-1] if output.strip() else
                        "booted slot marked good")
        else:
            LOGGER.error("update: rauc status mark-good failed: %s", _short(output))


def parse_status(text: str) -> dict[str, Any]:
    """`rauc status --detailed --output-format=json` → booted, primary and each slot's name,
    bootname, state, boot status and installed bundle version."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    slots = []
    names: dict[str, str] = {}
    for entry in data.get("slots", []):
        for name, slot in entry.items():
            bundle = (slot.get("slot_status") or {}).get("bundle") or {}
            installed = (slot.get("slot_status") or {}).get("installed") or {}
            names[name] = str(slot.get("bootname"))
            slots.append({"name": name, "bootname": slot.get("bootname"),
                          "state": slot.get("state"), "boot_status": slot.get("boot_status"),
                          "device": slot.get("device"), "version": bundle.get("version"),
                          "installed_at": installed.get("timestamp")})
    slots.sort(key=lambda slot: str(slot["name"]))
    primary = data.get("boot_primary")
    return {"compatible": data.get("compatible"), "booted": data.get("booted"),
            "primary": names.get(str(primary), primary), "slots": slots}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer: with HTTPS on, the plain port only redirects (to a certificate
    the probe has no reason to check)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _http_answers(url: str) -> bool:
    """The web UI serves: any HTTP answer but a server error."""
    try:
        opener = urllib.request.build_opener(_NoRedirect)
        with opener.open(url, timeout=HTTP_PROBE_TIMEOUT_S) as reply:
            return 200 <= int(reply.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def _short(text: str) -> str:
    return text.strip()[-ERROR_TEXT_MAX:]


def _failure(lines: list[str]) -> str:
    """The reason rauc gave: its LastError line, else its last lines."""
    for line in reversed(lines):
        if LAST_ERROR.match(line.strip()):
            return _short(line.strip().removeprefix("LastError: "))
    return _short("\n".join(lines[-5:])) or "rauc install failed"


def web_url_from_env() -> str | None:
    """The web UI's address the daemon probes before marking the slot good (cli sets it)."""
    return os.environ.get("LINEBOX_WEB_URL") or None
