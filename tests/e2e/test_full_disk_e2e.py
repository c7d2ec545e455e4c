"""A full data partition end to end (issue 16): the database and its log on a 6 MB tmpfs the
test mounts (the tests run as root) and fills. Calls go on (SIPp: the provider calls, 101
answers), the admin logs in to the web UI and is told, voicemail tells a caller it cannot take
a message (the prompt is found in the RTP the caller gets, and the box hangs up), the records
wait in memory and are written once space returns, the condition is logged once and shown in
`linebox status`, and nothing crashes or loops."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask

from firmware.media import g711, prompts
from firmware.store import Store
from tests.e2e.linebox import AGENT_PASSWORDS, DAEMON_WAIT_S, REPO_ROOT, base_config
from tests.e2e.media import RtpListener
from tests.e2e.sipp import Sipp, free_port, wait_until_bound
from tests.e2e.test_calls import PROVIDER_IP
from tests.webui.conftest import (
    ADMIN_PASSWORD,
    ADMIN_PASSWORD_SETTING,
    log_in_as_admin,
    page,
)
from webui import create_app
from webui.security import hash_password

DATA_SIZE = "6m"
CALLS = 3
FILL_CHUNK = 64 * 1024
FILL_LIMIT_BYTES = 16 * 1024 * 1024  # more than the partition: the loop ends at ENOSPC
WAIT_S = 15.0
VOICEMAIL_DID = "74951234568"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextmanager
def small_partition(path: Path) -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DATA_SIZE},mode=0700", "tmpfs",
                    str(path)], check=True, timeout=10)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=10)


def fill(partition: Path) -> Path:
    """Write a file until the partition is full (ENOSPC); the file."""
    filler = partition / "filler"
    written = 0
    with filler.open("wb", buffering=0) as stream:
        while written < FILL_LIMIT_BYTES:
            try:
                written += stream.write(b"\0" * FILL_CHUNK)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    assert written < FILL_LIMIT_BYTES
    return filler


class Daemon:
    """`linebox run` with its database on the small partition, its console elsewhere."""

    def __init__(self, data: Path, console_dir: Path, config: dict[str, Any]) -> None:
        self.db = data / "linebox.db"
        self.port = free_port(tcp=True)
        self.address = f"127.0.0.1:{self.port}"
        config_path = console_dir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        self.console = console_dir / "console.log"
        first = 31000 + (os.getpid() % 50) * 100
        with self.console.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "firmware", "run", "--db", str(self.db), "--sip",
                 self.address, "--config", str(config_path), "--rtp-ports",
                 f"{first}-{first + 99}"],
                cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.wait_for(lambda: self.status(), 10, "the daemon's control socket")

    def status(self) -> dict[str, Any] | None:
        from tests.e2e.linebox import LineboxProcess

        try:
            return LineboxProcess.status(self)  # type: ignore[arg-type]
        except OSError:
            return None

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        from tests.e2e.linebox import LineboxProcess

        return LineboxProcess.control(self, request)  # type: ignore[arg-type]

    def wait_for(self, predicate: Any, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.popen.poll() is None, f"the daemon died:\n{self.log()[-3000:]}"
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.console.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def calls(self) -> int:
        import sqlite3

        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM calls WHERE record_state = 'ended'")
                       .fetchone()[0])


def voicemail_call(daemon: Daemon, trace: Path) -> Any:
    """A provider's call to department 300's voicemail; what the caller heard (PCM)."""
    listener = RtpListener(PROVIDER_IP)
    try:
        caller = Sipp(scenario="provider_hung_up_on.xml", remote=daemon.address,
                      local_ip=PROVIDER_IP, service=VOICEMAIL_DID, calls=1, timeout_s=40,
                      variables={"rtp_port": listener.port}, trace_dir=trace,
                      name="voicemail").run()
        assert caller.ok, caller.describe()
        return listener.audio()
    finally:
        listener.close()


def web_ui_over(db: Path) -> Flask:
    """The web UI over the daemon's database, with the admin's password set."""
    with Store.open(db) as store:
        store.put_setting(ADMIN_PASSWORD_SETTING, hash_password(ADMIN_PASSWORD))
    return create_app({"DB": str(db), "TESTING": True, "SECRET_KEY": "test"})


def register(daemon: Daemon, port: int, trace: Path) -> None:
    result = Sipp(scenario="register.xml", remote=daemon.address, service="101",
                  auth_user="101", auth_password=AGENT_PASSWORDS["101"],
                  keys={"contact_port": port, "expires": 3600}, calls=1, timeout_s=10,
                  trace_dir=trace).run()
    assert result.ok, result.describe()


def test_calls_go_on_on_a_full_disk_and_their_records_are_written_when_space_returns(
        tmp_path: Path) -> None:
    config = base_config(site={"language": "en"})
    config["numbers"][0]["channels"] = CALLS
    # Nobody is registered in department 300: its callers go to voicemail.
    config["departments"].append({"number": "300", "name": "Support", "strategy": "ring_all",
                                  "ring_timeout_s": 20, "members": ["103"],
                                  "no_answer": {"action": "voicemail"}})
    config["numbers"].append({"number": VOICEMAIL_DID, "trunk": "provider", "channels": 3,
                              "destination": "300"})
    with small_partition(tmp_path / "data") as data:
        daemon = Daemon(data, tmp_path, config)
        try:
            agent = Sipp(scenario="agent_answer.xml", service="101", calls=CALLS,
                         auto_answer=True, trace_dir=tmp_path, timeout_s=60, name="agent101",
                         variables={"answer_delay_ms": 100})
            with agent.start() as agent_process:
                assert agent.local_port is not None and wait_until_bound(agent.local_port)
                register(daemon, agent.local_port, tmp_path)
                daemon.wait_for(lambda: list(data.glob("backups/linebox-*.db")), 10,
                                "the day's backup (made before the disk fills)")
                web = web_ui_over(daemon.db)  # set up while it can be written
                filler = fill(data)

                caller = Sipp(scenario="provider_call.xml", remote=daemon.address,
                              local_ip=PROVIDER_IP, service="74951234567", calls=CALLS,
                              rate=2, variables={"hold_ms": 300}, timeout_s=30,
                              trace_dir=tmp_path, name="provider").run()
                answered = agent_process.wait()
            assert caller.ok and caller.successful_calls == CALLS, caller.describe()
            assert answered.counters.get("answered") == CALLS, answered.describe()

            records = daemon.wait_for(
                lambda: (daemon.status() or {}).get("records", {}).get("waiting", 0) >= CALLS
                and daemon.status()["records"], WAIT_S, "the records waiting in memory")
            assert "database or disk is full" in records["problem"]
            assert daemon.calls() == 0
            heard = voicemail_call(daemon, tmp_path)
            unavailable = g711.pcm_samples(g711.ulaw_decode(g711.ulaw_encode(
                prompts.prompt("en", "voicemail_unavailable"))))
            assert heard.tobytes().find(unavailable[2000:2400].tobytes()) >= 0, \
                "the caller did not hear that no message can be taken"
            # The admin can still log in (the login kept in memory) and is told.
            admin = log_in_as_admin(web.test_client())
            daemon.wait_for(lambda: "cannot write to its storage" in page(admin, "/monitor"),
                            WAIT_S, "the web UI's notice of the full storage")
            time.sleep(6)  # a retry (every 5 s) fails again, silently
            assert daemon.log().count("cannot write to the database") == 1

            filler.unlink()
            daemon.wait_for(lambda: daemon.calls() == CALLS + 1, WAIT_S,
                            "the records written once space returned")
            status = daemon.wait_for(lambda: daemon.status(), DAEMON_WAIT_S, "status")
            assert status["records"] == {"problem": "", "waiting": 0, "dropped": 0}
            assert daemon.log().count("the database is written again") == 1
        finally:
            code = daemon.stop()
        log = daemon.log()
        assert code == 0, log[-3000:]
        assert "Traceback" not in log, log[-5000:]
        assert log.count("cannot be written") <= 1, log[-3000:]
