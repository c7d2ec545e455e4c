"""Failover in the core: the `FailoverMonitor` (firmware/failover.py) fed with what the core
sees — OPTIONS probes to the SIP trunks, the modem lines' states, the network facts the daemon
hands over (hal/netmon.py) — and its verdicts applied: a SIP trunk that does not answer, or any
SIP trunk once the default route is gone, is down for calls out (`Lines.outbound` skips it at
once); the provider registration is renewed at once after an address change; every switch is
logged and told to the daemon as an event (with since when, for `linebox status`).

Probing costs an OPTIONS per trunk every `probe_interval_s` and is only worth it when there is a
line to switch to: SIP trunks are probed when the configuration has a modem line or a
`failover.order` of two or more lines.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..failover import (
    FailoverMonitor,
    InternetCameBack,
    InternetStatus,
    InternetWentDown,
    LineReachabilityChanged,
    OutboundLineChanged,
    ProbeDue,
    ReregisterNeeded,
)
from ..sip.message import Headers, Request, Response
from ..sip.transaction import new_branch, new_tag
from ..sip.uri import SipUri
from ..store.config import Config
from .events import FailoverSwitched
from .lines import SipTrunkLine

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)


class Failover:
    def __init__(self, core: Gateway) -> None:
        self.core = core
        self.monitor: FailoverMonitor | None = None
        self.probing = False
        self._probe_seq = 0
        self._latest_probe: dict[str, int] = {}  # line → the probe whose answer counts

    def configure(self, config: Config, now: float) -> None:
        settings = config.failover.with_default_order(t.name for t in config.trunks)
        sip_lines = [t.name for t in config.trunks if not t.is_modem]
        old = self.monitor
        self.probing = any(t.is_modem for t in config.trunks) or len(config.failover.order) > 1
        if old is not None and old.settings == settings and set(old.sip_line_names) == set(
            sip_lines
        ):
            return  # a saved configuration keeps what the probes found
        self.monitor = FailoverMonitor(settings, sip_lines=sip_lines, now=now)
        if old is not None:
            self.monitor.adopt_network(old, now)
        for line in self.core.lines:
            if not isinstance(line, SipTrunkLine):
                state, reason = line.state(now)
                self.modem_line_changed(line.name, state.value != "down", reason, now)

    @property
    def internet(self) -> InternetStatus | None:
        return self.monitor.internet if self.monitor is not None else None

    def is_reachable(self, name: str) -> bool:
        """Whether SIP trunk `name` may carry calls out. Without probing (no line to switch
        to) the only trunk is always tried: a lost route would otherwise mark it down with no
        probe ever to bring it back."""
        monitor = self.monitor
        return monitor is None or not self.probing or monitor.is_up(name)

    def get_timer(self) -> float | None:
        if self.monitor is None or not self.probing:
            return None
        return self.monitor.get_timer()

    def handle_timer(self, now: float) -> None:
        if self.monitor is not None and self.probing:
            self.monitor.handle_timer(now)
            self._perform(now)

    # ------------------------------------------------------------------ facts
    def modem_line_changed(self, name: str, up: bool, reason: str, now: float) -> None:
        if self.monitor is None:
            return
        if up:
            self.monitor.line_went_up(name, now)
        else:
            self.monitor.line_went_down(name, now, reason=reason)
        self._perform(now)

    def network_fact(self, apply: object, now: float) -> None:
        """`apply(monitor)`: one of hal/netmon.py's facts delivered (netmon.deliver)."""
        if self.monitor is None or not callable(apply):
            return
        apply(self.monitor)
        self._perform(now)

    # ------------------------------------------------------------------ verdicts
    def _perform(self, now: float) -> None:
        monitor = self.monitor
        if monitor is None:
            return
        while (event := monitor.next_event()) is not None:
            if isinstance(event, ProbeDue):
                self._probe(event.line, now)
            elif isinstance(event, ReregisterNeeded):
                line = self.core.lines.sip_trunk(event.line)
                if line is not None and line.registration is not None:
                    registration = line.registration
                    self.core.edge.send_registration(registration,
                                                     registration.build_register(now), now)
            elif isinstance(event, LineReachabilityChanged):
                LOGGER.log(logging.INFO if event.reachable else logging.WARNING,
                           "line %s is %s: %s", event.line,
                           "reachable" if event.reachable else "unreachable", event.reason)
            elif isinstance(event, OutboundLineChanged):
                LOGGER.warning("calls out now go through %s (was %s): %s",
                               event.new or "no line", event.old or "no line", event.reason)
                self.core.emit(FailoverSwitched(old=event.old, new=event.new,
                                                reason=event.reason, at=event.at))
            elif isinstance(event, InternetWentDown):
                LOGGER.warning("internet down: %s", event.reason)
            elif isinstance(event, InternetCameBack):
                LOGGER.info("internet back after %.0f s", event.down_for_s)

    def _probe(self, name: str, now: float) -> None:
        """An OPTIONS to the trunk (RFC 3261 §11): any answer at all says it is alive."""
        line = self.core.lines.sip_trunk(name)
        monitor = self.monitor
        if line is None or monitor is None:
            return
        if line.address is None:
            monitor.probe_failed(name, now, why="its host does not resolve")
            return
        core = self.core
        self._probe_seq += 1
        seq = self._latest_probe[name] = self._probe_seq
        host = line.trunk.host
        uri = SipUri(user=None, host=host, port=line.trunk.port if line.trunk.port != 5060
                     else None)
        via_transport = line.address.transport.upper()
        request = Request("OPTIONS", uri, Headers([
            ("Via", f"SIP/2.0/{via_transport} {core.local_host}:{core.local_port};"
                    f"branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:linebox@{core.local_host}>;tag={new_tag()}"),
            ("To", f"<sip:{host}>"),
            ("Call-ID", f"probe-{self._probe_seq}-{new_tag()}@{core.local_host}"),
            ("CSeq", "1 OPTIONS"),
            ("User-Agent", core.user_agent),
            ("Accept", "application/sdp"),
        ]))

        def answered(tx: str, response: Response, t: float) -> None:
            # Only the latest probe's answer counts: a provider back from silence answers the
            # retransmissions of every probe still pending at once, and those must not add up
            # to `up_after` good probes in one moment.
            # And it counts once: retransmissions of one OPTIONS may each be answered.
            if (response.status >= 200 and self.monitor is monitor
                    and self._latest_probe.get(name) == seq):
                del self._latest_probe[name]
                monitor.probe_succeeded(name, t)
                self._perform(t)

        def unanswered(tx: str, t: float) -> None:
            pass  # the monitor's own deadline (PROBE_TIMEOUT_S) has counted it already

        core.send_request(request, line.address, now, on_response=answered,
                          on_timeout=unanswered)
