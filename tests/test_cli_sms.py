"""`linebox sms list|send` and `linebox line NAME ussd CODE` (issue 12), and the daemon-side
handlers of the two requests that reach a modem (firmware/control_modems.py).

`sms list` reads a real store. `sms send` and `ussd` go over a real control socket to a server
that hands them to the handlers, as the daemon does, with a stand-in GSM driver behind them: the
handlers are glue between the socket and the driver, whose own tests use the fake modems.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from firmware import control_modems
from firmware.daemon import control_socket_path
from firmware.store import Store
from hal.modem.driver import ModemCommandError
from tests.test_cli import linebox

SERVER_START_TIMEOUT_S = 5.0
BALANCE_REPLY = "Баланс: 123,45 р.\nПакет: 50 мин"


class StandInGsm:
    """What the handlers need of a GSM driver: its kind, send_sms and ussd."""

    kind = "gsm"

    def __init__(self, name: str, *, error: str | None = None) -> None:
        self.name = name
        self.error = error
        self.sent: list[tuple[str, str]] = []
        self.codes: list[str] = []

    async def send_sms(self, number: str, text: str) -> list[int]:
        if self.error:
            raise ModemCommandError(self.error)
        self.sent.append((number, text))
        return [41, 42] if len(text) > 70 else [41]

    async def ussd(self, code: str) -> str:
        if self.error:
            raise ModemCommandError(self.error)
        self.codes.append(code)
        return BALANCE_REPLY


class StandInFxo:
    kind = "fxo"
    name = "city"


def drivers() -> dict[str, Any]:
    return {"mts": StandInGsm("mts"), "city": StandInFxo(),
            "broken": StandInGsm("broken", error="+CMS ERROR: 500")}


def run(coroutine: Any) -> dict[str, Any]:
    answer: dict[str, Any] = asyncio.run(asyncio.wait_for(coroutine, 5.0))
    return answer


# --- the handlers ----------------------------------------------------------------------------


def test_sms_send_hands_the_message_to_the_lines_driver() -> None:
    lines = drivers()
    sent: list[tuple[str, str, str]] = []
    answer = run(control_modems.sms_send(
        lines, {"command": "sms_send", "line": "mts", "number": "+79161234567",
                "text": "Перезвоните"}, on_sent=lambda *fact: sent.append(fact)))
    assert answer == {"ok": True, "line": "mts", "number": "+79161234567", "references": [41],
                      "parts": 1}
    assert lines["mts"].sent == [("+79161234567", "Перезвоните")]
    assert sent == [("mts", "+79161234567", "Перезвоните")]


@pytest.mark.parametrize(("request_", "error"), [
    ({"line": "beeline", "number": "+79161234567", "text": "x"},
     'no modem line "beeline" (modem lines: broken, city, mts)'),
    ({"line": "city", "number": "+79161234567", "text": "x"},
     'line "city" is of kind fxo: only a GSM line can send SMS'),
    ({"number": "+79161234567", "text": "x"}, "name the line (line: NAME)"),
    ({"line": "mts", "number": "+7916-123", "text": "x"},
     'the number must be 3 to 20 digits with an optional "+", got "+7916-123"'),
    ({"line": "mts", "number": 79161234567, "text": "x"},
     'the number must be 3 to 20 digits with an optional "+", got int'),
    ({"line": "mts", "number": "+79161234567", "text": "  "}, "the message is empty"),
    ({"line": "broken", "number": "+79161234567", "text": "x"},
     "broken: the modem did not send it: +CMS ERROR: 500"),
])
def test_sms_send_refuses_with_a_reason(request_: dict[str, Any], error: str) -> None:
    lines = drivers()
    assert run(control_modems.sms_send(lines, {"command": "sms_send", **request_})) == {
        "ok": False, "error": error}
    assert lines["mts"].sent == []


def test_sms_send_refuses_a_message_of_more_than_ten_parts() -> None:
    lines = drivers()
    answer = run(control_modems.sms_send(
        lines, {"line": "mts", "number": "+79161234567", "text": "Я" * 671}))
    assert answer["ok"] is False and "too long" in answer["error"]
    assert run(control_modems.sms_send(
        lines, {"line": "mts", "number": "+79161234567", "text": "Я" * 670}))["ok"] is True


def test_ussd_returns_the_networks_reply() -> None:
    lines = drivers()
    assert run(control_modems.ussd(lines, {"command": "ussd", "line": "mts",
                                           "code": "*100#"})) == {
        "ok": True, "line": "mts", "code": "*100#", "reply": BALANCE_REPLY}
    assert lines["mts"].codes == ["*100#"]


@pytest.mark.parametrize(("request_", "fragment"), [
    ({"line": "mts", "code": "*100#; ATH"}, "a USSD code is made of digits"),
    ({"line": "mts", "code": ""}, "a USSD code is made of digits"),
    ({"line": "city", "code": "*100#"}, "only a GSM line can send USSD codes"),
    ({"line": "nowhere", "code": "*100#"}, 'no modem line "nowhere"'),
    ({"line": "broken", "code": "*100#"}, "broken: no answer to *100#: +CMS ERROR: 500"),
])
def test_ussd_refuses_with_a_reason(request_: dict[str, Any], fragment: str) -> None:
    answer = run(control_modems.ussd(drivers(), request_))
    assert answer["ok"] is False and fragment in answer["error"]


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "linebox.db")
    yield opened
    opened.close()


def test_sms_list_prints_received_messages_newest_first(store: Store, tmp_path: Path) -> None:
    store.add_sms(line="mts", direction="in", number="+79161234567", text="Первое",
                  at=1_760_000_000.0)
    store.add_sms(line="mts", direction="in", number="MTS", text="Баланс 100 р.",
                  at=1_760_000_060.0)
    store.add_sms(line="mts", direction="out", number="+79160000000", text="sent, not listed",
                  at=1_760_000_090.0)
    listed = linebox("sms", "list", "--db", str(tmp_path / "linebox.db"), "--tz", "UTC")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines == [
        "2025-10-09 08:54:20  mts         MTS               Баланс 100 р.",
        "2025-10-09 08:53:20  mts         +79161234567      Первое",
    ]


def test_sms_list_json_has_line_sender_text_and_received_at(store: Store, tmp_path: Path
                                                            ) -> None:
    store.add_sms(line="mts", direction="in", number="+79161234567", text="Привет\nмир",
                  at=1_760_000_000.0, complete=False)
    store.add_sms(line="beeline", direction="in", number="+79030000000", text="other line",
                  at=1_760_000_001.0)
    listed = linebox("sms", "list", "--line", "mts", "--json", "--tz", "Europe/Moscow",
                     "--db", str(tmp_path / "linebox.db"))
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [{
        "line": "mts", "sender": "+79161234567", "text": "Привет\nмир",
        "received_at": "2025-10-09T11:53:20+03:00", "complete": False,
    }]


def test_sms_list_shows_control_characters_instead_of_obeying_them(store: Store,
                                                                   tmp_path: Path) -> None:
    store.add_sms(line="mts", direction="in", number="+79161234567",
                  text="\x1b[2Jcleared?", at=1.0)
    listed = linebox("sms", "list", "--db", str(tmp_path / "linebox.db"))
    assert "\x1b" not in listed.stdout and "\\x1b[2Jcleared?" in listed.stdout


def test_sms_list_of_an_empty_inbox(store: Store, tmp_path: Path) -> None:
    listed = linebox("sms", "list", "--db", str(tmp_path / "linebox.db"))
    assert (listed.returncode, listed.stdout) == (0, "no messages\n")


def test_sms_list_without_a_database_creates_none(tmp_path: Path) -> None:
    listed = linebox("sms", "list", "--db", str(tmp_path / "absent.db"))
    assert listed.returncode == 1 and "no database" in listed.stderr
    assert not (tmp_path / "absent.db").exists()


class ControlServer:
    """A control socket beside `db` answering sms_send and ussd with the handlers, in a thread
    of its own (the CLI under test is another process)."""

    def __init__(self, db: Path, lines: Mapping[str, Any],
                 status: dict[str, Any] | None = None) -> None:
        self.path = control_socket_path(db)
        self.lines = lines
        self.status = status  # what a "status" request is answered with
        self.requests: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ControlServer:
        self.thread.start()
        assert self.ready.wait(SERVER_START_TIMEOUT_S), "control server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(SERVER_START_TIMEOUT_S)

    def _run(self) -> None:
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self.stop = asyncio.Event()
        server = await asyncio.start_unix_server(self._answer, str(self.path))
        self.ready.set()
        async with server:
            await self.stop.wait()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = json.loads(await reader.readline())
        self.requests.append(request)
        handler = {"sms_send": control_modems.sms_send, "ussd": control_modems.ussd}
        if request["command"] == "status":
            answer = {"ok": True, "status": self.status or {"lines": []}}
        else:
            answer = await handler[request["command"]](self.lines, request)
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()
        writer.close()


def test_sms_send_goes_to_the_daemon_and_says_how_many_parts(tmp_path: Path) -> None:
    lines = drivers()
    with ControlServer(tmp_path / "linebox.db", lines) as server:
        sent = linebox("sms", "send", "--line", "mts", "+79161234567", "Я" * 100,
                       "--db", str(tmp_path / "linebox.db"))
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout == "mts: sent to +79161234567 in 2 part(s)\n"
    assert server.requests == [{"command": "sms_send", "line": "mts", "number": "+79161234567",
                                "text": "Я" * 100}]
    assert lines["mts"].sent == [("+79161234567", "Я" * 100)]


def test_sms_send_prints_the_daemons_refusal(tmp_path: Path) -> None:
    with ControlServer(tmp_path / "linebox.db", drivers()):
        sent = linebox("sms", "send", "--line", "city", "+79161234567", "hi",
                       "--db", str(tmp_path / "linebox.db"))
    assert sent.returncode == 1
    assert sent.stderr == 'linebox: line "city" is of kind fxo: only a GSM line can send SMS\n'


def test_line_ussd_prints_the_reply_line_by_line(tmp_path: Path) -> None:
    lines = drivers()
    with ControlServer(tmp_path / "linebox.db", lines) as server:
        asked = linebox("line", "mts", "ussd", "*100#", "--db", str(tmp_path / "linebox.db"))
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == "Баланс: 123,45 р.\nПакет: 50 мин\n"
    assert server.requests == [{"command": "ussd", "line": "mts", "code": "*100#"}]


def test_line_ussd_without_a_daemon_says_so(tmp_path: Path) -> None:
    asked = linebox("line", "mts", "ussd", "*100#", "--db", str(tmp_path / "linebox.db"))
    assert asked.returncode == 1 and "no daemon is running" in asked.stderr
