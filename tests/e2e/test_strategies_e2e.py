"""Distribution strategies end to end: who rings, in which order, and when.

Each test starts a real daemon whose department 200 uses one strategy, SIPp agents that only
ring (agent_ring_only.xml) or ring and answer (agent_answer.xml), and the provider calling the
DID. Who rang and when is read from the agents' own message logs — the moment each agent received
its INVITE and its CANCEL — measured from the moment the provider sent its INVITE, and must match
the configured ring times within TOLERANCE_S. Ring times are the smallest the configuration
allows (5 s), so the whole file runs in about a minute.
"""

from __future__ import annotations

import logging
import re
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.linebox import DAEMON_WAIT_S, LineboxProcess, base_config, running_linebox
from tests.e2e.sipp import SippProcess, SippResult
from tests.e2e.test_calls import provider_call, start_agent, wait_for_records

LOGGER = logging.getLogger(__name__)

TOLERANCE_S = 0.2
STEP_S = 5  # ring_time_s / step_delay_s / tier_time_s: the smallest the configuration accepts
RING_TIMEOUT_S = 20
ANSWER_DELAY_MS = 1000  # the answering agent in the timing tests rings this long first
QUICK_ANSWER_MS = 200  # agents in the rotation tests: the first one offered answers
HOLD_MS = 300  # how long the provider keeps an answered call
CALL_CLEARED_S = 5.0
LOG_SKEW_S = 0.05  # two processes' log stamps of one datagram; well under HOLD_MS between calls
RING_ONLY = "agent_ring_only.xml"
AGENT_TIMEOUT_S = 60  # SIPp's own bound for agents that take several calls
QUEUE_HOLD_MS = 4000  # the call that keeps the only member busy while others queue

# A SIPp -trace_msg entry starts with a dashed line ending in its local date and time.
_STAMP_RE = re.compile(r"^-+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", re.MULTILINE)
_SIP_USER_RE = re.compile(r"sips?:([^@;>]+)@")


# --------------------------------------------------------------------------- reading SIPp logs


@dataclass(frozen=True, kw_only=True)
class Logged:
    """One message in a SIPp message log: when, which way, its start line and header fields
    (lower-case names, first value of each)."""

    at: float
    sent: bool
    start_line: str
    headers: dict[str, str]

    def is_request(self, method: str) -> bool:
        return self.start_line.startswith(f"{method} ")

    def is_response(self, status: int, method: str) -> bool:
        return (
            self.start_line.startswith(f"SIP/2.0 {status} ")
            and self.headers.get("cseq", "").endswith(f" {method}")
        )

    @property
    def from_user(self) -> str:
        match = _SIP_USER_RE.search(self.headers.get("from", ""))
        return match.group(1) if match else ""


def logged_messages(result: SippResult) -> list[Logged]:
    """Every message of a SIPp run's -trace_msg log, in order."""
    assert result.message_log is not None, result.describe()
    text = result.message_log.read_text(encoding="utf-8", errors="replace")
    parts = _STAMP_RE.split(text)  # [prefix, stamp1, body1, stamp2, body2, ...]
    messages = []
    for stamp, body in zip(parts[1::2], parts[2::2], strict=True):
        # "UDP message sent (N bytes):" or "UDP message received [N] bytes :", blank lines,
        # then the message: its start line and header fields up to the first blank line.
        direction, *lines = [line.strip() for line in body.strip().splitlines()]
        while lines and not lines[0]:
            lines.pop(0)
        if not lines:
            continue
        head = lines[: lines.index("")] if "" in lines else lines
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        messages.append(Logged(
            at=datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp(),
            sent="sent" in direction, start_line=head[0], headers=headers,
        ))
    return messages


def received(result: SippResult, method: str) -> list[Logged]:
    return [m for m in logged_messages(result) if not m.sent and m.is_request(method)]


def sent_at(result: SippResult, method: str) -> list[float]:
    return [m.at for m in logged_messages(result) if m.sent and m.is_request(method)]


def answered_at(agent: SippResult) -> float:
    """When the agent sent its 200 OK to an INVITE (picked up)."""
    return next(m.at for m in logged_messages(agent) if m.sent and m.is_response(200, "INVITE"))


Timeline = dict[str, dict[str, list[float]]]


def ring_timeline(agents: dict[str, SippResult], t0: float) -> Timeline:
    """Per extension, the offsets (s after `t0`) at which it received INVITEs and CANCELs."""
    return {
        extension: {
            method: [round(m.at - t0, 3) for m in received(result, method)]
            for method in ("INVITE", "CANCEL")
        }
        for extension, result in agents.items()
    }


def assert_timeline(measured: Timeline, expected: Timeline) -> None:
    LOGGER.info("ring timeline (s after the provider's INVITE): %s", measured)
    message = f"measured {measured}, expected {expected} (±{TOLERANCE_S} s)"
    assert measured.keys() == expected.keys(), message
    for extension, methods in expected.items():
        for method, offsets in methods.items():
            got = measured[extension][method]
            assert len(got) == len(offsets), f"{extension} {method}: {message}"
            for actual, wanted in zip(got, offsets, strict=True):
                assert abs(actual - wanted) <= TOLERANCE_S, f"{extension} {method}: {message}"


def first_offers(agents: dict[str, SippResult], calls: list[SippResult]) -> list[str]:
    """For each provider call, the extension that received an INVITE first, checking that it
    came at once (within TOLERANCE_S of the provider's INVITE)."""
    invites = sorted(
        (m.at, extension) for extension, result in agents.items()
        for m in received(result, "INVITE")
    )
    offered = []
    for call in calls:
        (t0,) = sent_at(call, "INVITE")
        # Two SIPps stamp one datagram independently: the agent may log it a hair "before".
        at, extension = next((at, ext) for at, ext in invites if at >= t0 - LOG_SKEW_S)
        LOGGER.info("call offered first to %s after %.3f s", extension, at - t0)
        assert at - t0 <= TOLERANCE_S, f"{extension} rang {at - t0:.3f} s after the call came"
        offered.append(extension)
    return offered


# --------------------------------------------------------------------------- running things


def sales(strategy: str, members: list[Any], **keys: Any) -> dict[str, Any]:
    """Configuration with department 200 (the DID's destination) using `strategy`."""
    department = {
        "number": "200", "name": "Sales", "strategy": strategy,
        "ring_timeout_s": RING_TIMEOUT_S, "members": members, **keys,
    }
    return base_config(departments=[department])


def ended(*agents: SippProcess) -> list[SippResult]:
    """Agents that take one call each end by themselves; each must have done so cleanly."""
    results = [agent.wait() for agent in agents]
    for result in results:
        assert result.ok, result.describe()
    return results


def stopped(*agents: SippProcess) -> list[SippResult]:
    """Agents that may take any number of calls: stopped once the test's calls are over."""
    for agent in agents:
        agent.kill()
    return [agent.wait() for agent in agents]


def call_and_clear(linebox: LineboxProcess, trace: Path, name: str, **options: Any) -> SippResult:
    """One provider call run to its end; returns when the gateway has cleared it."""
    options.setdefault("variables", {"hold_ms": HOLD_MS})
    caller = provider_call(linebox, trace, name=name, **options).run()
    assert caller.ok, caller.describe()
    linebox.wait_for(lambda: not linebox.status()["calls"], CALL_CLEARED_S, "call cleared")
    return caller


def answering_agents(
    linebox: LineboxProcess, stack: ExitStack, trace: Path, extensions: list[str], calls: int,
    answer_delay_ms: int = QUICK_ANSWER_MS,
) -> list[SippProcess]:
    """Agents that ring `answer_delay_ms`, then answer: whoever is offered a call first
    takes it, so nobody else is offered that call."""
    return [
        stack.enter_context(start_agent(
            linebox, extension, trace, calls=calls, timeout_s=AGENT_TIMEOUT_S,
            variables={"answer_delay_ms": answer_delay_ms},
        ))
        for extension in extensions
    ]


def two_ringing_and_one_answering(
    linebox: LineboxProcess, stack: ExitStack, trace: Path
) -> list[SippProcess]:
    """101 and 102 ring until cancelled; 103 answers ANSWER_DELAY_MS after it starts ringing."""
    return [
        stack.enter_context(start_agent(linebox, "101", trace, scenario=RING_ONLY)),
        stack.enter_context(start_agent(linebox, "102", trace, scenario=RING_ONLY)),
        stack.enter_context(start_agent(
            linebox, "103", trace, variables={"answer_delay_ms": ANSWER_DELAY_MS}
        )),
    ]


def ring_once(config: dict[str, Any], trace: Path) -> tuple[Timeline, float]:
    """One provider call to the department of `config` with 101 and 102 ringing and 103
    answering: the ring timeline and when 103 answered, both in s after the provider's INVITE."""
    with running_linebox(trace / "linebox", config) as linebox, ExitStack() as stack:
        agents = two_ringing_and_one_answering(linebox, stack, trace)
        caller = provider_call(linebox, trace, variables={"hold_ms": HOLD_MS}).run()
        assert caller.ok, caller.describe()
        results = ended(*agents)
        (record,) = wait_for_records(linebox, 1)
        assert record["answered_by"] == "103", record
    (t0,) = sent_at(caller, "INVITE")
    timeline = ring_timeline(dict(zip(("101", "102", "103"), results, strict=True)), t0)
    answer_s = round(answered_at(results[2]) - t0, 3)
    LOGGER.info("103 answered %.3f s after the provider's INVITE", answer_s)
    return timeline, answer_s


# --------------------------------------------------------------------------- timed strategies


def test_in_order_rings_each_member_for_their_ring_time_and_stops_them_as_the_next_starts(
    tmp_path: Path,
) -> None:
    config = sales("in_order", [
        {"extension": "101", "ring_time_s": STEP_S},
        {"extension": "102", "ring_time_s": STEP_S},
        "103",
    ])
    timeline, answer_s = ring_once(config, tmp_path)
    assert_timeline(timeline, {
        "101": {"INVITE": [0], "CANCEL": [STEP_S]},
        "102": {"INVITE": [STEP_S], "CANCEL": [2 * STEP_S]},
        "103": {"INVITE": [2 * STEP_S], "CANCEL": []},
    })
    assert abs(answer_s - (2 * STEP_S + ANSWER_DELAY_MS / 1000)) <= TOLERANCE_S


def test_cascading_adds_a_member_every_step_delay_and_cancels_the_others_on_answer(
    tmp_path: Path,
) -> None:
    config = sales("cascading", ["101", "102", "103"], step_delay_s=STEP_S)
    timeline, answer_s = ring_once(config, tmp_path)
    # Nobody is cancelled before 103 answers; then 101 and 102 are, at that moment.
    assert_timeline(timeline, {
        "101": {"INVITE": [0], "CANCEL": [answer_s]},
        "102": {"INVITE": [STEP_S], "CANCEL": [answer_s]},
        "103": {"INVITE": [2 * STEP_S], "CANCEL": []},
    })
    assert abs(answer_s - (2 * STEP_S + ANSWER_DELAY_MS / 1000)) <= TOLERANCE_S


def tiered(mode: str) -> dict[str, Any]:
    return sales("tiers", [
        {"extension": "101", "tier": 1},
        {"extension": "102", "tier": 1},
        {"extension": "103", "tier": 2},
    ], tier_time_s=STEP_S, tier_mode=mode)


def test_tiers_add_keeps_tier_one_ringing_when_tier_two_joins(tmp_path: Path) -> None:
    timeline, answer_s = ring_once(tiered("add"), tmp_path)
    assert_timeline(timeline, {
        "101": {"INVITE": [0], "CANCEL": [answer_s]},
        "102": {"INVITE": [0], "CANCEL": [answer_s]},
        "103": {"INVITE": [STEP_S], "CANCEL": []},
    })
    assert abs(answer_s - (STEP_S + ANSWER_DELAY_MS / 1000)) <= TOLERANCE_S


def test_tiers_replace_stops_tier_one_when_tier_two_starts(tmp_path: Path) -> None:
    timeline, answer_s = ring_once(tiered("replace"), tmp_path)
    assert_timeline(timeline, {
        "101": {"INVITE": [0], "CANCEL": [STEP_S]},
        "102": {"INVITE": [0], "CANCEL": [STEP_S]},
        "103": {"INVITE": [STEP_S], "CANCEL": []},
    })
    assert abs(answer_s - (STEP_S + ANSWER_DELAY_MS / 1000)) <= TOLERANCE_S


# --------------------------------------------------------------------------- who is offered first


def test_round_robin_starts_each_call_with_the_next_member(tmp_path: Path) -> None:
    extensions = ["101", "102", "103"]
    with (
        running_linebox(tmp_path / "linebox", sales("round_robin", extensions)) as linebox,
        ExitStack() as stack,
    ):
        agents = answering_agents(linebox, stack, tmp_path, extensions, calls=3)
        calls = [call_and_clear(linebox, tmp_path, f"call{i}") for i in range(3)]
        results = stopped(*agents)
    assert first_offers(dict(zip(extensions, results, strict=True)), calls) == extensions


def test_longest_idle_offers_the_next_call_to_the_member_who_has_not_had_one(
    tmp_path: Path,
) -> None:
    extensions = ["101", "102"]
    with (
        running_linebox(tmp_path / "linebox", sales("longest_idle", extensions)) as linebox,
        ExitStack() as stack,
    ):
        agents = answering_agents(linebox, stack, tmp_path, extensions, calls=2)
        calls = [call_and_clear(linebox, tmp_path, f"call{i}") for i in range(2)]
        results = stopped(*agents)
        records = wait_for_records(linebox, 2)
    # Nobody has had a call: configured order. Then 101 has, 102 has not.
    assert first_offers(dict(zip(extensions, results, strict=True)), calls) == ["101", "102"]
    assert [r["answered_by"] for r in records] == ["101", "102"]


def test_weighted_75_25_gives_three_of_four_first_offers_to_the_heavier_member(
    tmp_path: Path,
) -> None:
    config = sales("weighted", [
        {"extension": "101", "weight": 75},
        {"extension": "102", "weight": 25},
    ])
    with running_linebox(tmp_path / "linebox", config) as linebox, ExitStack() as stack:
        agents = answering_agents(linebox, stack, tmp_path, ["101", "102"], calls=4,
                                  answer_delay_ms=0)
        calls = [call_and_clear(linebox, tmp_path, f"call{i}") for i in range(4)]
        results = stopped(*agents)
    offered = first_offers(dict(zip(["101", "102"], results, strict=True)), calls)
    LOGGER.info("weighted first offers: %s", offered)
    assert (offered.count("101"), offered.count("102")) == (3, 1), offered


def test_member_on_break_is_skipped_and_offered_again_once_on_line(tmp_path: Path) -> None:
    extensions = ["101", "102"]
    with (
        running_linebox(tmp_path / "linebox", sales("in_order", extensions)) as linebox,
        ExitStack() as stack,
    ):
        agents = answering_agents(linebox, stack, tmp_path, extensions, calls=2)
        answer = linebox.control({"command": "agent", "extension": "101", "status": "break",
                                  "reason": "lunch"})
        assert answer["ok"], answer
        on_break = call_and_clear(linebox, tmp_path, "on_break")
        answer = linebox.control({"command": "agent", "extension": "101", "status": "on_line",
                                  "reason": ""})
        assert answer["ok"], answer
        on_line = call_and_clear(linebox, tmp_path, "on_line")
        results = stopped(*agents)
    agent_logs = dict(zip(extensions, results, strict=True))
    # 102 rang at once for the first call: 101 was skipped, not rung and waited out.
    assert first_offers(agent_logs, [on_break, on_line]) == ["102", "101"]
    assert [len(received(result, "INVITE")) for result in results] == [1, 1]


# --------------------------------------------------------------------------- queue and rules


def queued_callers(linebox: LineboxProcess) -> list[tuple[int, str]]:
    return [
        (caller["position"], caller["caller"])
        for queue in linebox.status()["queues"] if queue["department"] == "200"
        for caller in queue["waiting"]
    ]


def test_waiting_callers_are_served_in_arrival_order_when_the_member_frees_up(
    tmp_path: Path,
) -> None:
    config = sales("in_order", ["101"],
                   queue={"max_callers": 5, "max_wait_s": 60, "retry_s": 1})
    callers = ["79990000001", "79990000002", "79990000003"]
    with running_linebox(tmp_path / "linebox", config) as linebox, ExitStack() as stack:
        (agent,) = answering_agents(linebox, stack, tmp_path, ["101"], calls=3)
        busy = stack.enter_context(provider_call(
            linebox, tmp_path, name="busy",
            variables={"hold_ms": QUEUE_HOLD_MS, "caller_id": callers[0]},
        ).start())
        linebox.wait_for(
            lambda: any(c["state"] == "answered" for c in linebox.status()["calls"]),
            DAEMON_WAIT_S, "the member talking",
        )
        waiting = []
        for index, caller_id in enumerate(callers[1:], start=1):
            waiting.append(stack.enter_context(provider_call(
                linebox, tmp_path, name=f"waiting{index}",
                variables={"hold_ms": HOLD_MS, "caller_id": caller_id},
            ).start()))
            linebox.wait_for(lambda n=index: len(queued_callers(linebox)) == n, DAEMON_WAIT_S,
                             f"{index} waiting")
        assert queued_callers(linebox) == [(1, callers[1]), (2, callers[2])]
        results = [busy.wait(), *(w.wait() for w in waiting)]
        for result in results:
            assert result.ok, result.describe()
        (member,) = ended(agent)
    invites = received(member, "INVITE")
    assert [m.from_user for m in invites] == callers
    # Each waiting caller heard the box at once (its early media: a 183 with the box's SDP,
    # ringback and the position), and rang the member the moment the call before theirs
    # ended (the provider's BYE).
    for before, result, invite in zip(results[:-1], results[1:], invites[1:], strict=True):
        (t0,) = sent_at(result, "INVITE")
        ringback = next(m.at for m in logged_messages(result)
                        if not m.sent and m.is_response(183, "INVITE"))
        (freed,) = sent_at(before, "BYE")
        LOGGER.info("%s: 183 after %.3f s, rang the member %.3f s after the previous BYE",
                    invite.from_user, ringback - t0, invite.at - freed)
        assert ringback - t0 <= TOLERANCE_S
        assert -LOG_SKEW_S <= invite.at - freed <= TOLERANCE_S


def test_blacklisted_caller_hears_busy_and_no_member_rings(tmp_path: Path) -> None:
    config = sales("ring_all", ["101", "102"])
    config["rules"] = [{"match": "7999*", "action": "blacklist"}]
    with running_linebox(tmp_path / "linebox", config) as linebox, ExitStack() as stack:
        agents = [
            stack.enter_context(start_agent(linebox, extension, tmp_path, scenario=RING_ONLY))
            for extension in ("101", "102")
        ]
        busy = provider_call(
            linebox, tmp_path, scenario="provider_expect_busy.xml", name="blacklisted",
            variables={"caller_id": "79990001122"},
        ).run()
        assert busy.ok, busy.describe()
        results = stopped(*agents)
        (record,) = wait_for_records(linebox, 1)
    assert [received(result, "INVITE") for result in results] == [[], []]
    assert (record["outcome"], record["caller"]) == ("blacklisted", "79990001122")
