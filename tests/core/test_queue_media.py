"""Early media for waiting callers, and the anchored call that follows, through the sans-IO
gateway: a caller who must wait gets a 183 with the box's SDP and hears ringback, their
position and the callback offer; a key pressed in the RTP (RFC 4733) asks for the callback; when
a member answers, the member got the box's own offer and the two ports are bridged."""

from __future__ import annotations

import copy
import math
from array import array

import pytest

from firmware.media import g711, prompts, sdp, tones
from firmware.media.rtp import RtpPacket, TelephoneEvent, parse_rtp
from firmware.sip.message import Request
from tests.core.network import (
    GATEWAY,
    PHONE_ADDRESSES,
    Office,
    answer_with_sdp,
    config_with,
    office,
    request,
)

QUEUE_DID = "+74950000950"
CALLER_RTP = ("127.0.0.2", 50000)
CALLER_SDP = (b"v=0\r\no=c 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
              b"m=audio 50000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
              b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
MEMBER_RTP = ("10.0.0.11", 40000)
MEMBER_SDP = (b"v=0\r\no=m 1 1 IN IP4 10.0.0.11\r\ns=-\r\nc=IN IP4 10.0.0.11\r\nt=0 0\r\n"
              b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
              b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
ANNOUNCE_S = 20

QUEUE = config_with(
    [{"number": "950", "name": "Support", "strategy": "ring_all", "ring_timeout_s": 15,
      "members": ["101"],
      "queue": {"max_callers": 5, "max_wait_s": 120, "retry_s": 5,
                "announce_s": ANNOUNCE_S, "callback": {"key": "1", "expire_s": 100}},
      "no_answer": {"action": "voicemail"}}],
    [{"number": QUEUE_DID, "trunk": "provider", "channels": 5, "destination": "950"}],
    site={"timezone": "Europe/Moscow", "language": "en"},
)


def waiting_caller(config: dict[str, object] = QUEUE) -> tuple[Office, Request, int]:
    """Member 101 is on break; a caller with SDP comes in and waits. Returns the box's port."""
    o = office(config=config)
    o.net.gateway.set_agent_status("101", "break", source="cli", now=o.net.now)
    invite = o.provider.call(QUEUE_DID, sdp=CALLER_SDP)
    early = [r for r in o.provider.responses() if r.status == 183]
    assert early, "no early media"
    return o, invite, sdp.accept_answer(early[-1].body).remote_port


def heard_by(o: Office, destination: tuple[str, int]) -> list[tuple[int, RtpPacket]]:
    return [(port, parse_rtp(data)) for port, data, to in o.net.rtp_to_send()
            if to == destination]


def pcm_of(packets: list[tuple[int, RtpPacket]]) -> bytes:
    return b"".join(g711.alaw_decode(p.payload) if p.payload_type == 8 else
                    g711.ulaw_decode(p.payload) for _, p in packets)


def rising_per_s(samples: array[int]) -> float:
    return sum(1 for a, b in zip(samples, samples[1:], strict=False) if a < 0 <= b) / (
        len(samples) / 8000)


def test_a_waiting_caller_gets_183_with_the_boxes_sdp_and_no_180() -> None:
    o, invite, port = waiting_caller()
    statuses = [r.status for r in o.provider.responses() if r.call_id == invite.call_id]
    assert 180 not in statuses and 183 in statuses
    early = [r for r in o.provider.responses() if r.status == 183][-1]
    choice = sdp.accept_answer(early.body)
    assert (choice.remote_host, choice.codec, choice.telephone_event_pt) == (
        GATEWAY.host, "PCMA", 101)


def test_the_waiting_caller_hears_ringback_then_position_and_callback_offer() -> None:
    o, invite, port = waiting_caller()
    o.net.advance(1.0)
    ringback = g711.pcm_samples(pcm_of(heard_by(o, CALLER_RTP)))
    assert 415 <= rising_per_s(ringback[800:7200]) <= 435
    o.net.advance(tones.RINGBACK_CYCLE_S + 6.0)
    heard = pcm_of(heard_by(o, CALLER_RTP))
    for name in ("queue_position", "number_1", "callback_offer"):
        prompt = g711.alaw_decode(g711.alaw_encode(prompts.prompt("en", name)))
        assert prompt[800:1600] in heard, f"{name} not heard"


def test_a_key_in_the_rtp_requests_the_callback() -> None:
    o, invite, port = waiting_caller()
    for i, end in enumerate((False, False, True, True, True)):
        o.net.advance(0.02)
        o.net.gateway.receive_rtp(port, RtpPacket(
            payload_type=101, sequence=500 + i, timestamp=8000, ssrc=9, marker=i == 0,
            payload=TelephoneEvent(event=1, end=end, volume=10, duration=160 * (i + 1))
            .to_bytes()).to_bytes(), o.net.now)
        o.net.pump()
    finals = [r.status for r in o.provider.responses()
              if r.call_id == invite.call_id and r.status >= 200]
    assert finals == [480]
    waiting = [e for q in o.net.status()["queues"] for e in q["waiting"]]  # type: ignore[union-attr]
    assert [(e["callback"]) for e in waiting] == [True]
    assert o.net.gateway.local_media == {}  # the caller's ports are given back


def answered_by_member() -> tuple[Office, Request, int, int]:
    o, invite, port = waiting_caller()
    o.net.gateway.set_agent_status("101", "on_line", source="cli", now=o.net.now)
    o.net.pump()
    leg_invite = o.phones["101"].ringing_invite()
    answer_with_sdp(o.phones["101"], MEMBER_SDP)
    member_port = sdp.SessionDescription.parse(leg_invite.body).media[0].port
    return o, invite, port, member_port


def test_the_member_gets_the_boxes_offer_preferring_the_callers_law() -> None:
    o, invite, port = waiting_caller()
    o.net.gateway.set_agent_status("101", "on_line", source="cli", now=o.net.now)
    o.net.pump()
    offer = sdp.SessionDescription.parse(o.phones["101"].ringing_invite().body)
    assert offer.connection == GATEWAY.host
    assert offer.media[0].formats == ("8", "0", "101") and offer.media[0].port != port


def test_the_callers_200_repeats_the_183s_answer() -> None:
    o, invite, port, _ = answered_by_member()
    responses = [r for r in o.provider.responses() if r.call_id == invite.call_id]
    early = next(r for r in responses if r.status == 183)
    final = next(r for r in responses if r.status == 200)
    assert final.body == early.body


def test_media_is_bridged_both_ways_transcoding_between_the_laws() -> None:
    o, invite, port, member_port = answered_by_member()
    o.net.rtp_to_send()
    tone = g711.pcm_bytes(array("h", (int(6000 * math.sin(2 * math.pi * 440 * i / 8000))
                                      for i in range(160))))
    o.net.gateway.receive_rtp(port, RtpPacket(payload_type=8, sequence=1, timestamp=160,
                                              ssrc=7, payload=g711.alaw_encode(tone))
                              .to_bytes(), o.net.now)
    [(from_port, to_member)] = heard_by(o, MEMBER_RTP)
    assert from_port == member_port and to_member.payload_type == 0
    assert to_member.ssrc == 7 and to_member.sequence == 1
    assert to_member.payload == g711.ulaw_encode(g711.alaw_decode(g711.alaw_encode(tone)))
    o.net.gateway.receive_rtp(member_port, RtpPacket(payload_type=0, sequence=9, timestamp=0,
                                                     ssrc=8, payload=b"\xff" * 160)
                              .to_bytes(), o.net.now)
    [(from_port, to_caller)] = heard_by(o, CALLER_RTP)
    assert from_port == port and to_caller.payload_type == 8


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_a_hold_offer_from_the_member_is_answered_by_the_box(method: str) -> None:
    o, invite, port, member_port = answered_by_member()
    member = o.phones["101"]
    entry = list(member.incoming.values())[-1]
    hold = MEMBER_SDP.replace(b"a=sendrecv", b"a=sendonly")
    reinvite = request(method, str(entry.invite.contacts[0].uri), [
        ("Via", member.via()), ("Max-Forwards", "70"),
        ("From", f"{entry.invite.headers.get('To')};tag={entry.tag}"),
        ("To", entry.invite.headers.get("From") or ""),
        ("Call-ID", entry.invite.call_id), ("CSeq", f"2 {method}"),
        ("Contact", f"<sip:101@{PHONE_ADDRESSES['101'].host}>"),
        ("Content-Type", "application/sdp"),
    ], hold)
    before = len(o.provider.requests(method))
    member.send(reinvite)
    answer = [r for r in member.responses(method) if r.call_id == entry.invite.call_id][-1]
    assert answer.status == 200 and b"a=recvonly" in answer.body
    assert len(o.provider.requests(method)) == before  # the caller is not bothered
    o.net.rtp_to_send()
    o.net.gateway.receive_rtp(port, RtpPacket(payload_type=8, sequence=2, timestamp=320,
                                              ssrc=7, payload=b"\xd5" * 160).to_bytes(),
                              o.net.now)
    assert heard_by(o, MEMBER_RTP) == []  # on hold: nothing goes to the member


def test_ports_are_given_back_when_the_bridged_call_ends() -> None:
    o, invite, port, member_port = answered_by_member()
    assert set(o.net.gateway.local_media) == {port, member_port}
    o.provider.bye(invite)
    assert o.net.gateway.local_media == {}
    assert o.net.calls() == []


def test_voicemail_after_waiting_reuses_the_early_session_and_answer() -> None:
    config = copy.deepcopy(QUEUE)
    config["departments"][-1]["queue"]["max_wait_s"] = 10  # type: ignore[index]
    o, invite, port = waiting_caller(config)
    o.net.advance(11.0)
    responses = [r for r in o.provider.responses() if r.call_id == invite.call_id]
    early = next(r for r in responses if r.status == 183)
    final = next(r for r in responses if r.status == 200)
    assert final.body == early.body
    assert set(o.net.gateway.local_media) == {port}
    o.net.advance(1.0)
    heard = pcm_of(heard_by(o, CALLER_RTP))
    greeting = g711.alaw_decode(g711.alaw_encode(prompts.prompt("en", "voicemail_greeting")))
    assert greeting[1600:3200] in heard


def test_announcements_can_be_turned_off_for_plain_ringing() -> None:
    config = copy.deepcopy(QUEUE)
    config["departments"][-1]["queue"]["announce_s"] = 0  # type: ignore[index]
    o = office(config=config)
    o.net.gateway.set_agent_status("101", "break", source="cli", now=o.net.now)
    invite = o.provider.call(QUEUE_DID, sdp=CALLER_SDP)
    statuses = [r.status for r in o.provider.responses() if r.call_id == invite.call_id]
    assert 180 in statuses and 183 not in statuses
    assert o.net.gateway.local_media == {}
