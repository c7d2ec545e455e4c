"""Power cuts end to end (issue 16): the real daemon killed with SIGKILL — no clean shutdown, as
a power cut or a crash leaves it — and started again on the same database.

* A phone registered before the kill is rung after the restart without registering again.
* Under 50 calls/s (SIPp, 102 calling 101 with digest auth, bounded to 6 s of calls), every
  call whose 200 OK the caller had received before the kill (read from SIPp's own message
  trace) is in the records, those still talking marked cut off; the configuration is intact, a
  pending callback request is back in its queue, and the time from the restart to SIP answering
  is printed against its 2 s target.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.linebox import (
    AGENT_PASSWORDS,
    DAEMON_WAIT_S,
    START_TIMEOUT_S,
    LineboxProcess,
    ask_options,
    base_config,
)
from tests.e2e.sipp import Sipp, free_port, wait_until_bound
from tests.e2e.test_calls import PROVIDER_IP, provider_call, register, start_agent
from tests.store.test_recovery import damaged_pages

CUSTOMER = "79161234567"
RATE = 50
CALLS = 300  # 6 s of calls at RATE
HOLD_MS = 2000
KILL_AFTER_S = 3.5
ANSWERED_AT_KILL = int(RATE * (KILL_AFTER_S - 1))  # answers the caller has had at the kill
READY_TARGET_S = 2.0
# Between the daemon's clock and SIPp's trace stamps (the same machine's clock; SIPp stamps a
# message when it writes its trace, a moment after sending it).
CLOCK_SLACK_S = 0.5
_STAMP_RE = re.compile(r"^-+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", re.MULTILINE)


@contextmanager
def to_be_killed(workdir: Path, config: dict[str, Any]) -> Iterator[LineboxProcess]:
    """A daemon the test kills; stopped at the end if the test failed before."""
    process = LineboxProcess(workdir, config)
    try:
        yield process
    finally:
        if process.popen.poll() is None:
            process.stop()


def killed(linebox: LineboxProcess) -> float:
    """SIGKILL the daemon (and the web UI it may have started: none here); the wall time just
    before the signal."""
    at = time.time()
    linebox.popen.send_signal(signal.SIGKILL)
    linebox.popen.wait(timeout=10)
    return at


def ready_limit_s() -> float:
    """The 2 s target on an idle machine; on a shared one (this test runs beside others on two
    cores) the wall time of a start grows with the run queue, so the limit grows with the load
    average per core, printed beside the figure."""
    return READY_TARGET_S * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def restarted(workdir: Path, port: int) -> tuple[LineboxProcess, float]:
    """The daemon started again on the same database (no --config: what it kept), and the
    seconds from the start to a SIP OPTIONS answered."""
    started = time.monotonic()
    linebox = LineboxProcess(workdir, None, port=port)
    while ask_options(linebox, timeout_s=0.2) is None:
        assert time.monotonic() - started < START_TIMEOUT_S, \
            f"SIP did not answer within {START_TIMEOUT_S:.0f} s"
    return linebox, time.monotonic() - started


def answer_to_invite(body: str) -> str | None:
    """The Call-ID of a message in a SIPp -trace_msg log (the text under its stamp) if it is a
    200 OK to an INVITE that the caller received."""
    if "message received" not in body.split("\n", 2)[1]:
        return None
    if "SIP/2.0 200" not in body or not re.search(r"(?im)^CSeq:\s*\d+\s+INVITE", body):
        return None
    call_id = re.search(r"(?im)^Call-ID:\s*(\S+)", body)
    return call_id.group(1) if call_id else None


def answered_before(message_log: Path, kill_at: float) -> set[str]:
    """Call-IDs whose INVITE got its 200 OK at the caller before `kill_at` (SIPp -trace_msg:
    each message under a local-time stamp)."""
    text = message_log.read_text(encoding="utf-8", errors="replace")
    parts = _STAMP_RE.split(text)
    answered: set[str] = set()
    for stamp, body in zip(parts[1::2], parts[2::2], strict=True):
        if datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp() >= kill_at:
            continue
        call_id = answer_to_invite(body)
        if call_id:
            answered.add(call_id)
    return answered


class AnswersSoFar:
    """The INVITEs answered at the caller so far, read from its -trace_msg log as SIPp writes
    it (it flushes after every message), each time from where the last read stopped."""

    def __init__(self, message_log: Path) -> None:
        self.path = message_log
        self.offset = 0
        self.tail = ""  # from the last stamp on: a message perhaps not wholly written yet
        self.call_ids: set[str] = set()

    def count(self) -> int:
        if self.path.exists():
            with self.path.open("rb") as log:
                log.seek(self.offset)
                data = log.read()
            self.offset += len(data)
            text = self.tail + data.decode("utf-8", errors="replace")
            starts = [match.start() for match in _STAMP_RE.finditer(text)]
            if starts:
                for begin, end in itertools.pairwise(starts):
                    parts = _STAMP_RE.split(text[begin:end])
                    call_id = answer_to_invite(parts[2])
                    if call_id:
                        self.call_ids.add(call_id)
                self.tail = text[starts[-1]:]
        return len(self.call_ids)


def invites_sent(message_log: Path) -> dict[str, float]:
    """Call-ID → when the caller sent its last INVITE (the one with credentials), by SIPp's
    -trace_msg stamps."""
    text = message_log.read_text(encoding="utf-8", errors="replace")
    parts = _STAMP_RE.split(text)
    sent: dict[str, float] = {}
    for stamp, body in zip(parts[1::2], parts[2::2], strict=True):
        head = body.split("\n", 2)
        if "message sent" not in head[1] or not head[2].lstrip().startswith("INVITE "):
            continue
        call_id = re.search(r"(?im)^Call-ID:\s*(\S+)", body)
        if call_id:
            sent[call_id.group(1)] = datetime.strptime(
                stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return sent


def calls_in(message_log: Path) -> set[str]:
    """Every Call-ID in a SIPp message trace."""
    text = message_log.read_text(encoding="utf-8", errors="replace")
    return set(re.findall(r"(?im)^Call-ID:\s*(\S+)", text))


def config_export(linebox: LineboxProcess) -> str:
    import subprocess
    import sys

    from tests.e2e.linebox import REPO_ROOT

    return subprocess.run(
        [sys.executable, "-m", "firmware", "config", "export", "--db", str(linebox.db)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True).stdout


def test_a_registered_phone_is_rung_after_a_kill_without_registering_again(
        tmp_path: Path) -> None:
    workdir = tmp_path / "linebox"
    with to_be_killed(workdir, base_config()) as linebox:
        with start_agent(linebox, "101", tmp_path, timeout_s=60) as agent:
            killed(linebox)
            again, ready_s = restarted(workdir, linebox.port)
            try:
                print(f"\nrestart to SIP answering: {ready_s:.2f} s (target < "
                      f"{READY_TARGET_S:.0f} s idle; limit {ready_limit_s():.1f} s at load "
                      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
                registrations = again.status()["registrations"]
                assert [r["extension"] for r in registrations] == ["101"]
                caller = provider_call(again, tmp_path, variables={"hold_ms": 300}).run()
                # Its one call done, the agent ends by itself (its -timeout bounds it): not
                # 15 s from its start, which the kill and a restart under load had mostly used.
                answered = agent.wait()
                assert caller.ok, caller.describe()
                assert answered.ok and answered.counters.get("answered") == 1, \
                    answered.describe()
                # One REGISTER in the agent's trace dir: the one before the kill.
                registers = [p for p in tmp_path.glob("register-*_messages.log")]
                assert len(registers) == 1
                assert "registrations from before the restart are served again" in again.log()
            finally:
                assert again.stop() == 0
        assert ready_s < ready_limit_s()


def callback_department(customer_port: int) -> dict[str, Any]:
    config = base_config()
    config["trunks"][0]["port"] = customer_port
    config["departments"] = [{
        "number": "200", "name": "Sales", "strategy": "ring_all", "ring_timeout_s": 20,
        "members": ["103"],
        "queue": {"max_callers": 5, "max_wait_s": 3600, "callback": {"key": "1"}},
    }]
    return config


def test_a_kill_under_50_calls_a_second_loses_no_answered_call(tmp_path: Path) -> None:
    workdir = tmp_path / "linebox"
    config = callback_department(free_port(PROVIDER_IP))
    with to_be_killed(workdir, config) as linebox:
        # A pending callback: 103 is on break, the customer pressed 1 and hung up.
        answer = linebox.control({"command": "agent", "extension": "103", "status": "break"})
        assert answer["ok"], answer
        request = provider_call(linebox, tmp_path, scenario="provider_callback_request.xml",
                                variables={"caller_id": CUSTOMER}, name="callback").run()
        assert request.ok, request.describe()
        linebox.wait_for(lambda: [e for q in linebox.status()["queues"] for e in q["waiting"]],
                         DAEMON_WAIT_S, "the callback request in the queue")
        exported = config_export(linebox)

        agent = Sipp(scenario="bench_uas", calls=CALLS, auto_answer=True, timeout_s=30,
                     trace_dir=tmp_path, trace_msg=False, name="agent101")
        caller = Sipp(scenario="caller_auth", remote=linebox.address, service="101",
                      keys={"caller": "102"}, auth_user="102",
                      auth_password=AGENT_PASSWORDS["102"],
                      auth_uri=f"101@{linebox.address}", calls=CALLS, rate=RATE,
                      max_concurrent=CALLS, variables={"hold_ms": HOLD_MS}, timeout_s=20,
                      trace_dir=tmp_path, name="caller102")
        with agent.start() as agent_process:
            assert agent.local_port is not None and wait_until_bound(agent.local_port)
            register(linebox, "101", agent.local_port, tmp_path)
            with caller.start() as caller_process:
                # Killed KILL_AFTER_S into the calls, once the caller has had ANSWERED_AT_KILL
                # answers (a loaded machine may take longer to get there), while the calls still
                # come: within the CALLS / RATE seconds they are placed in.
                so_far = AnswersSoFar(tmp_path / "caller102_messages.log")
                started = time.monotonic()
                while time.monotonic() - started < CALLS / RATE and (
                        time.monotonic() - started < KILL_AFTER_S
                        or so_far.count() < ANSWERED_AT_KILL):
                    time.sleep(0.05)
                kill_at = killed(linebox)
                time.sleep(0.5)  # what was on its way to the caller arrives and is traced
                caller_process.kill()
                result = caller_process.wait()
            agent_process.kill()

    assert result.message_log is not None, result.describe()
    answered = answered_before(result.message_log, kill_at)
    assert len(answered) >= ANSWERED_AT_KILL, result.describe()

    again, ready_s = restarted(workdir, linebox.port)
    try:
        print(f"\n{len(answered)} calls answered before the kill at {RATE} calls/s; restart "
              f"to SIP answering: {ready_s:.2f} s (target < {READY_TARGET_S:.0f} s idle; limit "
              f"{ready_limit_s():.1f} s at load {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
              "cores)")
        records = {call["sip_call_id"]: call for call in again.calls(in_progress=True)}
        missing = answered - set(records)
        assert not missing, f"{len(missing)} answered calls missing: {sorted(missing)[:5]}"
        states = {records[call_id]["record_state"] for call_id in answered}
        assert states <= {"ended", "cut_off"}
        cut_off = [c for c in records.values() if c["record_state"] == "cut_off"]
        assert cut_off, "calls in progress at the kill are marked cut off"
        # Answered at the kill (on disk, the 200 not yet at the caller) is no invention: a call
        # of the caller's, answered by the box after the caller asked and before the kill. How
        # many there are is how many answers waited for a commit then (a few on a quiet
        # machine; dozens when a commit takes a second under load), so it is printed, not
        # bounded by a count.
        in_flight = {c["sip_call_id"] for c in cut_off} - answered
        assert in_flight <= calls_in(result.message_log), in_flight - calls_in(result.message_log)
        invited = invites_sent(result.message_log)
        for call_id in in_flight:
            answered_at = records[call_id]["answered_at"]
            assert invited[call_id] - CLOCK_SLACK_S <= answered_at <= kill_at + CLOCK_SLACK_S, (
                call_id, invited[call_id], answered_at, kill_at)
        print(f"{len(in_flight)} answered on disk but not yet at the caller at the kill")
        assert all(c["outcome"] == "answered" and c["answered_by"] == "101" for c in cut_off)
        assert not [c for c in records.values() if c["record_state"] == "in_progress"]
        print(f"{len(cut_off)} of them were talking at the kill: recorded as cut off")
        assert config_export(again) == exported
        waiting = again.wait_for(
            lambda: [e for q in again.status()["queues"] for e in q["waiting"]],
            DAEMON_WAIT_S, "the callback request back in its queue")
        assert [(e["caller"], e["callback"]) for e in waiting] == [(CUSTOMER, True)]
    finally:
        assert again.stop() == 0
    assert "Traceback" not in again.log(), again.log()[-3000:]
    assert ready_s < ready_limit_s()


# ------------------------------------------------------------------ a broken database at start
def garbage(db: Path) -> None:
    db.write_bytes(b"\x00garbage after a bad sector\xff" * 4096)


def truncated(db: Path) -> None:
    db.write_bytes(db.read_bytes()[:3000])


def stopped_with_a_backup(workdir: Path) -> str:
    """Run the daemon once (it makes the day's backup at start) and stop it cleanly; the
    configuration it had, as exported."""
    with to_be_killed(workdir, base_config()) as linebox:
        linebox.wait_for(lambda: list((workdir / "backups").glob("linebox-*.db")),
                         DAEMON_WAIT_S, "the day's automatic backup")
        exported = config_export(linebox)
        assert linebox.stop() == 0
    for suffix in ("-wal", "-shm"):  # a clean stop leaves none; a damaged file stands alone
        (workdir / f"linebox.db{suffix}").unlink(missing_ok=True)
    return exported


def test_a_garbage_database_without_a_backup_starts_empty_with_the_first_run_wizard(
        tmp_path: Path) -> None:
    workdir = tmp_path / "linebox"
    workdir.mkdir()
    garbage(workdir / "linebox.db")
    linebox, ready_s = restarted(workdir, free_port(tcp=True))
    try:
        assert linebox.first_start_password()  # seeded anew: department 200 with 101
        assert linebox.setup_code()  # the wizard asks for it
        log = linebox.log()
        assert "is broken" in log and "no usable backup" in log
        assert list(workdir.glob("linebox.db.broken-*"))
        notices = notices_of(linebox)
        assert [n["kind"] for n in notices] == ["database_empty"]
    finally:
        assert linebox.stop() == 0
    assert ready_s < 10.0


def notices_of(linebox: LineboxProcess) -> list[dict[str, Any]]:
    from firmware.store import Store
    from firmware.store.recovery import box_notices

    with Store.open(linebox.db) as store:
        return box_notices(store)


def test_a_truncated_database_starts_from_the_last_backup(tmp_path: Path) -> None:
    workdir = tmp_path / "linebox"
    exported = stopped_with_a_backup(workdir)
    truncated(workdir / "linebox.db")
    linebox, _ = restarted(workdir, free_port(tcp=True))
    try:
        assert config_export(linebox) == exported
        assert "started from the backup" in linebox.log()
        assert [n["kind"] for n in notices_of(linebox)] == ["database_restored"]
        assert list(workdir.glob("linebox.db.broken-*"))
    finally:
        assert linebox.stop() == 0


def test_a_database_failing_its_integrity_check_starts_from_the_last_backup(
        tmp_path: Path) -> None:
    workdir = tmp_path / "linebox"
    exported = stopped_with_a_backup(workdir)
    damaged_pages(workdir / "linebox.db")  # a sound header: quick_check fails
    linebox, _ = restarted(workdir, free_port(tcp=True))
    try:
        assert config_export(linebox) == exported
        assert [n["kind"] for n in notices_of(linebox)] == ["database_restored"]
        assert "Traceback" not in linebox.log()
    finally:
        assert linebox.stop() == 0
