"""SDP (RFC 4566) offers and answers (RFC 3264) for the box's own media: voicemail, prompts.

Only what a G.711 endpoint needs is read: the connection address, each m= line, the payload
types with their rtpmap, and the direction. `answer` picks the first of the offer's audio
formats that we speak (PCMU or PCMA) and telephone-event when offered, and declines every other
stream with port 0 (RFC 3264 §6); `MediaOffer.parse` of a peer's answer to our own offer
works the same way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

# Static payload types (RFC 3551 §6) and the names we speak.
STATIC_PAYLOAD_TYPES = {0: "PCMU", 8: "PCMA"}
SUPPORTED_CODECS = ("PCMU", "PCMA")
TELEPHONE_EVENT = "telephone-event"
DEFAULT_TELEPHONE_EVENT_PT = 101
PTIME_MS = 20
_session_ids = itertools.count(1)


class SdpError(ValueError):
    """The peer's SDP cannot be used: unparsable, or no common audio format (RFC 3261
    §21.4.26: 488 Not Acceptable Here)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaLine:
    media: str
    port: int
    protocol: str
    formats: tuple[str, ...]
    rtpmap: dict[int, str] = field(default_factory=dict)  # payload type → "name/rate"
    connection: str | None = None
    direction: str = "sendrecv"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    connection: str | None
    media: tuple[MediaLine, ...]
    origin_address_type: str = "IP4"

    @classmethod
    def parse(cls, body: bytes) -> SessionDescription:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError("SDP is not UTF-8") from exc
        session_connection: str | None = None
        session_direction = "sendrecv"
        media: list[dict[str, object]] = []
        saw_version = False
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                continue
            if len(line) < 2 or line[1] != "=":
                raise SdpError(f"not an SDP line: {line[:40]!r}")
            kind, value = line[0], line[2:]
            if kind == "v":
                saw_version = True
            elif kind == "c":
                parts = value.split()
                if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
                    raise SdpError(f"bad c= line: {value!r}")
                address = parts[2].split("/")[0]
                if media:
                    media[-1]["connection"] = address
                else:
                    session_connection = address
            elif kind == "m":
                parts = value.split()
                if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                    raise SdpError(f"bad m= line: {value!r}")
                media.append({"media": parts[0], "port": int(parts[1].split("/")[0]),
                              "protocol": parts[2], "formats": tuple(parts[3:]),
                              "rtpmap": {}, "connection": None,
                              "direction": session_direction})
            elif kind == "a":
                name, _, rest = value.partition(":")
                if name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                    if media:
                        media[-1]["direction"] = name
                    else:
                        session_direction = name
                elif name == "rtpmap" and media:
                    pt, _, encoding = rest.partition(" ")
                    if pt.isdigit():
                        rtpmap = media[-1]["rtpmap"]
                        assert isinstance(rtpmap, dict)
                        rtpmap[int(pt)] = encoding.strip()
        if not saw_version or not media:
            raise SdpError("no v= line or no m= line")
        lines = tuple(MediaLine(**item) for item in media)  # type: ignore[arg-type]
        return cls(connection=session_connection, media=lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioChoice:
    """What was agreed for the audio stream: where to send, in which format."""

    remote_host: str
    remote_port: int
    payload_type: int
    codec: str  # "PCMU" | "PCMA"
    telephone_event_pt: int | None
    direction: str

    @property
    def on_hold(self) -> bool:
        return self.remote_port == 0 or self.direction in ("sendonly", "inactive") or \
            self.remote_host in ("0.0.0.0", "::")


def _format_name(line: MediaLine, pt: int) -> str:
    encoding = line.rtpmap.get(pt)
    if encoding is not None:
        name, _, rest = encoding.partition("/")
        rate = rest.split("/")[0]
        return f"{name.upper()}/{rate}" if name.lower() != TELEPHONE_EVENT else \
            f"{TELEPHONE_EVENT}/{rate}"
    return f"{STATIC_PAYLOAD_TYPES[pt]}/8000" if pt in STATIC_PAYLOAD_TYPES else ""


def choose_audio(description: SessionDescription,
                 preferred: tuple[str, ...] = SUPPORTED_CODECS) -> tuple[int, AudioChoice]:
    """The first audio stream we can take and the format chosen in it, by the offerer's order
    of preference (RFC 3264 §6.1) among `preferred`."""
    for index, line in enumerate(description.media):
        if line.media != "audio" or line.port == 0 or "RTP/AVP" not in line.protocol:
            continue
        codec_pt: tuple[int, str] | None = None
        event_pt: int | None = None
        for text in line.formats:
            if not text.isdigit():
                continue
            pt = int(text)
            name = _format_name(line, pt)
            if name == f"{TELEPHONE_EVENT}/8000" and event_pt is None:
                event_pt = pt
            else:
                codec, _, rate = name.partition("/")
                if codec_pt is None and codec in preferred and rate == "8000":
                    codec_pt = (pt, codec)
        if codec_pt is None:
            continue
        host = line.connection or description.connection
        if host is None:
            raise SdpError("no connection address for the audio stream")
        return index, AudioChoice(remote_host=host, remote_port=line.port,
                                  payload_type=codec_pt[0], codec=codec_pt[1],
                                  telephone_event_pt=event_pt, direction=line.direction)
    raise SdpError("no audio stream in PCMU or PCMA")


def _session_lines(host: str) -> list[str]:
    session_id = next(_session_ids)
    address_type = "IP6" if ":" in host else "IP4"
    return ["v=0", f"o=linebox {session_id} {session_id} IN {address_type} {host}",
            "s=Linebox", f"c=IN {address_type} {host}", "t=0 0"]


def _audio_lines(port: int, payload_type: int, codec: str, event_pt: int | None,
                 direction: str) -> list[str]:
    formats = f"{payload_type}" + (f" {event_pt}" if event_pt is not None else "")
    lines = [f"m=audio {port} RTP/AVP {formats}", f"a=rtpmap:{payload_type} {codec}/8000"]
    if event_pt is not None:
        lines += [f"a=rtpmap:{event_pt} {TELEPHONE_EVENT}/8000", f"a=fmtp:{event_pt} 0-15"]
    return [*lines, f"a=ptime:{PTIME_MS}", f"a={direction}"]


_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
                     "inactive": "inactive"}


def answer(offer: bytes, *, host: str, port: int) -> tuple[bytes, AudioChoice]:
    """Our answer to `offer` (RFC 3264 §6): one m= line per offered stream, in order."""
    description = SessionDescription.parse(offer)
    index, choice = choose_audio(description)
    lines = _session_lines(host)
    for i, line in enumerate(description.media):
        if i == index:
            lines += _audio_lines(port, choice.payload_type, choice.codec,
                                  choice.telephone_event_pt, _ANSWER_DIRECTION[choice.direction])
        else:
            lines.append(f"m={line.media} 0 {line.protocol} {' '.join(line.formats)}")
    return ("\r\n".join(lines) + "\r\n").encode(), choice


def offer(*, host: str, port: int, first: str = "PCMU") -> bytes:
    """Our offer: both G.711 laws (`first` preferred: the law the other party of an anchored
    call speaks, so no transcoding is needed when the answerer agrees) and telephone-event
    (RFC 4733 §7.1.1)."""
    lines = _session_lines(host)
    ev = DEFAULT_TELEPHONE_EVENT_PT
    codecs = sorted(SUPPORTED_CODECS, key=lambda codec: codec != first)
    types = {name: pt for pt, name in STATIC_PAYLOAD_TYPES.items()}
    lines += [f"m=audio {port} RTP/AVP {' '.join(str(types[c]) for c in codecs)} {ev}",
              *(f"a=rtpmap:{types[c]} {c}/8000" for c in codecs),
              f"a=rtpmap:{ev} {TELEPHONE_EVENT}/8000",
              f"a=fmtp:{ev} 0-15", f"a=ptime:{PTIME_MS}", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()


def accept_answer(answer_body: bytes) -> AudioChoice:
    """What a peer's answer to our `offer` chose."""
    return choose_audio(SessionDescription.parse(answer_body))[1]


def awaiting_answer() -> AudioChoice:
    """A placeholder until the answer to our offer comes: nowhere to send (RFC 3264 §5.1)."""
    return AudioChoice(remote_host="0.0.0.0", remote_port=0, payload_type=0, codec="PCMU",
                       telephone_event_pt=DEFAULT_TELEPHONE_EVENT_PT, direction="inactive")
