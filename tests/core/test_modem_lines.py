"""A GSM (or FXO) line in the core: its driver's facts in, commands out, its audio bridged to
the phones' RTP — and routing none the wiser (firmware/core/modem_lines.py). The driver is
played by the test with the facts of hal/modem/driver.py; the phones and the provider are the
scripted peers of tests/core/network.py. Time is stepped."""

from __future__ import annotations

from array import array

import pytest

from firmware.core.lines import LineState
from firmware.media import g711, sdp
from firmware.media.rtp import RtpPacket, parse_rtp
from firmware.sip.message import make_response
from hal.modem.driver import (
    CallEnded,
    IncomingCall,
    KeyPressed,
    ModemStatus,
    RemoteAnswered,
    RemoteRinging,
    SmsReceived,
    StatusChanged,
)
from tests.core.network import (
    CONFIG,
    PROVIDER,
    Office,
    answer_with_sdp,
    authorised_call,
    office,
    request,
)

SIM_NUMBER = "+79161112233"
CALLER = "+79160000001"
UP = ModemStatus(state="up", reason="registered (home)", registration="home", signal_dbm=-71,
                 operator="MTS", imei="861234567890123", sim="ready", port="/dev/ttyUSB0")


def config(order: list[str]) -> dict[str, object]:
    return {
        **CONFIG,
        "trunks": [*CONFIG["trunks"],  # type: ignore[list-item]
                   {"name": "mts", "type": "gsm", "port": "/dev/ttyUSB0", "modem": "huawei",
                    "number": SIM_NUMBER}],
        "numbers": [*CONFIG["numbers"],  # type: ignore[list-item]
                    {"number": SIM_NUMBER, "trunk": "mts", "destination": "200"}],
        "failover": {"order": order},
    }


@pytest.fixture
def gsm() -> Office:
    o = office(config=config(["provider", "mts"]))
    o.net.gateway.modem_fact(StatusChanged(line="mts", status=UP), o.net.now)
    o.net.pump()
    return o


def phone_sdp(port: int) -> bytes:
    return (f"v=0\r\no=- 1 1 IN IP4 10.0.0.11\r\ns=-\r\nc=IN IP4 10.0.0.11\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n").encode()


def box_port(body: bytes) -> int:
    choice = sdp.accept_answer(body)
    return choice.remote_port


def ramp() -> bytes:
    return g711.pcm_bytes(array("h", (i * 64 for i in range(160))))


def commands(o: Office) -> list[tuple[str, str]]:
    o.net.pump()
    return [(c.action, c.number) for c in o.net.modem_commands]


def test_a_modem_line_is_down_until_its_driver_says_otherwise_then_shows_its_details() -> None:
    o = office(config=config(["provider", "mts"]))
    [mts] = [line for line in o.net.status()["lines"] if line["name"] == "mts"]  # type: ignore[union-attr,index]
    assert (mts["kind"], mts["state"], mts["reason"], mts["channels"]) == (
        "gsm", "down", "starting", 1)
    o.net.gateway.modem_fact(StatusChanged(line="mts", status=UP), 1.0)
    [mts] = [line for line in o.net.status()["lines"] if line["name"] == "mts"]  # type: ignore[union-attr,index]
    assert (mts["state"], mts["signal_dbm"], mts["operator"], mts["registration"], mts["imei"],
            mts["sim"]) == ("up", -71, "MTS", "home", "861234567890123", "ready")


def test_an_incoming_gsm_call_rings_the_department_with_the_callers_number(gsm: Office) -> None:
    gsm.net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), gsm.net.now)
    gsm.net.pump()
    for number in ("101", "102"):
        invite = gsm.phones[number].ringing_invite()
        assert invite.from_.uri.user == CALLER
        assert box_port(invite.body) > 0  # the box's offer: the line's audio is the box's
    assert commands(gsm) == []  # nobody answered: the caller hears the network ringing, free


def test_the_member_answering_answers_the_modem_and_audio_flows_both_ways(gsm: Office) -> None:
    net = gsm.net
    net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), net.now)
    net.pump()
    port = box_port(gsm.phones["101"].ringing_invite().body)
    answer_with_sdp(gsm.phones["101"], phone_sdp(40000))
    assert commands(gsm) == [("answer", "")]
    assert gsm.phones["102"].requests("CANCEL")
    net.rtp_to_send()
    net.gateway.line_audio("mts", ramp(), net.now)
    [(from_port, datagram, destination)] = net.rtp_to_send()
    assert (from_port, destination) == (port, ("10.0.0.11", 40000))
    assert parse_rtp(datagram).payload == g711.ulaw_encode(ramp())
    for sequence in (1, 2):  # the line's jitter buffer starts on 40 ms
        spoken = RtpPacket(payload_type=0, sequence=sequence, timestamp=160 * sequence, ssrc=9,
                           payload=g711.ulaw_encode(ramp())).to_bytes()
        net.gateway.receive_rtp(port, spoken, net.now, ("10.0.0.11", 40000))
    assert net.gateway.line_frame("mts") == g711.ulaw_decode(g711.ulaw_encode(ramp()))


def test_the_gsm_caller_hanging_up_ends_the_call_with_a_bye_and_a_record(gsm: Office) -> None:
    net = gsm.net
    net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), net.now)
    net.pump()
    answer_with_sdp(gsm.phones["101"], phone_sdp(40000))
    net.advance(30)
    net.gateway.modem_fact(CallEnded(line="mts", cause="far end hung up"), net.now)
    net.pump()
    assert gsm.phones["101"].requests("BYE")
    [(row, legs)] = gsm.rows
    assert (row["source"], row["caller"], row["dialed"], row["outcome"], row["end_cause"]) == (
        "gsm:mts", CALLER, SIM_NUMBER, "answered", "hangup by caller")
    assert net.gateway.line_frame("mts") is None  # no call on the line any more


def test_the_gsm_caller_giving_up_while_phones_ring_cancels_them(gsm: Office) -> None:
    net = gsm.net
    net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), net.now)
    net.pump()
    net.gateway.modem_fact(CallEnded(line="mts", cause="caller hung up", status=487), net.now)
    net.pump()
    assert gsm.phones["101"].requests("CANCEL") and gsm.phones["102"].requests("CANCEL")
    [(row, _)] = gsm.rows
    assert row["outcome"] == "missed" and commands(gsm) == []  # the line is already free


def test_a_withheld_number_is_anonymous(gsm: Office) -> None:
    gsm.net.gateway.modem_fact(IncomingCall(line="mts", caller=None, reason="private"),
                               gsm.net.now)
    gsm.net.pump()
    assert gsm.phones["101"].ringing_invite().from_.uri.user == "anonymous"


def test_a_blacklisted_gsm_caller_is_hung_up_on_and_recorded() -> None:
    o = office(config={**config(["provider", "mts"]),
                       "rules": [{"match": CALLER, "action": "blacklist"}]})
    o.net.gateway.modem_fact(StatusChanged(line="mts", status=UP), 0.0)
    o.net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), 0.0)
    assert commands(o) == [("hang_up", "")]
    [(row, _)] = o.rows
    assert (row["source"], row["outcome"]) == ("gsm:mts", "blacklisted")
    assert not o.phones["101"].invites()


def test_a_key_pressed_while_waiting_reaches_the_queue_like_a_sip_callers(gsm: Office) -> None:
    gsm.net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), gsm.net.now)
    gsm.net.gateway.modem_fact(KeyPressed(line="mts", key="5"), gsm.net.now)
    gsm.net.pump()
    assert gsm.phones["101"].ringing_invite()  # nothing broke; the call still rings


def test_calls_out_take_the_first_line_that_is_up_in_the_failover_order() -> None:
    o = office(config=config(["mts", "provider"]))
    o.net.gateway.modem_fact(StatusChanged(line="mts", status=UP), 0.0)
    authorised_call(o.phones["101"], "89161234567")
    assert commands(o) == [("dial", "89161234567")]
    assert not o.provider.invites()
    o.net.gateway.modem_fact(RemoteRinging(line="mts"), 1.0)
    o.net.pump()
    assert 180 in [r.status for r in o.phones["101"].responses()]
    o.net.gateway.modem_fact(RemoteAnswered(line="mts"), 5.0)
    o.net.pump()
    final = o.phones["101"].responses()[-1]
    assert final.status == 200 and box_port(final.body) > 0
    o.phones["101"].bye(o.phones["101"].outgoing[-1].invite)
    assert commands(o)[-1] == ("hang_up", "")
    [(row, legs)] = o.rows
    assert (row["direction"], row["outcome"], legs[0]["target"]) == (
        "outbound", "answered", "89161234567")


def test_a_line_that_is_down_is_skipped_at_once_for_calls_out() -> None:
    o = office(config=config(["mts", "provider"]))  # mts never came up
    authorised_call(o.phones["101"], "89161234567")
    assert commands(o) == []
    assert o.provider.invites()


def test_a_busy_far_end_gives_the_phone_busy(gsm: Office) -> None:
    o = office(config=config(["mts", "provider"]))
    o.net.gateway.modem_fact(StatusChanged(line="mts", status=UP), 0.0)
    authorised_call(o.phones["101"], "89161234567")
    o.net.gateway.modem_fact(CallEnded(line="mts", cause="busy", status=486), 2.0)
    o.net.pump()
    assert o.phones["101"].final_statuses()[-1] == 486


def test_an_sms_is_handed_on_to_be_kept(gsm: Office) -> None:
    gsm.net.gateway.modem_fact(SmsReceived(line="mts", sender="+79160000001",
                                           text="Перезвоните", received_at=1.7e9), 0.0)
    [sms] = gsm.net.recorder.sms_received
    assert (sms.line, sms.sender, sms.text) == ("mts", "+79160000001", "Перезвоните")


def test_a_fact_from_an_unknown_line_changes_nothing(gsm: Office) -> None:
    gsm.net.gateway.modem_fact(IncomingCall(line="nope", caller=CALLER), 0.0)
    gsm.net.pump()
    assert not gsm.phones["101"].invites()
    assert gsm.net.gateway.lines.modem("mts") is not None
    assert gsm.net.gateway.lines.modem("mts").state(0.0)[0] is LineState.UP  # type: ignore[union-attr]
    assert PROVIDER  # the SIP provider stays configured beside the modem line


# ---------------------------------------------------------------------------- failover
def outbound(o: Office) -> str | None:
    return o.net.status()["outbound_line"]  # type: ignore[return-value]


def test_a_silent_provider_hands_calls_out_to_the_reserve_within_the_promised_time(
    gsm: Office,
) -> None:
    net = gsm.net
    net.advance(6)
    assert gsm.provider.requests("OPTIONS"), "the provider is probed"
    assert outbound(gsm) == "provider"
    gsm.provider.silent = True
    went_silent = net.now
    for _ in range(200):
        net.advance(0.1)
        if outbound(gsm) == "mts":
            break
    switched_after = net.now - went_silent
    print(f"silent provider → reserve after {switched_after:.1f} s (bound 5 × 2 + 1 = 11 s)")
    assert outbound(gsm) == "mts" and switched_after <= 11.0
    assert [(s.old, s.new) for s in net.failover_switches] == [("provider", "mts")]
    [provider] = [line for line in net.status()["lines"]  # type: ignore[union-attr]
                  if line["name"] == "provider"]
    assert provider["state"] == "down"


def test_the_provider_answering_again_takes_calls_back_after_three_good_probes(
    gsm: Office,
) -> None:
    net = gsm.net
    gsm.provider.silent = True
    net.advance(12)
    assert outbound(gsm) == "mts"
    gsm.provider.silent = False
    back = net.now
    net.advance(4)  # the pending probe answered at most: one good probe
    assert outbound(gsm) == "mts"
    for _ in range(200):
        net.advance(0.1)
        if outbound(gsm) == "provider":
            break
    print(f"provider answering again → back after {net.now - back:.1f} s (3 good probes)")
    assert outbound(gsm) == "provider" and net.now - back <= 3 * 5 + 1


def test_losing_the_default_route_hands_calls_out_to_the_reserve_at_once(gsm: Office) -> None:
    net = gsm.net
    net.gateway.network_fact(lambda monitor: monitor.default_route_lost(net.now), net.now)
    assert outbound(gsm) == "mts"
    internet = net.status()["internet"]
    assert internet["state"] == "down" and "route" in internet["reason"]  # type: ignore[index]


def test_without_a_line_to_switch_to_the_provider_is_not_probed() -> None:
    o = office()
    o.net.advance(30)
    assert not o.provider.requests("OPTIONS")


def test_a_key_the_member_presses_is_sent_on_the_line(gsm: Office) -> None:
    net = gsm.net
    net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), net.now)
    net.pump()
    port = box_port(gsm.phones["101"].ringing_invite().body)
    answer_with_sdp(gsm.phones["101"], phone_sdp(40000))
    event = RtpPacket(payload_type=101, sequence=5, timestamp=800, ssrc=9,
                      payload=bytes([7, 0x80 | 10, 3, 32])).to_bytes()  # key 7, end, 800 units
    net.gateway.receive_rtp(port, event, net.now, ("10.0.0.11", 40000))
    net.gateway.line_frame("mts")
    assert ("dtmf", "") in commands(gsm)
    assert [c.key for c in net.modem_commands if c.action == "dtmf"] == ["7"]


# ---------------------------------------------------------------------------- found in review
def test_a_call_the_member_ends_gives_its_rtp_port_back(gsm: Office) -> None:
    net = gsm.net
    for _ in range(3):
        net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), net.now)
        net.pump()
        answer_with_sdp(gsm.phones["101"], phone_sdp(40000))
        gsm.phones["101"].hang_up()
        net.advance(1)
    assert net.gateway._media_open == set()
    assert commands(gsm).count(("hang_up", "")) == 3


def test_a_ringing_phones_early_media_does_not_answer_the_gsm_caller(gsm: Office) -> None:
    net = gsm.net
    net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), net.now)
    net.pump()
    phone = gsm.phones["101"]
    invite = phone.ringing_invite()
    entry = phone.incoming[invite.top_via.branch or ""]
    early = make_response(invite, 183, to_tag=entry.tag, headers=[
        ("Contact", "<sip:101@10.0.0.11:5060>"), ("Content-Type", "application/sdp")],
        body=phone_sdp(40002))
    phone.send(early)
    assert commands(gsm) == []  # the caller still hears the network ringing, free


def test_hold_and_keys_from_the_phone_are_answered_by_the_box_for_the_line(
    gsm: Office,
) -> None:
    net = gsm.net
    net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), net.now)
    net.pump()
    invite = gsm.phones["101"].ringing_invite()
    answer_with_sdp(gsm.phones["101"], phone_sdp(40000))
    entry = gsm.phones["101"].incoming[invite.top_via.branch or ""]
    in_dialog = [("Via", gsm.phones["101"].via()), ("Max-Forwards", "70"),
                 ("From", f"{invite.headers.get('To')};tag={entry.tag}"),
                 ("To", invite.headers.get("From") or ""), ("Call-ID", invite.call_id)]
    contact = str(invite.contacts[0].uri)
    hold = request("INVITE", contact, [*in_dialog, ("CSeq", "2 INVITE"),
                                       ("Contact", "<sip:101@10.0.0.11:5060>"),
                                       ("Content-Type", "application/sdp")],
                   phone_sdp(40000).replace(b"a=sendrecv", b"a=sendonly"))
    gsm.phones["101"].send(hold)
    reply = gsm.phones["101"].responses()[-1]
    assert reply.status == 200 and b"m=audio" in reply.body
    info = request("INFO", contact, [*in_dialog, ("CSeq", "3 INFO"),
                                     ("Content-Type", "application/dtmf-relay")],
                   b"Signal=4\r\nDuration=160\r\n")
    gsm.phones["101"].send(info)
    assert gsm.phones["101"].responses("INFO")[-1].status == 200
    assert [c.key for c in net.modem_commands if c.action == "dtmf"] == ["4"]


def test_the_modems_echo_of_an_earlier_hang_up_does_not_end_the_next_call() -> None:
    o = office(config=config(["mts", "provider"]))
    o.net.gateway.modem_fact(StatusChanged(line="mts", status=UP), 0.0)
    first, _ = authorised_call(o.phones["101"], "89161234567")
    o.phones["101"].cancel(first)
    assert o.phones["101"].final_statuses()[-1] == 487
    authorised_call(o.phones["102"], "89167654321")
    o.net.gateway.modem_fact(CallEnded(line="mts", cause="hung up by the box",
                                       by_far_end=False), 1.0)
    o.net.gateway.modem_fact(RemoteAnswered(line="mts"), 2.0)
    o.net.pump()
    assert o.phones["102"].final_statuses()[-1] == 200


def test_a_route_blip_does_not_leave_a_lone_provider_down_for_calls_out() -> None:
    o = office()  # one SIP trunk, no line to switch to: no probes
    net = o.net
    net.gateway.network_fact(lambda monitor: monitor.default_route_lost(net.now), net.now)
    net.gateway.network_fact(lambda monitor: monitor.default_route_present(net.now), net.now)
    net.advance(60)
    assert outbound(o) == "provider"
    authorised_call(o.phones["101"], "89161234567")
    assert o.provider.invites()


def test_a_key_the_gsm_caller_presses_reaches_the_member_as_rfc_4733(gsm: Office) -> None:
    net = gsm.net
    net.gateway.modem_fact(IncomingCall(line="mts", caller=CALLER), net.now)
    net.pump()
    answer_with_sdp(gsm.phones["101"], phone_sdp(40000))
    net.rtp_to_send()
    net.gateway.modem_fact(KeyPressed(line="mts", key="3"), net.now)
    packets = [parse_rtp(datagram) for _, datagram, _ in net.rtp_to_send()]
    assert [p.payload_type for p in packets] == [101, 101, 101, 101]
    assert {p.payload[0] for p in packets} == {3}
    assert [bool(p.payload[1] & 0x80) for p in packets] == [False, True, True, True]
