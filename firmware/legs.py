"""Legs: the parties of a call, whatever carries them — a SIP phone or provider today, a GSM or
FXO modem next (docs/design.md).

A call (firmware.calls) is a caller and the legs it rings. It knows both only through the
interfaces here, never through their protocol: a leg is started with a `LegSetup` (who calls,
what media the caller offers) and reports back with the frozen events below — ringing, answered
with its media, failed with a status, ended — to the `LegListener` it was started with. The
caller's side is a `CallerParty`: told of ringing, answered, refused or hung up. Nothing here
imports `firmware.sip`; the SIP implementations live in `firmware/sip_legs.py`.

Statuses are given in SIP's terms (RFC 3261 §21: 486 busy, 480 unavailable, 603 declined, 408
no answer) because the records and the reports speak them; a modem leg maps its causes onto
them (BUSY → 486, NO ANSWER → 408, NO CARRIER → 480).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    """Media as SIP parties describe it: an SDP offer or answer (RFC 3264)."""

    body: bytes
    content_type: str = "application/sdp"


class PcmStream(Protocol):
    """Media as a modem carries it: 8 kHz 16-bit signed little-endian PCM frames, 20 ms
    (320 bytes) each (firmware/media/pcm.py joins such an end to an RTP one)."""

    def write_frame(self, frame: bytes) -> None: ...

    def read_frames(self) -> list[bytes]: ...


# What a leg answers with: an SDP answer (or, when it was started without an offer, its offer);
# or a PCM stream the box must bridge itself.
Media = SessionDescription | PcmStream


@dataclass(frozen=True, slots=True, kw_only=True)
class LegSetup:
    """How to start a leg: who is calling (the number and name the far end sees) and the
    media offered to it; `offer=None` asks the far end to make the offer (RFC 3725 flow I:
    its answer event then carries an offer, completed with `Leg.complete_answer`). `hints`
    are the caller's own signalling details a leg of the same kind may pass on (for SIP:
    Max-Forwards and the headers copied from the caller's INVITE)."""

    caller_number: str
    display: str | None = None
    offer: SessionDescription | None = None
    hints: Mapping[str, str] = field(default_factory=dict)


class LegState(StrEnum):
    CALLING = "calling"  # started; nothing heard yet
    RINGING = "ringing"  # the far end rings (or plays early media)
    ANSWERED = "answered"
    DONE = "done"  # failed, cancelled or hung up


_L = LegState
# The moves a leg may make; anything else is a bug in the leg and raises (h2's stream.py shape).
LEG_TRANSITIONS: dict[LegState, frozenset[LegState]] = {
    _L.CALLING: frozenset({_L.RINGING, _L.ANSWERED, _L.DONE}),
    _L.RINGING: frozenset({_L.ANSWERED, _L.DONE}),
    _L.ANSWERED: frozenset({_L.DONE}),
    _L.DONE: frozenset(),
}


class IllegalLegTransition(Exception):
    """A leg was told to move where its table does not let it (a bug in the box)."""


class LegStates:
    """The state a leg keeps, moved only along LEG_TRANSITIONS (a mixin for the leg classes:
    they declare `_state` and `label`)."""

    __slots__ = ()
    _state: LegState

    @property
    def label(self) -> str:
        raise NotImplementedError

    @property
    def state(self) -> LegState:
        return self._state

    @property
    def active(self) -> bool:
        """Still calling or ringing."""
        return self._state in (LegState.CALLING, LegState.RINGING)

    def _move(self, state: LegState) -> None:
        if state not in LEG_TRANSITIONS[self._state]:
            raise IllegalLegTransition(f"leg {self.label}: {self._state} → {state}")
        # The slot is the leg class's own (a dataclass field); the mixin keeps none.
        self._state = state  # type: ignore[misc]


@dataclass(slots=True, kw_only=True)
class LegRecord:
    """What the call records say of one leg (the `call_legs` table)."""

    target: str
    contact: str
    started_at: float
    ringing_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    result: str | None = None
    sip_status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LegRinging:
    leg: Leg
    early_media: SessionDescription | None = None  # RFC 3960: what the far end plays


@dataclass(frozen=True, slots=True, kw_only=True)
class LegAnswered:
    leg: Leg
    media: Media
    status: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class LegFailed:
    """The leg never answered: `result` is the records' word (busy, unavailable, declined,
    no_answer, failed), `status` the SIP status it maps to."""

    leg: Leg
    status: int
    result: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegEnded:
    """An answered leg was hung up by its far end."""

    leg: Leg
    cause: str


LegEvent = LegRinging | LegAnswered | LegFailed | LegEnded


class LegListener(Protocol):
    def leg_event(self, event: LegEvent, now: float) -> None: ...


class ListenerRef:
    """How a leg holds the call it reports to: weakly. A call holds its legs; a leg holding
    its call strongly would make a reference cycle that only the cyclic collector frees — and
    the daemon runs that collector rarely (its thresholds are raised for latency), so every
    finished call would linger in memory. A leg whose call is gone reports to nobody."""

    __slots__ = ("_ref",)

    def __init__(self, listener: LegListener | None = None) -> None:
        self._ref = weakref.ref(listener) if listener is not None else None

    def tell(self, event: LegEvent, now: float) -> None:
        listener = self._ref() if self._ref is not None else None
        if listener is not None:
            listener.leg_event(event, now)


class Leg(Protocol):
    """One party a call rings."""

    employee: str | None  # whose phone this is when it is a member's mobile
    record: LegRecord
    channel: str | None  # a line channel held for this leg alone (a fork to mobiles)

    @property
    def label(self) -> str:
        """The extension or number rung: what records and the monitor show."""
        ...

    @property
    def state(self) -> LegState: ...

    @property
    def active(self) -> bool:
        """Still calling or ringing."""
        ...

    def start(self, setup: LegSetup, listener: LegListener, now: float) -> None: ...

    def cancel(self, now: float, *, result: str = "cancelled") -> None:
        """Stop calling (the call went elsewhere, or its caller gave up)."""
        ...

    def hang_up(self, now: float) -> None:
        """End an answered leg; an answer nobody wants any more (it lost a race) too."""
        ...

    def complete_answer(self, answer: SessionDescription | None, now: float) -> None:
        """Give the answer to the offer a leg started without one answered with (None: the
        session is declined, RFC 3264 §6)."""
        ...


@runtime_checkable
class BoxHeldMedia(Protocol):
    """A party whose session the box itself holds (a modem line's audio is an RTP end of the
    box): a SIP party's re-INVITE, UPDATE or INFO toward it is answered by the box."""

    @property
    def current_sdp(self) -> bytes: ...

    def renegotiate(self, offer: bytes) -> bytes: ...

    def key_pressed(self, key: str, now: float) -> None: ...


class CallerParty(Protocol):
    """The caller's side of a call: the party that is answered, not rung."""

    @property
    def offer(self) -> SessionDescription | None:
        """What the caller offered (None: a late offer, or nobody is calling)."""
        ...

    @property
    def hints(self) -> Mapping[str, str]: ...

    def ringing(self, early_media: SessionDescription | None, now: float) -> None: ...

    def answerable(self) -> bool:
        """Whether the caller can be answered at all (a SIP INVITE that cannot make a dialog
        cannot); asked before anyone is told they won the call."""
        ...

    def answer(self, media: SessionDescription, now: float) -> None: ...

    def reject(self, status: int, reason: str | None, now: float) -> None: ...

    def hang_up(self, now: float) -> None: ...


class NobodyCalling:
    """The caller of a call the box places itself (a callback, an apology): nobody waits to
    hear ringing or an answer."""

    offer: SessionDescription | None = None
    hints: Mapping[str, str] = MappingProxyType({})

    def ringing(self, early_media: SessionDescription | None, now: float) -> None:
        pass

    def answerable(self) -> bool:
        return True

    def answer(self, media: SessionDescription, now: float) -> None:
        pass

    def reject(self, status: int, reason: str | None, now: float) -> None:
        pass

    def hang_up(self, now: float) -> None:
        pass


def result_of(status: int) -> str:
    """The records' word for a leg's failure status."""
    if status in (486, 600):
        return "busy"
    if status == 603:
        return "declined"
    if status == 487:
        return "cancelled"
    if status in (404, 410, 480):
        return "unavailable"
    if status == 408:
        return "no_answer"
    return "failed"
