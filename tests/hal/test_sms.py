"""hal.modem.sms: what the SMS codec and the reassembler promise the GSM driver."""

import random
from datetime import datetime, timedelta, timezone

import pytest

from hal.modem import sms
from hal.modem.sms import Alphabet, Concatenation, Reassembler, SmsDecodeError

MOSCOW = timezone(timedelta(hours=3))
STAMP = datetime(2024, 3, 1, 9, 30, 5, tzinfo=MOSCOW)


def deliver(sender: str, text: str, *, reference: int = 7) -> list[sms.SmsDeliver]:
    pdus = sms.encode_deliver(
        sender, text, timestamp=STAMP, reference=reference, smsc="+79168999100"
    )
    return [sms.decode_deliver(pdu) for pdu in pdus]


def submit_round_trip(text: str) -> str:
    pdus = sms.encode_submit("+79161234567", text, reference=42)
    return "".join(sms.decode_submit(pdu.data).text for pdu in pdus)


# ---------------------------------------------------------------- encoding


def test_cyrillic_goes_as_ucs2_and_comes_back() -> None:
    text = "Привет! Баланс 123.45 р. Ёлка, щука, ъ."
    [pdu] = sms.encode_submit("+79161234567", text, reference=1)
    decoded = sms.decode_submit(pdu.data)
    assert decoded.alphabet is Alphabet.UCS2
    assert decoded.text == text


def test_emoji_surrogate_pairs_come_back_whole() -> None:
    text = "Встреча в 10:00 👍🏽 🇷🇺"
    assert submit_round_trip(text) == text


def test_gsm_extension_characters_stay_gsm7_and_come_back() -> None:
    text = "Price: 5€ [a] {b} ~c^ |d| \\e"
    [pdu] = sms.encode_submit("+4915112345678", text, reference=1)
    assert sms.decode_submit(pdu.data).alphabet is Alphabet.GSM7
    assert submit_round_trip(text) == text


def test_160_gsm7_characters_fit_one_message() -> None:
    assert len(sms.encode_submit("+1555", "x" * 160, reference=1)) == 1


def test_161_gsm7_characters_take_two_parts_of_153_and_8() -> None:
    pdus = sms.encode_submit("+1555", "x" * 161, reference=1)
    assert [len(sms.decode_submit(p.data).text) for p in pdus] == [153, 8]


def test_extension_characters_count_twice_towards_160() -> None:
    assert len(sms.encode_submit("+1555", "€" * 80, reference=1)) == 1
    assert len(sms.encode_submit("+1555", "€" * 80 + "x", reference=1)) == 2


def test_70_ucs2_characters_fit_one_message() -> None:
    assert len(sms.encode_submit("+7916", "я" * 70, reference=1)) == 1


def test_71_ucs2_characters_take_two_parts_of_67_and_4() -> None:
    pdus = sms.encode_submit("+7916", "я" * 71, reference=1)
    assert [len(sms.decode_submit(p.data).text) for p in pdus] == [67, 4]


def test_a_part_never_ends_inside_an_escape_sequence() -> None:
    text = "x" * 152 + "€" + "y" * 10  # the euro's two septets would straddle 153
    parts = [sms.decode_submit(p.data).text for p in sms.encode_submit("+1", text, reference=1)]
    assert parts[0] == "x" * 152
    assert "".join(parts) == text


def test_a_part_never_ends_inside_a_surrogate_pair() -> None:
    text = "я" * 66 + "😀" + "я" * 10  # the emoji's two units would straddle 67
    parts = [sms.decode_submit(p.data).text for p in sms.encode_submit("+1", text, reference=1)]
    assert parts[0] == "я" * 66
    assert "".join(parts) == text


def test_parts_carry_one_reference_and_their_sequence() -> None:
    pdus = sms.encode_submit("+1555", "z" * 400, reference=300)
    assert [sms.decode_submit(p.data).concatenation for p in pdus] == [
        Concatenation(reference=300 & 0xFF, total=3, sequence=n) for n in (1, 2, 3)
    ]


def test_every_part_fits_140_octets_of_user_data() -> None:
    for text in ("€" * 500, "😀" * 200, "Щ" * 300):
        for pdu in sms.encode_submit("+79161234567", text, reference=1):
            # TPDU header here: first octet, MR, 8-octet address, PID, DCS, UDL = 13 octets.
            assert pdu.tpdu_length - 13 <= sms.USER_DATA_MAX_OCTETS


def test_tpdu_length_leaves_out_the_smsc_field() -> None:
    [pdu] = sms.encode_submit("+79161234567", "hi", reference=1)
    assert pdu.hex.startswith("00")
    assert pdu.tpdu_length == len(pdu.data) - 1


def test_status_report_request_sets_tp_srr() -> None:
    [pdu] = sms.encode_submit("+1555", "hi", reference=1, request_status_report=True)
    assert sms.decode_submit(pdu.data).status_report_requested


def test_flash_message_is_class_0() -> None:
    [pdu] = sms.encode_submit("+1555", "hi", reference=1, flash=True)
    assert sms.decode_submit(pdu.data).dcs == 0x10


def test_empty_text_is_one_empty_message() -> None:
    [pdu] = sms.encode_submit("+1555", "", reference=1)
    assert sms.decode_submit(pdu.data).text == ""


def test_a_recipient_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError):
        sms.encode_submit("Megafon", "hi", reference=1)


# ---------------------------------------------------------------- decoding


def test_international_sender_gets_a_plus_and_the_timestamp_its_zone() -> None:
    [message] = deliver("+79161234567", "Hello")
    assert message.sender == "+79161234567"
    assert message.timestamp == STAMP
    assert message.timestamp is not None and message.timestamp.utcoffset() == timedelta(hours=3)
    assert message.smsc == "+79168999100"


def test_alphanumeric_sender_is_decoded_from_its_septets() -> None:
    [message] = deliver("Tinkoff", "Код: 1234")
    assert message.sender == "Tinkoff"
    assert message.text == "Код: 1234"


def test_16_bit_concatenation_reference_is_read() -> None:
    # DELIVER with UDH 06 08 04 1234 02 01 and UCS2 "AB".
    pdu = "00" + "44" + "0B919761214365F7" + "0008" + "42301090035021" + "0B"
    pdu += "060804123402010041" + "0042"
    message = sms.decode_deliver(pdu)
    assert message.concatenation == Concatenation(reference=0x1234, total=2, sequence=1)
    assert message.text == "AB"


def test_a_concatenation_element_with_sequence_beyond_total_is_ignored() -> None:
    # TS 23.040 §9.2.3.24.1: the whole element is ignored, the text is still delivered.
    pdu = "00" + "44" + "0B919761214365F7" + "0008" + "42301090035021" + "08" + "0500030702030041"
    message = sms.decode_deliver(pdu)
    assert message.concatenation is None
    assert message.text == "A"


def test_gsm7_text_after_a_header_skips_the_fill_bits() -> None:
    parts = deliver("+79161234567", "abc" * 60)
    assert parts[0].concatenation is not None
    assert "".join(p.text for p in parts) == "abc" * 60


def test_eight_bit_data_is_kept_as_octets() -> None:
    pdu = "00" + "04" + "0B919761214365F7" + "0004" + "42301090035021" + "03" + "00FF7F"
    message = sms.decode_deliver(pdu)
    assert message.alphabet is Alphabet.DATA_8BIT
    assert message.data == b"\x00\xff\x7f"


def test_pdu_without_smsc_field_is_read_when_the_header_length_says_so() -> None:
    tpdu = "04" + "0B919761214365F7" + "0000" + "42301090035021" + "02" + "E834"
    assert sms.decode_deliver(tpdu, tpdu_length=len(tpdu) // 2).text == "hi"


def test_a_timestamp_that_is_not_a_date_leaves_the_message_readable() -> None:
    pdu = "00" + "04" + "0B919761214365F7" + "0000" + "FFFFFFFFFFFFFF" + "02" + "E834"
    message = sms.decode_deliver(pdu)
    assert message.timestamp is None
    assert message.text == "hi"


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "00",
        "0791",
        "07914346466554F6040B91",
        "0011000B9171",
        "ZZTOP",
        "AFSDSDF LJJFKLDJKLFJ# #$KJLKJL SF",
        "00440B919761214365F7000842301090035021" + "0A" + "0F",  # header longer than the data
        "00" + "01" + "0B919761214365F7" + "0000" + "42301090035021" + "00",  # a SUBMIT
    ],
)
def test_garbage_raises_one_clear_error(garbage: str) -> None:
    with pytest.raises(SmsDecodeError):
        sms.decode_deliver(garbage)


def test_random_octets_raise_nothing_but_decode_error() -> None:
    rng = random.Random(23040)
    decoders = (sms.decode_deliver, sms.decode_submit, sms.decode_status_report)
    refused = 0
    for _ in range(3000):
        pdu = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
        for decode in decoders:
            try:
                decode(pdu)
            except SmsDecodeError:
                refused += 1
    assert refused > 3000  # most random octets are refused, and only ever this way


def test_truncations_of_a_valid_pdu_raise_decode_error_or_decode() -> None:
    pdu = sms.encode_deliver("Tinkoff", "Код " * 50, timestamp=STAMP)[0]
    refused = 0
    for end in range(len(pdu)):
        try:
            sms.decode_deliver(pdu[:end])
        except SmsDecodeError:
            refused += 1
    assert refused > 0


def test_decode_error_is_a_value_error_for_callers_that_catch_broadly() -> None:
    assert issubclass(SmsDecodeError, ValueError)


# ---------------------------------------------------------------- reassembly


def test_single_message_is_whole_at_once() -> None:
    [part] = deliver("+79161234567", "short")
    received = Reassembler().add(part, now=0.0)
    assert received is not None
    assert (received.text, received.complete, received.parts_total) == ("short", True, 1)


def test_parts_out_of_order_come_out_in_order() -> None:
    text = "Длинное сообщение. " * 10
    parts = deliver("+79161234567", text)
    assert len(parts) == 3
    reassembler = Reassembler()
    results = [reassembler.add(part, now=float(i)) for i, part in enumerate(reversed(parts))]
    assert results[:2] == [None, None]
    assert results[2] is not None and results[2].text == text and results[2].complete


def test_duplicate_part_is_dropped() -> None:
    parts = deliver("+79161234567", "x" * 300)
    reassembler = Reassembler()
    assert reassembler.add(parts[0], now=0.0) is None
    assert reassembler.add(parts[0], now=1.0) is None
    received = reassembler.add(parts[1], now=2.0)
    assert received is not None and received.text == "x" * 300


def test_duplicate_of_a_completed_message_is_dropped() -> None:
    parts = deliver("+79161234567", "x" * 300)
    reassembler = Reassembler()
    reassembler.add(parts[0], now=0.0)
    assert reassembler.add(parts[1], now=1.0) is not None
    assert reassembler.add(parts[1], now=2.0) is None
    assert reassembler.pending_count == 0


def test_same_set_arriving_again_after_the_timeout_is_a_new_message() -> None:
    parts = deliver("+79161234567", "x" * 300)
    reassembler = Reassembler(timeout_s=60.0)
    reassembler.add(parts[0], now=0.0)
    reassembler.add(parts[1], now=1.0)
    assert reassembler.add(parts[0], now=100.0) is None
    received = reassembler.add(parts[1], now=101.0)
    assert received is not None and received.text == "x" * 300


def test_same_reference_from_two_senders_stays_apart() -> None:
    first = deliver("+79161111111", "a" * 200, reference=9)
    second = deliver("+79162222222", "b" * 200, reference=9)
    reassembler = Reassembler()
    reassembler.add(first[0], now=0.0)
    reassembler.add(second[0], now=0.0)
    done_first = reassembler.add(first[1], now=1.0)
    done_second = reassembler.add(second[1], now=1.0)
    assert done_first is not None and done_first.text == "a" * 200
    assert done_second is not None and done_second.text == "b" * 200


def test_incomplete_message_is_handed_out_after_the_timeout_marked_incomplete() -> None:
    parts = deliver("+79161234567", "x" * 153 + "y" * 153 + "z" * 10)
    reassembler = Reassembler(timeout_s=3600.0)
    reassembler.add(parts[0], now=100.0)
    reassembler.add(parts[2], now=200.0)
    assert reassembler.expire(100.0 + 3599.0) == []
    [received] = reassembler.expire(100.0 + 3600.0)
    assert not received.complete
    assert received.missing == (2,)
    assert (received.parts_received, received.parts_total) == (2, 3)
    assert received.text == "x" * 153 + "z" * 10
    assert reassembler.pending_count == 0


def test_next_deadline_is_the_oldest_set_plus_the_timeout() -> None:
    reassembler = Reassembler(timeout_s=60.0)
    assert reassembler.next_deadline() is None
    reassembler.add(deliver("+1", "x" * 200, reference=1)[0], now=10.0)
    reassembler.add(deliver("+2", "x" * 200, reference=1)[0], now=20.0)
    assert reassembler.next_deadline() == 70.0


def test_too_many_pending_sets_hand_out_the_oldest_incomplete() -> None:
    reassembler = Reassembler(max_pending=2)
    for n in range(3):
        reassembler.add(deliver(f"+{n}", "x" * 200)[0], now=float(n))
    [oldest] = reassembler.expire(3.0)
    assert oldest.sender == "+0"
    assert not oldest.complete
    assert reassembler.pending_count == 2


def test_surrogate_pair_cut_across_parts_by_a_sender_is_joined() -> None:
    # Some senders cut UCS2 at 134 octets regardless of pairs: the emoji's halves in two parts.
    units = "я" * 66 + "😀" + "я"
    raw = units.encode("utf-16-be")
    halves = (raw[:134], raw[134:])
    parts = []
    for sequence, body in enumerate(halves, start=1):
        header = bytes([5, 0, 3, 0x33, 2, sequence])
        pdu = (bytes.fromhex("00440B919761214365F70008") + bytes.fromhex("42301090035021")
               + bytes([len(header) + len(body)]) + header + body)
        parts.append(sms.decode_deliver(pdu))
    reassembler = Reassembler()
    reassembler.add(parts[0], now=0.0)
    received = reassembler.add(parts[1], now=0.0)
    assert received is not None and received.text == units


# ---------------------------------------------------------------- TS 27.005 headers


def test_cmgr_header_with_empty_alpha() -> None:
    header = sms.parse_cmgr_header("+CMGR: 0,,31")
    assert (header.status, header.alpha, header.length) == (0, None, 31)


def test_cmgr_header_with_quoted_alpha_holding_a_comma() -> None:
    header = sms.parse_cmgr_header('+CMGR: 1,"Doe, John",24')
    assert (header.status, header.alpha, header.length) == (1, "Doe, John", 24)


def test_cmgr_header_without_alpha_field() -> None:
    header = sms.parse_cmgr_header("+CMGR: 1,24")
    assert (header.status, header.alpha, header.length) == (1, None, 24)


def test_cmgl_header() -> None:
    header = sms.parse_cmgl_header("+CMGL: 3,1,,159")
    assert (header.index, header.status, header.alpha, header.length) == (3, 1, None, 159)


def test_cmgl_header_with_text_status_some_modems_print() -> None:
    assert sms.parse_cmgl_header('+CMGL: 2,"REC UNREAD",,22').status == 0


def test_cmt_header() -> None:
    header = sms.parse_cmt_header('+CMT: "",24')
    assert (header.alpha, header.length) == (None, 24)


def test_cmti_indication() -> None:
    assert sms.parse_cmti('+CMTI: "SM",12') == ("SM", 12)


@pytest.mark.parametrize("line", ["+CMGR: ", "+CMGR: x,,1", "+CMGR: 0,,", "+CMGL: 1"])
def test_broken_header_raises_decode_error(line: str) -> None:
    parser = sms.parse_cmgl_header if line.startswith("+CMGL") else sms.parse_cmgr_header
    with pytest.raises(SmsDecodeError):
        parser(line)


def test_cmgl_response_pairs_headers_with_pdus_and_skips_strays() -> None:
    info = [
        "+CMGL: 1,0,,22",
        "^RSSI:14",  # a stray the codec should have taken, must not shift the pairing
        "07919761989901F0040B919761214365F700004230109003502103E8329B",
        "+CMGL: 2,1,,22",
        "+CMGL: 3,1,,23",
        "07919761989901F0040B919761214365F700004230109003502103E8329C",
    ]
    pairs = list(sms.iter_cmgl(info))
    assert [(header.index, pdu[-2:]) for header, pdu in pairs] == [(1, "9B"), (3, "9C")]
