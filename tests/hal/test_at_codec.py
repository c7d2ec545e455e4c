"""The sans-IO AT codec: final results, information against unsolicited lines (every URC in every
position of a response, split at every byte boundary), echo, the `> ` prompt, data mode, garbage."""

from __future__ import annotations

import random

import pytest

from hal.modem.at import (
    GARBAGE_SAMPLE_BYTES,
    MAX_LINE_BYTES,
    AtCodec,
    AtEvent,
    AtLocalProtocolError,
    CommandCompleted,
    DataReceived,
    GarbageDiscarded,
    PromptReceived,
    StrayResultReceived,
    UnsolicitedResult,
    command_prefix,
)


def drain(codec: AtCodec) -> list[AtEvent]:
    events: list[AtEvent] = []
    for _ in range(10_000):  # bounded: a codec never holds more events than bytes fed
        event = codec.next_event()
        if event is None:
            return events
        events.append(event)
    raise AssertionError("the codec produced events without end")


def feed(codec: AtCodec, *chunks: bytes) -> list[AtEvent]:
    for chunk in chunks:
        codec.receive_data(chunk)
    return drain(codec)


def answer(command: str, *chunks: bytes, prefix: str | None = None) -> list[AtEvent]:
    codec = AtCodec()
    codec.send_command(command, prefix=prefix)
    return feed(codec, *chunks)


def completion(events: list[AtEvent]) -> CommandCompleted:
    done = [e for e in events if isinstance(e, CommandCompleted)]
    assert len(done) == 1, events
    return done[0]


# ------------------------------------------------------------------ commands and final results


def test_a_command_is_written_with_a_carriage_return() -> None:
    assert AtCodec().send_command("AT+CSQ") == b"AT+CSQ\r"


@pytest.mark.parametrize(("command", "prefix"), [
    ("AT+CSQ", "+CSQ"), ("AT+CREG?", "+CREG"), ("AT+CMGS=23", "+CMGS"),
    ("AT^CVOICE?", "^CVOICE"), ("at+cgsn", "+CGSN"), ("ATI", ""), ("ATD+79161234567;", ""),
    ("AT+QPCMV=0;+QPCMV=1,0;D123;", "+QPCMV"),
])
def test_the_information_prefix_is_the_first_extended_command_name(command: str,
                                                                   prefix: str) -> None:
    assert command_prefix(command) == prefix


@pytest.mark.parametrize(("final", "ok", "code"), [
    ("OK", True, None), ("ERROR", False, None), ("+CME ERROR: 10", False, 10),
    ("+CMS ERROR: 321", False, 321), ("+CME ERROR: SIM not inserted", False, None),
    ("COMMAND NOT SUPPORT", False, None), ("TOO MANY PARAMETERS", False, None),
])
def test_final_results_end_any_command(final: str, ok: bool, code: int | None) -> None:
    done = completion(answer("AT+CPIN?", f"\r\n{final}\r\n".encode()))
    assert (done.ok, done.final, done.error_code, done.info) == (ok, final, code, ())
    assert done.command == "AT+CPIN?"


@pytest.mark.parametrize("final", ["NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"])
def test_call_progress_results_end_a_dial_command_as_failures(final: str) -> None:
    done = completion(answer("ATD+79161234567;", f"\r\n{final}\r\n".encode()))
    assert (done.ok, done.final) == (False, final)


def test_no_carrier_in_the_middle_of_another_command_is_the_end_of_a_call() -> None:
    events = answer("AT+CSQ", b"\r\nNO CARRIER\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert events[0] == UnsolicitedResult(line="NO CARRIER")
    assert completion(events).info == ("+CSQ: 20,99",)


def test_no_carrier_with_no_command_pending_is_unsolicited() -> None:
    assert feed(AtCodec(), b"\r\nNO CARRIER\r\n") == [UnsolicitedResult(line="NO CARRIER")]


def test_a_final_result_with_no_command_pending_is_stray() -> None:
    assert feed(AtCodec(), b"\r\nOK\r\n") == [StrayResultReceived(line="OK")]


def test_a_cancelled_commands_late_answer_is_stray_and_unsolicited() -> None:
    codec = AtCodec()
    codec.send_command("AT+CSQ")
    codec.cancel_command()
    assert codec.pending is None
    assert feed(codec, b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n") == [
        UnsolicitedResult(line="+CSQ: 20,99"), StrayResultReceived(line="OK")]
    codec.send_command("AT+CGSN")
    assert completion(feed(codec, b"\r\n861234567890123\r\n\r\nOK\r\n")).info == (
        "861234567890123",)


def test_bare_lines_are_the_information_of_a_command_without_prefix() -> None:
    done = completion(answer("ATI", b"\r\nManufacturer: huawei\r\nModel: E1550\r\n\r\nOK\r\n"))
    assert done.info == ("Manufacturer: huawei", "Model: E1550")


def test_a_bare_imei_is_the_information_of_cgsn() -> None:
    assert completion(answer("AT+CGSN", b"\r\n861234567890123\r\n\r\nOK\r\n")).info == (
        "861234567890123",)


def test_an_explicit_prefix_overrides_the_derived_one() -> None:
    events = answer("AT+CLCC", b"\r\n+CLCC: 1,0,0,0,0\r\n\r\nOK\r\n", prefix="")
    assert events[0] == UnsolicitedResult(line="+CLCC: 1,0,0,0,0")
    assert completion(events).info == ()


def test_the_creg_read_answer_is_information_and_the_creg_urc_is_not() -> None:
    events = answer("AT+CREG?", b'\r\n+CREG: 1,"00C3","1A2B"\r\n\r\n+CREG: 2,1,"00C3","1A2B"\r\n'
                    b"\r\nOK\r\n")
    assert events[0] == UnsolicitedResult(line='+CREG: 1,"00C3","1A2B"')
    assert completion(events).info == ('+CREG: 2,1,"00C3","1A2B"',)


def test_a_creg_urc_during_the_creg_set_command_is_unsolicited() -> None:
    events = answer("AT+CREG=2", b"\r\n+CREG: 1\r\n\r\nOK\r\n")
    assert events == [UnsolicitedResult(line="+CREG: 1"),
                      CommandCompleted(ok=True, final="OK", info=(), error_code=None,
                                       command="AT+CREG=2")]


def test_the_network_answer_to_cusd_is_unsolicited_even_before_the_ok() -> None:
    events = answer('AT+CUSD=1,"*100#",15', b'\r\n+CUSD: 0,"Balance 100",15\r\n\r\nOK\r\n')
    assert events[0] == UnsolicitedResult(line='+CUSD: 0,"Balance 100",15')
    assert completion(events).ok


def test_a_cusd_text_with_line_breaks_inside_its_quotes_is_one_result() -> None:
    events = feed(AtCodec(), b'\r\n+CUSD: 0,"Balance:\r\n100 rub\r\nBonus 5",15\r\n\r\nRING\r\n')
    assert events == [UnsolicitedResult(line='+CUSD: 0,"Balance:\n100 rub\nBonus 5",15'),
                      UnsolicitedResult(line="RING")]


def test_an_unclosed_cusd_quote_does_not_swallow_the_final_result() -> None:
    codec = AtCodec()
    codec.send_command("AT+CSQ")
    events = feed(codec, b'\r\n+CUSD: 0,"cut off\r\n\r\nOK\r\n')
    assert events[0] == UnsolicitedResult(line='+CUSD: 0,"cut off')
    assert completion(events).ok


def test_cmt_carries_its_pdu_line() -> None:
    assert feed(AtCodec(), b"\r\n+CMT: ,23\r\n0791AABBCC\r\n") == [
        UnsolicitedResult(line="+CMT: ,23", extra=("0791AABBCC",))]


def test_a_cmt_whose_pdu_never_comes_does_not_swallow_the_final_result() -> None:
    codec = AtCodec()
    codec.send_command("AT+CSQ")
    events = feed(codec, b"\r\n+CMT: ,23\r\n\r\nOK\r\n")
    assert events[0] == UnsolicitedResult(line="+CMT: ,23")
    assert completion(events).ok


def test_a_second_command_while_one_is_pending_is_our_bug() -> None:
    codec = AtCodec()
    codec.send_command("AT")
    with pytest.raises(AtLocalProtocolError):
        codec.send_command("AT+CSQ")


@pytest.mark.parametrize("line", ["CSQ", "AT+CSQ\rAT", "AT\x1a", ""])
def test_a_line_that_is_not_one_at_command_is_refused(line: str) -> None:
    with pytest.raises(AtLocalProtocolError):
        AtCodec().send_command(line)


# ------------------------------------------------------------------ echo and line ends


def test_the_echoed_command_before_ate0_is_not_information() -> None:
    done = completion(answer("AT+CGSN", b"AT+CGSN\r\r\n861234567890123\r\n\r\nOK\r\n"))
    assert done.info == ("861234567890123",)


def test_ate0_echoed_then_ok() -> None:
    assert completion(answer("ATE0", b"ATE0\r\r\nOK\r\n")).ok


@pytest.mark.parametrize("ending", [b"\r\n", b"\r\r\n", b"\n", b"\r", b"\r\n\r\n"])
def test_any_mix_of_cr_and_lf_ends_a_line(ending: bytes) -> None:
    done = completion(answer("AT+CSQ", ending + b"+CSQ: 20,99" + ending + ending + b"OK" + ending))
    assert done.info == ("+CSQ: 20,99",)


# ------------------------------------------------------------------ every URC, every position,
#                                                                    every split

URCS: list[tuple[bytes, UnsolicitedResult]] = [
    (b"^RSSI:14", UnsolicitedResult(line="^RSSI:14")),
    (b'^HCSQ:"LTE",50,45,120,20', UnsolicitedResult(line='^HCSQ:"LTE",50,45,120,20')),
    (b"^BOOT:20842599,0,0,0,72", UnsolicitedResult(line="^BOOT:20842599,0,0,0,72")),
    (b'+CREG: 1,"00C3","1A2B"', UnsolicitedResult(line='+CREG: 1,"00C3","1A2B"')),
    (b"+CREG: 5", UnsolicitedResult(line="+CREG: 5")),
    (b"RING", UnsolicitedResult(line="RING")),
    (b'+CLIP: "+79161234567",145,,,,0', UnsolicitedResult(line='+CLIP: "+79161234567",145,,,,0')),
    (b'+CMTI: "SM",3', UnsolicitedResult(line='+CMTI: "SM",3')),
    (b"^ORIG:1,0", UnsolicitedResult(line="^ORIG:1,0")),
    (b"^CONF:1", UnsolicitedResult(line="^CONF:1")),
    (b"^CONN:1,0", UnsolicitedResult(line="^CONN:1,0")),
    (b"^CEND:1,12,104,16", UnsolicitedResult(line="^CEND:1,12,104,16")),
    (b'+QIND: "ccinfo",1,1,4,0,0,"+79161234567",145',
     UnsolicitedResult(line='+QIND: "ccinfo",1,1,4,0,0,"+79161234567",145')),
    (b'^DSCI: 1,1,4,0,"+79161234567",145',
     UnsolicitedResult(line='^DSCI: 1,1,4,0,"+79161234567",145')),
    (b"VOICE CALL: BEGIN", UnsolicitedResult(line="VOICE CALL: BEGIN")),
    (b"VOICE CALL: END: 000012", UnsolicitedResult(line="VOICE CALL: END: 000012")),
    (b"MISSED_CALL: 10:22AM +79161234567",
     UnsolicitedResult(line="MISSED_CALL: 10:22AM +79161234567")),
    (b"^SMMEMFULL", UnsolicitedResult(line="^SMMEMFULL")),
    (b'^SMMEMFULL: "SM"', UnsolicitedResult(line='^SMMEMFULL: "SM"')),
    (b'+CUSD: 0,"Balance 100",15', UnsolicitedResult(line='+CUSD: 0,"Balance 100",15')),
    (b"+CUSD: 5", UnsolicitedResult(line="+CUSD: 5")),
    (b"+CMT: ,24\r\n07919761989901F0040B919761123456F70008",
     UnsolicitedResult(line="+CMT: ,24", extra=("07919761989901F0040B919761123456F70008",))),
    (b"NMBR = 79161234567", UnsolicitedResult(line="NMBR = 79161234567")),
    (b"DATE=0805", UnsolicitedResult(line="DATE=0805")),
]

# (command, response pieces: a URC may come before, between or after any of them, expected info)
RESPONSES: list[tuple[str, list[bytes], tuple[str, ...]]] = [
    ("AT+CSQ", [b"AT+CSQ\r", b"\r\n+CSQ: 20,99\r\n", b"\r\nOK\r\n"], ("+CSQ: 20,99",)),
    ("AT+CMGR=1", [b"\r\n+CMGR: 0,,24\r\n", b"07919761989901F0040B9197\r\n", b"\r\nOK\r\n"],
     ("+CMGR: 0,,24", "07919761989901F0040B9197")),
    ("AT+CGSN", [b"\r\n861234567890123\r\r\n", b"\r\nOK\r\n"], ("861234567890123",)),
    ("AT+CLCC", [b"\r\n+CLCC: 1,1,4,0,0,\"+79161234567\",145\r\n",
                 b"\r\n+CLCC: 2,1,5,0,0,\"+79161234568\",145\r\n", b"\r\nOK\r\n"],
     ('+CLCC: 1,1,4,0,0,"+79161234567",145', '+CLCC: 2,1,5,0,0,"+79161234568",145')),
]


def _interleavings(urc: bytes, pieces: list[bytes]) -> list[bytes]:
    return [b"".join(pieces[:at]) + b"\r\n" + urc + b"\r\n" + b"".join(pieces[at:])
            for at in range(len(pieces) + 1)]


@pytest.mark.parametrize(("command", "pieces", "info"), RESPONSES, ids=[r[0] for r in RESPONSES])
@pytest.mark.parametrize(("urc", "expected"), URCS, ids=[u[0].decode()[:20] for u in URCS])
def test_a_urc_anywhere_in_a_response_split_anywhere_does_not_desync_it(
        command: str, pieces: list[bytes], info: tuple[str, ...], urc: bytes,
        expected: UnsolicitedResult) -> None:
    for stream in _interleavings(urc, pieces):
        for cut in range(len(stream) + 1):
            events = answer(command, stream[:cut], stream[cut:])
            assert events.count(expected) == 1, (stream, cut, events)
            assert len(events) == 2, (stream, cut, events)
            assert completion(events).info == info, (stream, cut, events)
        byte_by_byte = answer(command, *(stream[i:i + 1] for i in range(len(stream))))
        assert byte_by_byte.count(expected) == 1 and completion(byte_by_byte).info == info


def test_a_burst_of_every_urc_in_one_response_keeps_the_answer_and_their_order() -> None:
    burst = b"".join(b"\r\r\n" + urc + b"\r\n" for urc, _ in URCS)
    events = answer("AT+CSQ", b"\r\n+CSQ: 20,99\r\n" + burst + b"\r\nOK\r\n")
    assert events[:-1] == [expected for _, expected in URCS]
    assert completion(events).info == ("+CSQ: 20,99",)


# ------------------------------------------------------------------ the SMS prompt


def test_the_prompt_is_an_event_without_a_line_end() -> None:
    codec = AtCodec()
    codec.send_command("AT+CMGS=23")
    assert feed(codec, b"\r\n> ") == [PromptReceived()]


def test_the_prompt_split_after_its_greater_than_sign_is_one_event() -> None:
    codec = AtCodec()
    codec.send_command("AT+CMGS=23")
    assert feed(codec, b"\r\n>", b" ") == [PromptReceived()]


def test_a_pdu_is_ended_by_ctrl_z() -> None:
    codec = AtCodec()
    codec.send_command("AT+CMGS=23")
    feed(codec, b"\r\n> ")
    assert codec.send_pdu(b"0011000B919761") == b"0011000B919761\x1a"


def test_the_echoed_pdu_is_not_information_of_cmgs() -> None:
    codec = AtCodec()
    codec.send_command("AT+CMGS=23")
    feed(codec, b"AT+CMGS=23\r\r\n> ")
    codec.send_pdu(b"0011000B919761")
    done = completion(feed(codec, b"0011000B919761\x1a\r\n+CMGS: 7\r\n\r\nOK\r\n"))
    assert done.info == ("+CMGS: 7",)


def test_a_pdu_with_ctrl_z_inside_is_our_bug() -> None:
    codec = AtCodec()
    codec.send_command("AT+CMGS=23")
    with pytest.raises(AtLocalProtocolError):
        codec.send_pdu(b"00\x1a11")


# ------------------------------------------------------------------ data mode


def test_connect_enters_data_mode_and_passes_what_follows_raw() -> None:
    codec = AtCodec()
    codec.send_command("AT+VRX")
    events = feed(codec, b"\r\nCONNECT\r", b"\n\x10R\x00\x01\r\nOK\r\n")
    assert events == [
        CommandCompleted(ok=True, final="CONNECT", info=(), error_code=None, command="AT+VRX"),
        DataReceived(data=b"\x10R\x00\x01\r\nOK\r\n"),
    ]
    assert codec.data_mode


def test_connect_with_text_is_a_success() -> None:
    done = completion(answer("ATD5551234", b"\r\nCONNECT 9600\r\n"))
    assert (done.ok, done.final) == (True, "CONNECT 9600")


def test_leaving_data_mode_parses_the_unconsumed_bytes_as_lines() -> None:
    codec = AtCodec()
    codec.send_command("AT+VTX")
    feed(codec, b"\r\nCONNECT\r\n")
    codec.leave_data_mode(b"\r\nOK\r\n")
    assert feed(codec, b"\r\nRING\r\n") == [StrayResultReceived(line="OK"),
                                            UnsolicitedResult(line="RING")]
    codec.send_command("AT")
    assert completion(feed(codec, b"\r\nOK\r\n")).ok


def test_entering_data_mode_by_hand_passes_buffered_bytes() -> None:
    codec = AtCodec()
    codec.receive_data(b"\x10d")
    codec.enter_data_mode()
    assert drain(codec) == [DataReceived(data=b"\x10d")]


def test_no_command_in_data_mode() -> None:
    codec = AtCodec()
    codec.enter_data_mode()
    with pytest.raises(AtLocalProtocolError):
        codec.send_command("AT")


# ------------------------------------------------------------------ garbage


def test_a_non_utf8_line_is_discarded_and_the_command_still_completes() -> None:
    events = answer("AT+CSQ", b"\r\n\xff\xfe\x80\x81\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert events[0] == GarbageDiscarded(data=b"\xff\xfe\x80\x81")
    assert completion(events).info == ("+CSQ: 20,99",)


def test_a_line_of_control_bytes_is_discarded() -> None:
    events = feed(AtCodec(), b"\x01\x02\x03\x7f\r\n")
    assert events == [GarbageDiscarded(data=b"\x01\x02\x03\x7f")]


def test_nul_bytes_around_a_result_are_noise_not_garbage() -> None:
    assert completion(answer("AT", b"\x00\x00OK\x00\r\n")).ok


def test_garbage_glued_to_the_front_of_a_final_result_keeps_the_result() -> None:
    events = answer("AT", b"\r\n\xff\xfe\x01OK\r\n")
    assert events[0] == GarbageDiscarded(data=b"\xff\xfe\x01")
    assert completion(events).ok


def test_an_overlong_line_is_discarded_once_and_the_next_lines_are_read() -> None:
    codec = AtCodec()
    codec.send_command("AT+CSQ")
    noise = b"A" * (MAX_LINE_BYTES * 3)
    events = feed(codec, *(noise[i:i + 500] for i in range(0, len(noise), 500)),
                  b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    garbage = [e for e in events if isinstance(e, GarbageDiscarded)]
    assert len(garbage) == 1 and len(garbage[0].data) == GARBAGE_SAMPLE_BYTES
    assert completion(events).info == ("+CSQ: 20,99",)


def test_random_binary_noise_never_raises_and_the_next_command_works() -> None:
    rng = random.Random(12)
    for _ in range(200):
        codec = AtCodec()
        noise = bytes(rng.choice(b"\x00\x01\x10\x1b\x7f\x80\xc3\xfe\xff\r\n>") for _ in range(64))
        codec.receive_data(noise)
        codec.receive_data(b"\r\n")
        drain(codec)
        codec.cancel_command()
        codec.send_command("AT+CSQ")
        assert completion(feed(codec, b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")).info == ("+CSQ: 20,99",)
