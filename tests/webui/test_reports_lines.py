"""Reports by line in the web UI (issue 12): the reports page narrowed to one line's calls with a
select of the lines, its CSV downloads too; a reserve line's page lists its latest events (state
changes and the failover's switches to and from it)."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware.store import Store
from tests.webui.conftest import ADMIN_PASSWORD, log_in_as_admin, page, post
from tests.webui.test_lines import make_app, with_lines
from tests.webui.test_reports import plain, record, section
from webui.lines import LINE_EVENTS_SHOWN
from webui.reports import CSV_BOM

MOSCOW = ZoneInfo("Europe/Moscow")
PERIOD = "from=2026-05-04&to=2026-05-04"


def at(hour: int, minute: int = 0) -> float:
    return datetime(2026, 5, 4, hour, minute, tzinfo=MOSCOW).timestamp()


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """The office with its provider and two reserve lines, mts (GSM) and city (FXO); on 4 May
    two calls came in on the provider and two on mts, one of each missed."""
    flask_app = make_app(tmp_path / "linebox.db", with_lines())
    with Store.open(flask_app.config["DB"]) as store:
        record(store, at(10), "answered", answered_by="101", line="provider",
               legs=(("101", "answered"),))
        record(store, at(11), "missed", caller="+74950000001", line="provider")
        record(store, at(12), "answered", answered_by="102", line="mts", source="gsm:mts",
               legs=(("102", "answered"),))
        record(store, at(13), "abandoned", caller="+79160000002", line="mts",
               source="gsm:mts", waited_s=30.0)
    return flask_app


@pytest.fixture
def admin(app: Flask) -> FlaskClient:
    return log_in_as_admin(app.test_client())


def add_event(app: Flask, **event: Any) -> None:
    with Store.open(app.config["DB"]) as store:
        store.add_line_event(**event)


def options(html: str) -> list[tuple[str, str, bool]]:
    select = html[html.index('<select id="f-line"'):html.index("</select>")]
    return [(value, plain(text), bool(selected)) for value, selected, text in re.findall(
        r'<option value="([^"]*)" (selected)?>(.*?)</option>', select, re.S)]


def day_row(html: str) -> str:
    match = re.search(r'<tr data-day="2026-05-04">(.*?)</tr>', html, re.S)
    assert match
    return plain(match.group(1))


# --- the reports page -------------------------------------------------------------------------


def test_the_form_offers_every_line_and_all_of_them_by_default(admin: FlaskClient) -> None:
    html = page(admin, f"/reports?{PERIOD}")
    assert options(html) == [("", "All lines", True), ("provider", "provider", False),
                             ("mts", "mts", False), ("city", "city", False)]
    assert day_row(html) == "04.05.2026 4 2 2 0 15"
    assert 'id="line-filter"' not in html


def test_the_reports_of_one_line(admin: FlaskClient) -> None:
    html = page(admin, f"/reports?{PERIOD}&line=mts")

    assert ("mts", "mts", True) in options(html)
    assert "Only the calls that came in on line mts." in html
    assert day_row(html) == "04.05.2026 2 1 1 0 18"
    missed = plain(section(html, "missed"))
    assert "+79160000002" in missed and "+74950000001" not in missed
    managers = section(html, "managers")
    assert 'data-manager="102"' in managers and 'data-manager="101"' not in managers
    assert "/reports/daily.csv?from=2026-05-04&amp;to=2026-05-04&amp;line=mts" in html


def test_the_missed_calls_show_their_line(admin: FlaskClient) -> None:
    missed = section(page(admin, f"/reports?{PERIOD}"), "missed")
    rows = [[plain(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr data-call=[^>]*>(.*?)</tr>", missed, re.S)]
    assert [(row[1], row[3]) for row in rows] == [("+74950000001", "provider"),
                                                  ("+79160000002", "mts")]


def test_a_line_there_is_not_is_an_error_beside_the_select(admin: FlaskClient) -> None:
    response = admin.get(f"/reports?{PERIOD}&line=nowhere")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="e-line"' in html and "Choose one of the lines." in html
    assert 'data-report="daily"' not in html
    assert admin.get(f"/reports/daily.csv?{PERIOD}&line=nowhere").status_code == 400


def test_the_csv_of_one_line(admin: FlaskClient) -> None:
    response = admin.get(f"/reports/missed.csv?{PERIOD}&line=provider")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="linebox-missed-provider-2026-05-04-2026-05-04.csv"')
    body = response.get_data(as_text=True)
    assert body.startswith(CSV_BOM)
    rows = list(csv.DictReader(io.StringIO(body[len(CSV_BOM):])))
    assert [(row["caller"], row["line"]) for row in rows] == [("+74950000001", "provider")]


def test_the_select_is_in_russian_too(app: Flask) -> None:
    client = app.test_client()
    post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    html = page(client, f"/reports?{PERIOD}&line=city")
    assert options(html)[0] == ("", "Все линии", False)
    assert "Только звонки, пришедшие по линии city." in html


# --- a line's events ------------------------------------------------------------------------


def test_a_line_page_lists_its_events_newest_first(admin: FlaskClient, app: Flask) -> None:
    add_event(app, at=at(9), kind="state", line="mts", state="up", reason="registered (home)")
    add_event(app, at=at(9, 30), kind="state", line="city", state="down", reason="no port")
    add_event(app, at=at(10), kind="failover", line="mts", old="provider",
              reason="provider: no default route")
    add_event(app, at=at(10, 5), kind="state", line="mts", state="down", old="up",
              reason="port vanished")
    add_event(app, at=at(10, 6), kind="failover", line=None, old="mts", reason="no line is up")

    html = page(admin, "/lines/mts")

    table = html[html.index('id="line-events"'):html.index("</table>",
                                                            html.index('id="line-events"'))]
    rows = [plain(row) for row in re.findall(r"<tr class=[^>]*>(.*?)</tr>", table, re.S)]
    assert rows == [
        "04.05.2026 10:06 Calls out stopped: no line is up no line is up",
        "04.05.2026 10:05 The line is down (was up) port vanished",
        "04.05.2026 10:00 Calls out switched to this line from provider "
        "provider: no default route",
        "04.05.2026 09:00 The line is up registered (home)",
    ]


def test_a_line_page_shows_the_switch_away_from_it(admin: FlaskClient, app: Flask) -> None:
    add_event(app, at=at(11), kind="failover", line="provider", old="mts",
              reason="provider answers again")
    html = page(admin, "/lines/mts")
    assert "Calls out switched from this line to provider" in html


def test_a_line_page_shows_only_the_latest_events(admin: FlaskClient, app: Flask) -> None:
    with Store.open(app.config["DB"]) as store:
        for minute in range(LINE_EVENTS_SHOWN + 5):
            store.add_line_event(at=at(8, minute), kind="state", line="city", state="up",
                                 reason=f"check {minute}")
    html = page(admin, "/lines/city")
    assert html.count('<tr class="event-state">') == LINE_EVENTS_SHOWN == 20
    assert f"check {LINE_EVENTS_SHOWN + 4}" in html and "check 4<" not in html


def test_a_quiet_line_says_it_has_no_events(admin: FlaskClient) -> None:
    html = page(admin, "/lines/city")
    assert 'id="events-empty"' in html and 'id="line-events"' not in html
