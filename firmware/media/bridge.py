"""Two media ends of the box joined: the media of an anchored call flows through it.

Once the box has given a caller its own SDP (early media while they wait in a queue), the call's
media stays with the box (RFC 3261 §13.2.1: the 2xx carries the same answer as the 183): each
party talks to a port of ours, and `MediaBridge` forwards what arrives on one port out of the
other, toward the address the other party's SDP gave. When the two sides agreed on different
G.711 laws the payload is transcoded; telephone-events (RFC 4733) keep their payload and take the
other side's payload type, or are dropped when that side did not agree to any.

An end is an RTP port of ours (`BridgeSide`) or a stream of 8 kHz 16-bit PCM frames — a modem's
audio (`firmware.media.pcm.PcmEnd`): then the RTP party's packets are decoded into the end's
jitter buffer and the line's frames (`frame_from_line`) become packets toward the party; the line
takes its frames with `frame_for_line`. Sans-IO: `receive` returns what to send, as (local port,
datagram, destination).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from . import g711
from .pcm import PcmEnd
from .rtp import RTCP_PAYLOAD_TYPES, RTP_HEADER, MalformedRtp, RtpPacket, parse_rtp
from .sdp import AudioChoice

LOGGER = logging.getLogger(__name__)

Datagram = tuple[int, bytes, tuple[str, int]]
# RTP version 2 with no padding, no header extension and no CSRCs (RFC 3550 §5.1).
PLAIN_RTP_OCTET = 0x80
_TIMESTAMP_SSRC = struct.Struct("!II")  # at offset 4 of the RTP header (RFC 3550 §5.1)


@dataclass(slots=True)
class BridgeSide:
    port: int  # ours, facing this party
    choice: AudioChoice  # where this party receives, in which format
    packets_in: int = 0


class BridgeTap(Protocol):
    """Hears every audio packet a party sends through the bridge (the call's recorder)."""

    def heard(self, side: str, packet: RtpPacket, codec: str, now: float) -> None: ...

    # Optional: `heard_plain(side, timestamp, ssrc, payload, codec, now)`, the same for a packet
    # the bridge forwards unparsed (the header's two fields it needs). A tap without it has
    # every packet parsed for it.


def _transcode(payload: bytes, source: str, target: str) -> bytes:
    return payload.translate(g711.ALAW_TO_ULAW if source == "PCMA" else g711.ULAW_TO_ALAW)


class MediaBridge:
    def __init__(self, a: BridgeSide, b: BridgeSide | PcmEnd) -> None:
        self.a = a
        self.b = b
        self.sides = {a.port: a} if isinstance(b, PcmEnd) else {a.port: a, b.port: b}
        self.packets_dropped = 0
        # Ports toward whose party nothing is forwarded: the box plays there itself (music on
        # hold, firmware/core/hold.py) instead of the other side's audio.
        self.muted: set[int] = set()
        # The call's recorder (firmware/media/recorder.py): side "a" is `a`'s audio, "b" `b`'s.
        self._tap: BridgeTap | None = None
        self._tap_plain: Callable[[str, int, int, bytes, str, float], None] | None = None

    @property
    def tap(self) -> BridgeTap | None:
        return self._tap

    @tap.setter
    def tap(self, tap: BridgeTap | None) -> None:
        self._tap = tap
        self._tap_plain = getattr(tap, "heard_plain", None)

    @property
    def ports(self) -> tuple[int, ...]:
        """Our RTP ports in the bridge (one when the other end is a line's PCM)."""
        return tuple(self.sides)

    def frame_from_line(self, frame: bytes) -> list[Datagram]:
        """A 20 ms frame of the PCM end's line, as a packet toward the RTP party."""
        line = self.b
        party = self.a.choice
        if not isinstance(line, PcmEnd) or party.on_hold:
            return []
        packet = line.packet_from_line(frame, party)
        if packet is None:
            return []
        return [(self.a.port, packet.to_bytes(), (party.remote_host, party.remote_port))]

    def key_from_line(self, key: str) -> list[Datagram]:
        """A key pressed on the PCM end's line, as RFC 4733 events toward the RTP party."""
        line = self.b
        party = self.a.choice
        if not isinstance(line, PcmEnd) or party.on_hold:
            return []
        return [(self.a.port, packet.to_bytes(), (party.remote_host, party.remote_port))
                for packet in line.key_packets(key, party)]

    def frame_for_line(self) -> bytes | None:
        """The next 20 ms for the PCM end's line (None: the bridge has no such end)."""
        line = self.b
        return line.frame_for_line() if isinstance(line, PcmEnd) else None

    def update(self, port: int, choice: AudioChoice) -> None:
        """A re-INVITE moved one party, or put it on hold."""
        self.sides[port].choice = choice

    def receive(self, port: int, data: bytes, now: float | None = None) -> list[Datagram]:
        source = self.sides.get(port)
        if source is None:
            return []
        agreed = source.choice.payload_type
        plain_tap = self._tap_plain
        if ((self._tap is None or plain_tap is not None)
                and len(data) >= RTP_HEADER.size and data[0] == PLAIN_RTP_OCTET
                and data[1] & 0x7F == agreed and agreed not in RTCP_PAYLOAD_TYPES):
            # The usual packet, forwarded as it came without being parsed: a plain header (no
            # padding, extension or CSRCs, RFC 3550 §5.1) with the payload type the sides agreed
            # on, the same on the other side, nobody muted or on hold. Parsing it was a fifth
            # of the relay's time per packet (bench/media.py); the rest goes below. A recorder
            # gets the header's two fields it needs (bench/recording.py: half its cost).
            target = self.b if source is self.a else self.a
            if isinstance(target, BridgeSide):
                out = target.choice
                if (out.payload_type == agreed and out.codec == source.choice.codec
                        and not out.on_hold and target.port not in self.muted):
                    source.packets_in += 1
                    if plain_tap is not None and now is not None:
                        timestamp, ssrc = _TIMESTAMP_SSRC.unpack_from(data, 4)
                        plain_tap("a" if source is self.a else "b", timestamp, ssrc,
                                  data[RTP_HEADER.size:], source.choice.codec, now)
                    return [(target.port, data, (out.remote_host, out.remote_port))]
        try:
            packet = parse_rtp(data)
        except MalformedRtp:
            self.packets_dropped += 1
            return []
        source.packets_in += 1
        if isinstance(self.b, PcmEnd):
            self.b.packet_from_party(packet, source.choice)
            return []
        target = self.b if source is self.a else self.a
        if (self.tap is not None and now is not None
                and packet.payload_type == source.choice.payload_type):
            # Recorded before hold or mute: the file keeps what each party said.
            self.tap.heard("a" if source is self.a else "b", packet, source.choice.codec, now)
        out = target.choice
        if out.on_hold or target.port in self.muted:
            return []
        if packet.payload_type == source.choice.telephone_event_pt:
            if out.telephone_event_pt is None:
                self.packets_dropped += 1
                return []
            return [(target.port, _with_payload_type(data, out.telephone_event_pt),
                     (out.remote_host, out.remote_port))]
        if packet.payload_type != source.choice.payload_type:
            self.packets_dropped += 1  # comfort noise, or a format nobody agreed on
            return []
        if source.choice.codec == out.codec and packet.payload_type == out.payload_type:
            return [(target.port, data, (out.remote_host, out.remote_port))]
        payload = packet.payload
        if source.choice.codec != out.codec:
            payload = _transcode(payload, source.choice.codec, out.codec)
        # Rebuilt from the parsed header: sequence, timestamp and SSRC stay the sender's.
        rebuilt = RtpPacket(payload_type=out.payload_type, sequence=packet.sequence,
                            timestamp=packet.timestamp, ssrc=packet.ssrc, payload=payload,
                            marker=packet.marker)
        return [(target.port, rebuilt.to_bytes(), (out.remote_host, out.remote_port))]


def _with_payload_type(data: bytes, payload_type: int) -> bytes:
    if len(data) < RTP_HEADER.size:
        return data
    return data[:1] + bytes([(data[1] & 0x80) | payload_type]) + data[2:]
