"""Call records: a call, its legs, and the recent-calls list."""

from __future__ import annotations

import pytest

from firmware.store import RecordNotFoundError, Store, new_call_id


def start_call(store: Store, *, started_at: float = 1000.0) -> str:
    call_id = new_call_id()
    store.call_started(
        call_id=call_id,
        started_at=started_at,
        direction="inbound",
        source="trunk:provider",
        caller="+74950000000",
        dialed="+74951234567",
        number="+74951234567",
        department="200",
        sip_call_id="a84b4c76e66710@203.0.113.7",
    )
    return call_id


def test_new_call_id_is_uuid4_hex() -> None:
    call_id = new_call_id()

    assert len(call_id) == 32 and int(call_id, 16) >= 0
    assert call_id != new_call_id()


def test_call_round_trip_from_start_to_end(store: Store) -> None:
    call_id = start_call(store)
    store.call_answered(call_id, answered_at=1004.5, answered_by="102")
    store.call_ended(call_id, ended_at=1060.0, end_cause="caller hung up", outcome="answered")

    assert store.recent_calls() == [
        {
            "id": call_id,
            "started_at": 1000.0,
            "answered_at": 1004.5,
            "ended_at": 1060.0,
            "direction": "inbound",
            "source": "trunk:provider",
            "caller": "+74950000000",
            "dialed": "+74951234567",
            "number": "+74951234567",
            "department": "200",
            "answered_by": "102",
            "end_cause": "caller hung up",
            "outcome": "answered",
            "sip_call_id": "a84b4c76e66710@203.0.113.7",
            "strategy": None,
            "waited_s": None,
            "talk_s": None,
            "target_call": 0,
            "sale": 0,
            "marked_by": None,
            "callback_state": None,
        }
    ]


def test_unanswered_call_keeps_null_answer_fields(store: Store) -> None:
    call_id = start_call(store)
    store.call_ended(call_id, ended_at=1020.0, end_cause="ring timeout", outcome="missed")

    (call,) = store.recent_calls()
    assert (call["answered_at"], call["answered_by"], call["outcome"]) == (None, None, "missed")


def test_leg_round_trip(store: Store) -> None:
    call_id = start_call(store)
    first = store.leg_started(call_id, target="101", contact="sip:101@10.0.0.5", started_at=1000.1)
    second = store.leg_started(call_id, target="102", contact="sip:102@10.0.0.6", started_at=1000.1)
    store.leg_ringing(first, 1000.3)
    store.leg_ringing(second, 1000.4)
    store.leg_answered(second, 1004.5)
    store.leg_ended(first, at=1004.5, result="cancelled", sip_status=487)
    store.leg_ended(second, at=1060.0, result="answered", sip_status=200)

    legs = store.legs_of(call_id)

    assert [leg["id"] for leg in legs] == [first, second]
    assert legs[0] | {"id": 0} == {
        "id": 0,
        "call_id": call_id,
        "target": "101",
        "contact": "sip:101@10.0.0.5",
        "started_at": 1000.1,
        "ringing_at": 1000.3,
        "answered_at": None,
        "ended_at": 1004.5,
        "result": "cancelled",
        "sip_status": 487,
    }
    assert (legs[1]["answered_at"], legs[1]["result"], legs[1]["sip_status"]) == (
        1004.5,
        "answered",
        200,
    )


def test_legs_of_a_call_exclude_other_calls_legs(store: Store) -> None:
    first_call, second_call = start_call(store), start_call(store)
    store.leg_started(first_call, target="101", contact="sip:101@10.0.0.5", started_at=1.0)
    store.leg_started(second_call, target="102", contact="sip:102@10.0.0.6", started_at=1.0)

    assert [leg["target"] for leg in store.legs_of(second_call)] == ["102"]


def test_recent_calls_are_newest_first_and_limited(store: Store) -> None:
    ids = [start_call(store, started_at=float(t)) for t in (10, 30, 20)]

    assert [call["id"] for call in store.recent_calls(limit=2)] == [ids[1], ids[2]]


def test_answering_an_unknown_call_raises(store: Store) -> None:
    with pytest.raises(RecordNotFoundError):
        store.call_answered("0" * 32, answered_at=1.0, answered_by="101")


def test_ending_an_unknown_leg_raises(store: Store) -> None:
    with pytest.raises(RecordNotFoundError):
        store.leg_ended(999, at=1.0, result="failed", sip_status=503)


def test_unknown_direction_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="direction"):
        store.call_started(
            call_id=new_call_id(),
            started_at=1.0,
            direction="sideways",
            source="sip",
            caller="101",
            dialed="102",
        )


def test_unknown_outcome_is_refused(store: Store) -> None:
    call_id = start_call(store)

    with pytest.raises(ValueError, match="outcome"):
        store.call_ended(call_id, ended_at=2.0, end_cause="?", outcome="great")


def test_unknown_leg_result_is_refused(store: Store) -> None:
    call_id = start_call(store)
    leg_id = store.leg_started(call_id, target="101", contact="", started_at=1.0)

    with pytest.raises(ValueError, match="result"):
        store.leg_ended(leg_id, at=2.0, result="maybe", sip_status=None)


def test_deleting_a_call_deletes_its_legs(store: Store) -> None:
    call_id = start_call(store)
    store.leg_started(call_id, target="101", contact="sip:101@10.0.0.5", started_at=1.0)

    store.db.execute("DELETE FROM calls WHERE id = ?", (call_id,))

    assert store.legs_of(call_id) == []
