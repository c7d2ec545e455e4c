"""Schema version 2: a version 1 database upgrades in place, and calls carry the new facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from firmware.store import Store, load_yaml, new_call_id
from firmware.store.db import CALL_COLUMNS, MIGRATIONS, apply_migrations
from tests.store.conftest import VALID_YAML, write_config_as_older_firmware

NEW_CALL_COLUMNS = {
    "strategy": None,
    "waited_s": None,
    "talk_s": None,
    "target_call": 0,
    "sale": 0,
    "marked_by": None,
    "callback_state": None,
    "line": None,  # schema version 10
    "clock_unsynced": 0,  # schema version 14
}
# Schema version 12: how far the record got (written when answered, then when ended).
RECORD_STATE = {"record_state": "ended"}


def v1_call(call_id: str, **fields: Any) -> dict[str, Any]:
    """A call as the version 1 recorder writes it: none of the version 2 columns."""
    return {
        "id": call_id,
        "started_at": 1000.0,
        "answered_at": 1004.0,
        "ended_at": 1064.0,
        "direction": "inbound",
        "source": "trunk:provider",
        "caller": "+74950000000",
        "dialed": "+74951234567",
        "number": "+74951234567",
        "department": "200",
        "answered_by": "101",
        "end_cause": "caller hung up",
        "outcome": "answered",
        "sip_call_id": "abc@203.0.113.7",
        **fields,
    }


def make_v1_database(path: Path) -> tuple[str, dict[str, Any]]:
    """A database left by firmware with only migration 1, holding config, a call and its leg."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(path)
    db.enable_wal()
    apply_migrations(db, MIGRATIONS[:1])
    db.close()
    write_config_as_older_firmware(path, VALID_YAML)
    store = Store(Database(path))
    call_id = new_call_id()
    call = v1_call(call_id)
    store.db.execute(
        f"INSERT INTO calls ({', '.join(call)}) VALUES ({', '.join('?' for _ in call)})",
        list(call.values()),
    )
    store.db.execute(
        "INSERT INTO call_legs (call_id, target, contact, started_at, answered_at, ended_at, "
        "result, sip_status) VALUES (?, '101', 'sip:101@10.0.0.5', 1000.1, 1004.0, 1064.0, "
        "'answered', 200)",
        (call_id,),
    )
    store.db.conn.commit()
    store.close()
    return call_id, call


def test_schema_version_is_the_latest_migration(store: Store) -> None:
    # 12: registrations and calls in progress (issue 16); 13: call recordings (issue 15);
    # 14: calls recorded before the clock was synchronised (issue 16)
    assert len(MIGRATIONS) == 14
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == 14


def test_v1_database_upgrades_in_place_keeping_its_data(db_path: Path) -> None:
    call_id, call = make_v1_database(db_path)

    with Store.open(db_path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert store.load_config() == load_yaml(VALID_YAML)
        # Version 10 reads the line from the source the version 1 recorder wrote.
        assert store.recent_calls() == [
            call | NEW_CALL_COLUMNS | {"line": "provider"} | RECORD_STATE]
        (leg,) = store.legs_of(call_id)
        assert (leg["target"], leg["result"], leg["sip_status"]) == ("101", "answered", 200)


def test_upgraded_database_takes_new_calls_and_agent_statuses(db_path: Path) -> None:
    make_v1_database(db_path)

    with Store.open(db_path) as store:
        store.record_finished_calls([(v1_call(new_call_id(), outcome="abandoned"), [])])
        store.set_agent_status("101", "break", reason="lunch", at=2000.0, source="cli")

        assert len(store.recent_calls()) == 2
        assert store.agent_statuses()["101"]["status"] == "break"


def test_upgrade_adds_agent_status_tables(db_path: Path) -> None:
    make_v1_database(db_path)

    with Store.open(db_path) as store:
        assert {"agent_status", "agent_status_log"} <= set(store.db.table_names())
        assert store.agent_statuses() == {}


def test_calls_have_the_new_columns(store: Store) -> None:
    assert set(NEW_CALL_COLUMNS) <= set(store.db.table("calls").columns_dict)
    assert set(NEW_CALL_COLUMNS) <= set(CALL_COLUMNS)


def test_finished_call_without_new_keys_gets_defaults(store: Store) -> None:
    call = v1_call(new_call_id())
    del call["sip_call_id"]

    store.record_finished_calls([(call, [])])

    (row,) = store.recent_calls()
    assert row == call | NEW_CALL_COLUMNS | {"sip_call_id": ""} | RECORD_STATE


def test_finished_call_keeps_the_new_facts(store: Store) -> None:
    facts = {
        "strategy": "longest_idle",
        "waited_s": 12.5,
        "talk_s": 60.0,
        "target_call": True,
        "sale": True,
        "marked_by": "owner",
        "callback_state": None,
    }
    call = v1_call(new_call_id(), **facts)

    store.record_finished_calls([(call, [])])

    (row,) = store.recent_calls()
    assert {key: row[key] for key in facts} == facts | {"target_call": 1, "sale": 1}


@pytest.mark.parametrize(
    "outcome", ["abandoned", "voicemail", "callback", "forwarded", "blacklisted", "closed"]
)
def test_new_outcomes_are_accepted(store: Store, outcome: str) -> None:
    store.record_finished_calls([(v1_call(new_call_id(), outcome=outcome), [])])

    assert store.recent_calls()[0]["outcome"] == outcome


def test_unknown_callback_state_is_refused_and_nothing_is_written(store: Store) -> None:
    good = v1_call(new_call_id())
    bad = v1_call(new_call_id(), outcome="callback", callback_state="maybe")

    with pytest.raises(ValueError, match="callback_state"):
        store.record_finished_calls([(good, []), (bad, [])])

    assert store.recent_calls() == []


def test_recent_calls_can_be_limited_to_outcomes(store: Store) -> None:
    store.record_finished_calls([
        (v1_call("a", started_at=1.0), []),
        (v1_call("b", started_at=2.0, outcome="missed"), []),
        (v1_call("c", started_at=3.0, outcome="abandoned"), []),
    ])

    found = store.recent_calls(outcomes=["missed", "abandoned"])

    assert [call["id"] for call in found] == ["c", "b"]


def test_crm_owners_are_replaced_whole_and_bump_the_revision(store: Store) -> None:
    before = store.config_revision()
    store.replace_crm_owners({"79161234567": "101", "74951112233": "102"})
    store.replace_crm_owners({"79161234567": "103"})
    assert store.crm_owners() == {"79161234567": "103"}
    assert store.config_revision() == before + 2
