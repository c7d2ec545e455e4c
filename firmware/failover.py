"""Which line carries outgoing calls, and whether the box is on the internet: a sans-IO monitor.

`FailoverMonitor` is told facts — the default route was lost or is back, a link went down or up,
an address changed, a probe of a SIP line was answered or not, a modem line went up or down — and
`now` with each. It keeps each SIP line's reachability with hysteresis (down after `down_after`
failed probes in a row, up after `up_after` good ones), the internet's state (`up`/`down`, since
when, why), and which line carries outgoing calls: the first of `failover.order` that is up. It
says what changed through `next_event()` and when to probe next through `get_timer()` /
`handle_timer(now)` (aioquic's shape, STYLE.md). Nothing here reads the clock, the network or
the disk: `hal/netmon.py` reports the routes, the daemon sends the probes (SIP OPTIONS or the
registration) and performs the events.

Why the defaults are what they are (docs/config.md, `failover`): a silent provider is noticed
within `probe_interval_s × down_after + PROBE_TIMEOUT_S` = 5 × 2 + 1 = 11 s, against ~50 s for
OpenWrt mwan3's defaults (interval 10 s × down 5); a single lost UDP probe never switches (two
in a row are needed: at 1 % loss that is one pair in 10,000); going back takes three good probes
(10–15 s) so a flapping uplink does not bounce every new call between the trunk and the SIM; and
an OPTIONS every 5 s is about 100 bytes/s, which also keeps the NAT binding of the SIP socket
alive (UDP NAT timeouts are commonly 30 s or more). A lost default route needs no probe at all:
every SIP line is marked unreachable the moment the route goes, so the switch takes what netlink
takes (milliseconds).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

LOGGER = logging.getLogger(__name__)

DEFAULT_PROBE_INTERVAL_S = 5.0
DEFAULT_DOWN_AFTER = 2
DEFAULT_UP_AFTER = 3
# A probe not answered within this long counts as failed. One second lets a UDP OPTIONS be
# retransmitted once (RFC 3261 §17.1.2.2: Timer E starts at T1 = 500 ms) and keeps the promise
# "silent provider → reserve within probe_interval_s × down_after + 1 s".
PROBE_TIMEOUT_S = 1.0
# Bounds the configuration enforces (firmware/store/config.py).
PROBE_INTERVAL_MIN_S = 1.0
PROBE_INTERVAL_MAX_S = 300.0
DOWN_AFTER_MIN = 1
DOWN_AFTER_MAX = 20
UP_AFTER_MIN = 1
UP_AFTER_MAX = 100

INTERNET_UP = "up"
INTERNET_DOWN = "down"
REASON_ROUTE_LOST = "default route lost"


@dataclass(frozen=True, kw_only=True)
class FailoverSettings:
    """The `failover:` configuration section: the lines for outgoing calls in order of
    preference, and how SIP lines are probed."""

    order: tuple[str, ...] = ()
    probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S
    down_after: int = DEFAULT_DOWN_AFTER
    up_after: int = DEFAULT_UP_AFTER

    def with_default_order(self, line_names: Iterable[str]) -> FailoverSettings:
        """These settings, with the lines in their configured order when `order` is empty."""
        return self if self.order else replace(self, order=tuple(line_names))


# --- events --------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class InternetWentDown:
    reason: str
    at: float


@dataclass(frozen=True, kw_only=True)
class InternetCameBack:
    at: float
    down_for_s: float


@dataclass(frozen=True, kw_only=True)
class LineReachabilityChanged:
    """A SIP line became reachable or unreachable (by probes or by the default route)."""

    line: str
    reachable: bool
    reason: str
    at: float


@dataclass(frozen=True, kw_only=True)
class OutboundLineChanged:
    """Outgoing calls now go through `new` (None: no line is up)."""

    old: str | None
    new: str | None
    reason: str
    at: float


@dataclass(frozen=True, kw_only=True)
class ReregisterNeeded:
    """The box's address changed: the provider must learn the new one now, not at the next
    refresh (RFC 3261 §10.2.4: the binding names the old Contact)."""

    line: str


@dataclass(frozen=True, kw_only=True)
class ProbeDue:
    """Send one probe to `line` now; report it with probe_succeeded / probe_failed. No report
    within PROBE_TIMEOUT_S counts as a failure."""

    line: str
    at: float


FailoverEvent = (
    InternetWentDown | InternetCameBack | LineReachabilityChanged | OutboundLineChanged
    | ReregisterNeeded | ProbeDue
)


@dataclass(frozen=True, kw_only=True)
class InternetStatus:
    """What `linebox status --json` shows as `internet`."""

    state: str
    since: float
    reason: str


@dataclass(kw_only=True)
class _SipLine:
    name: str
    # Assumed reachable until the probes say otherwise, so the first call after a start does
    # not go out over the SIM when the internet is fine (a lost route still counts at once).
    reachable: bool = True
    good_in_a_row: int = 0
    failed_in_a_row: int = 0
    next_probe_at: float = 0.0
    probe_deadline: float | None = None


@dataclass(kw_only=True)
class _State:
    route_present: bool = True
    route_reason: str = ""
    links_down: set[str] = field(default_factory=set)


class FailoverMonitor:
    """The internet's state, each SIP line's reachability and the line for outgoing calls.

    `sip_lines` are probed; every other name in `settings.order` is a modem line whose state
    its driver reports (`line_went_up` / `line_went_down`); it counts as down until reported up.
    """

    def __init__(
        self, settings: FailoverSettings, *, sip_lines: Iterable[str], now: float
    ) -> None:
        self.settings = settings
        self._sip = {name: _SipLine(name=name, next_probe_at=now) for name in sip_lines}
        self._modem_up: dict[str, bool] = {
            name: False for name in settings.order if name not in self._sip
        }
        self._net = _State()
        self._events: deque[FailoverEvent] = deque()
        self._internet = InternetStatus(state=INTERNET_UP, since=now, reason="")
        self._outbound = self._first_up()

    # --- what it says ----------------------------------------------------------------------------

    def next_event(self) -> FailoverEvent | None:
        return self._events.popleft() if self._events else None

    @property
    def internet(self) -> InternetStatus:
        return self._internet

    @property
    def outbound_line(self) -> str | None:
        """The line outgoing calls use now: the first of `order` that is up."""
        return self._outbound

    def is_up(self, line: str) -> bool:
        """Whether `line` can carry a call now (a SIP line: reachable; a modem line: reported
        up). A name the monitor does not know is down."""
        if line in self._sip:
            return self._sip[line].reachable
        return self._modem_up.get(line, False)

    def adopt_network(self, previous: FailoverMonitor, now: float) -> None:
        """Start from what `previous` knew of the network (a settings change during an
        outage must not assume the default route is back)."""
        if not previous._net.route_present:
            self.default_route_lost(now)
        self._net = previous._net

    @property
    def sip_line_names(self) -> tuple[str, ...]:
        return tuple(self._sip)

    def next_probe_at(self, line: str) -> float:
        return self._sip[line].next_probe_at

    def get_timer(self) -> float | None:
        """When handle_timer must next be called: the earliest probe due or probe deadline."""
        times = [line.next_probe_at for line in self._sip.values() if line.probe_deadline is None]
        times += [line.probe_deadline for line in self._sip.values()
                  if line.probe_deadline is not None]
        return min(times, default=None)

    # --- facts: time -----------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        for line in self._sip.values():
            if line.probe_deadline is not None and now >= line.probe_deadline:
                self._probe_result(line, ok=False, now=now,
                                   why=f"no answer within {PROBE_TIMEOUT_S:g} s")
            if line.probe_deadline is None and now >= line.next_probe_at:
                line.probe_deadline = now + PROBE_TIMEOUT_S
                line.next_probe_at = now + self.settings.probe_interval_s
                self._events.append(ProbeDue(line=line.name, at=now))

    # --- facts: the network (hal/netmon.py) ------------------------------------------------------

    def default_route_lost(self, now: float) -> None:
        """No default route is left: nothing beyond the LAN answers, so every SIP line is
        unreachable at once — no probe is waited for."""
        if not self._net.route_present:
            return
        links = sorted(self._net.links_down)
        reason = REASON_ROUTE_LOST + (f" (link {', '.join(links)} down)" if links else "")
        self._net.route_present = False
        self._net.route_reason = reason
        for line in self._sip.values():
            line.good_in_a_row = 0
            if line.reachable:
                self._set_reachable(line, False, reason, now)
        self._update(reason, now)

    def default_route_present(self, now: float) -> None:
        """A default route exists (again). SIP lines stay unreachable until `up_after` good
        probes: a route is not proof the provider answers. Probes are sent at once."""
        if self._net.route_present:
            return
        self._net.route_present = True
        self._net.route_reason = ""
        self._probe_soon(now)
        self._update("default route back", now)

    def link_down(self, name: str, now: float) -> None:
        """A link lost its carrier or was set down. Its default route goes with it, which the
        kernel does not announce (DEPENDENCIES.md: pyroute2): netmon re-reads the routes and
        reports that separately; here the link only names the reason."""
        self._net.links_down.add(name)

    def link_up(self, name: str, now: float) -> None:
        self._net.links_down.discard(name)

    def address_changed(self, now: float) -> None:
        """An address of the box was added or removed: registrations name the old Contact, so
        each SIP line re-registers now and is probed now."""
        for line in self._sip.values():
            self._events.append(ReregisterNeeded(line=line.name))
        self._probe_soon(now)

    # --- facts: probes (the daemon's OPTIONS or the registration) --------------------------------

    def probe_succeeded(self, line_name: str, now: float) -> None:
        """The provider answered: a probe, or the registration (reported whenever it happens).
        An answer after its probe's deadline still counts as good: a provider answering in
        1.5 s carries calls, so it alternates failed and good and is never taken down."""
        self._probe_result(self._sip[line_name], ok=True, now=now, why="")

    def probe_failed(self, line_name: str, now: float, *, why: str = "probe failed") -> None:
        self._probe_result(self._sip[line_name], ok=False, now=now, why=why)

    # --- facts: modem lines (their drivers) ------------------------------------------------------

    def line_went_up(self, name: str, now: float) -> None:
        self._set_modem(name, True, f"line {name} up", now)

    def line_went_down(self, name: str, now: float, *, reason: str = "") -> None:
        self._set_modem(name, False, reason or f"line {name} down", now)

    # --- inside ----------------------------------------------------------------------------------

    def _set_modem(self, name: str, up: bool, reason: str, now: float) -> None:
        if name in self._sip:
            raise ValueError(f"{name} is a SIP line: its reachability comes from probes")
        if self._modem_up.get(name) == up:
            return
        self._modem_up[name] = up
        self._update(reason, now)

    def _probe_soon(self, now: float) -> None:
        for line in self._sip.values():
            line.next_probe_at = min(line.next_probe_at, now)

    def _probe_result(self, line: _SipLine, *, ok: bool, now: float, why: str) -> None:
        line.probe_deadline = None
        if ok:
            line.failed_in_a_row = 0
            line.good_in_a_row += 1
            if not line.reachable and line.good_in_a_row >= self.settings.up_after:
                self._set_reachable(
                    line, True, f"{line.good_in_a_row} good probes in a row", now)
        else:
            line.good_in_a_row = 0
            line.failed_in_a_row += 1
            if line.reachable and line.failed_in_a_row >= self.settings.down_after:
                self._set_reachable(
                    line, False, f"{line.failed_in_a_row} failed probes in a row ({why})", now)
        self._update(f"line {line.name}: {'answered' if ok else why}", now)

    def _set_reachable(self, line: _SipLine, reachable: bool, reason: str, now: float) -> None:
        line.reachable = reachable
        LOGGER.log(logging.INFO if reachable else logging.WARNING, "line %s %s: %s", line.name,
                   "reachable" if reachable else "unreachable", reason)
        self._events.append(
            LineReachabilityChanged(line=line.name, reachable=reachable, reason=reason, at=now))

    def _first_up(self) -> str | None:
        return next((name for name in self.settings.order if self.is_up(name)), None)

    def _update(self, reason: str, now: float) -> None:
        """Recompute the internet's state and the outbound line after a fact; emit what moved."""
        outbound = self._first_up()
        if outbound != self._outbound:
            LOGGER.warning("outgoing calls now through %s (was %s): %s",
                           outbound or "no line", self._outbound or "no line", reason)
            self._events.append(
                OutboundLineChanged(old=self._outbound, new=outbound, reason=reason, at=now))
            self._outbound = outbound
        down_reason = self._internet_down_reason()
        if down_reason is None and self._internet.state == INTERNET_DOWN:
            LOGGER.info("internet back after %.1f s", now - self._internet.since)
            self._events.append(InternetCameBack(at=now, down_for_s=now - self._internet.since))
            self._internet = InternetStatus(state=INTERNET_UP, since=now, reason="")
        elif down_reason is not None and self._internet.state == INTERNET_UP:
            LOGGER.warning("internet down: %s", down_reason)
            self._events.append(InternetWentDown(reason=down_reason, at=now))
            self._internet = InternetStatus(state=INTERNET_DOWN, since=now, reason=down_reason)
        elif down_reason is not None and down_reason != self._internet.reason:
            # Still down, for another reason now (the route is back, the provider still silent).
            self._internet = InternetStatus(
                state=INTERNET_DOWN, since=self._internet.since, reason=down_reason)

    def _internet_down_reason(self) -> str | None:
        """Why the internet counts as down, or None: no default route, or not one SIP line
        answering its probes (with a single provider this cannot tell the ISP's outage from the
        provider's; the reason says which lines were silent)."""
        if not self._net.route_present:
            return self._net.route_reason
        if self._sip and not any(line.reachable for line in self._sip.values()):
            return f"no answer from {', '.join(sorted(self._sip))}"
        return None
