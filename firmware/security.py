"""Flood and guessing protection: a per-source request counter with temporary bans (Kamailio
pike's model), and a count of failed authentications per source and per extension in a sliding
window (fail2ban's model, inside the box).

Pure: the caller passes `now`. Trusted sources (trunk addresses, addresses with a live
authenticated registration) are never counted by the request limiter — an office behind one NAT
sends much — but every failed digest answer counts, whoever sends it. Scanner User-Agents are
recognised here so the transport can drop them without a reply, which is what makes a box
uninteresting to sipvicious and friends.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store.config import Security

LOGGER = logging.getLogger(__name__)

DEFAULT_REQUESTS = 16
DEFAULT_WINDOW_S = 2.0
DEFAULT_BAN_S = 300.0
DEFAULT_SCANNERS = ("friendly-scanner", "sipvicious", "sipcli")
MAX_TRACKED_SOURCES = 100_000


@dataclass(slots=True)
class _Window:
    started_at: float
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ban:
    source: str
    since: float
    until: float
    requests: int


class BanList:
    """Bans by key until their time, bounded in memory: under a scan from many (possibly
    spoofed) addresses, ended bans go first, then the oldest tenth."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._bans: dict[str, Ban] = {}

    def ban(self, key: str, now: float, ban_s: float, count: int) -> None:
        if len(self._bans) >= MAX_TRACKED_SOURCES:
            self.prune(now)
            low_water = MAX_TRACKED_SOURCES - MAX_TRACKED_SOURCES // 10
            if len(self._bans) > low_water:
                _drop_oldest(self._bans, len(self._bans) - low_water)
        self._bans[key] = Ban(source=key, since=now, until=now + ban_s, requests=count)

    def is_banned(self, key: str, now: float) -> bool:
        ban = self._bans.get(key)
        if ban is None:
            return False
        if now >= ban.until:
            del self._bans[key]
            LOGGER.info("%s ban lifted for %s", self._what, key)
            return False
        return True

    def prune(self, now: float) -> None:
        self._bans = {k: b for k, b in self._bans.items() if now < b.until}

    def bans(self, now: float) -> list[Ban]:
        return [b for b in self._bans.values() if now < b.until]

    def __len__(self) -> int:
        """Bans held in memory, expired ones included until `prune`."""
        return len(self._bans)


class RateLimiter:
    def __init__(
        self,
        *,
        requests: int = DEFAULT_REQUESTS,
        window_s: float = DEFAULT_WINDOW_S,
        ban_s: float = DEFAULT_BAN_S,
    ) -> None:
        self._windows: dict[str, _Window] = {}
        self._bans = BanList("request rate")
        self.configure(requests=requests, window_s=window_s, ban_s=ban_s)

    def configure(self, *, requests: int, window_s: float, ban_s: float) -> None:
        """New limits; bans already given stand (a saved configuration must not free a
        guesser)."""
        self.requests = requests
        self.window_s = window_s
        self.ban_s = ban_s

    def is_banned(self, source: str, now: float) -> bool:
        return self._bans.is_banned(source, now)

    def allow(self, source: str, now: float) -> bool:
        """Count one request from an untrusted `source`; False once it is (or becomes) banned."""
        if self.is_banned(source, now):
            return False
        window = self._windows.get(source)
        if window is None or now - window.started_at >= self.window_s:
            self._windows.pop(source, None)  # re-insert: dict order stays oldest-first
            if len(self._windows) >= MAX_TRACKED_SOURCES:
                self._make_room(now)
            self._windows[source] = _Window(started_at=now, count=1)
            return True
        window.count += 1
        if window.count > self.requests:
            self._bans.ban(source, now, self.ban_s, window.count)
            del self._windows[source]
            LOGGER.warning(
                "banned %s for %.0f s: %d requests in %.1f s",
                source, self.ban_s, window.count, now - window.started_at,
            )
            return False
        return True

    def _make_room(self, now: float) -> None:
        """Bounded memory under a scan from many (possibly spoofed) addresses: forget ended
        windows, and if that is not enough, the oldest tenth — amortised O(1) per source."""
        self.prune(now)
        low_water = MAX_TRACKED_SOURCES - MAX_TRACKED_SOURCES // 10
        if len(self._windows) > low_water:
            _drop_oldest(self._windows, len(self._windows) - low_water)

    def prune(self, now: float) -> None:
        """Forget windows that ended and bans that expired (bounded memory under a scan)."""
        self._windows = {
            s: w for s, w in self._windows.items() if now - w.started_at < self.window_s
        }
        self._bans.prune(now)

    def bans(self, now: float) -> list[Ban]:
        return self._bans.bans(now)


class AuthGuard:
    """Failed digest answers in a sliding window of `window_s`, per source address and per
    extension.

    `per_source` failures ban the address for `ban_s`; the caller still serves, from a banned
    address, the exact sources (address, port, transport) of phones registered there, so a
    guesser behind the office's NAT does not cut the office's own phones off. `per_extension`
    failures lock the extension for `ban_s` against every source but its registered phones: a
    distributed guess from many addresses, each under its own limit, stops too. Only failures
    count: a request that merely lacks credentials is answered with a challenge and costs
    nothing.
    """

    def __init__(
        self, *, per_source: int, per_extension: int, window_s: float, ban_s: float
    ) -> None:
        self._failures: dict[str, deque[float]] = {}  # "host" or "ext:NNN" → failure times
        self._bans = BanList("authentication")
        self.configure(per_source=per_source, per_extension=per_extension, window_s=window_s,
                       ban_s=ban_s)

    @classmethod
    def of(cls, security: Security) -> AuthGuard:
        return cls(per_source=security.auth_failures_per_source,
                   per_extension=security.auth_failures_per_extension,
                   window_s=security.auth_window_s, ban_s=security.ban_s)

    def configure(
        self, *, per_source: int, per_extension: int, window_s: float, ban_s: float
    ) -> None:
        """New limits; bans and counts already made stand."""
        self.per_source = per_source
        self.per_extension = per_extension
        self.window_s = window_s
        self.ban_s = ban_s

    def failed(self, host: str, extension: str | None, now: float) -> None:
        """Count one failed authentication from `host` for `extension` (None: unknown)."""
        self._count(host, self.per_source, now, what=f"address {host}")
        if extension:
            self._count(f"ext:{extension}", self.per_extension, now,
                        what=f"extension {extension}")

    def source_banned(self, host: str, now: float) -> bool:
        return self._bans.is_banned(host, now)

    def extension_locked(self, extension: str, now: float) -> bool:
        return self._bans.is_banned(f"ext:{extension}", now)

    def _count(self, key: str, limit: int, now: float, *, what: str) -> None:
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= MAX_TRACKED_SOURCES:
                self.prune(now)
                if len(self._failures) >= MAX_TRACKED_SOURCES:
                    _drop_oldest(self._failures, MAX_TRACKED_SOURCES // 10)
            times = self._failures[key] = deque(maxlen=limit)
        elif times.maxlen != limit:
            times = self._failures[key] = deque(times, maxlen=limit)
        times.append(now)
        if len(times) >= limit and now - times[0] <= self.window_s:
            self._bans.ban(key, now, self.ban_s, len(times))
            del self._failures[key]
            LOGGER.warning("banned %s for %.0f s: %d failed authentications in %.0f s",
                           what, self.ban_s, limit, now - times[0])

    def prune(self, now: float) -> None:
        self._failures = {k: t for k, t in self._failures.items()
                          if t and now - t[-1] < self.window_s}
        self._bans.prune(now)

    def bans(self, now: float) -> list[Ban]:
        return self._bans.bans(now)


def _drop_oldest(table: dict[str, _Window] | dict[str, Ban] | dict[str, deque[float]],
                 count: int) -> None:
    for key in list(table)[: max(1, count)]:
        del table[key]


def is_scanner(user_agent: str | None, scanners: tuple[str, ...] = DEFAULT_SCANNERS) -> bool:
    if not user_agent:
        return False
    lowered = user_agent.lower()
    return any(name.lower() in lowered for name in scanners)
