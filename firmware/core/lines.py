"""Lines: what calls come in on and go out through — the SIP trunk today, a GSM or FXO modem
next (docs/design.md says how one plugs in).

A line has a name, a kind, channels and a state (up, degraded, down, with a reason); it knows
whether a request is its own and places calls to numbers. The rest of the core holds line
objects, never a "trunk:NAME" string: channel keys and the `source` written in call records come
from the line itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from ..legs import Leg
from ..sip.message import Request
from ..sip.transaction import Address
from ..sip.uri import SipUri
from ..sip_legs import SipLeg, SipServices, Target
from ..store.config import Config, Trunk
from ..trunk import TrunkAccount, TrunkRegistration
from .events import LineStateChanged
from .modem_lines import ModemLine

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

DEFAULT_SIP_PORT = 5060


class LineState(StrEnum):
    UP = "up"  # carries calls
    DEGRADED = "degraded"  # carries calls, but something is wrong (say so in `reason`)
    DOWN = "down"  # skipped when placing calls


@dataclass(frozen=True, slots=True, kw_only=True)
class LineStatus:
    """One line as `linebox status` shows it."""

    name: str
    kind: str
    state: LineState
    reason: str
    channels_in_use: int
    channels: int
    details: Mapping[str, object] = field(default_factory=dict)  # a modem line's signal, SIM

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "state": str(self.state),
                "reason": self.reason, "channels_in_use": self.channels_in_use,
                "channels": self.channels, **self.details}


class Line(Protocol):
    """What the core needs of a line, whatever carries it."""

    name: str
    kind: str  # "sip"; later "gsm", "fxo"
    channels: int

    @property
    def channel_key(self) -> str:
        """Its key in the `ChannelPool`: one channel per call on this line."""
        ...

    @property
    def source_label(self) -> str:
        """What call records say in `source` for a call that came in on this line."""
        ...

    def state(self, now: float) -> tuple[LineState, str]: ...

    def place(self, number: str, now: float) -> Leg:
        """A leg to `number` through this line, not yet started: the call starts it, saying
        who calls and with what media (`Leg.start` with a `LegSetup`)."""
        ...


class ChannelPool:
    """Simultaneous-call limits per inbound number and per line (3..100 each)."""

    def __init__(self) -> None:
        self.capacity: dict[str, int] = {}
        self.in_use: dict[str, int] = {}

    def configure(self, capacity: dict[str, int]) -> None:
        self.capacity = dict(capacity)
        for key in capacity:
            self.in_use.setdefault(key, 0)

    def acquire(self, keys: list[str]) -> bool:
        """Take one channel of each key, all or none."""
        if any(self.in_use.get(k, 0) >= self.capacity.get(k, 0) for k in keys):
            return False
        for key in keys:
            self.in_use[key] = self.in_use.get(key, 0) + 1
        return True

    def release(self, keys: list[str]) -> None:
        for key in keys:
            self.in_use[key] = max(0, self.in_use.get(key, 0) - 1)


def source_key(address: Address, *, any_port: bool = False) -> tuple[str, str, int]:
    return (address.transport, address.host, 0 if any_port else address.port)


class SipTrunkLine:
    """An account at a SIP provider: its signalling address (None while the host does not
    resolve), and its registration when it registers."""

    kind = "sip"

    def __init__(self, trunk: Trunk, address: Address | None,
                 registration: TrunkRegistration | None, *, services: SipServices,
                 reachable: Callable[[str], bool] = lambda name: True) -> None:
        self.services = services
        self.reachable = reachable  # what the failover probes say
        self.trunk = trunk
        self.name = trunk.name
        self.channels = trunk.channels
        self.address = address
        self.registration = registration

    @property
    def channel_key(self) -> str:
        return f"trunk:{self.name}"

    @property
    def source_label(self) -> str:
        return f"trunk:{self.name}"

    def state(self, now: float) -> tuple[LineState, str]:
        if self.address is None:
            return LineState.DOWN, f"cannot resolve {self.trunk.host}"
        if not self.reachable(self.name):
            return LineState.DOWN, "not answering (failover probes), or no default route"
        registration = self.registration
        if registration is None:
            return LineState.UP, "no registration (calls by address)"
        if registration.state == "registered":
            return LineState.UP, "registered"
        if registration.state == "failed":
            # Calls out may still pass (many providers take them without a registration),
            # but calls in will not come.
            return LineState.DEGRADED, registration.last_error or "registration failed"
        return LineState.DEGRADED, "registering"

    def place(self, number: str, now: float) -> SipLeg:
        assert self.address is not None, "placing a call through a line that is down"
        trunk = self.trunk
        port = f":{trunk.port}" if trunk.port != DEFAULT_SIP_PORT else ""
        uri = f"sip:{number}@{trunk.host}{port}"
        return SipLeg(services=self.services, target=Target(
            kind="external", label=number, request_uri=uri, destination=self.address,
            to_uri=uri, trunk=trunk.name))


AnyLine = SipTrunkLine | ModemLine


class Lines:
    """The lines of the configuration, and which of them a request came from."""

    def __init__(self, core: Gateway) -> None:
        self.core = core
        self._lines: dict[str, AnyLine] = {}
        self._by_source: dict[tuple[str, str, int], SipTrunkLine] = {}
        self._by_host: dict[str, SipTrunkLine] = {}
        self._by_line_token: dict[str, SipTrunkLine] = {}
        self._reported: dict[str, tuple[LineState, str]] = {}  # last state told to the daemon

    def configure(self, config: Config, addresses: dict[str, Address]) -> None:
        """Lines for `config` (trunks resolved to `addresses`); a registration whose account
        is unchanged is kept, so a saved configuration does not re-register."""
        core = self.core
        previous = self._lines
        self._lines = {}
        for trunk in config.trunks:
            if trunk.is_modem:
                kept = previous.get(trunk.name)
                # A saved configuration keeps the line's state and its call (the daemon
                # restarts a driver whose port or modem changed; its call ends then).
                if isinstance(kept, ModemLine) and kept.kind == trunk.type:
                    kept.reconfigure(trunk)
                    self._lines[trunk.name] = kept
                else:
                    self._lines[trunk.name] = ModemLine(trunk, core)
                continue
            address = addresses.get(trunk.name)
            registration = None
            if trunk.register and address is not None:
                account = TrunkAccount(
                    name=trunk.name, host=trunk.host, username=trunk.username,
                    password=trunk.password, expires_s=trunk.expires_s,
                    from_domain=trunk.from_domain, digest_algorithms=trunk.digest_algorithms,
                    line_token=self.line_token(trunk.name),
                )
                old = previous.get(trunk.name)
                if isinstance(old, SipTrunkLine) and old.registration is not None and (
                    old.registration.account == account
                ):
                    registration = old.registration
                else:
                    registration = TrunkRegistration(
                        account, destination=address, local_host=core.local_host,
                        local_port=core.local_port, user_agent=core.user_agent,
                    )
            self._lines[trunk.name] = SipTrunkLine(
                trunk, address, registration, services=core,
                reachable=lambda name: core.failover.is_reachable(name))
        # Over UDP a provider is known by the address *and* port it sends from, as providers
        # document their signalling addresses (a port of its own on the same host is someone
        # else), or by address alone where the trunk says so (`inbound_match: address`). Over
        # TCP by address alone: the provider connects from any port, and a TCP peer's address
        # cannot be spoofed.
        up = [line for line in self._lines.values()
              if isinstance(line, SipTrunkLine) and line.address is not None]
        self._by_source = {
            source_key(line.address, any_port=line.trunk.inbound_match == "address"): line
            for line in up if line.address is not None
        }
        self._by_host = {line.address.host: line for line in up if line.address is not None}
        self._by_line_token = {
            self.line_token(line.name): line for line in up if line.registration is not None
        }

    def __iter__(self) -> Iterator[AnyLine]:
        return iter(self._lines.values())

    def named(self, name: str | None) -> AnyLine | None:
        return self._lines.get(name or "")

    def sip_trunk(self, name: str | None) -> SipTrunkLine | None:
        line = self._lines.get(name or "")
        return line if isinstance(line, SipTrunkLine) else None

    def modem(self, name: str | None) -> ModemLine | None:
        line = self._lines.get(name or "")
        return line if isinstance(line, ModemLine) else None

    def registrations(self) -> Iterator[TrunkRegistration]:
        for line in self._lines.values():
            if isinstance(line, SipTrunkLine) and line.registration is not None:
                yield line.registration

    def line_token(self, name: str) -> str:
        """The `line=` value of a registering trunk's Contact: known to the provider we
        registered with, and to nobody who has not seen that REGISTER."""
        mac = hmac.new(self.core.key, b"line\x00" + name.encode("utf-8"), hashlib.sha256)
        return mac.hexdigest()[:16]

    def by_address(self, source: Address) -> SipTrunkLine | None:
        if source.reliable:
            return self._by_host.get(source.host)
        return self._by_source.get(source_key(source)) or self._by_source.get(
            source_key(source, any_port=True)
        )

    def of_request(self, request: Request, source: Address) -> SipTrunkLine | None:
        """The line a request comes from: its source (address, port, transport), or — for a
        trunk that registers — the `line` token of our Contact in its Request-URI."""
        line = self.by_address(source)
        if line is None and self._by_line_token and isinstance(request.uri, SipUri):
            token = request.uri.params.get("line")
            line = self._by_line_token.get(token) if token else None
        return line

    def outbound(self, now: float) -> AnyLine | None:
        """The line calls to outside numbers take: the first in `failover.order` (or, without
        one, in the configuration) that is not down — a line that is down is skipped at once,
        never tried."""
        order = self.core.config.failover.order or tuple(self._lines)
        for name in order:
            line = self._lines.get(name)
            if line is not None and line.state(now)[0] is not LineState.DOWN:
                return line
        return None

    def changes(self, now: float) -> list[LineStateChanged]:
        """Lines whose state or reason changed since the last look (the first look reports
        every line): the core hands them to the daemon as events."""
        changed = []
        for line in self._lines.values():
            state, reason = line.state(now)
            if self._reported.get(line.name) != (state, reason):
                self._reported[line.name] = (state, reason)
                changed.append(LineStateChanged(name=line.name, kind=line.kind, state=str(state),
                                                reason=reason, at=now))
        for name in set(self._reported) - set(self._lines):
            del self._reported[name]
        return changed

    def statuses(self, now: float) -> list[LineStatus]:
        in_use = self.core.channels.in_use
        return [
            LineStatus(name=line.name, kind=line.kind, state=state, reason=reason,
                       channels_in_use=in_use.get(line.channel_key, 0), channels=line.channels,
                       details=line.as_status(now) if isinstance(line, ModemLine) else {})
            for line in self._lines.values()
            for state, reason in (line.state(now),)
        ]
