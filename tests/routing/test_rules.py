"""Caller rules: exact numbers, prefixes and patterns, normalisation, order and time windows."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from firmware.routing.rules import (
    CallerRule,
    CompiledRules,
    RuleSyntaxError,
    compile_rules,
    match_caller,
    normalise_number,
    reply_status,
)

MOSCOW = "Europe/Moscow"
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
# Monday 2 March 2026, 12:00 in Moscow.
NOON = dt.datetime(2026, 3, 2, 12, tzinfo=ZoneInfo(MOSCOW)).timestamp()


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(MOSCOW)).timestamp()


def rule(match: str, action: str = "blacklist", **fields: object) -> CallerRule:
    return CallerRule(match=match, action=action, **fields)  # type: ignore[arg-type]


def matches(match: str, caller: str) -> bool:
    return match_caller([rule(match)], caller, NOON, MOSCOW) is not None


# --- normalisation -------------------------------------------------------------------------------


def test_spaces_dashes_and_parentheses_are_ignored() -> None:
    assert matches("74951234567", "+7 (495) 123-45-67")


def test_leading_plus_is_ignored() -> None:
    assert matches("74951234567", "+74951234567")


def test_rule_number_is_normalised_like_the_caller() -> None:
    assert matches("+7 (495) 123-45-67", "74951234567")


def test_russian_number_written_with_8_is_the_same_as_with_7() -> None:
    assert matches("74951234567", "84951234567")
    assert matches("8 495 123-45-67", "+74951234567")


def test_only_11_digit_numbers_have_their_leading_8_rewritten() -> None:
    assert normalise_number("8495123456") == "8495123456"
    assert normalise_number("849512345678") == "849512345678"


def test_number_written_with_plus_keeps_a_leading_8() -> None:
    # +81 3 1234 5678 is Tokyo, not the Russian 8 13...
    assert normalise_number("+81312345678") == "81312345678"
    assert not matches("71312345678", "+81312345678")


def test_caller_that_is_not_a_number_matches_no_rule() -> None:
    assert not matches("_.", "anonymous")
    assert not matches("_.", "")


# --- exact numbers -------------------------------------------------------------------------------


def test_exact_number_matches_only_itself() -> None:
    assert not matches("74951234567", "74951234568")


def test_exact_number_does_not_match_a_longer_number() -> None:
    assert not matches("7495123456", "74951234567")


# --- prefixes ------------------------------------------------------------------------------------


def test_prefix_matches_numbers_starting_with_it() -> None:
    assert matches("7495*", "+7 495 000-00-00")


def test_prefix_does_not_match_other_numbers() -> None:
    assert not matches("7495*", "74991234567")


def test_prefix_written_with_8_matches_callers_in_the_7_form() -> None:
    assert matches("8495*", "+74951234567")


def test_prefix_written_with_7_matches_callers_in_the_8_form() -> None:
    assert matches("7495*", "84951234567")


def test_prefix_written_with_plus_is_international() -> None:
    # +8495... would be abroad; a Moscow caller in the 8 form is +7 495...
    assert not matches("+8495*", "84951234567")
    assert matches("+84*", "+84 912 345 678")


# --- patterns ------------------------------------------------------------------------------------


def test_pattern_x_is_any_digit_and_fixes_the_length() -> None:
    assert matches("_7495XXXXXXX", "74950000000")
    assert not matches("_7495XXXXXXX", "7495000000")
    assert not matches("_7495XXXXXXX", "749500000000")


def test_pattern_z_is_1_to_9() -> None:
    assert matches("_7Z", "71")
    assert not matches("_7Z", "70")


def test_pattern_n_is_2_to_9() -> None:
    assert matches("_7N", "72")
    assert not matches("_7N", "71")


def test_pattern_class_may_hold_a_range() -> None:
    assert matches("_7[1-5]", "75")
    assert not matches("_7[1-5]", "76")


def test_pattern_class_may_list_digits() -> None:
    assert matches("_7[13579]", "77")
    assert not matches("_7[13579]", "78")


def test_pattern_final_dot_is_one_or_more_of_anything() -> None:
    assert matches("_7495.", "74951")
    assert matches("_7495.", "74951234567")
    assert not matches("_7495.", "7495")


def test_pattern_letters_may_be_lowercase() -> None:
    assert matches("_7495xxxxxxx", "74950000000")


def test_pattern_written_with_8_matches_callers_in_the_7_form() -> None:
    assert matches("_8495XXXXXXX", "+7 495 123-45-67")


def test_pattern_written_with_7_matches_callers_in_the_8_form() -> None:
    assert matches("_79[0-9]XXXXXXXX", "8 916 123-45-67")


@pytest.mark.parametrize(
    "pattern",
    ["_", "_7[", "_7[]", "_7[5-1]", "_7[a]", "_7.X", "_+7X.", "_7#", "_7!"],
)
def test_malformed_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(RuleSyntaxError):
        rule(pattern)


@pytest.mark.parametrize("match", ["abc", "*", "74 95x*", "1234567890123456", "", "7495**"])
def test_malformed_number_or_prefix_is_refused(match: str) -> None:
    with pytest.raises(RuleSyntaxError):
        rule(match)


# --- order ---------------------------------------------------------------------------------------


def test_first_matching_rule_in_configured_order_wins() -> None:
    vip = rule("74951234567", "vip")
    blacklist = rule("7495*", "blacklist")

    assert match_caller([vip, blacklist], "74951234567", NOON, MOSCOW) is vip
    assert match_caller([blacklist, vip], "74951234567", NOON, MOSCOW) is blacklist


def test_order_holds_between_patterns_prefixes_and_exact_numbers() -> None:
    rules = [rule("_7X.", "route", to="101"), rule("7495*"), rule("74951234567", "vip")]

    assert match_caller(rules, "74951234567", NOON, MOSCOW) is rules[0]


def test_no_matching_rule_gives_none() -> None:
    assert match_caller([rule("7495*")], "74991234567", NOON, MOSCOW) is None


def test_compiled_rules_give_the_same_answer_on_every_call() -> None:
    compiled = compile_rules([rule("7495*"), rule("7499*", "vip")])

    assert isinstance(compiled, CompiledRules)
    for _ in range(3):
        assert compiled.match("74991234567", NOON, MOSCOW) is compiled.rules[1]


def test_a_long_blacklist_finds_its_last_entry() -> None:
    blacklist = [rule(f"7916{index:07d}") for index in range(10_000)]
    compiled = compile_rules([*blacklist, rule("7*", "vip")])

    assert compiled.match("+7 916 000-99-99", NOON, MOSCOW) is blacklist[9_999]
    assert compiled.match("+7 916 001-00-00", NOON, MOSCOW) is compiled.rules[-1]


# --- time windows --------------------------------------------------------------------------------


def test_rule_applies_inside_its_hours() -> None:
    daytime = rule("7495*", hours=((540, 1080),))

    assert match_caller([daytime], "74951234567", at(2026, 3, 2, 9), MOSCOW) is daytime


def test_rule_outside_its_hours_gives_way_to_the_next_rule() -> None:
    daytime = rule("7495*", hours=((540, 1080),))
    fallback = rule("7*", "vip")

    assert match_caller([daytime, fallback], "74951234567", at(2026, 3, 2, 18), MOSCOW) is fallback


def test_rule_applies_only_on_its_weekdays() -> None:
    weekend = rule("7495*", weekdays=frozenset({SAT, SUN}))

    assert match_caller([weekend], "74951234567", at(2026, 3, 7, 12), MOSCOW) is weekend
    assert match_caller([weekend], "74951234567", at(2026, 3, 6, 12), MOSCOW) is None


def test_rule_hours_crossing_midnight_belong_to_the_weekday_they_start() -> None:
    friday_night = rule("7495*", hours=((1320, 360),), weekdays=frozenset({FRI}))

    assert match_caller([friday_night], "74951234567", at(2026, 3, 7, 3), MOSCOW) is friday_night
    assert match_caller([friday_night], "74951234567", at(2026, 3, 6, 3), MOSCOW) is None


def test_rule_hours_are_read_in_the_site_time_zone() -> None:
    daytime = rule("7495*", hours=((540, 1080),))
    moment = at(2026, 3, 2, 8)  # 08:00 in Moscow is 12:00 in Novosibirsk

    assert match_caller([daytime], "74951234567", moment, MOSCOW) is None
    assert match_caller([daytime], "74951234567", moment, "Asia/Novosibirsk") is daytime


# --- actions -------------------------------------------------------------------------------------


def test_blacklist_replies_busy_by_default_with_486() -> None:
    assert reply_status(rule("7495*")) == 486


def test_blacklist_reply_reject_is_603() -> None:
    assert reply_status(rule("7495*", reply="reject")) == 603


def test_unknown_reply_is_refused() -> None:
    with pytest.raises(RuleSyntaxError, match="reply"):
        rule("7495*", reply="ignore")


def test_unknown_action_is_refused() -> None:
    with pytest.raises(RuleSyntaxError, match="action"):
        rule("7495*", "whitelist")


def test_reply_is_only_for_blacklist_rules() -> None:
    with pytest.raises(RuleSyntaxError, match="reply"):
        rule("7495*", "vip", reply="reject")


def test_blacklist_rule_takes_no_destination() -> None:
    with pytest.raises(RuleSyntaxError):
        rule("7495*", to="101")


def test_route_rule_needs_a_destination() -> None:
    with pytest.raises(RuleSyntaxError, match="to"):
        rule("7495*", "route")


def test_vip_rule_may_go_straight_to_a_department() -> None:
    assert rule("7495*", "vip", to="200").to == "200"


def test_empty_hours_are_refused() -> None:
    with pytest.raises(RuleSyntaxError, match="hours"):
        rule("7495*", hours=())
