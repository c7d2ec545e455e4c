"""What to tell whom, and when: the pure half of notifications (issue 15).

The core already states the facts — a finished call's record (`CallRecorded`, with its
outcome), a message left in a mailbox (`VoicemailLeft`), a callback request's final state
(`CallbackStateChanged`). A `Notifier` turns each fact, with the configuration (`smtp:`,
`notifications:`) and the wall time `now`, into `Outgoing` e-mails and SMS for the outbox
(`firmware.store.outbox`); `firmware.mailer` sends them. Nothing here reads the clock, the disk
or the network.

What counts as a missed call is what the reports call one (`firmware.reports.MISSED_OUTCOMES`:
an inbound call the office took while open and nobody answered), minus what is told otherwise:
a message left (told as a voicemail), and a callback request still pending (not missed yet: the
office promised to call back; it becomes missed if the callback expires or fails).
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .reports import MISSED_OUTCOMES, DailyRow, ManagerRow
from .store.config import Config, Recipients
from .store.outbox import Outgoing

# Pending callback requests remembered (a request becomes a missed call if it expires); the
# oldest go first past this many — a box does not have that many open promises.
PENDING_CALLBACKS_MAX = 1000
CALLBACK_FINAL_MISSED = ("expired", "failed")
MISSED_NOW = tuple(o for o in MISSED_OUTCOMES if o not in ("voicemail", "callback"))

TEXTS = {
    "ru": {
        "missed_subject": "Пропущенный звонок от {caller}",
        "missed_body": "Пропущенный звонок от {caller} в {time} ({date}), отдел {department}"
                       "{number}. Ждал {waited}.",
        "missed_sms": "Пропущен звонок от {caller} в {time}, отдел {department}",
        "callback_missed": " Обратный звонок не состоялся ({state}).",
        "voicemail_subject": "Голосовое сообщение от {caller} ({duration})",
        "voicemail_body": "{caller} оставил сообщение в ящике {mailbox} в {time} ({date}), "
                          "длительность {duration}. Запись во вложении.",
        "voicemail_sms": "Сообщение от {caller} в ящике {mailbox}, {duration}",
        "summary_subject": "Звонки за {date}",
        "summary_body": "Звонки за {date}: принято {received}, отвечено {answered}, "
                        "пропущено {missed}, в нерабочее время {closed}.",
        "summary_manager": "{extension} {name}: отвечено {answered} из {offered}, "
                           "не взято {missed_offers}, в разговоре {talk}",
        "summary_sms": "{date}: звонков {received}, отвечено {answered}, пропущено {missed}",
        "caller_sms": "Извините, мы пропустили ваш звонок. Мы перезвоним вам.",
        "seconds": "{0} с", "minutes": "{0} мин {1} с", "unknown": "неизвестного номера",
        "waited_unknown": "неизвестно сколько",
    },
    "en": {
        "missed_subject": "Missed call from {caller}",
        "missed_body": "Missed call from {caller} at {time} ({date}), department {department}"
                       "{number}. Waited {waited}.",
        "missed_sms": "Missed call from {caller} at {time}, department {department}",
        "callback_missed": " The callback did not happen ({state}).",
        "voicemail_subject": "Voicemail from {caller} ({duration})",
        "voicemail_body": "{caller} left a message in mailbox {mailbox} at {time} ({date}), "
                          "{duration} long. The recording is attached.",
        "voicemail_sms": "Voicemail from {caller} in mailbox {mailbox}, {duration}",
        "summary_subject": "Calls of {date}",
        "summary_body": "Calls of {date}: {received} received, {answered} answered, "
                        "{missed} missed, {closed} after hours.",
        "summary_manager": "{extension} {name}: answered {answered} of {offered}, "
                           "{missed_offers} not taken, {talk} talking",
        "summary_sms": "{date}: {received} calls, {answered} answered, {missed} missed",
        "caller_sms": "Sorry we missed your call. We will call you back.",
        "seconds": "{0} s", "minutes": "{0} min {1} s", "unknown": "an unknown number",
        "waited_unknown": "unknown",
    },
}


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailFact:
    """A message left: which call, which mailbox, who, when (Unix seconds), how long."""

    call_id: str
    mailbox: str
    caller: str
    left_at: float
    duration_s: float


class Notifier:
    """Facts in, `Outgoing` messages out. Keeps the callback requests still pending (their
    call becomes a missed one if the request expires or fails)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._pending: dict[str, Mapping[str, object]] = {}  # call id → the call's record

    # ------------------------------------------------------------------ facts
    def call_recorded(self, call: Mapping[str, object], *, now: float) -> list[Outgoing]:
        """A finished call (its record, times in Unix seconds)."""
        if call.get("direction") != "inbound":
            return []
        outcome = call.get("outcome")
        if outcome == "callback":
            state = call.get("callback_state")
            if state in CALLBACK_FINAL_MISSED:
                return self._missed(call, now=now, callback_state=str(state))
            if state in (None, "requested"):
                self._remember(call)
            return []
        if outcome in MISSED_NOW:
            return self._missed(call, now=now)
        return []

    def callback_state(self, call_id: str, state: str, *, now: float) -> list[Outgoing]:
        """The promised callback of an already recorded call went `state`."""
        call = self._pending.pop(call_id, None)
        if call is None or state not in CALLBACK_FINAL_MISSED:
            return []
        return self._missed(call, now=now, callback_state=state)

    def restore_pending(self, requests: Iterable[Mapping[str, object]]) -> None:
        """The callback requests a restart found still pending (the store's rows)."""
        for request in requests:
            self._remember({"id": request["origin_call_id"], "direction": "inbound",
                            "caller": request.get("customer"), "number": request.get("number"),
                            "department": request.get("department"),
                            "started_at": request.get("entered_at"), "waited_s": None})

    def voicemail_left(self, fact: VoicemailFact, *, now: float) -> list[Outgoing]:
        recipients = self.config.notifications.voicemail.get(fact.mailbox)
        if recipients is None:
            return []
        words = self._words(fact.left_at)
        values = {**words, "caller": fact.caller or self._t("unknown"), "mailbox": fact.mailbox,
                  "duration": self._duration(fact.duration_s)}
        return self._to(recipients, f"voicemail:{fact.call_id}", "voicemail",
                        subject=self._t("voicemail_subject").format(**values),
                        body=self._t("voicemail_body").format(**values),
                        sms=self._t("voicemail_sms").format(**values),
                        voicemail_call_id=fact.call_id)

    # ------------------------------------------------------------------ the daily summary
    def summary_due(self, now: float) -> datetime.date | None:
        """The local day whose summary is due at `now` (its time has come), or None."""
        at = self.config.notifications.summary_time
        recipients = self.config.notifications.summary
        if at is None or not (recipients.email or recipients.sms):
            return None
        local = datetime.datetime.fromtimestamp(now, self._zone())
        hour, minute = (int(part) for part in at.split(":"))
        return local.date() if (local.hour, local.minute) >= (hour, minute) else None

    def summary(self, day: datetime.date, daily: DailyRow | None,
                managers: Sequence[ManagerRow]) -> list[Outgoing]:
        """The day's figures (`firmware.reports.daily` and `per_manager` of that day)."""
        values: dict[str, object] = {
            "date": day.isoformat(), "received": daily.received if daily else 0,
            "answered": daily.answered if daily else 0, "missed": daily.missed if daily else 0,
            "closed": daily.closed if daily else 0,
        }
        lines = [self._t("summary_body").format(**values), ""]
        for row in managers:
            lines.append(self._t("summary_manager").format(
                extension=row.extension, name=row.name, answered=row.answered,
                offered=row.offered, missed_offers=row.missed_offers,
                talk=self._duration(row.talk_s)))
        return self._to(self.config.notifications.summary, f"summary:{day.isoformat()}",
                        "summary", subject=self._t("summary_subject").format(**values),
                        body="\n".join(lines).rstrip() + "\n",
                        sms=self._t("summary_sms").format(**values))

    # ------------------------------------------------------------------ inside
    def _missed(self, call: Mapping[str, object], *, now: float,
                callback_state: str | None = None) -> list[Outgoing]:
        department = str(call.get("department") or "")
        recipients = self.config.notifications.missed_calls.get(department)
        if recipients is None:
            return []
        started = call.get("started_at")
        words = self._words(float(started) if isinstance(started, int | float) else now)
        waited = call.get("waited_s")
        caller = str(call.get("caller") or "")
        number = call.get("number")
        values = {**words, "caller": caller or self._t("unknown"), "department": department,
                  "number": f" ({number})" if number else "",
                  "waited": self._duration(float(waited)) if isinstance(waited, int | float)
                  else self._t("waited_unknown")}
        body = self._t("missed_body").format(**values)
        if callback_state is not None:
            body += self._t("callback_missed").format(state=callback_state)
        out = self._to(recipients, f"missed:{call.get('id')}", "missed",
                       subject=self._t("missed_subject").format(**values), body=body,
                       sms=self._t("missed_sms").format(**values))
        if recipients.caller_sms and _textable(caller):
            text = self.config.notifications.caller_sms_text or self._t("caller_sms")
            # Once per caller per local day: the key is the outbox's, kept across restarts.
            out.append(Outgoing(key=f"caller:{caller}:{words['date']}", kind="caller",
                                channel="sms", recipient=caller, subject="", body=text))
        return out

    def _to(self, recipients: Recipients, key: str, kind: str, *, subject: str, body: str,
            sms: str, voicemail_call_id: str | None = None) -> list[Outgoing]:
        out = [Outgoing(key=f"{key}:email:{address}", kind=kind, channel="email",
                        recipient=address, subject=subject, body=body,
                        voicemail_call_id=voicemail_call_id)
               for address in recipients.email]
        out += [Outgoing(key=f"{key}:sms:{number}", kind=kind, channel="sms", recipient=number,
                         subject="", body=sms) for number in recipients.sms]
        return out

    def _remember(self, call: Mapping[str, object]) -> None:
        self._pending[str(call.get("id"))] = call
        while len(self._pending) > PENDING_CALLBACKS_MAX:
            self._pending.pop(next(iter(self._pending)))

    def _zone(self) -> datetime.tzinfo:
        try:
            return zoneinfo.ZoneInfo(self.config.site.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return datetime.UTC

    def _words(self, at: float) -> dict[str, str]:
        local = datetime.datetime.fromtimestamp(at, self._zone())
        return {"time": local.strftime("%H:%M"), "date": local.date().isoformat()}

    def _t(self, name: str) -> str:
        return TEXTS.get(self.config.site.language, TEXTS["en"])[name]

    def _duration(self, seconds: float) -> str:
        whole = round(seconds)
        if whole < 60:
            return self._t("seconds").format(whole)
        return self._t("minutes").format(whole // 60, whole % 60)


def _textable(number: str) -> bool:
    """A caller an SMS can reach: a full number, not a withheld one or a short service code."""
    digits = number[1:] if number.startswith("+") else number
    return digits.isdigit() and 10 <= len(digits) <= 15
