"""Opening hours: whether a number or department is open at a moment, and when that next changes.

A `Schedule` is a week of local opening ranges, holiday dates and a time zone. It is evaluated
on the wall clock of its zone (`zoneinfo`, so daylight saving time is the zone's business): a
moment is open when its local time falls within a range and its local date is not a holiday.
A range belongs to the weekday it starts on and may run past midnight ("22:00-06:00" is open
until 06:00 the next morning); "00:00-24:00" is the whole day. A holiday closes its own local
date from 00:00 to 24:00, including the early hours of a night range that began the day before,
and nothing beyond it. Nothing here reads a clock: the caller passes `now_utc`, Unix seconds
(the gateway passes `time.time()`), because opening hours are wall-clock time by nature.
"""

from __future__ import annotations

import datetime as dt
import heapq
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60
DAYS_PER_WEEK = 7
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
# Past the last holiday the state repeats every week; one more day covers a range that crosses
# midnight into the week after.
PERIODIC_HORIZON_DAYS = DAYS_PER_WEEK + 1

_RANGE_PATTERN = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")

TimeRange = tuple[int, int]  # (start_minute, end_minute) of the local day; end < start crosses 0:00
WeeklyHours = Mapping[int, tuple[TimeRange, ...]]  # weekday (0 = Monday) -> its ranges


class ScheduleError(ValueError):
    """A schedule, a time range or a time zone is malformed; the message says how."""


def parse_time_range(text: str) -> TimeRange:
    """Read `HH:MM-HH:MM`: "09:00-18:00" is (540, 1080), "22:00-06:00" crosses midnight.

    "24:00" (or "00:00") as the end means midnight at the end of the day.
    """
    found = _RANGE_PATTERN.fullmatch(text)
    if found is None:
        raise ScheduleError(f'must be a range like "09:00-18:00", got "{text}"')
    start_hour, start_minute, end_hour, end_minute = (int(group) for group in found.groups())
    if start_hour > 23 or start_minute > 59:
        raise ScheduleError(f'start must be 00:00 to 23:59, got "{text}"')
    if end_minute > 59 or end_hour > 24 or (end_hour == 24 and end_minute):
        raise ScheduleError(f'end must be 00:00 to 24:00, got "{text}"')
    end = end_hour * 60 + end_minute
    time_range = (start_hour * 60 + start_minute, end or MINUTES_PER_DAY)
    _check_range(time_range, text)
    return time_range


def format_time_range(time_range: TimeRange) -> str:
    """(540, 1080) -> "09:00-18:00", the inverse of `parse_time_range`."""
    start, end = time_range
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def _check_range(time_range: TimeRange, shown: object) -> None:
    start, end = time_range
    if not all(isinstance(minute, int) and not isinstance(minute, bool) for minute in time_range):
        raise ScheduleError(f"minutes must be whole numbers, got {shown}")
    if not (0 <= start < MINUTES_PER_DAY and 0 <= end <= MINUTES_PER_DAY):
        raise ScheduleError(f"minutes must be within the day, got {shown}")
    if start == end:
        raise ScheduleError(
            f'a range must not end where it starts (the whole day is "00:00-24:00"), got "{shown}"'
        )


def load_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` ("Europe/Moscow"); `ScheduleError` if there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, LookupError) as error:
        # ZoneInfoNotFoundError is a KeyError; a directory such as "Europe" is an OSError.
        raise ScheduleError(f'unknown time zone "{name}" (e.g. "Europe/Moscow")') from error


def normalise_weekly_hours(
    hours: Mapping[int, Iterable[TimeRange]],
) -> dict[int, tuple[TimeRange, ...]]:
    """Check weekdays and ranges; drop closed days and write a midnight end as 24:00, so equal
    weeks compare equal."""
    normalised: dict[int, tuple[TimeRange, ...]] = {}
    for weekday in sorted(hours):
        if isinstance(weekday, bool) or weekday not in range(DAYS_PER_WEEK):
            raise ScheduleError(f"weekday must be 0 (Monday) to 6 (Sunday), got {weekday!r}")
        ranges = tuple((start, end or MINUTES_PER_DAY) for start, end in hours[weekday])
        for time_range in ranges:
            _check_range(time_range, time_range)
        if ranges:
            normalised[weekday] = ranges
    return normalised


def within_weekly_hours(hours: WeeklyHours, local: dt.datetime) -> bool:
    """Whether the wall-clock time `local` falls in one of the week's ranges."""
    weekday = local.weekday()
    minute = local.hour * 60 + local.minute
    for start, end in hours.get(weekday, ()):
        if start <= minute < end or (end < start and minute >= start):
            return True
    return any(
        end < start and minute < end for start, end in hours.get((weekday - 1) % DAYS_PER_WEEK, ())
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """Weekly opening hours in `timezone`, closed on `holidays`; `after_hours` takes calls when
    closed (an extension, department or external number; None: nobody does)."""

    name: str
    timezone: str
    hours: dict[int, tuple[TimeRange, ...]]
    holidays: frozenset[dt.date] = frozenset()
    after_hours: str | None = None

    def __post_init__(self) -> None:
        load_zone(self.timezone)
        object.__setattr__(self, "hours", normalise_weekly_hours(self.hours))
        object.__setattr__(self, "holidays", frozenset(self.holidays))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo caches instances by key


def is_open(schedule: Schedule, now_utc: float) -> bool:
    """Whether `schedule` is open at Unix time `now_utc`."""
    local = dt.datetime.fromtimestamp(now_utc, schedule.zone)
    return local.date() not in schedule.holidays and within_weekly_hours(schedule.hours, local)


def next_change(schedule: Schedule, now_utc: float) -> float | None:
    """The first Unix time after `now_utc` at which `is_open` flips, or None if it never does.

    The state only changes where the wall clock reaches a range boundary or midnight (a
    holiday starts or ends), or jumps over one at a daylight saving transition, so those
    instants are the candidates, checked in time order. Past the last holiday the week repeats,
    so a week and a day without a change means there will be none.
    """
    if not schedule.hours:
        return None  # never open
    zone = schedule.zone
    state = is_open(schedule, now_utc)
    today = dt.datetime.fromtimestamp(now_utc, zone).date()
    last_day = max((today, *schedule.holidays)) + dt.timedelta(days=PERIODIC_HORIZON_DAYS)
    boundaries = sorted(
        {0}
        | {
            minute % MINUTES_PER_DAY
            for ranges in schedule.hours.values()
            for time_range in ranges
            for minute in time_range
        }
    )
    pending: list[float] = []
    # A day's candidates all come after the previous day's midnight, so whatever is pending
    # below this day's first candidate is final and can be checked in order.
    day = today - dt.timedelta(days=1)
    while day <= last_day:
        candidates = _candidates_on(day, boundaries, zone)
        floor = candidates[0]
        while pending and pending[0] < floor:
            moment = heapq.heappop(pending)
            if moment > now_utc and is_open(schedule, moment) != state:
                return moment
        for moment in candidates:
            heapq.heappush(pending, moment)
        day += dt.timedelta(days=1)
    while pending:
        moment = heapq.heappop(pending)
        if moment > now_utc and is_open(schedule, moment) != state:
            return moment
    return None


def _candidates_on(day: dt.date, minutes: Iterable[int], zone: ZoneInfo) -> list[float]:
    """Unix times at which the wall clock of `zone` may cross a boundary on local date `day`."""
    moments: set[float] = set()
    for minute in minutes:
        wall = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=zone)
        # Both folds: an hour repeated in autumn reaches the boundary twice. A time skipped in
        # spring gives two instants around the jump, which are harmless extra candidates.
        moments.add(wall.timestamp())
        moments.add(wall.replace(fold=1).timestamp())
    moments.update(_offset_changes(day, zone))
    return sorted(moments)


def _offset_changes(day: dt.date, zone: ZoneInfo) -> Iterator[float]:
    """Instants during local date `day` at which the zone's UTC offset changes (DST jumps)."""
    start = int(dt.datetime.combine(day, dt.time(), tzinfo=zone).timestamp())
    end = int(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone).timestamp())
    while start < end and _offset(start, zone) != _offset(end, zone):
        low, high = start, end  # offset(low) is the day's first, offset(high) differs from it
        first = _offset(start, zone)
        while high - low > 1:
            middle = (low + high) // 2
            if _offset(middle, zone) == first:
                low = middle
            else:
                high = middle
        yield float(high)
        start = high


def _offset(moment: int, zone: ZoneInfo) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(moment, zone).utcoffset()
