"""The toll guard, sans-IO: number classes by the dial plan, permissions, the hourly windows."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from firmware.routing.tollguard import (
    BOX_LIMIT,
    EMERGENCY,
    EXTENSION_LIMIT,
    INTERNAL,
    INTERNATIONAL,
    LOCAL,
    LONG_DISTANCE,
    MOBILE,
    NOT_ALLOWED,
    REPORT_INTERVAL_S,
    WINDOW_S,
    DialPlan,
    SlidingWindow,
    TollGuard,
    allows,
    classify,
)
from firmware.store.config import Config, Extension, Security, Site

RUSSIA = DialPlan()


@pytest.mark.parametrize(("number", "expected"), [
    # Mobiles: 9xx after 8, +7 or 7.
    ("89161234567", MOBILE), ("+79161234567", MOBILE), ("79161234567", MOBILE),
    ("9161234567", MOBILE),
    # Long distance: any other national number.
    ("84951234567", LONG_DISTANCE), ("+74951234567", LONG_DISTANCE),
    ("83832123456", LONG_DISTANCE), ("88091234567", LONG_DISTANCE),
    # 8-800 is free to call: local.
    ("88001234567", LOCAL), ("+78001234567", LOCAL),
    # International: 8 10, 00, + with another country code, Kazakhstan under +7.
    ("81049301234567", INTERNATIONAL), ("0088213374455", INTERNATIONAL),
    ("+4930123456", INTERNATIONAL), ("+77012345678", INTERNATIONAL),
    ("87012345678", INTERNATIONAL), ("+76012345678", INTERNATIONAL),
    # Short numbers dialled as they are: local.
    ("1234567", LOCAL), ("0611", LOCAL), ("123", LOCAL),
    # Emergency numbers, always.
    ("112", EMERGENCY), ("101", EMERGENCY), ("104", EMERGENCY), ("03", EMERGENCY),
])
def test_russian_numbers_are_classified_by_their_shape(number: str, expected: str) -> None:
    assert classify(number, RUSSIA) == expected


@pytest.mark.parametrize("number", [
    "+7916123456",  # a digit short after +7
    "8916123456789",  # too long for 8 + a national number
    "12345678",  # longer than a local number, shorter than a national one
    "+7*9161234567", "8#9161234567",  # keypad symbols amid the digits
])
def test_a_number_the_plan_does_not_recognise_counts_as_international(number: str) -> None:
    assert classify(number, RUSSIA) == INTERNATIONAL


def test_the_offices_own_area_code_makes_its_numbers_local() -> None:
    moscow = dataclasses.replace(RUSSIA, local_prefixes=("495", "499", "800"))
    assert classify("84951234567", moscow) == LOCAL
    assert classify("+74991234567", moscow) == LOCAL
    assert classify("83832123456", moscow) == LONG_DISTANCE


def test_another_countrys_plan_is_configured_by_its_keys() -> None:
    germany = DialPlan(country_code="49", trunk_prefix="0", international_prefixes=("00",),
                       national_number_digits=10, mobile_prefixes=("15", "16", "17"),
                       local_prefixes=(), foreign_prefixes=(), local_number_digits=8,
                       emergency_numbers=("112", "110"))
    assert classify("01701234567", germany) == MOBILE
    assert classify("+491701234567", germany) == MOBILE
    assert classify("03012345678", germany) == LONG_DISTANCE
    assert classify("0079161234567", germany) == INTERNATIONAL
    assert classify("110", germany) == EMERGENCY


def test_permissions_form_a_ladder_from_internal_to_international() -> None:
    assert not allows(INTERNAL, LOCAL)
    assert allows(LOCAL, LOCAL) and not allows(LOCAL, MOBILE)
    assert allows(MOBILE, MOBILE) and not allows(MOBILE, LONG_DISTANCE)
    assert allows(LONG_DISTANCE, LONG_DISTANCE) and not allows(LONG_DISTANCE, INTERNATIONAL)
    assert allows(INTERNATIONAL, INTERNATIONAL)
    assert all(allows(permission, EMERGENCY) for permission in (INTERNAL, LOCAL, MOBILE))


def test_a_sliding_window_forgets_each_event_an_hour_after_it() -> None:
    window = SlidingWindow()
    window.add(0.0)
    window.add(600.0)
    assert window.count(WINDOW_S - 1) == 2
    assert window.count(WINDOW_S) == 1
    assert window.count(WINDOW_S + 600.0) == 0


# --- the guard --------------------------------------------------------------------------------


def office(*, outbound: str = LONG_DISTANCE, per_extension: int = 30,
           box: int = 100) -> Config:
    return Config(
        extensions=(
            Extension(number="101", name="A", password="password-101", outbound=outbound,
                      external_calls_per_hour=per_extension),
            Extension(number="102", name="B", password="password-102",
                      external_calls_per_hour=per_extension),
        ),
        security=Security(external_calls_per_hour=box),
        site=Site(),
    )


def test_international_calls_are_off_by_default() -> None:
    config = Config(extensions=(Extension(number="101", name="A", password="password-101"),))
    refusal = TollGuard().admit(config, "101", "0088213374455", 0.0)
    assert refusal is not None
    assert (refusal.status, refusal.reason) == (403, "Forbidden (international calls not allowed)")
    assert refusal.event is not None
    assert (refusal.event.kind, refusal.event.extension, refusal.event.number,
            refusal.event.number_class) == (NOT_ALLOWED, "101", "0088213374455", INTERNATIONAL)


def test_a_call_within_the_permission_goes_out() -> None:
    assert TollGuard().admit(office(), "101", "89161234567", 0.0) is None


def test_an_internal_only_extension_may_call_emergency_numbers_and_nothing_else() -> None:
    guard, config = TollGuard(), office(outbound=INTERNAL)
    assert guard.admit(config, "101", "112", 0.0) is None
    refusal = guard.admit(config, "101", "1234567", 0.0)
    assert refusal is not None and refusal.reason == "Forbidden (external calls not allowed)"


def test_an_extension_allowed_international_calls_makes_them() -> None:
    assert TollGuard().admit(office(outbound=INTERNATIONAL), "101", "+4930123456", 0.0) is None


def test_the_extensions_hourly_limit_refuses_the_next_call_until_the_first_is_an_hour_old(
) -> None:
    guard, config = TollGuard(), office(per_extension=3)
    for second in range(3):
        assert guard.admit(config, "101", "89161234567", float(second)) is None
    refusal = guard.admit(config, "101", "89161234567", 10.0)
    assert refusal is not None and refusal.status == 403
    assert refusal.event is not None and refusal.event.kind == EXTENSION_LIMIT
    assert guard.admit(config, "102", "89161234567", 10.0) is None  # another extension's count
    assert guard.admit(config, "101", "89161234567", WINDOW_S) is None


def test_the_box_wide_limit_counts_every_extension_together() -> None:
    guard, config = TollGuard(), office(box=2)
    assert guard.admit(config, "101", "89161234567", 0.0) is None
    assert guard.admit(config, "102", "89161234567", 1.0) is None
    refusal = guard.admit(config, "101", "89161234567", 2.0)
    assert refusal is not None and refusal.event is not None
    assert refusal.event.kind == BOX_LIMIT
    assert refusal.reason == "Forbidden (the office's hourly limit of external calls reached)"


def test_emergency_calls_are_never_limited_nor_counted() -> None:
    guard, config = TollGuard(), office(per_extension=1, box=1)
    for second in range(5):
        assert guard.admit(config, "101", "112", float(second)) is None
    assert guard.admit(config, "101", "89161234567", 10.0) is None


def test_refused_calls_are_not_counted() -> None:
    guard, config = TollGuard(), office(per_extension=1)
    assert guard.admit(config, "101", "+4930123456", 0.0) is not None
    assert guard.admit(config, "101", "89161234567", 1.0) is None


def test_the_count_survives_a_new_configuration() -> None:
    guard = TollGuard()
    assert guard.admit(office(per_extension=1), "101", "89161234567", 0.0) is None
    assert guard.admit(office(per_extension=1, box=50), "101", "89161234567", 1.0) is not None


def test_a_repeated_refusal_is_reported_once_a_minute_with_the_count_of_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard, config = TollGuard(), office()
    with caplog.at_level(logging.WARNING, logger="firmware.routing.tollguard"):
        first = guard.admit(config, "101", "+4930123456", 0.0)
        quiet = [guard.admit(config, "101", "+4930123457", float(s)) for s in range(1, 6)]
        later = guard.admit(config, "101", "+4930123458", REPORT_INTERVAL_S)
    assert first is not None and first.event is not None
    assert all(r is not None and r.status == 403 and r.event is None for r in quiet)
    assert later is not None and later.event is not None and later.event.repeated == 5
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2
    assert "extension 101" in lines[0] and "+4930123456" in lines[0]
    assert "international calls not allowed" in lines[0]
    assert "5 more refused" in lines[1]
