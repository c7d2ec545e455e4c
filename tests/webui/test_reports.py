"""The reports page: the period form and its errors, calls by day, the hour chart, managers,
missed calls with their callback state, and each report as CSV — the figures of
firmware/reports.py over call records in the store."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware import reports
from firmware.store import Store, new_call_id
from tests.webui.conftest import post
from webui.reports import CSV_BOM, MAX_PERIOD_DAYS, hour_chart

MOSCOW = ZoneInfo("Europe/Moscow")  # the site's zone: OFFICE_YAML sets none
PERIOD = "?from=2026-05-04&to=2026-05-05"


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 5, day, hour, minute, tzinfo=MOSCOW).timestamp()


def record(store: Store, started_at: float, outcome: str, *,
           legs: tuple[tuple[str, str], ...] = (), **fields: Any) -> str:
    """One finished inbound call as the daemon writes it; `legs` are (extension, result)."""
    call_id = new_call_id()
    call: dict[str, Any] = {
        "id": call_id, "started_at": started_at, "ended_at": started_at + 20.0,
        "direction": "inbound", "source": "trunk:provider", "caller": "+79161234567",
        "dialed": "74951234567", "number": "74951234567", "department": "200",
        "end_cause": "test", "outcome": outcome, "sip_call_id": call_id,
    }
    if outcome == "answered":
        call.update(answered_at=started_at + 5.0, ended_at=started_at + 65.0, talk_s=60.0)
    call.update(fields)
    store.record_finished_calls([(call, [
        {"call_id": call_id, "target": extension, "contact": f"sip:{extension}@127.0.0.1",
         "started_at": started_at, "result": result}
        for extension, result in legs
    ])])
    return call_id


@pytest.fixture
def calls(app: Flask) -> dict[str, str]:
    """Two days of calls at the office: 4 May busy, 5 May one call after hours."""
    store = Store.open(app.config["DB"])
    try:
        ids = {
            "sale": record(store, at(4, 10, 15), "answered", answered_by="101", target_call=1,
                           sale=1, waited_s=5.0,
                           legs=(("101", "answered"), ("102", "cancelled"))),
            "enquiry": record(store, at(4, 10, 40), "answered", answered_by="102",
                              target_call=1, waited_s=5.0,
                              legs=(("101", "no_answer"), ("102", "answered"))),
            "missed": record(store, at(4, 14, 5), "missed", callback_state="done",
                             caller="+79035550001", waited_s=20.0,
                             legs=(("101", "no_answer"), ("102", "no_answer"))),
            "callback": record(store, at(4, 14, 30), "callback", callback_state="requested",
                               caller="+79035550002", waited_s=45.0),
            "closed": record(store, at(5, 9, 0), "closed"),
            "outbound": record(store, at(4, 11, 0), "answered", direction="outbound",
                               answered_by="101"),
            "later": record(store, at(10, 12, 0), "missed"),
        }
    finally:
        store.close()
    return ids


def section(html: str, kind: str) -> str:
    start = html.index(f'data-report="{kind}"')
    return html[start:html.index("</section>", start)]


def plain(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def row(html: str, attribute: str) -> str:
    match = re.search(rf"<tr {attribute}>(.*?)</tr>", html, re.S)
    assert match, attribute
    return plain(match.group(1))


# --- the hour chart (pure) ----------------------------------------------------------------------


def hours(**received: tuple[int, int, int]) -> list[reports.HourlyRow]:
    """24 rows; `h10=(received, answered, missed)` fills hour 10."""
    rows = []
    for hour in range(24):
        got, answered, missed = received.get(f"h{hour}", (0, 0, 0))
        rows.append(reports.HourlyRow(hour=hour, received=got, answered=answered,
                                      missed=missed, mean_wait_s=None))
    return rows


def test_the_chart_scales_to_a_round_top_and_stacks_answered_missed_and_the_rest() -> None:
    chart = hour_chart(hours(h9=(7, 4, 2), h10=(3, 3, 0)))
    assert [value for value, _y in chart.ticks] == [0, 5, 10]
    per_call = (chart.bottom - chart.top) / 10
    nine = chart.bars[9]
    assert nine.answered_box[0] == pytest.approx(chart.bottom - 4 * per_call)
    assert nine.answered_box[1] == pytest.approx(4 * per_call)
    assert nine.missed_box[1] == pytest.approx(2 * per_call)
    assert nine.missed_box[0] + nine.missed_box[1] == pytest.approx(nine.answered_box[0])
    assert nine.other_box[1] == pytest.approx(per_call)
    assert chart.bars[10].missed_box[1] == 0 and chart.bars[0].answered_box[1] == 0


def test_the_chart_has_24_bars_side_by_side_within_the_plot() -> None:
    chart = hour_chart(hours())
    assert [bar.hour for bar in chart.bars] == list(range(24))
    xs = [bar.x for bar in chart.bars]
    assert xs == sorted(xs) and xs[0] > chart.left
    assert xs[-1] + chart.bars[-1].width < chart.right
    assert [value for value, _y in chart.ticks] == [0, 1]  # an empty day still has an axis


# --- the page ---------------------------------------------------------------------------------


def test_the_default_period_is_the_last_seven_days(admin: FlaskClient) -> None:
    response = admin.get("/reports")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    today = datetime.now(MOSCOW).date()
    assert f'name="from" type="date" value="{(today - timedelta(days=6)).isoformat()}"' in html
    assert f'name="to" type="date" value="{today.isoformat()}"' in html
    assert html.count("<tr data-day=") == 7
    for kind in ("daily", "hourly", "managers", "missed"):
        assert html.count(f'data-report="{kind}"') == 1
    assert "No missed calls in this period." in html


def test_calls_by_day_count_received_answered_missed_and_after_hours(
    admin: FlaskClient, calls: dict[str, str],
) -> None:
    html = admin.get(f"/reports{PERIOD}").get_data(as_text=True)
    daily = section(html, "daily")
    assert row(daily, 'data-day="2026-05-04"') == "04.05.2026 4 2 2 0 19"
    assert row(daily, 'data-day="2026-05-05"') == "05.05.2026 1 0 0 1 —"
    assert "Total 5 2 2 1" in plain(daily)


def test_the_hour_chart_is_inline_svg_with_a_bar_per_hour(
    admin: FlaskClient, calls: dict[str, str],
) -> None:
    hourly = section(admin.get(f"/reports{PERIOD}").get_data(as_text=True), "hourly")
    assert hourly.count("<svg") == 1 and hourly.count('<g class="hour"') == 24
    assert "10:00 — received 2, answered 2, missed 0" in hourly
    assert "14:00 — received 2, answered 0, missed 2" in hourly
    ten = hourly[hourly.index('data-hour="10"'):hourly.index('data-hour="11"')]
    assert 'class="bar-answered"' in ten and 'class="bar-missed"' not in ten


def test_managers_show_offers_answers_missed_talk_time_and_conversion(
    admin: FlaskClient, calls: dict[str, str],
) -> None:
    managers = section(admin.get(f"/reports{PERIOD}").get_data(as_text=True), "managers")
    assert row(managers, 'data-manager="101"') == "101 Мария 3 1 2 1:00 100 % (1 of 1)"
    assert row(managers, 'data-manager="102"') == "102 Иван 3 1 1 1:00 0 % (0 of 1)"


def test_missed_calls_show_what_happened_and_the_callback_state(
    admin: FlaskClient, calls: dict[str, str],
) -> None:
    missed = section(admin.get(f"/reports{PERIOD}").get_data(as_text=True), "missed")
    assert row(missed, f'data-call="{calls["missed"]}"') == (
        "04.05.2026 14:05 +79035550001 74951234567 — 200 — Отдел продаж Not answered 20 "
        "Called back")
    assert row(missed, f'data-call="{calls["callback"]}"') == (
        "04.05.2026 14:30 +79035550002 74951234567 — 200 — Отдел продаж Callback requested 45 "
        "Waiting for the call back")
    assert calls["closed"] not in missed and calls["later"] not in missed


def test_the_page_is_in_russian_by_default(client: FlaskClient, calls: dict[str, str]) -> None:
    post(client, "/login", {"user": "admin", "password": "correct horse battery"})
    html = client.get(f"/reports{PERIOD}").get_data(as_text=True)
    for text in ("Звонки по дням", "Нагрузка по часам", "Менеджеры", "Пропущенные звонки",
                 "Перезвонили", "Ждёт обратного звонка", "Скачать CSV"):
        assert text in html


def test_only_the_end_given_shows_the_week_up_to_it(admin: FlaskClient) -> None:
    html = admin.get("/reports?to=2026-05-10").get_data(as_text=True)
    assert 'value="2026-05-04"' in html and html.count("<tr data-day=") == 7


# --- the period's errors ------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "field", "message"), [
    ("?from=2026-13-01&to=2026-05-04", "from", "Enter a date as YYYY-MM-DD, e.g. 2026-05-04."),
    ("?from=2026-05-04&to=yesterday", "to", "Enter a date as YYYY-MM-DD, e.g. 2026-05-04."),
    ("?from=2026-05-05&to=2026-05-04", "to", "The period ends before it starts."),
    ("?from=2025-01-01&to=2026-05-04", "from", f"Choose at most {MAX_PERIOD_DAYS} days."),
])
def test_a_wrong_period_is_refused_with_the_message_next_to_the_field(
    admin: FlaskClient, query: str, field: str, message: str,
) -> None:
    response = admin.get(f"/reports{query}")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert f'<p class="error" id="e-{field}">{message}</p>' in html
    assert "data-report=" not in html


def test_a_period_of_exactly_the_longest_length_is_fine(admin: FlaskClient) -> None:
    end = date(2026, 5, 4)
    start = end - timedelta(days=MAX_PERIOD_DAYS - 1)
    response = admin.get(f"/reports?from={start.isoformat()}&to={end.isoformat()}")
    assert response.status_code == 200
    assert response.get_data(as_text=True).count("<tr data-day=") == MAX_PERIOD_DAYS


# --- CSV ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", reports.KINDS)
def test_each_report_downloads_as_the_csv_of_linebox_report(
    admin: FlaskClient, app: Flask, calls: dict[str, str], kind: str,
) -> None:
    response = admin.get(f"/reports/{kind}.csv{PERIOD}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="linebox-{kind}-2026-05-04-2026-05-05.csv"')
    store = Store.open(app.config["DB"])
    try:
        rows = reports.REPORTS[kind](store, date(2026, 5, 4), date(2026, 5, 5), MOSCOW)
        expected = reports.format_csv(kind, rows)
    finally:
        store.close()
    body = response.get_data(as_text=True)
    assert body == CSV_BOM + expected
    assert len(body.splitlines()) > 1


def test_the_page_links_each_csv_for_the_chosen_period(
    admin: FlaskClient, calls: dict[str, str],
) -> None:
    html = admin.get(f"/reports{PERIOD}").get_data(as_text=True)
    for kind in reports.KINDS:
        assert f'href="/reports/{kind}.csv?from=2026-05-04&amp;to=2026-05-05"' in html


def test_csv_of_a_wrong_period_is_refused(admin: FlaskClient) -> None:
    response = admin.get("/reports/daily.csv?from=2026-05-05&to=2026-05-01")
    assert response.status_code == 400
    assert 'id="e-to"' in response.get_data(as_text=True)


def test_csv_of_an_unknown_report_is_not_found(admin: FlaskClient) -> None:
    assert admin.get(f"/reports/everything.csv{PERIOD}").status_code == 404


def test_reports_are_for_the_admin_only(client: FlaskClient) -> None:
    assert client.get("/reports/daily.csv").headers["Location"].startswith("/login")
    post(client, "/login", {"user": "101", "password": "pw-101-secret"})
    assert client.get("/reports").status_code == 403
    assert client.get("/reports/daily.csv").status_code == 403
