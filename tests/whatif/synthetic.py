"""A synthetic office whose truth is known, recorded by the real core.

Callers arrive as a Poisson process and call the office's number; the department's members are
scripted phones on the core's fake network (tests/core/network.py) that answer a ring with a set
probability after a delay drawn from a set range, talk for an exponential time, and hang up;
callers who wait too long (an exponential patience) hang up. The gateway — the daemon's own
core, with its real strategies, queue and records — does the distributing, and what it records
is written to a real Store. The what-if replay is then checked against that record: the replay
of the strategy actually used must find what the core found.
"""

from __future__ import annotations

import heapq
import itertools
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.sip.message import Request
from firmware.sip.transaction import Address
from firmware.store import Store
from firmware.store.config import parse_config
from tests.core.network import PROVIDER, Network, Peer, request

WALL_START = 1_767_225_600.0  # 2026-01-01 00:00 UTC: the records' clock at the network's 0 s
DID = "+74950000500"
REREGISTER_S = 1800.0


@dataclass(frozen=True)
class MemberTruth:
    extension: str
    answer_probability: float
    delay_s: tuple[float, float]  # uniform range of the answer delay


@dataclass
class SyntheticOffice:
    members: tuple[MemberTruth, ...]
    strategy: str = "longest_idle"
    ring_timeout_s: int = 15
    calls_per_hour: float = 60.0
    hours: float = 4.0
    mean_talk_s: float = 150.0
    mean_patience_s: float = 90.0
    queue: dict[str, Any] | None = field(default_factory=lambda: {
        "max_callers": 10, "max_wait_s": 120, "retry_s": 5, "announce_s": 0})
    wrap_up_s: int = 0
    seed: int = 7

    def config(self) -> dict[str, object]:
        department: dict[str, object] = {
            "number": "500", "name": "Sales", "strategy": self.strategy,
            "ring_timeout_s": self.ring_timeout_s,
            "members": [m.extension for m in self.members],
        }
        if self.queue is not None:
            department["queue"] = self.queue
        if self.wrap_up_s:
            department["wrap_up_s"] = self.wrap_up_s
        return {
            "extensions": [{"number": m.extension, "name": f"Manager {m.extension}",
                            "password": f"secret-{m.extension}-pw"} for m in self.members],
            "departments": [department],
            "trunks": [{"name": "provider", "host": "sip.example.ru", "register": False,
                        "channels": 100}],
            "numbers": [{"number": DID, "trunk": "provider", "channels": 100,
                         "destination": "500"}],
        }


class _Driver:
    """Runs the office: a heap of the people's own actions between the network's timers."""

    def __init__(self, office: SyntheticOffice) -> None:
        self.office = office
        self.rng = random.Random(office.seed)
        self.net = Network(office.config(), seed=office.seed)
        self.provider = Peer(self.net, PROVIDER, "79160000000")
        self.phones: dict[str, Peer] = {}
        self.truth = {m.extension: m for m in office.members}
        for index, member in enumerate(office.members):
            phone = Peer(self.net, Address("udp", f"10.0.1.{index + 10}", 5060),
                         member.extension)
            assert phone.register(password=f"secret-{member.extension}-pw").status == 200
            self.phones[member.extension] = phone
        self.actions: list[tuple[float, int, Callable[[], None]]] = []
        self.sequence = itertools.count()
        self.decided: set[str] = set()  # INVITE branches a phone has decided about

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.actions, (when, next(self.sequence), action))

    def run(self) -> None:
        office = self.office
        end = office.hours * 3600.0
        when = 0.0
        while True:
            when += self.rng.expovariate(office.calls_per_hour / 3600.0)
            if when >= end:
                break
            self.at(when, self._arrival)
        for renewal in range(1, int(end // REREGISTER_S) + 1):
            self.at(renewal * REREGISTER_S, self._register_all)
        # The people's actions and the gateway's timers, in time order: a ring a timer starts
        # is decided when it comes, and the answer it leads to may come before the next timer.
        for _ in range(1_000_000):
            timer = self.net.gateway.get_timer()
            if not self.actions and (timer is None or timer > end + 600.0):
                break
            if timer is not None and (not self.actions or timer <= self.actions[0][0]):
                self.net.run_until(max(timer, self.net.now))
            else:
                when, _, action = heapq.heappop(self.actions)
                self.net.run_until(max(when, self.net.now))
                action()
            self._decide_new_rings()
        self.net.run_until(self.net.now + 600.0)  # every call ends, every timer runs out

    def _register_all(self) -> None:
        # Phones renew their registration (RFC 3261 §10.2.4) well before the hour runs out.
        for extension, phone in self.phones.items():
            assert phone.register(password=f"secret-{extension}-pw").status == 200

    def _arrival(self) -> None:
        caller = f"7916{self.rng.randrange(10**6, 10**7)}"
        self.provider.user = caller
        invite = self.provider.call(DID)
        patience = self.rng.expovariate(1.0 / self.office.mean_patience_s)
        self.at(self.net.now + patience, lambda: self._caller_gives_up(invite))

    def _caller_gives_up(self, invite: Request) -> None:
        outgoing = next(c for c in self.provider.outgoing if c.invite is invite)
        finals = [r for r in self.provider.responses()
                  if r.call_id == invite.call_id and r.status >= 200]
        if outgoing.answer is None and not finals:
            self.provider.cancel(invite)

    def _decide_new_rings(self) -> None:
        self.net.pump()
        for extension, phone in self.phones.items():
            for branch, entry in phone.incoming.items():
                if branch in self.decided or entry.final is not None:
                    continue
                self.decided.add(branch)
                truth = self.truth[extension]
                if self.rng.random() < truth.answer_probability:
                    delay = self.rng.uniform(*truth.delay_s)
                    self.at(self.net.now + delay,
                            lambda p=phone, b=branch: self._answer(p, b))

    def _answer(self, phone: Peer, branch: str) -> None:
        entry = phone.incoming[branch]
        if entry.final is not None:
            return  # cancelled meanwhile (someone else answered, the caller gave up)
        phone.reply(entry.invite, 200)
        talk = self.rng.expovariate(1.0 / self.office.mean_talk_s)
        self.at(self.net.now + talk, lambda: self._hang_up(phone, branch))

    def _hang_up(self, phone: Peer, branch: str) -> None:
        entry = phone.incoming[branch]
        invite = entry.invite
        phone.send(request("BYE", str(invite.contacts[0].uri), [
            ("Via", phone.via()), ("Max-Forwards", "70"),
            ("From", f"{invite.headers.get('To')};tag={entry.tag}"),
            ("To", invite.headers.get("From") or ""),
            ("Call-ID", invite.call_id), ("CSeq", f"{secrets.randbelow(1000) + 2} BYE"),
        ]))


def _shift(row: dict[str, object], keys: tuple[str, ...]) -> dict[str, object]:
    shifted = dict(row)
    for key in keys:
        value = shifted.get(key)
        if isinstance(value, int | float):
            shifted[key] = value + WALL_START
    return shifted


def record_office(office: SyntheticOffice, db_path: Path) -> Store:
    """Run `office` through the core and write its records to a new Store at `db_path`."""
    driver = _Driver(office)
    driver.run()
    rows = driver.net.recorder.calls
    store = Store.open(db_path)
    store.replace_config(parse_config(office.config()))
    batch = [
        (_shift(call, ("started_at", "answered_at", "ended_at")),
         [_shift(leg, ("started_at", "ringing_at", "answered_at", "ended_at")) for leg in legs])
        for call, legs in rows
    ]
    store.record_finished_calls(batch)
    return store
