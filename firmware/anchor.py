"""A call whose media the box anchors: early media while the caller waits, then a bridge.

When a caller waits in a queue the box answers their SDP itself in a 183 (early media, RFC
3960 §3.1) and plays them ringback and announcements (`QueueScript`). From then on the caller's
media is the box's: the final 2xx must carry the same answer (RFC 3261 §13.2.1), so every leg
the call rings gets the box's own offer from a second port, and when a member answers, the two
ports are joined by a `MediaBridge`. A re-INVITE from either party is answered by the box for
its own side (hold, a moved address) instead of being relayed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from .media import sdp
from .media.bridge import BridgeSide, Datagram, MediaBridge
from .voicemail import LocalParty

LOGGER = logging.getLogger(__name__)


class AnchorServices(Protocol):
    local_host: str

    def route_media(self, port: int, receiver: Callable[[bytes, float], None]) -> None: ...

    def close_media(self, port: int) -> None: ...

    def send_rtp(self, port: int, data: bytes, destination: tuple[str, int]) -> None: ...


class CallMedia:
    """The anchored media of one call: `party` on the caller's port until a member answers."""

    def __init__(self, services: AnchorServices, party: LocalParty, caller_answer: bytes, *,
                 member_port: int) -> None:
        self.services = services
        self.party = party
        self.caller_answer = caller_answer  # our SDP in the 183, and again in the 2xx
        self.caller_port = party.port
        # Every leg the call rings gets an offer from this port; the one that answers uses it.
        self.member_port: int | None = member_port
        self.bridge: MediaBridge | None = None
        self.closed = False

    @property
    def bridged(self) -> bool:
        return self.bridge is not None

    def leg_offer(self) -> bytes:
        """The box's offer for a leg (every leg of the call shares the member-facing port)."""
        if self.member_port is None:
            raise sdp.SdpError("the call's media went to voicemail")
        return sdp.offer(host=self.services.local_host, port=self.member_port,
                         first=self.party.session.choice.codec)

    def connect(self, answer: bytes, now: float) -> bool:
        """A leg answered with `answer` (to our offer): stop the caller's prompts and join the
        two ports. False if the answer is unusable (the leg is then hung up)."""
        if self.closed or self.member_port is None or self.bridge is not None:
            return False
        try:
            member = sdp.accept_answer(answer)
        except sdp.SdpError as exc:
            LOGGER.warning("port %d: the answerer's SDP is unusable: %s", self.member_port, exc)
            return False
        caller = self.party.session.choice
        self.party.detach()
        bridge = MediaBridge(BridgeSide(self.caller_port, caller),
                             BridgeSide(self.member_port, member))
        self.bridge = bridge
        for port in bridge.ports:
            self.services.route_media(port, self._receiver(port))
        return True

    def _receiver(self, port: int) -> Callable[[bytes, float], None]:
        def receive(data: bytes, now: float) -> None:
            bridge = self.bridge
            if bridge is None:
                return
            out: list[Datagram] = bridge.receive(port, data, now)
            for local, datagram, destination in out:
                self.services.send_rtp(local, datagram, destination)
        return receive

    def renegotiate(self, side: str, offer: bytes) -> bytes:
        """Our answer to a re-INVITE from `side` ("a": the caller, "b": the answerer)."""
        port = self.caller_port if side == "a" else self.member_port
        if port is None:
            raise sdp.SdpError("no media on that side")
        body, choice = sdp.answer(offer, host=self.services.local_host, port=port)
        if self.bridge is not None:
            self.bridge.update(port, choice)
        elif side == "a":
            self.party.session.update(choice)
        if side == "a":
            self.caller_answer = body
        return body

    def release_member_port(self) -> None:
        """The call goes on without an answerer's media (voicemail takes it)."""
        if self.member_port is not None and self.bridge is None:
            self.services.close_media(self.member_port)
            self.member_port = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bridge is None:
            self.party.close()
        else:
            self.services.close_media(self.caller_port)
        if self.member_port is not None:
            self.services.close_media(self.member_port)

