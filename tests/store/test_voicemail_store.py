"""Schema version 5: voicemail messages and mailbox greetings, kept in the database."""

from __future__ import annotations

import pytest

from firmware.media import tones
from firmware.media.audio import wav_bytes
from firmware.store import RecordNotFoundError, Store


def add(store: Store, mailbox: str = "200", at: float = 1000.0) -> int:
    return store.add_voicemail(call_id="c1", mailbox=mailbox, caller="79161234567",
                               left_at=at, duration_s=0.5, audio=wav_bytes(tones.beep()))


def test_a_message_is_listed_newest_first_without_its_audio(store: Store) -> None:
    first = add(store, at=1000.0)
    second = add(store, mailbox="101", at=2000.0)
    listed = store.voicemails()
    assert [m["id"] for m in listed] == [second, first]
    assert "audio" not in listed[0] and listed[0]["heard"] == 0
    assert [m["id"] for m in store.voicemails("200")] == [first]
    assert store.voicemail_audio(first) == wav_bytes(tones.beep())


def test_a_message_can_be_marked_heard_and_deleted(store: Store) -> None:
    message = add(store)
    store.mark_voicemail_heard(message)
    assert store.voicemails()[0]["heard"] == 1
    store.delete_voicemail(message)
    assert store.voicemails() == []
    with pytest.raises(RecordNotFoundError):
        store.voicemail_audio(message)
    with pytest.raises(RecordNotFoundError):
        store.delete_voicemail(message)


def test_a_greeting_is_replaced_and_removed(store: Store) -> None:
    assert store.greeting("200") is None
    store.set_greeting("200", b"RIFF1", duration_s=1.0, at=5.0)
    store.set_greeting("200", b"RIFF2", duration_s=2.0, at=6.0)
    assert store.greeting("200") == b"RIFF2"
    assert store.greetings() == {"200": {"duration_s": 2.0, "uploaded_at": 6.0}}
    store.set_greeting("200", None)
    assert store.greeting("200") is None


def test_callback_requests_are_kept_updated_and_ended_by_a_final_state(store: Store) -> None:
    request = {"origin_call_id": "c9", "department": "200", "customer": "79161234567",
               "trunk": "provider", "dialed": "74951234567", "number": "74951234567",
               "vip": 0, "entered_at": 1000.0, "expires_at": 1300.0, "attempt": 1}
    store.save_callback_request(request)
    store.save_callback_request({**request, "attempt": 2})
    [saved] = store.pending_callback_requests()
    assert saved["attempt"] == 2 and saved["trunk"] == "provider"
    store.record_finished_calls([({"id": "c9", "started_at": 1000.0, "direction": "inbound",
                                    "source": "trunk:provider", "caller": "79161234567",
                                    "dialed": "74951234567", "outcome": "callback",
                                    "callback_state": "requested"}, [])],
                                callback_events=[("state", "c9", "requested")])
    assert len(store.pending_callback_requests()) == 1  # not a final state
    store.record_finished_calls([], callback_events=[("state", "c9", "done")])
    assert store.pending_callback_requests() == []
    assert store.recent_calls()[0]["callback_state"] == "done"


def test_one_message_and_the_counts_per_mailbox(store: Store) -> None:
    first = add(store, mailbox="200")
    add(store, mailbox="200")
    add(store, mailbox="101")
    store.mark_voicemail_heard(first)
    message = store.voicemail(first)
    assert message is not None and (message["mailbox"], message["heard"]) == ("200", 1)
    assert "audio" not in message and store.voicemail(999) is None
    assert store.voicemail_counts() == {"200": (2, 1), "101": (1, 1)}
