"""The media of a transfer: how the party that takes a side of a call gets its audio through
the box, when the box holds the call's media already or steps in now. The transferee's
session stays where it is whenever it can: a modem line's port (`LineMedia`), or the port of
the call's bridge that faced the party leaving (`HeldMedia` after a hold, `CallMedia` after the
queue's early media); a direct call gets a bridge of the box (two ports, both parties
re-INVITEd, RFC 3264 §8). Relaying SDP between the two instead would need both re-INVITEs to
succeed in the right order, the answer of one the offer of the other; in the box each party's
session is its own, and a held party's music stops the moment the new party's answer joins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..calls import Call, MediaAnchor
from ..media import sdp
from ..media.bridge import BridgeSide, MediaBridge
from ..sip_legs import SipCaller, SipLeg
from .hold import HeldMedia
from .modem_lines import LineMedia
from .referral import unwrapped

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class MediaPlan:
    """How a call's parties get their media through the box after one side changed hands:
    the offers to send (side, SDP) and what each answer joins."""

    moves: list[tuple[str, bytes]]
    accept: dict[str, Callable[[bytes], None]]

def media_plan(core: Gateway, call: Call, side: str) -> MediaPlan | None:
    """The box's media for the party about to take `side` of `call` (the transferee keeps
    the other side): the modem line's port when the transferee is a line (its `LineMedia`),
    the port of the call's bridge that faced the referrer when the box already holds the
    media (a hold, the queue's early media: `HeldMedia`, `CallMedia`), else a bridge the box
    opens now, both parties re-INVITEd to it (RFC 3264 §8). Chosen over relaying SDP between
    the two: the transferee's session usually stays where it is (no re-INVITE it could
    refuse), and its music on hold stops the moment the target's answer joins the bridge.
    None when there is no way (no free port)."""
    held = held_plan(core, call, side)
    if held is not None:
        return held
    other = "b" if side == "a" else "a"
    transferee = unwrapped(call.connected.get(other))
    if (call.anchor is not None or not isinstance(transferee, SipCaller | SipLeg)
            or transferee.dialog is None):
        return None
    ports: dict[str, int] = {}
    for s in (other, side):
        opened = core.open_media_port()
        if opened is None:
            for port in ports.values():
                core.close_media(port)
            return None
        ports[s] = opened
    bridge = MediaBridge(BridgeSide(ports["a"], sdp.awaiting_answer()),
                         BridgeSide(ports["b"], sdp.awaiting_answer()))
    offers = {s: sdp.offer(host=core.local_host, port=ports[s]) for s in ports}
    media = HeldMedia(core, ports, bridge, dict(offers))
    for port in ports.values():
        core.route_media(port, media.receiver(port))
    call.anchor = media
    return MediaPlan(moves=[(other, offers[other]), (side, offers[side])],
                     accept={s: _joiner(bridge, ports[s], core) for s in ports})

def held_plan(core: Gateway, call: Call, side: str) -> MediaPlan | None:
    """The box's offer to whoever takes `side` of a call whose media the box holds already
    (a modem line's port, or the port of its bridge that faced `side`); None otherwise."""
    other = "b" if side == "a" else "a"
    transferee = unwrapped(call.connected.get(other))
    line_media = getattr(transferee, "media", None)
    if isinstance(line_media, LineMedia):
        if line_media.port is None or side != "b":
            return None
        line_port = line_media.port

        def join_line(answer: bytes) -> None:
            line_media.accept_answer(answer)
            core._rtp_owners.pop(line_port, None)
        return MediaPlan(moves=[(side, line_media.offer())], accept={side: join_line})
    found = core.hold.bridge_of(call)
    if found is not None and (side == "b" or isinstance(call.anchor, HeldMedia)):
        held_bridge, held_ports = found
        codec = held_bridge.sides[held_ports[other]].choice.codec
        return MediaPlan(moves=[(side, sdp.offer(host=core.local_host, port=held_ports[side],
                                                 first=codec))],
                         accept={side: _joiner(held_bridge, held_ports[side], core)})
    return None

def plannable(core: Gateway, call: Call, side: str) -> bool:
    """Whether `media_plan` can join a new party on `side` (without opening anything)."""
    transferee = unwrapped(call.connected.get("b" if side == "a" else "a"))
    line_media = getattr(transferee, "media", None)
    if isinstance(line_media, LineMedia):
        return line_media.port is not None
    if core.hold.bridge_of(call) is not None:
        return True
    return (call.anchor is None and isinstance(transferee, SipCaller | SipLeg)
            and transferee.dialog is not None)

def _joiner(bridge: MediaBridge, port: int, core: Gateway) -> Callable[[bytes], None]:
    def join(answer: bytes) -> None:
        bridge.update(port, sdp.accept_answer(answer))
        # Another party sends to this port now: its first packet takes the port at once
        # (the box latches a port to the host it hears first, gateway.receive_rtp).
        core._rtp_owners.pop(port, None)
    return join

def swap_sides(call: Call) -> None:
    """The transferee on side "b" becomes the caller ("a") of the transferred call: the box's
    ports of a `HeldMedia` (and its music) follow it."""
    media = call.anchor
    assert isinstance(media, HeldMedia)
    media.ports["a"], media.ports["b"] = media.ports["b"], media.ports["a"]
    media.bodies["a"], media.bodies["b"] = media.bodies["b"], media.bodies["a"]
    media.told_held["a"], media.told_held["b"] = media.told_held["b"], media.told_held["a"]
    media.reinviting = {"b" if s == "a" else "a" for s in media.reinviting}
    players = media.core.hold.players_of(call)
    if players is not None:
        swapped = {("b" if s == "a" else "a"): player for s, player in players.items()}
        players.clear()
        players.update(swapped)

@dataclass(eq=False, slots=True, kw_only=True)
class TransferAnchor:
    """The call's `MediaAnchor` while the target rings, when the box holds the media: the
    legs are offered the box's port that faced the referrer (or a modem line's port), and the
    answer joins it to the bridge; afterwards the call's own anchor (`inner`) is back."""

    inner: MediaAnchor | None
    offer: bytes
    accept: Callable[[bytes], None]

    @property
    def caller_answer(self) -> bytes:
        return b""  # nothing to send the transferee: it is answered, and stays where it is

    def leg_offer(self) -> bytes:
        return self.offer

    def connect(self, answer: bytes, now: float) -> bool:
        try:
            self.accept(answer)
        except sdp.SdpError as exc:
            LOGGER.warning("the transfer target's SDP is unusable: %s", exc)
            return False
        if isinstance(self.inner, HeldMedia):
            self.inner.bodies["b"] = self.offer
            self.inner.told_held["b"] = False
        return True

    def renegotiate(self, side: str, offer: bytes) -> bytes:
        raise sdp.SdpError("the call is being transferred")

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()

def answer_replacement(core: Gateway, call: Call, side: str, offer: bytes
                        ) -> tuple[bytes, tuple[bytes, Callable[[bytes], None]] | None]:
    """The box's answer to a replacing party's offer on `side`, from the port that faced the
    replaced party (or the line's), and the re-INVITE the other party needs (its offer and
    what its answer joins) when the box steps into a direct call's media only now."""
    other = "b" if side == "a" else "a"
    line_media = getattr(unwrapped(call.connected.get(other)), "media", None)
    if isinstance(line_media, LineMedia) and line_media.port is not None:
        core._rtp_owners.pop(line_media.port, None)
        return line_media.answer_offer(offer), None
    found = core.hold.bridge_of(call)
    if found is None:
        plan = media_plan(core, call, side)
        if plan is None:
            raise sdp.SdpError("no media port free")
        found = core.hold.bridge_of(call)
        assert found is not None
        reinvite: tuple[bytes, Callable[[bytes], None]] | None = (
            plan.moves[0][1], plan.accept[other])
    else:
        reinvite = None
    bridge, ports = found
    body, choice = sdp.answer(offer, host=core.local_host, port=ports[side])
    bridge.update(ports[side], choice)
    core._rtp_owners.pop(ports[side], None)
    if isinstance(call.anchor, HeldMedia):
        call.anchor.bodies[side] = body
        call.anchor.told_held[side] = False
    return body, reinvite
