"""Music on hold through the sans-IO gateway (firmware/core/hold.py): a party of an answered
call sends a re-INVITE with a=sendonly, a=inactive or c=0.0.0.0; the box answers it for that
side, the other party hears music as RTP from a port of the box, and resuming brings their own
media back, through the box's two ports of the call."""

from __future__ import annotations

import secrets

from firmware.core.hold import HOLD_MUSIC_MAILBOX
from firmware.media import g711, prompts, sdp
from firmware.media.rtp import RtpPacket, parse_rtp
from firmware.sip.message import Request, Response
from tests.core.network import (
    GATEWAY,
    RING_ALL_DID,
    Office,
    Peer,
    answer_with_sdp,
    office,
    request,
)
from tests.core.test_queue_media import CALLER_RTP, CALLER_SDP, answered_by_member
from tests.core.test_queue_media import MEMBER_RTP as PHONE_RTP
from tests.core.test_queue_media import MEMBER_SDP as PHONE_SDP

SENDONLY = PHONE_SDP.replace(b"a=sendrecv", b"a=sendonly")
SILENCE_LEVEL = 200  # mean absolute sample value: below, a frame is silence


def talking() -> tuple[Office, Request]:
    """The provider calls department 200 with its SDP; phone 101 answers with its own: the two
    talk directly (the SDP relayed as is)."""
    o = office()
    invite = o.provider.call(RING_ALL_DID, sdp=CALLER_SDP)
    answer_with_sdp(o.phones["101"], PHONE_SDP)
    final = [r for r in o.provider.responses() if r.call_id == invite.call_id][-1]
    assert final.status == 200 and final.body == PHONE_SDP  # direct media
    return o, invite


_cseqs: dict[str, int] = {}


def phone_reinvite(phone: Peer, body: bytes) -> Response:
    """A re-INVITE in the dialog the phone answered (it is the UAS of the leg)."""
    entry = [e for e in phone.incoming.values() if e.final == 200][0]
    invite = entry.invite
    cseq = _cseqs[invite.call_id] = _cseqs.get(invite.call_id, 1) + 1
    phone.send(request("INVITE", str(invite.contacts[0].uri), [
        ("Via", phone.via()), ("Max-Forwards", "70"),
        ("From", f"{invite.headers.get('To')};tag={entry.tag}"),
        ("To", invite.headers.get("From") or ""), ("Call-ID", invite.call_id),
        ("CSeq", f"{cseq} INVITE"),
        ("Contact", f"<sip:{phone.user}@{phone.address.host}:{phone.address.port}>"),
        ("Content-Type", "application/sdp"),
    ], body))
    return [r for r in phone.responses() if r.call_id == invite.call_id][-1]


def caller_reinvite(caller: Peer, invite: Request, body: bytes) -> Response:
    """A re-INVITE in the dialog of the caller's INVITE (it is the UAC)."""
    call = next(c for c in caller.outgoing if c.invite is invite)
    assert call.answer is not None
    call.cseq += 1
    caller.send(request("INVITE", str(call.answer.contacts[0].uri), [
        ("Via", caller.via()), ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""),
        ("To", call.answer.headers.get("To") or ""), ("Call-ID", invite.call_id),
        ("CSeq", f"{call.cseq} INVITE"),
        ("Contact", f"<sip:{caller.user}@{caller.address.host}:{caller.address.port}>"),
        ("Content-Type", "application/sdp"),
    ], body))
    return [r for r in caller.responses() if r.call_id == invite.call_id][-1]


def box_reinvite(peer: Peer, answer: bytes) -> Request:
    """The box's re-INVITE waiting at `peer`, answered 200 with `answer`."""
    reinvite = peer.ringing_invite()
    assert reinvite.to.tag is not None, "not a re-INVITE"
    answer_with_sdp(peer, answer)
    return reinvite


def heard(o: Office, destination: tuple[str, int]) -> list[tuple[int, RtpPacket]]:
    return [(port, parse_rtp(data)) for port, data, to in o.net.rtp_to_send()
            if to == destination]


def level(packets: list[tuple[int, RtpPacket]]) -> float:
    pcm = b"".join(g711.alaw_decode(p.payload) if p.payload_type == 8 else
                   g711.ulaw_decode(p.payload) for _, p in packets)
    samples = g711.pcm_samples(pcm)
    return sum(abs(s) for s in samples) / max(1, len(samples))


def rtp(payload_type: int, sequence: int) -> bytes:
    return RtpPacket(payload_type=payload_type, sequence=sequence, timestamp=160 * sequence,
                     ssrc=0x1234, payload=secrets.token_bytes(160)).to_bytes()


def held_by_phone(body: bytes = SENDONLY) -> tuple[Office, Request, int, int]:
    """101 holds the provider; the provider answers the box's re-INVITE recvonly. Returns the
    box's port facing 101 (its answer) and the one facing the provider (its offer)."""
    o, invite = talking()
    reply = phone_reinvite(o.phones["101"], body)
    assert reply.status == 200
    offer = box_reinvite(o.provider, CALLER_SDP.replace(b"a=sendrecv", b"a=recvonly"))
    return (o, invite, sdp.accept_answer(reply.body).remote_port,
            sdp.SessionDescription.parse(offer.body).media[0].port)


def test_the_box_answers_the_holders_sendonly_with_recvonly_from_its_own_port() -> None:
    o, invite = talking()
    reply = phone_reinvite(o.phones["101"], SENDONLY)
    assert reply.status == 200 and b"a=recvonly" in reply.body
    answer = sdp.SessionDescription.parse(reply.body)
    assert answer.connection == GATEWAY.host
    assert o.net.gateway.local_media.keys() >= {answer.media[0].port}


def test_the_held_party_is_reinvited_sendonly_from_a_second_port_of_the_box() -> None:
    o, invite = talking()
    reply = phone_reinvite(o.phones["101"], SENDONLY)
    reinvite = o.provider.ringing_invite()
    assert reinvite.call_id == invite.call_id and reinvite.to.tag is not None
    offer = sdp.SessionDescription.parse(reinvite.body)
    assert offer.connection == GATEWAY.host and offer.media[0].direction == "sendonly"
    assert offer.media[0].port != sdp.accept_answer(reply.body).remote_port
    answer_with_sdp(o.provider, CALLER_SDP.replace(b"a=sendrecv", b"a=recvonly"))
    assert [a for a in o.provider.requests("ACK") if a.call_id == invite.call_id
            and a.cseq.seq == reinvite.cseq.seq], "the box did not ACK the held party's 200"


def test_the_held_party_hears_music_from_the_boxes_port() -> None:
    o, invite, phone_port, provider_port = held_by_phone()
    o.net.rtp_to_send()
    o.net.advance(1.0)
    music = heard(o, CALLER_RTP)
    assert 45 <= len(music) <= 51  # 20 ms packets for a second
    assert {port for port, _ in music} == {provider_port}
    assert {p.payload_type for _, p in music} == {8}  # the provider's law
    assert level(music) > SILENCE_LEVEL
    built_in = g711.alaw_decode(g711.alaw_encode(prompts.prompt("en", "hold_music")))
    played = b"".join(g711.alaw_decode(p.payload) for _, p in music)
    assert built_in[3200:4800] in played


def test_the_holders_audio_is_not_forwarded_over_the_music() -> None:
    o, invite, phone_port, provider_port = held_by_phone()
    o.net.rtp_to_send()
    o.net.gateway.receive_rtp(phone_port, rtp(0, 1), o.net.now, PHONE_RTP)
    assert [p for _, p in heard(o, CALLER_RTP) if p.ssrc == 0x1234] == []


def test_resume_reinvites_the_held_party_sendrecv_and_the_parties_hear_each_other() -> None:
    o, invite, phone_port, provider_port = held_by_phone()
    reply = phone_reinvite(o.phones["101"], PHONE_SDP)
    assert reply.status == 200 and b"a=sendrecv" in reply.body
    assert sdp.accept_answer(reply.body).remote_port == phone_port
    resume = box_reinvite(o.provider, CALLER_SDP)
    offer = sdp.SessionDescription.parse(resume.body)
    assert (offer.media[0].port, offer.media[0].direction) == (provider_port, "sendrecv")
    o.net.rtp_to_send()
    o.net.advance(1.0)
    assert heard(o, CALLER_RTP) == []  # the music has stopped
    o.net.gateway.receive_rtp(phone_port, rtp(0, 7), o.net.now, PHONE_RTP)
    [(port, packet)] = heard(o, CALLER_RTP)
    assert port == provider_port and packet.ssrc == 0x1234 and packet.payload_type == 8
    o.net.gateway.receive_rtp(provider_port, rtp(8, 9), o.net.now, CALLER_RTP)
    [(port, packet)] = heard(o, PHONE_RTP)
    assert port == phone_port and packet.payload_type == 0 and packet.sequence == 9


def test_a_second_hold_plays_the_music_again() -> None:
    o, invite, phone_port, provider_port = held_by_phone()
    phone_reinvite(o.phones["101"], PHONE_SDP)
    box_reinvite(o.provider, CALLER_SDP)
    assert phone_reinvite(o.phones["101"], SENDONLY).status == 200
    again = box_reinvite(o.provider, CALLER_SDP.replace(b"a=sendrecv", b"a=recvonly"))
    assert b"a=sendonly" in again.body
    o.net.rtp_to_send()
    o.net.advance(0.5)
    music = heard(o, CALLER_RTP)
    assert len(music) >= 20 and level(music) > SILENCE_LEVEL


def test_the_old_zero_address_form_holds_too() -> None:
    zero = PHONE_SDP.replace(b"IN IP4 10.0.0.11", b"IN IP4 0.0.0.0")
    o, invite, phone_port, provider_port = held_by_phone(zero)
    o.net.rtp_to_send()
    o.net.advance(0.5)
    assert len(heard(o, CALLER_RTP)) >= 20
    o.net.gateway.receive_rtp(provider_port, rtp(8, 3), o.net.now, CALLER_RTP)
    assert [p for p in o.net.rtp_to_send() if p[2][0] == "0.0.0.0"] == []


def test_inactive_holds_too() -> None:
    o, invite, phone_port, provider_port = held_by_phone(
        PHONE_SDP.replace(b"a=sendrecv", b"a=inactive"))
    o.net.rtp_to_send()
    o.net.advance(0.5)
    music = heard(o, CALLER_RTP)
    assert len(music) >= 20 and level(music) > SILENCE_LEVEL
    assert heard(o, PHONE_RTP) == []


def test_the_caller_can_hold_the_phone_which_hears_the_music() -> None:
    o, invite = talking()
    reply = caller_reinvite(o.provider, invite,
                            CALLER_SDP.replace(b"a=sendrecv", b"a=sendonly"))
    assert reply.status == 200 and b"a=recvonly" in reply.body
    offer = box_reinvite(o.phones["101"], PHONE_SDP.replace(b"a=sendrecv", b"a=recvonly"))
    assert b"a=sendonly" in offer.body
    o.net.rtp_to_send()
    o.net.advance(1.0)
    music = heard(o, PHONE_RTP)
    assert len(music) >= 45 and {p.payload_type for _, p in music} == {0}
    assert level(music) > SILENCE_LEVEL
    back = caller_reinvite(o.provider, invite, CALLER_SDP)
    assert back.status == 200 and b"a=sendrecv" in back.body
    box_reinvite(o.phones["101"], PHONE_SDP)
    o.net.rtp_to_send()
    o.net.advance(0.5)
    assert heard(o, PHONE_RTP) == []


def test_the_held_partys_refusal_leaves_the_call_up() -> None:
    o, invite = talking()
    assert phone_reinvite(o.phones["101"], SENDONLY).status == 200
    o.provider.reply(o.provider.ringing_invite(), 488)
    assert [c["state"] for c in o.net.calls()] == ["answered"]


def test_an_anchored_call_plays_music_without_a_reinvite() -> None:
    o, invite, caller_port, member_port = answered_by_member()
    before = len(o.provider.invites())
    member = o.phones["101"]
    assert phone_reinvite(member, SENDONLY).status == 200
    assert len(o.provider.invites()) == before  # the caller talks to the box already
    o.net.rtp_to_send()
    o.net.advance(1.0)
    music = heard(o, CALLER_RTP)
    assert len(music) >= 45 and {port for port, _ in music} == {caller_port}
    assert level(music) > SILENCE_LEVEL
    phone_reinvite(member, PHONE_SDP)
    o.net.rtp_to_send()
    o.net.advance(0.5)
    assert heard(o, CALLER_RTP) == []
    o.net.gateway.receive_rtp(member_port, rtp(0, 5), o.net.now, PHONE_RTP)
    [(port, packet)] = heard(o, CALLER_RTP)
    assert port == caller_port and packet.sequence == 5


def test_the_offices_uploaded_music_plays_instead_of_the_built_in() -> None:
    o, invite = talking()
    uploaded = g711.pcm_bytes(g711.pcm_samples(bytes(range(256)) * 200))
    o.net.gateway.greetings = lambda mailbox: uploaded if mailbox == HOLD_MUSIC_MAILBOX else None
    phone_reinvite(o.phones["101"], SENDONLY)
    box_reinvite(o.provider, CALLER_SDP)
    o.net.rtp_to_send()
    o.net.advance(0.5)
    played = b"".join(g711.alaw_decode(p.payload) for _, p in heard(o, CALLER_RTP))
    assert g711.alaw_decode(g711.alaw_encode(uploaded))[3200:4800] in played


def test_hanging_up_on_hold_gives_the_ports_back_and_stops_the_music() -> None:
    o, invite, phone_port, provider_port = held_by_phone()
    o.provider.bye(invite)
    assert o.net.calls() == [] and o.net.gateway.local_media == {}
    o.net.rtp_to_send()
    o.net.advance(1.0)
    assert o.net.rtp_to_send() == []


def test_a_phone_moving_its_address_is_still_relayed() -> None:
    o, invite = talking()
    moved = PHONE_SDP.replace(b"40000", b"40002")
    phone_reinvite(o.phones["101"], moved)
    relayed = o.provider.ringing_invite()
    assert relayed.body == moved  # not a hold: the box stays out of the media
    assert o.net.gateway.local_media == {}

