"""What survives a crash (issue 16): calls written when answered and marked cut off at the next
start, finished calls completing the row written at the answer, registrations kept with their
expiry (the registrar's side: test_registrations_kept.py), and the daemon's recorder writing at
once and waiting out a database it cannot write."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from firmware import daemon as daemon_module
from firmware.core.events import LineStateChanged, SmsArrived
from firmware.daemon import SqliteRecorder
from firmware.store import Store, new_call_id
from firmware.store.durable import (
    CUT_OFF_CAUSE,
    live_registrations,
    mark_cut_off_calls,
    record_answered_calls,
    save_registrations,
)
from firmware.voicemail import VoicemailMessage
from tests.store.test_call_records import call_row, leg_row

WALL_OFFSET_S = 1_700_000_000.0


def answered_row(call_id: str) -> dict[str, Any]:
    return call_row(call_id, answered_at=1004.0, answered_by="101", ended_at=None,
                    end_cause=None, outcome="answered")


def test_a_call_written_when_answered_is_in_progress(store: Store) -> None:
    call_id = new_call_id()
    record_answered_calls(store, [(answered_row(call_id), [leg_row(call_id, "101")])])

    (row,) = store.recent_calls()
    assert (row["id"], row["record_state"], row["ended_at"]) == (call_id, "in_progress", None)
    assert [leg["target"] for leg in store.legs_of(call_id)] == ["101"]


def test_the_finished_record_completes_the_answered_row_and_keeps_its_marks(
        store: Store) -> None:
    call_id = new_call_id()
    record_answered_calls(store, [(answered_row(call_id), [leg_row(call_id, "101")])])
    store.mark_call(call_id, sale=True, by="boss")
    store.record_finished_calls([(
        answered_row(call_id) | {"ended_at": 1060.0, "end_cause": "caller hung up"},
        [leg_row(call_id, "101", result="answered"), leg_row(call_id, "102",
                                                              result="cancelled")])])

    (row,) = store.recent_calls()
    assert (row["record_state"], row["ended_at"], row["sale"], row["target_call"]) == (
        "ended", 1060.0, 1, 1)
    assert [leg["result"] for leg in store.legs_of(call_id)] == ["answered", "cancelled"]


def test_an_answer_written_after_the_end_does_not_undo_it(store: Store) -> None:
    call_id = new_call_id()
    store.record_finished_calls([(answered_row(call_id) | {"ended_at": 1060.0}, [])])
    record_answered_calls(store, [(answered_row(call_id), [leg_row(call_id, "101")])])

    (row,) = store.recent_calls()
    assert (row["record_state"], row["ended_at"]) == ("ended", 1060.0)
    assert store.legs_of(call_id) == []


def test_calls_left_in_progress_are_marked_cut_off_and_still_count_as_answered(
        store: Store) -> None:
    open_id, done_id = new_call_id(), new_call_id()
    record_answered_calls(store, [(answered_row(open_id), [])])
    store.record_finished_calls([(answered_row(done_id) | {"ended_at": 1060.0}, [])])

    assert mark_cut_off_calls(store) == 1
    assert mark_cut_off_calls(store) == 0
    rows = {row["id"]: row for row in store.recent_calls()}
    assert rows[open_id]["record_state"] == "cut_off"
    assert rows[open_id]["outcome"] == "answered"
    assert rows[open_id]["end_cause"] == CUT_OFF_CAUSE
    assert rows[done_id]["record_state"] == "ended"


def test_registrations_are_kept_replaced_per_extension_and_dropped_once_expired(
        store: Store) -> None:
    row = {"extension": "101", "contact_text": "sip:101@10.0.0.11:5062",
           "contact": "<sip:101@10.0.0.11:5062>", "expires_at": 2000.0, "call_id": "r1",
           "cseq": 3, "source_transport": "udp", "source_host": "10.0.0.11",
           "source_port": 5062, "user_agent": "Phone", "registered_at": 1000.0}
    other = row | {"extension": "102", "contact_text": "sip:102@10.0.0.12",
                   "contact": "<sip:102@10.0.0.12>", "expires_at": 1500.0}
    save_registrations(store, {"101": [row], "102": [other]})

    assert [r["extension"] for r in live_registrations(store, 1400.0)] == ["101", "102"]
    assert live_registrations(store, 1600.0) == [row]
    save_registrations(store, {"101": []})
    assert live_registrations(store, 1600.0) == []


def wait_until(predicate: Any, timeout_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_the_recorder_writes_an_answered_call_at_once_and_says_when(db_path: Path) -> None:
    Store.open(db_path).close()
    recorder = SqliteRecorder(db_path, wall_offset_s=WALL_OFFSET_S)
    committed: list[float] = []
    call_id = new_call_id()
    try:
        started = time.monotonic()
        recorder.call_answered(answered_row(call_id), [],
                               done=lambda: committed.append(time.monotonic() - started))
        wait_until(lambda: committed)
        with Store.open(db_path) as store:
            (row,) = store.recent_calls()
        assert row["record_state"] == "in_progress"
        assert row["answered_at"] == 1004.0 + WALL_OFFSET_S
    finally:
        recorder.close()
    assert committed[0] < 1.0


def test_records_that_come_together_are_committed_together(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Group commit: answers arriving a few milliseconds apart share a transaction (each
    commit is a WAL write and an fsync), and every one is still told when it is on disk."""
    monkeypatch.setattr(daemon_module, "GROUP_COMMIT_WINDOW_S", 0.2)  # wide: a loaded machine
    Store.open(db_path).close()
    recorder = SqliteRecorder(db_path, wall_offset_s=WALL_OFFSET_S)
    writes: list[int] = []
    write = recorder._write

    def counted(store: Store, batch: list[Any]) -> list[Any]:
        writes.append(len(batch))
        return write(store, batch)

    monkeypatch.setattr(recorder, "_write", counted)
    committed: list[str] = []
    calls = [new_call_id() for _ in range(10)]
    try:
        for call_id in calls:
            recorder.call_answered(answered_row(call_id), [],
                                   done=lambda call_id=call_id: committed.append(call_id))
            time.sleep(0.005)
        wait_until(lambda: len(committed) == len(calls))
        with Store.open(db_path) as store:
            assert {row["id"] for row in store.recent_calls()} == set(calls)
    finally:
        recorder.close()
    assert sorted(committed) == sorted(calls)
    assert writes[0] == len(calls), writes  # the ten within the window: one write


def test_anything_but_a_call_record_is_written_without_waiting_for_company(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only call records gather for a group commit: an SMS (or a status, a voicemail message)
    goes at once, and takes the calls that gathered with it."""
    monkeypatch.setattr(daemon_module, "GROUP_COMMIT_WINDOW_S", 60.0)
    Store.open(db_path).close()
    recorder = SqliteRecorder(db_path, wall_offset_s=WALL_OFFSET_S)
    committed: list[str] = []
    call_id = new_call_id()
    try:
        recorder.call_answered(answered_row(call_id), [],
                               done=lambda: committed.append(call_id))
        recorder.sms(SmsArrived(line="gsm1", sender="+7999000000", text="перезвоните",
                                received_at=2000.0))
        wait_until(lambda: committed, timeout_s=10.0)  # far sooner than the window's 60 s
        with Store.open(db_path) as store:
            assert [row["id"] for row in store.recent_calls()] == [call_id]
    finally:
        recorder.close()


def test_records_wait_in_memory_while_the_database_cannot_be_written(db_path: Path) -> None:
    Store.open(db_path).close()
    recorder = SqliteRecorder(db_path, wall_offset_s=0.0)
    blocker = Store.open(db_path)
    try:
        # The web UI (or anyone) holds the write lock past the busy timeout.
        blocker.db.conn.execute("BEGIN IMMEDIATE")
        recorder.record(call_row(new_call_id()), [])
        wait_until(lambda: recorder.problem, timeout_s=10.0)
        assert recorder.waiting == 1
        blocker.db.conn.execute("ROLLBACK")
        wait_until(lambda: not recorder.problem, timeout_s=10.0)
        with Store.open(db_path) as store:
            assert len(store.recent_calls()) == 1
        assert recorder.waiting == 0
    finally:
        blocker.close()
        recorder.close()


def test_past_the_bound_the_oldest_calls_go_and_sms_and_voicemail_stay(
        db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A disk full for long: the records waiting in memory are bounded by dropping the oldest
    call records (the bulk), never a received SMS or a voicemail message for them — though
    those waited longer than the newer calls; SMS and voicemail go only past their own bound,
    the oldest first, and each kind dropped is logged with its count."""
    monkeypatch.setattr(daemon_module, "MAX_WAITING_RECORDS", 12)
    monkeypatch.setattr(daemon_module, "MAX_WAITING_OF_KIND", {"sms": 3, "voicemail": 2})
    monkeypatch.setattr(daemon_module, "RETRY_INTERVAL_S", 0.5)
    Store.open(db_path).close()
    recorder = SqliteRecorder(db_path, wall_offset_s=0.0)
    blocker = Store.open(db_path)
    calls = [new_call_id() for _ in range(20)]
    try:
        blocker.db.conn.execute("BEGIN IMMEDIATE")  # nothing can be written meanwhile
        for number, call_id in enumerate(calls[:4]):
            recorder.record(call_row(call_id, started_at=1000.0 + number), [])
        for number in range(4):  # one more than their bound
            recorder.sms(SmsArrived(line="gsm1", sender="+7999000000", text=f"text {number}",
                                    received_at=2000.0 + number))
        for number in range(2):
            recorder.voicemail(VoicemailMessage(
                call_id=calls[number], mailbox="200", caller="+7999", started_at=3000.0,
                duration_s=0.1, pcm=b"\x00\x00" * 800), 3000.0 + number)
        recorder.line_event(LineStateChanged(name="gsm1", kind="gsm", state="down",
                                             reason="no signal", at=4000.0))
        # 4 calls + 3 SMS (the oldest of 4 dropped) + 2 voicemails + 1 line event
        wait_until(lambda: recorder.waiting == 10 and recorder.dropped == 1, timeout_s=30.0)
        for number, call_id in enumerate(calls[4:]):  # newer calls, behind them in memory
            recorder.record(call_row(call_id, started_at=1100.0 + number), [])
        # 26 wait: the 14 oldest calls go (the 4 first, 10 of the new)
        wait_until(lambda: recorder.waiting == 12 and recorder.dropped == 15, timeout_s=30.0)
        blocker.db.conn.execute("ROLLBACK")
        wait_until(lambda: recorder.waiting == 0 and not recorder.problem, timeout_s=30.0)
    finally:
        blocker.close()
        recorder.close()
    with Store.open(db_path) as store:
        assert {row["id"] for row in store.recent_calls()} == set(calls[-6:])
        assert sorted(row["text"] for row in store.sms()) == ["text 1", "text 2", "text 3"]
        assert len(store.voicemails()) == 2
        assert len(store.line_events()) == 1
    assert recorder.dropped_by_kind == {"call": 14, "sms": 1}
    said = [r.getMessage() for r in caplog.records if "dropped from memory" in r.getMessage()]
    assert any("the oldest 1 SMS" in line for line in said), said
    assert sum("call records" in line for line in said) == 1, said  # said once
