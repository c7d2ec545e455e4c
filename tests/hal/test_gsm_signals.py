"""The pure halves of the GSM driver: reading each profile's URCs (hal/modem/gsm_profiles.py)
and the call tracker stepped through `now` (hal/modem/gsm_call.py), no ports, no sleeping."""

from __future__ import annotations

import pytest

from hal.modem.driver import CallEnded, IncomingCall, RemoteAnswered, RemoteRinging
from hal.modem.gsm_call import CLIP_WAIT_S, RESULT_GRACE_S, RING_LOST_S, CallState, CallTracker
from hal.modem.gsm_profiles import (
    HUAWEI,
    QUECTEL,
    SIMCOM,
    CallerIdHeard,
    CallProgressed,
    CallReleased,
    KeyHeard,
    ListedCall,
    RegistrationHeard,
    RingHeard,
    SignalHeard,
    choose_profile,
    interpret,
    parse_clip,
    rssi_to_dbm,
)


@pytest.mark.parametrize(("rssi", "dbm"), [(0, -113), (20, -73), (31, -51), (99, None)])
def test_rssi_to_dbm(rssi: int, dbm: int | None) -> None:
    assert rssi_to_dbm(rssi) == dbm


@pytest.mark.parametrize(("manufacturer", "model", "name"), [
    ("huawei", "E1550", "huawei"), ("Quectel", "EC25", "quectel"),
    ("SIMCOM INCORPORATED", "SIMCOM_SIM7600E-H", "simcom"), ("ACME", "X1", "generic")])
def test_auto_profile_from_cgmi_cgmm(manufacturer: str, model: str, name: str) -> None:
    assert choose_profile(manufacturer, model).name == name


@pytest.mark.parametrize(("line", "heard"), [
    ('+CLIP: "+79161112233",145,,,,0', CallerIdHeard(number="+79161112233")),
    ('+CLIP: "79161112233",145', CallerIdHeard(number="+79161112233")),
    ('+CLIP: "84951234567",129', CallerIdHeard(number="84951234567")),
    ('+CLIP: "",128,,,,1', CallerIdHeard(number=None, reason="private")),
    ('+CLIP: "",128,,,,2', CallerIdHeard(number=None, reason="unavailable")),
    ("+CLIP:", None), ('+CLIP: "abc",x', None)])
def test_clip(line: str, heard: CallerIdHeard | None) -> None:
    assert parse_clip(line) == heard


def test_each_profiles_call_urcs() -> None:
    assert interpret(HUAWEI, "^CONN:1,0") == [CallProgressed(state="active", index=1)]
    assert interpret(HUAWEI, "^CEND:1,12,104,17") == [
        CallReleased(index=1, cause=17, definite=True)]
    assert interpret(QUECTEL, '+QIND: "ccinfo",1,0,3,0,0,"+7916",145') == [
        CallProgressed(state="alerting", index=1)]
    assert interpret(QUECTEL, '+QIND: "ccinfo",1,1,-1,0,0,"+7916",145') == [
        CallReleased(index=1)]
    assert interpret(QUECTEL, '+QIND: "ccinfo",1,1,4,0,0,"+7916",145') == [RingHeard()]
    assert interpret(QUECTEL, "^DSCI: 1,0,6,0,+7916,145") == [CallReleased(index=1)]
    assert interpret(SIMCOM, "VOICE CALL: BEGIN") == [CallProgressed(state="active")]
    assert interpret(SIMCOM, "VOICE CALL: END: 000012") == [CallReleased(definite=True)]
    assert interpret(SIMCOM, "MISSED_CALL: 10:02AM +7916") == [CallReleased(definite=True)]
    assert interpret(SIMCOM, '+CLCC: 1,0,6,0,0,"+7916",145') == [CallReleased(index=1)]


def test_signal_registration_and_keys() -> None:
    assert interpret(HUAWEI, "^RSSI:18") == [SignalHeard(rssi=18)]
    assert interpret(QUECTEL, '+QIND: "csq",25,99') == [SignalHeard(rssi=25)]
    assert interpret(SIMCOM, "+CSQ: 12,99") == [SignalHeard(rssi=12)]
    assert interpret(QUECTEL, '+CEREG: 1,"1A2B","0C3D4E5",7') == [
        RegistrationHeard(stat=1, lte=True)]
    assert interpret(SIMCOM, "+RXDTMF: 5") == [KeyHeard(key="5")]
    assert interpret(QUECTEL, "+QTONEDET: 35") == [KeyHeard(key="#")]


@pytest.mark.parametrize("line", ["^CEND:x,y", '+QIND: "ccinfo",z', "^CONN:", "+CSQ: ,",
                                  "+CMTI: nonsense", "+CREG: x", "VOICE CALL: MAYBE", "\x7f"])
def test_garbled_urcs_give_nothing(line: str) -> None:
    assert interpret(HUAWEI, line) == []


def test_ring_then_late_clip_is_reported_once() -> None:
    tracker = CallTracker("mts")
    assert tracker.ring(0.0) == []
    assert tracker.caller_id(CallerIdHeard(number="+7916"), 0.3) == [
        IncomingCall(line="mts", caller="+7916")]
    assert tracker.ring(3.0) == []
    assert tracker.caller_id(CallerIdHeard(number="+7916"), 3.0) == []
    assert tracker.handle_timer(10.0) == []


def test_ring_without_clip_is_reported_unavailable_after_the_wait() -> None:
    tracker = CallTracker("mts")
    tracker.ring(0.0)
    assert tracker.handle_timer(CLIP_WAIT_S / 2) == []
    assert tracker.handle_timer(CLIP_WAIT_S) == [
        IncomingCall(line="mts", caller=None, reason="unavailable")]


def test_rings_that_stop_and_an_empty_clcc_mean_the_caller_gave_up() -> None:
    tracker = CallTracker("mts")
    tracker.ring(0.0)
    tracker.caller_id(CallerIdHeard(number="+7916"), 0.1)
    assert not tracker.clcc_due(3.0)
    assert tracker.clcc_due(RING_LOST_S + 0.1)
    ended = tracker.calls_listed([], RING_LOST_S + 0.2)
    assert ended == [CallEnded(line="mts", cause="caller hung up", status=487)]


def test_a_release_without_cause_waits_for_the_result_that_says_busy() -> None:
    tracker = CallTracker("mts")
    tracker.dialled(0.0)
    assert tracker.progressed("alerting", 1, 0.2) == [RemoteRinging(line="mts")]
    assert tracker.released(None, False, 1.0) == []
    assert tracker.state is CallState.RELEASING
    assert tracker.result("BUSY", 1.1) == [
        CallEnded(line="mts", cause="user busy", status=486)]


def test_a_release_without_any_reason_ends_after_the_grace() -> None:
    tracker = CallTracker("mts")
    tracker.dialled(0.0)
    tracker.released(None, False, 1.0)
    assert tracker.handle_timer(1.0 + RESULT_GRACE_S) == [
        CallEnded(line="mts", cause="no carrier", status=480)]


def test_clcc_active_recovers_a_missed_answer_and_an_empty_list_ends_the_call() -> None:
    tracker = CallTracker("mts")
    tracker.dialled(0.0)
    assert tracker.clcc_due(2.0)
    listed = [ListedCall(index=1, incoming=False, stat=0)]
    assert tracker.calls_listed(listed, 2.0) == [RemoteRinging(line="mts"),
                                                 RemoteAnswered(line="mts")]
    assert tracker.calls_listed([], 4.0) == [
        CallEnded(line="mts", cause="far end hung up (call gone (+CLCC))", status=200)]


def test_urcs_after_our_own_hang_up_are_ignored() -> None:
    tracker = CallTracker("mts")
    tracker.ring(0.0)
    tracker.answered_locally(1.0)
    tracker.hanging_up(5.0)
    assert tracker.released(16, True, 5.1) == []
    assert tracker.hung_up(5.2) == [
        CallEnded(line="mts", cause="hung up by the box", status=200, by_far_end=False)]
    assert tracker.result("NO CARRIER", 5.3) == []
