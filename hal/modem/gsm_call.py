"""The one call a GSM line carries, pure: signals read from the modem (hal/modem/gsm_profiles.py)
and the driver's own commands in, the driver's facts (hal/modem/driver.py) out, `now` passed in.

Modems disagree on how a call's story is told (^ORIG/^CONF/^CONN/^CEND, +QIND "ccinfo",
VOICE CALL, +CLCC, plain NO CARRIER) and sometimes leave a chapter out (bg111#260: ^CONN not
recognised, the call stuck in "Dialing"). So: every known (state, input) pair is in
`TRANSITIONS`; a pair not there is a stale or repeated URC and is ignored (a modem's word never
raises here); a release without a cause waits `RESULT_GRACE_S` for the NO CARRIER / BUSY that
says why; `clcc_due(now)` asks the driver for +CLCC every `CLCC_POLL_S` while a call is up, and
`calls_listed()` reconciles what the modem lists with what we believe.

    tracker = CallTracker("mts")
    facts = tracker.ring(now)            # [] until +CLIP or CLIP_WAIT_S
    facts = tracker.caller_id(CallerIdHeard(number="+7916..."), now)   # [IncomingCall]
    facts = tracker.handle_timer(now)    # call at least every TICK_S
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from hal.modem.driver import (
    CallEnded,
    IncomingCall,
    ModemFact,
    RemoteAnswered,
    RemoteRinging,
)
from hal.modem.gsm_profiles import (
    CAUSE_BUSY,
    CAUSE_NO_ANSWER,
    CAUSE_NO_USER_RESPONDING,
    CAUSE_REJECTED,
    CLCC_ACTIVE,
    CLCC_ALERTING,
    CallerIdHeard,
    ListedCall,
    cause_text,
)

LOGGER = logging.getLogger(__name__)

CLIP_WAIT_S = 1.0  # +CLIP may follow the first RING a moment later; report without it after this
RING_LOST_S = 8.0  # RINGs come every ~3-5 s; none for this long and +CLCC empty: caller gone
RESULT_GRACE_S = 0.5  # after a release without a cause: the NO CARRIER / BUSY that says why
CLCC_POLL_S = 2.0  # +CLCC while a call is up, to reconcile a missed URC (bg111#260)
CLCC_SETTLE_S = 1.0  # a call this young may not be listed yet: an empty list proves nothing

# SIP words for the records (driver.CallEnded): 486 busy, 408 no answer, 480 unavailable,
# 487 the caller gave up, 200 a normal end.
STATUS_NORMAL = 200
STATUS_BUSY = 486
STATUS_NO_ANSWER = 408
STATUS_UNAVAILABLE = 480
STATUS_CANCELLED = 487


class CallState(enum.Enum):
    IDLE = "idle"
    RINGING = "ringing"  # incoming, not answered (reported once the caller is known)
    DIALING = "dialing"
    ALERTING = "alerting"
    ACTIVE = "active"
    RELEASING = "releasing"  # the modem said it ended; waiting a moment for the reason
    HANGING_UP = "hanging up"  # our own hang-up command is out


S = CallState
# (state, input) → next state. Inputs: ring, dial, alerting, active, answered, released,
# result, hang_up. Pairs not listed are ignored (see the module docstring).
TRANSITIONS: dict[tuple[CallState, str], CallState] = {
    (S.IDLE, "ring"): S.RINGING,
    (S.IDLE, "dial"): S.DIALING,
    (S.RINGING, "ring"): S.RINGING,
    (S.RINGING, "answered"): S.ACTIVE,
    (S.RINGING, "active"): S.RINGING,  # ccinfo/VOICE CALL before our ATA returned: no change
    (S.RINGING, "released"): S.RELEASING,
    (S.RINGING, "result"): S.IDLE,
    (S.DIALING, "alerting"): S.ALERTING,
    (S.DIALING, "active"): S.ACTIVE,
    (S.ALERTING, "active"): S.ACTIVE,
    (S.DIALING, "released"): S.RELEASING,
    (S.ALERTING, "released"): S.RELEASING,
    (S.ACTIVE, "released"): S.RELEASING,
    (S.DIALING, "result"): S.IDLE,
    (S.ALERTING, "result"): S.IDLE,
    (S.ACTIVE, "result"): S.IDLE,
    (S.RELEASING, "result"): S.IDLE,
    (S.RELEASING, "released"): S.RELEASING,
}
for _state in (S.RINGING, S.DIALING, S.ALERTING, S.ACTIVE, S.RELEASING):
    TRANSITIONS[(_state, "hang_up")] = S.HANGING_UP


@dataclass
class CallTracker:
    """See the module docstring."""

    line: str
    state: CallState = CallState.IDLE
    index: int = 1  # the modem's call index (^DTMF, +QHUP)
    incoming: bool = False
    answered: bool = False  # the call was active at some point
    reported: bool = False  # IncomingCall / RemoteRinging already given
    since: float = 0.0  # when the current state began
    clip_deadline: float | None = None
    last_ring_at: float = 0.0
    release_deadline: float | None = None
    release_cause: int | None = None
    next_clcc_at: float | None = None
    _caller: CallerIdHeard | None = field(default=None, repr=False)
    _before_release: CallState = field(default=CallState.IDLE, repr=False)

    @property
    def busy(self) -> bool:
        return self.state is not CallState.IDLE

    @property
    def talking(self) -> bool:
        """Audio should flow: the call is active."""
        return self.state is CallState.ACTIVE

    # ---------------------------------------------------------------- inputs from the modem
    def ring(self, now: float) -> list[ModemFact]:
        if not self._move("ring", now, keep_since=self.state is CallState.RINGING):
            return []
        self.last_ring_at = now
        if self.clip_deadline is None and not self.reported:
            self.incoming = True
            self.clip_deadline = now + CLIP_WAIT_S
            self.next_clcc_at = now + RING_LOST_S
            if self._caller is not None:  # +CLIP came before the first RING
                return self._report_incoming()
        return []

    def caller_id(self, heard: CallerIdHeard, now: float) -> list[ModemFact]:
        if self.state is CallState.IDLE:
            self._caller = heard
            return self.ring(now)
        if self.state is CallState.RINGING:
            self.last_ring_at = now
            if not self.reported:
                self._caller = heard
                return self._report_incoming()
        return []

    def progressed(self, state: str, index: int | None, now: float) -> list[ModemFact]:
        if index is not None:
            self.index = index
        if state == "dialing":
            return []
        if state == "alerting":
            if self._move("alerting", now):
                return self._remote_ringing()
            return []
        if state == "active" and self.state in (CallState.DIALING, CallState.ALERTING):
            self._move("active", now)
            self.answered = True
            return [*self._remote_ringing(), RemoteAnswered(line=self.line)]
        return []

    def released(self, cause: int | None, definite: bool, now: float) -> list[ModemFact]:
        if (self.state, "released") not in TRANSITIONS:
            return []
        if cause is not None:
            self.release_cause = cause
        if definite or cause is not None:
            return self._end(by_far_end=True, now=now)
        if self.state is not CallState.RELEASING:
            self.release_deadline = now + RESULT_GRACE_S
            self._before_release = self.state
            self._move("released", now)
        return []

    def result(self, result: str, now: float) -> list[ModemFact]:
        """NO CARRIER / BUSY / NO ANSWER heard while no command was pending."""
        if (self.state, "result") not in TRANSITIONS:
            return []
        if result == "BUSY":
            self.release_cause = CAUSE_BUSY
        elif result == "NO ANSWER":
            self.release_cause = CAUSE_NO_ANSWER
        return self._end(by_far_end=True, now=now, words=result.lower())

    def calls_listed(self, calls: list[ListedCall], now: float) -> list[ModemFact]:
        """The answer to AT+CLCC: what the modem says exists now."""
        if self.state in (CallState.IDLE, CallState.HANGING_UP, CallState.RELEASING):
            return []
        ours = next((c for c in calls if c.index == self.index), calls[0] if calls else None)
        if ours is None:
            if self.state is CallState.RINGING and now - self.last_ring_at < RING_LOST_S:
                return []
            if now - self.since < CLCC_SETTLE_S:
                return []
            LOGGER.info("%s: +CLCC lists no call while %s: it ended", self.line, self.state.value)
            return self._end(by_far_end=True, now=now, words="call gone (+CLCC)")
        self.index = ours.index
        if ours.stat == CLCC_ALERTING and self.state is CallState.DIALING:
            return self.progressed("alerting", None, now)
        if ours.stat == CLCC_ACTIVE and self.state in (CallState.DIALING, CallState.ALERTING):
            LOGGER.info("%s: +CLCC says active; the answer URC was missed", self.line)
            return self.progressed("active", None, now)
        return []

    # ---------------------------------------------------------------- the driver's own acts
    def dialled(self, now: float) -> None:
        self._move("dial", now)
        self.incoming = False
        self.next_clcc_at = now + CLCC_POLL_S

    def answered_locally(self, now: float) -> None:
        if self._move("answered", now):
            self.answered = True
            self.next_clcc_at = now + CLCC_POLL_S

    def hanging_up(self, now: float) -> None:
        self._move("hang_up", now)

    def hung_up(self, now: float) -> list[ModemFact]:
        """Our hang-up command is done: the call is over, ended by us."""
        if self.state is CallState.IDLE:
            return []
        status = STATUS_NORMAL if self.answered else STATUS_CANCELLED
        fact = CallEnded(line=self.line, cause="hung up by the box", status=status,
                         by_far_end=False)
        self._reset(now)
        return [fact]

    def failed(self, result: str, now: float) -> list[ModemFact]:
        """ATD ended with a call progress result of its own (BUSY, NO CARRIER...)."""
        return self.result(result, now)

    def forget(self, now: float) -> None:
        """Our ATD was refused: there never was a call."""
        self._reset(now)

    def lost(self, reason: str, now: float) -> list[ModemFact]:
        """The modem vanished: whatever call it had is gone."""
        if self.state is CallState.IDLE:
            return []
        fact = CallEnded(line=self.line, cause=f"modem lost ({reason})",
                         status=STATUS_UNAVAILABLE, by_far_end=True)
        self._reset(now)
        return [fact]

    # ---------------------------------------------------------------- time
    def clcc_due(self, now: float) -> bool:
        """Whether the driver should ask AT+CLCC now (it then calls calls_listed)."""
        if self.next_clcc_at is None or now < self.next_clcc_at or self.state in (
                CallState.IDLE, CallState.HANGING_UP, CallState.RELEASING):
            return False
        self.next_clcc_at = now + CLCC_POLL_S
        if self.state is CallState.RINGING:
            return now - self.last_ring_at >= RING_LOST_S
        return True

    def handle_timer(self, now: float) -> list[ModemFact]:
        if (self.state is CallState.RINGING and not self.reported
                and self.clip_deadline is not None and now >= self.clip_deadline):
            LOGGER.info("%s: no +CLIP within %g s of RING", self.line, CLIP_WAIT_S)
            self._caller = CallerIdHeard(number=None, reason="unavailable")
            return self._report_incoming()
        if (self.state is CallState.RELEASING and self.release_deadline is not None
                and now >= self.release_deadline):
            return self._end(by_far_end=True, now=now)
        return []

    # ---------------------------------------------------------------- inside
    def _move(self, event: str, now: float, *, keep_since: bool = False) -> bool:
        next_state = TRANSITIONS.get((self.state, event))
        if next_state is None:
            LOGGER.debug("%s: %s ignored in state %s", self.line, event, self.state.value)
            return False
        if not keep_since:
            self.since = now
        self.state = next_state
        return True

    def _report_incoming(self) -> list[ModemFact]:
        self.reported = True
        heard = self._caller or CallerIdHeard(number=None, reason="unavailable")
        return [IncomingCall(line=self.line, caller=heard.number, reason=heard.reason)]

    def _remote_ringing(self) -> list[ModemFact]:
        if self.reported:
            return []
        self.reported = True
        return [RemoteRinging(line=self.line)]

    def _end(self, *, by_far_end: bool, now: float, words: str = "") -> list[ModemFact]:
        was = self._before_release if self.state is CallState.RELEASING else self.state
        cause = self.release_cause
        detail = cause_text(cause) if cause is not None else (words or "no carrier")
        if was is CallState.RINGING:
            # the caller hung up before anyone answered (whatever the network's cause)
            status, text = STATUS_CANCELLED, "caller hung up"
        elif self.answered:
            status, text = STATUS_NORMAL, f"far end hung up ({detail})"
        elif cause in (CAUSE_BUSY, CAUSE_REJECTED):
            status, text = STATUS_BUSY, detail
        elif cause in (CAUSE_NO_ANSWER, CAUSE_NO_USER_RESPONDING):
            status, text = STATUS_NO_ANSWER, detail
        else:
            status, text = STATUS_UNAVAILABLE, detail
        fact = CallEnded(line=self.line, cause=text, status=status, by_far_end=by_far_end)
        self._reset(now)
        return [fact]

    def _reset(self, now: float) -> None:
        self.state = CallState.IDLE
        self.since = now
        self.index = 1
        self.incoming = self.answered = self.reported = False
        self.clip_deadline = self.release_deadline = self.release_cause = None
        self.next_clcc_at = None
        self._caller = None
        self._before_release = CallState.IDLE
