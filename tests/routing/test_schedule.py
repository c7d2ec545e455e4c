"""Opening hours: `is_open` and `next_change` on the wall clock of a schedule's time zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from firmware.routing.schedule import (
    Schedule,
    ScheduleError,
    format_time_range,
    is_open,
    next_change,
    parse_time_range,
)

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
WORKDAYS = (MON, TUE, WED, THU, FRI)
MOSCOW = "Europe/Moscow"
BERLIN = "Europe/Berlin"


def at(timezone: str, year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    """Unix time of a wall-clock moment in `timezone` (2026-03-02 is a Monday)."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(timezone)).timestamp()


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()


def schedule(
    hours: dict[int, tuple[str, ...]],
    *,
    timezone: str = MOSCOW,
    holidays: tuple[dt.date, ...] = (),
) -> Schedule:
    return Schedule(
        name="office",
        timezone=timezone,
        hours={day: tuple(map(parse_time_range, ranges)) for day, ranges in hours.items()},
        holidays=frozenset(holidays),
        after_hours="201",
    )


OFFICE = schedule({day: ("09:00-18:00",) for day in WORKDAYS})
NIGHT_SHIFT = schedule({FRI: ("22:00-06:00",)})


# --- is_open -------------------------------------------------------------------------------------


def test_open_inside_the_hours_of_a_weekday() -> None:
    assert is_open(OFFICE, at(MOSCOW, 2026, 3, 2, 10, 30))


def test_closed_outside_the_hours_of_a_weekday() -> None:
    assert not is_open(OFFICE, at(MOSCOW, 2026, 3, 2, 19))


def test_range_includes_its_start_minute() -> None:
    assert is_open(OFFICE, at(MOSCOW, 2026, 3, 2, 9))


def test_range_excludes_its_end_minute() -> None:
    assert is_open(OFFICE, at(MOSCOW, 2026, 3, 2, 17, 59))
    assert not is_open(OFFICE, at(MOSCOW, 2026, 3, 2, 18))


def test_day_without_hours_is_closed() -> None:
    assert not is_open(OFFICE, at(MOSCOW, 2026, 3, 8, 12))


def test_hours_are_read_on_the_wall_clock_of_the_schedule_zone() -> None:
    # 09:30 in Moscow is 06:30 UTC: open, though it is before nine in UTC.
    assert is_open(OFFICE, utc(2026, 3, 2, 6, 30))


def test_range_crossing_midnight_is_open_late_in_the_evening() -> None:
    assert is_open(NIGHT_SHIFT, at(MOSCOW, 2026, 3, 6, 23))


def test_range_crossing_midnight_stays_open_until_its_end_next_morning() -> None:
    assert is_open(NIGHT_SHIFT, at(MOSCOW, 2026, 3, 7, 5, 59))
    assert not is_open(NIGHT_SHIFT, at(MOSCOW, 2026, 3, 7, 6))


def test_range_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    # Friday's night shift does not make Friday's own early morning open.
    assert not is_open(NIGHT_SHIFT, at(MOSCOW, 2026, 3, 6, 3))


def test_range_crossing_midnight_on_sunday_continues_into_monday() -> None:
    sunday_night = schedule({SUN: ("20:00-02:00",)})

    assert is_open(sunday_night, at(MOSCOW, 2026, 3, 9, 1, 30))


def test_several_ranges_in_a_day_are_each_open() -> None:
    with_lunch = schedule({MON: ("09:00-13:00", "14:00-18:00")})

    assert is_open(with_lunch, at(MOSCOW, 2026, 3, 2, 12, 59))
    assert is_open(with_lunch, at(MOSCOW, 2026, 3, 2, 14))


def test_gap_between_ranges_of_a_day_is_closed() -> None:
    with_lunch = schedule({MON: ("09:00-13:00", "14:00-18:00")})

    assert not is_open(with_lunch, at(MOSCOW, 2026, 3, 2, 13, 30))


def test_whole_day_range_is_open_from_first_to_last_minute() -> None:
    all_day = schedule({MON: ("00:00-24:00",)})

    assert is_open(all_day, at(MOSCOW, 2026, 3, 2, 0))
    assert is_open(all_day, at(MOSCOW, 2026, 3, 2, 23, 59))
    assert not is_open(all_day, at(MOSCOW, 2026, 3, 3, 0))


def test_holiday_closes_a_working_day() -> None:
    holiday = schedule({day: ("09:00-18:00",) for day in WORKDAYS}, holidays=(dt.date(2026, 3, 9),))

    assert not is_open(holiday, at(MOSCOW, 2026, 3, 9, 12))
    assert is_open(holiday, at(MOSCOW, 2026, 3, 10, 12))


def test_holiday_closes_the_early_hours_of_a_night_range_begun_the_day_before() -> None:
    night = schedule({FRI: ("22:00-06:00",)}, holidays=(dt.date(2026, 3, 7),))

    assert is_open(night, at(MOSCOW, 2026, 3, 6, 23, 59))
    assert not is_open(night, at(MOSCOW, 2026, 3, 7, 0))


def test_holiday_is_a_local_date_not_a_utc_date() -> None:
    all_week = schedule(
        {day: ("00:00-24:00",) for day in range(7)}, holidays=(dt.date(2026, 12, 31),)
    )

    # 2026-12-30 22:00 UTC is already the 31st in Moscow; 2026-12-31 21:30 UTC is New Year there.
    assert not is_open(all_week, utc(2026, 12, 30, 22))
    assert is_open(all_week, utc(2026, 12, 31, 21, 30))


def test_moscow_opening_is_at_the_same_utc_time_in_winter_and_summer() -> None:
    assert is_open(OFFICE, utc(2026, 1, 12, 6)) and not is_open(OFFICE, utc(2026, 1, 12, 5, 59))
    assert is_open(OFFICE, utc(2026, 7, 13, 6)) and not is_open(OFFICE, utc(2026, 7, 13, 5, 59))


def test_berlin_opening_moves_an_hour_earlier_in_utc_after_the_march_change() -> None:
    berlin = schedule({day: ("09:00-18:00",) for day in WORKDAYS}, timezone=BERLIN)

    # Monday 23 March, winter time (UTC+1): 09:00 is 08:00 UTC.
    assert not is_open(berlin, utc(2026, 3, 23, 7, 30))
    # Monday 30 March, summer time (UTC+2): 09:00 is 07:00 UTC.
    assert is_open(berlin, utc(2026, 3, 30, 7, 30))


# --- next_change ---------------------------------------------------------------------------------


def test_next_change_while_open_is_the_closing_time() -> None:
    assert next_change(OFFICE, at(MOSCOW, 2026, 3, 2, 10)) == at(MOSCOW, 2026, 3, 2, 18)


def test_next_change_while_closed_is_the_next_opening() -> None:
    assert next_change(OFFICE, at(MOSCOW, 2026, 3, 2, 20)) == at(MOSCOW, 2026, 3, 3, 9)


def test_next_change_skips_a_closed_weekend() -> None:
    assert next_change(OFFICE, at(MOSCOW, 2026, 3, 6, 18)) == at(MOSCOW, 2026, 3, 9, 9)


def test_next_change_is_strictly_after_now() -> None:
    assert next_change(OFFICE, at(MOSCOW, 2026, 3, 2, 9)) == at(MOSCOW, 2026, 3, 2, 18)


def test_next_change_skips_a_holiday() -> None:
    holiday = schedule({day: ("09:00-18:00",) for day in WORKDAYS}, holidays=(dt.date(2026, 3, 9),))

    assert next_change(holiday, at(MOSCOW, 2026, 3, 6, 18)) == at(MOSCOW, 2026, 3, 10, 9)


def test_next_change_of_a_night_range_is_its_end_next_morning() -> None:
    assert next_change(NIGHT_SHIFT, at(MOSCOW, 2026, 3, 6, 23)) == at(MOSCOW, 2026, 3, 7, 6)


def test_next_change_ignores_a_boundary_where_two_ranges_meet() -> None:
    seamless = schedule({MON: ("09:00-13:00", "13:00-18:00")})

    assert next_change(seamless, at(MOSCOW, 2026, 3, 2, 10)) == at(MOSCOW, 2026, 3, 2, 18)


def test_next_change_of_an_always_open_schedule_is_none() -> None:
    always = schedule({day: ("00:00-24:00",) for day in range(7)})

    assert next_change(always, at(MOSCOW, 2026, 3, 2, 10)) is None


def test_next_change_of_a_schedule_without_hours_is_none() -> None:
    assert next_change(schedule({}), at(MOSCOW, 2026, 3, 2, 10)) is None


def test_next_change_of_an_always_open_schedule_is_its_next_holiday() -> None:
    always = schedule(
        {day: ("00:00-24:00",) for day in range(7)}, holidays=(dt.date(2026, 12, 31),)
    )

    assert next_change(always, at(MOSCOW, 2026, 3, 2, 10)) == at(MOSCOW, 2026, 12, 31, 0)
    assert next_change(always, at(MOSCOW, 2026, 12, 31, 0)) == at(MOSCOW, 2027, 1, 1, 0)
    assert next_change(always, at(MOSCOW, 2027, 1, 1, 0)) is None


def test_next_change_across_the_berlin_march_change_is_monday_in_summer_time() -> None:
    berlin = schedule({day: ("09:00-18:00",) for day in WORKDAYS}, timezone=BERLIN)

    # Closes Friday 27 March 18:00 CET (17:00 UTC); clocks go forward on Sunday 29 March.
    assert next_change(berlin, utc(2026, 3, 27, 16)) == utc(2026, 3, 27, 17)
    assert next_change(berlin, utc(2026, 3, 27, 17)) == utc(2026, 3, 30, 7)


def test_range_starting_in_the_skipped_spring_hour_opens_when_the_clock_jumps() -> None:
    # 02:30 does not exist in Berlin on 29 March 2026: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
    skipped = schedule({SUN: ("02:30-04:00",)}, timezone=BERLIN)

    assert next_change(skipped, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1)
    assert is_open(skipped, utc(2026, 3, 29, 1))


def test_repeated_autumn_hour_crosses_a_boundary_in_it_twice() -> None:
    # On 25 October 2026 Berlin lives 02:00-03:00 twice: first in CEST, then in CET.
    early = schedule({SUN: ("00:00-02:30",)}, timezone=BERLIN)
    changes = [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 30)]

    first = next_change(early, utc(2026, 10, 25, 0))
    second = next_change(early, changes[0])
    third = next_change(early, changes[1])

    assert [first, second, third] == changes


# --- time ranges and validation ------------------------------------------------------------------


def test_time_range_is_read_as_minutes_of_the_day() -> None:
    assert parse_time_range("09:00-18:30") == (540, 1110)


def test_time_range_may_end_at_24_00() -> None:
    assert parse_time_range("00:00-24:00") == (0, 1440)


def test_time_range_ending_at_00_00_ends_at_midnight() -> None:
    assert parse_time_range("22:00-00:00") == (1320, 1440)


def test_formatting_a_time_range_is_the_inverse_of_reading_it() -> None:
    assert format_time_range(parse_time_range("22:00-06:00")) == "22:00-06:00"


@pytest.mark.parametrize(
    "text", ["9:00-18:00", "09:00", "09:00-18:60", "24:00-06:00", "09:00-24:30", "09:00-09:00"]
)
def test_malformed_time_range_is_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_time_range(text)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ScheduleError, match="Mars/Olympus"):
        schedule({}, timezone="Mars/Olympus")


def test_weekday_must_be_0_to_6() -> None:
    with pytest.raises(ScheduleError, match="weekday"):
        Schedule(name="x", timezone=MOSCOW, hours={7: ((540, 1080),)})


def test_days_without_ranges_do_not_make_schedules_differ() -> None:
    assert schedule({MON: ("09:00-18:00",), SUN: ()}) == schedule({MON: ("09:00-18:00",)})
