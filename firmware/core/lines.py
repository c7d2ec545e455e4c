"""Lines the box takes calls from and places calls through (the SIP trunk today; GSM and FXO modems
next): which line a request came from, which line carries a call out, and each line's state for the
status.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import TYPE_CHECKING

from ..calls import Target
from ..sip.message import (
    Request,
)
from ..sip.transaction import (
    Address,
)
from ..sip.uri import SipUri
from ..store.config import Trunk

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

class ChannelPool:
    """Simultaneous-call limits per inbound number and per trunk (3..100 each)."""

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


class Lines:
    def __init__(self, core: Gateway) -> None:
        self.core = core

    def line_token(self, trunk_name: str) -> str:
        """The `line=` value of a registering trunk's Contact: known to the provider we
        registered with, and to nobody who has not seen that REGISTER."""
        mac = hmac.new(self.core.key, b"line\x00" + trunk_name.encode("utf-8"), hashlib.sha256)
        return mac.hexdigest()[:16]

    def trunk_by_address(self, source: Address) -> str | None:
        if source.reliable:
            return self.core.trunk_by_host.get(source.host)
        by_source = self.core.trunk_by_source
        return by_source.get(source_key(source)) or by_source.get(
            source_key(source, any_port=True)
        )

    def trunk_of(self, request: Request, source: Address) -> str | None:
        """The trunk a request comes from: its source (address, port, transport), or — for a
        trunk that registers — the `line` token of our Contact in its Request-URI."""
        name = self.trunk_by_address(source)
        if name is None and self.core.trunk_by_line and isinstance(request.uri, SipUri):
            token = request.uri.params.get("line")
            name = self.core.trunk_by_line.get(token) if token else None
        return name

    def outbound_trunk(self) -> Trunk | None:
        for trunk in self.core.config.trunks:
            if trunk.name in self.core.trunk_addresses:
                return trunk
        return None

    def external_target(self, trunk: Trunk, number: str) -> Target:
        address = self.core.trunk_addresses[trunk.name]
        port = f":{trunk.port}" if trunk.port != 5060 else ""
        uri = f"sip:{number}@{trunk.host}{port}"
        return Target(kind="external", label=number, request_uri=uri, destination=address,
                      to_uri=uri, trunk=trunk.name)
