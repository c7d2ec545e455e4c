"""The box on the line itself: voicemail, and the apology call that offers it.

A `LocalParty` is the far end of a call that no person answered: it owns one RTP session
(`firmware.media.session`), runs a script on it — play this, wait for a key, record — and tells
its call when the script wants to hang up. Three scripts exist:

- `QueueScript`: early media for a caller waiting in a queue — ringback, their position, the
  callback offer — listening for the callback key (RFC 4733 or in-band).

- `VoicemailScript`: the mailbox's greeting (uploaded by the office, or the built-in prompt),
  a tone, then the caller's message until they hang up, press #, fall silent, or reach the
  maximum length; a message shorter than `min_s` is not kept (Asterisk's `minsecs`).
- `ApologyScript`: a callback request expired; the box rings the customer, apologises and
  offers to take a message (key 1), which then runs as `VoicemailScript` without a greeting.

Sans-IO: the scripts and the party take `now`; sending, timers, prompts and saving a message
go through `MediaServices`, which the gateway implements.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .calls import Call, CallState, Timer
from .legs import Leg, LegAnswered, LegSetup, SessionDescription
from .media import sdp, tones
from .media.session import DtmfReceived, MediaEvent, MediaSession, PlaybackFinished

LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_S = 120
DEFAULT_MIN_MESSAGE_S = 1.0
DEFAULT_SILENCE_S = 10
APOLOGY_KEY = "1"
APOLOGY_WAIT_S = 8.0  # after the offer, before saying it again
APOLOGY_OFFERS = 2
END_KEY = "#"
PROMPT_VOICEMAIL_GREETING = "voicemail_greeting"
PROMPT_MESSAGE_SAVED = "message_saved"
PROMPT_CALLBACK_APOLOGY = "callback_apology"
PROMPT_GOODBYE = "goodbye"
PROMPT_VOICEMAIL_UNAVAILABLE = "voicemail_unavailable"  # the data partition is full (issue 16)
PROMPT_QUEUE_POSITION = "queue_position"
PROMPT_CALLBACK_OFFER = "callback_offer"
MAX_SPOKEN_POSITION = 20  # number prompts exist for 0..20
KEY_PROMPTS = {**{str(d): f"number_{d}" for d in range(10)}, "*": "key_star", "#": "key_hash"}
BEEP = "beep"
RINGBACK = "ringback"


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailSettings:
    max_s: int = DEFAULT_MAX_MESSAGE_S
    min_s: float = DEFAULT_MIN_MESSAGE_S
    silence_s: int = DEFAULT_SILENCE_S


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailMessage:
    """A message left in a mailbox, for the store."""

    call_id: str
    mailbox: str
    caller: str
    started_at: float
    duration_s: float
    pcm: bytes  # 16-bit 8 kHz mono


class MediaServices(Protocol):
    def call_at(self, when: float, callback: Callable[[float], None]) -> Timer: ...

    def send_rtp(self, port: int, data: bytes, destination: tuple[str, int]) -> None: ...

    def close_media(self, port: int) -> None: ...

    def prompt(self, name: str) -> bytes: ...

    def greeting(self, mailbox: str) -> bytes | None: ...

    def voicemail_left(self, message: VoicemailMessage, now: float) -> None: ...


class Script:
    """What the box does on the line. `party` plays, records and hangs up for it."""

    _outcome = "missed"

    @property
    def outcome(self) -> str:
        """What the call's record says once the script is over."""
        return self._outcome

    def start(self, party: LocalParty, now: float) -> None:
        raise NotImplementedError

    def on_event(self, party: LocalParty, event: MediaEvent, now: float) -> None:
        raise NotImplementedError

    def on_frame(self, party: LocalParty, now: float) -> None:
        """Called every 20 ms, after the session's frame: check time and silence."""

    def on_remote_hangup(self, party: LocalParty, now: float) -> None:
        """The other side hung up; keep what should be kept."""

    def stop(self) -> None:
        """Another script takes over, or the party closes: cancel this one's timers."""


class VoicemailScript(Script):
    def __init__(self, *, call_id: str, mailbox: str, caller: str,
                 settings: VoicemailSettings, greet: bool = True) -> None:
        self.call_id = call_id
        self.mailbox = mailbox
        self.caller = caller
        self.settings = settings
        self.greet = greet
        self.state = "greeting"  # greeting → recording → closing → done
        self.message: VoicemailMessage | None = None

    def start(self, party: LocalParty, now: float) -> None:
        if self.greet:
            greeting = party.services.greeting(self.mailbox)
            if greeting is None:
                greeting = party.services.prompt(PROMPT_VOICEMAIL_GREETING)
            party.session.play("greeting", greeting)
        party.session.play(BEEP, tones.beep())

    def on_event(self, party: LocalParty, event: MediaEvent, now: float) -> None:
        if isinstance(event, PlaybackFinished):
            if event.name == BEEP and self.state == "greeting":
                self.state = "recording"
                party.session.start_recording(now)
            elif event.name == PROMPT_MESSAGE_SAVED and self.state == "closing":
                self.state = "done"
                party.hang_up(now)
            return
        if event.key != END_KEY:
            return
        if self.state == "greeting":
            # '#' skips the greeting, as on most voicemail systems: straight to the tone.
            party.session.stop_playing()
            party.session.play(BEEP, tones.beep())
        elif self.state == "recording":
            self._finish_recording(party, now, say_saved=True)

    def on_frame(self, party: LocalParty, now: float) -> None:
        recording = party.session.recording
        if self.state != "recording" or recording is None:
            return
        full = recording.duration_s >= self.settings.max_s
        finished_speaking = (recording.heard_sound
                             and recording.trailing_silence_s >= self.settings.silence_s)
        if full or finished_speaking:
            self._finish_recording(party, now, say_saved=True)
        elif (not recording.heard_sound
              and now - recording.started_at >= self.settings.silence_s):
            # Nothing said at all: hang up without a message.
            party.session.stop_recording()
            self.state = "done"
            party.hang_up(now)

    def on_remote_hangup(self, party: LocalParty, now: float) -> None:
        if self.state == "recording":
            self._finish_recording(party, now, say_saved=False)

    def _finish_recording(self, party: LocalParty, now: float, *, say_saved: bool) -> None:
        recording = party.session.stop_recording()
        self.state = "closing"
        kept = recording is not None and recording.duration_s >= self.settings.min_s
        if kept and recording is not None:
            self.message = VoicemailMessage(
                call_id=self.call_id, mailbox=self.mailbox, caller=self.caller,
                started_at=recording.started_at, duration_s=round(recording.duration_s, 2),
                pcm=bytes(recording.pcm),
            )
            self._outcome = "voicemail"
            party.services.voicemail_left(self.message, now)
            LOGGER.info("call %s: %.1f s message for mailbox %s", self.call_id,
                        recording.duration_s, self.mailbox)
        if not say_saved:
            self.state = "done"
        elif kept:
            party.session.play(PROMPT_MESSAGE_SAVED, party.services.prompt(PROMPT_MESSAGE_SAVED))
        else:
            self.state = "done"
            party.hang_up(now)


class UnavailableScript(Script):
    """Voicemail that cannot take a message (the box's storage is full, issue 16): the caller
    hears so, then the box hangs up — a prompt, not silence."""

    def start(self, party: LocalParty, now: float) -> None:
        party.session.play(PROMPT_VOICEMAIL_UNAVAILABLE,
                           party.services.prompt(PROMPT_VOICEMAIL_UNAVAILABLE))

    def on_event(self, party: LocalParty, event: MediaEvent, now: float) -> None:
        if not isinstance(event, DtmfReceived) and event.name == PROMPT_VOICEMAIL_UNAVAILABLE:
            party.hang_up(now)


class ApologyScript(Script):
    """Sorry we could not call back; press 1 to leave a message."""

    def __init__(self, voicemail: VoicemailScript) -> None:
        self.voicemail = voicemail
        self.offers = 0
        self.state = "offering"  # offering → voicemail | goodbye
        self._wait: Timer | None = None

    @property
    def outcome(self) -> str:
        return self.voicemail.outcome

    def start(self, party: LocalParty, now: float) -> None:
        self._offer(party)

    def _offer(self, party: LocalParty) -> None:
        self.offers += 1
        party.session.play(PROMPT_CALLBACK_APOLOGY, party.services.prompt(PROMPT_CALLBACK_APOLOGY))

    def on_event(self, party: LocalParty, event: MediaEvent, now: float) -> None:
        if self.state == "voicemail":
            self.voicemail.on_event(party, event, now)
            return
        if isinstance(event, DtmfReceived):
            if event.key == APOLOGY_KEY and self.state == "offering":
                self._cancel_wait()
                self.state = "voicemail"
                party.session.stop_playing()
                self.voicemail.start(party, now)
            return
        if event.name == PROMPT_CALLBACK_APOLOGY and self.state == "offering":
            self._wait = party.services.call_at(now + APOLOGY_WAIT_S,
                                                lambda t: self._waited(party, t))
        elif event.name == PROMPT_GOODBYE:
            party.hang_up(now)

    def _waited(self, party: LocalParty, now: float) -> None:
        self._wait = None
        if self.state != "offering" or party.closed:
            return
        if self.offers < APOLOGY_OFFERS:
            self._offer(party)
            return
        self.state = "goodbye"
        party.session.play(PROMPT_GOODBYE, party.services.prompt(PROMPT_GOODBYE))

    def _cancel_wait(self) -> None:
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None

    def on_frame(self, party: LocalParty, now: float) -> None:
        if self.state == "voicemail":
            self.voicemail.on_frame(party, now)

    def on_remote_hangup(self, party: LocalParty, now: float) -> None:
        self._cancel_wait()
        if self.state == "voicemail":
            self.voicemail.on_remote_hangup(party, now)


class QueueScript(Script):
    """What a caller waiting in a queue hears (early media, RFC 3960 "gateway model"): ringback
    tone, and every `announce_s` their position and, where the queue offers callback, which
    key to press (Asterisk app_queue's announce-position and periodic-announce). Keys go to
    `on_key`. While a member's phone rings the ringback goes on, without announcements."""

    def __init__(self, *, position: Callable[[], int | None], callback_key: str | None,
                 on_key: Callable[[str, float], None], announce_s: float) -> None:
        self.position = position
        self.callback_key = callback_key
        self.on_key = on_key
        self.announce_s = announce_s
        self._timer: Timer | None = None

    def start(self, party: LocalParty, now: float) -> None:
        party.session.play(RINGBACK, tones.ringback())
        # The first announcement after one ring, then every announce_s.
        self._schedule(party, now + tones.RINGBACK_CYCLE_S)

    def _schedule(self, party: LocalParty, when: float) -> None:
        self._timer = party.services.call_at(when, lambda t: self._announce(party, t))

    def _announce(self, party: LocalParty, now: float) -> None:
        self._timer = None
        if party.closed:
            return
        position = self.position()
        if position is not None:
            party.session.stop_playing()
            for name, pcm in announcement(party.services, position, self.callback_key):
                party.session.play(name, pcm)
            party.session.play(RINGBACK, tones.ringback())
        self._schedule(party, now + self.announce_s)

    def on_event(self, party: LocalParty, event: MediaEvent, now: float) -> None:
        if isinstance(event, DtmfReceived):
            self.on_key(event.key, now)
        elif event.name == RINGBACK and not party.session.is_playing:
            party.session.play(RINGBACK, tones.ringback())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_remote_hangup(self, party: LocalParty, now: float) -> None:
        self.stop()


def announcement(services: MediaServices, position: int,
                 callback_key: str | None) -> list[tuple[str, bytes]]:
    """The prompts of one queue announcement, in order: "your position in the queue: N"
    (positions past the last number prompt are not said), then the callback offer."""
    parts: list[tuple[str, bytes]] = []
    if 1 <= position <= MAX_SPOKEN_POSITION:
        parts += [(PROMPT_QUEUE_POSITION, services.prompt(PROMPT_QUEUE_POSITION)),
                  (f"number_{position}", services.prompt(f"number_{position}"))]
    if callback_key is not None:
        key_prompt = KEY_PROMPTS[callback_key]
        parts += [(PROMPT_CALLBACK_OFFER, services.prompt(PROMPT_CALLBACK_OFFER)),
                  (key_prompt, services.prompt(key_prompt))]
    return parts


class LocalParty:
    """The box's end of one call: an RTP session driven by a script.

    When the box made the SDP offer (an INVITE without one, or a call the box places), the
    session waits, silent, until the answer arrives (`answer_received`) and starts then, so no
    prompt plays into the void."""

    def __init__(self, *, services: MediaServices, session: MediaSession, script: Script,
                 local_host: str, awaiting_answer: bool = False) -> None:
        self.services = services
        self.session = session
        self.script = script
        self.local_host = local_host
        # Set by the call once it exists (`on_hang_up`); the queue's script never hangs up.
        self._hang_up: Callable[[float], None] | None = None
        self._frame_timer: Timer | None = None
        self.awaiting_answer = awaiting_answer
        self.started = False
        self.closed = False

    @property
    def port(self) -> int:
        return self.session.local_port

    @property
    def outcome(self) -> str:
        return self.script.outcome

    def start(self, now: float) -> None:
        if self.started or self.closed:
            return
        self.started = True
        self.session.restart_clock(now)
        self.script.start(self, now)
        self._arm(now)

    def switch(self, script: Script, now: float) -> None:
        """Run another script from now on (the queue's early media becomes voicemail)."""
        self.script.stop()
        self.session.stop_playing()
        self.script = script
        if self.started:
            script.start(self, now)

    def answer_received(self, body: bytes, now: float) -> None:
        """The peer's SDP answer to our offer (in an ACK or a 2xx)."""
        if not self.awaiting_answer or self.closed:
            return
        try:
            choice = sdp.accept_answer(body)
        except sdp.SdpError as exc:
            LOGGER.warning("port %d: unusable SDP answer (%s); hanging up", self.port, exc)
            self.hang_up(now)
            return
        self.awaiting_answer = False
        self.session.update(choice)
        self.start(now)

    def renegotiate(self, offer: bytes) -> bytes:
        """Our answer to a re-INVITE's offer; raises SdpError (a ValueError) if unusable."""
        body, choice = sdp.answer(offer, host=self.local_host, port=self.port)
        self.session.update(choice)
        return body

    def _arm(self, now: float) -> None:
        when = self.session.get_timer()
        if when is not None and not self.closed:
            self._frame_timer = self.services.call_at(max(when, now), self._on_frame)

    def _on_frame(self, now: float) -> None:
        self._frame_timer = None
        if self.closed:
            return
        self.session.handle_timer(now)
        self._flush()
        self._dispatch(now)
        if not self.closed:
            self.script.on_frame(self, now)
        self._arm(now)

    def _flush(self) -> None:
        destination = self.session.destination
        for data in self.session.datagrams_to_send():
            self.services.send_rtp(self.port, data, destination)

    def _dispatch(self, now: float) -> None:
        while not self.closed:
            event = self.session.next_event()
            if event is None:
                return
            self.script.on_event(self, event, now)

    def receive(self, data: bytes, now: float) -> None:
        self.session.receive(data, now)
        self._dispatch(now)

    def key_pressed(self, key: str, now: float) -> None:
        """A key from SIP INFO (RFC 6086); RTP keys come through `receive`."""
        if not self.closed:
            self.script.on_event(self, DtmfReceived(key=key, via="info"), now)

    def on_hang_up(self, hang_up: Callable[[float], None]) -> None:
        """Who hangs up for the script: the call it is the far end of."""
        self._hang_up = hang_up

    def hang_up(self, now: float) -> None:
        """The script is done: the call sends BYE; `close` follows from it."""
        if not self.closed and self._hang_up is not None:
            self._hang_up(now)

    def remote_hung_up(self, now: float) -> None:
        if not self.closed:
            self.script.on_remote_hangup(self, now)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.detach()
        self.services.close_media(self.port)

    def detach(self) -> None:
        """Stop playing and listening, but keep the port: a bridge takes it over."""
        self.closed = True
        self.script.stop()
        self.session.close()
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None


@dataclass(eq=False, slots=True, kw_only=True)
class PromptCall(Call):
    """A call the box places itself to say something (the apology for an expired callback):
    the leg gets our SDP offer, and its answer brings the callee's (RFC 3264 §5-6). Its caller
    is `NobodyCalling`."""

    caller_id: str  # the number the callee sees: the office's
    origin_call_id: str

    def leg_setup(self, leg: Leg) -> LegSetup:
        return LegSetup(caller_number=self.caller_id,
                        offer=SessionDescription(body=self.local_answer))

    def _leg_answered(self, event: LegAnswered, now: float) -> None:
        if self.state != CallState.RINGING or self.winner is not None:
            self._refuse_answer(event.leg, now, result="cancelled")
            return
        self._mark_answered(event.leg, event.status, now)
        assert self.local is not None  # the gateway gives a PromptCall its LocalParty
        media = event.media
        self.local.answer_received(media.body if isinstance(media, SessionDescription) else b"",
                                   now)
