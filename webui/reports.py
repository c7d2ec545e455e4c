"""Call reports for a chosen period: calls by day, load by hour of day (an SVG bar chart drawn on
the server), each manager's figures and the missed calls with their callback state, each also
as a CSV download.

The figures are `linebox report`'s: this module only asks firmware/reports.py (the queries and
the CSV) and lays the rows out; the period is whole local days in the site's time zone. Every
report can be narrowed to one line's calls (`line`: the provider, a GSM or FXO line), as
`linebox report --line` does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, tzinfo
from typing import Any

from flask import Blueprint, Response, abort, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from firmware import reports as queries
from firmware.store import Store

from .db import get_store
from .forms import FormErrors, text
from .security import admin_required

bp = Blueprint("reports", __name__)

MAX_PERIOD_DAYS = 366  # a year (and a leap day): every day of it is a row
MISSED_SHOWN = 500  # the page lists this many missed calls; the CSV has them all
CSV_BOM = "\ufeff"  # so that spreadsheet programs read the UTF-8 (Cyrillic names) as such

OUTCOMES = {
    "missed": _l("Not answered"),
    "abandoned": _l("Caller hung up"),
    "busy": _l("Busy"),
    "over_capacity": _l("All lines busy"),
    "voicemail": _l("Voicemail"),
    "callback": _l("Callback requested"),
}
CALLBACK_STATES = {
    "requested": _l("Waiting for the call back"),
    "done": _l("Called back"),
    "expired": _l("Expired"),
    "failed": _l("Call back failed"),
}
REPORT_TITLES = {
    "daily": _l("Calls by day"),
    "hourly": _l("Load by hour of day"),
    "managers": _l("Managers"),
    "missed": _l("Missed calls"),
}

# The hour chart's drawing, in SVG user units (the picture scales to the page's width).
CHART_WIDTH = 960
CHART_HEIGHT = 260
CHART_LEFT = 44
CHART_RIGHT = 8
CHART_TOP = 12
CHART_BOTTOM = 28
BAR_FILL = 0.72  # share of an hour's slot the bar takes


# --- the period ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date


def read_period(args: Mapping[str, str], today_period: tuple[date, date]) -> tuple[
        Period | None, dict[str, str], FormErrors]:
    """The period of the form (`from`, `to`: YYYY-MM-DD, both included); a missing one takes
    the default (the last `DEFAULT_PERIOD_DAYS` days up to today). Returns the period (None if
    wrong), the values to show again, and the errors by field."""
    errors = FormErrors()
    values = {"from": text(args, "from"), "to": text(args, "to")}
    default_start, default_end = today_period
    days: dict[str, date] = {}
    for field, default in (("from", default_start), ("to", default_end)):
        if not values[field]:
            days[field] = default
            continue
        try:
            days[field] = queries.parse_day(values[field])
        except ValueError:
            errors.need(field, False, _("Enter a date as YYYY-MM-DD, e.g. 2026-05-04."))
    if errors:
        return None, values, errors
    start, end = days["from"], days["to"]
    if not values["from"] and values["to"]:
        start = end - (default_end - default_start)  # a week ending on the chosen day
    errors.need("to", end >= start, _("The period ends before it starts."))
    errors.need("from", (end - start).days < MAX_PERIOD_DAYS,
                _("Choose at most %(days)d days.", days=MAX_PERIOD_DAYS))
    if errors:
        return None, values, errors
    return Period(start, end), {"from": start.isoformat(), "to": end.isoformat()}, errors


def read_line(args: Mapping[str, str], names: Sequence[str], errors: FormErrors) -> str | None:
    """The line the reports are narrowed to (None: every line); an error beside the field for
    a name that is no line."""
    line = text(args, "line")
    if not line:
        return None
    errors.need("line", line in names, _("Choose one of the lines."))
    return line


@dataclass(frozen=True, slots=True)
class Query:
    """What the form asks: the period and the line (None: every line), or None if wrong."""

    period: Period | None
    line: str | None
    values: dict[str, str]
    errors: FormErrors
    lines: list[str]


def read_query(args: Mapping[str, str], store: Store, tz: tzinfo) -> Query:
    period, values, errors = read_period(args, queries.period(None, None, tz))
    names = queries.line_names(store)
    line = read_line(args, names, errors)
    values["line"] = line or ""
    return Query(period if not errors else None, line, values, errors, names)


# --- the hour chart (pure) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    hour: int
    x: float
    width: float
    received: int
    answered: int
    missed: int
    # (y, height) of each stacked part, bottom up: answered, missed, the rest (after hours...)
    answered_box: tuple[float, float]
    missed_box: tuple[float, float]
    other_box: tuple[float, float]


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float  # y of the baseline
    bars: list[Bar]
    ticks: list[tuple[int, float]]  # (value, y) of the horizontal grid lines


def _scale_top(peak: int) -> int:
    """A round top for the vertical axis: the peak rounded up to 1, 2 or 5 × 10^n (at least 1)."""
    step = 1
    for _guard in range(12):  # 10^12 calls an hour is beyond any office
        for factor in (1, 2, 5):
            if peak <= factor * step:
                return factor * step
        step *= 10
    return peak


def hour_chart(rows: Sequence[queries.HourlyRow]) -> Chart:
    """Stacked bars of the calls received in each hour of the day (answered, missed, the rest)."""
    top = float(CHART_TOP)
    bottom = float(CHART_HEIGHT - CHART_BOTTOM)
    left = float(CHART_LEFT)
    right = float(CHART_WIDTH - CHART_RIGHT)
    scale_top = _scale_top(max((row.received for row in rows), default=0))
    per_call = (bottom - top) / scale_top
    slot = (right - left) / max(1, len(rows))
    bars = []
    for index, row in enumerate(rows):
        answered = min(row.answered, row.received)
        missed = min(row.missed, row.received - answered)
        other = row.received - answered - missed
        y = bottom
        boxes = []
        for count in (answered, missed, other):
            height = count * per_call
            y -= height
            boxes.append((round(y, 2), round(height, 2)))
        bars.append(Bar(
            hour=row.hour, x=round(left + index * slot + slot * (1 - BAR_FILL) / 2, 2),
            width=round(slot * BAR_FILL, 2), received=row.received, answered=row.answered,
            missed=row.missed, answered_box=boxes[0], missed_box=boxes[1], other_box=boxes[2],
        ))
    ticks = [(value, round(bottom - value * per_call, 2))
             for value in sorted({0, scale_top // 2, scale_top})]
    return Chart(width=CHART_WIDTH, height=CHART_HEIGHT, left=left, right=right, top=top,
                 bottom=bottom, bars=bars, ticks=ticks)


# --- the pages --------------------------------------------------------------------------------


def _percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction * 100:.0f} %"


def _wait(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.0f}"


def _totals(rows: Sequence[queries.DailyRow]) -> dict[str, int]:
    return {field: sum(getattr(row, field) for row in rows)
            for field in ("received", "answered", "missed", "closed", "other")}


@bp.app_template_filter("ops_percent")
def _percent_filter(fraction: float | None) -> str:
    return _percent(fraction)


@bp.app_template_filter("ops_wait")
def _wait_filter(seconds: float | None) -> str:
    return _wait(seconds)


def _context(asked: Query, tz_name: str) -> dict[str, Any]:
    return {"values": asked.values, "errors": asked.errors, "tz": tz_name,
            "titles": REPORT_TITLES, "outcomes": OUTCOMES, "callback_states": CALLBACK_STATES,
            "max_days": MAX_PERIOD_DAYS,
            "line_options": [("", _("All lines")), *((name, name) for name in asked.lines)]}


@bp.route("/reports")
@admin_required
def page() -> Any:
    store = get_store()
    tz = queries.site_zone(store)
    asked = read_query(request.args, store, tz)
    context = _context(asked, tz.key)
    period, line = asked.period, asked.line
    if period is None:
        return render_template("reports.html", period=None, **context), 400
    daily = queries.daily(store, period.start, period.end, tz, line=line)
    hourly = queries.hourly(store, period.start, period.end, tz, line=line)
    missed = queries.missed_calls(store, period.start, period.end, tz, line=line)
    departments = {d.number: d.name for d in store.load_config().departments}
    query: dict[str, Any] = {"from": period.start.isoformat(), "to": period.end.isoformat()}
    if line is not None:
        query["line"] = line
    return render_template(
        "reports.html", period=period, line=line, daily=daily, totals=_totals(daily),
        hourly=hourly, chart=hour_chart(hourly),
        managers=queries.per_manager(store, period.start, period.end, tz, line=line),
        missed=missed[:MISSED_SHOWN], missed_count=len(missed), departments=departments,
        csv_links={kind: url_for("reports.csv", kind=kind, **query) for kind in queries.KINDS},
        **context,
    )


@bp.route("/reports/<kind>.csv")
@admin_required
def csv(kind: str) -> Any:
    """One report as CSV: the columns and figures of `linebox report --csv --kind KIND`."""
    if kind not in queries.KINDS:
        abort(404)
    store = get_store()
    tz = queries.site_zone(store)
    asked = read_query(request.args, store, tz)
    period, line = asked.period, asked.line
    if period is None:
        return render_template("reports.html", period=None, **_context(asked, tz.key)), 400
    rows = queries.REPORTS[kind](store, period.start, period.end, tz, line=line)
    body = CSV_BOM + queries.format_csv(kind, rows)
    # A configured line's name is safe in a file name; one from old records is made so.
    on_line = "" if line is None else "-" + re.sub(r"[^A-Za-z0-9_.-]", "_", line)
    filename = (f"linebox-{kind}{on_line}-{period.start.isoformat()}-"
                f"{period.end.isoformat()}.csv")
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
    })
