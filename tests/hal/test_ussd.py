"""hal.modem.ussd: the AT+CUSD request line and the +CUSD answers of TS 27.007 §7.15."""

import pytest

from hal.modem import ussd
from hal.modem.ussd import UssdDecodeError, UssdStatus, UssdTextForm

# "Баланс: 123.45 р." in UTF-16BE, as Russian operators answer *100# with dcs 72.
BALANCE_UCS2_HEX = "04110430043B0430043D0441003A0020003100320033002E0034003500200440002E"


# ---------------------------------------------------------------- requests


def test_plain_request_line() -> None:
    assert ussd.ussd_command("*100#") == 'AT+CUSD=1,"*100#",15'


def test_packed_request_line_as_huawei_e1550_wants_it() -> None:
    # *100# packed LSB first (TS 23.038 §6.1.2.1.1): 2A 31 30 30 23 -> AA 18 0C 36 02.
    assert ussd.ussd_command("*100#", form=UssdTextForm.PACKED_HEX) == (
        'AT+CUSD=1,"AA180C3602",15'
    )


def test_septet_hex_request_for_cscs_hex() -> None:
    assert ussd.encode_ussd("*100#", form=UssdTextForm.SEPTET_HEX) == "2A31303023"


def test_ucs2_hex_request_for_cscs_ucs2() -> None:
    assert ussd.encode_ussd("*100#", form=UssdTextForm.UCS2_HEX) == "002A0031003000300023"


def test_seven_characters_are_padded_with_cr_not_left_as_zero_bits() -> None:
    # TS 23.038 §6.1.2.3.1: 8n-1 characters leave 7 spare bits, filled with CR.
    packed = bytes.fromhex(ussd.encode_ussd("*101*1#", form=UssdTextForm.PACKED_HEX))
    assert len(packed) == 7
    assert packed[-1] >> 1 == 0x0D


def test_text_ending_in_cr_on_an_octet_boundary_gets_a_second_cr() -> None:
    # TS 23.038 §6.1.2.3.1: a wanted CR ending 8 septets would be taken for padding and
    # stripped, so a second CR follows it; the receiver then shows both.
    text = "*1234#\n\r"
    packed = bytes.fromhex(ussd.encode_ussd(text, form=UssdTextForm.PACKED_HEX))
    assert len(packed) == 8
    assert ussd.unpack_ussd(packed) == text + "\r"


def test_request_that_would_break_the_command_line_is_refused() -> None:
    with pytest.raises(ValueError):
        ussd.ussd_command('*100#"\r\nATD112;')


def test_request_outside_the_gsm_alphabet_is_refused() -> None:
    with pytest.raises(ValueError):
        ussd.ussd_command("*баланс#")


def test_request_longer_than_182_septets_is_refused() -> None:
    with pytest.raises(ValueError):
        ussd.ussd_command("1" * 183)


# ---------------------------------------------------------------- answers


def test_plain_gsm7_answer() -> None:
    answer = ussd.parse_cusd('+CUSD: 0,"Balance: 12.50 EUR",15')
    assert answer.status is UssdStatus.NO_FURTHER_ACTION
    assert (answer.text, answer.dcs) == ("Balance: 12.50 EUR", 15)


def test_packed_hex_answer_from_a_huawei() -> None:
    packed = ussd.encode_ussd("Balance: 12.50 EUR", form=UssdTextForm.PACKED_HEX)
    answer = ussd.parse_cusd(f'+CUSD: 0,"{packed}",15', form=UssdTextForm.PACKED_HEX)
    assert answer.text == "Balance: 12.50 EUR"


@pytest.mark.parametrize("text", ["1234567", "Bonus 7", "12345678", "@home", "a" * 182])
def test_packed_round_trip_keeps_the_text_exactly(text: str) -> None:
    packed = ussd.encode_ussd(text, form=UssdTextForm.PACKED_HEX)
    assert ussd.decode_ussd_text(packed, 15, form=UssdTextForm.PACKED_HEX) == text


def test_zero_padding_some_networks_send_is_not_read_as_at_sign() -> None:
    # "1234567" packed with 7 zero bits instead of CR: 7 octets, 8th septet 0x00.
    assert ussd.unpack_ussd(bytes.fromhex("31D98C56B3DD00")) == "1234567"


def test_ucs2_balance_answer_in_russian() -> None:
    answer = ussd.parse_cusd(f'+CUSD: 0,"{BALANCE_UCS2_HEX}",72')
    assert answer.text == "Баланс: 123.45 р."
    assert answer.dcs == 72


def test_ucs2_answer_is_hex_whatever_the_text_form() -> None:
    answer = ussd.parse_cusd(f'+CUSD: 0,"{BALANCE_UCS2_HEX}",72', form=UssdTextForm.PACKED_HEX)
    assert answer.text == "Баланс: 123.45 р."


def test_gsm7_answer_under_cscs_ucs2_is_ucs2_hex() -> None:
    answer = ussd.parse_cusd('+CUSD: 0,"00310032",15', form=UssdTextForm.UCS2_HEX)
    assert answer.text == "12"


def test_ucs2_with_language_indication_skips_the_language() -> None:
    # dcs 0x11 (TS 23.038 §5): two packed characters of language ("ru": F2 3A), then UCS2.
    answer = ussd.parse_cusd('+CUSD: 0,"F23A0411",17')
    assert answer.text == "Б"


def test_menu_answer_keeps_the_session_open() -> None:
    answer = ussd.parse_cusd('+CUSD: 1,"1. Balance\n2. Tariff",15')
    assert answer.session_open
    assert answer.text == "1. Balance\n2. Tariff"


def test_quotes_and_commas_inside_the_string_survive() -> None:
    answer = ussd.parse_cusd('+CUSD: 0,"Say "yes", then 1,2",15')
    assert (answer.text, answer.dcs) == ('Say "yes", then 1,2', 15)


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ("+CUSD: 2", UssdStatus.TERMINATED_BY_NETWORK),
        ("+CUSD: 4", UssdStatus.NOT_SUPPORTED),
        ("+CUSD: 5", UssdStatus.TIMED_OUT),
        ("+CUSD: 3", UssdStatus.OTHER_CLIENT_RESPONDED),
    ],
)
def test_status_only_answers(line: str, status: UssdStatus) -> None:
    answer = ussd.parse_cusd(line)
    assert (answer.status, answer.text, answer.dcs) == (status, None, None)


def test_not_supported_and_timed_out_are_failures() -> None:
    assert ussd.parse_cusd("+CUSD: 4").failed
    assert ussd.parse_cusd("+CUSD: 5").failed
    assert not ussd.parse_cusd('+CUSD: 0,"ok",15').failed


def test_answer_without_dcs_is_read_as_gsm7() -> None:
    answer = ussd.parse_cusd('+CUSD: 0,"Balance 5"')
    assert (answer.text, answer.dcs) == ("Balance 5", None)


def test_unquoted_answer_some_firmware_sends() -> None:
    answer = ussd.parse_cusd("+CUSD: 0,Balance 5,15")
    assert (answer.text, answer.dcs) == ("Balance 5", 15)


def test_hex_form_answer_that_is_not_hex_is_kept_as_it_came() -> None:
    answer = ussd.parse_cusd('+CUSD: 0,"Balance 5",72')
    assert answer.text == "Balance 5"


@pytest.mark.parametrize("line", ["+CUSD:", "+CUSD: x", "+CUSD: 9", "OK", "+CUSD: ,\"a\",15"])
def test_broken_status_raises_decode_error(line: str) -> None:
    with pytest.raises(UssdDecodeError):
        ussd.parse_cusd(line)
