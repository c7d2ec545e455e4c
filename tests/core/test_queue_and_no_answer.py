"""Queue, no-answer scheme, agent statuses and wrap-up, through the sans-IO gateway.

Runs on the scripted office of tests/core/network.py: phones 101..103 and a provider, time
stepped.
"""

from __future__ import annotations

import copy

import pytest

from tests.core.network import RING_ALL_DID, Office, config_with, office

QUEUE_DID = "+74950000500"
STEPS_DID = "+74950000600"
RESERVE_DID = "+74950000700"


QUEUED = config_with(
    [{"number": "500", "name": "Support", "strategy": "ring_all", "ring_timeout_s": 15,
      "members": ["101"], "queue": {"max_callers": 2, "max_wait_s": 60, "retry_s": 5},
      "wrap_up_s": 10,
      "no_answer": {"action": "transfer", "to": "102", "time_s": 20}}],
    [{"number": QUEUE_DID, "trunk": "provider", "channels": 5, "destination": "500"}],
)
STEPS = config_with(
    [{"number": "600", "name": "Shop", "strategy": "ring_all", "ring_timeout_s": 10,
      "members": ["101"],
      "no_answer": {"steps": [{"to": "102", "time_s": 10}, {"to": "79160000001", "time_s": 15}]}},
     {"number": "700", "name": "Night", "strategy": "ring_all", "ring_timeout_s": 10,
      "members": ["101", "102"], "no_answer": {"reserve": "103"}}],
    [{"number": STEPS_DID, "trunk": "provider", "channels": 5, "destination": "600"},
     {"number": RESERVE_DID, "trunk": "provider", "channels": 5, "destination": "700"}],
)


def test_caller_waits_in_the_queue_while_the_only_member_talks() -> None:
    o = office(config=QUEUED)
    first = o.provider.call(QUEUE_DID)
    o.phones["101"].answer()
    o.provider.call(QUEUE_DID)
    assert len(o.phones["101"].invites()) == 1  # not offered a second call while talking
    queues = o.net.status()["queues"]
    assert isinstance(queues, list) and queues[0]["waiting"][0]["position"] == 1
    o.provider.bye(first)
    o.net.advance(11.0)  # after the department's 10 s wrap-up the waiting caller is offered
    assert len(o.phones["101"].invites()) == 2


def test_queued_caller_hears_ringing_not_silence() -> None:
    o = office(config=QUEUED)
    o.provider.call(QUEUE_DID)
    o.phones["101"].answer()
    second = o.provider.call(QUEUE_DID)
    statuses = [r.status for r in o.provider.responses() if r.call_id == second.call_id]
    assert 180 in statuses


def test_a_full_queue_sends_the_next_caller_to_the_no_answer_step() -> None:
    o = office(config=QUEUED)
    o.provider.call(QUEUE_DID)
    o.phones["101"].answer()
    o.provider.call(QUEUE_DID)
    o.provider.call(QUEUE_DID)  # max_callers is 2: these two wait
    o.provider.call(QUEUE_DID)  # the third over goes on at once: transfer to 102
    assert len(o.phones["102"].invites()) == 1


def test_max_wait_moves_the_caller_to_the_no_answer_step() -> None:
    o = office(config=QUEUED)
    o.provider.call(QUEUE_DID)
    o.phones["101"].answer()
    o.provider.call(QUEUE_DID)
    o.net.advance(59.0)
    assert o.phones["102"].invites() == []
    o.net.advance(2.0)
    assert len(o.phones["102"].invites()) == 1


def test_caller_hanging_up_in_the_queue_is_recorded_abandoned() -> None:
    o = office(config=QUEUED)
    o.provider.call(QUEUE_DID)
    o.phones["101"].answer()
    waiting = o.provider.call(QUEUE_DID)
    o.net.advance(5.0)
    o.provider.cancel(waiting)
    o.net.advance(2.0)
    outcomes = [row["outcome"] for row, _ in o.rows]
    assert "abandoned" in outcomes
    assert o.net.status()["queues"] == []


def test_no_answer_steps_ring_each_destination_for_its_time_in_turn() -> None:
    o = office(config=STEPS)
    o.provider.call(STEPS_DID)
    assert len(o.phones["101"].invites()) == 1
    o.net.advance(10.5)  # the department's 10 s are over: step 1, employee 102 for 10 s
    assert len(o.phones["102"].invites()) == 1
    assert len(o.phones["101"].requests("CANCEL")) == 1
    o.net.advance(10.5)  # step 2: forward to an external number through the provider
    forwarded = [r for r in o.provider.requests("INVITE")]
    assert any("79160000001" in str(r.uri) for r in forwarded)


def test_reserve_number_rings_at_once_when_every_member_is_offline() -> None:
    o = office(registered=("103",), config=STEPS)
    o.provider.call(RESERVE_DID)
    assert len(o.phones["103"].invites()) == 1


def test_member_on_break_is_skipped() -> None:
    o = office()
    o.net.gateway.set_agent_status("101", "break", reason="lunch", source="cli", now=o.net.now)
    o.provider.call(RING_ALL_DID)
    assert o.phones["101"].invites() == []
    assert len(o.phones["102"].invites()) == 1


def test_status_back_on_line_serves_the_waiting_caller() -> None:
    o = office(config=QUEUED)
    o.net.gateway.set_agent_status("101", "dnd", source="cli", now=o.net.now)
    o.provider.call(QUEUE_DID)
    assert o.phones["101"].invites() == []
    o.net.gateway.set_agent_status("101", "on_line", source="cli", now=o.net.now)
    o.net.pump()
    assert len(o.phones["101"].invites()) == 1


WRAP_UP = config_with(
    [{"number": "800", "name": "Sales floor", "strategy": "ring_all", "ring_timeout_s": 20,
      "members": ["101", "102"], "wrap_up_s": 10, "auto_break_after": 3}],
    [{"number": "+74950000800", "trunk": "provider", "channels": 5, "destination": "800"}],
)


def test_member_in_wrap_up_is_not_offered_a_call() -> None:
    o = office(config=WRAP_UP)
    first = o.provider.call("+74950000800")
    o.phones["101"].answer()
    o.provider.bye(first)
    o.provider.call("+74950000800")  # 101 is in its 10 s wrap-up: only 102 rings
    assert len(o.phones["101"].invites()) == 1
    assert len(o.phones["102"].invites()) == 2


def test_without_wrap_up_the_member_is_offered_the_next_call_at_once() -> None:
    o = office()
    first = o.provider.call(RING_ALL_DID)
    o.phones["101"].answer()
    o.provider.bye(first)
    o.provider.call(RING_ALL_DID)
    assert len(o.phones["101"].invites()) == 2


def test_three_unanswered_offers_put_the_member_on_break() -> None:
    o = office(config=WRAP_UP)
    for _ in range(3):
        o.provider.call("+74950000800")
        o.net.advance(21.0)  # ring_all gives up after 20 s: the offer rang out
    agents = {a["extension"]: a for a in o.net.status()["agents"]}  # type: ignore[union-attr]
    assert agents["101"]["status"] == "break"
    assert "unanswered" in agents["101"]["reason"]


# --- caller rules and schedules (the scripted clock starts at 1970-01-01 03:00 Moscow, a
# Thursday night) ----------------------------------------------------------------------------

CALLER = "79161234567"  # the scripted provider's caller number


def test_blacklisted_caller_hears_busy_and_nothing_rings() -> None:
    o = office(config=config_with([], [], rules=[{"match": CALLER, "action": "blacklist"}]))
    o.provider.call(RING_ALL_DID)
    assert o.provider.final_statuses() == [486]
    assert o.phones["101"].invites() == [] and o.phones["102"].invites() == []
    assert [row["outcome"] for row, _ in o.rows] == ["blacklisted"]


def test_blacklist_rule_with_reject_answers_603() -> None:
    rules = [{"match": "7916*", "action": "blacklist", "reply": "reject"}]
    o = office(config=config_with([], [], rules=rules))
    o.provider.call(RING_ALL_DID)
    assert o.provider.final_statuses() == [603]


def test_vip_rule_with_an_employee_goes_straight_to_them() -> None:
    rules = [{"match": "_7916XXXXXXX", "action": "vip", "to": "103"}]
    o = office(config=config_with([], [], rules=rules))
    o.provider.call(RING_ALL_DID)
    assert len(o.phones["103"].invites()) == 1
    assert o.phones["101"].invites() == []


NIGHT = config_with(
    [], [{"number": "+74950000900", "trunk": "provider", "channels": 3, "destination": "200",
          "schedule": "office"}],
    schedules=[{"name": "office", "hours": {"mon": ["09:00-18:00"], "tue": ["09:00-18:00"],
                                             "wed": ["09:00-18:00"], "thu": ["09:00-18:00"],
                                             "fri": ["09:00-18:00"]},
                "after_hours": "103"}],
)


def test_after_hours_the_number_goes_to_its_after_hours_destination() -> None:
    o = office(config=NIGHT)
    o.provider.call("+74950000900")
    assert len(o.phones["103"].invites()) == 1
    assert o.phones["101"].invites() == []


def test_closed_without_an_after_hours_destination_is_refused() -> None:
    config = copy.deepcopy(NIGHT)
    del config["schedules"][0]["after_hours"]  # type: ignore[index]
    o = office(config=config)
    o.provider.call("+74950000900")
    assert o.provider.final_statuses() == [480]
    assert [row["outcome"] for row, _ in o.rows] == ["closed"]


def test_a_closed_departments_calls_are_recorded_under_whoever_takes_them() -> None:
    config = copy.deepcopy(NIGHT)
    config["departments"][0]["schedule"] = "office"  # type: ignore[index]
    del config["numbers"][-1]["schedule"]  # type: ignore[index]
    config["schedules"][0]["after_hours"] = "300"  # type: ignore[index]
    o = office(config=config)
    o.provider.call("+74950000900")  # department 200 is closed: department 300 takes it
    o.phones["101"].answer()
    assert [row["department"] for row, _ in o.rows] == [] and o.net.calls()[0][
        "department"] == "300"
    config["schedules"][0].pop("after_hours")  # type: ignore[index]
    o = office(config=config)
    o.provider.call("+74950000900")
    statuses = [(r.status, r.reason) for r in o.provider.responses() if r.status >= 200]
    assert statuses == [(480, "Closed")]  # as for a closed number
    assert [(row["department"], row["end_cause"]) for row, _ in o.rows] == [
        ("200", "after hours")]


def test_crm_owner_rings_first_and_alone() -> None:
    config = config_with(
        [{"number": "950", "name": "Accounts", "strategy": "ring_all", "ring_timeout_s": 20,
          "members": ["101", "102"], "sticky": "crm_owner", "sticky_ring_s": 8}],
        [{"number": "+74950000950", "trunk": "provider", "channels": 3, "destination": "950"}],
    )
    o = office(config=config)
    o.net.gateway.crm_owners = {CALLER: "102"}
    o.provider.call("+74950000950")
    assert len(o.phones["102"].invites()) == 1 and o.phones["101"].invites() == []
    o.net.advance(8.5)
    assert len(o.phones["101"].invites()) == 1  # then the strategy's own plan


CRM_LOOKUP = config_with(
    [{"number": "950", "name": "Accounts", "strategy": "ring_all", "ring_timeout_s": 20,
      "members": ["101", "102"], "sticky": "crm_owner", "sticky_ring_s": 8}],
    [{"number": "+74950000950", "trunk": "provider", "channels": 3, "destination": "950"}],
    crm={"url": "http://127.0.0.1:9/owner", "timeout_s": 1.5},
)


def crm_lookup_call(o: Office) -> str:
    """Call department 950 and return the call id the CRM is asked about (nothing rings yet)."""
    o.provider.call("+74950000950")
    requests = o.net.webhook_requests
    assert [(r.url, r.answer_key, r.payload["caller"], r.payload["department"])
            for r in requests] == [("http://127.0.0.1:9/owner", "extension", CALLER, "950")]
    assert o.phones["101"].invites() == [] and o.phones["102"].invites() == []
    call_id = requests[0].call_id
    requests.clear()
    return call_id


def test_crm_lookup_names_the_owner_who_rings_first_and_alone() -> None:
    o = office(config=CRM_LOOKUP)
    o.net.gateway.crm_owners = {CALLER: "101"}  # the CRM's answer wins over the table
    call_id = crm_lookup_call(o)
    o.net.gateway.webhook_answered(call_id, "102", o.net.now)
    o.net.pump()
    assert len(o.phones["102"].invites()) == 1 and o.phones["101"].invites() == []


@pytest.mark.parametrize(("answer", "error"), [
    (None, "URLError: refused"),  # the CRM is down
    ("999", ""),  # names nobody the box knows
    (None, ""),  # knows no owner for this caller
])
def test_a_crm_without_a_usable_answer_falls_back_to_the_table(
    answer: str | None, error: str
) -> None:
    o = office(config=CRM_LOOKUP)
    o.net.gateway.crm_owners = {CALLER: "101"}
    call_id = crm_lookup_call(o)
    o.net.gateway.webhook_answered(call_id, answer, o.net.now, error=error)
    o.net.pump()
    assert len(o.phones["101"].invites()) == 1 and o.phones["102"].invites() == []


def test_a_slow_crm_is_not_waited_for_beyond_its_timeout() -> None:
    o = office(config=CRM_LOOKUP)
    call_id = crm_lookup_call(o)
    o.net.advance(1.5 + 0.2)
    assert o.phones["101"].invites() == []
    o.net.advance(0.1)  # timeout_s + the daemon's grace: no owner, the strategy's plan
    assert len(o.phones["101"].invites()) == 1 and len(o.phones["102"].invites()) == 1
    o.net.gateway.webhook_answered(call_id, "102", o.net.now)  # too late: ignored
    o.net.pump()
    assert len(o.phones["102"].invites()) == 1


def test_caller_who_spoke_to_a_member_today_rings_them_first() -> None:
    config = config_with(
        [{"number": "960", "name": "Service", "strategy": "ring_all", "ring_timeout_s": 20,
          "members": ["101", "102"], "sticky": "last_agent", "sticky_ring_s": 8}],
        [{"number": "+74950000960", "trunk": "provider", "channels": 3, "destination": "960"}],
    )
    o = office(config=config)
    first = o.provider.call("+74950000960")
    o.phones["102"].answer()
    o.provider.bye(first)
    o.provider.call("+74950000960")
    assert len(o.phones["102"].invites()) == 2
    assert len(o.phones["101"].invites()) == 1  # only the first call rang 101


DEADLINE_DID = "+74950000800"
DEADLINE = config_with(
    [{"number": "800", "name": "Quick", "strategy": "ring_all", "ring_timeout_s": 20,
      "members": ["101"], "queue": {"max_callers": 2, "max_wait_s": 12, "retry_s": 5}}],
    [{"number": DEADLINE_DID, "trunk": "provider", "channels": 5, "destination": "800"}],
)


def test_the_queue_deadline_wins_while_a_members_phone_rings() -> None:
    # Issue 16: a caller with max_wait_s 12 rang for the department's 20 s (17 s in the
    # report); the deadline is kept even while a phone rings.
    o = office(config=DEADLINE)
    invite = o.provider.call(DEADLINE_DID)
    o.net.advance(11.9)
    assert [r.status for r in o.provider.responses() if r.call_id == invite.call_id][-1] < 300
    o.net.advance(0.2)
    assert o.provider.final_statuses()[-1] == 480
    assert o.phones["101"].requests("CANCEL")


def test_a_caller_rung_from_the_queue_is_not_rung_past_the_deadline() -> None:
    o = office(config=DEADLINE)
    first = o.provider.call(DEADLINE_DID)
    o.phones["101"].answer()
    second = o.provider.call(DEADLINE_DID)  # waits: 101 talks
    o.net.advance(5.0)
    o.provider.bye(first)
    o.net.advance(5.5)  # served from the queue: 101 rings at about 10 s of waiting
    assert len(o.phones["101"].invites()) == 2
    o.net.advance(2.0)  # the deadline (12 s) comes while it rings
    finals = [r.status for r in o.provider.responses()
              if r.call_id == second.call_id and r.status >= 200]
    assert finals == [480]
