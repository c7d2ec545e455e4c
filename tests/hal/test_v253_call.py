"""One call on an FXO line: the FxoCall state table, stepped with `now` (never by sleeping)."""

from __future__ import annotations

import pytest

from hal.modem.v253 import (
    DIAL_TONE_WAIT_S,
    DLE,
    DLE_CODES,
    PROFILES,
    RINGS_GONE_AFTER_S,
    TRANSITIONS,
    Answered,
    CallEnded,
    CallerIdReceived,
    DleEvent,
    DtmfReceived,
    EndReason,
    FarEndHungUp,
    FxoCall,
    FxoEvent,
    FxoState,
    IllegalTransition,
    LeaveVoice,
    RingDetected,
    SendCommand,
    V253Error,
    V253Profile,
)

USR = PROFILES["usr5637"]
GENERIC = PROFILES["generic"]
CALLER_ID_LINES = ["DATE=0805", "TIME=1432", "NMBR=5551234", "NAME=JOHN DOE"]


def dle(code: str) -> DleEvent:
    return DleEvent(code=code, kind=DLE_CODES[code])


def drain(call: FxoCall) -> list[FxoEvent]:
    events = []
    while (event := call.next_event()) is not None:
        events.append(event)
    return events


def ringing(profile: V253Profile = USR, now: float = 0.0) -> FxoCall:
    call = FxoCall(profile=profile)
    call.line_received("RING", now)
    drain(call)
    return call


def connected(profile: V253Profile = USR) -> FxoCall:
    call = ringing(profile)
    call.answer(1.0)
    call.voice_started(1.2)
    drain(call)
    return call


def test_a_ring_starts_ringing_and_is_counted() -> None:
    call = FxoCall(profile=USR)
    call.line_received("RING", 0.0)
    assert call.state is FxoState.RINGING
    assert drain(call) == [RingDetected(count=1, caller_id=None)]


def test_a_shielded_ring_counts_like_a_ring_line() -> None:
    call = ringing()
    call.dle_received(dle("R"), 5.0)
    assert drain(call) == [RingDetected(count=2, caller_id=None)]


def test_caller_id_between_rings_is_reported_at_the_second_ring() -> None:
    call = ringing()
    for line in CALLER_ID_LINES:
        call.line_received(line, 1.0)
    assert drain(call) == []
    call.line_received("RING", 5.0)
    received, ring = drain(call)
    assert isinstance(received, CallerIdReceived)
    assert received.caller_id.number == "5551234"
    assert ring == RingDetected(count=2, caller_id=received.caller_id)


def test_caller_id_is_reported_once() -> None:
    call = ringing()
    call.line_received("NMBR=5551234", 1.0)
    call.line_received("RING", 5.0)
    call.line_received("RING", 10.0)
    assert [type(event) for event in drain(call)] == [CallerIdReceived, RingDetected, RingDetected]


def test_rings_that_stop_mean_the_caller_gave_up() -> None:
    call = ringing(now=0.0)
    assert call.get_timer() == RINGS_GONE_AFTER_S
    call.handle_timer(RINGS_GONE_AFTER_S - 0.1)
    assert call.state is FxoState.RINGING
    call.handle_timer(RINGS_GONE_AFTER_S)
    assert call.state is FxoState.ENDED
    assert drain(call) == [
        FarEndHungUp(reason=EndReason.CALLER_GAVE_UP),
        CallEnded(reason=EndReason.CALLER_GAVE_UP),
    ]


def test_each_ring_moves_the_give_up_deadline() -> None:
    call = ringing(now=0.0)
    call.line_received("RING", 5.0)
    assert call.get_timer() == 5.0 + RINGS_GONE_AFTER_S
    call.handle_timer(RINGS_GONE_AFTER_S)
    assert call.state is FxoState.RINGING


def test_answering_goes_off_hook_then_starts_full_duplex_voice() -> None:
    call = ringing()
    call.answer(1.0)
    assert call.state is FxoState.ANSWERING
    assert call.get_timer() is None
    assert drain(call) == [SendCommand(line="AT+VLS=1"), SendCommand(line="AT+VTR")]


def test_a_half_duplex_modem_answers_into_receive() -> None:
    call = ringing(GENERIC)
    call.answer(1.0)
    assert drain(call) == [SendCommand(line="AT+VLS=1"), SendCommand(line="AT+VRX")]


def test_answering_before_the_second_ring_still_reports_caller_id() -> None:
    call = ringing()
    call.line_received("NMBR=P", 1.0)
    call.answer(2.0)
    assert isinstance(drain(call)[0], CallerIdReceived)


def test_connect_on_the_voice_command_answers_the_call() -> None:
    call = ringing()
    call.answer(1.0)
    drain(call)
    call.voice_started(1.2)
    assert call.state is FxoState.CONNECTED
    assert drain(call) == [Answered(outgoing=False)]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("l", EndReason.LOOP_BREAK),
        ("b", EndReason.BUSY_TONE),
        ("K", EndReason.BUSY_TONE),
        ("s", EndReason.SILENCE),
        ("q", EndReason.SILENCE),
    ],
)
def test_the_far_end_going_leaves_voice_and_goes_on_hook(code: str, reason: EndReason) -> None:
    call = connected()
    call.dle_received(dle(code), 30.0)
    assert call.state is FxoState.ENDED
    assert call.end_reason is reason
    assert drain(call) == [
        FarEndHungUp(reason=reason),
        LeaveVoice(data=bytes([DLE]) + b"!"),
        SendCommand(line="AT+VLS=0"),
        CallEnded(reason=reason),
    ]


def test_a_busy_result_line_ends_the_call_too() -> None:
    call = connected()
    call.line_received("BUSY", 30.0)
    assert call.end_reason is EndReason.BUSY_TONE


def test_the_stop_code_follows_the_profile() -> None:
    call = connected(PROFILES["cx930xx"])
    call.hang_up(30.0)
    assert LeaveVoice(data=bytes([DLE]) + b"^") in drain(call)


def test_a_local_hang_up_leaves_voice_and_goes_on_hook() -> None:
    call = connected()
    call.hang_up(30.0)
    assert drain(call) == [
        LeaveVoice(data=bytes([DLE]) + b"!"),
        SendCommand(line="AT+VLS=0"),
        CallEnded(reason=EndReason.LOCAL_HANG_UP),
    ]


def test_hanging_up_before_voice_started_has_no_stream_to_leave() -> None:
    call = ringing()
    call.answer(1.0)
    drain(call)
    call.hang_up(1.1)
    assert drain(call) == [
        SendCommand(line="AT+VLS=0"),
        CallEnded(reason=EndReason.LOCAL_HANG_UP),
    ]


def test_a_voice_stream_that_starts_after_the_hang_up_is_left_at_once() -> None:
    call = ringing()
    call.answer(1.0)
    call.hang_up(1.1)
    drain(call)
    call.voice_started(1.2)
    assert call.state is FxoState.ENDED
    assert drain(call) == [LeaveVoice(data=bytes([DLE]) + b"!"), SendCommand(line="AT+VLS=0")]


def test_dtmf_in_a_connected_call_is_received() -> None:
    call = connected()
    for digit in "12#":
        call.dle_received(dle(digit), 10.0)
    assert drain(call) == [DtmfReceived(digit=d) for d in "12#"]


def test_a_digit_repeated_inside_dtmf_shielding_counts_once() -> None:
    call = connected()
    for code in "/55~/5~":
        call.dle_received(dle(code), 10.0)
    assert drain(call) == [DtmfReceived(digit="5"), DtmfReceived(digit="5")]


def test_dtmf_before_the_call_is_connected_is_ignored() -> None:
    call = ringing()
    call.dle_received(dle("5"), 1.0)
    assert drain(call) == []


def test_dialling_goes_off_hook_and_listens_for_dial_tone() -> None:
    call = FxoCall(profile=USR)
    call.dial("5551234", 0.0)
    assert call.state is FxoState.SEIZING
    assert call.get_timer() == DIAL_TONE_WAIT_S
    assert drain(call) == [SendCommand(line="AT+VLS=1")]


def test_dial_tone_sends_the_number_and_starts_voice() -> None:
    call = FxoCall(profile=USR)
    call.dial("5551234", 0.0)
    drain(call)
    call.dle_received(dle("d"), 0.8)
    assert call.state is FxoState.DIALING
    assert call.get_timer() is None
    assert drain(call) == [SendCommand(line="ATD5551234;"), SendCommand(line="AT+VTR")]


def test_without_dial_tone_the_number_is_dialled_after_the_wait() -> None:
    call = FxoCall(profile=USR)
    call.dial("5551234", 0.0)
    drain(call)
    call.handle_timer(DIAL_TONE_WAIT_S - 0.5)
    assert drain(call) == []
    call.handle_timer(DIAL_TONE_WAIT_S)
    assert drain(call) == [SendCommand(line="ATD5551234;"), SendCommand(line="AT+VTR")]


def test_a_modem_without_atd_in_voice_mode_dials_with_tones() -> None:
    call = FxoCall(profile=GENERIC)
    call.dial("555", 0.0)
    call.dle_received(dle("d"), 0.5)
    assert drain(call)[1:] == [SendCommand(line="AT+VTS=5,5,5"), SendCommand(line="AT+VRX")]


def test_an_outgoing_call_is_connected_once_dialled_for_the_line_gives_no_answer_signal() -> None:
    call = FxoCall(profile=USR)
    call.dial("5551234", 0.0)
    call.dle_received(dle("d"), 0.5)
    drain(call)
    call.voice_started(2.0)
    assert call.state is FxoState.CONNECTED
    assert drain(call) == [Answered(outgoing=True)]


def test_no_dial_tone_from_the_modem_fails_the_call_on_hook() -> None:
    call = FxoCall(profile=USR)
    call.dial("5551234", 0.0)
    drain(call)
    call.line_received("NO DIALTONE", 1.0)
    assert call.end_reason is EndReason.MODEM_FAILED
    assert drain(call) == [SendCommand(line="AT+VLS=0"), CallEnded(reason=EndReason.MODEM_FAILED)]


def test_a_failed_command_while_answering_ends_the_call() -> None:
    call = ringing()
    call.answer(1.0)
    call.command_failed("AT+VTR", 1.5)
    assert call.state is FxoState.ENDED
    assert call.end_reason is EndReason.MODEM_FAILED


def test_a_number_that_cannot_be_dialled_is_refused() -> None:
    with pytest.raises(V253Error):
        FxoCall(profile=USR).dial("555;ATZ", 0.0)


def test_answering_with_nothing_ringing_is_a_bug() -> None:
    with pytest.raises(IllegalTransition):
        FxoCall(profile=USR).answer(0.0)


def test_dialling_while_ringing_is_a_bug() -> None:
    with pytest.raises(IllegalTransition):
        ringing().dial("5551234", 1.0)


def test_hanging_up_an_ended_call_is_a_bug() -> None:
    call = connected()
    call.hang_up(5.0)
    with pytest.raises(IllegalTransition):
        call.hang_up(6.0)


def test_a_modem_event_that_does_not_fit_the_state_is_ignored() -> None:
    call = FxoCall(profile=USR)
    call.dle_received(dle("l"), 0.0)
    call.line_received("BUSY", 0.0)
    call.line_received("NMBR=5551234", 0.0)
    call.line_received("\x00\xffgarbage", 0.0)
    call.command_failed("AT", 0.0)
    assert call.state is FxoState.IDLE
    assert drain(call) == []


def test_a_ring_during_a_call_changes_nothing() -> None:
    call = connected()
    call.dle_received(dle("R"), 10.0)
    assert call.state is FxoState.CONNECTED
    assert drain(call) == []


def test_nothing_leaves_the_ended_state() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] is FxoState.ENDED]


def test_every_state_but_idle_is_reached_and_every_one_can_end() -> None:
    reached = set(TRANSITIONS.values())
    assert reached == set(FxoState) - {FxoState.IDLE}
    for state in set(FxoState) - {FxoState.IDLE, FxoState.ENDED}:
        assert any(src is state and dst is FxoState.ENDED for (src, _), dst in TRANSITIONS.items())
