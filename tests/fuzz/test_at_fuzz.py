"""The AT codec and the SMS PDU decoder fuzzed (issue 16): a modem's byte stream — result
codes, unsolicited lines, PDUs, prompts and noise — cut at any points, with or without a
command pending, never raises from the codec (noise becomes `GarbageDiscarded`); PDUs and
TS 27.005 headers decode or raise the documented `SmsDecodeError` / `UssdDecodeError`."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from hal.modem.at import AtCodec, PromptReceived
from hal.modem.sms import (
    Reassembler,
    SmsDecodeError,
    decode_deliver,
    decode_status_report,
    decode_submit,
    iter_cmgl,
    parse_cmgl_header,
    parse_cmgr_header,
    parse_cmt_header,
    parse_cmti,
)
from hal.modem.ussd import UssdDecodeError, UssdTextForm, parse_cusd
from tests.fuzz.conftest import FUZZ
from tests.fuzz.strategies import nasty_text

# A real SMS-DELIVER (TS 23.040 §9.2.2.1), as +CMGR and +CMT hand it over.
DELIVER_PDU = "07919730071111F1040B919701119905F80000211062320150610CC8329BFD065DDF72363904"
MODEM_LINES = [
    "OK", "ERROR", "+CME ERROR: 10", "+CMS ERROR: 500", "NO CARRIER", "BUSY", "NO ANSWER",
    "NO DIALTONE", "CONNECT", "CONNECT 9600", "VCON", "COMMAND NOT SUPPORT", "RING",
    "+CLIP: \"+79161234567\",145,,,,0", "+CREG: 1,\"00A1\",\"1B2C\"", "+CSQ: 17,99",
    "^RSSI: 12", "+CMTI: \"SM\",3", "+CMT: ,24", DELIVER_PDU, "+CMGR: 0,,24",
    "+CMGL: 1,0,,24", "+CUSD: 0,\"Balance: 100\",15", "+CUSD: 1,\"open quote", "> ",
    "354930012345678", "ATI", "+CPIN: READY", "^CEND:1,0,104,16",
]
COMMANDS = ["AT", "AT+CSQ", "AT+CMGR=3", "AT+CMGL=4", "AT+CMGS=24", "ATD+79161234567;",
            "AT+CUSD=1,\"*100#\",15", "AT^CVOICE?", "ATI", "AT+CLCC"]


@st.composite
def modem_streams(draw: st.DrawFn) -> list[bytes]:
    """What the modem writes, cut into the reads the port returns."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["line", "line", "text", "noise", "long"]))
        if kind == "line":
            text = draw(st.sampled_from(MODEM_LINES))
        elif kind == "text":
            text = draw(nasty_text)
        elif kind == "long":
            text = "A" * draw(st.integers(2000, 5000))
        else:
            parts.append(draw(st.binary(max_size=80)))
            continue
        ending = draw(st.sampled_from(["\r\n", "\r", "\n", "", "\r\r\n"]))
        parts.append((draw(st.sampled_from(["\r\n", ""])) + text + ending)
                     .encode("utf-8", "surrogateescape"))
    stream = b"".join(parts)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


@FUZZ
@given(modem_streams(), st.one_of(st.none(), st.sampled_from(COMMANDS)), st.booleans())
def test_the_codec_takes_any_stream_without_raising(
        reads: list[bytes], command: str | None, data_mode: bool) -> None:
    codec = AtCodec()
    if command is not None:
        codec.send_command(command)
    if data_mode:
        codec.enter_data_mode()
    for index, data in enumerate(reads):
        codec.receive_data(data)
        while (event := codec.next_event()) is not None:
            if isinstance(event, PromptReceived) and codec.pending is not None:
                codec.send_pdu(b"0011000B919761")
        if data_mode and index == len(reads) // 2:
            codec.leave_data_mode(b"\r\nOK\r\n")
            data_mode = False
        if codec.pending is None and command is not None and not codec.data_mode:
            codec.send_command(command)  # the driver's next command


def mutated_pdu() -> st.SearchStrategy[str]:
    def mutate(pdu: str, index: int, replacement: str, cut: int) -> str:
        return (pdu[:index] + replacement + pdu[index + len(replacement):])[:cut]
    return st.builds(mutate, st.just(DELIVER_PDU), st.integers(0, len(DELIVER_PDU)),
                     st.text(alphabet="0123456789ABCDEFabcdefXZ ", max_size=6),
                     st.integers(0, len(DELIVER_PDU) + 10))


@FUZZ
@given(st.one_of(mutated_pdu(), st.binary(max_size=200).map(bytes.hex),
                 st.binary(max_size=200)), st.one_of(st.none(), st.integers(-5, 300)))
def test_pdus_decode_or_raise_sms_decode_error(pdu: str | bytes, tpdu_length: int | None
                                               ) -> None:
    reassembler = Reassembler()
    for decode in (decode_deliver, decode_submit, decode_status_report):
        try:
            message = decode(pdu, tpdu_length=tpdu_length)
        except SmsDecodeError:
            continue
        if decode is decode_deliver:
            reassembler.add(message, now=0.0)  # type: ignore[arg-type]


@FUZZ
@given(st.one_of(st.sampled_from(MODEM_LINES), nasty_text,
                 st.builds(lambda p, t: p + t, st.sampled_from(
                     ["+CMGR: ", "+CMGL: ", "+CMT: ", "+CMTI: ", "+CUSD: "]), nasty_text)))
def test_modem_headers_parse_or_raise_the_decode_error(line: str) -> None:
    for parse in (parse_cmgr_header, parse_cmgl_header, parse_cmt_header, parse_cmti):
        with contextlib.suppress(SmsDecodeError):
            parse(line)
    list(iter_cmgl([line, DELIVER_PDU, line]))
    for form in UssdTextForm:
        with contextlib.suppress(UssdDecodeError):
            parse_cusd(line, form=form)
