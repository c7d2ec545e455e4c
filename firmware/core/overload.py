"""Overload control: when the box cannot keep up, new work from strangers is turned away early
and cheaply (503 with Retry-After), so calls in progress and the office's own phones keep being
served, and the box recovers by itself.

Pure: the daemon reports how long each datagram waited in the socket's receive queue
(`observe`, from the kernel's receive timestamp) and the gateway asks, before parsing, whether
a datagram is new work (`is_new_work`) to admit (`admit`) or shed. Nothing here reads a clock
or a socket.

Why the queueing delay is the signal. RFC 6357's system model has a monitor that watches the
server's load (queue length, processing delay, CPU, memory); the useful signal is the one that
reflects what the senders feel: the time their request waits before it is read. Once a request
waits T1 (500 ms, RFC 3261 §17.1.1.2) it is sent again, the retransmission joins the same
queue, and the load doubles — the cliff the bench showed. The kernel timestamps every datagram
on arrival, so the delay is measured exactly and per datagram, tens of milliseconds before any
retransmission. Event-loop lag does not see this: asyncio reads one datagram per loop turn, so
its timers stay on time while thousands of datagrams wait in a 4 MB socket buffer. CPU load is
slow to average and says nothing about the queue. Kamailio's ratelimit module (its TAILDROP and
RED algorithms on a per-pipe rate, and its FEEDBACK algorithm on CPU load) and pike (a per-source
rate, which Linebox has in firmware/security.py) both need a rate the admin guesses in advance;
the delay needs none, and it means the same thing on a Pi and on a PC. As CoDel (RFC 8289)
does for packets, what counts is the shortest wait of each 100 ms interval: a standing queue.

What is shed, and in what order (RFC 7339 §5.10: prefer rejecting requests that start new
work over those inside existing dialogs, whose loss wastes what was spent on them). Responses,
requests inside a dialog (a To tag: ACK, BYE, re-INVITE, ...), CANCEL and ACK are always
served: they finish work already paid for. Requests from the office's registered phones
(exactly their binding's source) and from the lines (the provider) are served. The rest — an
INVITE, REGISTER, SUBSCRIBE, OPTIONS from anyone else — is admitted at a ratio that falls while
the delay is above target and climbs back while it is below (additive increase, multiplicative
decrease, in the spirit of RFC 7339's loss-based scheme, §6), so the box neither collapses nor
flips between all and nothing.

An answer to our digest challenge (the second INVITE of a call) is taken while anything is:
shedding it would waste the first half of the call. The ACK of our own 503 is dropped here.

The decision reads the start line and the header names (and the To header's value) only; the
503 echoes Via, From, To, Call-ID and CSeq from the raw bytes (`error_response_bytes`), no
parse of the whole message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..sip.message import error_response_bytes

LOGGER = logging.getLogger(__name__)

# CoDel's rule (RFC 8289 §4.3, §4.4): the box is behind when even the shortest wait in a whole
# interval (100 ms, CoDel's) exceeds the target — a standing queue, not a burst or one
# garbage-collection pause, which raise some waits but not the shortest. CoDel's 5 ms target
# is a router's; a SIP box's deadline is T1 (500 ms), and a Pi sharing its CPU with media sees
# standing queues of several milliseconds while keeping up: 20 ms (the bench's pass line for
# a call's whole setup is 50 ms). The excess does not wait for this queue: the UDP transport
# reads ahead and answers it at once (firmware/transport/udp.py).
TARGET_DELAY_S = 0.020
CONTROL_INTERVAL_S = 0.100
# Below this shortest wait the box is keeping up and may take more new work; between the two
# the ratio holds (hysteresis).
RELEASE_DELAY_S = 0.010
# A single datagram that waited this long sheds everything new from strangers at once: half of
# T1 is gone, and waiting for the interval's end would let the queue grow further.
SEVERE_DELAY_S = 0.250
# A queue is made of datagrams: an interval with fewer than this many read is no overload
# whatever they waited (a box descheduled by a busy CPU delays its few datagrams too; that is
# no queue for shedding to shorten).
MIN_SAMPLES = 10
# Intervals in a row with a standing queue before the box counts as behind (CoDel, too, acts
# only once the queue has stood for an interval): a scheduler that stalls a busy PC's process
# for one tenth of a second must not turn a test's or an office's calls away.
ONSET_INTERVALS = 2
# ...unless an overload ended this recently: the load that caused it is most likely back, and
# waiting for the queue to stand again lets it grow by a fifth of a second of work.
RECENT_OVERLOAD_S = 10.0
DECREASE_FACTOR = 0.7
INCREASE_STEP = 0.05  # from nothing back to everything in 2 s of keeping up
# RFC 3261 §21.5.4: how long the client should wait before trying again.
RETRY_AFTER_S = 5
# Kernel timestamps are wall-clock: a datagram that "waited" longer than this was stamped
# before the wall clock stepped (the first NTP sync), not queued. Ignored.
MAX_PLAUSIBLE_DELAY_S = 30.0

# What is never shed: requests that finish or continue work already admitted.
_CONTINUING_METHODS = frozenset({b"ACK", b"CANCEL", b"BYE", b"PRACK"})
_CREDENTIALS = (b"authorization", b"proxy-authorization")
_SHED_REASON = "Service Unavailable (overloaded)"
_SHED_TAG = "overload"  # the To tag of our 503s: their ACKs are recognised and dropped

# What `classify` says of a datagram.
SERVE = "serve"  # a response, a request inside a dialog, ACK, CANCEL, BYE: always served
NEW = "new"  # a request that starts new work: admitted at the ratio
ANSWER = "answer"  # new work answering our digest challenge: the challenge is paid for
DROP = "drop"  # the ACK of one of our 503s: nothing to do (RFC 3261 §17.2.1, stateless)
SHED = "shed"  # what `screen` says of new work not admitted: answer 503 (`shed_response`)
# The lanes of a transport that reads ahead (firmware/transport/udp.py), while the box is
# behind: what is always served goes FIRST, strangers' admitted new work LATER (and everything
# LATER, in one lane, while the box keeps up); HANDLED was shed or dropped on sight.
FIRST = "first"
LATER = "later"
HANDLED = "handled"


@dataclass(frozen=True, slots=True, kw_only=True)
class OverloadStatus:
    """What `linebox status` shows under `overload`."""

    overloaded: bool
    admit_ratio: float
    delay_ms: float  # the shortest wait in the last control interval: the standing queue
    shed: int  # new requests answered 503 since start
    episodes: int  # times the box went into overload since start
    worst_delay_ms: float  # the longest a datagram waited to be read since start
    queue_full: int  # datagrams the transport's full read-ahead queue dropped since start

    def as_dict(self) -> dict[str, object]:
        return {"overloaded": self.overloaded, "admit_ratio": round(self.admit_ratio, 3),
                "delay_ms": round(self.delay_ms, 1), "shed": self.shed,
                "episodes": self.episodes, "worst_delay_ms": round(self.worst_delay_ms, 1),
                "queue_full": self.queue_full}


def classify(data: bytes) -> str:
    """SERVE, NEW, ANSWER or DROP for one datagram, from its start line and header names
    (and the To header's value) only.

    A message this cannot read is served: the full parser answers it (400) as it would
    anyway."""
    end = data.find(b"\r\n")
    if end <= 0:
        return SERVE
    start = data[:end]
    if start.startswith(b"SIP/"):
        return SERVE  # a response
    method = start.split(b" ", 1)[0].upper()
    head_end = data.find(b"\r\n\r\n")
    head = data[end + 2:head_end if head_end >= 0 else len(data)]
    in_dialog = credentials = False
    for line in head.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name = name.strip().lower()
        if name in (b"to", b"t"):
            # §8.1.1.2: the To tag is what makes a request part of a dialog. A tag written
            # inside the URI's <...> reads as one too: such a request is merely served.
            value = value.replace(b" ", b"").lower()
            if method == b"ACK" and b"tag=" + _SHED_TAG.encode() in value:
                return DROP
            in_dialog = b"tag=" in value
        elif name in _CREDENTIALS:
            credentials = True
    if in_dialog or method in _CONTINUING_METHODS:
        return SERVE
    return ANSWER if credentials else NEW


def is_new_work(data: bytes) -> bool:
    """Whether `data` starts new work (NEW or ANSWER)."""
    return classify(data) in (NEW, ANSWER)


# The headers a response echoes (§8.2.6.2), by every name they go by (§7.3.3 compact forms).
_ECHOED = {b"via": b"Via", b"v": b"Via", b"from": b"From", b"f": b"From", b"to": b"To",
           b"t": b"To", b"call-id": b"Call-ID", b"i": b"Call-ID", b"cseq": b"CSeq"}
# What the quick path leaves to the careful one: controls (a NUL, a bare CR or LF, a control
# in a quoted name: echoed_address's business), folded lines, a head without its end.
_NOT_PLAIN_RE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n|\n[ \t]")


def shed_response(data: bytes, retry_after_s: int = RETRY_AFTER_S) -> bytes | None:
    """The stateless 503 with Retry-After (RFC 3261 §21.5.4) for a shed request, built from
    its raw headers; None when it cannot be answered (no Via).

    A flood is answered here thousands of times a second, so a plain head (the usual) is
    echoed line by line — a few microseconds; anything else takes `error_response_bytes`."""
    head_end = data.find(b"\r\n\r\n")
    if head_end > 0 and not _NOT_PLAIN_RE.search(data, 0, head_end):
        lines = data[:head_end].split(b"\r\n")
        out = [b"SIP/2.0 503 " + _SHED_REASON.encode()]
        seen: set[bytes] = set()
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            canon = _ECHOED.get(name.strip().lower()) if colon else None
            if canon is None or (canon != b"Via" and canon in seen):
                continue
            seen.add(canon)
            value = value.strip()
            if canon == b"To" and b";tag=" not in value.replace(b" ", b"").lower():
                value += b";tag=" + _SHED_TAG.encode()  # §8.2.6.2: a final response's To tag
            out.append(canon + b": " + value)
        if len(seen) == len(set(_ECHOED.values())) and not lines[0].startswith(b"SIP/"):
            out += [b"Retry-After: %d" % retry_after_s, b"Content-Length: 0", b"", b""]
            return b"\r\n".join(out)
    reply = error_response_bytes(data, 503, _SHED_REASON, to_tag=_SHED_TAG)
    if reply is None:
        return None
    head, sep, body = reply.partition(b"\r\n\r\n")
    return head + f"\r\nRetry-After: {retry_after_s}".encode() + sep + body


class OverloadControl:
    """The admission ratio for new work from strangers, driven by the queueing delay."""

    def __init__(self, *, now: float) -> None:
        self.admit_ratio = 1.0
        self.shed = 0
        self.episodes = 0
        self._credit = 0.0
        self._interval_ends = now + CONTROL_INTERVAL_S
        self._interval_min_s: float | None = None  # None: no datagram in this interval yet
        self._standing_intervals = 0  # in a row, with a standing queue above the target
        self._ended_at = -RECENT_OVERLOAD_S  # when the last overload ended
        self._interval_samples = 0
        self._last_min_s = 0.0
        self._worst_s = 0.0
        self._interval_full = False  # the transport's queue overflowed in this interval
        self.queue_full_drops = 0

    @property
    def overloaded(self) -> bool:
        return self.admit_ratio < 1.0

    def observe(self, delay_s: float, now: float) -> None:
        """A datagram waited `delay_s` in the receive queue before it was read."""
        if not 0.0 <= delay_s <= MAX_PLAUSIBLE_DELAY_S:
            return  # a wall-clock step between the kernel's stamp and our reading
        self._advance(now)
        if self._interval_min_s is None or delay_s < self._interval_min_s:
            self._interval_min_s = delay_s
        self._interval_samples += 1
        self._worst_s = max(self._worst_s, delay_s)
        if (delay_s >= SEVERE_DELAY_S and self._interval_samples >= MIN_SAMPLES
                and self.admit_ratio > 0.0):
            # Do not wait for the interval's end: every datagram read now is already late.
            self._set_ratio(0.0, delay_s, now)

    def queue_full(self, now: float) -> None:
        """The transport's read-ahead queue is full: it is dropping work. The plainest sign
        the box is behind, and one the delay can miss: a flood that comes in bursts (a botnet
        on a timer, a test's sender) fills the bounded queue, the excess is dropped, and the
        queue drains between bursts, so the shortest wait of each interval stays near zero
        while a third of everything — the customers' calls and the agents' answers with it —
        is lost. So a full queue puts the box into overload at once (the transport then
        screens what it was about to drop: what is always served goes ahead, the stranger
        hears 503), and each interval with an overflow lowers the ratio again."""
        self._advance(now)
        self.queue_full_drops += 1
        self._interval_full = True
        if not self.overloaded:
            self._set_ratio(DECREASE_FACTOR, self._last_min_s, now)

    def admit(self, now: float, *, answer: bool = False) -> bool:
        """Whether to take one more piece of new work from a stranger now. Deterministic:
        over any run of requests, the share admitted is the ratio (a credit count, not a
        coin), so a test and the bench see the same thing.

        An `answer` to our challenge is taken unless nothing is (a severe delay): refusing it
        would waste the challenge already sent, and a call admitted at its first INVITE must
        not be refused at its second. A flood of made-up answers is the authentication
        guard's to stop (firmware/security.py: failures ban the source)."""
        self._advance(now)
        if self.admit_ratio >= 1.0:
            return True
        if answer:
            if self.admit_ratio > 0.0:
                return True
            self.shed += 1
            return False
        self._credit += self.admit_ratio
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        self.shed += 1
        return False

    def screen(self, data: bytes, now: float, *, own: Callable[[], bool]) -> str:
        """SERVE, LATER (a stranger's new work, admitted), SHED or DROP for a datagram while
        overloaded. `own()`: whether it comes from the office's own phones or lines — asked
        only of new work, the rest is served anyway."""
        kind = classify(data)
        if kind in (SERVE, DROP):
            return kind
        if own():
            return SERVE
        return LATER if self.admit(now, answer=kind == ANSWER) else SHED

    def status(self, now: float) -> OverloadStatus:
        self._advance(now)
        return OverloadStatus(overloaded=self.overloaded, admit_ratio=self.admit_ratio,
                              delay_ms=1000.0 * self._last_min_s, shed=self.shed,
                              episodes=self.episodes, worst_delay_ms=1000.0 * self._worst_s,
                              queue_full=self.queue_full_drops)

    def _advance(self, now: float) -> None:
        """Close the control intervals that ended before `now`; an interval with no datagram
        counts as a quiet one (nothing waited)."""
        while now >= self._interval_ends:
            standing, self._interval_min_s = self._interval_min_s or 0.0, None
            samples, self._interval_samples = self._interval_samples, 0
            full, self._interval_full = self._interval_full, False
            self._last_min_s = standing
            if full:
                self._standing_intervals += 1
                self._set_ratio(self.admit_ratio * DECREASE_FACTOR, standing,
                                self._interval_ends)
            elif standing > TARGET_DELAY_S and samples >= MIN_SAMPLES:
                self._standing_intervals += 1
                if (self.overloaded or self._standing_intervals >= ONSET_INTERVALS
                        or self._interval_ends - self._ended_at < RECENT_OVERLOAD_S):
                    self._set_ratio(self.admit_ratio * DECREASE_FACTOR, standing,
                                    self._interval_ends)
            else:
                self._standing_intervals = 0
                if standing < RELEASE_DELAY_S and self.admit_ratio < 1.0:
                    self._set_ratio(min(1.0, self.admit_ratio + INCREASE_STEP), standing,
                                    self._interval_ends)
            # A long silence is many quiet intervals: catch up without looping over each.
            if now - self._interval_ends > CONTROL_INTERVAL_S * 100:
                self._interval_ends = now
                if self.admit_ratio < 1.0:
                    self._set_ratio(1.0, 0.0, now)
            self._interval_ends += CONTROL_INTERVAL_S

    def _set_ratio(self, ratio: float, delay_s: float, now: float) -> None:
        was_overloaded = self.overloaded
        self.admit_ratio = ratio
        if self.overloaded and not was_overloaded:
            self.episodes += 1
            self._credit = 0.0
            LOGGER.warning("overloaded: requests waited %.0f ms to be read; new calls and "
                           "registrations from outside the office get 503 for a while",
                           1000.0 * delay_s)
        elif was_overloaded and not self.overloaded:
            self._ended_at = now
            LOGGER.warning("overload over: all new requests are served again (%d answered "
                           "503 so far)", self.shed)
