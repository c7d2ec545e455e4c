"""Erlang B and Erlang C: how many channels and how many agents a given traffic needs.

Offered traffic A in erlangs is calls per hour × mean holding time in hours (one erlang keeps
one channel busy all the time). Erlang B gives the blocking probability of A offered to N
channels with no waiting room — the share of callers who hear busy when a number's channels
are full (our 486 over capacity). Erlang C gives the probability that a caller must wait
when A is offered to N agents with an infinite queue; from it, the service level (share answered
within T seconds). Both are the textbook formulas (A. K. Erlang 1917; ITU-T E.501 §3 uses them
for dimensioning), computed by the numerically stable recursion rather than with factorials:

    B(0, A) = 1,    B(n, A) = A·B(n-1, A) / (n + A·B(n-1, A))
    C(N, A) = N·B(N, A) / (N − A·(1 − B(N, A)))            for N > A, else 1
    SL(T)   = 1 − C(N, A)·exp(−(N − A)·T / AHT)

Pure functions, no I/O.
"""

from __future__ import annotations

import math

MAX_SERVERS = 10_000  # a bound for the searches below: far past any office


def erlang_b(traffic: float, servers: int) -> float:
    """Blocking probability of `traffic` erlangs offered to `servers` channels."""
    if traffic < 0 or servers < 0:
        raise ValueError("traffic and servers must not be negative")
    blocking = 1.0
    for n in range(1, servers + 1):
        blocking = traffic * blocking / (n + traffic * blocking)
    return blocking


def channels_for_blocking(traffic: float, target: float = 0.01) -> int:
    """The fewest channels whose blocking for `traffic` is at most `target` (0 < target < 1)."""
    if not 0 < target < 1:
        raise ValueError("target blocking must be between 0 and 1")
    if traffic <= 0:
        return 0
    blocking = 1.0
    for n in range(1, MAX_SERVERS + 1):
        blocking = traffic * blocking / (n + traffic * blocking)
        if blocking <= target:
            return n
    raise ValueError(f"more than {MAX_SERVERS} channels needed")


def erlang_c(traffic: float, agents: int) -> float:
    """Probability that a call waits: `traffic` erlangs, `agents` agents, callers who wait
    forever (the model's assumption; real callers hang up, so it errs on the safe side)."""
    if agents <= traffic:
        return 1.0
    blocking = erlang_b(traffic, agents)
    return agents * blocking / (agents - traffic * (1 - blocking))


def service_level(traffic: float, agents: int, handle_s: float, answer_within_s: float) -> float:
    """Share of calls answered within `answer_within_s`, calls held `handle_s` on average."""
    if agents <= traffic:
        return 0.0
    if handle_s <= 0:
        return 1.0
    waiting = erlang_c(traffic, agents)
    return 1.0 - waiting * math.exp(-(agents - traffic) * answer_within_s / handle_s)


def mean_wait_s(traffic: float, agents: int, handle_s: float) -> float:
    """Average speed of answer (over all calls, the waiting and the not-waiting)."""
    if agents <= traffic:
        return math.inf
    return erlang_c(traffic, agents) * handle_s / (agents - traffic)


def agents_for_service_level(traffic: float, handle_s: float, *, target: float = 0.8,
                             answer_within_s: float = 20.0) -> int:
    """The fewest agents answering `target` of calls within `answer_within_s`."""
    if not 0 < target < 1:
        raise ValueError("target service level must be between 0 and 1")
    if traffic <= 0:
        return 0
    for agents in range(max(1, math.floor(traffic) + 1), MAX_SERVERS + 1):
        if service_level(traffic, agents, handle_s, answer_within_s) >= target:
            return agents
    raise ValueError(f"more than {MAX_SERVERS} agents needed")
