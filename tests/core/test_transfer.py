"""Blind transfer through the sans-IO gateway (issue 14, RFC 3515 REFER, RFC 5589): a phone in an
answered call sends REFER naming an extension, a department or an outside number; the box
answers 202, tells the referrer how it goes in NOTIFYs (message/sipfrag), rings the target for
the other party, and once the target answers re-INVITEs the transferee with the target's SDP.
One call, both members in its record, each member's figures their own."""

from __future__ import annotations

import itertools

from firmware.sip.message import Request, Response
from tests.core.network import (
    GATEWAY,
    RING_ALL_DID,
    Office,
    Peer,
    answer_with_sdp,
    authorised_call,
    config_with,
    office,
    request,
)

PROVIDER_SDP = (b"v=0\r\no=p 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
                b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
                b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
# Department 500 rings 103 alone and sends what it does not answer to 102.
WITH_500 = config_with([{"number": "500", "name": "Service", "strategy": "ring_all",
                         "ring_timeout_s": 15, "members": ["103"]}], [])
_cseq = itertools.count(10)


def phone_sdp(phone: Peer) -> bytes:
    host = phone.address.host
    return (f"v=0\r\no=ph 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\n").encode()


def answered_by(phone: Peer) -> Request:
    """`phone` answers its ringing INVITE with its SDP; the INVITE it answered."""
    invite = phone.ringing_invite()
    answer_with_sdp(phone, phone_sdp(phone))
    return invite


def in_dialog(phone: Peer, invite: Request, method: str,
              extra: list[tuple[str, str]] | None = None) -> Response:
    """A request from `phone` inside the dialog of the box's `invite` it answered; the final
    response the box gave."""
    entry = phone.incoming[invite.top_via.branch or ""]
    req = request(method, str(invite.contacts[0].uri), [
        ("Via", phone.via()),
        ("Max-Forwards", "70"),
        ("From", f"{invite.headers.get('To')};tag={entry.tag}"),
        ("To", invite.headers.get("From") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{next(_cseq)} {method}"),
        ("Contact", f"<sip:{phone.user}@{phone.address.host}:{phone.address.port}>"),
        *(extra or []),
    ])
    phone.send(req)
    finals = [r for r in phone.responses(method) if r.call_id == invite.call_id
              and r.cseq.seq == req.cseq.seq and r.status >= 200]
    assert finals, f"{method} unanswered"
    return finals[-1]


def refer(phone: Peer, invite: Request, target: str, **kw: list[tuple[str, str]]) -> Response:
    return in_dialog(phone, invite, "REFER",
                     [("Refer-To", f"<sip:{target}@{GATEWAY.host}>"), *kw.get("extra", [])])


def sipfrags(phone: Peer, invite: Request) -> list[str]:
    """The status lines of the NOTIFYs the box sent `phone` in the dialog of `invite`."""
    out = []
    for notify in phone.requests("NOTIFY"):
        if notify.call_id == invite.call_id:
            assert notify.headers.get("Event") == "refer"
            assert notify.headers.get("Content-Type") == "message/sipfrag;version=2.0"
            out.append(notify.body.decode().strip())
    return out


def provider_call_answered_by_101(o: Office) -> tuple[Request, Request]:
    """The provider calls department 200 with its SDP; 101 answers. (caller's INVITE, the
    INVITE 101 answered)"""
    caller = o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)
    o.net.advance(2.0)
    return caller, answered_by(o.phones["101"])


def reinvites(peer: Peer, call_id: str) -> list[Request]:
    return [r for r in peer.invites() if r.call_id == call_id]


def test_blind_transfer_to_an_extension_connects_the_caller_with_its_sdp() -> None:
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    o.net.advance(10.0)
    assert refer(o.phones["101"], leg, "103").status == 202
    assert sipfrags(o.phones["101"], leg) == ["SIP/2.0 100 Trying"]
    ring = o.phones["103"].ringing_invite()
    assert ring.from_.uri.user == o.provider.user  # 103 sees the customer's number
    assert ring.body == PROVIDER_SDP  # and is offered the customer's media
    o.net.advance(4.0)
    answered_by(o.phones["103"])
    assert sipfrags(o.phones["101"], leg) == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    # The customer is re-INVITEd with 103's SDP: its media goes to 103 from now on.
    reinvite, = reinvites(o.provider, caller.call_id)
    assert reinvite.body == phone_sdp(o.phones["103"])
    answer_with_sdp(o.provider, PROVIDER_SDP)
    assert [(c["state"], c["answered_by"]) for c in o.net.calls()] == [("answered", "103")]


def test_the_transferred_call_is_one_record_with_both_members_and_their_own_figures() -> None:
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    o.net.advance(10.0)
    refer(o.phones["101"], leg, "103")
    o.net.advance(4.0)
    target = answered_by(o.phones["103"])
    answer_with_sdp(o.provider, PROVIDER_SDP)
    assert in_dialog(o.phones["101"], leg, "BYE").status == 200  # the referrer leaves
    o.net.advance(30.0)
    in_dialog(o.phones["103"], target, "BYE")
    assert len(o.provider.requests("BYE")) == 1  # the customer is hung up on, once
    (row, legs), = o.rows
    assert (row["answered_by"], row["outcome"], row["end_cause"]) == (
        "103", "answered", "hangup by callee")
    assert row["answered_at"] == 2.0 and row["sip_call_id"] == caller.call_id
    assert {(leg_["target"], leg_["result"]) for leg_ in legs} == {
        ("101", "answered"), ("102", "cancelled"), ("103", "answered")}
    first = next(leg_ for leg_ in legs if leg_["target"] == "101")
    assert (first["answered_at"], first["ended_at"]) == (2.0, 12.0)
    agents = o.net.gateway.agents
    assert (agents.agent("101").talk_time_s, agents.agent("101").calls_answered) == (10.0, 1)
    assert (agents.agent("103").talk_time_s, agents.agent("103").calls_answered) == (30.0, 1)
    assert [agents.agent(e).calls_in_progress for e in ("101", "102", "103")] == [0, 0, 0]


def test_the_box_hangs_up_a_referrer_that_does_not_leave_after_the_final_notify() -> None:
    o = office()
    _, leg = provider_call_answered_by_101(o)
    refer(o.phones["101"], leg, "103")
    answered_by(o.phones["103"])
    assert len(o.phones["101"].requests("BYE")) == 0
    o.net.advance(3.0)
    assert len(o.phones["101"].requests("BYE")) == 1
    assert o.net.calls()[0]["state"] == "answered"  # the customer and 103 go on


def test_a_transfer_to_a_department_is_distributed_by_its_plan() -> None:
    o = office(config=WITH_500)
    caller, leg = provider_call_answered_by_101(o)
    assert refer(o.phones["101"], leg, "500").status == 202
    assert len(o.phones["103"].invites()) == 1
    answered_by(o.phones["103"])
    (call,) = o.net.calls()
    assert call["answered_by"] == "103"
    in_dialog(o.phones["101"], leg, "BYE")
    o.provider.bye(caller)
    (row, _), = o.rows
    assert (row["department"], row["answered_by"]) == ("500", "103")


def test_a_transfer_to_an_outside_number_goes_out_through_the_provider() -> None:
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    assert refer(o.phones["101"], leg, "+79990001122").status == 202
    out = [i for i in o.provider.invites() if i.uri.user == "+79990001122"]
    assert len(out) == 1 and out[0].body == PROVIDER_SDP
    assert out[0].from_.uri.user == o.provider.user
    assert o.net.channels_in_use()["trunk:provider"] == 2
    answered_by(o.provider)  # the outside number answers
    assert sipfrags(o.phones["101"], leg)[-1] == "SIP/2.0 200 OK"


def test_a_target_that_does_not_answer_fails_the_transfer_and_the_caller_is_hung_up() -> None:
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    refer(o.phones["101"], leg, "103")
    o.net.advance(61.0)  # an extension rings for 60 s
    assert len(o.phones["103"].requests("CANCEL")) == 1
    assert sipfrags(o.phones["101"], leg)[-1].startswith("SIP/2.0 480")
    assert len(o.provider.requests("BYE")) == 1
    (row, legs), = o.rows
    assert (row["outcome"], row["answered_by"]) == ("answered", "101")
    assert row["end_cause"] == "transfer to 103 failed: no answer"
    agent = o.net.gateway.agents.agent("101")
    assert (agent.calls_in_progress, agent.talk_time_s) == (0, 0.0)


def test_a_busy_target_is_told_to_the_referrer() -> None:
    o = office()
    _, leg = provider_call_answered_by_101(o)
    refer(o.phones["101"], leg, "103")
    o.phones["103"].decline_busy()
    assert sipfrags(o.phones["101"], leg)[-1] == "SIP/2.0 486 Busy Here"


def test_the_caller_hanging_up_while_the_target_rings_stops_the_ringing() -> None:
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    refer(o.phones["101"], leg, "103")
    o.provider.bye(caller)
    assert o.provider.final_statuses("BYE") == [200]
    assert len(o.phones["103"].requests("CANCEL")) == 1
    assert sipfrags(o.phones["101"], leg)[-1].startswith("SIP/2.0 487")
    (row, _), = o.rows
    assert row["outcome"] == "answered"


def test_a_phone_that_called_out_transfers_the_outside_party_to_a_colleague() -> None:
    o = office()
    invite, _ = authorised_call(o.phones["101"], "+79990001122", sdp=phone_sdp(o.phones["101"]))
    out = o.provider.invites()[-1]
    answer_with_sdp(o.provider, PROVIDER_SDP)
    # 101 (the caller's side) refers the outside party to 102, in its own INVITE's dialog.
    ok = next(r for r in o.phones["101"].responses() if r.status == 200)
    refer_req = request("REFER", str(ok.contacts[0].uri), [
        ("Via", o.phones["101"].via()), ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""), ("To", ok.headers.get("To") or ""),
        ("Call-ID", invite.call_id), ("CSeq", "5 REFER"),
        ("Refer-To", f"<sip:102@{GATEWAY.host}>")])
    o.phones["101"].send(refer_req)
    assert o.phones["101"].final_statuses("REFER") == [202]
    ring = o.phones["102"].ringing_invite()
    assert ring.from_.uri.user == "+79990001122"  # 102 sees the outside number
    assert ring.body == PROVIDER_SDP
    answered_by(o.phones["102"])
    reinvite = [r for r in o.provider.invites() if r.call_id == out.call_id][-1]
    assert reinvite.body == phone_sdp(o.phones["102"])
    assert o.net.calls()[0]["answered_by"] == "102"


def test_refer_errors_leave_the_call_as_it_was() -> None:
    o = office()
    _, leg = provider_call_answered_by_101(o)
    phone = o.phones["101"]
    assert refer(phone, leg, "nobody").status == 404
    assert refer(phone, leg, "*50").status == 404  # a feature code is no target
    assert in_dialog(phone, leg, "REFER").status == 400  # no Refer-To
    assert o.net.calls()[0]["state"] == "answered"
    assert o.phones["103"].invites() == []


def test_allow_lists_refer() -> None:
    o = office()
    _, leg = provider_call_answered_by_101(o)
    ok = next(r for r in o.provider.responses() if r.status == 200)
    assert "REFER" in (ok.headers.get("Allow") or "")


def test_a_transferred_call_can_be_transferred_again() -> None:
    """Reception (101) passes the customer to 103, who passes it on to 102: each time the
    target is rung with the customer's number and SDP, and the customer is re-INVITEd."""
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    assert refer(o.phones["101"], leg, "103").status == 202
    second = answered_by(o.phones["103"])
    answer_with_sdp(o.provider, PROVIDER_SDP)
    in_dialog(o.phones["101"], leg, "BYE")
    o.net.advance(5.0)
    assert refer(o.phones["103"], second, "102").status == 202
    ring = o.phones["102"].ringing_invite()
    assert ring.from_.uri.user == o.provider.user and ring.body == PROVIDER_SDP
    answered_by(o.phones["102"])
    assert sipfrags(o.phones["103"], second)[-1] == "SIP/2.0 200 OK"
    reinvite = reinvites(o.provider, caller.call_id)[-1]
    assert reinvite.body == phone_sdp(o.phones["102"])
    answer_with_sdp(o.provider, PROVIDER_SDP)
    o.provider.bye(caller)
    (row, legs), = o.rows
    assert row["answered_by"] == "102"
    assert [leg_["target"] for leg_ in legs if leg_["result"] == "answered"] == [
        "101", "103", "102"]
    agents = o.net.gateway.agents
    assert [agents.agent(e).calls_in_progress for e in ("101", "102", "103")] == [0, 0, 0]
