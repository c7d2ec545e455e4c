"""Flood protection: a per-source request counter with temporary bans (Kamailio pike's model).

Pure: the caller passes `now`. Trusted sources (trunk addresses, addresses with a live
authenticated registration) are never counted; the caller decides who is trusted. Scanner
User-Agents are recognised here so the transport can drop them without a reply, which is what
makes a box uninteresting to sipvicious and friends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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


class RateLimiter:
    def __init__(
        self,
        *,
        requests: int = DEFAULT_REQUESTS,
        window_s: float = DEFAULT_WINDOW_S,
        ban_s: float = DEFAULT_BAN_S,
    ) -> None:
        self.requests = requests
        self.window_s = window_s
        self.ban_s = ban_s
        self._windows: dict[str, _Window] = {}
        self._bans: dict[str, Ban] = {}

    def is_banned(self, source: str, now: float) -> bool:
        ban = self._bans.get(source)
        if ban is None:
            return False
        if now >= ban.until:
            del self._bans[source]
            LOGGER.info("ban lifted for %s", source)
            return False
        return True

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
            if len(self._bans) >= MAX_TRACKED_SOURCES:
                self._bans = {s: b for s, b in self._bans.items() if now < b.until}
                low_water = MAX_TRACKED_SOURCES - MAX_TRACKED_SOURCES // 10
                if len(self._bans) > low_water:
                    _drop_oldest(self._bans, len(self._bans) - low_water)
            self._bans[source] = Ban(
                source=source, since=now, until=now + self.ban_s, requests=window.count
            )
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
        self._bans = {s: b for s, b in self._bans.items() if now < b.until}

    def bans(self, now: float) -> list[Ban]:
        return [b for b in self._bans.values() if now < b.until]


def _drop_oldest(table: dict[str, _Window] | dict[str, Ban], count: int) -> None:
    for key in list(table)[: max(1, count)]:
        del table[key]


def is_scanner(user_agent: str | None, scanners: tuple[str, ...] = DEFAULT_SCANNERS) -> bool:
    if not user_agent:
        return False
    lowered = user_agent.lower()
    return any(name.lower() in lowered for name in scanners)
