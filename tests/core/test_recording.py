"""Call recording through the sans-IO gateway with stepped time: a call that may be recorded hears
the warning as early media before anything rings; the member who answers is bridged through the
box and the recorder gets both directions (stereo: caller left, member right); the file starts
with the warning; the most specific setting wins; unrecorded and unanswered calls leave nothing.
"""

from __future__ import annotations

import copy

import pytest

from firmware.core.events import RecordingAudio, RecordingFinished, RecordingStarted
from firmware.media import g711, prompts, sdp
from firmware.media.recorder import HEADER_BYTES, Recorder, mix, read_header, repaired_sizes
from firmware.media.recorder import wav_header as make_header
from firmware.media.rtp import RtpPacket, parse_rtp
from firmware.recording import PROMPT_RECORDING_WARNING
from firmware.sip.message import Request
from firmware.store.config import ConfigError, config_to_dict, parse_config
from tests.core.network import (
    CONFIG,
    RING_ALL_DID,
    Office,
    answer_with_sdp,
    authorised_call,
    office,
)
from tests.core.test_queue_media import CALLER_RTP, CALLER_SDP, MEMBER_SDP

WARNING_S = len(prompts.prompt("en", PROMPT_RECORDING_WARNING)) / 2 / 8000
CALLER_CODE = 0xA5  # A-law, what the caller "says" (the file's law is the caller's: PCMA);
# loud (+16896), so the mono mix differs from either side alone
MEMBER_CODE = 0x2A  # µ-law, what the member says


def recorded_config(**recording: object) -> dict[str, object]:
    config = copy.deepcopy(CONFIG)
    config["site"] = {"timezone": "Europe/Moscow", "language": "en"}
    config["recording"] = recording or {"departments": {"200": "all"}}
    return config


def call_in(o: Office) -> tuple[Request, int]:
    invite = o.provider.call(RING_ALL_DID, sdp=CALLER_SDP)
    early = [r for r in o.provider.responses() if r.status == 183]
    assert early, "no early media: the warning cannot be heard"
    return invite, sdp.accept_answer(early[-1].body).remote_port


def ringing(o: Office, extension: str) -> bool:
    phone = o.phones[extension]
    return any(entry.last is None or entry.last.status < 200 for entry in phone.incoming.values())


def heard_by_caller(o: Office) -> bytes:
    packets = [parse_rtp(data) for _, data, to in o.net.rtp_to_send() if to == CALLER_RTP]
    return b"".join(g711.alaw_decode(p.payload) for p in packets if p.payload_type == 8)


def talk(o: Office, caller_port: int, member_port: int, seconds: float) -> None:
    """Both parties send 20 ms packets for `seconds`, time stepped with them."""
    base = int(o.net.now * 8000)
    for i in range(int(seconds * 50)):
        o.net.advance(0.02)
        for port, payload_type, code, ssrc in ((caller_port, 8, CALLER_CODE, 7),
                                               (member_port, 0, MEMBER_CODE, 9)):
            o.net.gateway.receive_rtp(port, RtpPacket(
                payload_type=payload_type, sequence=i, timestamp=base + 160 * i, ssrc=ssrc,
                payload=bytes([code]) * 160).to_bytes(), o.net.now)
        o.net.pump()


def answered(o: Office, extension: str = "101") -> int:
    phone = o.phones[extension]
    member_port = sdp.SessionDescription.parse(phone.ringing_invite().body).media[0].port
    answer_with_sdp(phone, MEMBER_SDP)
    return member_port


def recording_bytes(o: Office) -> bytes:
    return b"".join(e.data for e in o.net.recording_events if isinstance(e, RecordingAudio))


def test_the_caller_hears_the_warning_before_anyone_rings() -> None:
    o = office(config=recorded_config())
    call_in(o)
    o.net.advance(WARNING_S / 2)
    assert not ringing(o, "101") and not ringing(o, "102")
    o.net.advance(WARNING_S / 2 + 0.2)
    heard = heard_by_caller(o)
    warning = g711.alaw_decode(g711.alaw_encode(prompts.prompt("en", PROMPT_RECORDING_WARNING)))
    middle = len(warning) // 4 * 2
    assert warning[middle:middle + 800] in heard
    assert ringing(o, "101") and ringing(o, "102")


def test_the_recorder_gets_both_directions_in_stereo_after_the_warning() -> None:
    o = office(config=recorded_config())
    invite, caller_port = call_in(o)
    o.net.advance(WARNING_S + 1.0)  # the warning, then a second of ringing
    member_port = answered(o)
    [started] = [e for e in o.net.recording_events if isinstance(e, RecordingStarted)]
    assert (started.codec, started.channels) == ("PCMA", 2)
    talk(o, caller_port, member_port, 3.0)
    # Written as it goes: about a second at a time while the call is on.
    assert len([e for e in o.net.recording_events if isinstance(e, RecordingAudio)]) >= 2
    o.provider.bye(invite)
    finished = o.net.recording_events[-1]
    assert isinstance(finished, RecordingFinished) and finished.call_id == started.call_id
    data = recording_bytes(o)
    left, right = data[0::2], data[1::2]
    assert len(left) == len(right)
    assert len(left) == pytest.approx(finished.duration_s * 8000, abs=40)  # rounded to 10 ms
    assert finished.duration_s == pytest.approx(WARNING_S + 1.0 + 3.0, abs=0.1)
    # The file begins with the warning in the caller's channel; the member's is silent then.
    warning = g711.alaw_encode(prompts.prompt("en", PROMPT_RECORDING_WARNING))
    assert left.startswith(warning)
    assert set(right[:len(warning)]) == {g711.ALAW_SILENCE}
    # Then each side's own audio in its channel (the member's µ-law as A-law).
    talk_start = round((WARNING_S + 1.0) * 8000)
    member_as_alaw = g711.ULAW_TO_ALAW[MEMBER_CODE]
    assert left[talk_start + 400:].count(CALLER_CODE) >= 3 * 8000 - 800
    assert right[talk_start + 400:].count(member_as_alaw) >= 3 * 8000 - 800
    assert member_as_alaw not in left[talk_start:]


def test_mono_mixes_the_two_sides() -> None:
    o = office(config=recorded_config(channels="mono", departments={"200": "all"}))
    invite, caller_port = call_in(o)
    o.net.advance(WARNING_S + 0.5)
    member_port = answered(o)
    assert [e.channels for e in o.net.recording_events if isinstance(e, RecordingStarted)] == [1]
    talk(o, caller_port, member_port, 2.0)
    o.provider.bye(invite)
    data = recording_bytes(o)
    finished = o.net.recording_events[-1]
    assert isinstance(finished, RecordingFinished)
    assert len(data) == pytest.approx(finished.duration_s * 8000, abs=40)
    # The expected sample built without the implementation: the member's µ-law code as the
    # A-law the file takes, then both decoded, added, clipped to 16 bits and encoded again.
    member = alaw_encode_sample(ulaw_decode_sample(MEMBER_CODE))
    both = alaw_encode_sample(alaw_decode_sample(CALLER_CODE) + alaw_decode_sample(member))
    assert both not in (CALLER_CODE, member)  # one side alone would not pass
    start = round((WARNING_S + 0.5) * 8000) + 400
    assert data[start:].count(both) >= 2 * 8000 - 800


# G.711 by its reference formulas (ITU-T G.711 as written in Sun's public-domain g711.c, the
# source of most implementations), not by firmware/media/g711.py: the test's own arithmetic.
def alaw_decode_sample(code: int) -> int:
    code ^= 0x55  # A-law codes have their even bits inverted
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    magnitude = magnitude + 8 if segment == 0 else (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


def ulaw_decode_sample(code: int) -> int:
    code = ~code & 0xFF  # µ-law codes are sent inverted
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - magnitude if code & 0x80 else magnitude - 0x84


def alaw_encode_sample(sample: int) -> int:
    sample = max(-32768, min(32767, sample)) >> 3  # clipped to 16 bits; A-law uses 13
    mask = 0xD5 if sample >= 0 else 0x55
    if sample < 0:
        sample = -sample - 1
    ends = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
    segment = next((n for n, end in enumerate(ends) if sample <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (sample >> 1 if segment < 2 else sample >> segment) & 0x0F
    return code ^ mask


def test_the_reference_formulas_agree_with_known_g711_values() -> None:
    # Fixed points of the standard: A-law 0xD5 and µ-law 0xFF are the smallest positive step
    # (the silence codes), A-law 0x2A and µ-law 0x00 the largest negative values.
    assert alaw_decode_sample(0xD5) == 8 and alaw_decode_sample(0x2A) == -32256
    assert ulaw_decode_sample(0xFF) == 0 and ulaw_decode_sample(0x00) == -32124
    assert alaw_encode_sample(32767) == 0xAA and alaw_encode_sample(-32768) == 0x2A
    assert all(alaw_encode_sample(alaw_decode_sample(code)) == code for code in range(256))


def test_the_employees_setting_wins_over_the_departments() -> None:
    o = office(config=recorded_config(departments={"200": "all"}, employees={"101": "none"}))
    invite, caller_port = call_in(o)  # 102 would record it: warned
    o.net.advance(WARNING_S + 0.5)
    member_port = answered(o, "101")
    talk(o, caller_port, member_port, 1.0)
    o.provider.bye(invite)
    assert o.net.recording_events == []


def test_a_department_not_recorded_is_not_warned_nor_anchored() -> None:
    o = office(config=recorded_config(departments={"300": "all"}))
    o.provider.call(RING_ALL_DID, sdp=CALLER_SDP)
    assert not [r for r in o.provider.responses() if r.status == 183]
    assert ringing(o, "101")


def test_inbound_only_leaves_internal_calls_alone() -> None:
    o = office(config=recorded_config(departments={"200": "inbound"}))
    authorised_call(o.phones["103"], "200", sdp=CALLER_SDP)
    assert ringing(o, "101")  # no warning first
    o2 = office(config=recorded_config(departments={"200": "all"}))
    _, last = authorised_call(o2.phones["103"], "200", sdp=CALLER_SDP)
    assert last.status == 183 and not ringing(o2, "101")  # "all" warns an internal call too


def test_a_call_nobody_answered_leaves_no_recording() -> None:
    o = office(config=recorded_config())
    invite, _ = call_in(o)
    o.net.advance(WARNING_S + 1.0)
    o.provider.cancel(invite)
    assert o.net.recording_events == []


def test_the_number_setting_applies_when_nothing_more_specific_does() -> None:
    o = office(config=recorded_config(numbers={RING_ALL_DID: {"record": "inbound",
                                                             "channels": "mono"}}))
    invite, caller_port = call_in(o)
    o.net.advance(WARNING_S + 0.2)
    member_port = answered(o)
    talk(o, caller_port, member_port, 1.0)
    o.provider.bye(invite)
    assert [e.channels for e in o.net.recording_events if isinstance(e, RecordingStarted)] == [1]


def test_the_recording_section_round_trips_and_names_bad_keys() -> None:
    config = recorded_config(quota_mb=500, departments={"200": "all"},
                             employees={"103": {"record": "none", "channels": "mono"}})
    parsed = parse_config(config)
    assert parse_config(config_to_dict(parsed)) == parsed
    for bad, where in (({"departments": {"999": "all"}}, "recording.departments.999"),
                       ({"departments": {"200": "sometimes"}}, "recording.departments.200"),
                       ({"quota_mb": -1}, "recording.quota_mb"),
                       ({"channels": "quad"}, "recording.channels"),
                       ({"loudness": 3}, "recording.loudness")):
        with pytest.raises(ConfigError) as error:
            parse_config(recorded_config(**bad))
        assert error.value.path == where


# ---------------------------------------------------------------------- the recorder itself
def test_jitter_does_not_move_a_side_timestamps_place_it() -> None:
    recorder = Recorder(codec="PCMA", channels=2, started_at=0.0)
    for i in range(50):  # one second, arriving with up to 15 ms of jitter
        packet = RtpPacket(payload_type=8, sequence=i, timestamp=1000 + 160 * i, ssrc=1,
                           payload=bytes([i % 200 + 1]) * 160)
        recorder.heard("a", packet, "PCMA", 0.02 * i + (0.015 if i % 3 else 0.0))
    data = recorder.take(1.5, final=True)
    left = data[0::2]
    assert [left[160 * i] for i in range(50)] == [i % 200 + 1 for i in range(50)]


def test_a_header_is_repaired_to_the_files_length() -> None:
    header = make_header(0, codec="PCMU", channels=2)
    assert len(header) == HEADER_BYTES and read_header(header).data_bytes == 0
    patches = repaired_sizes(header, HEADER_BYTES + 16001)
    assert patches is not None
    fixed = bytearray(header)
    for offset, value in patches:
        fixed[offset:offset + len(value)] = value
    info = read_header(bytes(fixed))
    assert (info.codec, info.channels, info.data_bytes) == ("PCMU", 2, 16000)
    assert info.duration_s == 1.0
    assert repaired_sizes(bytes(fixed), HEADER_BYTES + 16000) is None


def test_a_hold_keeps_the_recording_going_the_caller_still_recorded() -> None:
    from tests.core.test_hold import SENDONLY, phone_reinvite

    o = office(config=recorded_config())
    invite, caller_port = call_in(o)
    o.net.advance(WARNING_S + 0.5)
    member_port = answered(o)
    talk(o, caller_port, member_port, 1.0)
    # 101 holds: the box plays music to the caller on the same anchored ports.
    assert phone_reinvite(o.phones["101"], SENDONLY).status == 200
    base = int(o.net.now * 8000)
    for i in range(100):  # two seconds of the caller talking to the music
        o.net.advance(0.02)
        o.net.gateway.receive_rtp(caller_port, RtpPacket(
            payload_type=8, sequence=1000 + i, timestamp=base + 160 * i, ssrc=7,
            payload=bytes([CALLER_CODE]) * 160).to_bytes(), o.net.now)
        o.net.pump()
    o.provider.bye(invite)
    finished = o.net.recording_events[-1]
    assert isinstance(finished, RecordingFinished)
    assert finished.duration_s == pytest.approx(WARNING_S + 0.5 + 3.0, abs=0.1)
    left = recording_bytes(o)[0::2]
    held_from = round((WARNING_S + 0.5 + 1.0) * 8000) + 400
    assert left[held_from:].count(CALLER_CODE) >= 2 * 8000 - 800


def test_a_menus_caller_hears_the_warning_when_the_menu_sends_them_to_a_recorded_department(
) -> None:
    config = recorded_config()
    notice = "+74950000701"
    config["numbers"] = [*config["numbers"], {  # type: ignore[list-item]
        "number": notice, "trunk": "provider", "channels": 3, "destination": "menu:notice"}]
    config["menus"] = [{"name": "notice", "greeting": ["menu_welcome"], "then": "200"}]
    o = office(config=config)
    invite = o.provider.call(notice, sdp=CALLER_SDP)
    early = [r for r in o.provider.responses() if r.status == 183]
    assert len(early) == 1
    welcome_s = len(prompts.prompt("en", "menu_welcome")) / 2 / 8000
    o.net.advance(welcome_s + WARNING_S / 2)
    assert not ringing(o, "101")  # the menu, then the warning: nobody rung yet
    heard = heard_by_caller(o)
    warning = g711.alaw_decode(g711.alaw_encode(prompts.prompt("en", PROMPT_RECORDING_WARNING)))
    assert warning[:1600] in heard
    o.net.advance(WARNING_S / 2 + 0.2)
    assert ringing(o, "101")
    port = sdp.accept_answer(early[0].body).remote_port
    member_port = answered(o)
    talk(o, port, member_port, 1.0)
    o.provider.bye(invite)
    assert [e.channels for e in o.net.recording_events if isinstance(e, RecordingStarted)] == [2]


def test_the_bridges_unparsed_packets_are_recorded_as_the_parsed_ones() -> None:
    from firmware.core.recordings import _Tap
    from firmware.media.bridge import BridgeSide, MediaBridge
    from firmware.media.sdp import AudioChoice

    def side(port: int, codec: str) -> BridgeSide:
        return BridgeSide(port, AudioChoice(
            remote_host="127.0.0.2", remote_port=port + 30000, codec=codec,
            payload_type=8 if codec == "PCMA" else 0, telephone_event_pt=None,
            direction="sendrecv"))

    class Sink:  # the gateway's emit, for the tap
        def __init__(self) -> None:
            self.events: list[object] = []

        def emit(self, event: object) -> None:
            self.events.append(event)

    outputs = []
    for extension in (False, True):  # plain headers (unparsed path), then with an extension
        bridge = MediaBridge(side(10000, "PCMA"), side(10002, "PCMA"))
        sink = Sink()
        holder = type("Holder", (), {"core": sink})()
        recorder = Recorder(codec="PCMA", channels=2, started_at=0.0)
        bridge.tap = _Tap(holder, "c", recorder)  # type: ignore[arg-type]
        for i in range(100):
            for port, code, ssrc in ((10000, 0x11, 1), (10002, 0x22, 2)):
                data = RtpPacket(payload_type=8, sequence=i, timestamp=5000 + 160 * i, ssrc=ssrc,
                                 payload=bytes([code + i % 7]) * 160).to_bytes()
                if extension:  # X bit and an empty extension (RFC 3550 §5.3.1)
                    data = bytes([data[0] | 0x10]) + data[1:12] + b"\xbe\xde\x00\x00" + data[12:]
                assert bridge.receive(port, data, 0.02 * i)
        handed = b"".join(e.data for e in sink.events if isinstance(e, RecordingAudio))
        outputs.append(handed + recorder.take(3.0, final=True))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 2 * 100 * 160


@pytest.mark.parametrize("codec", ["PCMA", "PCMU"])
def test_mono_mixing_in_c_and_by_the_table_agree(codec: str, monkeypatch: pytest.MonkeyPatch,
                                                 ) -> None:
    from firmware.media import recorder

    a = bytes(range(256)) * 4
    b = bytes(reversed(a))
    in_c = mix(a, b, codec)
    monkeypatch.setattr(recorder, "_audioop", None)  # as on CPython 3.13, without audioop
    assert mix(a, b, codec) == in_c
    loud = bytes([0xAA if codec == "PCMA" else 0x80]) * 8  # both at full scale: clipped
    assert mix(loud, loud, codec) == loud
