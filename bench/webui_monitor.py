"""Web UI live monitor: server time to render the monitor for 50 employees.

An app over a temporary store holding 50 employees in two departments, and a status as the
daemon reports it at a busy moment (every light lit: free, ringing, talking, wrap-up, break, DND,
outbound, offline; 12 calls in progress, 6 callers queued, numbers and a trunk). Measured, the
cases interleaved, after a warm-up:

  render page    webui.monitor.render_page(status): the whole HTML page, in a request context
  render data    webui.monitor.render_data(status): the poll's JSON (the board and its HTML)
  GET /monitor   the whole request through Flask's test client (session, login check, store,
                 the status asked over the control socket of a stand-in daemon, the page)
  GET /monitor/data   the same for the poll
  trivial route  the reference peer: a Flask route returning "ok", through the same client

Each case reports p50/p99/max in ms and its p50 as a multiple of the trivial route's; the
monitor passes with p99 under 100 ms in every case. The stand-in daemon is a thread answering
the control socket's `status` with the prepared status (a real daemon is not needed: its own
time to build the status is not the web UI's).

    python bench/webui_monitor.py [--employees 50] [--repeat 200] [--warmup 20] [--no-json]

Every loop is bounded by its arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import socketserver
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from flask import Flask  # noqa: E402  (needs the repository root on sys.path)
from flask.testing import FlaskClient  # noqa: E402

from firmware.store import Store, parse_config  # noqa: E402
from webui import create_app, monitor  # noqa: E402
from webui.control import socket_path  # noqa: E402
from webui.security import ADMIN_PASSWORD_SETTING, hash_password  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"
EMPLOYEES = 50
REPEAT = 200
WARMUP = 20
MAX_P99_MS = 100.0
ADMIN_PASSWORD = "bench admin password"
DID = "74951234567"
REFERENCE = "trivial route"
FIRST_NAMES = ("Анна", "Борис", "Вера", "Глеб", "Дарья", "Егор", "Жанна", "Зоя", "Иван",
               "Ксения")
LAST_NAMES = ("Смирнова", "Иванов", "Кузнецова", "Попов", "Соколова", "Лебедев", "Козлова")


def extensions(count: int) -> list[str]:
    return [str(101 + i) for i in range(count)]


def office_config(count: int) -> dict[str, Any]:
    numbers = extensions(count)
    half = count // 2
    return {
        "extensions": [
            {"number": number,
             "name": f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {LAST_NAMES[i % len(LAST_NAMES)]}",
             "password": f"bench-pw-{number}"}
            for i, number in enumerate(numbers)
        ],
        "departments": [
            {"number": "800", "name": "Отдел продаж", "strategy": "ring_all",
             "ring_timeout_s": 20, "members": numbers[:half]},
            {"number": "801", "name": "Поддержка", "strategy": "longest_idle",
             "ring_timeout_s": 30, "members": numbers[half:]},
        ],
        "trunks": [{"name": "provider", "type": "sip", "host": "127.0.0.2", "port": 5060,
                    "username": "box", "password": "provider-pw", "register": True,
                    "channels": 30}],
        "numbers": [
            {"number": DID, "trunk": "provider", "channels": 20, "destination": "800"},
            {"number": "74951234568", "trunk": "provider", "channels": 10,
             "destination": "801"},
        ],
    }


def busy_status(count: int, seed: int = 1) -> dict[str, Any]:
    """The daemon's status (`linebox status --json`) at a busy moment, every light lit."""
    rng = random.Random(seed)
    config = office_config(count)
    names = {e["number"]: e["name"] for e in config["extensions"]}
    numbers = extensions(count)
    agents = []
    calls = []
    talking = numbers[:10]
    ringing = numbers[10:14]
    for i, number in enumerate(numbers):
        kind = i % 10
        agents.append({
            "extension": number, "name": names[number],
            "status": {5: "break", 6: "dnd", 7: "outbound", 8: "logged_out"}.get(kind, "on_line"),
            "reason": "обед" if kind == 5 else "", "since_s": round(rng.uniform(1, 7200), 1),
            "registered": kind != 9, "on_call": number in talking,
            "wrap_up_s": 12.0 if kind == 4 and number not in talking + ringing else 0,
            "call_ended_s": round(rng.uniform(1, 600), 1) if kind in (3, 4) else None,
            "calls_answered_today": rng.randint(0, 40),
            "talk_time_today_s": rng.randint(0, 9000),
        })
    for i, number in enumerate(talking):
        duration_s = rng.uniform(30, 900)
        calls.append({
            "id": f"talk{i:02d}", "state": "answered", "direction": "inbound",
            "caller": f"+7916{rng.randint(0, 9_999_999):07d}", "dialed": DID,
            "department": "800", "answered_by": number,
            "duration_s": round(duration_s, 1),
            "answered_s": round(duration_s - rng.uniform(3, 25), 1), "ringing": [],
            "ringing_s": {},
        })
    for i in range(2):
        rung = ringing[i * 2:(i + 1) * 2]
        calls.append({
            "id": f"ring{i:02d}", "state": "ringing", "direction": "inbound",
            "caller": f"+7903{rng.randint(0, 9_999_999):07d}", "dialed": DID,
            "department": "801", "answered_by": None, "duration_s": 6.5, "answered_s": None,
            "ringing": rung, "ringing_s": dict.fromkeys(rung, 4.2),
        })
    return {
        "registrations": [], "bans": [], "stats": {}, "transactions": 40, "sip": "0.0.0.0:5060",
        "pid": os.getpid(),
        "trunks": [{"name": "provider", "state": "registered", "last_status": 200,
                    "error": "", "expires_in_s": 3000}],
        "agents": agents,
        "calls": calls,
        "queues": [{"department": "800", "waiting": [
            {"position": p + 1, "caller": f"+7985{rng.randint(0, 9_999_999):07d}",
             "wait_s": round(rng.uniform(1, 240), 1), "vip": p == 0, "callback": p == 4}
            for p in range(6)]}],
        "channels": [{"key": f"number:{DID}", "in_use": 11, "capacity": 20},
                     {"key": "number:74951234568", "in_use": 1, "capacity": 10},
                     {"key": "trunk:provider", "in_use": 12, "capacity": 30}],
    }


class StandInDaemon(socketserver.ThreadingUnixStreamServer):
    """Answers the control socket's `status` request with a prepared status, as the daemon."""

    daemon_threads = True

    def __init__(self, path: Path, status: dict[str, Any]) -> None:
        self.answer = json.dumps({"ok": True, "status": status}, ensure_ascii=False).encode()
        super().__init__(str(path), _Handler)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, StandInDaemon)
        if self.rfile.readline():
            self.wfile.write(server.answer + b"\n")


def make_app(workdir: Path, count: int) -> Flask:
    db = workdir / "linebox.db"
    store = Store.open(db)
    store.replace_config(parse_config(office_config(count)))
    store.put_setting(ADMIN_PASSWORD_SETTING, hash_password(ADMIN_PASSWORD))
    store.close()
    app = create_app({"DB": str(db), "SECRET_KEY": "bench"})
    app.add_url_rule("/bench/trivial", "bench_trivial", lambda: "ok")
    return app


def logged_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on /login"
    response = client.post("/login", data={"user": "admin", "password": ADMIN_PASSWORD,
                                           "csrf_token": match.group(1)})
    assert response.status_code == 302, response.status_code
    return client


def percentile(sorted_ms: list[float], fraction: float) -> float:
    index = min(len(sorted_ms) - 1, max(0, round(fraction * len(sorted_ms)) - 1))
    return sorted_ms[index]


def measure(cases: dict[str, Callable[[], None]], repeat: int, warmup: int) -> dict[str, Any]:
    """Time every case `repeat` times after `warmup` untimed runs, the cases interleaved."""
    for _ in range(warmup):
        for run in cases.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, run in cases.items():
            started = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - started) * 1000.0)
    figures = {}
    for name, times in samples.items():
        ordered = sorted(times)
        figures[name] = {"p50_ms": statistics.median(ordered),
                         "p99_ms": percentile(ordered, 0.99), "max_ms": ordered[-1]}
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=EMPLOYEES)
    parser.add_argument("--repeat", type=int, default=REPEAT)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load:.2f} at start")
    status = busy_status(args.employees)
    with tempfile.TemporaryDirectory(prefix="linebox-bench-") as workdir:
        app = make_app(Path(workdir), args.employees)
        daemon = StandInDaemon(socket_path(app.config["DB"]), status)
        serving = threading.Thread(target=daemon.serve_forever, kwargs={"poll_interval": 0.05},
                                   daemon=True)
        serving.start()
        try:
            client = logged_in(app)
            page = client.get("/monitor")
            data = client.get("/monitor/data")
            assert page.status_code == 200 and data.status_code == 200, (page.status_code,
                                                                          data.status_code)
            board = data.get_json()
            assert len(board["employees"]) == args.employees
            lit = sorted({e["state"] for e in board["employees"]})
            html = page.get_data(as_text=True)
            assert html.count("<tr data-extension=") == args.employees

            def render_page() -> None:
                with app.test_request_context("/monitor"):
                    monitor.render_page(status)

            def render_data() -> None:
                with app.test_request_context("/monitor/data"):
                    monitor.render_data(status)

            def get(path: str) -> Callable[[], None]:
                def run() -> None:
                    response = client.get(path)
                    if response.status_code != 200:
                        raise AssertionError(f"{path}: {response.status_code}")
                return run

            figures = measure({
                "render page": render_page,
                "render data": render_data,
                "GET /monitor": get("/monitor"),
                "GET /monitor/data": get("/monitor/data"),
                REFERENCE: get("/bench/trivial"),
            }, args.repeat, args.warmup)
        finally:
            daemon.shutdown()
            daemon.server_close()
            serving.join(timeout=5)

    print(f"\nlive monitor for {args.employees} employees (lights: {', '.join(lit)}; "
          f"{len(status['calls'])} calls, {len(status['queues'][0]['waiting'])} queued); "
          f"{args.repeat} runs each after {args.warmup} warm-up, interleaved; "
          f"page {len(html) // 1024} KB, poll {len(data.get_data()) // 1024} KB")
    print(f"{'case':<20}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'x trivial':>11}  result")
    reference_p50 = figures[REFERENCE]["p50_ms"]
    passed = True
    for name, row in figures.items():
        ratio = row["p50_ms"] / reference_p50 if reference_p50 else float("nan")
        row["ratio_to_reference"] = ratio
        if name == REFERENCE:
            verdict = "reference: a Flask route returning 'ok'"
        else:
            row["passed"] = row["p99_ms"] < MAX_P99_MS
            passed = passed and row["passed"]
            verdict = "PASS" if row["passed"] else "FAIL"
        print(f"{name:<20}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['max_ms']:>9.2f}"
              f"{ratio:>11.1f}  {verdict}")
    print(f"\n{'PASS' if passed else 'FAIL'}: monitor for {args.employees} employees, "
          f"p99 < {MAX_P99_MS:.0f} ms server time in every case")
    if not args.no_json:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = RESULTS_DIR / f"webui_monitor-{stamp}.json"
        document = {"python": platform.python_version(), "employees": args.employees,
                    "repeat": args.repeat, "warmup": args.warmup, "max_p99_ms": MAX_P99_MS,
                    "cases": figures, "passed": passed}
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"results: {path.relative_to(REPO_ROOT)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
