"""Attended transfer through the sans-IO gateway (issue 14, RFC 5589 §7, RFC 3515 REFER with
an embedded RFC 3891 Replaces): the provider's caller talks to 101, 101 consults 103 in a
second call, then REFERs the caller with Refer-To: <103?Replaces=the consultation>. The box
joins the caller and 103 through a bridge of its own, hangs the consultation up on 101, tells
101 the progress in NOTIFYs and hangs up 101's first dialog too. One record of the customer's
call with both members; each member's figures their own."""

from __future__ import annotations

from urllib.parse import quote

from firmware.media import sdp
from firmware.sip.message import Request, Response
from firmware.sip.transaction import Address
from tests.core.network import (
    GATEWAY,
    PHONE_ADDRESSES,
    Office,
    Peer,
    authorised_call,
    office,
    request,
)
from tests.core.test_hold import box_reinvite, heard, phone_reinvite, rtp
from tests.core.test_transfer import (
    PROVIDER_SDP,
    answered_by,
    in_dialog,
    phone_sdp,
    provider_call_answered_by_101,
    sipfrags,
)

PROVIDER_RTP = ("127.0.0.2", 40000)
PHONE_103_RTP = (PHONE_ADDRESSES["103"].host, 30000)

def consultation(o: Office, target: str = "103", consulting: str = "101"
                 ) -> tuple[Request, Response]:
    """`consulting` calls `target`, which answers: the consultation's INVITE (as the
    consulting phone sent it) and the box's 200 to it."""
    phone = o.phones[consulting]
    invite, _ = authorised_call(phone, target, sdp=phone_sdp(phone))
    answered_by(o.phones[target])
    ok = [r for r in phone.responses() if r.call_id == invite.call_id and r.status == 200][-1]
    return invite, ok

def replaces(invite: Request, ok: Response, *, early_only: bool = False) -> str:
    """The Refer-To of an attended transfer to the consultation (RFC 3891 §6.1, escaped as
    a URI header, RFC 3261 §19.1.1)."""
    value = f"{invite.call_id};to-tag={ok.to.tag};from-tag={invite.from_.tag}"
    if early_only:
        value += ";early-only"
    return f"<sip:103@{GATEWAY.host}?Replaces={quote(value, safe='')}>"

def byes_in(peer_requests: list[Request], call_id: str) -> int:
    return len([r for r in peer_requests if r.call_id == call_id])

def box_ports(reinvite: Request) -> int:
    return sdp.SessionDescription.parse(reinvite.body).media[0].port

def test_an_attended_transfer_joins_the_caller_and_the_consulted_colleague() -> None:
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    o.net.advance(10.0)
    consult, ok = consultation(o)
    o.net.advance(5.0)
    reply = in_dialog(o.phones["101"], leg, "REFER", [("Refer-To", replaces(consult, ok))])
    assert reply.status == 202
    assert sipfrags(o.phones["101"], leg) == ["SIP/2.0 100 Trying"]
    # The consultation is over for 101 (the box speaks for 103, RFC 5589 §7.1).
    assert byes_in(o.phones["101"].requests("BYE"), consult.call_id) == 1
    # The caller and 103 are each re-INVITEd to a port of the box, and answer.
    to_caller = box_reinvite(o.provider, PROVIDER_SDP)
    to_target = box_reinvite(o.phones["103"], phone_sdp(o.phones["103"]))
    assert to_caller.call_id == caller.call_id and to_target.to.tag is not None
    assert sdp.SessionDescription.parse(to_target.body).connection == GATEWAY.host
    # 103 is told whom it talks to now: the customer (RFC 3325 P-Asserted-Identity).
    assert to_target.headers.get("P-Asserted-Identity") == (
        f"<sip:{o.provider.user}@{GATEWAY.host}>")
    assert sipfrags(o.phones["101"], leg) == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    # Their audio flows through the box, each way.
    caller_port, target_port = box_ports(to_caller), box_ports(to_target)
    o.net.rtp_to_send()
    o.net.gateway.receive_rtp(caller_port, rtp(0, 5), o.net.now, PROVIDER_RTP)
    [(port, packet)] = heard(o, PHONE_103_RTP)
    assert port == target_port and packet.sequence == 5
    o.net.gateway.receive_rtp(target_port, rtp(0, 6), o.net.now, PHONE_103_RTP)
    [(port, packet)] = heard(o, PROVIDER_RTP)
    assert port == caller_port and packet.sequence == 6
    # 101 is hung up in the first dialog too when it does not leave by itself.
    o.net.advance(3.0)
    assert byes_in(o.phones["101"].requests("BYE"), leg.call_id) == 1
    [call] = o.net.calls()
    assert (call["state"], call["answered_by"]) == ("answered", "103")

def test_the_transferred_call_is_one_record_with_both_members_and_their_figures() -> None:
    o = office()
    caller, leg = provider_call_answered_by_101(o)  # answered at 2 s
    o.net.advance(10.0)
    consult, ok = consultation(o)  # at 12 s
    o.net.advance(5.0)
    in_dialog(o.phones["101"], leg, "REFER", [("Refer-To", replaces(consult, ok))])  # 17 s
    box_reinvite(o.provider, PROVIDER_SDP)
    box_reinvite(o.phones["103"], phone_sdp(o.phones["103"]))
    in_dialog(o.phones["101"], leg, "BYE")
    o.net.advance(30.0)
    # 103 hangs up at 47 s, in the dialog the consultation's INVITE made.
    in_dialog(o.phones["103"], o.phones["103"].invites()[0], "BYE")
    assert byes_in(o.provider.requests("BYE"), caller.call_id) == 1
    rows = {row["sip_call_id"]: (row, legs) for row, legs in o.rows}
    row, legs = rows[caller.call_id]
    assert (row["answered_by"], row["outcome"], row["end_cause"]) == (
        "103", "answered", "hangup by callee")
    assert row["answered_at"] == 2.0
    assert [(leg_["target"], leg_["result"]) for leg_ in legs
            if leg_["result"] == "answered"] == [("101", "answered"), ("103", "answered")]
    first = next(leg_ for leg_ in legs if leg_["target"] == "101")
    assert (first["answered_at"], first["ended_at"]) == (2.0, 17.0)
    # The consultation is a call of its own between the two phones, over at the transfer.
    consult_row, _ = rows[consult.call_id]
    assert (consult_row["direction"], consult_row["end_cause"]) == (
        "internal", "attended transfer")
    agents = o.net.gateway.agents
    # 101: 15 s with the caller, 5 s consulting; 103: 5 s consulting, 30 s with the caller.
    assert agents.agent("101").talk_time_s == 20.0
    assert agents.agent("103").talk_time_s == 35.0
    assert agents.agent("101").calls_answered == 1
    assert [agents.agent(e).calls_in_progress for e in ("101", "102", "103")] == [0, 0, 0]

def test_a_caller_on_hold_keeps_its_port_and_only_the_target_is_reinvited() -> None:
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    sendonly = phone_sdp(o.phones["101"]).replace(b"a=rtpmap:101", b"a=sendonly\r\na=rtpmap:101")
    assert phone_reinvite(o.phones["101"], sendonly).status == 200  # 101 holds the caller
    hold = box_reinvite(o.provider, PROVIDER_SDP + b"a=recvonly\r\n")
    caller_port = box_ports(hold)
    consult, ok = consultation(o)
    in_dialog(o.phones["101"], leg, "REFER", [("Refer-To", replaces(consult, ok))])
    to_target = box_reinvite(o.phones["103"], phone_sdp(o.phones["103"]))
    assert box_ports(to_target) != caller_port
    # The caller is taken off hold from the same port (sendrecv), and the music stops.
    resume = box_reinvite(o.provider, PROVIDER_SDP)
    offer = sdp.SessionDescription.parse(resume.body).media[0]
    assert (offer.port, offer.direction) == (caller_port, "sendrecv")
    assert sipfrags(o.phones["101"], leg)[-1] == "SIP/2.0 200 OK"
    o.net.rtp_to_send()
    o.net.advance(1.0)
    assert heard(o, PROVIDER_RTP) == []
    o.net.gateway.receive_rtp(box_ports(to_target), rtp(0, 8), o.net.now, PHONE_103_RTP)
    [(port, packet)] = heard(o, PROVIDER_RTP)
    assert port == caller_port and packet.sequence == 8

def test_an_unknown_consultation_is_reported_481_and_the_call_goes_on() -> None:
    o = office()
    _, leg = provider_call_answered_by_101(o)
    refer_to = f"<sip:103@{GATEWAY.host}?Replaces=nosuch%3Bto-tag%3D1%3Bfrom-tag%3D2>"
    assert in_dialog(o.phones["101"], leg, "REFER", [("Refer-To", refer_to)]).status == 202
    assert sipfrags(o.phones["101"], leg)[-1].startswith("SIP/2.0 481")
    o.net.advance(5.0)
    assert o.phones["101"].requests("BYE") == []
    [call] = o.net.calls()
    assert (call["state"], call["answered_by"]) == ("answered", "101")

def test_early_only_names_a_confirmed_dialog_486() -> None:
    o = office()
    _, leg = provider_call_answered_by_101(o)
    consult, ok = consultation(o)
    refer_to = replaces(consult, ok, early_only=True)
    in_dialog(o.phones["101"], leg, "REFER", [("Refer-To", refer_to)])
    assert sipfrags(o.phones["101"], leg)[-1] == "SIP/2.0 486 Busy Here"
    assert len(o.net.calls()) == 2  # both calls go on

def test_a_colleagues_conversation_cannot_be_named_403() -> None:
    o = office()
    _, leg = provider_call_answered_by_101(o)
    consult, ok = consultation(o, target="103", consulting="102")
    in_dialog(o.phones["101"], leg, "REFER", [("Refer-To", replaces(consult, ok))])
    assert sipfrags(o.phones["101"], leg)[-1].startswith("SIP/2.0 403")
    assert o.phones["102"].requests("BYE") == [] and len(o.net.calls()) == 2

def test_a_malformed_replaces_is_400() -> None:
    o = office()
    _, leg = provider_call_answered_by_101(o)
    refer_to = f"<sip:103@{GATEWAY.host}?Replaces=only-a-call-id>"
    assert in_dialog(o.phones["101"], leg, "REFER", [("Refer-To", refer_to)]).status == 400

def test_a_transfer_while_the_consultation_rings_rings_the_target_for_the_caller() -> None:
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    phone = o.phones["101"]
    consult, _ = authorised_call(phone, "103", sdp=phone_sdp(phone))
    ringing = [r for r in phone.responses() if r.call_id == consult.call_id
               and r.status == 180][-1]
    value = f"{consult.call_id};to-tag={ringing.to.tag};from-tag={consult.from_.tag}"
    refer_to = f"<sip:103@{GATEWAY.host}?Replaces={quote(value, safe='')}>"
    assert in_dialog(phone, leg, "REFER", [("Refer-To", refer_to)]).status == 202
    assert 487 in [r.status for r in phone.responses() if r.call_id == consult.call_id]
    ring = o.phones["103"].ringing_invite()
    assert ring.from_.uri.user == o.provider.user and ring.body == PROVIDER_SDP
    answered_by(o.phones["103"])
    assert sipfrags(phone, leg)[-1] == "SIP/2.0 200 OK"

def test_a_target_refusing_the_new_media_fails_the_transfer_and_ends_the_call() -> None:
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    consult, ok = consultation(o)
    in_dialog(o.phones["101"], leg, "REFER", [("Refer-To", replaces(consult, ok))])
    box_reinvite(o.provider, PROVIDER_SDP)
    o.phones["103"].reply(o.phones["103"].ringing_invite(), 488)
    assert sipfrags(o.phones["101"], leg)[-1].startswith("SIP/2.0 488")
    assert byes_in(o.provider.requests("BYE"), caller.call_id) == 1
    assert o.net.calls() == []



def test_an_invite_with_replaces_from_the_members_other_phone_moves_the_call_there() -> None:
    """RFC 3891 §3 and §6.1: 101 on a second phone (the same extension) sends an INVITE with
    Replaces naming its own conversation; the box answers it, joins it to the caller through
    its own ports and hangs up the first phone."""
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    desk = Peer(o.net, Address("udp", "10.0.0.21", 5060), "101")
    assert desk.register().status == 200
    first = o.phones["101"]
    phone_tag = first.incoming[leg.top_via.branch or ""].tag
    value = f"{leg.call_id};to-tag={phone_tag};from-tag={leg.from_.tag}"
    desk_sdp = phone_sdp(desk)
    _, reply = authorised_call(desk, "101", sdp=desk_sdp, extra=[("Replaces", value)])
    assert reply.status == 200
    answer = sdp.SessionDescription.parse(reply.body)
    assert answer.connection == GATEWAY.host
    assert byes_in(first.requests("BYE"), leg.call_id) == 1  # the first phone lets go
    to_caller = box_reinvite(o.provider, PROVIDER_SDP)  # the box steps into the media
    o.net.rtp_to_send()
    o.net.gateway.receive_rtp(box_ports(to_caller), rtp(0, 3), o.net.now, PROVIDER_RTP)
    [(port, packet)] = heard(o, ("10.0.0.21", 30000))
    assert port == answer.media[0].port and packet.sequence == 3
    [call] = o.net.calls()
    assert (call["state"], call["answered_by"]) == ("answered", "101")


def test_a_colleague_naming_a_conversation_with_replaces_is_486() -> None:
    o = office()
    _, leg = provider_call_answered_by_101(o)
    phone_tag = o.phones["101"].incoming[leg.top_via.branch or ""].tag
    value = f"{leg.call_id};to-tag={phone_tag};from-tag={leg.from_.tag}"
    _, reply = authorised_call(o.phones["102"], "101", sdp=phone_sdp(o.phones["102"]),
                               extra=[("Replaces", value)])
    assert reply.status == 486
    assert o.phones["101"].requests("BYE") == []


def test_a_refer_sent_in_the_consultation_keeps_the_customers_call_as_the_one_call() -> None:
    """RFC 5589 §7 lets the phone send the REFER in either dialog: here in the consultation,
    naming the customer's call. The customer's call goes on with 103 (one record), the
    consultation ends, and 101 is hung up in the customer's call."""
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    consult, ok = consultation(o)
    phone = o.phones["101"]
    phone_tag = phone.incoming[leg.top_via.branch or ""].tag
    value = f"{leg.call_id};to-tag={leg.from_.tag};from-tag={phone_tag}"
    refer_to = f"<sip:{o.provider.user}@{GATEWAY.host}?Replaces={quote(value, safe='')}>"
    phone.send(request("REFER", str(ok.contacts[0].uri), [
        ("Via", phone.via()), ("Max-Forwards", "70"),
        ("From", consult.headers.get("From") or ""), ("To", ok.headers.get("To") or ""),
        ("Call-ID", consult.call_id), ("CSeq", "7 REFER"), ("Refer-To", refer_to)]))
    assert phone.final_statuses("REFER") == [202]
    assert byes_in(phone.requests("BYE"), leg.call_id) == 1  # out of the customer's call
    box_reinvite(o.provider, PROVIDER_SDP)
    box_reinvite(o.phones["103"], phone_sdp(o.phones["103"]))
    assert sipfrags(phone, consult) == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    [call] = o.net.calls()
    assert (call["answered_by"], call["direction"]) == ("103", "inbound")
    o.provider.bye(caller)
    rows = {row["sip_call_id"]: (row, legs) for row, legs in o.rows}
    row, legs = rows[caller.call_id]
    assert (row["answered_by"], row["outcome"]) == ("103", "answered")
    assert rows[consult.call_id][0]["end_cause"] == "attended transfer"
    agents = o.net.gateway.agents
    assert [agents.agent(e).calls_in_progress for e in ("101", "102", "103")] == [0, 0, 0]


def test_the_caller_hanging_up_before_the_transfer_completes_is_told_to_the_referrer() -> None:
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    consult, ok = consultation(o)
    in_dialog(o.phones["101"], leg, "REFER", [("Refer-To", replaces(consult, ok))])
    o.provider.bye(caller)  # before answering the box's re-INVITE
    to_103 = o.phones["103"].invites()[0].call_id  # the box's dialog with 103
    assert byes_in(o.phones["103"].requests("BYE"), to_103) == 1
    box_reinvite(o.phones["103"], phone_sdp(o.phones["103"]))
    box_reinvite(o.provider, PROVIDER_SDP)
    assert sipfrags(o.phones["101"], leg)[-1] == "SIP/2.0 487 Request Terminated"
    o.net.advance(3.0)
    assert byes_in(o.phones["101"].requests("BYE"), leg.call_id) == 1
    assert o.net.gateway.transfer.referrers == {}  # nothing kept for the referrer
    assert o.net.calls() == []


def test_the_box_says_it_supports_replaces_to_the_phones() -> None:
    """RFC 3891 §6: phones offer an attended transfer only to a party that supports Replaces;
    the box says so in its INVITEs and its 200s."""
    o = office()
    _, leg = provider_call_answered_by_101(o)
    assert "replaces" in (leg.headers.get("Supported") or "").split(", ")
    _, ok = consultation(o)
    assert ok.headers.get("Supported") == "replaces"
