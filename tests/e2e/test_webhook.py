"""Webhook routing end to end: a real HTTP server on loopback decides where provider calls go.

The configured destination is the fallback: any error, nonsense answer or slowness beyond the
number's webhook_timeout_s sends the call there, and a slow webhook delays no other call.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.linebox import (
    DAEMON_WAIT_S,
    LineboxProcess,
    base_config,
    message_log_events,
    running_linebox,
)
from tests.e2e.test_calls import DID, provider_call, start_agent, wait_for_records

PLAIN_DID = "74957654321"


class Webhook:
    """What the office's web service answers, and what it was asked."""

    def __init__(self) -> None:
        self.answer: bytes = b'{"destination": "102"}'
        self.delay_s = 0.0
        self.requests: list[dict[str, Any]] = []


@pytest.fixture
def webhook() -> Iterator[tuple[Webhook, str]]:
    state = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            length = int(self.headers.get("Content-Length", "0"))
            state.requests.append(json.loads(self.rfile.read(length)))
            time.sleep(state.delay_s)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/route"
    finally:
        server.shutdown()
        server.server_close()


def config_for(url: str, timeout_s: float = 1.0) -> dict[str, Any]:
    return base_config(numbers=[
        {"number": DID, "trunk": "provider", "channels": 3, "destination": "101",
         "webhook": url, "webhook_timeout_s": timeout_s},
        {"number": PLAIN_DID, "trunk": "provider", "channels": 3, "destination": "103"},
    ])


def test_webhook_answer_decides_where_the_call_goes(
    webhook: tuple[Webhook, str], tmp_path: Path
) -> None:
    state, url = webhook
    with running_linebox(tmp_path / "box", config_for(url)) as linebox, \
            start_agent(linebox, "102", tmp_path) as agent:
        caller = provider_call(linebox, tmp_path, variables={"hold_ms": 200}).run()
        assert caller.ok, caller.describe()
        assert agent.wait().ok
        (record,) = wait_for_records(linebox, 1)
    assert record["answered_by"] == "102"
    (asked,) = state.requests
    assert asked["caller"] == "79990000001" and asked["called"] == DID
    assert "recent_calls" in asked["history"]


@pytest.mark.parametrize("answer", [b"not json", b'{"destination": "9"}', b"[]"])
def test_unusable_webhook_answer_falls_back_to_the_configured_destination(
    webhook: tuple[Webhook, str], tmp_path: Path, answer: bytes
) -> None:
    state, url = webhook
    state.answer = answer
    with running_linebox(tmp_path / "box", config_for(url)) as linebox, \
            start_agent(linebox, "101", tmp_path) as agent:
        caller = provider_call(linebox, tmp_path, variables={"hold_ms": 200}).run()
        assert caller.ok, caller.describe()
        assert agent.wait().ok
        assert "webhook for call" in linebox.log()


def test_slow_webhook_falls_back_in_time_and_delays_no_other_call(
    webhook: tuple[Webhook, str], tmp_path: Path
) -> None:
    state, url = webhook
    state.delay_s = 3.0
    with running_linebox(tmp_path / "box", config_for(url, timeout_s=1.0)) as linebox, \
            start_agent(linebox, "101", tmp_path, variables={"answer_delay_ms": 0}) as slow, \
            start_agent(linebox, "103", tmp_path, variables={"answer_delay_ms": 0}) as fast:
        waiting = provider_call(linebox, tmp_path, variables={"hold_ms": 300},
                                name="waiting").start()
        # The first call is now waiting for the webhook (a condition, not a pause: on a
        # loaded machine 0.2 s did not always bring its INVITE that far).
        linebox.wait_for(lambda: state.requests, DAEMON_WAIT_S, "the first call at the webhook")
        other = provider_call(linebox, tmp_path, service=PLAIN_DID,
                              variables={"hold_ms": 300}, name="other").run()
        assert other.ok, other.describe()
        assert other.response_time_ms is not None and other.response_time_ms < 500
        first = waiting.wait()
        assert first.ok, first.describe()
        assert slow.wait().ok and fast.wait().ok
    assert first.message_log is not None
    events = message_log_events(first.message_log)
    sent = next(t for t, d, line in events if d == "sent" and line.startswith("INVITE"))
    answered = next(t for t, d, line in events if d == "received" and " 200 " in line)
    # webhook_timeout_s is 1 s: the fallback rang within it plus a little, not after 3 s.
    assert 0.9 < answered - sent < 1.8, f"fallback after {answered - sent:.2f} s"


def test_webhook_setting_is_checked_at_import(tmp_path: Path) -> None:
    bad = base_config(numbers=[
        {"number": DID, "trunk": "provider", "channels": 3, "destination": "101",
         "webhook": "ftp://example/route"},
    ])
    with pytest.raises(RuntimeError, match=r"numbers\[0\]\.webhook"):
        LineboxProcess(tmp_path / "box", bad)


def test_crm_lookup_names_the_responsible_manager(
    webhook: tuple[Webhook, str], tmp_path: Path
) -> None:
    """`sticky: crm_owner` with `crm.url`: the CRM's owner (102) rings first, alone, although
    101 is free too and the strategy rings everyone."""
    state, url = webhook
    state.answer = b'{"extension": "102"}'
    config = base_config(crm={"url": url, "timeout_s": 1.0})
    config["departments"][0].update(sticky="crm_owner", sticky_ring_s=5)
    with running_linebox(tmp_path / "box", config) as linebox, \
            start_agent(linebox, "101", tmp_path, scenario="agent_ring_only.xml") as bystander, \
            start_agent(linebox, "102", tmp_path, variables={"answer_delay_ms": 300}) as owner:
        caller = provider_call(linebox, tmp_path, variables={"hold_ms": 200}).run()
        assert caller.ok, caller.describe()
        assert owner.wait().ok
        bystander.stop()
        (record,) = wait_for_records(linebox, 1)
    assert record["answered_by"] == "102"
    assert [leg["target"] for leg in record["legs"]] == ["102"]  # 101 never rang
    (asked,) = state.requests
    assert (asked["caller"], asked["department"]) == ("79990000001", "200")
    assert "history" not in asked
