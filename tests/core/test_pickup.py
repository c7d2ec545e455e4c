"""Call pickup through the sans-IO gateway (issue 14): `*8` takes the call ringing a colleague of
one's departments longest, `**EXT` the call ringing extension EXT; the picker's INVITE becomes
the answering party — the other ringing phones are cancelled, the caller and the picker get
each other's SDP, the record and the agent figures name the picker."""

from __future__ import annotations

import pytest

from firmware.media import sdp
from firmware.media.rtp import RtpPacket
from firmware.sip.message import Request, Response
from firmware.store.config import ConfigError, config_to_dict, parse_config
from tests.core.network import (
    GATEWAY,
    IN_ORDER_DID,
    RING_ALL_DID,
    SLOW_DID,
    Office,
    Peer,
    authorised_call,
    config_with,
    office,
    waiting_with_request,
)
from tests.core.test_queue_media import CALLER_RTP, heard_by, waiting_caller

# Department 500 puts everyone together: 103 is a colleague of 101 and 102 there (and of
# nobody in the standard office, where it is alone in department 400).
TOGETHER = config_with([{"number": "500", "name": "Office", "strategy": "ring_all",
                         "ring_timeout_s": 30, "members": ["101", "102", "103"]}], [])
PROVIDER_SDP = (b"v=0\r\no=p 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
                b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
                b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n")


def picker_sdp(phone: Peer) -> bytes:
    host = phone.address.host
    return (f"v=0\r\no=pk 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\n").encode()


def send_authorised(phone: Peer, dialed: str, body: bytes) -> Request:
    """A phone's INVITE with `body`, challenged and sent again with credentials."""
    return authorised_call(phone, dialed, sdp=body)[0]


def dial(phone: Peer, dialed: str, *, with_sdp: bool = True) -> tuple[Request, Response]:
    """`send_authorised` with the phone's SDP (or none); the INVITE and its final answer."""
    invite = send_authorised(phone, dialed, picker_sdp(phone) if with_sdp else b"")
    final = final_of(phone, invite)
    assert final is not None, "the pickup INVITE got no final answer"
    return invite, final


def final_of(peer: Peer, invite: Request) -> Response | None:
    finals = [r for r in peer.responses() if r.call_id == invite.call_id and r.status >= 200
              and r.cseq.seq == invite.cseq.seq]
    return finals[-1] if finals else None


def cancelled(phone: Peer) -> int:
    return len(phone.requests("CANCEL"))


def test_star8_picks_the_call_ringing_a_colleague_and_the_others_stop_ringing() -> None:
    o = office(config=TOGETHER)
    caller = o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)  # rings 101 and 102
    o.net.advance(3.0)
    invite, final = dial(o.phones["103"], "*8")
    assert final.status == 200
    assert final.body == PROVIDER_SDP  # the picker gets the caller's media
    answered = final_of(o.provider, caller)
    assert answered is not None and answered.status == 200
    assert answered.body == picker_sdp(o.phones["103"])  # and the caller the picker's
    assert (cancelled(o.phones["101"]), cancelled(o.phones["102"])) == (1, 1)
    assert [(c["state"], c["answered_by"]) for c in o.net.calls()] == [("answered", "103")]
    assert o.net.gateway.agents.agent("103").calls_in_progress == 1


def test_the_picked_call_is_recorded_answered_by_the_picker_and_counts_for_them() -> None:
    o = office(config=TOGETHER)
    caller = o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)
    o.net.advance(2.0)
    invite, _ = dial(o.phones["103"], "*8")
    o.net.advance(30.0)
    o.phones["103"].bye(invite)
    assert len(o.provider.requests("BYE")) == 1  # the caller is hung up on
    (row, legs), = o.rows
    assert (row["answered_by"], row["outcome"], row["department"]) == ("103", "answered", "200")
    assert {(leg["target"], leg["result"]) for leg in legs} == {
        ("101", "cancelled"), ("102", "cancelled"), ("103", "answered")}
    agent = o.net.gateway.agents.agent("103")
    assert (agent.calls_answered, agent.calls_in_progress, agent.talk_time_s) == (1, 0, 30.0)
    assert caller.call_id == row["sip_call_id"]


def test_requests_inside_the_picked_call_are_relayed_between_caller_and_picker() -> None:
    o = office(config=TOGETHER)
    caller = o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)
    dial(o.phones["103"], "*8")
    o.provider.bye(caller)
    assert len(o.phones["103"].requests("BYE")) == 1
    (row, _), = o.rows
    assert row["end_cause"] == "hangup by caller"


def test_the_longest_ringing_call_is_picked_first_then_the_next() -> None:
    o = office(config=TOGETHER)
    first = o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)
    o.net.advance(5.0)
    second = o.provider.call(IN_ORDER_DID, sdp=PROVIDER_SDP)
    o.net.advance(1.0)
    dial(o.phones["103"], "*8")
    assert final_of(o.provider, first).status == 200  # type: ignore[union-attr]
    assert final_of(o.provider, second) is None
    dial(o.phones["103"], "*8")
    assert final_of(o.provider, second).status == 200  # type: ignore[union-attr]


def test_directed_pickup_takes_the_call_ringing_that_extension() -> None:
    o = office(config=TOGETHER)
    longer = o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)  # 101 and 102
    o.net.advance(5.0)
    wanted = o.provider.call(SLOW_DID, sdp=PROVIDER_SDP)  # 103
    _, final = dial(o.phones["101"], "**103")
    assert final.status == 200
    assert final_of(o.provider, wanted).status == 200  # type: ignore[union-attr]
    assert final_of(o.provider, longer) is None
    assert cancelled(o.phones["103"]) == 1
    answered = [c["answered_by"] for c in o.net.calls() if c["state"] == "answered"]
    assert answered == ["101"]


def test_directed_pickup_of_someone_outside_ones_departments_is_forbidden() -> None:
    o = office()
    o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)
    _, final = dial(o.phones["103"], "**101")
    assert (final.status, final.reason) == (403, "Not in your department")
    assert cancelled(o.phones["101"]) == 0


def test_directed_pickup_of_no_extension_is_404() -> None:
    o = office(config=TOGETHER)
    assert dial(o.phones["103"], "**999")[1].status == 404


def test_nothing_ringing_is_480_with_a_reason_the_phone_shows() -> None:
    o = office(config=TOGETHER)
    _, final = dial(o.phones["103"], "*8")
    assert (final.status, final.reason) == (480, "Nothing to pick up")
    assert o.rows == []


def test_a_call_ringing_no_colleague_is_not_picked() -> None:
    o = office()  # 103 is alone in department 400
    caller = o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)
    _, final = dial(o.phones["103"], "*8")
    assert (final.status, final.reason) == (480, "Nothing to pick up")
    assert final_of(o.provider, caller) is None
    assert (cancelled(o.phones["101"]), cancelled(o.phones["102"])) == (0, 0)


def test_a_second_picker_gets_480() -> None:
    o = office(config=TOGETHER)
    o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)
    assert dial(o.phones["103"], "*8")[1].status == 200
    _, late = dial(o.phones["101"], "*8")
    assert (late.status, late.reason) == (480, "Nothing to pick up")
    assert [c["answered_by"] for c in o.net.calls()] == ["103"]


def test_a_ringing_member_may_pick_up_the_call_ringing_them() -> None:
    o = office(config=TOGETHER)
    caller = o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)
    _, final = dial(o.phones["101"], "*8")
    assert final.status == 200
    assert final_of(o.provider, caller).status == 200  # type: ignore[union-attr]
    assert (cancelled(o.phones["101"]), cancelled(o.phones["102"])) == (1, 1)
    assert [c["answered_by"] for c in o.net.calls()] == ["101"]


def test_a_call_the_caller_gave_up_is_not_picked() -> None:
    o = office(config=TOGETHER)
    caller = o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)
    o.provider.cancel(caller)
    assert dial(o.phones["103"], "*8")[1].status == 480


def test_a_picker_without_sdp_is_refused_and_the_call_keeps_ringing() -> None:
    o = office(config=TOGETHER)
    caller = o.provider.call(RING_ALL_DID, sdp=PROVIDER_SDP)
    _, final = dial(o.phones["103"], "*8", with_sdp=False)
    assert (final.status, final.reason) == (488, "Pickup needs an SDP offer")
    assert final_of(o.provider, caller) is None
    assert [c["state"] for c in o.net.calls()] == ["ringing"]


def late_offer_pickup() -> tuple[Office, Request, Request]:
    """The caller made no offer: the picker's SDP goes to the caller in the 200; the picker's
    200 waits for the caller's ACK."""
    o = office(config=TOGETHER)
    o.provider.acks_2xx = False
    caller = o.provider.call(RING_ALL_DID)
    authorised = send_authorised(o.phones["103"], "*8", picker_sdp(o.phones["103"]))
    return o, caller, authorised


def test_a_late_offer_callers_ack_completes_the_pickers_200() -> None:
    o, caller, invite = late_offer_pickup()
    offered = final_of(o.provider, caller)
    assert offered is not None and offered.body == picker_sdp(o.phones["103"])
    assert final_of(o.phones["103"], invite) is None
    ack = o.provider._ack_for_2xx(o.provider.outgoing[0], offered)
    ack.body = PROVIDER_SDP
    ack.headers.set("Content-Type", "application/sdp")
    o.provider.send(ack)
    final = final_of(o.phones["103"], invite)
    assert final is not None and (final.status, final.body) == (200, PROVIDER_SDP)


def test_the_caller_hanging_up_before_the_pickers_200_gets_the_picker_480() -> None:
    o, caller, invite = late_offer_pickup()
    o.provider.bye(caller)
    final = final_of(o.phones["103"], invite)
    assert final is not None and (final.status, final.reason) == (480, "Call ended")
    assert o.net.calls() == []


def test_a_queued_call_is_not_picked() -> None:
    o, invite, _ = waiting_caller()  # 101 on break: the caller waits in 950's queue
    _, final = dial(o.phones["102"], "*8")  # 102 shares department 200 with 101
    assert final.status == 480
    assert [c["state"] for c in o.net.calls()] == ["queued"]


def test_a_call_whose_media_the_box_holds_is_joined_to_the_picker() -> None:
    o, invite, caller_port = waiting_caller()
    o.net.gateway.set_agent_status("101", "on_line", source="cli", now=o.net.now)
    o.net.pump()  # the queue rings 101 with the box's offer
    _, final = dial(o.phones["102"], "*8")
    assert final.status == 200
    offer = sdp.SessionDescription.parse(final.body)
    assert offer.connection == GATEWAY.host  # the box's side of the anchored call
    responses = [r for r in o.provider.responses() if r.call_id == invite.call_id]
    early = next(r for r in responses if r.status == 183)
    assert next(r for r in responses if r.status == 200).body == early.body
    o.net.rtp_to_send()
    o.net.gateway.receive_rtp(offer.media[0].port, RtpPacket(
        payload_type=0, sequence=9, timestamp=0, ssrc=8, payload=b"\xff" * 160).to_bytes(),
        o.net.now, ("10.0.0.12", 30000))
    [(from_port, _)] = heard_by(o, CALLER_RTP)  # the picker is heard by the caller
    assert from_port == caller_port


def test_a_ringing_callback_is_not_picked_and_the_reason_says_so() -> None:
    o, _ = waiting_with_request()
    o.net.gateway.set_agent_status("101", "on_line", source="cli", now=o.net.now)
    o.net.pump()  # the box rings 101 for the callback
    assert o.phones["101"].invites()
    _, final = dial(o.phones["102"], "*8")
    assert (final.status, final.reason) == (480, "Nothing to pick up (a callback rings)")


def test_pickup_codes_are_the_sites() -> None:
    config = config_with([], [], site={"pickup_code": "#8", "directed_pickup_prefix": "#9"})
    config["departments"] = TOGETHER["departments"]
    o = office(config=config)
    o.provider.call(SLOW_DID, sdp=PROVIDER_SDP)
    # *8 is no code any more: an external number, out of what 101 may dial.
    assert dial(o.phones["101"], "*8")[1].status == 403
    assert dial(o.phones["101"], "#9103")[1].status == 200


@pytest.mark.parametrize(("site", "key"), [
    ({"pickup_code": "*5"}, "site.pickup_code"),  # the beginning of *50..*54
    ({"pickup_code": "8"}, "site.pickup_code"),  # a number, not a code
    ({"directed_pickup_prefix": "*8*"}, "site.directed_pickup_prefix"),  # begins with *8
])
def test_pickup_codes_that_clash_are_refused_naming_the_key(site: dict[str, str],
                                                            key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(config_with([], [], site=site))
    assert refused.value.path == key


def test_changed_pickup_codes_survive_an_export() -> None:
    config = parse_config(config_with([], [], site={"pickup_code": "#8"}))
    exported = config_to_dict(config)
    assert exported["site"]["pickup_code"] == "#8"
    assert "directed_pickup_prefix" not in exported["site"]
    assert parse_config(exported).site == config.site
