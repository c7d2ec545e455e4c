"""The What if page: a replay started from the form, its progress, its table and chart; the
sizing table and last week's blocking warning."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from firmware.store import Store
from tests.whatif.synthetic import DID, WALL_START, MemberTruth, SyntheticOffice, record_office

from .conftest import admin_of, app_over, csrf_of, log_in_as_admin, page, post

DAY = "2026-01-01"
MEMBERS = (MemberTruth("101", 0.9, (2.0, 8.0)), MemberTruth("102", 0.6, (3.0, 12.0)))


@pytest.fixture(scope="module")
def office_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("whatif-web") / "linebox.db"
    store = record_office(SyntheticOffice(members=MEMBERS, hours=2, calls_per_hour=40), path)
    store.record_finished_calls([({
        "id": f"blocked-{i}", "started_at": WALL_START + 900 + i, "ended_at": WALL_START + 900 + i,
        "direction": "inbound", "source": "provider", "caller": f"7916000001{i}", "dialed": DID,
        "number": DID, "department": "500", "outcome": "over_capacity",
    }, []) for i in range(3)])
    store.close()
    return path


@pytest.fixture
def admin(office_db: Path, tmp_path: Path) -> FlaskClient:
    # A copy per test: each test's replays keep their own job folder beside their database.
    db = tmp_path / "linebox.db"
    with Store.open(office_db) as source, Store.open(db) as target:
        source.db.conn.backup(target.db.conn)
    return admin_of(db)


def test_the_page_shows_the_form_and_the_busy_hour_sizing(admin: FlaskClient) -> None:
    html = page(admin, f"/whatif?from={DAY}&to={DAY}")
    assert 'name="department"' in html and "500 — Sales" in html
    assert 'name="v1-strategy"' in html and 'name="v2-remove"' in html
    assert f'data-number="{DID}"' in html
    # Three callers heard busy in the period's last week: over the 1 % target.
    assert 'id="sizing-warning"' in html and "3 of" in html


def test_a_replay_runs_in_the_background_and_shows_the_variants(admin: FlaskClient) -> None:
    response = post(admin, "/whatif", {
        "department": "500", "from": DAY, "to": DAY, "seeds": "5",
        "v1-strategy": "ring_all", "v2-remove": "102", "v2-other": "ring_timeout_s=25",
    })
    assert response.status_code == 302, response.get_data(as_text=True)
    job_url = response.headers["Location"]
    assert re.fullmatch(r"/whatif/[A-Za-z0-9_-]+", job_url)
    deadline = time.monotonic() + 120
    while True:
        status = admin.get(job_url + "/status").get_json()
        assert 0 <= status["progress"] <= 1
        if status["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status["state"] == "done", page(admin, job_url)
    html = page(admin, job_url)
    assert 'id="whatif-table"' in html and 'id="whatif-chart"' in html
    for row in ("answered", "missed", "abandoned", "mean_wait_s", "difference"):
        assert f'data-row="{row}"' in html
    assert "strategy=ring_all" in html and "remove=102, ring_timeout_s=25" in html
    assert html.count('class="bar-answered"') == 3  # as configured and the two variants
    assert 'data-member="101"' in html
    # The form lists the finished replay.
    assert job_url in page(admin, "/whatif")


@pytest.mark.parametrize(("data", "message"), [
    ({}, "Change at least one setting in a variant."),
    ({"v1-strategy": "fastest"}, "Choose a strategy."),
    ({"v1-ring_timeout_s": "9999"}, "A whole number from 5 to 600."),
    ({"v1-other": "weight.101=60; rm -rf /"}, "One setting a line"),
    ({"v1-add": "9"}, "From 0 to 5."),
    ({"from": "yesterday", "v1-add": "1"}, "A date"),
    ({"to": "2025-01-01", "v1-add": "1"}, "The period ends before it starts."),
])
def test_the_form_says_what_is_wrong(admin: FlaskClient, data: dict[str, str],
                                     message: str) -> None:
    form = {"department": "500", "from": DAY, "to": DAY, "seeds": "5", **data}
    response = post(admin, "/whatif", form, form_page="/whatif")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_a_variant_the_configuration_refuses_fails_with_its_reason(admin: FlaskClient) -> None:
    response = post(admin, "/whatif", {"department": "500", "from": DAY, "to": DAY,
                                       "seeds": "5", "v1-other": "weight.101=130"})
    job_url = response.headers["Location"]
    deadline = time.monotonic() + 60
    while admin.get(job_url + "/status").get_json()["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    html = page(admin, job_url)
    assert 'id="whatif-error"' in html and "weight" in html


def test_unknown_jobs_are_not_found(admin: FlaskClient) -> None:
    assert admin.get("/whatif/nosuchjob123").status_code == 404
    assert admin.get("/whatif/..%2F..%2Fetc").status_code == 404
    assert admin.get("/whatif/nosuchjob123/status").status_code == 404


def test_two_replays_asked_at_once_start_only_one(office_db: Path, tmp_path: Path) -> None:
    # Two browsers (two threads of the web server) press Replay together: one replay starts,
    # the other is told to wait.
    import threading

    db = tmp_path / "linebox.db"
    with Store.open(office_db) as source, Store.open(db) as target:
        source.db.conn.backup(target.db.conn)
    app = app_over(db)  # one web UI, two browsers
    clients = [log_in_as_admin(app.test_client()) for _ in range(2)]
    form = {"department": "500", "from": DAY, "to": DAY, "seeds": "20",
            "v1-strategy": "ring_all"}
    tokens = [csrf_of(client, "/whatif") for client in clients]
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def press(client: FlaskClient, token: str) -> None:
        barrier.wait(timeout=10)
        statuses.append(client.post("/whatif", data={**form, "csrf_token": token}).status_code)

    threads = [threading.Thread(target=press, args=pair) for pair in zip(clients, tokens,
                                                                         strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [302, 400]
    jobs = [p for p in (tmp_path / "whatif").iterdir() if p.is_dir()]
    assert len(jobs) == 1
    deadline = time.monotonic() + 120
    while not (jobs[0] / "result.json").exists() and not (jobs[0] / "error.txt").exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
