"""Transfer of calls whose media the box holds (issue 14): a caller the referrer had put on hold
(the box in the media path, music playing), a caller who came through the queue's early media,
a GSM caller whose audio is a port of the box. The box keeps the transferee's session where it
is and offers the target the port that faced the referrer (or the line's port); the target's
answer joins the bridge. Blind (REFER) and attended (REFER with Replaces) alike."""

from __future__ import annotations

from firmware.media import g711, sdp
from firmware.media.rtp import RtpPacket
from firmware.sip.message import Request
from hal.modem.driver import IncomingCall
from tests.core.network import (
    GATEWAY,
    PHONE_ADDRESSES,
    Office,
    answer_with_sdp,
    authorised_call,
    office,
    request,
)
from tests.core.test_hold import (
    box_reinvite,
    caller_reinvite,
    heard,
    level,
    phone_reinvite,
    rtp,
)
from tests.core.test_modem_lines import CALLER, commands, ramp
from tests.core.test_modem_lines import gsm as gsm  # noqa: F401 (the fixture)
from tests.core.test_queue_media import CALLER_RTP, answered_by_member
from tests.core.test_transfer import (
    PROVIDER_SDP,
    in_dialog,
    phone_sdp,
    provider_call_answered_by_101,
    refer,
    sipfrags,
)
from tests.core.test_transfer_attended import consultation, replaces

PROVIDER_RTP = ("127.0.0.2", 40000)
PHONE_103_RTP = (PHONE_ADDRESSES["103"].host, 30000)
SILENCE_LEVEL = 200


def port_of(body: bytes) -> int:
    return sdp.SessionDescription.parse(body).media[0].port


def held_by_101() -> tuple[Office, Request, Request, int]:
    """The provider's call answered by 101, who holds it: the box answers 101 and re-INVITEs
    the provider sendonly from its own port (returned), playing music there."""
    o = office()
    caller, leg = provider_call_answered_by_101(o)
    sendonly = phone_sdp(o.phones["101"]).replace(b"a=rtpmap:101",
                                                  b"a=sendonly\r\na=rtpmap:101")
    assert phone_reinvite(o.phones["101"], sendonly).status == 200
    hold = box_reinvite(o.provider, PROVIDER_SDP + b"a=recvonly\r\n")
    return o, caller, leg, port_of(hold.body)


def test_a_held_caller_transferred_blind_hears_music_until_the_target_answers() -> None:
    o, caller, leg, caller_port = held_by_101()
    assert refer(o.phones["101"], leg, "103").status == 202
    ring = o.phones["103"].ringing_invite()
    assert ring.from_.uri.user == o.provider.user  # 103 sees the customer's number
    offer = sdp.SessionDescription.parse(ring.body)
    assert offer.connection == GATEWAY.host and offer.media[0].port != caller_port
    o.net.rtp_to_send()
    o.net.advance(1.0)
    music = heard(o, PROVIDER_RTP)
    assert len(music) >= 45 and level(music) > SILENCE_LEVEL  # still the music, from the box
    answer_with_sdp(o.phones["103"], phone_sdp(o.phones["103"]))
    assert sipfrags(o.phones["101"], leg)[-1] == "SIP/2.0 200 OK"
    # The caller is taken off hold from the same port, and hears 103 through the box.
    resume = box_reinvite(o.provider, PROVIDER_SDP)
    media = sdp.SessionDescription.parse(resume.body).media[0]
    assert (media.port, media.direction) == (caller_port, "sendrecv")
    o.net.rtp_to_send()
    o.net.gateway.receive_rtp(offer.media[0].port, rtp(0, 4), o.net.now, PHONE_103_RTP)
    [(port, packet)] = heard(o, PROVIDER_RTP)
    assert port == caller_port and packet.sequence == 4
    o.net.gateway.receive_rtp(caller_port, rtp(0, 5), o.net.now, PROVIDER_RTP)
    [(port, packet)] = heard(o, PHONE_103_RTP)
    assert port == offer.media[0].port and packet.sequence == 5
    [call] = o.net.calls()
    assert (call["state"], call["answered_by"]) == ("answered", "103")


def test_a_queue_caller_whose_media_the_box_holds_is_transferred_to_a_colleague() -> None:
    o, invite, caller_port, member_port = answered_by_member()
    leg = o.phones["101"].invites()[-1]
    assert refer(o.phones["101"], leg, "103").status == 202
    ring = o.phones["103"].ringing_invite()
    assert port_of(ring.body) == member_port  # the port that faced 101 faces 103 now
    answer_with_sdp(o.phones["103"], phone_sdp(o.phones["103"]))
    assert o.provider.invites() == []  # the caller's session stays with the box
    o.net.rtp_to_send()
    o.net.gateway.receive_rtp(caller_port, rtp(8, 3), o.net.now, CALLER_RTP)
    [(port, packet)] = heard(o, PHONE_103_RTP)
    assert port == member_port and packet.sequence == 3 and packet.payload_type == 0
    o.provider.bye(invite)
    [(row, legs)] = o.rows
    assert (row["answered_by"], row["outcome"]) == ("103", "answered")
    assert o.net.gateway.local_media == {}  # the box's ports are given back


def gsm_call_answered_by_101(o: Office) -> tuple[Request, int]:
    """A GSM caller rings department 200; 101 answers. (101's INVITE, the line's port)"""
    o.net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), o.net.now)
    o.net.pump()
    leg = o.phones["101"].ringing_invite()
    answer_with_sdp(o.phones["101"], phone_sdp(o.phones["101"]))
    assert commands(o) == [("answer", "")]
    return leg, port_of(leg.body)


def line_hears_103(o: Office, line_port: int) -> None:
    """103's RTP on the line's port reaches the line, and the line's audio reaches 103."""
    o.net.rtp_to_send()
    o.net.gateway.line_audio("mts", ramp(), o.net.now)
    [(port, datagram, destination)] = o.net.rtp_to_send()
    assert (port, destination) == (line_port, PHONE_103_RTP)
    for sequence in (1, 2):  # the line's jitter buffer starts on 40 ms
        spoken = RtpPacket(payload_type=0, sequence=sequence, timestamp=160 * sequence,
                           ssrc=9, payload=g711.ulaw_encode(ramp())).to_bytes()
        o.net.gateway.receive_rtp(line_port, spoken, o.net.now, PHONE_103_RTP)
    assert o.net.gateway.line_frame("mts") == g711.ulaw_decode(g711.ulaw_encode(ramp()))


def test_a_gsm_caller_transferred_by_the_answering_manager_reaches_the_target_with_audio(
        gsm: Office) -> None:
    leg, line_port = gsm_call_answered_by_101(gsm)
    gsm.net.advance(5.0)
    assert refer(gsm.phones["101"], leg, "103").status == 202
    ring = gsm.phones["103"].ringing_invite()
    assert ring.from_.uri.user == CALLER and port_of(ring.body) == line_port
    answer_with_sdp(gsm.phones["103"], phone_sdp(gsm.phones["103"]))
    assert sipfrags(gsm.phones["101"], leg)[-1] == "SIP/2.0 200 OK"
    line_hears_103(gsm, line_port)
    in_dialog(gsm.phones["101"], leg, "BYE")
    in_dialog(gsm.phones["103"], gsm.phones["103"].invites()[0], "BYE")
    assert ("hang_up", "") in commands(gsm)
    [(row, legs)] = gsm.rows
    assert (row["answered_by"], row["outcome"]) == ("103", "answered")
    assert {(leg_["target"], leg_["result"]) for leg_ in legs} >= {
        ("101", "answered"), ("103", "answered")}


def test_a_gsm_caller_is_transferred_attended_to_the_consulted_colleague(gsm: Office) -> None:
    leg, line_port = gsm_call_answered_by_101(gsm)
    consult, ok = consultation(gsm)
    assert in_dialog(gsm.phones["101"], leg, "REFER",
                     [("Refer-To", replaces(consult, ok))]).status == 202
    reinvite = box_reinvite(gsm.phones["103"], phone_sdp(gsm.phones["103"]))
    assert port_of(reinvite.body) == line_port  # 103 now talks to the line's port
    assert sipfrags(gsm.phones["101"], leg)[-1] == "SIP/2.0 200 OK"
    line_hears_103(gsm, line_port)
    assert gsm.net.calls()[0]["answered_by"] == "103"


def test_an_outside_party_the_referrer_called_and_held_is_transferred_with_its_port() -> None:
    o = office()
    phone = o.phones["101"]
    invite, _ = authorised_call(phone, "+79990001122", sdp=phone_sdp(phone))
    answer_with_sdp(o.provider, PROVIDER_SDP)
    sendonly = phone_sdp(phone).replace(b"a=rtpmap:101", b"a=sendonly\r\na=rtpmap:101")
    assert caller_reinvite(phone, invite, sendonly).status == 200  # 101 holds the callee
    hold = box_reinvite(o.provider, PROVIDER_SDP + b"a=recvonly\r\n")
    outside_port = port_of(hold.body)
    ok = next(r for r in phone.responses() if r.status == 200)
    phone.send(request("REFER", str(ok.contacts[0].uri), [
        ("Via", phone.via()), ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""), ("To", ok.headers.get("To") or ""),
        ("Call-ID", invite.call_id), ("CSeq", "9 REFER"),
        ("Refer-To", f"<sip:102@{GATEWAY.host}>")]))
    assert phone.final_statuses("REFER") == [202]
    ring = o.phones["102"].ringing_invite()
    assert ring.from_.uri.user == "+79990001122" and port_of(ring.body) != outside_port
    answer_with_sdp(o.phones["102"], phone_sdp(o.phones["102"]))
    resume = box_reinvite(o.provider, PROVIDER_SDP)  # off hold, from the same port
    assert port_of(resume.body) == outside_port and b"a=sendrecv" in resume.body
    o.net.rtp_to_send()
    o.net.gateway.receive_rtp(outside_port, rtp(0, 6), o.net.now, PROVIDER_RTP)
    [(port, packet)] = heard(o, (PHONE_ADDRESSES["102"].host, 30000))
    assert port == port_of(ring.body) and packet.sequence == 6
    assert o.net.calls()[0]["answered_by"] == "102"


def test_a_transferred_gsm_caller_can_be_transferred_again(gsm: Office) -> None:
    leg, line_port = gsm_call_answered_by_101(gsm)
    refer(gsm.phones["101"], leg, "103")
    second = gsm.phones["103"].ringing_invite()
    answer_with_sdp(gsm.phones["103"], phone_sdp(gsm.phones["103"]))
    assert refer(gsm.phones["103"], second, "102").status == 202
    ring = gsm.phones["102"].ringing_invite()
    assert ring.from_.uri.user == CALLER and port_of(ring.body) == line_port
    answer_with_sdp(gsm.phones["102"], phone_sdp(gsm.phones["102"]))
    gsm.net.rtp_to_send()
    gsm.net.gateway.line_audio("mts", ramp(), gsm.net.now)
    [(port, _, destination)] = gsm.net.rtp_to_send()
    assert (port, destination) == (line_port, (PHONE_ADDRESSES["102"].host, 30000))
    assert gsm.net.calls()[0]["answered_by"] == "102"
