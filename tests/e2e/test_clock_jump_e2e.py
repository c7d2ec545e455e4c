"""The wall clock jumps under a running daemon (issue 16, "Clock"): a real jump, not a patched
function. The daemon runs under libfaketime (Debian `faketime`) with FAKETIME_TIMESTAMP_FILE and
FAKETIME_NO_CACHE, so rewriting that file steps its wall clock at once, as the first NTP sync of
a Pi without a clock of its own does; FAKETIME_DONT_FAKE_MONOTONIC leaves the monotonic clock
alone, as the kernel does. SIPp and the test run on the real clock.

Calls, a queue and a callback request live through a step of two years forward and one of an
hour back: their records carry the clock of when they ended, with their real lengths; the
queue's deadline comes on time by the real clock; the callback request survives a restart after
the step (it was kept in the old clock's time and is moved with the step).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from firmware.clock import kernel_synchronised
from tests.e2e.linebox import LineboxProcess, base_config, running_linebox
from tests.e2e.sipp import Sipp, free_port, wait_until_bound
from tests.e2e.test_callback_e2e import callback_config
from tests.e2e.test_calls import PROVIDER_IP, provider_call, start_agent

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
TWO_YEARS_S = 2 * 365 * 86400
HOUR_S = 3600
CUSTOMER = "79161234567"
# How far a record's time may be from the moment the test saw (SIPp's pace, the record's
# one-second writes, the test's polling).
SLACK_S = 3.0
# Bounds on waiting for the daemon (two cores shared by several test runs at once).
WAIT_S = 20.0


@pytest.fixture
def faketime_file(tmp_path: Path) -> Path:
    if not LIBFAKETIME.exists():  # `make test` installs Debian's faketime (DEB_TEST_PACKAGES)
        pytest.fail(f"{LIBFAKETIME} is missing: apt-get install faketime")
    path = tmp_path / "faketime"
    path.write_text("+0\n")
    return path


def step_to(path: Path, offset_s: int) -> None:
    """The daemon's wall clock from now on: the real one plus `offset_s`."""
    path.write_text(f"{offset_s:+d}\n")


def under_faketime(path: Path) -> list[str]:
    return ["env", f"LD_PRELOAD={LIBFAKETIME}", f"FAKETIME_TIMESTAMP_FILE={path}",
            "FAKETIME_NO_CACHE=1", "FAKETIME_DONT_FAKE_MONOTONIC=1"]


@contextmanager
def faked_linebox(workdir: Path, config: dict[str, Any], clock: Path
                  ) -> Iterator[LineboxProcess]:
    with running_linebox(workdir, config, command_prefix=under_faketime(clock)) as linebox:
        yield linebox


def wait_for_ended(linebox: LineboxProcess, count: int) -> list[dict[str, Any]]:
    """The call records once `count` of them are complete (a call is written when answered,
    and again when it ends)."""
    return list(linebox.wait_for(
        lambda: (calls := linebox.calls()) and sum(
            1 for c in calls if c["ended_at"] is not None) >= count and calls,
        WAIT_S, f"{count} finished call records"))


def wait_for_calls_in_progress(linebox: LineboxProcess, count: int) -> None:
    linebox.wait_for(lambda: len(linebox.status()["calls"]) >= count, WAIT_S,
                     f"{count} call(s) in progress")


def test_a_call_through_a_step_forward_is_recorded_by_the_new_clock_with_its_real_length(
        tmp_path: Path, faketime_file: Path) -> None:
    with faked_linebox(tmp_path / "linebox", base_config(), faketime_file) as linebox, \
            start_agent(linebox, "101", tmp_path, calls=2):
        # First a call through the step of two years forward.
        caller = provider_call(linebox, tmp_path, variables={"hold_ms": 3000},
                               name="forward").start()
        with caller:
            wait_for_calls_in_progress(linebox, 1)
            real_started = time.time()
            step_to(faketime_file, TWO_YEARS_S)
            result = caller.wait()
        real_ended = time.time()
        assert result.ok, result.describe()
        (record,) = wait_for_ended(linebox, 1)
        # Converted when it ended, by the clock as it read then: both ends in the new time.
        assert real_ended + TWO_YEARS_S - SLACK_S <= record["ended_at"] <= (
            real_ended + TWO_YEARS_S + SLACK_S)
        assert record["started_at"] <= real_started + TWO_YEARS_S
        assert record["started_at"] >= real_started + TWO_YEARS_S - 10.0
        assert 2.0 <= record["talk_s"] <= 3.0 + SLACK_S  # its real length, not two years

        # Then a call through a step of an hour back (from the two years forward).
        caller = provider_call(linebox, tmp_path, variables={"hold_ms": 3000}, name="back").start()
        with caller:
            wait_for_calls_in_progress(linebox, 1)
            step_to(faketime_file, TWO_YEARS_S - HOUR_S)
            result = caller.wait()
        real_ended = time.time()
        assert result.ok, result.describe()
        records = wait_for_ended(linebox, 2)
        second = max(records, key=lambda r: r["id"] != record["id"])
        assert real_ended + TWO_YEARS_S - HOUR_S - SLACK_S <= second["ended_at"] <= (
            real_ended + TWO_YEARS_S - HOUR_S + SLACK_S)
        assert 2.0 <= second["talk_s"] <= 3.0 + SLACK_S
        assert second["started_at"] <= second["ended_at"]
        assert "the wall clock stepped by +63072000" in linebox.log()
        assert "the wall clock stepped by -3600" in linebox.log()


def test_a_queue_deadline_comes_on_time_by_the_real_clock_through_both_steps(
        tmp_path: Path, faketime_file: Path) -> None:
    max_wait_s = 10
    config = base_config()
    config["departments"] = [{
        "number": "200", "name": "Sales", "strategy": "ring_all", "ring_timeout_s": 20,
        "members": ["101"], "queue": {"max_callers": 5, "max_wait_s": max_wait_s},
    }]
    with faked_linebox(tmp_path / "linebox", config, faketime_file) as linebox:
        answer = linebox.control({"command": "agent", "extension": "101", "status": "break"})
        assert answer["ok"], answer
        caller = provider_call(linebox, tmp_path, scenario="provider_expect_480.xml",
                               name="queued").start()
        with caller:
            linebox.wait_for(lambda: [e for q in linebox.status()["queues"]
                                      for e in q["waiting"]], WAIT_S, "the caller in the queue")
            queued_at = time.monotonic()
            step_to(faketime_file, TWO_YEARS_S)
            # Once the daemon has seen the step (on a loaded machine that may take a while),
            # a second more: a deadline on the wall clock would have passed two years ago.
            linebox.wait_for(lambda: "the wall clock stepped by +63072000" in linebox.log(),
                             WAIT_S, "the step seen by the daemon")
            time.sleep(1.0)  # nothing may happen: there is no event to wait for instead
            assert [e for q in linebox.status()["queues"] for e in q["waiting"]]
            step_to(faketime_file, TWO_YEARS_S - HOUR_S)
            result = caller.wait()
            waited = time.monotonic() - queued_at
        (record,) = wait_for_ended(linebox, 1)
    # Neither early nor held up by the hour back.
    assert max_wait_s - 1.0 <= waited <= max_wait_s + SLACK_S, (waited, result.describe())
    assert max_wait_s - 0.5 <= record["waited_s"] <= max_wait_s + 1.0, record


def test_a_callback_request_waiting_through_a_step_survives_a_restart_after_it(
        tmp_path: Path, faketime_file: Path) -> None:
    customer_port = free_port(PROVIDER_IP)
    config = callback_config(customer_port)
    workdir = tmp_path / "linebox"
    with faked_linebox(workdir, config, faketime_file) as linebox:
        answer = linebox.control({"command": "agent", "extension": "101", "status": "break"})
        assert answer["ok"], answer
        caller = provider_call(
            linebox, tmp_path, scenario="provider_callback_request.xml",
            variables={"caller_id": CUSTOMER}, name="caller").run()
        assert caller.ok, caller.describe()
        linebox.wait_for(lambda: [e for q in linebox.status()["queues"] for e in q["waiting"]],
                         WAIT_S, "the callback request in the queue")
        wait_for_ended(linebox, 1)
        recorded_at = time.time()
        step_to(faketime_file, TWO_YEARS_S)
        linebox.wait_for(lambda: "callback requests" in linebox.log().split(
            "the wall clock stepped", 1)[-1], WAIT_S, "the kept times moved after the step")
        assert "1 callback requests" in linebox.log().split("the wall clock stepped", 1)[1]
        (origin,) = linebox.calls()
        assert linebox.status()["clock_synchronised"] is (kernel_synchronised() is not False)
        if kernel_synchronised() is False:
            # Recorded while the kernel called the clock unsynchronised (a machine without
            # NTP, as the Pi before its first sync): moved by the step to the new clock.
            assert "1 call records made before the sync" in linebox.log()
            assert origin["started_at"] >= recorded_at + TWO_YEARS_S - 60.0
            assert origin["clock_unsynced"] == 0  # moved: its time is the synced clock's now
        else:  # recorded by a synchronised clock: history stays as it was written
            assert origin["started_at"] <= recorded_at + SLACK_S
            assert origin["clock_unsynced"] == 0
    # Stopped and started again after the step, as after a power cut once NTP has synced.
    with faked_linebox(workdir, config, faketime_file) as linebox:
        waiting = linebox.wait_for(
            lambda: [e for q in linebox.status()["queues"] for e in q["waiting"]],
            WAIT_S, "the request back in the queue")
        assert [(e["caller"], e["callback"]) for e in waiting] == [(CUSTOMER, True)]
        assert "1 callback requests from before the restart" in linebox.log()
        # And it is still served: the member comes back, the box calls both.
        with start_agent(linebox, "101", tmp_path) as agent:
            customer_sipp = Sipp(
                scenario="customer_answer_hang_up.xml", local_ip=PROVIDER_IP,
                local_port=customer_port, calls=1, timeout_s=30, trace_dir=tmp_path,
                variables={"hold_ms": 500}, name="customer")
            with customer_sipp.start() as customer:
                assert wait_until_bound(customer_port, PROVIDER_IP)
                answer = linebox.control({"command": "agent", "extension": "101",
                                          "status": "on_line"})
                assert answer["ok"], answer
                called_back = customer.wait()
                answered = agent.wait()
        assert called_back.ok, called_back.describe()
        assert answered.ok, answered.describe()
