"""The event loop keeps answering SIP while the daemon's slow work runs (issue 11).

`linebox run` on a database of 100,000 calls from the last 30 days re-reads the conversion
figures (`rank: auto`) back to back (`--housekeeping-interval-s`); meanwhile a phone sends
OPTIONS over UDP, one every 50 ms, and each must be answered within 50 ms. With the query on the
event loop, a request that arrives during it waits for the rest of the query: on a PC the query
takes about 45 ms (on the box several times that), so the answers are also held to half of what
the query takes here, which a loop waiting for it cannot meet.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

from firmware.reports import conversion_by_manager
from firmware.store import Store
from tests.e2e.linebox import (
    base_config,
    final_reply_to,
    options_request,
    read_udp_replies,
    running_linebox,
    udp_socket,
)

CALLS = 100_000
WINDOW_S = 29 * 24 * 3600.0  # inside the 30 days the conversion query reads
CONVERSION_WINDOW_S = 30 * 24 * 3600.0
OPTIONS_SENT = 200
OPTIONS_GAP_S = 0.05  # 200 requests over 10 s
MAX_ANSWER_S = 0.050  # the bound
# Below half a query, but never tighter than this: a loaded test machine's scheduling alone
# can hold a process up for a few milliseconds.
MIN_BOUND_S = 0.020
REPLY_TIMEOUT_S = 2.0
# Back to back: the query runs most of the time the requests are sent.
HOUSEKEEPING_INTERVAL_S = 0.02
# At least this many queries ran while the requests were sent (about 150 at 45 ms a query).
MIN_QUERIES_DURING = OPTIONS_SENT // 4
QUERY_SAMPLES = 3


def fill_calls(db: Path, count: int, now: float) -> None:
    """`count` answered inbound calls spread over the last 29 days, as the recorder writes
    them (the store's own schema), in one transaction."""
    Store.open(db).close()
    rows = []
    for i in range(count):
        started = now - WINDOW_S + i * (WINDOW_S / count)
        rows.append((
            str(uuid.uuid4()), started, started + 5.0, started + 60.0, "inbound",
            "trunk:provider", f"+7900{i % 5000:07d}", "74951234567", "74951234567", "200",
            f"10{1 + i % 9}", "caller hung up", "answered", f"{uuid.uuid4().hex}@127.0.0.2",
            "ring_all", 5.0, 55.0, int(i % 3 != 0), int(i % 7 == 0),
        ))
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO calls (id, started_at, answered_at, ended_at, direction, source,"
                " caller, dialed, number, department, answered_by, end_cause, outcome,"
                " sip_call_id, strategy, waited_s, talk_s, target_call, sale)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()


def conversion_query_s(db: Path) -> float:
    """How long the daemon's conversion query takes on `db` here (the quickest of a few)."""
    with Store.open(db) as store:
        taken = []
        for _ in range(QUERY_SAMPLES):
            until = time.time()
            started = time.perf_counter()
            figures = conversion_by_manager(store, until - CONVERSION_WINDOW_S, until)
            taken.append(time.perf_counter() - started)
    assert len(figures) == 6, figures  # 102, 103, 105, 106, 108, 109 answered target calls
    return min(taken)


def test_options_are_answered_within_50_ms_while_the_conversion_query_runs(
    tmp_path: Path,
) -> None:
    db = tmp_path / "linebox.db"
    fill_calls(db, CALLS, time.time())
    bound_s = min(MAX_ANSWER_S, max(MIN_BOUND_S, conversion_query_s(db) / 2))
    config = base_config(departments=[{
        "number": "200", "name": "Sales", "strategy": "by_rank", "rank": "auto",
        "ring_timeout_s": 20, "members": ["101", "102"],
    }])
    with running_linebox(tmp_path, config, extra_args=[
        "--housekeeping-interval-s", str(HOUSEKEEPING_INTERVAL_S),
    ]) as linebox, udp_socket() as phone:
        queries_before = linebox.status()["housekeeping_runs"]
        answer_s: list[float] = []
        for _ in range(OPTIONS_SENT):
            request, call_id = options_request(linebox, phone)
            sent = time.monotonic()
            phone.sendto(request, ("127.0.0.1", linebox.port))
            replies = read_udp_replies(phone, REPLY_TIMEOUT_S, stop=final_reply_to(call_id))
            answered = time.monotonic()
            assert [r.status for r in replies if r.call_id == call_id][-1:] == [200], replies
            answer_s.append(answered - sent)
            time.sleep(max(0.0, OPTIONS_GAP_S - (answered - sent)))
        queries_during = linebox.status()["housekeeping_runs"] - queries_before
    assert queries_during >= MIN_QUERIES_DURING, (
        f"only {queries_during} conversion queries ran while OPTIONS were sent")
    slowest_ms = [round(s * 1000, 1) for s in sorted(answer_s)[-5:]]
    assert max(answer_s) < bound_s, (
        f"slowest answers {slowest_ms} ms, over {bound_s * 1000:.1f} ms "
        f"({queries_during} queries ran meanwhile)")
