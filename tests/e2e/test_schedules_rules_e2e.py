"""Opening hours and caller rules end to end: real SIPp agents, the provider calling the DID.

Schedules are written relative to the real clock: "closed now" is a holiday on today's date in
the schedule's own time zone (computed here with zoneinfo), or one hour-long range a couple of
hours from now; "open now" is every day 00:00-24:00. The schedule's zone is deliberately not
the site's (Europe/Moscow by default). Who rang is read from the agents' own SIPp message logs:
an agent that must never be offered the call runs agent_ring_only.xml and is stopped once the
call is over, and its log must hold no INVITE.
"""

from __future__ import annotations

import datetime as dt
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.linebox import (
    DAEMON_WAIT_S,
    LineboxProcess,
    base_config,
    message_log_events,
    running_linebox,
)
from tests.e2e.sipp import SippProcess, SippResult
from tests.e2e.test_calls import DID, provider_call, start_agent, wait_for_records
from tests.e2e.test_strategies_e2e import received

SCHEDULE_ZONE = "Asia/Vladivostok"  # UTC+10, not the site's Europe/Moscow
WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAY = {day: ["00:00-24:00"] for day in WEEK}
RING_ONLY = "agent_ring_only.xml"
HOLD_MS = 300
ANSWER_DELAY_MS = 200
IMMEDIATE_S = 0.25  # "at once": the refusal comes before anything could ring
ORDINARY_CALLER = "79990000002"


# --------------------------------------------------------------------------- configuration


def local_dates(zone: str, *offsets_s: float) -> list[str]:
    """The local dates in `zone` now plus each of `offsets_s` seconds, each once, in order."""
    now = dt.datetime.now(ZoneInfo(zone))
    return sorted({(now + dt.timedelta(seconds=offset)).date().isoformat() for offset in offsets_s})


def hours_excluding_now(zone: str) -> dict[str, list[str]]:
    """Every day open for one hour starting two hours from now (local): closed for the next
    two hours, whatever the weekday."""
    hour = dt.datetime.now(ZoneInfo(zone)).hour
    start, end = (hour + 2) % 24, (hour + 3) % 24  # an end of 00:00 is midnight
    return {day: [f"{start:02d}:00-{end:02d}:00"] for day in WEEK}


def scheduled(attach: str, schedule: dict[str, Any]) -> dict[str, Any]:
    """base_config with `schedule` (named "office") on the DID or on its department 200."""
    config = base_config(schedules=[{"name": "office", "timezone": SCHEDULE_ZONE, **schedule}])
    section = "numbers" if attach == "number" else "departments"
    config[section][0]["schedule"] = "office"
    return config


# --------------------------------------------------------------------------- running things


def ring_only(
    linebox: LineboxProcess, stack: ExitStack, trace: Path, extension: str
) -> SippProcess:
    return stack.enter_context(start_agent(linebox, extension, trace, scenario=RING_ONLY))


def answering(
    linebox: LineboxProcess, stack: ExitStack, trace: Path, extension: str
) -> SippProcess:
    return stack.enter_context(start_agent(
        linebox, extension, trace, variables={"answer_delay_ms": ANSWER_DELAY_MS}
    ))


def call(linebox: LineboxProcess, trace: Path, name: str, caller_id: str,
         scenario: str = "provider_call.xml") -> SippResult:
    """One provider call from `caller_id`, run to its end and cleared by the gateway."""
    variables: dict[str, Any] = {"caller_id": caller_id}
    if scenario == "provider_call.xml":
        variables["hold_ms"] = HOLD_MS
    result = provider_call(linebox, trace, scenario=scenario, name=name,
                           variables=variables).run()
    assert result.ok, result.describe()
    linebox.wait_for(lambda: not linebox.status()["calls"], DAEMON_WAIT_S, "call cleared")
    return result


def never_rang(*agents: SippProcess) -> None:
    """Ring-only agents that must not have been offered anything: stopped, logs hold no INVITE."""
    for agent in agents:
        agent.kill()
        result = agent.wait()
        assert result.created_calls == 0 and received(result, "INVITE") == [], result.describe()


def ended(agent: SippProcess) -> SippResult:
    result = agent.wait()
    assert result.ok, result.describe()
    return result


def final_response_delay(result: SippResult, status: int) -> float:
    """Seconds from the provider's INVITE to the final `status` it received."""
    assert result.message_log is not None, result.describe()
    events = message_log_events(result.message_log)
    sent = next(t for t, d, line in events if d == "sent" and line.startswith("INVITE"))
    got = next(t for t, d, line in events
               if d == "received" and line.startswith(f"SIP/2.0 {status} "))
    return got - sent


def from_users(result: SippResult) -> list[str]:
    return [m.from_user for m in received(result, "INVITE")]


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("attach", ["number", "department"])
def test_closed_on_a_holiday_sends_the_call_to_after_hours(attach: str, tmp_path: Path) -> None:
    # Every day is open all day, but today (in the schedule's zone) is a holiday; the date a
    # minute from now too, should the test straddle midnight there.
    config = scheduled(attach, {
        "hours": ALL_DAY, "holidays": local_dates(SCHEDULE_ZONE, 0, 60), "after_hours": "102",
    })
    with running_linebox(tmp_path / "linebox", config) as linebox, ExitStack() as stack:
        member = ring_only(linebox, stack, tmp_path, "101")
        duty = answering(linebox, stack, tmp_path, "102")
        caller = call(linebox, tmp_path, "closed", "79990000001")
        assert caller.counters.get("answered") == 1, caller.describe()
        duty_result = ended(duty)
        never_rang(member)
        (record,) = wait_for_records(linebox, 1)
        assert set(linebox.channels_in_use().values()) == {0}
    assert duty_result.counters.get("answered") == 1, duty_result.describe()
    assert from_users(duty_result) == ["79990000001"]
    assert (record["outcome"], record["answered_by"]) == ("answered", "102"), record
    assert [(leg["target"], leg["result"]) for leg in record["legs"]] == [("102", "answered")]
    assert record["number"] == DID and record["caller"] == "79990000001"


@pytest.mark.parametrize("attach", ["number", "department"])
def test_closed_without_after_hours_refuses_with_480_at_once(
    attach: str, tmp_path: Path
) -> None:
    config = scheduled(attach, {"hours": hours_excluding_now(SCHEDULE_ZONE)})
    with running_linebox(tmp_path / "linebox", config) as linebox, ExitStack() as stack:
        members = [ring_only(linebox, stack, tmp_path, ext) for ext in ("101", "102")]
        refused = call(linebox, tmp_path, "closed", "79990000001", "provider_expect_480.xml")
        never_rang(*members)
        (record,) = wait_for_records(linebox, 1)
        assert set(linebox.channels_in_use().values()) == {0}
    delay = final_response_delay(refused, 480)
    assert delay < IMMEDIATE_S, f"480 took {delay * 1000:.1f} ms"
    assert (record["outcome"], record["answered_by"]) == ("closed", None), record
    assert record["legs"] == [] and record["number"] == DID


def test_open_schedule_routes_to_the_department_as_usual(tmp_path: Path) -> None:
    # Open all week; yesterday's holiday does not close today; after_hours (103) stays unused.
    schedule = {"hours": ALL_DAY, "holidays": local_dates(SCHEDULE_ZONE, -86400),
                "after_hours": "103"}
    config = scheduled("number", schedule)
    config["departments"][0]["schedule"] = "office"  # both the DID and 200 keep these hours
    with running_linebox(tmp_path / "linebox", config) as linebox, ExitStack() as stack:
        first = answering(linebox, stack, tmp_path, "101")
        second = ring_only(linebox, stack, tmp_path, "102")
        duty = ring_only(linebox, stack, tmp_path, "103")
        caller = call(linebox, tmp_path, "open", "79990000001")
        assert caller.counters.get("answered") == 1, caller.describe()
        results = ended(first), ended(second)
        never_rang(duty)
        (record,) = wait_for_records(linebox, 1)
    assert [from_users(result) for result in results] == [["79990000001"]] * 2
    assert results[0].counters.get("answered") == 1, results[0].describe()
    assert received(results[1], "CANCEL"), results[1].describe()  # 102 rang, then stopped
    assert (record["outcome"], record["answered_by"], record["department"]) == (
        "answered", "101", "200"), record
    assert sorted((leg["target"], leg["result"]) for leg in record["legs"]) == [
        ("101", "answered"), ("102", "cancelled"),
    ]


# --------------------------------------------------------------------------- caller rules


def test_blacklisted_number_hears_busy_while_other_callers_get_through(tmp_path: Path) -> None:
    config = base_config(rules=[{"match": "79990000001", "action": "blacklist"}])
    with running_linebox(tmp_path / "linebox", config) as linebox, ExitStack() as stack:
        first = answering(linebox, stack, tmp_path, "101")
        second = ring_only(linebox, stack, tmp_path, "102")
        busy = call(linebox, tmp_path, "blacklisted", "79990000001", "provider_expect_busy.xml")
        wait_for_records(linebox, 1)
        # An exact match is exact: the next number is an ordinary caller.
        other = call(linebox, tmp_path, "ordinary", ORDINARY_CALLER)
        assert other.counters.get("answered") == 1, other.describe()
        results = ended(first), ended(second)
        blacklisted, ordinary = wait_for_records(linebox, 2)
    delay = final_response_delay(busy, 486)
    assert delay < IMMEDIATE_S, f"486 took {delay * 1000:.1f} ms"
    # Each agent was offered only the ordinary call.
    assert [from_users(result) for result in results] == [[ORDINARY_CALLER]] * 2
    assert (blacklisted["outcome"], blacklisted["caller"]) == ("blacklisted", "79990000001")
    assert blacklisted["answered_by"] is None and blacklisted["legs"] == []
    assert (ordinary["outcome"], ordinary["caller"], ordinary["answered_by"]) == (
        "answered", ORDINARY_CALLER, "101")


def test_vip_rule_with_to_sends_the_caller_straight_to_that_extension(tmp_path: Path) -> None:
    config = base_config(rules=[{"match": "7916*", "action": "vip", "to": "103"}])
    vip_caller = "79161234567"
    with running_linebox(tmp_path / "linebox", config) as linebox, ExitStack() as stack:
        first = answering(linebox, stack, tmp_path, "101")
        second = ring_only(linebox, stack, tmp_path, "102")
        personal = answering(linebox, stack, tmp_path, "103")
        vip = call(linebox, tmp_path, "vip", vip_caller)
        assert vip.counters.get("answered") == 1, vip.describe()
        personal_result = ended(personal)
        other = call(linebox, tmp_path, "ordinary", ORDINARY_CALLER)
        assert other.counters.get("answered") == 1, other.describe()
        results = ended(first), ended(second)
        vip_record, ordinary = wait_for_records(linebox, 2)
    # 103 (not a member of 200) took the VIP call; the department's members never saw it.
    assert from_users(personal_result) == [vip_caller]
    assert personal_result.counters.get("answered") == 1, personal_result.describe()
    assert [from_users(result) for result in results] == [[ORDINARY_CALLER]] * 2
    assert (vip_record["caller"], vip_record["outcome"], vip_record["answered_by"]) == (
        vip_caller, "answered", "103"), vip_record
    assert [leg["target"] for leg in vip_record["legs"]] == ["103"]
    assert (ordinary["caller"], ordinary["answered_by"], ordinary["department"]) == (
        ORDINARY_CALLER, "101", "200"), ordinary
    assert sorted(leg["target"] for leg in ordinary["legs"]) == ["101", "102"]
