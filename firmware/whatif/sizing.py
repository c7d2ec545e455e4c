"""Channel and agent sizing from the office's own busy hour.

Offered traffic is measured per number (DID) as the erlangs its calls held a channel — from the
moment a call reached the box until it ended, answered or not, and including the callers who
heard busy because the channels were full (they were offered too: they would have held a
channel for as long as the calls that got one, on average). The busy hour is ITU-T E.500's
time-consistent busy hour: for each hour of the day, the mean of that hour's traffic over the
busiest days of the period (up to `BUSIEST_DAYS`, E.500 §3's "ten highest days"); the hour of the
day with the highest such mean. Erlang B then gives the channels for the target blocking, and
for a department with a queue Erlang C gives the agents on line needed for the service level
(e.g. 80 % of calls answered within 20 s) with its busy-hour arrivals and their handling time
(talk plus wrap-up).

`last_week_blocking` is what callers actually met: the share of the last seven days' calls to a
number refused because its channels were full (486, outcome "over_capacity"); the web UI warns
when it exceeds the target.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from typing import Any

from ..store import Store
from ..store.config import Config
from .erlang import (
    agents_for_service_level,
    channels_for_blocking,
    erlang_b,
    service_level,
)

BUSIEST_DAYS = 10
WEEK_S = 7 * 86400.0
DEFAULT_BLOCKING = 0.01
DEFAULT_SERVICE_LEVEL = 0.8
DEFAULT_ANSWER_WITHIN_S = 20.0


@dataclass(frozen=True, slots=True)
class NumberSizing:
    number: str
    destination: str
    calls: int
    busy_hour: int | None  # local hour of the day
    busy_hour_erlangs: float
    channels_configured: int
    channels_needed: int
    blocking_configured: float  # Erlang B at the configured channels
    last_week_calls: int
    last_week_blocked: int

    @property
    def last_week_blocking(self) -> float:
        return self.last_week_blocked / self.last_week_calls if self.last_week_calls else 0.0


@dataclass(frozen=True, slots=True)
class DepartmentSizing:
    department: str
    name: str
    busy_hour: int | None
    busy_hour_calls: float  # arrivals in the busy hour
    handle_s: float  # mean talk + wrap-up
    erlangs: float
    members: int
    agents_needed: int
    service_level_with_members: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingReport:
    since: float
    until: float
    target_blocking: float
    target_service_level: float
    answer_within_s: float
    numbers: tuple[NumberSizing, ...]
    departments: tuple[DepartmentSizing, ...]

    def warnings(self) -> list[NumberSizing]:
        """Numbers whose callers met more blocking last week than the target."""
        return [n for n in self.numbers if n.last_week_blocking > self.target_blocking]

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since, "until": self.until,
            "target_blocking": self.target_blocking,
            "target_service_level": self.target_service_level,
            "answer_within_s": self.answer_within_s,
            "numbers": [{**asdict(n), "blocking_configured": round(n.blocking_configured, 5),
                         "busy_hour_erlangs": round(n.busy_hour_erlangs, 3),
                         "last_week_blocking": round(n.last_week_blocking, 4),
                         "warning": n.last_week_blocking > self.target_blocking}
                        for n in self.numbers],
            "departments": [{**asdict(d), "erlangs": round(d.erlangs, 3),
                             "handle_s": round(d.handle_s, 1),
                             "busy_hour_calls": round(d.busy_hour_calls, 2),
                             "service_level_with_members": round(
                                 d.service_level_with_members, 4)}
                            for d in self.departments],
        }


def hourly_traffic(spans: list[tuple[float, float]], tz: tzinfo) -> dict[tuple[str, int], float]:
    """(local day, hour) -> erlangs: each span's seconds, split at hour boundaries, / 3600."""
    traffic: dict[tuple[str, int], float] = defaultdict(float)
    for start, end in spans:
        at = start
        while at < end:
            local = datetime.fromtimestamp(at, tz)
            hour_end = local.replace(minute=0, second=0, microsecond=0).timestamp() + 3600.0
            piece = min(end, hour_end) - at
            traffic[(local.date().isoformat(), local.hour)] += piece / 3600.0
            at = min(end, hour_end) if piece > 0 else hour_end
    return traffic


def busy_hour(per_day_hour: dict[tuple[str, int], float]) -> tuple[int | None, float]:
    """The time-consistent busy hour (ITU-T E.500) and its mean over the busiest days."""
    by_hour: dict[int, list[float]] = defaultdict(list)
    for (_, hour), value in per_day_hour.items():
        by_hour[hour].append(value)
    best: tuple[int | None, float] = (None, 0.0)
    for hour, values in by_hour.items():
        top = sorted(values, reverse=True)[:BUSIEST_DAYS]
        mean = sum(top) / len(top)
        if mean > best[1]:
            best = (hour, mean)
    return best


def sizing(store: Store, since: float, until: float, *, tz: tzinfo,
           config: Config | None = None, target_blocking: float = DEFAULT_BLOCKING,
           target_service_level: float = DEFAULT_SERVICE_LEVEL,
           answer_within_s: float = DEFAULT_ANSWER_WITHIN_S) -> SizingReport:
    config = config if config is not None else store.load_config()
    db = store.db
    rows = list(db.query(
        "SELECT number, department, started_at, ended_at, answered_at, talk_s, outcome"
        " FROM calls WHERE direction = 'inbound' AND started_at >= ? AND started_at < ?",
        [since, until]))
    held = [float(r["ended_at"]) - float(r["started_at"]) for r in rows
            if r["ended_at"] is not None and r["outcome"] != "over_capacity"]
    mean_hold_s = sum(held) / len(held) if held else 0.0

    numbers = []
    week_start = until - WEEK_S
    for number in config.numbers:
        mine = [r for r in rows if r["number"] == number.number]
        spans = [(float(r["started_at"]),
                  float(r["ended_at"]) if r["ended_at"] is not None and
                  r["outcome"] != "over_capacity"
                  else float(r["started_at"]) + mean_hold_s) for r in mine]
        hour, erlangs = busy_hour(hourly_traffic(spans, tz))
        week = [r for r in mine if float(r["started_at"]) >= week_start]
        numbers.append(NumberSizing(
            number=number.number, destination=number.destination, calls=len(mine),
            busy_hour=hour, busy_hour_erlangs=erlangs,
            channels_configured=number.channels,
            channels_needed=channels_for_blocking(erlangs, target_blocking),
            blocking_configured=erlang_b(erlangs, number.channels),
            last_week_calls=len(week),
            last_week_blocked=sum(r["outcome"] == "over_capacity" for r in week),
        ))

    departments = []
    for department in config.departments:
        queue = department.settings.queue
        if queue is None:
            continue
        mine = [r for r in rows if r["department"] == department.number
                and r["outcome"] != "over_capacity"]
        arrivals: dict[tuple[str, int], float] = defaultdict(float)
        for r in mine:
            local = datetime.fromtimestamp(float(r["started_at"]), tz)
            arrivals[(local.date().isoformat(), local.hour)] += 1.0
        hour, calls_per_hour = busy_hour(arrivals)
        talks = [float(r["talk_s"]) for r in mine if r["talk_s"] is not None]
        handle_s = (sum(talks) / len(talks) if talks else 0.0) + department.settings.wrap_up_s
        erlangs = calls_per_hour * handle_s / 3600.0
        members = len(department.members)
        departments.append(DepartmentSizing(
            department=department.number, name=department.name, busy_hour=hour,
            busy_hour_calls=calls_per_hour, handle_s=handle_s, erlangs=erlangs,
            members=members,
            agents_needed=agents_for_service_level(
                erlangs, handle_s, target=target_service_level,
                answer_within_s=answer_within_s) if handle_s > 0 else 0,
            service_level_with_members=service_level(erlangs, members, handle_s,
                                                     answer_within_s),
        ))
    return SizingReport(since=since, until=until, target_blocking=target_blocking,
                        target_service_level=target_service_level,
                        answer_within_s=answer_within_s, numbers=tuple(numbers),
                        departments=tuple(departments))
