"""Failover between the SIP provider and the reserve lines, with `now` stepped by the test.

The box has one SIP trunk `provider` and two modem lines, `mts` (GSM) and `city` (FXO), in
the issue's order `[provider, mts, city]`.
"""

from __future__ import annotations

import pytest

from firmware.failover import (
    DEFAULT_DOWN_AFTER,
    DEFAULT_PROBE_INTERVAL_S,
    DEFAULT_UP_AFTER,
    PROBE_TIMEOUT_S,
    FailoverEvent,
    FailoverMonitor,
    FailoverSettings,
    InternetCameBack,
    InternetWentDown,
    LineReachabilityChanged,
    OutboundLineChanged,
    ProbeDue,
    ReregisterNeeded,
)

SETTINGS = FailoverSettings(order=("provider", "mts", "city"))
START = 1000.0


def drain(monitor: FailoverMonitor) -> list[FailoverEvent]:
    events = []
    while (event := monitor.next_event()) is not None:
        events.append(event)
    return events


def of_type(events: list[FailoverEvent], kind: type) -> list[FailoverEvent]:
    return [event for event in events if isinstance(event, kind)]


@pytest.fixture
def monitor() -> FailoverMonitor:
    box = FailoverMonitor(SETTINGS, sip_lines=["provider"], now=START)
    box.line_went_up("mts", START)
    box.line_went_up("city", START)
    drain(box)
    return box


def answer_probes(monitor: FailoverMonitor, *, until: float) -> None:
    """Play the daemon up to `until`: at every timer, answer each due probe at once."""
    for _ in range(1000):
        now = monitor.get_timer()
        if now is None or now > until:
            return
        monitor.handle_timer(now)
        for event in drain(monitor):
            if isinstance(event, ProbeDue):
                monitor.probe_succeeded(event.line, now)


def test_defaults_are_five_seconds_two_down_three_up() -> None:
    assert (DEFAULT_PROBE_INTERVAL_S, DEFAULT_DOWN_AFTER, DEFAULT_UP_AFTER) == (5.0, 2, 3)


def test_an_empty_order_means_the_lines_in_their_configured_order() -> None:
    assert FailoverSettings().with_default_order(["provider", "mts"]).order == (
        "provider", "mts")


def test_a_given_order_is_kept_whatever_the_configured_order() -> None:
    assert SETTINGS.with_default_order(["city", "mts", "provider"]).order == SETTINGS.order


def test_outgoing_calls_use_the_first_line_of_the_order_that_is_up(
        monitor: FailoverMonitor) -> None:
    assert monitor.outbound_line == "provider"


def test_the_first_probe_is_due_at_start(monitor: FailoverMonitor) -> None:
    assert monitor.get_timer() == START
    monitor.handle_timer(START)
    assert drain(monitor) == [ProbeDue(line="provider", at=START)]


def test_probes_repeat_every_probe_interval(monitor: FailoverMonitor) -> None:
    monitor.handle_timer(START)
    monitor.probe_succeeded("provider", START + 0.05)
    assert monitor.next_probe_at("provider") == START + DEFAULT_PROBE_INTERVAL_S
    assert monitor.get_timer() == START + DEFAULT_PROBE_INTERVAL_S


def test_losing_the_default_route_switches_to_the_reserve_at_once(
        monitor: FailoverMonitor) -> None:
    monitor.default_route_lost(START + 3)
    events = drain(monitor)
    assert OutboundLineChanged(old="provider", new="mts", reason="default route lost",
                               at=START + 3) in events
    assert monitor.outbound_line == "mts"


def test_losing_the_default_route_marks_every_sip_line_unreachable() -> None:
    box = FailoverMonitor(FailoverSettings(order=("a", "b")), sip_lines=["a", "b"], now=START)
    box.default_route_lost(START + 1)
    assert of_type(drain(box), LineReachabilityChanged) == [
        LineReachabilityChanged(line="a", reachable=False, reason="default route lost",
                                at=START + 1),
        LineReachabilityChanged(line="b", reachable=False, reason="default route lost",
                                at=START + 1),
    ]
    assert box.outbound_line is None


def test_losing_the_default_route_takes_the_internet_down(monitor: FailoverMonitor) -> None:
    monitor.default_route_lost(START + 3)
    assert InternetWentDown(reason="default route lost", at=START + 3) in drain(monitor)
    assert (monitor.internet.state, monitor.internet.since) == ("down", START + 3)


def test_a_link_down_before_the_route_loss_names_the_link_in_the_reason(
        monitor: FailoverMonitor) -> None:
    monitor.link_down("eth0", START + 2)
    monitor.default_route_lost(START + 2)
    assert monitor.internet.reason == "default route lost (link eth0 down)"


def test_the_route_coming_back_does_not_bring_the_provider_back_before_good_probes(
        monitor: FailoverMonitor) -> None:
    monitor.default_route_lost(START + 1)
    monitor.default_route_present(START + 20)
    assert monitor.outbound_line == "mts"
    assert monitor.internet.state == "down"


def test_the_route_coming_back_probes_at_once(monitor: FailoverMonitor) -> None:
    monitor.handle_timer(START)
    monitor.probe_succeeded("provider", START)
    monitor.default_route_lost(START + 1)
    monitor.default_route_present(START + 2)
    assert monitor.get_timer() == START + 2


def test_the_provider_comes_back_after_up_after_good_probes(monitor: FailoverMonitor) -> None:
    monitor.default_route_lost(START + 1)
    monitor.default_route_present(START + 2)
    for good in range(DEFAULT_UP_AFTER):
        assert monitor.outbound_line == "mts", f"after {good} good probes"
        monitor.probe_succeeded("provider", START + 3 + good * 5)
    assert monitor.outbound_line == "provider"
    assert of_type(drain(monitor), InternetCameBack) == [
        InternetCameBack(at=START + 13, down_for_s=12.0)]


def test_a_failed_probe_in_between_starts_the_good_count_again(
        monitor: FailoverMonitor) -> None:
    monitor.default_route_lost(START + 1)
    monitor.default_route_present(START + 2)
    monitor.probe_succeeded("provider", START + 3)
    monitor.probe_succeeded("provider", START + 8)
    monitor.probe_failed("provider", START + 13)
    monitor.probe_succeeded("provider", START + 18)
    monitor.probe_succeeded("provider", START + 23)
    assert monitor.outbound_line == "mts"
    monitor.probe_succeeded("provider", START + 28)
    assert monitor.outbound_line == "provider"


def test_one_failed_probe_does_not_switch(monitor: FailoverMonitor) -> None:
    monitor.probe_failed("provider", START + 1)
    assert monitor.outbound_line == "provider"
    assert monitor.internet.state == "up"


def test_down_after_failed_probes_in_a_row_switch_to_the_reserve(
        monitor: FailoverMonitor) -> None:
    monitor.probe_failed("provider", START + 1)
    monitor.probe_failed("provider", START + 6)
    events = drain(monitor)
    assert of_type(events, OutboundLineChanged)[0].new == "mts"
    assert of_type(events, InternetWentDown) == [
        InternetWentDown(reason="no answer from provider", at=START + 6)]


def test_a_good_probe_between_failures_keeps_the_provider(monitor: FailoverMonitor) -> None:
    monitor.probe_failed("provider", START + 1)
    monitor.probe_succeeded("provider", START + 6)
    monitor.probe_failed("provider", START + 11)
    assert monitor.outbound_line == "provider"


def test_an_unanswered_probe_fails_at_its_deadline(monitor: FailoverMonitor) -> None:
    monitor.handle_timer(START)
    assert monitor.get_timer() == START + PROBE_TIMEOUT_S
    monitor.handle_timer(START + PROBE_TIMEOUT_S)
    monitor.handle_timer(START + DEFAULT_PROBE_INTERVAL_S)
    monitor.handle_timer(START + DEFAULT_PROBE_INTERVAL_S + PROBE_TIMEOUT_S)
    assert monitor.outbound_line == "mts"
    assert of_type(drain(monitor), LineReachabilityChanged)[0].reason == (
        "2 failed probes in a row (no answer within 1 s)")


@pytest.mark.parametrize("silent_from_s", [0.01, 1.0, 2.5, 4.99])
def test_a_silent_provider_is_left_within_interval_times_down_after_plus_one_second(
        silent_from_s: float) -> None:
    box = FailoverMonitor(SETTINGS, sip_lines=["provider"], now=START)
    box.line_went_up("mts", START)
    silent_at = START + 60 + silent_from_s
    answer_probes(box, until=silent_at)
    drain(box)
    switched_at = None
    now = box.get_timer()
    for _ in range(100):
        assert now is not None
        box.handle_timer(now)
        switches = of_type(drain(box), OutboundLineChanged)
        if switches:
            switched_at = switches[0].at
            break
        now = box.get_timer()
    assert switched_at is not None
    bound_s = DEFAULT_PROBE_INTERVAL_S * DEFAULT_DOWN_AFTER + 1.0
    print(f"\nprovider silent {silent_from_s:g} s after a good probe -> reserve line in "
          f"{switched_at - silent_at:.2f} s (bound {bound_s:g} s)")
    assert switched_at - silent_at <= bound_s


def test_an_address_change_asks_every_sip_line_to_register_again() -> None:
    box = FailoverMonitor(FailoverSettings(order=("a",)), sip_lines=["a", "b"], now=START)
    box.address_changed(START + 5)
    assert of_type(drain(box), ReregisterNeeded) == [
        ReregisterNeeded(line="a"), ReregisterNeeded(line="b")]


def test_an_address_change_probes_at_once(monitor: FailoverMonitor) -> None:
    monitor.handle_timer(START)
    monitor.probe_succeeded("provider", START)
    monitor.address_changed(START + 2)
    assert monitor.get_timer() == START + 2


def test_a_modem_line_counts_as_down_until_its_driver_says_it_is_up() -> None:
    box = FailoverMonitor(SETTINGS, sip_lines=["provider"], now=START)
    box.default_route_lost(START)
    assert box.outbound_line is None
    box.line_went_up("city", START + 1)
    assert box.outbound_line == "city"


def test_a_reserve_line_going_down_is_skipped_for_the_next(monitor: FailoverMonitor) -> None:
    monitor.default_route_lost(START + 1)
    monitor.line_went_down("mts", START + 2, reason="port vanished")
    assert of_type(drain(monitor), OutboundLineChanged)[-1] == OutboundLineChanged(
        old="mts", new="city", reason="port vanished", at=START + 2)


def test_a_sip_line_cannot_be_reported_up_by_hand(monitor: FailoverMonitor) -> None:
    with pytest.raises(ValueError, match="SIP line"):
        monitor.line_went_up("provider", START)


def test_the_internet_reason_follows_the_cause_while_it_stays_down(
        monitor: FailoverMonitor) -> None:
    monitor.default_route_lost(START + 1)
    monitor.default_route_present(START + 2)
    assert (monitor.internet.state, monitor.internet.since, monitor.internet.reason) == (
        "down", START + 1, "no answer from provider")


def test_without_sip_lines_the_internet_follows_the_route_alone() -> None:
    box = FailoverMonitor(FailoverSettings(order=("mts",)), sip_lines=[], now=START)
    box.default_route_lost(START + 1)
    box.default_route_present(START + 2)
    assert [type(event) for event in drain(box)] == [InternetWentDown, InternetCameBack]
