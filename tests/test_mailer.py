"""The notifications reach a real SMTP server (aiosmtpd on 127.0.0.1): a voicemail left through
the core and the running daemon arrives with its WAV attached, a missed call arrives, STARTTLS
with a self-signed certificate and a login works, and a server down then up gets the message
once. Every wait is bounded."""

from __future__ import annotations

import asyncio
import email
import email.policy
import subprocess
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from firmware.core.events import CallRecorded
from firmware.mailer import Mailer
from firmware.media.audio import wav_bytes
from firmware.store import Store, parse_config
from firmware.store.outbox import Outbox
from firmware.voicemail import VoicemailMessage
from tests.e2e.linebox import base_config
from tests.e2e.sipp import free_port
from tests.test_daemon import running_daemon

ARRIVE_S = 10.0


class Inbox:
    """aiosmtpd's handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        data = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


def smtp_server(inbox: Inbox, port: int, **options: Any) -> Controller:
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    return controller


def notify_config(port: int, **smtp: Any) -> dict[str, Any]:
    return base_config(
        smtp={"host": "127.0.0.1", "port": port, "security": "none",
              "from": "Linebox <box@office.test>", **smtp},
        notifications={"missed_calls": {"200": {"email": ["boss@office.test"]}},
                       "voicemail": {"200": {"email": ["sales@office.test"]}}})


async def until(predicate: Callable[[], bool], wait_s: float = ARRIVE_S) -> bool:
    deadline = time.monotonic() + wait_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_voicemail_left_through_the_daemon_arrives_with_its_wav_attached(
        tmp_path: Path) -> None:
    inbox, port = Inbox(), free_port()
    server = smtp_server(inbox, port)

    async def scenario() -> None:
        async with running_daemon(tmp_path, notify_config(port)) as (daemon, _):
            pcm = b"\x10\x00" * 8000 * 3  # 3 s of 8 kHz 16-bit audio
            message = VoicemailMessage(call_id="call-1", mailbox="200", caller="+79161234567",
                                       started_at=daemon.loop.time(), duration_s=3.0, pcm=pcm)
            daemon.gateway.voicemail_left(message, daemon.loop.time())  # the core's event
            daemon.flush()
            assert await until(lambda: len(inbox.messages) == 1)
        mail = inbox.messages[0]
        assert inbox.recipients == [["sales@office.test"]]
        assert mail["Subject"] == "Голосовое сообщение от +79161234567 (3 с)"
        (attachment,) = list(mail.iter_attachments())
        assert attachment.get_content_type() == "audio/wav"
        assert attachment.get_content() == wav_bytes(pcm)  # the store's WAV, byte for byte

    try:
        run(scenario)
    finally:
        server.stop()


def test_a_missed_call_recorded_by_the_core_arrives_once(tmp_path: Path) -> None:
    inbox, port = Inbox(), free_port()
    server = smtp_server(inbox, port)
    row = {"id": "call-2", "direction": "inbound", "caller": "+79161234567",
           "number": "4950001", "department": "200", "outcome": "missed",
           "started_at": 100.0, "waited_s": 20.0, "callback_state": None}

    async def scenario() -> None:
        async with running_daemon(tmp_path, notify_config(port)) as (daemon, _):
            for _ in range(2):  # the same record twice: one e-mail (the outbox's key)
                daemon.gateway.emit(CallRecorded(call=row, legs=[]))
                daemon.flush()
            assert await until(lambda: len(inbox.messages) >= 1)
            await asyncio.sleep(1.0)
        assert len(inbox.messages) == 1
        assert inbox.messages[0]["Subject"] == "Пропущенный звонок от +79161234567"
        assert "отдел 200" in inbox.messages[0].get_content()

    try:
        run(scenario)
    finally:
        server.stop()


def _mailer(tmp_path: Path, config: dict[str, Any], **options: Any) -> tuple[Mailer, Path]:
    db = tmp_path / "linebox.db"
    with Store.open(db) as store:
        store.replace_config(parse_config(config))
    cfg = parse_config(config)
    return Mailer(asyncio.get_running_loop(), db, config=lambda: cfg, wall_offset_s=0.0,
                  **options), db


def missed(call_id: str) -> CallRecorded:
    return CallRecorded(call={"id": call_id, "direction": "inbound", "caller": "+7916",
                              "department": "200", "outcome": "missed", "started_at": 0.0},
                        legs=[])


def test_a_server_down_then_up_gets_the_message_once(tmp_path: Path) -> None:
    inbox, port = Inbox(), free_port()

    async def scenario() -> None:
        mailer, db = _mailer(tmp_path, notify_config(port), first_retry_s=0.3)
        task = asyncio.create_task(mailer.run())
        try:
            mailer.notice(missed("call-3"))
            with Store.open(db) as store:
                assert await until(lambda: Outbox(store).rows()[0]["attempts"] >= 2
                                   if Outbox(store).rows() else False)
                row = Outbox(store).rows()[0]
                assert row["state"] == "pending" and "Connection" in row["last_error"]
            server = smtp_server(inbox, port)
            try:
                assert await until(lambda: len(inbox.messages) == 1)
                await asyncio.sleep(1.0)
                assert len(inbox.messages) == 1
                with Store.open(db) as store:
                    assert Outbox(store).rows()[0]["state"] == "sent"
            finally:
                server.stop()
        finally:
            task.cancel()
            await mailer.close()

    run(scenario)


def test_an_address_the_server_refuses_is_given_up_at_once(tmp_path: Path) -> None:
    class Refusing(Inbox):
        async def handle_RCPT(self, server: Any, session: Any, envelope: Envelope,
                              address: str, options: list[str]) -> str:
            return "550 no such user"

    port = free_port()
    server = smtp_server(Refusing(), port)

    async def scenario() -> None:
        mailer, db = _mailer(tmp_path, notify_config(port))
        task = asyncio.create_task(mailer.run())
        try:
            mailer.notice(missed("call-4"))
            with Store.open(db) as store:
                assert await until(lambda: bool(Outbox(store).rows(state="failed")))
                assert "no such user" in Outbox(store).rows()[0]["last_error"]
        finally:
            task.cancel()
            await mailer.close()

    try:
        run(scenario)
    finally:
        server.stop()


@pytest.fixture()
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return key, cert


def test_starttls_with_a_self_signed_certificate_and_a_login(
        tmp_path: Path, self_signed: tuple[Path, Path]) -> None:
    import ssl
    key, cert = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"mail-pw")

    inbox, port = Inbox(), free_port()
    server = smtp_server(inbox, port, tls_context=context, require_starttls=True,
                         authenticator=authenticator, auth_require_tls=True)

    async def scenario() -> None:
        config = notify_config(port, security="starttls", username="box",
                               password="mail-pw", verify_certificate=False)
        mailer, _ = _mailer(tmp_path, config)
        task = asyncio.create_task(mailer.run())
        try:
            mailer.notice(missed("call-5"))
            assert await until(lambda: len(inbox.messages) == 1)
        finally:
            task.cancel()
            await mailer.close()
        assert logins == [(b"box", b"mail-pw")]

    try:
        run(scenario)
    finally:
        server.stop()
