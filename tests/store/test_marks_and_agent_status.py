"""A manager's marks on a call, callback states, and agent statuses with their log."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from firmware.store import RecordNotFoundError, Store, new_call_id


def recorded_call(store: Store, **fields: Any) -> str:
    call_id = new_call_id()
    call = {
        "id": call_id,
        "started_at": 1000.0,
        "answered_at": 1004.0,
        "ended_at": 1064.0,
        "direction": "inbound",
        "source": "trunk:provider",
        "caller": "+74950000000",
        "dialed": "+74951234567",
        "answered_by": "101",
        "outcome": "answered",
        **fields,
    }
    store.record_finished_calls([(call, [])])
    return call_id


def marks(store: Store, call_id: str) -> tuple[int, int, str | None]:
    row = store.db.execute(
        "SELECT target_call, sale, marked_by FROM calls WHERE id = ?", (call_id,)
    ).fetchone()
    return row[0], row[1], row[2]


# --- marks ---------------------------------------------------------------------------------------


def test_marking_a_target_call_records_who_marked_it(store: Store) -> None:
    call_id = recorded_call(store)

    row = store.mark_call(call_id, target=True, sale=None, by="Ольга")

    assert marks(store, call_id) == (1, 0, "Ольга")
    assert (row["id"], row["target_call"], row["sale"]) == (call_id, 1, 0)


def test_a_sale_is_also_a_target_call(store: Store) -> None:
    call_id = recorded_call(store)

    store.mark_call(call_id, target=None, sale=True, by="owner")

    assert marks(store, call_id) == (1, 1, "owner")


def test_unmarking_a_target_call_unmarks_its_sale(store: Store) -> None:
    call_id = recorded_call(store)
    store.mark_call(call_id, target=None, sale=True, by="owner")

    store.mark_call(call_id, target=False, sale=None, by="owner")

    assert marks(store, call_id)[:2] == (0, 0)


def test_unmarking_a_sale_keeps_the_target_call(store: Store) -> None:
    call_id = recorded_call(store)
    store.mark_call(call_id, target=None, sale=True, by="owner")

    store.mark_call(call_id, target=None, sale=False, by="manager")

    assert marks(store, call_id) == (1, 0, "manager")


def test_sale_on_a_non_target_call_is_refused(store: Store) -> None:
    call_id = recorded_call(store)

    with pytest.raises(ValueError, match="target"):
        store.mark_call(call_id, target=False, sale=True, by="owner")

    assert marks(store, call_id) == (0, 0, None)


def test_marking_nothing_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="nothing to mark"):
        store.mark_call(recorded_call(store), target=None, sale=None, by="owner")


def test_marking_an_unknown_call_raises(store: Store) -> None:
    with pytest.raises(RecordNotFoundError):
        store.mark_call("0" * 32, target=True, sale=None, by="owner")


def test_marks_do_not_touch_other_calls(store: Store) -> None:
    first, second = recorded_call(store), recorded_call(store)

    store.mark_call(first, target=True, sale=True, by="owner")

    assert marks(store, second) == (0, 0, None)


# --- callback state ------------------------------------------------------------------------------


def test_callback_state_is_recorded_and_can_be_cleared(store: Store) -> None:
    call_id = recorded_call(store, outcome="callback", answered_at=None, answered_by=None)

    store.set_callback_state(call_id, "requested")
    assert store.recent_calls()[0]["callback_state"] == "requested"
    store.set_callback_state(call_id, None)
    assert store.recent_calls()[0]["callback_state"] is None


def test_unknown_callback_state_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="callback_state"):
        store.set_callback_state(recorded_call(store), "lost")


def test_callback_state_of_an_unknown_call_raises(store: Store) -> None:
    with pytest.raises(RecordNotFoundError):
        store.set_callback_state("0" * 32, "done")


# --- agent statuses ------------------------------------------------------------------------------


def test_agent_status_is_saved_and_logged(store: Store) -> None:
    store.set_agent_status("101", "break", reason="обед", at=1000.0, source="phone")

    assert store.agent_statuses() == {
        "101": {"status": "break", "reason": "обед", "since": 1000.0}
    }
    assert [
        (row["extension"], row["status"], row["reason"], row["at"], row["source"])
        for row in store.agent_status_log()
    ] == [("101", "break", "обед", 1000.0, "phone")]


def test_a_new_status_replaces_the_old_one_and_both_are_logged(store: Store) -> None:
    store.set_agent_status("101", "break", reason="обед", at=1000.0, source="cli")
    store.set_agent_status("101", "on_line", reason="", at=2000.0, source="web")

    assert store.agent_statuses()["101"] == {"status": "on_line", "reason": "", "since": 2000.0}
    assert [row["status"] for row in store.agent_status_log("101")] == ["break", "on_line"]


def test_setting_the_same_status_again_keeps_since_but_is_logged(store: Store) -> None:
    store.set_agent_status("101", "break", reason="обед", at=1000.0, source="cli")
    store.set_agent_status("101", "break", reason="обед", at=1500.0, source="phone")

    assert store.agent_statuses()["101"]["since"] == 1000.0
    assert len(store.agent_status_log("101")) == 2


def test_a_new_reason_restarts_since(store: Store) -> None:
    store.set_agent_status("101", "break", reason="обед", at=1000.0, source="cli")
    store.set_agent_status("101", "break", reason="встреча", at=1500.0, source="cli")

    assert store.agent_statuses()["101"] == {
        "status": "break", "reason": "встреча", "since": 1500.0
    }


def test_auto_break_is_logged_with_its_source(store: Store) -> None:
    store.set_agent_status(
        "102", "break", reason="auto: 3 unanswered calls in a row", at=1000.0, source="auto"
    )

    assert store.agent_status_log("102")[0]["source"] == "auto"


def test_statuses_of_several_agents_are_kept_apart(store: Store) -> None:
    store.set_agent_status("101", "break", reason=None, at=1000.0, source="cli")
    store.set_agent_status("102", "dnd", reason=None, at=1100.0, source="cli")

    assert {ext: s["status"] for ext, s in store.agent_statuses().items()} == {
        "101": "break",
        "102": "dnd",
    }
    assert [row["extension"] for row in store.agent_status_log("102")] == ["102"]


def test_unknown_status_source_is_refused_and_nothing_is_saved(store: Store) -> None:
    with pytest.raises(ValueError, match="source"):
        store.set_agent_status("101", "break", reason="", at=1000.0, source="telepathy")

    assert store.agent_statuses() == {}
    assert store.agent_status_log() == []


def test_status_and_log_are_written_in_one_transaction(store: Store) -> None:
    store.db.execute(
        "CREATE TEMP TRIGGER log_fails BEFORE INSERT ON agent_status_log "
        "BEGIN SELECT RAISE(ABORT, 'log is full'); END"
    )

    with pytest.raises(sqlite3.IntegrityError, match="log is full"):
        store.set_agent_status("101", "break", reason="", at=1000.0, source="cli")

    assert store.agent_statuses() == {}
