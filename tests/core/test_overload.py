"""Overload control (issue 16): the admission ratio driven by the queueing delay, with stepped
time, and the gateway shedding strangers' new work while serving calls in progress, the
office's phones and the provider."""

from __future__ import annotations

import pytest

from firmware.core.overload import (
    ANSWER,
    CONTROL_INTERVAL_S,
    DECREASE_FACTOR,
    DROP,
    FIRST,
    HANDLED,
    INCREASE_STEP,
    LATER,
    MIN_SAMPLES,
    NEW,
    RETRY_AFTER_S,
    SERVE,
    SEVERE_DELAY_S,
    TARGET_DELAY_S,
    OverloadControl,
    classify,
    is_new_work,
    shed_response,
)
from firmware.sip.message import Response, parse_message
from firmware.sip.transaction import Address
from tests.core.network import (
    GATEWAY,
    PROVIDER,
    RING_ALL_DID,
    Office,
    Peer,
    authorised_call,
    office,
    request,
)

STRANGER = Address("udp", "198.51.100.7", 5060)
LATE_S = 0.3  # a datagram that waited this long in the receive queue: past SEVERE_DELAY_S


def invite_bytes(*, to_tag: str | None = None, method: str = "INVITE",
                 to_name: str = "To", credentials: str | None = None) -> bytes:
    to = "<sip:200@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    extra = f"{credentials}: Digest username=\"999\"\r\n" if credentials else ""
    return (f"{method} sip:200@192.0.2.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-ol-1\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:999@198.51.100.7>;tag=f1\r\n"
            f"{to_name}: {to}\r\n"
            "Call-ID: ol-1@198.51.100.7\r\n"
            f"CSeq: 1 {method}\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n").encode()


def waited(control: OverloadControl, delay_s: float, now: float) -> None:
    """A queue's worth of datagrams read at `now`, each having waited `delay_s`."""
    for _ in range(MIN_SAMPLES):
        control.observe(delay_s, now)


# --- the controller --------------------------------------------------------------------------


def test_a_few_late_datagrams_are_no_queue() -> None:
    # A box descheduled by a busy CPU delays its few datagrams too: nothing to shed.
    control = OverloadControl(now=0.0)
    for _ in range(MIN_SAMPLES - 1):
        control.observe(SEVERE_DELAY_S * 2, 0.01)
    control.observe(0.0, CONTROL_INTERVAL_S + 0.001)
    assert not control.overloaded


def test_a_box_that_keeps_up_admits_everything() -> None:
    control = OverloadControl(now=0.0)
    for step in range(50):
        waited(control, 0.002, step * 0.01)
        assert control.admit(step * 0.01)
    assert not control.overloaded
    assert control.shed == 0


def test_a_queue_standing_for_two_intervals_lowers_the_ratio() -> None:
    control = OverloadControl(now=0.0)
    waited(control, TARGET_DELAY_S * 2, 0.05)
    assert control.admit_ratio == 1.0  # decided once per interval, not per datagram
    waited(control, TARGET_DELAY_S * 2, 0.15)
    assert control.admit_ratio == 1.0  # one interval: a stall, not yet a queue
    waited(control, 0.0, 2 * CONTROL_INTERVAL_S + 0.001)
    assert control.admit_ratio == pytest.approx(DECREASE_FACTOR)
    assert control.overloaded and control.episodes == 1


def test_soon_after_an_overload_one_standing_interval_is_enough() -> None:
    control = OverloadControl(now=0.0)
    waited(control, SEVERE_DELAY_S, 0.0)
    now = 0.0
    while control.overloaded:  # recovers by itself, step by step
        now += CONTROL_INTERVAL_S
        waited(control, 0.0, now)
    # The quiet samples at `now` opened an interval; the queue stands in the next one only.
    waited(control, TARGET_DELAY_S * 2, now + CONTROL_INTERVAL_S + 0.05)
    waited(control, 0.0, now + 2 * CONTROL_INTERVAL_S + 0.05)
    assert control.overloaded and control.episodes == 2


def test_one_stalled_interval_is_no_overload() -> None:
    control = OverloadControl(now=0.0)
    waited(control, TARGET_DELAY_S * 5, 0.05)
    waited(control, 0.0, 0.15)
    waited(control, TARGET_DELAY_S * 5, 0.25)
    waited(control, 0.0, 0.35)
    assert not control.overloaded


def test_a_burst_is_no_overload_while_the_shortest_wait_stays_short() -> None:
    # CoDel's rule (RFC 8289): a GC pause raises some waits, a standing queue raises them all.
    control = OverloadControl(now=0.0)
    waited(control, 0.0005, 0.01)
    waited(control, SEVERE_DELAY_S * 0.8, 0.02)
    waited(control, TARGET_DELAY_S * 10, 0.03)
    waited(control, 0.0, CONTROL_INTERVAL_S + 0.001)
    assert not control.overloaded


def test_a_severe_delay_sheds_all_new_work_at_once() -> None:
    control = OverloadControl(now=0.0)
    waited(control, SEVERE_DELAY_S, 0.01)
    assert control.admit_ratio == 0.0
    assert not any(control.admit(0.01) for _ in range(100))
    assert control.shed == 100


def test_the_admitted_share_is_the_ratio_without_randomness() -> None:
    control = OverloadControl(now=0.0)
    for at in (0.05, 0.15, 0.25):  # the first interval's close: still 1; then 0.7
        waited(control, TARGET_DELAY_S * 2, at)
    waited(control, TARGET_DELAY_S * 2, 0.35)  # and 0.49
    assert control.admit_ratio == pytest.approx(DECREASE_FACTOR ** 2)
    admitted = sum(control.admit(0.26) for _ in range(1000))
    assert abs(admitted - 490) <= 1  # the credit is a float sum
    assert control.shed == 1000 - admitted


def test_it_recovers_by_itself_step_by_step() -> None:
    control = OverloadControl(now=0.0)
    waited(control, SEVERE_DELAY_S, 0.0)
    waited(control, 0.001, CONTROL_INTERVAL_S)  # closes the interval that was severe
    ratios = []
    now = CONTROL_INTERVAL_S
    for _ in range(int(1 / INCREASE_STEP) + 1):
        now += CONTROL_INTERVAL_S
        waited(control, 0.001, now)
        ratios.append(control.admit_ratio)
    # Hysteresis: no jump back to everything — it climbs one step per quiet interval.
    assert ratios[0] == pytest.approx(INCREASE_STEP)
    assert all(b >= a for a, b in zip(ratios, ratios[1:], strict=False))
    assert ratios[-1] == 1.0 and not control.overloaded


def test_a_delay_between_release_and_target_holds_the_ratio() -> None:
    control = OverloadControl(now=0.0)
    waited(control, TARGET_DELAY_S * 2, 0.05)
    waited(control, TARGET_DELAY_S * 2, 0.15)
    waited(control, TARGET_DELAY_S * 0.8, 0.25)
    held = control.admit_ratio
    waited(control, TARGET_DELAY_S * 0.8, 0.35)
    waited(control, TARGET_DELAY_S * 0.8, 0.45)
    assert control.admit_ratio == held == pytest.approx(DECREASE_FACTOR)


def test_a_long_silence_ends_the_overload() -> None:
    control = OverloadControl(now=0.0)
    waited(control, SEVERE_DELAY_S, 0.0)
    assert control.admit(3600.0)  # an hour later, nothing has waited since
    assert not control.overloaded


def test_samples_that_span_a_wall_clock_step_are_ignored() -> None:
    control = OverloadControl(now=0.0)
    waited(control, 2 * 365 * 86400.0, 0.01)  # stamped before the first NTP sync
    waited(control, -3600.0, 0.02)  # the clock stepped back
    waited(control, 0.0, 0.2)
    assert not control.overloaded


def test_a_full_queue_is_overload_however_short_the_waits() -> None:
    """A bursty flood: the bounded queue overflows during each burst and drains between
    them, so every interval's shortest wait is near zero — yet work is being dropped."""
    control = OverloadControl(now=0.0)
    waited(control, 0.0005, 0.01)
    control.queue_full(0.02)
    assert control.overloaded and control.admit_ratio == pytest.approx(DECREASE_FACTOR)
    assert control.status(0.02).episodes == 1
    control.queue_full(0.03)  # once per interval lowers the ratio, not once per datagram
    waited(control, 0.0005, 0.05)
    waited(control, 0.0005, 0.12)  # the interval closed with an overflow: lower again
    assert control.admit_ratio == pytest.approx(DECREASE_FACTOR ** 2)
    assert control.status(0.12).queue_full == 2


def test_after_the_overflows_stop_the_ratio_climbs_back() -> None:
    control = OverloadControl(now=0.0)
    control.queue_full(0.01)
    for step in range(1, 40):
        waited(control, 0.0005, 0.1 * step + 0.01)
    assert not control.overloaded


def test_status_says_what_the_admin_needs() -> None:
    control = OverloadControl(now=0.0)
    waited(control, SEVERE_DELAY_S, 0.0)
    control.admit(0.0)
    status = control.status(0.05).as_dict()
    assert status == {"overloaded": True, "admit_ratio": 0.0, "delay_ms": 0.0, "shed": 1,
                      "episodes": 1, "worst_delay_ms": SEVERE_DELAY_S * 1000,
                      "queue_full": 0}
    assert control.status(0.15).as_dict()["delay_ms"] == SEVERE_DELAY_S * 1000


# --- what is new work ------------------------------------------------------------------------


@pytest.mark.parametrize("data, new", [
    (invite_bytes(), True),
    (invite_bytes(method="REGISTER"), True),
    (invite_bytes(method="OPTIONS"), True),
    (invite_bytes(to_name="t"), True),  # the compact form (RFC 3261 §7.3.3)
    (invite_bytes(to_tag="abc"), False),  # a re-INVITE: inside a dialog
    (invite_bytes(to_tag="abc", method="BYE"), False),
    (invite_bytes(method="CANCEL"), False),
    (invite_bytes(method="ACK"), False),
    (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1\r\n\r\n", False),
    (b"\r\n\r\n", False),  # a keep-alive
    # No To: not in a dialog; a 503 under overload, else the parser's 400.
    (b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n", True),
])
def test_new_work_is_a_request_outside_any_dialog(data: bytes, new: bool) -> None:
    assert is_new_work(data) is new


@pytest.mark.parametrize("data, kind", [
    (invite_bytes(), NEW),
    (invite_bytes(credentials="Proxy-Authorization"), ANSWER),  # the call's second INVITE
    (invite_bytes(method="REGISTER", credentials="Authorization"), ANSWER),
    (invite_bytes(to_tag="abc", credentials="Proxy-Authorization"), SERVE),
    (invite_bytes(method="ACK", to_tag="overload"), DROP),  # the ACK of our own 503
    (invite_bytes(method="ACK", to_tag="x"), SERVE),
])
def test_classify_tells_new_work_answers_and_our_own_acks(data: bytes, kind: str) -> None:
    assert classify(data) == kind


def test_an_answer_to_our_challenge_is_taken_while_anything_is() -> None:
    control = OverloadControl(now=0.0)
    for at in (0.05, 0.15, 0.25):
        waited(control, TARGET_DELAY_S * 2, at)
    assert 0.0 < control.admit_ratio < 1.0
    assert all(control.admit(0.25, answer=True) for _ in range(100))
    waited(control, SEVERE_DELAY_S, 0.26)
    assert not control.admit(0.26, answer=True)


def test_the_503_carries_retry_after_and_echoes_the_transaction() -> None:
    reply = shed_response(invite_bytes())
    assert reply is not None
    response = parse_message(reply)
    assert isinstance(response, Response)
    assert response.status == 503
    assert response.headers.get("Retry-After") == str(RETRY_AFTER_S)
    assert response.top_via.branch == "z9hG4bK-ol-1"
    assert response.call_id == "ol-1@198.51.100.7"
    assert response.to.tag  # §8.2.6.2: a final response has a To tag


def test_a_request_without_via_gets_no_503() -> None:
    assert shed_response(b"INVITE sip:x SIP/2.0\r\nTo: <sip:x@y>\r\n\r\n") is None


# --- the gateway under overload --------------------------------------------------------------


def overloaded_office() -> tuple[Office, Peer]:
    """The standard office with a queue of datagrams that waited LATE_S each (the box in
    overload); a stranger's INVITE then, shed."""
    o = office()
    stranger = Peer(o.net, STRANGER, "999")
    waited(o.net.gateway.overload, LATE_S, o.net.now)
    o.net.gateway.receive(invite_bytes(), STRANGER, o.net.now)
    o.net.pump()
    return o, stranger


def test_datagrams_that_waited_in_the_socket_set_off_the_overload() -> None:
    o = office()
    stranger = Peer(o.net, STRANGER, "999")
    for _ in range(MIN_SAMPLES):
        o.net.gateway.receive(invite_bytes(), STRANGER, o.net.now, waited_s=LATE_S)
        o.net.pump()
    statuses = [m.status for m in stranger.received if isinstance(m, Response)]
    assert statuses[:-1] == [407] * (MIN_SAMPLES - 1)  # the queue is seen by its tenth
    assert statuses[-1] == 503


def test_a_strangers_late_invite_gets_503_with_retry_after_and_no_call() -> None:
    o, stranger = overloaded_office()
    responses = [m for m in stranger.received if isinstance(m, Response)]
    assert [r.status for r in responses] == [503]
    assert responses[0].headers.get("Retry-After") == str(RETRY_AFTER_S)
    assert o.net.calls() == []
    assert o.net.stats()["shed_overload"] == 1
    assert o.net.status()["overload"]["overloaded"] is True


def test_the_ack_of_our_503_is_dropped_without_a_word() -> None:
    o, stranger = overloaded_office()
    before = len(stranger.received)
    o.net.gateway.receive(invite_bytes(method="ACK", to_tag="overload"), STRANGER, o.net.now)
    o.net.pump()
    assert len(stranger.received) == before
    assert o.net.stats()["parse_errors"] == 0 and o.net.stats()["internal_errors"] == 0


def test_a_strangers_register_is_shed_too() -> None:
    o, stranger = overloaded_office()
    stranger.send(request("REGISTER", f"sip:{GATEWAY.host}", [
        ("Via", stranger.via()), ("Max-Forwards", "70"),
        ("From", f"<sip:999@{GATEWAY.host}>;tag=r1"), ("To", f"<sip:999@{GATEWAY.host}>"),
        ("Call-ID", "r1@198.51.100.7"), ("CSeq", "1 REGISTER"),
        ("Contact", "<sip:999@198.51.100.7>"),
    ]))
    assert stranger.final_statuses("REGISTER") == [503]


def test_the_offices_registered_phone_calls_through_an_overload() -> None:
    o, _ = overloaded_office()
    _, response = authorised_call(o.phones["101"], "200")
    assert response.status in (100, 180)
    assert o.phones["102"].invites(), "the department member is rung"
    assert o.net.stats()["shed_overload"] == 1  # only the stranger's


def test_the_providers_call_is_served_through_an_overload() -> None:
    o, _ = overloaded_office()
    o.provider.call(RING_ALL_DID)
    assert o.phones["101"].invites() and o.phones["102"].invites()


def test_a_call_in_progress_is_answered_and_hung_up_through_an_overload() -> None:
    o = office()
    invite = o.provider.call(RING_ALL_DID)
    o.phones["101"].answer()
    waited(o.net.gateway.overload, LATE_S, o.net.now)
    assert o.net.status()["overload"]["overloaded"] is True
    o.provider.bye(invite)
    assert o.provider.final_statuses("BYE") == [200]
    assert o.phones["101"].requests("BYE")
    assert o.net.calls() == []


def test_strangers_are_served_again_once_the_queue_is_short() -> None:
    o, stranger = overloaded_office()
    o.net.advance(3.0)  # quiet intervals: the ratio climbs back to everything
    assert o.net.status()["overload"]["overloaded"] is False
    stranger.call("200")
    assert stranger.final_statuses()[-1] == 407  # challenged as usual, not shed


def test_screen_answers_a_strangers_invite_before_it_is_queued() -> None:
    o, stranger = overloaded_office()
    gateway = o.net.gateway
    assert gateway.screen(invite_bytes(), STRANGER, o.net.now) == HANDLED
    o.net.pump()
    assert [m.status for m in stranger.received if isinstance(m, Response)] == [503, 503]


def test_screen_sends_the_offices_phones_and_calls_in_progress_ahead() -> None:
    o, _ = overloaded_office()
    gateway = o.net.gateway
    phone = o.phones["101"].address
    assert gateway.screen(invite_bytes(), phone, o.net.now) == FIRST
    assert gateway.screen(invite_bytes(to_tag="abc", method="BYE"), STRANGER, o.net.now) == FIRST
    assert gateway.screen(invite_bytes(), PROVIDER, o.net.now) == FIRST


def test_screen_queues_a_strangers_admitted_work_behind_and_everything_in_order_when_quiet(
        ) -> None:
    o = office()
    gateway = o.net.gateway
    assert gateway.screen(invite_bytes(to_tag="abc", method="BYE"), STRANGER, o.net.now) == LATER
    for at in (0.05, 0.15, 0.25):  # behind, admitting 70 % of strangers' new work
        waited(gateway.overload, TARGET_DELAY_S * 2, at)
    lanes = [gateway.screen(invite_bytes(credentials="Proxy-Authorization"), STRANGER, 0.25)
             for _ in range(3)]
    assert lanes == [LATER] * 3  # answers to our challenge: admitted, behind the office


def test_a_full_queue_turns_the_next_look_at_a_stranger_into_a_503() -> None:
    """The transport screens again what found its queue full: a stranger's INVITE that was
    queued (LATER) while the box looked fine is now answered 503; the provider's goes first."""
    o = office()
    gateway = o.net.gateway
    assert gateway.screen(invite_bytes(), STRANGER, o.net.now) == LATER
    assert gateway.screen(invite_bytes(), PROVIDER, o.net.now) == LATER
    gateway.queue_full(o.net.now)
    strangers = [Address("udp", f"198.51.100.{i + 1}", 5060) for i in range(100)]
    lanes = [gateway.screen(invite_bytes(), s, o.net.now) for s in strangers]
    assert set(lanes) == {HANDLED, LATER}
    assert abs(lanes.count(HANDLED) - 30) <= 1  # the ratio: 70 % admitted
    assert gateway.screen(invite_bytes(), PROVIDER, o.net.now) == FIRST
    assert o.net.status()["stats"]["shed_overload"] == lanes.count(HANDLED)


def test_screen_leaves_a_banned_source_to_be_dropped_silently() -> None:
    o, stranger = overloaded_office()
    gateway = o.net.gateway
    gateway.limiter.configure(requests=1, window_s=60.0, ban_s=300.0)
    assert gateway.screen(invite_bytes(), STRANGER, o.net.now) == HANDLED  # shed, counted: ban
    assert gateway.limiter.is_banned(STRANGER.host, o.net.now)
    assert gateway.screen(invite_bytes(), STRANGER, o.net.now) == LATER  # receive drops it
