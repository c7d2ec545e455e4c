"""Voicemail and the callback apology through the sans-IO gateway: the box answers with its own
SDP, plays the greeting and the tone over RTP, records what the caller says, and ends on BYE,
'#' (RFC 4733 or SIP INFO), silence or the length limit. Time is stepped; the caller's RTP is
built here and handed to `receive_rtp`, and what the box sends is read from `rtp_to_send`."""

from __future__ import annotations

import copy
import math
from array import array

import pytest

from firmware.media import g711, prompts, sdp
from firmware.media.dtmf import detect_block
from firmware.media.rtp import RtpPacket, TelephoneEvent, parse_rtp
from firmware.sip.message import Request
from firmware.store.config import ConfigError, parse_config
from firmware.voicemail import DEFAULT_SILENCE_S, VoicemailMessage
from tests.core.network import (
    CALLBACK,
    CALLBACK_DID,
    EXPIRE_S,
    GATEWAY,
    PROVIDER,
    Office,
    answer_with_sdp,
    config_with,
    office,
    press,
    request,
    waiting_with_request,
)

VOICEMAIL_DID = "+74950000900"
CALLER_RTP = ("127.0.0.2", 50000)
CALLER_SDP = (b"v=0\r\no=c 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
              b"m=audio 50000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
              b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
              b"a=fmtp:101 0-15\r\na=sendrecv\r\n")
RING_S = 10

VOICEMAIL = config_with(
    [{"number": "900", "name": "Office", "strategy": "ring_all", "ring_timeout_s": RING_S,
      "members": ["101"], "no_answer": {"action": "voicemail"}}],
    [{"number": VOICEMAIL_DID, "trunk": "provider", "channels": 5, "destination": "900"}],
    site={"timezone": "Europe/Moscow", "language": "en"},
)
GREETING_S = len(prompts.prompt("en", "voicemail_greeting")) / 16000
BEEP_S = 0.5


def tone_pcm(frequency_hz: float, seconds: float, amplitude: int = 6000) -> bytes:
    count = int(8000 * seconds)
    return g711.pcm_bytes(array("h", (int(amplitude * math.sin(2 * math.pi * frequency_hz
                                                               * i / 8000))
                                      for i in range(count))))


class Caller:
    """The caller's media end: sends 20 ms PCMA frames, collects what the box sends."""

    def __init__(self, o: Office, port: int) -> None:
        self.o = o
        self.port = port
        self.sequence = 1000
        self.timestamp = 0
        self.heard: list[RtpPacket] = []

    def collect(self) -> None:
        for port, data, destination in self.o.net.rtp_to_send():
            assert port == self.port and destination == CALLER_RTP
            self.heard.append(parse_rtp(data))

    def send(self, packet: RtpPacket) -> None:
        self.o.net.gateway.receive_rtp(self.port, packet.to_bytes(), self.o.net.now)
        self.o.net.pump()

    def say(self, pcm: bytes) -> None:
        """Speak `pcm` in real time: one frame every 20 ms of stepped time."""
        encoded = g711.alaw_encode(pcm)
        for offset in range(0, len(encoded), 160):
            self.o.net.advance(0.02)
            self.collect()
            self.send(RtpPacket(payload_type=8, sequence=self.sequence,
                                timestamp=self.timestamp, ssrc=77,
                                payload=encoded[offset:offset + 160]))
            self.sequence += 1
            self.timestamp += 160

    def press(self, key: str) -> None:
        """An RFC 4733 key press: three updates, then the end packet three times."""
        event = "0123456789*#".index(key)
        for i, end in enumerate((False, False, False, True, True, True)):
            self.o.net.advance(0.02)
            self.collect()
            self.send(RtpPacket(payload_type=101, sequence=self.sequence,
                                timestamp=self.timestamp, ssrc=77, marker=i == 0,
                                payload=TelephoneEvent(event=event, end=end, volume=10,
                                                       duration=160 * min(i + 1, 4)).to_bytes()))
            self.sequence += 1
        self.timestamp += 640

    def wait(self, seconds: float) -> None:
        steps = int(round(seconds / 0.02))
        for _ in range(steps):
            self.o.net.advance(0.02)
            self.collect()

    def wait_for_the_tone(self) -> None:
        """Through the built-in greeting and the tone: what is said now is recorded."""
        self.wait(GREETING_S + BEEP_S + 0.1)

    def heard_pcm(self) -> bytes:
        return b"".join(g711.alaw_decode(p.payload) for p in self.heard)


def reach_voicemail(config: dict[str, object] = VOICEMAIL, *, body: bytes = CALLER_SDP,
                    after_s: float = RING_S) -> tuple[Office, Request, Caller]:
    o = office(config=config)
    invite = o.provider.call(VOICEMAIL_DID, sdp=body)
    o.net.advance(after_s + 0.01)
    answer = [r for r in o.provider.responses() if r.call_id == invite.call_id
              and r.status == 200]
    assert answer, "the box did not answer"
    choice = sdp.accept_answer(answer[-1].body)
    assert choice.remote_host == GATEWAY.host
    caller = Caller(o, choice.remote_port)
    return o, invite, caller


def messages(o: Office) -> list[VoicemailMessage]:
    return list(o.net.recorder.voicemails)


def leave_message(o: Office, invite: Request, caller: Caller, seconds: float
                  ) -> VoicemailMessage:
    """Wait for the tone, say a 440 Hz tone for `seconds`, hang up: the one message kept."""
    caller.wait_for_the_tone()
    caller.say(tone_pcm(440, seconds))
    o.provider.bye(invite)
    [message] = messages(o)
    return message


def test_unanswered_call_reaches_voicemail_which_answers_with_its_own_sdp() -> None:
    o, invite, caller = reach_voicemail()
    answer = [r for r in o.provider.responses() if r.status == 200][-1]
    choice = sdp.accept_answer(answer.body)
    # The caller preferred PCMA and offered telephone-event: both taken (RFC 3264 §6.1).
    assert (choice.codec, choice.payload_type, choice.telephone_event_pt) == ("PCMA", 8, 101)
    assert answer.headers.get("Content-Type") == "application/sdp"
    assert o.phones["101"].requests("CANCEL"), "the member's ringing phone was not stopped"


def test_the_caller_hears_the_greeting_then_a_1khz_tone() -> None:
    o, invite, caller = reach_voicemail()
    caller.wait(GREETING_S + BEEP_S + 0.2)
    heard = g711.pcm_samples(caller.heard_pcm())
    greeting = g711.pcm_samples(g711.alaw_decode(g711.alaw_encode(
        prompts.prompt("en", "voicemail_greeting"))))
    start = heard.tobytes().find(greeting[:400].tobytes())
    assert start >= 0, "the greeting was not played"
    beep = heard[start + len(greeting):start + len(greeting) + 4000]
    frequency = _dominant_frequency(beep[800:1600])
    assert 950 <= frequency <= 1050
    # A steady stream: one packet per 20 ms, consecutive sequence numbers and timestamps.
    sequences = [p.sequence for p in caller.heard]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(sequences, sequences[1:], strict=False))
    assert caller.heard[0].marker and not any(p.marker for p in caller.heard[1:])


def _dominant_frequency(samples: array[int]) -> float:
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if a < 0 <= b)
    return crossings / (len(samples) / 8000)


def test_what_the_caller_says_after_the_tone_is_kept_until_they_hang_up() -> None:
    o, invite, caller = reach_voicemail()
    message = leave_message(o, invite, caller, 3.0)
    assert message.mailbox == "900" and message.caller == "79161234567"
    assert 2.9 <= message.duration_s <= 3.1
    samples = g711.pcm_samples(message.pcm)
    assert 430 <= _dominant_frequency(samples[8000:16000]) <= 450
    row, _ = o.rows[-1]
    assert row["outcome"] == "voicemail" and row["department"] == "900"
    assert o.net.gateway.local_media == {}  # the RTP port is given back
    assert o.net.calls() == []


def test_speaking_during_the_greeting_is_not_recorded() -> None:
    o, invite, caller = reach_voicemail()
    caller.say(tone_pcm(440, 1.0))
    o.provider.bye(invite)
    assert messages(o) == []
    assert o.rows[-1][0]["outcome"] == "missed"


def test_hash_by_rfc4733_ends_the_message_and_the_box_says_goodbye_and_hangs_up() -> None:
    o, invite, caller = reach_voicemail()
    caller.wait_for_the_tone()
    caller.say(tone_pcm(440, 2.0))
    caller.press("#")
    [message] = messages(o)
    assert 1.9 <= message.duration_s <= 2.2
    saved_s = len(prompts.prompt("en", "message_saved")) / 16000
    caller.wait(saved_s + 0.2)
    byes = [r for r in o.provider.requests("BYE") if r.call_id == invite.call_id]
    assert len(byes) == 1
    assert o.rows[-1][0]["outcome"] == "voicemail"
    assert o.net.gateway.local_media == {}


def test_hash_by_sip_info_skips_the_greeting() -> None:
    o, invite, caller = reach_voicemail()
    caller.wait(0.5)
    answer = [r for r in o.provider.responses() if r.status == 200][-1]
    info = request("INFO", str(answer.contacts[0].uri), [
        ("Via", o.provider.via()), ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""), ("To", answer.headers.get("To") or ""),
        ("Call-ID", invite.call_id), ("CSeq", "5 INFO"),
        ("Content-Type", "application/dtmf-relay"),
    ], b"Signal=#\r\nDuration=160\r\n")
    o.provider.send(info)
    next(c for c in o.provider.outgoing if c.invite is invite).cseq = 5  # the BYE follows it
    assert o.provider.responses("INFO")[-1].status == 200
    caller.wait(BEEP_S + 0.1)  # straight to the tone
    caller.say(tone_pcm(440, 1.5))
    o.provider.bye(invite)
    [message] = messages(o)
    assert 1.4 <= message.duration_s <= 1.6


def test_silence_after_speaking_ends_the_message() -> None:
    o, invite, caller = reach_voicemail()
    caller.wait_for_the_tone()
    caller.say(tone_pcm(440, 1.0) + bytes(2 * 8000 * (DEFAULT_SILENCE_S + 1)))
    [message] = messages(o)
    assert DEFAULT_SILENCE_S <= message.duration_s <= DEFAULT_SILENCE_S + 1.5
    caller.wait(4.0)
    assert [r for r in o.provider.requests("BYE") if r.call_id == invite.call_id]


def test_a_caller_who_says_nothing_is_hung_up_on_without_a_message() -> None:
    o, invite, caller = reach_voicemail()
    caller.wait_for_the_tone()
    caller.say(bytes(2 * 8000 * (DEFAULT_SILENCE_S + 1)))
    assert messages(o) == []
    assert [r for r in o.provider.requests("BYE") if r.call_id == invite.call_id]
    assert o.rows[-1][0]["outcome"] == "missed"


def test_an_offer_without_g711_is_refused_with_488() -> None:
    g729_only = (b"v=0\r\no=c 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
                 b"m=audio 50000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n")
    o = office(config=VOICEMAIL)
    o.provider.call(VOICEMAIL_DID, sdp=g729_only)
    o.net.advance(RING_S + 0.01)
    assert o.provider.final_statuses() == [488]
    assert o.net.gateway.local_media == {}


def test_an_invite_without_sdp_gets_our_offer_and_the_ack_brings_the_answer() -> None:
    o = office(config=VOICEMAIL)
    o.provider.acks_2xx = False
    invite = o.provider.call(VOICEMAIL_DID)
    o.net.advance(RING_S + 0.01)
    answer = [r for r in o.provider.responses() if r.status == 200][-1]
    offer = sdp.SessionDescription.parse(answer.body)
    assert offer.media[0].formats == ("0", "8", "101")
    port = offer.media[0].port
    o.net.advance(1.0)
    assert o.net.rtp_to_send() == []  # nothing is played before the answer
    o.provider.send(request("ACK", str(answer.contacts[0].uri), [
        ("Via", o.provider.via()), ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""), ("To", answer.headers.get("To") or ""),
        ("Call-ID", invite.call_id), ("CSeq", "1 ACK"), ("Content-Type", "application/sdp"),
    ], CALLER_SDP.replace(b"RTP/AVP 8 0 101", b"RTP/AVP 0 101")))
    caller = Caller(o, port)
    caller.wait(0.2)
    assert caller.heard and {p.payload_type for p in caller.heard} == {0}


def test_garbage_on_the_rtp_port_is_dropped() -> None:
    o, invite, caller = reach_voicemail()
    o.net.gateway.receive_rtp(caller.port, b"\x00garbage", o.net.now)
    o.net.gateway.receive_rtp(caller.port, b"", o.net.now)
    caller.wait(0.1)
    assert o.net.stats()["internal_errors"] == 0
    assert o.net.calls()


def test_a_scheme_step_can_end_in_an_employees_mailbox() -> None:
    config = copy.deepcopy(VOICEMAIL)
    config["departments"][-1]["no_answer"] = {  # type: ignore[index]
        "steps": [{"to": "102", "time_s": 5}, {"to": "voicemail:101"}]}
    o, invite, caller = reach_voicemail(config, after_s=RING_S + 5)
    assert len(o.phones["102"].invites()) == 1
    assert leave_message(o, invite, caller, 1.2).mailbox == "101"


def test_reaching_the_box_over_capacity_still_answers_486() -> None:
    config = copy.deepcopy(VOICEMAIL)
    config["numbers"][-1]["channels"] = 3  # type: ignore[index]
    o = office(config=config)
    for _ in range(3):
        o.provider.call(VOICEMAIL_DID, sdp=CALLER_SDP)
    o.provider.call(VOICEMAIL_DID, sdp=CALLER_SDP)
    assert 486 in o.provider.final_statuses()


@pytest.mark.parametrize(("no_answer", "message"), [
    ({"steps": [{"to": "voicemail"}, {"to": "102"}]}, "must be the last step"),
    ({"action": "voicemail", "to": "555"}, "unknown mailbox"),
    ({"steps": [{"to": "voicemail:79160000000"}]}, "unknown mailbox"),
])
def test_bad_voicemail_schemes_are_refused_naming_the_key(
    no_answer: dict[str, object], message: str
) -> None:
    config = copy.deepcopy(VOICEMAIL)
    config["departments"][-1]["no_answer"] = no_answer  # type: ignore[index]
    with pytest.raises(ConfigError, match=message):
        parse_config(config)


def test_after_hours_can_go_to_a_mailbox() -> None:
    config = copy.deepcopy(VOICEMAIL)
    config["schedules"] = [{"name": "never", "hours": {}, "after_hours": "voicemail:900"}]
    config["numbers"][-1]["schedule"] = "never"  # type: ignore[index]
    o = office(config=config)
    o.provider.call(VOICEMAIL_DID, sdp=CALLER_SDP)
    assert 200 in o.provider.final_statuses()  # answered at once by the box
    assert o.phones["101"].invites() == []


# ------------------------------------------------------------------ the callback apology

def test_an_expired_callback_calls_the_customer_and_takes_a_message_on_key_1() -> None:
    o, _ = waiting_with_request()
    o.net.advance(EXPIRE_S + 1.0)
    apology = o.provider.ringing_invite()
    assert apology.headers.get("Content-Type") == "application/sdp"
    assert apology.from_.uri.user == CALLBACK_DID  # the office's number is shown
    offer = sdp.SessionDescription.parse(apology.body)
    answer_with_sdp(o.provider, CALLER_SDP.replace(b"RTP/AVP 8 0 101", b"RTP/AVP 8 101"))
    assert o.provider.requests("ACK"), "the 2xx was not acknowledged"
    caller = Caller(o, offer.media[0].port)
    caller.wait(1.0)
    assert caller.heard, "no apology played"
    caller.press("1")
    caller.wait(BEEP_S + 0.2)
    caller.say(tone_pcm(440, 2.0))
    caller.press("#")
    [message] = messages(o)
    assert message.mailbox == "800" and message.caller == "79161234567"
    assert 1.9 <= message.duration_s <= 2.2
    caller.wait(len(prompts.prompt("ru", "message_saved")) / 16000 + 0.5)
    row, legs = o.rows[-1]
    assert (row["direction"], row["source"], row["outcome"]) == ("callback", "apology",
                                                                 "voicemail")
    assert o.net.channels_in_use()["trunk:provider"] == 0


def test_an_apology_nobody_answers_ends_quietly() -> None:
    o, _ = waiting_with_request()
    o.net.advance(EXPIRE_S + 1.0)
    assert o.provider.ringing_invite()
    o.net.advance(30.0)  # the customer's ring time runs out
    assert o.provider.requests("CANCEL")
    assert o.net.calls() == [] and o.net.gateway.local_media == {}
    assert o.rows[-1][0]["outcome"] == "missed"
    assert o.net.channels_in_use()["trunk:provider"] == 0


def test_an_apology_without_a_key_press_says_goodbye() -> None:
    o, _ = waiting_with_request()
    o.net.advance(EXPIRE_S + 1.0)
    apology = o.provider.ringing_invite()
    port = sdp.SessionDescription.parse(apology.body).media[0].port
    answer_with_sdp(o.provider, CALLER_SDP)
    caller = Caller(o, port)
    # The callback office keeps the default language, Russian.
    apology_s = len(prompts.prompt("ru", "callback_apology")) / 16000
    goodbye_s = len(prompts.prompt("ru", "goodbye")) / 16000
    caller.wait(2 * (apology_s + 8.0) + goodbye_s + 0.5)
    assert [r for r in o.provider.requests("BYE") if r.call_id == apology.call_id]
    assert messages(o) == []


def test_the_apology_can_be_turned_off() -> None:
    config = copy.deepcopy(CALLBACK)
    config["departments"][-1]["queue"]["callback"]["apology"] = False  # type: ignore[index]
    o = office(config=config)
    o.net.gateway.set_agent_status("101", "break", source="cli", now=o.net.now)
    invite = o.provider.call(CALLBACK_DID)
    assert press(o.provider, invite, "1") == 200
    o.net.advance(EXPIRE_S + 1.0)
    assert o.provider.invites() == []


def test_inband_dtmf_is_heard_when_telephone_event_was_not_agreed() -> None:
    no_events = CALLER_SDP.replace(b"RTP/AVP 8 0 101", b"RTP/AVP 8")
    o, invite, caller = reach_voicemail(body=no_events)
    caller.wait_for_the_tone()
    caller.say(tone_pcm(440, 1.5))
    caller.say(_dtmf_pcm("#", 0.1))
    [message] = messages(o)
    assert 1.4 <= message.duration_s <= 1.8


def _dtmf_pcm(key: str, seconds: float) -> bytes:
    rows = {"1": 697, "#": 941}
    columns = {"1": 1209, "#": 1477}
    low, high = tone_pcm(rows[key], seconds, 4000), tone_pcm(columns[key], seconds, 4000)
    a, b = g711.pcm_samples(low), g711.pcm_samples(high)
    mixed = g711.pcm_bytes(array("h", (x + y for x, y in zip(a, b, strict=True))))
    assert detect_block(g711.pcm_samples(mixed)[:102]) == key
    return mixed


_ = PROVIDER


def test_rtp_from_a_stranger_host_is_not_recorded() -> None:
    o, invite, caller = reach_voicemail()
    caller.wait_for_the_tone()
    gateway = o.net.gateway
    speech = g711.alaw_encode(tone_pcm(440, 0.02))
    for i in range(100):  # 2 s: the caller's packets, and a stranger's in between
        o.net.advance(0.02)
        gateway.receive_rtp(caller.port, RtpPacket(
            payload_type=8, sequence=i, timestamp=160 * i, ssrc=1, payload=speech).to_bytes(),
            o.net.now, source=CALLER_RTP)
        gateway.receive_rtp(caller.port, RtpPacket(
            payload_type=8, sequence=5000 + i, timestamp=0, ssrc=2, payload=speech).to_bytes(),
            o.net.now, source=("127.0.0.9", 4000))
    o.provider.bye(invite)
    [message] = messages(o)
    assert 1.9 <= message.duration_s <= 2.1  # the caller's 2 s only
    assert o.net.stats()["rtp_foreign"] == 100


def test_events_from_another_port_of_the_same_host_are_heard() -> None:
    # SIPp, for one, plays its RFC 4733 packets from another socket than its voice.
    o, invite, caller = reach_voicemail()
    caller.wait_for_the_tone()
    speech = g711.alaw_encode(tone_pcm(440, 0.02))
    gateway = o.net.gateway
    for i in range(50):
        o.net.advance(0.02)
        gateway.receive_rtp(caller.port, RtpPacket(
            payload_type=8, sequence=i, timestamp=160 * i, ssrc=1, payload=speech).to_bytes(),
            o.net.now, source=("127.0.0.2", 7000))
    gateway.receive_rtp(caller.port, RtpPacket(
        payload_type=101, sequence=900, timestamp=9000, ssrc=3, marker=True,
        payload=TelephoneEvent(event=11, end=False, volume=10, duration=160).to_bytes()
    ).to_bytes(), o.net.now, source=("127.0.0.2", 7002))
    [message] = messages(o)  # the # ended it
    assert 0.9 <= message.duration_s <= 1.1


def test_a_caller_rule_can_route_a_caller_to_a_mailbox() -> None:
    config = copy.deepcopy(VOICEMAIL)
    config["rules"] = [{"match": "7916*", "action": "route", "to": "voicemail:101"}]
    o, invite, caller = reach_voicemail(config, after_s=0)  # the box answers at once
    assert o.phones["101"].invites() == []
    assert leave_message(o, invite, caller, 1.5).mailbox == "101"


def test_a_vip_rule_cannot_go_to_voicemail() -> None:
    config = copy.deepcopy(VOICEMAIL)
    config["rules"] = [{"match": "7916*", "action": "vip", "to": "voicemail:101"}]
    with pytest.raises(ConfigError, match=r"rules\[0\]\.to"):
        parse_config(config)
