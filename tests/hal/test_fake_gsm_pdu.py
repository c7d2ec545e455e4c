"""The fakes' SMS-DELIVER builder against the examples of the standards and well-known PDUs."""

from __future__ import annotations

import datetime

from hal.fake.pdu import (
    encode_address,
    encode_timestamp,
    gsm7_septets,
    gsm7_text,
    pack_septets,
    sms_deliver,
    sms_deliver_parts,
    tpdu_length,
    unpack_septets,
)

MOSCOW = datetime.timezone(datetime.timedelta(hours=3))


def test_hellohello_packs_into_the_well_known_octets() -> None:
    septets = gsm7_septets("hellohello")
    assert septets is not None
    assert pack_septets(septets).hex().upper() == "E8329BFD4697D9EC37"


def test_septets_unpack_to_the_text_they_came_from() -> None:
    text = "Цена: 5€ {ok}"[6:]  # the part in the GSM alphabet, extension characters included
    septets = gsm7_septets(text)
    assert septets is not None
    packed = pack_septets(septets)
    assert gsm7_text(unpack_septets(packed, len(septets))) == text


def test_cyrillic_is_not_in_the_gsm_alphabet() -> None:
    assert gsm7_septets("Привет") is None


def test_timestamp_is_swapped_bcd_with_quarter_hour_zone() -> None:
    # TS 23.040 §9.2.3.11: 1999-03-29 15:16:59 +02:00 is 99 30 92 51 61 95 80
    moment = datetime.datetime(1999, 3, 29, 15, 16, 59,
                               tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert encode_timestamp(moment).hex() == "99309251619580"


def test_negative_zone_sets_the_sign_bit() -> None:
    moment = datetime.datetime(2026, 1, 1, 0, 0, 0,
                               tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
    # -5 h is 20 quarters: swapped BCD 0x02, sign bit 0x08
    assert encode_timestamp(moment)[-1] == 0x0A


def test_international_address_has_type_91_and_swapped_digits() -> None:
    assert encode_address("+79161234567").hex().upper() == "0B919761214365F7"


def test_alphanumeric_sender_is_packed_with_type_d0() -> None:
    assert encode_address("MTS").hex().upper() == "06D04DEA14"


def test_a_ucs2_deliver_carries_dcs_08_and_utf16_text() -> None:
    moment = datetime.datetime(2026, 5, 17, 14, 3, 9, tzinfo=MOSCOW)
    pdu = sms_deliver("+79161234567", "Привет", timestamp=moment)
    assert pdu == ("07919761989901F0" "04" "0B919761214365F7" "00" "08" "62507141309021"
                   "0C" "041F04400438043204350442")
    assert tpdu_length(pdu) == len(pdu) // 2 - 8


def test_a_long_text_gets_concatenation_headers() -> None:
    moment = datetime.datetime(2026, 5, 17, 14, 3, 9, tzinfo=MOSCOW)
    parts = sms_deliver_parts("+79161234567", "A" * 200, timestamp=moment, reference=7)
    assert len(parts) == 2
    # first octet 44: SMS-DELIVER with TP-UDHI; UDL A0 = 160 septets (7 header + 153 text)
    assert parts[0][16:18] == "44"
    assert parts[0][52:66] == "A0" + "050003070201"
    assert parts[1][52:66] == "36" + "050003070202"  # 7 + 47 septets


def test_a_short_text_is_one_pdu_without_header() -> None:
    moment = datetime.datetime(2026, 5, 17, 14, 3, 9, tzinfo=MOSCOW)
    assert len(sms_deliver_parts("+7916", "short", timestamp=moment)) == 1
