"""Call reports for the owner and the managers, read straight from the store with SQL.

Every report covers whole days in the site's local time zone: `start` and `end` are local dates,
both included, and a call belongs to the local day and hour in which it *started* — a call at
23:30 UTC is in the next day in Moscow. Only inbound calls (from the trunks: customers) count;
internal and outbound calls are not in any report. The figures are defined once, here, as SQL,
and explained in docs/reports.md; the outcome classes below are the vocabulary of both.

Local days do not have a fixed UTC offset everywhere (daylight saving time), so the period is cut
into segments of constant offset (`_offset_segments`) and SQLite buckets each call by its
segment's offset. Each segment is one range scan of `calls_started_at`.

Every report can be narrowed to the calls of one line (`line`: a trunks[] name — the SIP
provider, a GSM or FXO line): the calls that came in on it (`calls.line`, schema version 10;
calls recorded before then have the line their `source` named).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from firmware.display import csv_cell, terminal_text
from firmware.store import ConfigError, Store, StoreError
from firmware.store.config import DEFAULT_TIMEZONE

DEFAULT_TZ = DEFAULT_TIMEZONE  # Europe/Moscow
DEFAULT_PERIOD_DAYS = 7
CALL_LIST_LIMIT = 20
DAY_S = 86_400

REPORTED_DIRECTION = "inbound"
ANSWERED = "answered"
# Outcomes in which a customer called while the office was open and spoke to nobody.
MISSED_OUTCOMES = ("missed", "abandoned", "busy", "over_capacity", "voicemail", "callback")
CLOSED = "closed"  # after hours: counted apart from missed calls
# Outcomes in which the caller waited in the queue; the mean wait is over these.
WAITED_OUTCOMES = ("answered", "missed", "abandoned", "voicemail", "callback")
# Leg results that count as an agent not taking an offered call.
MISSED_OFFER_RESULTS = ("no_answer", "declined")

KINDS = ("daily", "hourly", "managers", "missed")


# --- rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DailyRow:
    day: date
    received: int
    answered: int
    missed: int
    closed: int
    other: int
    mean_wait_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HourlyRow:
    hour: int
    received: int
    answered: int
    missed: int
    mean_wait_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerRow:
    extension: str
    name: str
    offered: int
    answered: int
    missed_offers: int
    talk_s: float
    target_answered: int
    sales: int
    conversion: float | None  # sales / target_answered; None without target calls


@dataclass(frozen=True, slots=True, kw_only=True)
class MissedCall:
    id: str
    started_at: float
    local_time: datetime
    caller: str
    number: str | None
    department: str | None
    outcome: str
    waited_s: float | None
    callback_state: str | None
    line: str | None


# --- the period ----------------------------------------------------------------------------------


def zone(tz: tzinfo | str) -> tzinfo:
    """A time zone from its IANA name (`Europe/Moscow`), or the tzinfo itself."""
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def parse_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError if this system's tz database lacks it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def site_zone(store: Store) -> ZoneInfo:
    """The time zone the configuration gives the site (`site.timezone`), else `DEFAULT_TZ`."""
    try:
        return parse_zone(store.load_config().site.timezone)
    except (ConfigError, StoreError, ValueError):
        return ZoneInfo(DEFAULT_TZ)


def line_names(store: Store) -> list[str]:
    """The lines a report can be narrowed to: the configured ones (trunks[], in their order),
    then those only old calls or line events name (a line since deleted), sorted."""
    try:
        configured = [trunk.name for trunk in store.load_config().trunks]
    except (ConfigError, StoreError):
        configured = []
    recorded = {row[0] for row in store.db.execute(
        "SELECT DISTINCT line FROM calls WHERE line IS NOT NULL "
        "UNION SELECT DISTINCT line FROM line_events WHERE line IS NOT NULL")}
    return configured + sorted(recorded - set(configured))


def line_event_text(event: Mapping[str, Any]) -> str:
    """One row of `Store.line_events` in words (English; the web UI has its own)."""
    reason = f": {event['reason']}" if event["reason"] else ""
    if event["kind"] == "failover":
        was = f" (was {event['old']})" if event["old"] else ""
        if event["line"] is None:
            return f"failover: no line is up for calls out{was}{reason}"
        return f"failover: calls out go through {event['line']}{was}{reason}"
    was = f" (was {event['old']})" if event["old"] else ""
    return f"{event['line']} is {event['state']}{was}{reason}"


def parse_day(text: str) -> date:
    """A date written YYYY-MM-DD; ValueError otherwise."""
    return date.fromisoformat(text)


def period(
    start: date | None,
    end: date | None,
    tz: tzinfo | str = DEFAULT_TZ,
    *,
    now: datetime | None = None,
) -> tuple[date, date]:
    """Fill in a report's period: `end` defaults to today (in `tz`), `start` to the day that
    makes the period `DEFAULT_PERIOD_DAYS` long."""
    if end is None:
        end = (now or datetime.now(zone(tz))).astimezone(zone(tz)).date()
    if start is None:
        start = end - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
    return start, end


def local_midnight(day: date, tz: tzinfo | str) -> float:
    """Unix time of the start of `day` in `tz`."""
    return datetime.combine(day, time(), tzinfo=zone(tz)).timestamp()


def _utc_offset_s(at: float, tz: tzinfo) -> int:
    offset = datetime.fromtimestamp(at, tz).utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


def _offset_segments(lo: float, hi: float, tz: tzinfo) -> list[tuple[float, float, int]]:
    """Cut [lo, hi) into (lo, hi, utc_offset_s) pieces over which `tz`'s offset is constant.

    Probes once a day, which finds every transition (they are months apart), then bisects to
    the second it happens.
    """
    segments: list[tuple[float, float, int]] = []
    seg_lo, offset = lo, _utc_offset_s(lo, tz)
    probe = lo
    while probe < hi:
        ahead = min(probe + DAY_S, hi - 1)
        if ahead <= probe:
            break
        if _utc_offset_s(ahead, tz) != offset:
            before, after = probe, ahead  # offset(before) == offset, offset(after) differs
            while after - before > 1:
                middle = (before + after) // 2
                if _utc_offset_s(middle, tz) == offset:
                    before = middle
                else:
                    after = middle
            segments.append((seg_lo, after, offset))
            seg_lo, offset = after, _utc_offset_s(after, tz)
            probe = after
        else:
            probe = ahead
    segments.append((seg_lo, hi, offset))
    return segments


def _sql_list(values: Iterable[str]) -> str:
    # Only for this module's constants, which are plain words; user data goes in parameters.
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


def _period_sql(lo: float, hi: float, tz: tzinfo, line: str | None = None
                ) -> tuple[str, list[object]]:
    """CTEs `seg` and `period`: the inbound calls that started in [lo, hi) — on `line` only,
    when given — each with `local_at` (its start as Unix seconds shifted to local wall-clock
    time, for SQLite's date functions)."""
    segments = _offset_segments(lo, hi, tz)
    values = ", ".join("(?, ?, ?)" for _ in segments)
    sql = (
        f"seg(lo, hi, off) AS (VALUES {values}), "
        "period AS (SELECT c.*, c.started_at + seg.off AS local_at FROM seg "
        "JOIN calls AS c ON c.started_at >= seg.lo AND c.started_at < seg.hi "
        f"WHERE c.direction = '{REPORTED_DIRECTION}'"
        f"{'' if line is None else ' AND c.line = ?'})"
    )
    parameters: list[object] = [value for segment in segments for value in segment]
    return sql, parameters if line is None else [*parameters, line]


def _days_sql(start: date, end: date, tz: tzinfo | str, line: str | None = None
              ) -> tuple[str, list[object], tzinfo]:
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    tz = zone(tz)
    sql, parameters = _period_sql(
        local_midnight(start, tz), local_midnight(end + timedelta(days=1), tz), tz, line
    )
    return sql, parameters, tz


# The wait of one call: as recorded, or for calls recorded before waits were (schema version 1)
# the time to answer, or to giving up.
_WAIT_SQL = (
    f"CASE WHEN outcome IN {_sql_list(WAITED_OUTCOMES)} THEN coalesce(waited_s, "
    "CASE outcome WHEN 'answered' THEN answered_at - started_at "
    "WHEN 'missed' THEN ended_at - started_at WHEN 'abandoned' THEN ended_at - started_at END) END"
)
_COUNTS_SQL = (
    "count(*) AS received, "
    f"coalesce(sum(outcome = '{ANSWERED}'), 0) AS answered, "
    f"coalesce(sum(outcome IN {_sql_list(MISSED_OUTCOMES)}), 0) AS missed, "
    f"coalesce(sum(outcome = '{CLOSED}'), 0) AS closed, "
    f"avg({_WAIT_SQL}) AS mean_wait_s"
)


# --- the reports ---------------------------------------------------------------------------------


def daily(
    store: Store, start: date, end: date, tz: tzinfo | str = DEFAULT_TZ, *,
    line: str | None = None,
) -> list[DailyRow]:
    """One row per local day from `start` to `end` (both included), days without calls too."""
    period, parameters, _ = _days_sql(start, end, tz, line)
    found = {
        row["day"]: row
        for row in store.db.query(
            f"WITH {period} SELECT date(local_at, 'unixepoch') AS day, {_COUNTS_SQL} "
            "FROM period GROUP BY day",
            parameters,
        )
    }
    rows = []
    for offset in range((end - start).days + 1):
        day = start + timedelta(days=offset)
        row = found.get(day.isoformat())
        if row is None:
            rows.append(DailyRow(day=day, received=0, answered=0, missed=0, closed=0, other=0,
                                 mean_wait_s=None))
            continue
        rows.append(DailyRow(
            day=day, received=row["received"], answered=row["answered"], missed=row["missed"],
            closed=row["closed"],
            other=row["received"] - row["answered"] - row["missed"] - row["closed"],
            mean_wait_s=row["mean_wait_s"],
        ))
    return rows


def hourly(
    store: Store, start: date, end: date, tz: tzinfo | str = DEFAULT_TZ, *,
    line: str | None = None,
) -> list[HourlyRow]:
    """Load by local hour of day, 0..23, summed over the period's days: all 24 rows."""
    period, parameters, _ = _days_sql(start, end, tz, line)
    found = {
        row["hour"]: row
        for row in store.db.query(
            f"WITH {period} SELECT CAST(strftime('%H', local_at, 'unixepoch') AS INTEGER) "
            f"AS hour, {_COUNTS_SQL} FROM period GROUP BY hour",
            parameters,
        )
    }
    rows = []
    for hour in range(24):
        row = found.get(hour)
        rows.append(HourlyRow(
            hour=hour,
            received=0 if row is None else row["received"],
            answered=0 if row is None else row["answered"],
            missed=0 if row is None else row["missed"],
            mean_wait_s=None if row is None else row["mean_wait_s"],
        ))
    return rows


def per_manager(
    store: Store, start: date, end: date, tz: tzinfo | str = DEFAULT_TZ, *,
    line: str | None = None,
) -> list[ManagerRow]:
    """One row per extension that was offered or answered a call in the period.

    An offer is one ring of one extension on one call: the legs to its phones started at the
    same moment count once. A missed offer is one not answered that rang out or was declined on
    some phone. The rest comes from the calls the extension answered.
    """
    period, parameters, _ = _days_sql(start, end, tz, line)
    query = (
        f"WITH {period}, "
        "offers AS ("
        " SELECT l.target AS extension,"
        "  max(coalesce(l.result = 'answered', 0)) AS answered,"
        f"  max(coalesce(l.result IN {_sql_list(MISSED_OFFER_RESULTS)}, 0)) AS missed"
        " FROM period AS p JOIN call_legs AS l ON l.call_id = p.id"
        " GROUP BY l.call_id, l.target, l.started_at), "
        "offer_totals AS ("
        " SELECT extension, count(*) AS offered,"
        "  sum(missed AND NOT answered) AS missed_offers"
        " FROM offers GROUP BY extension), "
        "answers AS ("
        " SELECT answered_by AS extension, count(*) AS answered,"
        "  sum(coalesce(talk_s, ended_at - answered_at, 0)) AS talk_s,"
        "  sum(target_call != 0) AS target_answered,"
        "  sum(target_call != 0 AND sale != 0) AS sales"
        f" FROM period WHERE outcome = '{ANSWERED}' AND answered_by IS NOT NULL"
        " GROUP BY answered_by), "
        "managers AS (SELECT extension FROM offer_totals UNION SELECT extension FROM answers) "
        "SELECT m.extension, coalesce(e.name, '') AS name,"
        " coalesce(o.offered, 0) AS offered, coalesce(a.answered, 0) AS answered,"
        " coalesce(o.missed_offers, 0) AS missed_offers, coalesce(a.talk_s, 0.0) AS talk_s,"
        " coalesce(a.target_answered, 0) AS target_answered, coalesce(a.sales, 0) AS sales "
        "FROM managers AS m"
        " LEFT JOIN offer_totals AS o ON o.extension = m.extension"
        " LEFT JOIN answers AS a ON a.extension = m.extension"
        " LEFT JOIN extensions AS e ON e.number = m.extension "
        "ORDER BY length(m.extension), m.extension"
    )
    return [
        ManagerRow(
            **row,
            conversion=(
                row["sales"] / row["target_answered"] if row["target_answered"] else None
            ),
        )
        for row in store.db.query(query, parameters)
    ]


def missed_calls(
    store: Store, start: date, end: date, tz: tzinfo | str = DEFAULT_TZ, *,
    line: str | None = None,
) -> list[MissedCall]:
    """The missed calls (outcomes in `MISSED_OUTCOMES`) of the period, oldest first."""
    period, parameters, zone_ = _days_sql(start, end, tz, line)
    return [
        MissedCall(local_time=datetime.fromtimestamp(row["started_at"], zone_), **row)
        for row in store.db.query(
            f"WITH {period} SELECT id, started_at, caller, number, department, outcome,"
            " waited_s, callback_state, line FROM period"
            f" WHERE outcome IN {_sql_list(MISSED_OUTCOMES)} ORDER BY started_at, id",
            parameters,
        )
    ]


def conversion_by_manager(store: Store, since: float, until: float, *,
                          line: str | None = None) -> dict[str, float]:
    """Extension → sales / target calls answered, for inbound calls started in [since, until)
    (Unix seconds), on `line` only when given. Extensions that answered no target call are left
    out: no figure, not 0."""
    on_line = "" if line is None else " AND line = ?"
    return {
        row["extension"]: row["sales"] / row["target_answered"]
        for row in store.db.query(
            "SELECT answered_by AS extension, sum(target_call != 0) AS target_answered,"
            " sum(target_call != 0 AND sale != 0) AS sales FROM calls"
            " WHERE started_at >= ? AND started_at < ?"
            f" AND direction = '{REPORTED_DIRECTION}' AND outcome = '{ANSWERED}'"
            f" AND answered_by IS NOT NULL{on_line}"
            " GROUP BY answered_by HAVING sum(target_call != 0) > 0",
            (since, until) if line is None else (since, until, line),
        )
    }


class Report(Protocol):
    """What every report is: the rows of a period, of one line's calls when `line` is given."""

    def __call__(self, store: Store, start: date, end: date, tz: tzinfo | str = ..., *,
                 line: str | None = None) -> Sequence[Any]: ...


REPORTS: dict[str, Report] = {
    "daily": daily,
    "hourly": hourly,
    "managers": per_manager,
    "missed": missed_calls,
}


# --- output --------------------------------------------------------------------------------------


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal: one per character, none for combining marks (a
    decomposed «й» is two code points, one column), two for East Asian wide characters."""
    width = 0
    for char in unicodedata.normalize("NFC", text):
        if unicodedata.combining(char) or unicodedata.category(char) in ("Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _pad(text: str, width: int, align: str) -> str:
    fill = " " * (width - display_width(text))
    return fill + text if align == ">" else text + fill


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = round(seconds)
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _wait(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}"


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.0f}%"


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):  # a caller number, a name: maybe chosen by an outsider
        return csv_cell(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a report: its field, its title on screen, how it reads, where it aligns."""

    field: str
    title: str
    text: Callable[[Any], str] = _text
    align: str = ">"
    csv: Callable[[Any], str] = _csv_value


COLUMNS: dict[str, tuple[str, tuple[Column, ...]]] = {
    "daily": ("Calls by day", (
        Column("day", "Day", align="<"),
        Column("received", "Received"),
        Column("answered", "Answered"),
        Column("missed", "Missed"),
        Column("closed", "After hours"),
        Column("other", "Other"),
        Column("mean_wait_s", "Mean wait, s", _wait),
    )),
    "hourly": ("Calls by hour of day", (
        Column("hour", "Hour", lambda h: f"{h:02d}:00"),
        Column("received", "Received"),
        Column("answered", "Answered"),
        Column("missed", "Missed"),
        Column("mean_wait_s", "Mean wait, s", _wait),
    )),
    "managers": ("Managers", (
        Column("extension", "Ext", align="<"),
        Column("name", "Name", align="<"),
        Column("offered", "Offered"),
        Column("answered", "Answered"),
        Column("missed_offers", "Missed offers"),
        Column("talk_s", "Talk time", _duration),
        Column("target_answered", "Target calls"),
        Column("sales", "Sales"),
        Column("conversion", "Conversion", _percent,
               csv=lambda v: "" if v is None else f"{v:.4f}"),
    )),
    "missed": ("Missed calls", (
        Column("local_time", "Time", align="<"),
        Column("caller", "Caller", align="<"),
        Column("number", "Number", align="<"),
        Column("line", "Line", lambda v: v or "-", align="<"),
        Column("department", "Dept", align="<"),
        Column("outcome", "Outcome", align="<"),
        Column("waited_s", "Waited, s", _wait),
        Column("callback_state", "Callback", lambda v: v or "-", align="<"),
        Column("id", "Call id", align="<"),
    )),
}


def format_table(kind: str, rows: Sequence[Any], *, title: str | None = None) -> str:
    """An aligned text table of one report's rows, under its title."""
    heading, columns = COLUMNS[kind]
    cells = [[column.text(getattr(row, column.field)) for column in columns] for row in rows]
    return render_table(
        title or heading, [column.title for column in columns],
        [column.align for column in columns], cells,
    )


def render_table(
    title: str, headers: Sequence[str], aligns: Sequence[str], cells: Sequence[Sequence[str]]
) -> str:
    """An aligned text table for a terminal; control characters in any cell are written out
    as escapes (a caller number may carry ESC sequences)."""
    cells = [[terminal_text(value) for value in line] for line in cells]
    widths = [
        max([display_width(header), *(display_width(line[i]) for line in cells)])
        for i, header in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            _pad(value, width, align) for value, width, align in zip(values, widths, aligns,
                                                                     strict=True)
        ).rstrip()

    lines = [title, line(headers), "  ".join("-" * width for width in widths)]
    lines.extend(line(values) for values in cells)
    if not cells:
        lines.append("(none)")
    return "\n".join(lines)


def format_csv(kind: str, rows: Sequence[Any]) -> str:
    """One report as CSV (comma-separated, UTF-8 text, a header of field names, LF endings)."""
    _, columns = COLUMNS[kind]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([column.field for column in columns])
    for row in rows:
        writer.writerow([column.csv(getattr(row, column.field)) for column in columns])
    return out.getvalue()


def text_report(
    store: Store, kinds: Sequence[str], start: date, end: date, tz: tzinfo | str = DEFAULT_TZ,
    *, line: str | None = None,
) -> str:
    """The chosen reports as aligned tables, one after another, under a line naming the period
    (and the line, when the reports are of one line's calls)."""
    name = tz if isinstance(tz, str) else getattr(tz, "key", str(tz))
    on_line = "" if line is None else f" on line {line}"
    parts = [f"Inbound calls{on_line} {start.isoformat()} … {end.isoformat()} ({name})"]
    for kind in kinds:
        parts.append(format_table(kind, REPORTS[kind](store, start, end, tz, line=line)))
    return "\n\n".join(parts)


def format_calls(calls: Sequence[dict[str, Any]], tz: tzinfo | str = DEFAULT_TZ) -> str:
    """Call rows (as `Store.recent_calls` returns them) as a table, for finding a call's id."""
    tz = zone(tz)
    headers = ["Call id", "Time", "Dir", "Line", "Caller", "Dialed", "Answered by", "Outcome",
               "Talk", "Marks", "Callback"]
    cells = []
    for call in calls:
        talk = call.get("talk_s")
        if talk is None and call.get("answered_at") is not None and call.get("ended_at"):
            talk = call["ended_at"] - call["answered_at"]
        marks = ("target" if call.get("target_call") else "") + (" sale" if call.get("sale")
                                                                 else "")
        cells.append([
            call["id"],
            datetime.fromtimestamp(call["started_at"], tz).strftime("%Y-%m-%d %H:%M:%S"),
            call["direction"], call.get("line") or "-", call["caller"], call["dialed"],
            call.get("answered_by") or "-",
            call.get("outcome") or "-", _duration(talk),
            marks.strip() or "-", call.get("callback_state") or "-",
        ])
    return render_table("Calls, newest first", headers, ["<"] * 8 + [">", "<", "<"], cells)

