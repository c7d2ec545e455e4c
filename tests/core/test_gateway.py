"""The gateway end to end, sans-IO: registration, ring_all and in_order, channel capacity, every
way a call ends, robustness and live status, on the fake network of tests/core/network.py (time
only moves when a test steps it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from firmware.core.events import DatagramToSend
from firmware.sip.message import Response
from firmware.sip.transaction import Address
from tests.core.network import (
    AFTER_EVERY_TIMER_S,
    CONFIG,
    FIRST_RING_TIME_S,
    IN_ORDER_DID,
    IN_ORDER_TIMEOUT_S,
    PHONE_ADDRESSES,
    PROVIDER,
    RING_ALL_DID,
    RING_ALL_TIMEOUT_S,
    SLOW_DID,
    TIMEOUT_S,
    Network,
    Office,
    Peer,
    config_with,
    office,
)


def leg_results(legs: list[dict[str, object]]) -> dict[object, object]:
    return {leg["target"]: leg["result"] for leg in legs}


# --------------------------------------------------------------------------------------------
# Registration


def test_phone_registers_with_digest_credentials(o: Office) -> None:
    registrations = o.net.status()["registrations"]
    assert isinstance(registrations, list)
    assert sorted(r["extension"] for r in registrations) == ["101", "102", "103"]


def test_register_with_a_wrong_password_is_forbidden() -> None:
    net = Network()
    phone = Peer(net, PHONE_ADDRESSES["101"], "101")
    assert phone.register(password="not-the-password").status == 403
    assert net.status()["registrations"] == []


# --------------------------------------------------------------------------------------------
# ring_all


def test_provider_call_rings_every_registered_member_of_a_ring_all_department(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    assert len(o.phones["101"].invites()) == 1
    assert len(o.phones["102"].invites()) == 1
    assert o.phones["103"].invites() == []


def test_unregistered_member_is_not_rung() -> None:
    o = office(registered=("101",))
    o.provider.call(RING_ALL_DID)
    assert len(o.phones["101"].invites()) == 1
    assert o.phones["102"].received == []


def test_ringing_is_relayed_to_the_caller_once(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    assert [r.status for r in o.provider.responses()] == [100, 180]


def test_first_answer_wins_and_the_caller_gets_200(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.advance(3.0)
    o.phones["102"].answer()
    assert o.provider.final_statuses() == [200]
    [call] = o.net.calls()
    assert call["answered_by"] == "102"


def test_the_other_ringing_leg_gets_cancel_when_one_answers(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.advance(3.0)
    o.phones["102"].answer()
    assert len(o.phones["101"].requests("CANCEL")) == 1
    assert o.phones["102"].requests("CANCEL") == []


def test_a_second_answer_that_lost_the_race_is_hung_up(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    late = o.phones["102"]
    invite = late.ringing_invite()
    late.silent = True  # our CANCEL crosses its 200 on the wire
    o.phones["101"].answer()
    late.silent = False
    late.reply(invite, 200)
    assert len(late.requests("BYE")) == 1
    assert o.provider.final_statuses() == [200]


def test_caller_cancel_is_answered_487(o: Office) -> None:
    invite = o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.provider.cancel(invite)
    assert o.provider.final_statuses("CANCEL") == [200]
    assert o.provider.final_statuses() == [487]


def test_caller_cancel_cancels_every_ringing_leg(o: Office) -> None:
    invite = o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.provider.cancel(invite)
    assert len(o.phones["101"].requests("CANCEL")) == 1
    assert len(o.phones["102"].requests("CANCEL")) == 1


def test_department_gives_up_after_ring_timeout_with_480(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.run_until(RING_ALL_TIMEOUT_S - 0.01)
    assert o.provider.final_statuses() == []
    o.net.run_until(RING_ALL_TIMEOUT_S)
    assert o.provider.final_statuses() == [480]


def test_give_up_cancels_every_ringing_leg(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.run_until(RING_ALL_TIMEOUT_S)
    assert len(o.phones["101"].requests("CANCEL")) == 1
    assert len(o.phones["102"].requests("CANCEL")) == 1


def test_every_leg_busy_is_answered_486(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.phones["101"].decline_busy()
    assert o.provider.final_statuses() == []
    o.phones["102"].decline_busy()
    assert o.provider.final_statuses() == [486]


def test_department_without_a_registered_member_answers_480_at_once() -> None:
    o = office(registered=())
    o.provider.call(RING_ALL_DID)
    assert o.provider.final_statuses() == [480]


# --------------------------------------------------------------------------------------------
# in_order


def test_in_order_rings_only_the_first_member_at_first(o: Office) -> None:
    o.provider.call(IN_ORDER_DID)
    assert len(o.phones["101"].invites()) == 1
    assert o.phones["102"].invites() == []


def test_in_order_rings_the_second_member_exactly_when_the_first_ring_time_ends(
    o: Office,
) -> None:
    o.provider.call(IN_ORDER_DID)
    o.net.run_until(FIRST_RING_TIME_S - 0.001)
    assert o.phones["102"].invites() == []
    o.net.run_until(FIRST_RING_TIME_S)
    assert len(o.phones["102"].invites()) == 1


def test_in_order_cancels_the_first_member_when_the_second_starts(o: Office) -> None:
    o.provider.call(IN_ORDER_DID)
    o.net.run_until(FIRST_RING_TIME_S - 0.001)
    assert o.phones["101"].requests("CANCEL") == []
    o.net.run_until(FIRST_RING_TIME_S)
    assert len(o.phones["101"].requests("CANCEL")) == 1


def test_a_hunt_schedules_its_next_step_only(o: Office) -> None:
    o.provider.call(IN_ORDER_DID)
    (call,) = o.net.gateway.calls.values()
    pending = sorted(t.when for t in call.timers if not t.cancelled)  # type: ignore[attr-defined]
    assert pending == [FIRST_RING_TIME_S, FIRST_RING_TIME_S + IN_ORDER_TIMEOUT_S]  # 102, give up
    o.net.run_until(FIRST_RING_TIME_S)
    pending = [t.when for t in call.timers  # type: ignore[attr-defined]
               if not t.cancelled and t.when > o.net.now]  # type: ignore[attr-defined]
    assert pending == [FIRST_RING_TIME_S + IN_ORDER_TIMEOUT_S]  # the last member: give up only


def test_in_order_busy_member_moves_to_the_next_at_once(o: Office) -> None:
    o.provider.call(IN_ORDER_DID)
    o.net.advance(1.0)
    o.phones["101"].decline_busy()
    assert len(o.phones["102"].invites()) == 1
    assert o.provider.final_statuses() == []


def test_in_order_gives_up_after_the_last_ring_time(o: Office) -> None:
    o.provider.call(IN_ORDER_DID)
    o.net.run_until(FIRST_RING_TIME_S + IN_ORDER_TIMEOUT_S - 0.01)
    assert o.provider.final_statuses() == []
    o.net.run_until(FIRST_RING_TIME_S + IN_ORDER_TIMEOUT_S)
    assert o.provider.final_statuses() == [480]
    assert len(o.phones["102"].requests("CANCEL")) == 1


# --------------------------------------------------------------------------------------------
# Channel capacity


def test_the_fourth_concurrent_call_on_three_channels_is_busy_at_once(o: Office) -> None:
    for _ in range(3):
        o.provider.call(RING_ALL_DID)
    invites_before = len(o.phones["101"].invites())
    fourth = o.provider.call(RING_ALL_DID)
    statuses = [r.status for r in o.provider.responses() if r.call_id == fourth.call_id]
    assert [s for s in statuses if s >= 200] == [486]
    assert len(o.phones["101"].invites()) == invites_before


def test_a_call_over_capacity_is_recorded_as_such(o: Office) -> None:
    for _ in range(4):
        o.provider.call(RING_ALL_DID)
    [(row, legs)] = o.rows
    assert (row["outcome"], legs) == ("over_capacity", [])


def test_a_channel_is_free_again_once_a_call_ends(o: Office) -> None:
    calls = [o.provider.call(RING_ALL_DID) for _ in range(3)]
    o.provider.cancel(calls[0])
    fourth = o.provider.call(RING_ALL_DID)
    statuses = [r.status for r in o.provider.responses() if r.call_id == fourth.call_id]
    assert 486 not in statuses


def test_channels_are_counted_per_number_and_per_trunk(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.provider.call(IN_ORDER_DID)
    assert o.net.channels_in_use() == {
        f"number:{RING_ALL_DID}": 1, f"number:{IN_ORDER_DID}": 1, f"number:{SLOW_DID}": 0,
        "trunk:provider": 2,
    }


# --------------------------------------------------------------------------------------------
# Every way a call ends: channels, call records, transactions


@dataclass(frozen=True)
class Ending:
    name: str
    drive: Callable[[Office], None]
    outcome: str
    end_cause: str
    legs: dict[str, str]


def _answer_then_caller_hangs_up(o: Office) -> None:
    invite = o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.phones["101"].answer()
    o.net.advance(30.0)
    o.provider.bye(invite)


def _answer_then_callee_hangs_up(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.phones["101"].answer()
    o.net.advance(30.0)
    o.phones["101"].hang_up()


def _caller_cancels(o: Office) -> None:
    invite = o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.provider.cancel(invite)


def _every_leg_busy(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.phones["101"].decline_busy()
    o.phones["102"].decline_busy()


def _nobody_answers(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    o.net.advance(RING_ALL_TIMEOUT_S + 1)


def _leg_never_responds(o: Office) -> None:
    # Timer B: the only member's phone is gone without unregistering.
    o.phones["103"].silent = True
    o.provider.call(SLOW_DID)
    o.net.advance(TIMEOUT_S + 1)


def _caller_never_acks(o: Office) -> None:
    o.provider.acks_2xx = False
    o.provider.call(RING_ALL_DID)
    o.phones["101"].answer()
    o.net.advance(TIMEOUT_S + 1)


ENDINGS = [
    Ending("answered, caller hangs up", _answer_then_caller_hangs_up, "answered",
           "hangup by caller", {"101": "answered", "102": "cancelled"}),
    Ending("answered, callee hangs up", _answer_then_callee_hangs_up, "answered",
           "hangup by callee", {"101": "answered", "102": "cancelled"}),
    Ending("caller cancels", _caller_cancels, "missed", "caller cancelled",
           {"101": "cancelled", "102": "cancelled"}),
    Ending("every leg busy", _every_leg_busy, "missed", "no answer",
           {"101": "busy", "102": "busy"}),
    Ending("nobody answers", _nobody_answers, "missed", "no answer",
           {"101": "no_answer", "102": "no_answer"}),
    Ending("leg never responds", _leg_never_responds, "missed", "no answer",
           {"103": "failed"}),
    Ending("caller never ACKs", _caller_never_acks, "answered", "no ACK from caller",
           {"101": "answered", "102": "cancelled"}),
]
ENDING_IDS = [e.name for e in ENDINGS]


@pytest.mark.parametrize("ending", ENDINGS, ids=ENDING_IDS)
def test_channels_return_to_zero_when_a_call_ends(o: Office, ending: Ending) -> None:
    ending.drive(o)
    assert set(o.net.channels_in_use().values()) == {0}
    assert o.net.calls() == []


@pytest.mark.parametrize("ending", ENDINGS, ids=ENDING_IDS)
def test_exactly_one_call_row_is_recorded_when_a_call_ends(o: Office, ending: Ending) -> None:
    ending.drive(o)
    o.net.advance(AFTER_EVERY_TIMER_S)
    [(row, legs)] = o.rows
    assert (row["outcome"], row["end_cause"]) == (ending.outcome, ending.end_cause)
    assert leg_results(legs) == ending.legs
    assert all(leg["call_id"] == row["id"] for leg in legs)


@pytest.mark.parametrize("ending", ENDINGS, ids=ENDING_IDS)
def test_no_transaction_is_left_once_every_timer_has_run(o: Office, ending: Ending) -> None:
    ending.drive(o)
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert o.net.transactions() == 0


def test_answered_call_row_names_who_answered_and_the_department(o: Office) -> None:
    _answer_then_caller_hangs_up(o)
    [(row, _)] = o.rows
    assert (row["direction"], row["source"], row["number"], row["department"],
            row["answered_by"], row["caller"]) == (
        "inbound", "trunk:provider", RING_ALL_DID, "200", "101", "79161234567",
    )


def test_caller_bye_is_relayed_to_the_answering_phone(o: Office) -> None:
    _answer_then_caller_hangs_up(o)
    assert len(o.phones["101"].requests("BYE")) == 1
    assert o.provider.final_statuses("BYE") == [200]


def test_callee_bye_is_relayed_to_the_caller(o: Office) -> None:
    _answer_then_callee_hangs_up(o)
    assert len(o.provider.requests("BYE")) == 1
    assert o.phones["101"].final_statuses("BYE") == [200]


def test_leg_without_any_response_times_out_and_the_caller_gets_480(o: Office) -> None:
    o.phones["103"].silent = True
    o.provider.call(SLOW_DID)
    o.net.run_until(TIMEOUT_S - 0.01)
    assert o.provider.final_statuses() == []
    o.net.run_until(TIMEOUT_S)
    assert o.provider.final_statuses() == [480]


def test_caller_that_never_acks_the_200_is_hung_up_on_both_sides(o: Office) -> None:
    o.provider.acks_2xx = False
    o.provider.call(RING_ALL_DID)
    o.phones["101"].answer()
    o.net.run_until(TIMEOUT_S - 0.01)
    assert o.phones["101"].requests("BYE") == []
    o.net.run_until(TIMEOUT_S)
    assert len(o.phones["101"].requests("BYE")) == 1
    assert len(o.provider.requests("BYE")) == 1


def test_a_ringing_leg_that_goes_silent_after_cancel_leaves_no_transaction(o: Office) -> None:
    # RFC 3261 §9.1: without a final response 64*T1 after the CANCEL, the UAC considers the
    # INVITE cancelled and destroys its client transaction.
    invite = o.provider.call(RING_ALL_DID)
    o.net.advance(2.0)
    o.phones["102"].silent = True  # rang, then lost power
    o.provider.cancel(invite)
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert o.net.transactions() == 0


def test_idle_gateway_has_no_transactions_once_registrations_settle(o: Office) -> None:
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert o.net.transactions() == 0


# --------------------------------------------------------------------------------------------
# Robustness


def _break_the_registrar(o: Office, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> Response:
        raise RuntimeError("bug in the registrar")

    monkeypatch.setattr(o.net.gateway.registrar, "register", broken)


def test_an_internal_error_in_a_handler_does_not_escape_receive(
    o: Office, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _break_the_registrar(o, monkeypatch)
    o.phones["101"].register()  # raises here if the error escapes
    assert o.net.stats()["internal_errors"] == 1


def test_a_request_whose_handler_fails_is_answered_500(monkeypatch: pytest.MonkeyPatch) -> None:
    o = office(registered=())
    _break_the_registrar(o, monkeypatch)
    phone = o.phones["101"]
    phone.register()
    assert [r.status for r in phone.responses("REGISTER")] == [401, 500]


def test_a_request_whose_handler_fails_leaves_no_transaction(
    o: Office, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _break_the_registrar(o, monkeypatch)
    o.phones["101"].register()
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert o.net.transactions() == 0


def test_the_gateway_keeps_working_after_an_internal_error(
    o: Office, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as patch:
        _break_the_registrar(o, patch)
        o.phones["101"].register()
    o.provider.call(RING_ALL_DID)
    assert len(o.phones["101"].invites()) == 1


def test_rfc2543_caller_without_contact_is_connected_and_released(o: Office) -> None:
    # RFC 4475 §3.4.1 (inv2543): an old client may leave Contact out; the box still takes the
    # call, reaching the caller at its From address / source, and frees everything after BYE.
    invite = o.provider.call(RING_ALL_DID, contact=False)
    o.phones["101"].answer()
    assert o.provider.final_statuses() == [200]
    o.provider.bye(invite)
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert set(o.net.channels_in_use().values()) == {0}
    assert o.net.transactions() == 0


def test_scanner_named_in_another_case_in_the_config_is_dropped() -> None:
    config = dict(CONFIG, security={"scanner_user_agents": ["SIPVicious"]})
    net = Network(config)
    scanner = Peer(net, Address("udp", "198.51.100.66", 5060), "100")
    scanner.call("100", extra=[("User-Agent", "sipvicious 0.3.4")])
    assert scanner.received == []
    assert net.stats()["dropped_scanner"] == 1


# --------------------------------------------------------------------------------------------
# Live status (what the web UI's monitor shows)


def test_status_says_how_long_each_extension_has_rung_and_since_when_the_call_is_answered(
    o: Office,
) -> None:
    o.provider.call(IN_ORDER_DID)
    o.net.advance(3.0)
    [call] = o.net.calls()
    assert call["ringing"] == ["101"] and call["ringing_s"] == {"101": 3.0}
    assert call["answered_s"] is None
    o.net.run_until(FIRST_RING_TIME_S + 2.0)
    [call] = o.net.calls()
    assert call["ringing_s"] == {"102": 2.0}
    o.phones["102"].answer()
    o.net.advance(5.0)
    [call] = o.net.calls()
    assert call["answered_s"] == 5.0 and call["ringing_s"] == {}


def agents_by_extension(net: Network) -> dict[str, dict[str, object]]:
    agents = net.status()["agents"]
    assert isinstance(agents, list)
    return {str(a["extension"]): a for a in agents}


def test_status_says_how_long_ago_each_agent_ended_a_call() -> None:
    departments = CONFIG["departments"]
    assert isinstance(departments, list)
    with_wrap_up = [dict(departments[0], wrap_up_s=30), *departments[1:]]
    o = office(config=dict(CONFIG, departments=with_wrap_up))
    assert agents_by_extension(o.net)["101"]["call_ended_s"] is None
    o.provider.call(RING_ALL_DID)
    o.phones["101"].answer()
    o.net.advance(10.0)
    o.phones["101"].hang_up()
    o.net.advance(4.0)
    agents = agents_by_extension(o.net)
    assert agents["101"]["call_ended_s"] == 4.0 and agents["101"]["wrap_up_s"] == 26.0
    assert agents["102"]["call_ended_s"] is None


# --------------------------------------------------------------------------------------------
# Randomness


RANDOM_DID = "+74950000500"


def first_rung_by_random(seed: int) -> str:
    config = config_with(
        [{"number": "500", "name": "Random", "strategy": "random", "ring_timeout_s": 20,
          "members": ["101", "102", "103"]}],
        [{"number": RANDOM_DID, "trunk": "provider", "channels": 3, "destination": "500"}],
    )
    net = Network(config, seed=seed)
    provider = Peer(net, PROVIDER, "79161234567")
    phones = {n: Peer(net, address, n) for n, address in PHONE_ADDRESSES.items()}
    for phone in phones.values():
        assert phone.register().status == 200
    provider.call(RANDOM_DID)
    rung = [n for n, phone in phones.items() if phone.invites()]
    assert len(rung) == 1
    return rung[0]


def test_the_random_strategy_repeats_itself_under_a_seeded_gateway() -> None:
    choices = [first_rung_by_random(seed) for seed in range(8)]
    assert choices == [first_rung_by_random(seed) for seed in range(8)]
    assert len(set(choices)) > 1  # and the seed does choose


# --------------------------------------------------------------------------------------------
# The one output


def test_what_the_core_asks_of_the_daemon_comes_through_next_event_alone() -> None:
    net = Network()
    gateway = net.gateway
    source = Address("udp", "127.0.0.9", 5060)
    garbage = b"OPTIONS sip:box SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKx\r\n\r\n"
    gateway.receive(garbage, source, 0.0)
    event = gateway.next_event()
    assert isinstance(event, DatagramToSend) and event.destination == source
    assert event.data.startswith(b"SIP/2.0 400 ")
    assert gateway.next_event() is None
    for old_output in ("datagrams_to_send", "rtp_to_send", "webhook_requests", "status_changes",
                       "recorder"):
        assert not hasattr(gateway, old_output)
