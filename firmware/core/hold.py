"""Music on hold: when one party of an answered call puts the other on hold — a re-INVITE whose
offer says `a=sendonly` or `a=inactive` (RFC 3264 §8.4), or the old `c=IN IP4 0.0.0.0` (RFC
2543) — the box plays music to the held party from a port of its own, and when the holder
resumes (`sendrecv` again) the two hear each other again.

A call whose media the box already holds (`CallMedia`, anchored while the caller waited) needs
no signalling: the held party talks to a port of the box, which plays the music there instead of
forwarding the holder's audio. Between two SIP parties talking directly (their SDP relayed as
is) the box steps into the media path and stays there for the rest of the call (`HeldMedia`):
it answers the holder's offer itself from one port (sendonly → recvonly) and re-INVITEs the held
party with a `sendonly` offer from a second port (the phone shows it is held); the two ports
are joined by a `MediaBridge`. On resume the held party is re-INVITEd with `sendrecv` from the
same port, and the bridge forwards again. Moving both parties back to each other's addresses
would need two more re-INVITEs that both must succeed (a failed one leaves a party talking to
nobody); staying in the path costs the box two ports and the forwarding.

While a side hears music its port takes nothing from the other side (`MediaBridge.muted`); a
`MusicScript` on a `LocalParty` plays the office's music — uploaded in the web UI and kept like
a voicemail greeting, under the mailbox name `HOLD_MUSIC_MAILBOX` — or the built-in tune
(firmware/media/prompts/en/hold_music.wav, made by scripts/make_hold_music.sh), in a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from ..anchor import CallMedia
from ..calls import Call
from ..media import sdp
from ..media.bridge import BridgeSide, Datagram, MediaBridge
from ..media.session import MediaEvent, MediaSession, PlaybackFinished
from ..sip.message import Request, Response, make_response
from ..sip_legs import ALLOW, send_reinvite, sip_party
from ..voicemail import LocalParty, Script

if TYPE_CHECKING:
    from .gateway import Gateway

LOGGER = logging.getLogger(__name__)

HOLD_MUSIC_MAILBOX = "hold"  # the office's music in the greetings table (no extension's name)
HOLD_MUSIC_PROMPT = "hold_music"  # the built-in tune
GLARE_RETRY_S = 2.5  # RFC 3261 §14.1: after a 491, try again 2.1-4 s later (we are the UAC)
SIDES = ("a", "b")


def other_side(side: str) -> str:
    return "b" if side == "a" else "a"


def is_hold_offer(body: bytes) -> bool:
    """Whether an SDP offer puts the other party on hold: its audio stream is sendonly or
    inactive, or has the connection address 0.0.0.0 (RFC 3264 §8.4, RFC 2543 §B.5)."""
    try:
        _, choice = sdp.choose_audio(sdp.SessionDescription.parse(body))
    except sdp.SdpError:
        return False
    return choice.on_hold


def _with_direction(body: bytes, direction: str) -> bytes:
    return body.replace(b"a=sendrecv", f"a={direction}".encode())


class MusicScript(Script):
    """The music, again and again, until the holder resumes."""

    _outcome = "answered"

    def __init__(self, music: bytes) -> None:
        self.music = music

    def start(self, party: LocalParty, now: float) -> None:
        party.session.play(HOLD_MUSIC_PROMPT, self.music)

    def on_event(self, party: LocalParty, event: MediaEvent, now: float) -> None:
        if isinstance(event, PlaybackFinished) and not party.session.is_playing:
            party.session.play(HOLD_MUSIC_PROMPT, self.music)


class HeldMedia:
    """The media of a call the box stepped into for a hold: a port of ours facing each side,
    joined by a bridge. Re-INVITEs from either side are answered by the box for that side
    alone (the `MediaAnchor` of firmware/calls.py)."""

    def __init__(self, core: Gateway, ports: dict[str, int], bridge: MediaBridge,
                 bodies: dict[str, bytes]) -> None:
        self.core = core
        self.ports = ports
        self.bridge = bridge
        self.bodies = bodies  # our latest SDP toward each side
        # What the box's own re-INVITEs last told each side: held (sendonly) or not.
        self.told_held = {side: False for side in SIDES}
        self.reinviting: set[str] = set()
        self.closed = False

    @property
    def caller_answer(self) -> bytes:
        return self.bodies["a"]

    def leg_offer(self) -> bytes:
        return self.bodies["b"]

    def connect(self, answer: bytes, now: float) -> bool:
        return False  # the call is answered already

    def renegotiate(self, side: str, offer: bytes) -> bytes:
        body, choice = sdp.answer(offer, host=self.core.local_host, port=self.ports[side])
        self.bridge.update(self.ports[side], choice)
        self.bodies[side] = body
        return body

    def receiver(self, port: int) -> Callable[[bytes, float], None]:
        def receive(data: bytes, now: float) -> None:
            out: list[Datagram] = self.bridge.receive(port, data)
            for local, datagram, destination in out:
                self.core.send_rtp(local, datagram, destination)
        return receive

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for port in self.ports.values():
            self.core.close_media(port)


class Hold:
    def __init__(self, core: Gateway) -> None:
        self.core = core
        self._players: dict[str, dict[str, LocalParty]] = {}  # call id → held side → music

    # ------------------------------------------------------------------ a direct call
    def hold_offered(self, call: Call, side: str, request: Request, tx_id: str,
                     now: float) -> bool:
        """A re-INVITE from `side` of a call whose two SIP parties talk directly: if its offer
        holds the other party, the box steps into the media (see the module docstring),
        answers it and returns True; otherwise False (it is relayed as before)."""
        if (call.anchor is not None or call.local is not None or not request.body
                or not is_hold_offer(request.body)):
            return False
        held_side = other_side(side)
        holder, held = sip_party(call, side), sip_party(call, held_side)
        if holder is None or held is None or held.dialog is None:
            return False
        ports: dict[str, int] = {}
        for s in SIDES:
            port = self.core.open_media_port()
            if port is None:
                for opened in ports.values():
                    self.core.close_media(opened)
                return False  # no port for music: the hold is relayed, in silence
            ports[s] = port
        try:
            answer, choice = sdp.answer(request.body, host=self.core.local_host,
                                        port=ports[side])
        except sdp.SdpError:
            for opened in ports.values():
                self.core.close_media(opened)
            return False
        offer = sdp.offer(host=self.core.local_host, port=ports[held_side], first=choice.codec)
        sides = {side: BridgeSide(ports[side], choice),
                 held_side: BridgeSide(ports[held_side], sdp.awaiting_answer())}
        media = HeldMedia(self.core, ports, MediaBridge(sides["a"], sides["b"]),
                          {side: answer, held_side: offer})
        for port in ports.values():
            self.core.route_media(port, media.receiver(port))
        call.anchor = media
        LOGGER.info("call %s: %s holds; the box takes the media (ports %d, %d)", call.id,
                    side, ports["a"], ports["b"])
        self.core.send_response(tx_id, make_response(request, 200, headers=[
            ("Contact", holder.our_contact), ("Allow", ALLOW),
            ("Content-Type", "application/sdp")], body=answer), now)
        self._tell(call, media, held_side, True, now)
        self.refresh(call, now)
        return True

    # ------------------------------------------------------------------ any call
    def refresh(self, call: Call, now: float) -> None:
        """After any change of a side's session: music toward each side whose other side
        holds, and (the box in the path of a direct call) each side told of it."""
        found = self.bridge_of(call)
        if found is None:
            return
        bridge, ports = found
        media = call.anchor if isinstance(call.anchor, HeldMedia) else None
        players = self._players.setdefault(call.id, {})
        for side in SIDES:
            port, holder = ports[side], bridge.sides[ports[other_side(side)]]
            # A side whose answer to our own hold offer says inactive is not holding anyone.
            told = media is not None and (media.told_held[other_side(side)]
                                          or other_side(side) in media.reinviting)
            held = holder.choice.on_hold and not told
            choice, player = bridge.sides[port].choice, players.get(side)
            if held:
                bridge.muted.add(port)
            else:
                bridge.muted.discard(port)
            if player is not None and (not held or player.session.choice.codec != choice.codec):
                # Resumed, or the held party's answer chose the other law: the music queued
                # is encoded in the old one.
                player.detach()
                del players[side]
                player = None
                if not held:
                    LOGGER.info("call %s: %s resumed", call.id, other_side(side))
            if held and player is None and choice.remote_port != 0:
                players[side] = self._play(port, choice, now)
                LOGGER.info("call %s: music on hold toward %s", call.id, side)
            elif player is not None:
                player.session.update(choice)
            if media is not None and held != media.told_held[side] \
                    and side not in media.reinviting:
                self._tell(call, media, side, held, now)

    def _tell(self, call: Call, media: HeldMedia, side: str, held: bool, now: float) -> None:
        """Re-INVITE `side` with the box's offer: sendonly while it is held, else sendrecv."""
        party = sip_party(call, side)
        if party is None or party.dialog is None:
            return
        body = _with_direction(sdp.offer(host=self.core.local_host, port=media.ports[side]),
                               "sendonly" if held else "sendrecv")
        was = media.told_held[side]
        media.told_held[side] = held
        media.reinviting.add(side)
        media.bodies[side] = body
        send_reinvite(party, body, self.core, now,
                      partial(self._answered, call, media, side, was))

    def _answered(self, call: Call, media: HeldMedia, side: str, was: bool,
                  response: Response | None, now: float) -> None:
        media.reinviting.discard(side)
        if media.closed or call.anchor is not media:
            return
        if response is not None and response.status < 300:
            try:
                media.bridge.update(media.ports[side], sdp.accept_answer(response.body))
            except sdp.SdpError as exc:
                LOGGER.warning("call %s: %s's answer to our re-INVITE is unusable: %s",
                               call.id, side, exc)
        else:
            status = response.status if response is not None else 408
            LOGGER.warning("call %s: %s refused our re-INVITE (%d)", call.id, side, status)
            media.told_held[side] = was
            if status == 491:  # RFC 3261 §14.1: glare; try again a little later
                self.core.call_at(now + GLARE_RETRY_S, partial(self._retry, call))
                return
        self.refresh(call, now)

    def _retry(self, call: Call, now: float) -> None:
        if call.state == "answered":
            self.refresh(call, now)

    def bridge_of(self, call: Call) -> tuple[MediaBridge, dict[str, int]] | None:
        anchor = call.anchor
        if isinstance(anchor, HeldMedia):
            return anchor.bridge, anchor.ports
        if isinstance(anchor, CallMedia) and anchor.bridge is not None \
                and anchor.member_port is not None and len(anchor.bridge.sides) == 2:
            return anchor.bridge, {"a": anchor.caller_port, "b": anchor.member_port}
        return None

    def _play(self, port: int, choice: sdp.AudioChoice, now: float) -> LocalParty:
        music = self.core.greeting(HOLD_MUSIC_MAILBOX) or self.core.prompt(HOLD_MUSIC_PROMPT)
        party = LocalParty(services=self.core,
                           session=MediaSession(local_port=port, choice=choice, now=now),
                           script=MusicScript(music), local_host=self.core.local_host)
        party.start(now)
        return party

    def players_of(self, call: Call) -> dict[str, LocalParty] | None:
        """The music playing in `call`, by the side that hears it (a transfer that moves the
        held party to the other side moves its music too)."""
        return self._players.get(call.id)

    def call_ended(self, call: Call) -> None:
        for player in self._players.pop(call.id, {}).values():
            player.detach()
