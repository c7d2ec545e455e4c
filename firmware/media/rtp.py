"""RTP packets (RFC 3550 §5.1) and telephone-event payloads (RFC 4733 §2.3), sans-IO.

`parse_rtp` raises `MalformedRtp` for anything that is not a well-formed RTP packet (garbage,
RTCP on the RTP port, a truncated header): the session drops it and carries on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER = struct.Struct("!BBHII")
TELEPHONE_EVENT = struct.Struct("!BBH")
# RFC 4733 §3.2: events 0-9 are the digits, 10 is *, 11 is #, 12-15 are A-D.
DTMF_EVENT_KEYS = "0123456789*#ABCD"
# RFC 5761 §4: payload types 64-95 with the marker bit are RTCP packet types 192-223.
RTCP_PAYLOAD_TYPES = range(64, 96)


class MalformedRtp(ValueError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        return RTP_HEADER.pack(
            RTP_VERSION << 6, (0x80 if self.marker else 0) | self.payload_type,
            self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc,
        ) + self.payload


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) < RTP_HEADER.size:
        raise MalformedRtp(f"{len(data)} bytes is shorter than an RTP header")
    first, second, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise MalformedRtp(f"RTP version {first >> 6}")
    payload_type = second & 0x7F
    if payload_type in RTCP_PAYLOAD_TYPES and second & 0x80:
        raise MalformedRtp("an RTCP packet")
    offset = RTP_HEADER.size + 4 * (first & 0x0F)  # CSRC list
    if first & 0x10:  # §5.3.1 header extension: 16-bit profile, 16-bit length in words
        if len(data) < offset + 4:
            raise MalformedRtp("truncated header extension")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if first & 0x20:  # padding: the last octet counts the padding octets, itself included
        if end <= offset or data[-1] == 0 or data[-1] > end - offset:
            raise MalformedRtp("bad padding")
        end -= data[-1]
    if offset > end:
        raise MalformedRtp("header longer than the packet")
    return RtpPacket(payload_type=payload_type, sequence=sequence, timestamp=timestamp,
                     ssrc=ssrc, payload=data[offset:end], marker=bool(second & 0x80))


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int  # in timestamp units

    @property
    def key(self) -> str | None:
        return DTMF_EVENT_KEYS[self.event] if self.event < len(DTMF_EVENT_KEYS) else None

    def to_bytes(self) -> bytes:
        return TELEPHONE_EVENT.pack(self.event, (0x80 if self.end else 0) | (self.volume & 0x3F),
                                    self.duration & 0xFFFF)


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < TELEPHONE_EVENT.size:
        raise MalformedRtp("telephone-event payload shorter than 4 octets")
    event, flags, duration = TELEPHONE_EVENT.unpack_from(payload)
    return TelephoneEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F,
                          duration=duration)


def sequence_newer(candidate: int, last: int) -> bool:
    """Whether RTP sequence number `candidate` comes after `last`, across the 16-bit wrap
    (RFC 3550 appendix A.1 treats a jump of less than half the space as forward)."""
    return 0 < (candidate - last) & 0xFFFF < 0x8000
