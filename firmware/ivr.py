"""The box speaking a voice menu to a caller (sans-IO, like firmware/voicemail.py's scripts).

`MenuScript` plays a menu's greeting as early media and listens for keys (RFC 4733, in-band, or
SIP INFO through `LocalParty.key_pressed`). A key may interrupt the greeting (barge-in). What
the caller chose goes to `on_choice` as a destination: a number's kind of destination,
`menu:NAME`, or `hangup`; the room that started the script (firmware/core/menus.py) routes it.
`RingbackScript` is what the caller hears once a choice rings someone: ringback, on the same
early media, until a member answers and the box bridges them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from .calls import Timer
from .media import tones
from .media.session import DtmfReceived, MediaEvent, PlaybackFinished
from .routing.menu import REPEAT, Menu
from .voicemail import BEEP, RINGBACK, LocalParty, Script

LOGGER = logging.getLogger(__name__)

PROMPT_MENU_INVALID = "menu_invalid"
DIGITS_MAX = 8  # an extension or department number is at most this long
END_OF_DIGITS_KEY = "#"  # dialling directly: "that was the whole number"


class TimedScript(Script):
    """A script with one timer at a time, which fires only while it still runs the party."""

    _timer: Timer | None = None

    def _arm(self, party: LocalParty, when: float,
             action: Callable[[LocalParty, float], None]) -> None:
        self._cancel_timer()

        def fire(now: float) -> None:
            self._timer = None
            if not party.closed and party.script is self:
                action(party, now)
        self._timer = party.services.call_at(when, fire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class MenuScript(TimedScript):
    """One menu on the line: greeting → a key, or digits dialled directly → `on_choice`.

    Nothing pressed within `timeout_s` of the greeting's end, or an unknown key, plays the
    greeting again (after "no such option" for a key), at most `repeats` times; then the
    menu's `timeout` or `invalid` action. A menu with `then` and no keys plays once and goes
    there. Dialling directly: a digit that begins one of `targets` (extension and department
    numbers) starts collecting; a complete number nothing longer begins with is taken at once,
    otherwise after `digit_timeout_s` without a digit, or "#". A single digit that is no
    number then counts as that key."""

    def __init__(self, *, menu: Menu, greeting: list[tuple[str, bytes]],
                 targets: Collection[str], on_choice: Callable[[str, float], None]) -> None:
        self.menu = menu
        self.greeting = greeting
        self.targets = frozenset(targets) if menu.direct_dial else frozenset()
        self.on_choice = on_choice
        self.state = "greeting"  # greeting → waiting | collecting → done
        self.plays = 0
        self.digits = ""
        self._timer: Timer | None = None
        self._last_part = ""

    # ------------------------------------------------------------------ the greeting
    def start(self, party: LocalParty, now: float) -> None:
        self._greet(party, now, counted=True)

    def _greet(self, party: LocalParty, now: float, *, counted: bool,
               before: list[tuple[str, bytes]] | None = None) -> None:
        self._cancel_timer()
        if counted:
            self.plays += 1
        self.state = "greeting"
        self.digits = ""
        party.session.stop_playing()
        parts = [*(before or []), *self.greeting]
        for index, (_name, pcm) in enumerate(parts):
            self._last_part = f"menu:{self.menu.name}:{self.plays}:{index}"
            party.session.play(self._last_part, pcm)

    def on_event(self, party: LocalParty, event: MediaEvent, now: float) -> None:
        if self.state == "done":
            return
        if isinstance(event, PlaybackFinished):
            if event.name == self._last_part and self.state == "greeting":
                self._greeting_over(party, now)
            return
        assert isinstance(event, DtmfReceived)
        LOGGER.info("menu %s: key %s (%s)", self.menu.name, event.key, event.via)
        self._key(party, event.key, now)

    def _greeting_over(self, party: LocalParty, now: float) -> None:
        if self.menu.then is not None:  # an announcement: it has been said
            self._choose(self.menu.then, now)
            return
        self.state = "waiting"
        self._arm(party, now + self.menu.timeout_s, self._timed_out)

    def _timed_out(self, party: LocalParty, now: float) -> None:
        if self.state != "waiting":
            return
        if self.plays <= self.menu.repeats:
            self._greet(party, now, counted=True)
        else:
            LOGGER.info("menu %s: nothing chosen", self.menu.name)
            self._choose(self.menu.timeout, now)

    # ------------------------------------------------------------------ keys
    def _key(self, party: LocalParty, key: str, now: float) -> None:
        if self.menu.then is not None:
            return  # an announcement takes no keys
        if self.state == "collecting":
            self._cancel_timer()
            if key == END_OF_DIGITS_KEY:
                self._digits_done(party, now)
                return
            self.digits += key
            self._after_digit(party, now)
            return
        self._cancel_timer()
        party.session.stop_playing()  # barge-in: the caller knows what they want
        if key.isdigit() and any(target.startswith(key) for target in self.targets):
            self.state = "collecting"
            self.digits = key
            self._after_digit(party, now)
            return
        self._menu_key(party, key, now)

    def _after_digit(self, party: LocalParty, now: float) -> None:
        digits = self.digits
        longer = any(t.startswith(digits) and t != digits for t in self.targets)
        if digits in self.targets and not longer:
            self._choose(digits, now)
        elif (not longer and digits not in self.targets) or len(digits) >= DIGITS_MAX:
            self._digits_done(party, now)  # nothing can begin like this: say so now
        else:
            self._arm(party, now + self.menu.digit_timeout_s, self._digits_timed_out)

    def _digits_timed_out(self, party: LocalParty, now: float) -> None:
        if self.state == "collecting":
            self._digits_done(party, now)

    def _digits_done(self, party: LocalParty, now: float) -> None:
        digits = self.digits
        self.digits = ""
        if digits in self.targets:
            self._choose(digits, now)
        elif len(digits) == 1:
            self._menu_key(party, digits, now)
        else:
            self._invalid(party, now)

    def _menu_key(self, party: LocalParty, key: str, now: float) -> None:
        destination = self.menu.keys.get(key)
        if destination is None:
            self._invalid(party, now)
        elif destination == REPEAT:
            self._greet(party, now, counted=False)  # asked for: not held against the caller
        else:
            self._choose(destination, now)

    def _invalid(self, party: LocalParty, now: float) -> None:
        if self.plays <= self.menu.repeats:
            invalid = (PROMPT_MENU_INVALID, party.services.prompt(PROMPT_MENU_INVALID))
            self._greet(party, now, counted=True, before=[invalid])
        else:
            LOGGER.info("menu %s: no valid choice", self.menu.name)
            self._choose(self.menu.invalid, now)

    # ------------------------------------------------------------------ the end
    def _choose(self, destination: str, now: float) -> None:
        self._cancel_timer()
        self.state = "done"
        LOGGER.info("menu %s: chosen %s", self.menu.name, destination)
        self.on_choice(destination, now)

    def stop(self) -> None:
        self._cancel_timer()
        if self.state != "done":
            self.state = "done"

    def on_remote_hangup(self, party: LocalParty, now: float) -> None:
        self.stop()


class RingbackScript(Script):
    """Ringback on the box's early media while the caller's choice rings (RFC 3960 §3.1: the
    caller hears what the box sends, not the phones' own ringing)."""

    def start(self, party: LocalParty, now: float) -> None:
        party.session.play(RINGBACK, tones.ringback())

    def on_event(self, party: LocalParty, event: MediaEvent, now: float) -> None:
        if isinstance(event, PlaybackFinished) and not party.session.is_playing:
            party.session.play(RINGBACK, tones.ringback())



# Recording a menu's greeting by phone (*97 + the menu's number, firmware/core/menu_greetings.py).
PROMPT_GREETING_OPTIONS = "greeting_record_options"  # "1 to record, 2 to listen, 3 to save"
PROMPT_GREETING_SAVED = "greeting_saved"
PROMPT_GREETING_NOT_SAVED = "greeting_not_saved"
PROMPT_GREETING_NOT_RECORDED = "greeting_not_recorded"
RECORD_KEY, LISTEN_KEY, SAVE_KEY = "1", "2", "3"
OPTIONS_WAIT_S = 10.0  # after the options, before saying them again
OPTIONS_TIMES = 3  # said this many times with nothing pressed, then the box hangs up
MIN_GREETING_S = 0.5  # shorter is a slip of the finger, not a greeting


class GreetingRecordingScript(TimedScript):
    """Record a menu's greeting on the phone: the options, then 1 records after the beep until
    # or `max_s`, 2 plays what was recorded (before that, the menu's current greeting), 3 hands
    the recording to `on_save` and waits for `saved(ok)` to confirm. Nothing is kept unless 3
    is pressed: hanging up before leaves the greeting as it was."""

    _outcome = "answered"

    def __init__(self, *, menu: str, current: list[tuple[str, bytes]], max_s: float,
                 on_save: Callable[[bytes, float], None]) -> None:
        self.menu = menu
        self.current = current
        self.max_s = max_s
        self.on_save = on_save
        self.state = "options"  # options → beep → recording → options; playing; saving
        self.recorded: bytes | None = None
        self.times = 0  # the options said with nothing pressed since
        self._last_part = ""

    def start(self, party: LocalParty, now: float) -> None:
        self._options(party)

    def _options(self, party: LocalParty, before: str | None = None) -> None:
        self._cancel_timer()
        self.state = "options"
        self.times += 1
        party.session.stop_playing()
        if before is not None:
            party.session.play(before, party.services.prompt(before))
        party.session.play(PROMPT_GREETING_OPTIONS,
                           party.services.prompt(PROMPT_GREETING_OPTIONS))

    def on_event(self, party: LocalParty, event: MediaEvent, now: float) -> None:
        if isinstance(event, PlaybackFinished):
            self._played(party, event.name, now)
            return
        assert isinstance(event, DtmfReceived)
        LOGGER.info("greeting of menu %s: key %s (%s)", self.menu, event.key, event.via)
        if self.state == "recording":
            if event.key == END_OF_DIGITS_KEY:
                self._stop_recording(party)
            return
        if self.state in ("options", "playing"):
            self._chosen(party, event.key, now)

    def _played(self, party: LocalParty, name: str, now: float) -> None:
        if self.state == "beep" and name == BEEP:
            self.state = "recording"
            party.session.start_recording(now)
        elif self.state == "options" and name == PROMPT_GREETING_OPTIONS:
            self._arm(party, now + OPTIONS_WAIT_S, self._waited)
        elif self.state == "playing" and name == self._last_part:
            self._options(party)

    def _waited(self, party: LocalParty, now: float) -> None:
        if self.state != "options":
            return
        if self.times >= OPTIONS_TIMES:
            LOGGER.info("greeting of menu %s: nothing pressed; hanging up", self.menu)
            self.state = "done"
            party.hang_up(now)
            return
        self._options(party)

    def _chosen(self, party: LocalParty, key: str, now: float) -> None:
        self._cancel_timer()
        self.times = 0
        party.session.stop_playing()
        if key == RECORD_KEY:
            self.state = "beep"
            party.session.play(BEEP, tones.beep())
        elif key == LISTEN_KEY:
            parts = ([("recorded", self.recorded)] if self.recorded is not None
                     else self.current)
            self.state = "playing"
            for index, (_name, pcm) in enumerate(parts):
                self._last_part = f"greeting:{self.menu}:{index}"
                party.session.play(self._last_part, pcm)
            if not parts:
                self._options(party)
        elif key == SAVE_KEY:
            if self.recorded is None:
                self._options(party, before=PROMPT_GREETING_NOT_RECORDED)
                return
            self.state = "saving"
            self.on_save(self.recorded, now)
        else:
            self._options(party, before=PROMPT_MENU_INVALID)

    def on_frame(self, party: LocalParty, now: float) -> None:
        recording = party.session.recording
        if self.state == "recording" and recording is not None and (
                recording.duration_s >= self.max_s):
            self._stop_recording(party)  # the upload's limit: a longer file is refused too

    def _stop_recording(self, party: LocalParty) -> None:
        recording = party.session.stop_recording()
        if recording is None or recording.duration_s < MIN_GREETING_S:
            self._options(party, before=PROMPT_GREETING_NOT_RECORDED)
            return
        self.recorded = bytes(recording.pcm)
        LOGGER.info("greeting of menu %s: %.1f s recorded", self.menu, recording.duration_s)
        self._options(party)

    def saved(self, party: LocalParty, ok: bool) -> None:
        """The store has the greeting (or could not write it): say which."""
        if self.state != "saving" or party.closed:
            return
        self._options(party, before=PROMPT_GREETING_SAVED if ok else PROMPT_GREETING_NOT_SAVED)

    def stop(self) -> None:
        self._cancel_timer()

    def on_remote_hangup(self, party: LocalParty, now: float) -> None:
        # Hung up without 3: what was recorded is dropped, the greeting stays as it was.
        party.session.stop_recording()
        self.stop()
