"""Queue callback through the sans-IO gateway: a waiting caller presses the callback key (SIP
INFO DTMF in the early dialog), keeps their place, and when a member is free the box calls the
member first, then the caller (RFC 3725 flow I), retries a caller who does not answer, and lets an
unserved request expire. Time is stepped; the phones and the provider are scripted peers."""

from __future__ import annotations

import pytest

from firmware.sip.message import Request
from firmware.sip_legs import dtmf_key
from firmware.store.config import ConfigError, parse_config
from tests.core.network import (
    CALLBACK,
    CALLBACK_DID,
    CUSTOMER_RING_S,
    EXPIRE_S,
    GATEWAY,
    RETRY_S,
    Office,
    Peer,
    answer_with_sdp,
    config_with,
    office,
    press,
    request,
    waiting_with_request,
)

CUSTOMER = "79161234567"  # the provider peer's caller number
MEMBER_SDP = b"v=0\r\no=101 1 1 IN IP4 10.0.0.11\r\ns=-\r\nc=IN IP4 10.0.0.11\r\n" \
             b"t=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\na=sendrecv\r\n"
CUSTOMER_SDP = b"v=0\r\no=c 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\n" \
               b"t=0 0\r\nm=audio 50000 RTP/AVP 0\r\na=sendrecv\r\n"


def final_of(peer: Peer, invite: Request) -> int | None:
    finals = [r.status for r in peer.responses()
              if r.call_id == invite.call_id and r.status >= 200]
    return finals[-1] if finals else None


def back_on_line(o: Office) -> None:
    o.net.gateway.set_agent_status("101", "on_line", source="cli", now=o.net.now)
    o.net.pump()


def queue_entries(o: Office) -> list[dict[str, object]]:
    queues = o.net.status()["queues"]
    assert isinstance(queues, list)
    return [entry for q in queues for entry in q["waiting"]]


def invites_from_gateway(peer: Peer) -> list[Request]:
    return peer.invites()


def test_dtmf_keys_from_info_bodies() -> None:
    def info(content_type: str, body: bytes) -> Request:
        return request("INFO", "sip:x@y", [("Content-Type", content_type)], body)

    assert dtmf_key(info("application/dtmf-relay", b"Signal=1\r\nDuration=160\r\n")) == "1"
    assert dtmf_key(info("application/dtmf-relay", b"Signal= #\r\n")) == "#"
    assert dtmf_key(info("application/dtmf", b"*")) == "*"
    assert dtmf_key(info("application/dtmf-relay", b"Duration=160\r\n")) is None
    assert dtmf_key(info("application/dtmf-relay", b"Signal=12\r\n")) is None
    assert dtmf_key(info("text/plain", b"1")) is None


def test_pressing_the_key_ends_the_wait_and_records_a_requested_callback() -> None:
    o, invite = waiting_with_request()
    assert final_of(o.provider, invite) == 480
    row, _ = o.rows[-1]
    assert row["outcome"] == "callback" and row["callback_state"] == "requested"
    assert [e["callback"] for e in queue_entries(o)] == [True]
    assert o.net.channels_in_use()[f"number:{CALLBACK_DID}"] == 0  # the line is free again


def test_another_key_does_nothing() -> None:
    o = office(config=CALLBACK)
    o.net.gateway.set_agent_status("101", "break", source="cli", now=o.net.now)
    invite = o.provider.call(CALLBACK_DID)
    assert press(o.provider, invite, "5") == 200
    assert press(o.provider, invite, "1", content_type="text/plain") == 200
    assert final_of(o.provider, invite) is None
    assert [e["callback"] for e in queue_entries(o)] == [False]


def test_a_department_without_callback_ignores_the_key() -> None:
    config = config_with(
        [{"number": "800", "name": "Service", "strategy": "ring_all", "ring_timeout_s": 15,
          "members": ["101"], "queue": {"max_wait_s": 120}}],
        [{"number": CALLBACK_DID, "trunk": "provider", "channels": 5, "destination": "800"}],
    )
    o = office(config=config)
    o.net.gateway.set_agent_status("101", "break", source="cli", now=o.net.now)
    invite = o.provider.call(CALLBACK_DID)
    assert press(o.provider, invite, "1") == 200
    assert final_of(o.provider, invite) is None


def test_member_is_called_first_without_sdp_then_the_customer_with_the_members_offer() -> None:
    o, _ = waiting_with_request()
    back_on_line(o)
    member_invite = o.phones["101"].invites()[-1]
    assert member_invite.body == b"" and member_invite.content_type is None
    assert f"Callback {CUSTOMER}" in (member_invite.headers.get("From") or "")
    assert len(o.provider.invites()) == 0  # the customer is not called before the member answers

    answer_with_sdp(o.phones["101"], MEMBER_SDP)
    customer_invite = o.provider.invites()[-1]
    assert customer_invite.uri.user_unescaped == CUSTOMER
    assert customer_invite.body == MEMBER_SDP
    assert customer_invite.from_.uri.user_unescaped == CALLBACK_DID
    assert o.phones["101"].requests("ACK") == []  # held until the customer answers

    answer_with_sdp(o.provider, CUSTOMER_SDP)
    member_acks = o.phones["101"].requests("ACK")
    assert len(member_acks) == 1 and member_acks[0].body == CUSTOMER_SDP
    assert len(o.provider.requests("ACK")) == 1
    calls = o.net.calls()
    assert [(c["direction"], c["state"], c["answered_by"]) for c in calls] == [
        ("callback", "answered", "101")
    ]


def test_a_connected_callback_is_an_ordinary_call_and_is_recorded_done() -> None:
    o, invite = waiting_with_request()
    origin_id = o.rows[-1][0]["id"]
    back_on_line(o)
    answer_with_sdp(o.phones["101"], MEMBER_SDP)
    answer_with_sdp(o.provider, CUSTOMER_SDP)
    o.net.advance(30.0)
    o.provider.hang_up()  # the customer hangs up: the member gets the BYE
    assert len(o.phones["101"].requests("BYE")) == 1
    row, legs = o.rows[-1]
    assert row["direction"] == "callback" and row["outcome"] == "answered"
    assert row["answered_by"] == "101" and row["talk_s"] == pytest.approx(30.0)
    assert [leg["target"] for leg in legs] == ["101", CUSTOMER]
    assert o.net.recorder.callback_states == {origin_id: "done"}
    assert o.net.channels_in_use()["trunk:provider"] == 0


def test_the_callback_keeps_its_place_ahead_of_later_callers() -> None:
    o, _ = waiting_with_request()
    o.net.advance(2.0)
    later = o.provider.call(CALLBACK_DID)  # arrives after the callback was asked for
    assert [e["callback"] for e in queue_entries(o)] == [True, False]
    back_on_line(o)
    offered = o.phones["101"].invites()
    assert len(offered) == 1 and "Callback" in (offered[0].headers.get("From") or "")
    assert final_of(o.provider, later) is None  # still waiting, now first in line
    assert [e["callback"] for e in queue_entries(o)] == [False]


def test_a_customer_who_does_not_answer_is_tried_again_then_the_request_fails() -> None:
    o, _ = waiting_with_request()
    origin_id = o.rows[-1][0]["id"]
    back_on_line(o)
    answer_with_sdp(o.phones["101"], MEMBER_SDP)
    o.net.advance(CUSTOMER_RING_S + 0.1)
    # The customer's phone is cancelled; the member's 2xx is acknowledged with every stream
    # declined (port 0), then the member is hung up on.
    assert len(o.provider.requests("CANCEL")) == 1
    ack = o.phones["101"].requests("ACK")[-1]
    assert b"m=audio 0 RTP/AVP 0 8" in ack.body
    assert len(o.phones["101"].requests("BYE")) == 1
    row, _ = o.rows[-1]
    assert row["direction"] == "callback" and row["outcome"] == "missed"

    o.net.advance(RETRY_S)  # the second attempt: the member first again
    assert len(o.phones["101"].invites()) == 2
    answer_with_sdp(o.phones["101"], MEMBER_SDP)
    assert len(o.provider.invites()) == 2
    o.provider.reply(o.provider.ringing_invite(), 486)  # busy this time
    assert len(o.phones["101"].requests("BYE")) == 2
    assert o.net.recorder.callback_states == {origin_id: "failed"}  # attempts: 2
    o.net.advance(RETRY_S * 3)
    assert len(o.phones["101"].invites()) == 2  # no third attempt
    assert o.net.channels_in_use()["trunk:provider"] == 0


def test_an_unserved_request_expires() -> None:
    o, _ = waiting_with_request()
    origin_id = o.rows[-1][0]["id"]
    o.net.advance(EXPIRE_S - 1.0)
    assert len(queue_entries(o)) == 1
    o.net.advance(2.0)
    assert queue_entries(o) == []
    assert o.net.recorder.callback_states == {origin_id: "expired"}
    # What is left is the box's own call to apologise (tests/core/test_voicemail.py).
    [apology] = o.net.calls()
    assert apology["direction"] == "callback" and apology["answered_by"] is None
    assert len(o.provider.invites()) == 1
    back_on_line(o)
    assert o.phones["101"].invites() == []


def test_a_member_who_does_not_answer_leaves_the_request_in_its_place() -> None:
    o, _ = waiting_with_request()
    back_on_line(o)
    assert len(o.phones["101"].invites()) == 1
    o.net.advance(15.1)  # the department's ring timeout
    assert [e["callback"] for e in queue_entries(o)] == [True]
    o.net.advance(5.0)  # the queue's retry
    assert len(o.phones["101"].invites()) == 2


def test_the_caller_may_ask_while_members_ring() -> None:
    o = office(config=CALLBACK)
    invite = o.provider.call(CALLBACK_DID)  # 101 is on line: rings at once
    assert len(o.phones["101"].invites()) == 1
    assert press(o.provider, invite, "1") == 200
    assert final_of(o.provider, invite) == 480
    assert len(o.phones["101"].requests("CANCEL")) == 1
    # 101 is free again, so the callback is offered straight away.
    assert len(o.phones["101"].invites()) == 2


def test_a_bye_in_the_early_dialog_ends_the_wait() -> None:
    o = office(config=CALLBACK)
    o.net.gateway.set_agent_status("101", "break", source="cli", now=o.net.now)
    invite = o.provider.call(CALLBACK_DID)
    ringing = [r for r in o.provider.responses() if r.status == 180][-1]
    o.provider.send(request("BYE", f"sip:linebox@{GATEWAY.host}", [
        ("Via", o.provider.via()), ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""), ("To", ringing.headers.get("To") or ""),
        ("Call-ID", invite.call_id), ("CSeq", "2 BYE"),
    ]))
    assert o.provider.final_statuses("BYE") == [200]
    assert final_of(o.provider, invite) == 487
    assert o.rows[-1][0]["outcome"] == "abandoned"


@pytest.mark.parametrize(("callback", "key"), [
    ({"key": "12"}, "key"),
    ({"key": 1}, "key"),
    ({"customer_ring_s": 30}, "customer_ring_s"),
    ({"attempts": 0}, "attempts"),
    ({"sms": True}, "sms"),
])
def test_bad_callback_settings_are_refused_naming_the_key(
    callback: dict[str, object], key: str
) -> None:
    config = config_with(
        [{"number": "800", "name": "Service", "strategy": "ring_all", "ring_timeout_s": 15,
          "members": ["101"],
          "queue": {"callback": callback}}], [],
    )
    with pytest.raises(ConfigError, match=rf"queue\.callback\.{key}"):
        parse_config(config)


# --- requests outlive a restart -------------------------------------------------------------

def test_a_pending_request_is_kept_until_its_state_is_final() -> None:
    o, _ = waiting_with_request()
    origin_id = o.rows[-1][0]["id"]
    [saved] = o.net.recorder.pending_callbacks.values()
    assert (saved["origin_call_id"], saved["department"], saved["customer"], saved["trunk"]) == (
        origin_id, "800", CUSTOMER, "provider")
    o.net.advance(EXPIRE_S + 1.0)
    assert o.net.recorder.pending_callbacks == {}


def restarted_with(o: Office) -> Office:
    """A new gateway (a restarted daemon) given what the old one saved; 50 s later."""
    saved = list(o.net.recorder.pending_callbacks.values())
    fresh = office(config=CALLBACK)
    fresh.net.now = o.net.now + 50.0
    fresh.net.gateway.set_agent_status("101", "break", source="cli", now=fresh.net.now)
    assert fresh.net.gateway.restore_callbacks(saved, fresh.net.now) == len(saved)
    fresh.net.pump()
    return fresh


def test_a_restart_puts_the_request_back_in_its_queue() -> None:
    o, _ = waiting_with_request()
    fresh = restarted_with(o)
    assert [(e["caller"], e["callback"]) for e in queue_entries(fresh)] == [(CUSTOMER, True)]
    back_on_line(fresh)
    answer_with_sdp(fresh.phones["101"], MEMBER_SDP)
    customer_invite = fresh.provider.ringing_invite()
    assert customer_invite.uri.user == CUSTOMER  # type: ignore[union-attr]
    assert fresh.net.recorder.pending_callbacks != {}  # until the customer answers


def test_a_restored_request_expires_when_its_saved_wait_runs_out() -> None:
    o, _ = waiting_with_request()
    origin_id = o.rows[-1][0]["id"]
    fresh = restarted_with(o)
    fresh.net.run_until(EXPIRE_S - 0.01)
    assert len(queue_entries(fresh)) == 1 and fresh.provider.invites() == []
    fresh.net.run_until(EXPIRE_S)
    assert queue_entries(fresh) == []
    assert fresh.net.recorder.callback_states == {origin_id: "expired"}
    assert len(fresh.provider.invites()) == 1  # the apology call


def test_a_request_that_expired_during_the_restart_expires_at_once() -> None:
    o, _ = waiting_with_request()
    origin_id = o.rows[-1][0]["id"]
    saved = list(o.net.recorder.pending_callbacks.values())
    fresh = office(config=CALLBACK)
    fresh.net.now = o.net.now + EXPIRE_S + 10.0
    fresh.net.gateway.restore_callbacks(saved, fresh.net.now)
    fresh.net.pump()
    assert queue_entries(fresh) == []
    assert fresh.net.recorder.callback_states == {origin_id: "expired"}
    assert len(fresh.provider.invites()) == 1  # the apology call
