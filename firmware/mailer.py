"""The daemon's side of notifications (issue 15): the outbox's sender.

`Mailer.notice(event)` is called from the daemon's `flush()` for each of the core's record
events; the pure `firmware.notify.Notifier` says what to send, and the messages go to the
outbox table (`firmware.store.outbox`) from a thread of the mailer's own — the event loop
never waits for SQLite, nor for SMTP. A task (`run`) takes the due rows and sends them: e-mail
with smtplib in a worker thread (STARTTLS, RFC 3207, or implicit TLS, RFC 8314; AUTH when a
login is set), SMS through a GSM line's driver (`firmware.control_modems.sms_send`). A failure
is retried with backoff — 1 min doubling to 1 h — and given up on a day after the message was
made; the web UI lists the failures. The same task makes the daily summary at its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

from . import control_modems
from .core.events import CallbackStateChanged, CallRecorded, VoicemailLeft
from .notify import Notifier, VoicemailFact
from .reports import daily, per_manager
from .store import Config, Store
from .store.config import Smtp
from .store.outbox import Outbox, Outgoing

LOGGER = logging.getLogger(__name__)

FIRST_RETRY_S = 60.0
MAX_RETRY_S = 3600.0
GIVE_UP_AFTER_S = 86400.0
# A voicemail's e-mail waits this long for its audio to reach the voicemails table (the
# recorder writes it from its own thread), then goes without it rather than not at all.
AUDIO_WAIT_S = 60.0
AUDIO_POLL_S = 1.0
SUMMARY_CHECK_INTERVAL_S = 30.0
DUE_BATCH = 20
# SMTP replies that no retry will change: the mailbox does not exist or is not allowed
# (RFC 5321 §4.2.3: 550, 551, 553, 554 to RCPT).
PERMANENT_SMTP_CODES = frozenset({550, 551, 553, 554})

T = TypeVar("T")
SmsSent = Callable[[str, str, str], object]


class PermanentError(Exception):
    """Sending failed in a way no retry will mend."""


class Mailer:
    def __init__(self, loop: asyncio.AbstractEventLoop, db_path: str | Path, *,
                 config: Callable[[], Config], wall_offset_s: float,
                 drivers: Callable[[], Mapping[str, Any]] = dict,
                 on_sms_sent: SmsSent | None = None,
                 first_retry_s: float = FIRST_RETRY_S, max_retry_s: float = MAX_RETRY_S,
                 give_up_after_s: float = GIVE_UP_AFTER_S,
                 summary_check_interval_s: float = SUMMARY_CHECK_INTERVAL_S) -> None:
        self.loop = loop
        self.db_path = Path(db_path)
        self.config = config
        self.wall_offset_s = wall_offset_s
        self.drivers = drivers
        self.on_sms_sent = on_sms_sent
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self.give_up_after_s = give_up_after_s
        self.summary_check_interval_s = summary_check_interval_s
        self.notifier = Notifier(config())
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._outbox: Outbox | None = None  # opened in that thread
        self._wake = asyncio.Event()
        self._writes: set[asyncio.Future[Any]] = set()
        self.sent = 0  # since start, for `linebox status` and tests

    # ------------------------------------------------------------------ facts in
    def notice(self, event: object) -> None:
        """One of the core's events (any kind; those that matter become messages)."""
        notifier = self.notifier
        notifier.config = self.config()
        now = time.time()
        try:
            if isinstance(event, CallRecorded):
                items = notifier.call_recorded(self._to_wall(event.call), now=now)
            elif isinstance(event, CallbackStateChanged):
                items = notifier.callback_state(event.call_id, event.state, now=now)
            elif isinstance(event, VoicemailLeft):
                message = event.message
                items = notifier.voicemail_left(VoicemailFact(
                    call_id=message.call_id, mailbox=message.mailbox, caller=message.caller,
                    left_at=event.wall_time, duration_s=message.duration_s), now=now)
            else:
                return
        except Exception:  # a bug here must not break the daemon's flush
            LOGGER.exception("deciding notifications for %s failed", type(event).__name__)
            return
        if items:
            self.submit(items)

    def restore_pending(self, requests: list[dict[str, Any]]) -> None:
        self.notifier.restore_pending(requests)

    def submit(self, items: list[Outgoing]) -> None:
        """Into the outbox (in the mailer's thread), then the sender wakes."""
        future = asyncio.ensure_future(self._in_thread(
            lambda outbox: outbox.add(items, at=time.time())))
        self._writes.add(future)
        future.add_done_callback(self._added)

    def _added(self, future: asyncio.Future[Any]) -> None:
        self._writes.discard(future)
        if future.cancelled():
            return
        if future.exception() is not None:
            LOGGER.error("notifications not kept: %r", future.exception())
            return
        self._wake.set()

    def _to_wall(self, row: Mapping[str, object]) -> dict[str, object]:
        return {key: value + self.wall_offset_s
                if key.endswith("_at") and isinstance(value, float) else value
                for key, value in row.items()}

    # ------------------------------------------------------------------ the sender
    async def run(self) -> None:
        while True:
            try:
                await self._summary_if_due()
                await self._send_due()
                next_at = await self._in_thread(Outbox.next_due_at)
            except asyncio.CancelledError:
                raise
            except Exception:
                LOGGER.exception("the notifications outbox failed; trying again")
                next_at = None
            wait_s = self.summary_check_interval_s
            if next_at is not None:
                wait_s = max(0.0, min(wait_s, next_at - time.time()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)

    async def close(self) -> None:
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=5.0)
        with contextlib.suppress(Exception):
            await self._in_thread(lambda outbox: outbox.store.close())
        self._thread.shutdown(wait=False)

    async def _summary_if_due(self) -> None:
        notifier = self.notifier
        notifier.config = config = self.config()
        day = notifier.summary_due(time.time())
        if day is None:
            return
        key = f"summary:{day.isoformat()}"

        def figures(outbox: Outbox) -> list[Outgoing]:
            if any(outbox.has(item.key) for item in notifier.summary(day, None, [])):
                return []  # made already (before a restart, maybe)
            zone = config.site.timezone
            rows = daily(outbox.store, day, day, zone)
            return notifier.summary(day, rows[0] if rows else None,
                                    per_manager(outbox.store, day, day, zone))

        items = await self._in_thread(figures)
        if items:
            LOGGER.info("daily summary %s for %d recipient(s)", key, len(items))
            await self._in_thread(lambda outbox: outbox.add(items, at=time.time()))

    async def _send_due(self) -> None:
        while rows := await self._in_thread(lambda o: o.due(time.time(), limit=DUE_BATCH)):
            for row in rows:
                await self._send_one(row)
            if len(rows) < DUE_BATCH:
                return

    async def _send_one(self, row: dict[str, Any]) -> None:
        row_id = int(row["id"])
        try:
            if row["channel"] == "email":
                audio = None
                if row["voicemail_call_id"]:
                    call_id = str(row["voicemail_call_id"])
                    audio = await self._in_thread(lambda o: o.voicemail_audio(call_id))
                    if audio is None and time.time() - row["created_at"] < AUDIO_WAIT_S:
                        await self._in_thread(lambda o: o.retry(
                            row_id, error="waiting for the message's audio",
                            next_at=time.time() + AUDIO_POLL_S, counts=False))
                        return
                smtp = self.config().smtp
                message = build_email(smtp, row, audio)
                await asyncio.to_thread(send_email, smtp, message)
            else:
                await self._send_sms(str(row["recipient"]), str(row["body"]))
        except Exception as exc:
            await self._failed(row, exc)
            return
        self.sent += 1
        LOGGER.info("notification %s sent to %s", row["key"], row["recipient"])
        await self._in_thread(lambda o: o.sent(row_id, at=time.time()))

    async def _failed(self, row: dict[str, Any], exc: Exception) -> None:
        row_id = int(row["id"])
        error = f"{type(exc).__name__}: {exc}"[:500]
        delay = min(self.first_retry_s * 2 ** int(row["attempts"]), self.max_retry_s)
        next_at = time.time() + delay
        if isinstance(exc, PermanentError) or (
                next_at - float(row["created_at"]) > self.give_up_after_s):
            LOGGER.warning("notification %s to %s failed for good: %s", row["key"],
                           row["recipient"], error)
            await self._in_thread(lambda o: o.failed(row_id, error=error))
        else:
            LOGGER.warning("notification %s to %s failed (%s); again in %.0f s", row["key"],
                           row["recipient"], error, delay)
            await self._in_thread(lambda o: o.retry(row_id, error=error, next_at=next_at))

    async def _send_sms(self, number: str, text: str) -> None:
        drivers = self.drivers()
        line = self.config().notifications.sms_line or next(
            (name for name, driver in drivers.items()
             if getattr(driver, "kind", "") == "gsm" and driver.status.state == "up"), None)
        if line is None:
            raise RuntimeError("no GSM line is up")
        answer = await control_modems.sms_send(
            drivers, {"line": line, "number": number, "text": text}, on_sent=self.on_sms_sent)
        if not answer.get("ok"):
            raise RuntimeError(str(answer.get("error")))

    async def _in_thread(self, action: Callable[[Outbox], T]) -> T:
        def run() -> T:
            if self._outbox is None:
                self._outbox = Outbox(Store.open(self.db_path))
            return action(self._outbox)
        return await self.loop.run_in_executor(self._thread, run)


def build_email(smtp: Smtp, row: Mapping[str, Any], audio: bytes | None) -> EmailMessage:
    """The e-mail of an outbox row, with the voicemail's WAV attached when there is one."""
    if not smtp.host:
        raise PermanentError("no SMTP server is configured (smtp: host, from)")
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = str(row["recipient"])
    message["Subject"] = str(row["subject"])
    message["Date"] = email.utils.formatdate(float(row["created_at"]), localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=smtp.sender.rpartition("@")[2]
                                                   .strip(">") or None)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5: no vacation replies to us
    message.set_content(str(row["body"]))
    if audio is not None:
        left = datetime.datetime.fromtimestamp(float(row["created_at"]))
        message.add_attachment(audio, maintype="audio", subtype="wav",
                               filename=f"voicemail-{left:%Y%m%d-%H%M%S}.wav")
    return message


def send_email(smtp: Smtp, message: EmailMessage) -> None:
    """Send one message (blocking: run in a worker thread)."""
    context = ssl.create_default_context()
    if not smtp.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    client: smtplib.SMTP
    if smtp.security == "tls":
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout_s, context=context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s)
    with client:
        if smtp.security == "starttls":
            client.starttls(context=context)  # RFC 3207; fails unless the server offers it
        if smtp.username:
            client.login(smtp.username, smtp.password)
        try:
            client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {code for code, _ in exc.recipients.values()}
            if codes <= PERMANENT_SMTP_CODES:
                raise PermanentError(f"the server refused the address: {exc.recipients}") \
                    from exc
            raise

