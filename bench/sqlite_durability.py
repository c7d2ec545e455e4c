"""What keeping calls on disk costs (issue 16): SQLite settings against SQLite's defaults.

Each call is written twice, as the daemon's recorder writes it: once when it is answered
(`record_answered_calls`, 'in_progress') and once when it ends (`record_finished_calls`, with
two legs). Measured on a database file in `--dir` (default: bench/results/, the same disk as the
repository — not a tmpfs, where fsync costs nothing), for each setting:

* one call per commit (a quiet box: every answer and every end is a commit of its own): calls
  per second, and the latency of a commit (mean, p99) — how long an answer waits for its record;
* group commit (a busy box: the recorder commits what queued up meanwhile, here 50 calls per
  transaction): calls per second.

Settings: the daemon's (WAL, synchronous=FULL: a commit is on the medium when it returns), WAL
with synchronous=NORMAL (consistent after a power cut but the last commits may be lost), and the
named reference — SQLite's defaults, a rollback journal (journal_mode=DELETE) with
synchronous=FULL. Ratios are to the reference, measured in the same run.

    python bench/sqlite_durability.py [--calls 400] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from firmware.store import Store, new_call_id  # noqa: E402  (needs the repository root)
from firmware.store.durable import record_answered_calls  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"
DEFAULT_CALLS = 400
GROUP_SIZE = 50
MAX_SECONDS_PER_SETTING = 60.0
REFERENCE = "DELETE/FULL (SQLite's defaults)"
SETTINGS = (
    ("WAL/FULL (the daemon's)", "wal", "FULL"),
    ("WAL/NORMAL", "wal", "NORMAL"),
    (REFERENCE, "delete", "FULL"),
)


def call(call_id: str, at: float, *, ended: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    row: dict[str, Any] = {
        "id": call_id, "started_at": at, "answered_at": at + 4.0,
        "ended_at": at + 60.0 if ended else None, "direction": "inbound",
        "source": "trunk:provider", "caller": "+74950000000", "dialed": "74951234567",
        "number": "74951234567", "department": "200", "answered_by": "101",
        "end_cause": "caller hung up" if ended else None, "outcome": "answered",
        "sip_call_id": f"{call_id}@203.0.113.7", "line": "provider",
    }
    legs = [{"call_id": call_id, "target": target, "contact": f"sip:{target}@10.0.0.5",
             "started_at": at, "ended_at": at + 60.0 if ended else None,
             "result": result if ended else None}
            for target, result in (("101", "answered"), ("102", "cancelled"))]
    return row, legs


def open_store(path: Path, journal: str, synchronous: str) -> Store:
    store = Store.open(path)
    if journal != "wal":
        store.db.execute(f"PRAGMA journal_mode = {journal}")
    store.db.execute(f"PRAGMA synchronous = {synchronous}")
    return store


def one_per_commit(store: Store, calls: int) -> dict[str, float]:
    latencies: list[float] = []
    started = time.perf_counter()
    done = 0
    for n in range(calls):
        call_id = new_call_id()
        t = time.perf_counter()
        record_answered_calls(store, [call(call_id, float(n), ended=False)])
        latencies.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.record_finished_calls([call(call_id, float(n), ended=True)])
        latencies.append(time.perf_counter() - t)
        done += 1
        if time.perf_counter() - started > MAX_SECONDS_PER_SETTING:
            break
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"calls": done, "calls_per_s": done / elapsed,
            "commit_mean_ms": statistics.fmean(latencies) * 1000,
            "commit_p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def grouped(store: Store, calls: int) -> dict[str, float]:
    started = time.perf_counter()
    done = 0
    while done < calls and time.perf_counter() - started < MAX_SECONDS_PER_SETTING:
        ids = [new_call_id() for _ in range(GROUP_SIZE)]
        record_answered_calls(store, [call(i, float(done), ended=False) for i in ids])
        store.record_finished_calls([call(i, float(done), ended=True) for i in ids])
        done += GROUP_SIZE
    return {"calls": done, "calls_per_s": done / (time.perf_counter() - started)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS)
    parser.add_argument("--dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="sqlite-bench-") as folder:
        for name, journal, synchronous in SETTINGS:
            single_path = Path(folder) / f"{journal}-{synchronous}-single.db"
            group_path = Path(folder) / f"{journal}-{synchronous}-group.db"
            with open_store(single_path, journal, synchronous) as store:
                single = one_per_commit(store, args.calls)
            with open_store(group_path, journal, synchronous) as store:
                group = grouped(store, args.calls * 5)
            results[name] = {"one_per_commit": single, "group_commit": group}
    reference = results[REFERENCE]
    print(f"SQLite durability: {args.calls} calls, each written when answered and when "
          f"ended (2 commits a call alone, or {GROUP_SIZE} calls a commit); files in {args.dir}")
    print(f"{'setting':34} {'calls/s':>9} {'ratio':>6} {'commit ms':>10} {'p99 ms':>7}"
          f" {'grouped calls/s':>16} {'ratio':>6}")
    for name, figures in results.items():
        single, group = figures["one_per_commit"], figures["group_commit"]
        print(f"{name:34} {single['calls_per_s']:9.0f} "
              f"{single['calls_per_s'] / reference['one_per_commit']['calls_per_s']:6.2f} "
              f"{single['commit_mean_ms']:10.2f} {single['commit_p99_ms']:7.2f}"
              f" {group['calls_per_s']:16.0f} "
              f"{group['calls_per_s'] / reference['group_commit']['calls_per_s']:6.2f}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"sqlite_durability-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"calls": args.calls, "dir": str(args.dir),
                               "results": results}, indent=2), encoding="utf-8")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
