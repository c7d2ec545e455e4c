"""Call records: a call, its legs, and the recent-calls list."""

from __future__ import annotations

from typing import Any

import pytest

from firmware.store import Store, new_call_id


def call_row(call_id: str, *, started_at: float = 1000.0, **fields: Any) -> dict[str, Any]:
    """A finished inbound call that nobody answered, with `fields` overriding its columns."""
    return {
        "id": call_id,
        "started_at": started_at,
        "ended_at": started_at + 20.0,
        "direction": "inbound",
        "source": "trunk:provider",
        "caller": "+74950000000",
        "dialed": "+74951234567",
        "number": "+74951234567",
        "department": "200",
        "end_cause": "ring timeout",
        "outcome": "missed",
        "sip_call_id": "a84b4c76e66710@203.0.113.7",
    } | fields


def leg_row(call_id: str, target: str, **fields: Any) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "target": target,
        "contact": f"sip:{target}@10.0.0.5",
        "started_at": 1.0,
    } | fields


def record_call(
    store: Store, *, started_at: float = 1000.0, legs: list[dict[str, Any]] | None = None
) -> str:
    call_id = new_call_id()
    store.record_finished_calls([(call_row(call_id, started_at=started_at), legs or [])])
    return call_id


def test_new_call_id_is_uuid4_hex() -> None:
    call_id = new_call_id()

    assert len(call_id) == 32 and int(call_id, 16) >= 0
    assert call_id != new_call_id()


def test_call_round_trip(store: Store) -> None:
    call_id = new_call_id()
    store.record_finished_calls([(
        call_row(
            call_id,
            answered_at=1004.5,
            answered_by="102",
            ended_at=1060.0,
            end_cause="caller hung up",
            outcome="answered",
        ),
        [],
    )])

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
            "line": None,
            "record_state": "ended",  # schema version 12
            "clock_unsynced": 0,  # schema version 14
        }
    ]


def test_unanswered_call_keeps_null_answer_fields(store: Store) -> None:
    record_call(store)

    (call,) = store.recent_calls()
    assert (call["answered_at"], call["answered_by"], call["outcome"]) == (None, None, "missed")


def test_leg_round_trip(store: Store) -> None:
    call_id = new_call_id()
    store.record_finished_calls([(
        call_row(call_id, answered_at=1004.5, answered_by="102", outcome="answered"),
        [
            leg_row(
                call_id, "101", contact="sip:101@10.0.0.5", started_at=1000.1, ringing_at=1000.3,
                ended_at=1004.5, result="cancelled", sip_status=487,
            ),
            leg_row(
                call_id, "102", contact="sip:102@10.0.0.6", started_at=1000.1, ringing_at=1000.4,
                answered_at=1004.5, ended_at=1060.0, result="answered", sip_status=200,
            ),
        ],
    )])

    legs = store.legs_of(call_id)

    assert [leg["target"] for leg in legs] == ["101", "102"]
    assert legs[0]["id"] < legs[1]["id"]
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
    first_call, second_call = new_call_id(), new_call_id()
    store.record_finished_calls([
        (call_row(first_call), [leg_row(first_call, "101")]),
        (call_row(second_call), [leg_row(second_call, "102")]),
    ])

    assert [leg["target"] for leg in store.legs_of(second_call)] == ["102"]


def test_recent_calls_are_newest_first_and_limited(store: Store) -> None:
    ids = [record_call(store, started_at=float(t)) for t in (10, 30, 20)]

    assert [call["id"] for call in store.recent_calls(limit=2)] == [ids[1], ids[2]]


def test_unknown_direction_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="direction"):
        store.record_finished_calls([(call_row(new_call_id(), direction="sideways"), [])])

    assert store.recent_calls() == []


def test_unknown_outcome_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="outcome"):
        store.record_finished_calls([(call_row(new_call_id(), outcome="great"), [])])

    assert store.recent_calls() == []


def test_deleting_a_call_deletes_its_legs(store: Store) -> None:
    call_id = new_call_id()
    store.record_finished_calls([(call_row(call_id), [leg_row(call_id, "101")])])
    assert len(store.legs_of(call_id)) == 1

    store.db.execute("DELETE FROM calls WHERE id = ?", (call_id,))

    assert store.legs_of(call_id) == []


def test_unknown_leg_result_is_refused_and_nothing_is_written(store: Store) -> None:
    call = {"id": new_call_id(), "started_at": 1.0, "direction": "inbound", "source": "sip",
            "caller": "79161234567", "dialed": "200", "outcome": "missed"}
    leg = {"target": "101", "contact": "sip:101@h", "started_at": 1.0, "result": "vanished"}
    with pytest.raises(ValueError, match="result"):
        store.record_finished_calls([(call, [leg])])
    assert store.recent_calls() == []
