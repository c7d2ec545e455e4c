"""The fake modems' own SMS-DELIVER builder (3GPP TS 23.040 §9.2.2.1, alphabets of TS 23.038).

Tests hand a fake modem a received SMS as the hex PDU a real SIM would hold. This module builds
those PDUs — GSM 7-bit or UCS2, with a concatenation header for long texts — and nothing else.
It is written apart from the box's own codec (hal/modem/sms.py) on purpose: the two are checked
against each other and against gammu, so neither can hide the other's mistake.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

LOGGER = logging.getLogger(__name__)

# TS 23.038 §6.2.1: the default alphabet, indexed by septet value, and its extension table
# (reached through the escape septet 0x1B).
GSM7_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
              "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_ESCAPE = 0x1B
GSM7_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C,
                  "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
_GSM7_INDEX = {char: value for value, char in enumerate(GSM7_BASIC) if value != GSM7_ESCAPE}
_GSM7_EXTENSION_CHARS = {value: char for char, value in GSM7_EXTENSION.items()}

# TS 23.040 §9.2.3.9 (TP-PID), §9.2.3.10 / TS 23.038 §4 (TP-DCS)
DCS_GSM7 = 0x00
DCS_UCS2 = 0x08
# TS 23.040 §9.2.3.1-9.2.3.23: SMS-DELIVER first octet: TP-MTI 00, TP-MMS (no more messages)
FIRST_OCTET_DELIVER = 0x04
TP_UDHI = 0x40
# TS 24.008 §10.5.4.7 type of number / numbering plan
TOA_INTERNATIONAL = 0x91
TOA_UNKNOWN = 0x81
TOA_ALPHANUMERIC = 0xD0

SINGLE_GSM7_SEPTETS = 160
SINGLE_UCS2_UNITS = 70
# TS 23.040 §9.2.3.24.1: a 6-octet header (UDHL + IEI 00, 8-bit reference) leaves 153 septets
# or 67 UCS2 units for the text.
PART_GSM7_SEPTETS = 153
PART_UCS2_UNITS = 67
CONCAT_IEI_8BIT = 0x00


@dataclass(frozen=True, kw_only=True)
class ConcatPart:
    """Which part of a concatenated message a PDU carries (TS 23.040 §9.2.3.24.1)."""

    reference: int
    total: int
    sequence: int


def gsm7_septets(text: str) -> list[int] | None:
    """The text in the default alphabet, or None when a character is not in it."""
    septets: list[int] = []
    for char in text:
        if char in _GSM7_INDEX:
            septets.append(_GSM7_INDEX[char])
        elif char in GSM7_EXTENSION:
            septets += [GSM7_ESCAPE, GSM7_EXTENSION[char]]
        else:
            return None
    return septets


def gsm7_text(septets: Sequence[int]) -> str:
    """The inverse of gsm7_septets (an escape before an unknown value reads as a space)."""
    chars: list[str] = []
    escaped = False
    for septet in septets:
        if escaped:
            chars.append(_GSM7_EXTENSION_CHARS.get(septet, " "))
            escaped = False
        elif septet == GSM7_ESCAPE:
            escaped = True
        else:
            chars.append(GSM7_BASIC[septet])
    return "".join(chars)


def pack_septets(septets: Sequence[int], *, fill_bits: int = 0) -> bytes:
    """Septets packed LSB first into octets (TS 23.038 §6.1.2.1.1), after fill_bits zero bits."""
    accumulator = 0
    for position, septet in enumerate(septets):
        accumulator |= (septet & 0x7F) << (fill_bits + 7 * position)
    bit_count = fill_bits + 7 * len(septets)
    return accumulator.to_bytes((bit_count + 7) // 8, "little")


def unpack_septets(data: bytes, count: int, *, fill_bits: int = 0) -> list[int]:
    """The first count septets packed in data after fill_bits bits."""
    accumulator = int.from_bytes(data, "little") >> fill_bits
    return [(accumulator >> (7 * index)) & 0x7F for index in range(count)]


def encode_address(number: str) -> bytes:
    """TP-OA (TS 23.040 §9.1.2.5): length in digits, type, swapped semi-octets.

    A sender that is not a phone number (an operator's "MTS") goes alphanumeric, 7-bit packed.
    """
    digits = number.removeprefix("+")
    if digits.isdigit():
        toa = TOA_INTERNATIONAL if number.startswith("+") else TOA_UNKNOWN
        return bytes([len(digits), toa]) + _semi_octets(digits)
    septets = gsm7_septets(number)
    if septets is None:
        raise ValueError(f"sender {number!r} is neither digits nor in the GSM alphabet")
    packed = pack_septets(septets)
    # §9.1.2.5: for alphanumeric addresses the length counts the useful semi-octets
    return bytes([(len(septets) * 7 + 3) // 4, TOA_ALPHANUMERIC]) + packed


def encode_smsc(number: str) -> bytes:
    """The SMSC field a modem puts before the TPDU (TS 24.011 §8.2.5.1): octet length first."""
    digits = number.removeprefix("+")
    toa = TOA_INTERNATIONAL if number.startswith("+") else TOA_UNKNOWN
    body = bytes([toa]) + _semi_octets(digits)
    return bytes([len(body)]) + body


def encode_timestamp(moment: datetime.datetime) -> bytes:
    """TP-SCTS (TS 23.040 §9.2.3.11): swapped BCD, zone in quarter hours with a sign bit."""
    offset = moment.utcoffset() or datetime.timedelta(0)
    quarters = int(offset.total_seconds() // 900)
    fields = [moment.year % 100, moment.month, moment.day, moment.hour, moment.minute,
              moment.second]
    octets = [_swapped_bcd(value) for value in fields]
    zone = _swapped_bcd(abs(quarters))
    if quarters < 0:
        zone |= 0x08  # the sign sits in bit 3 of the swapped octet
    return bytes(octets + [zone])


def sms_deliver(sender: str, text: str, *, timestamp: datetime.datetime,
                smsc: str = "+79168999100", part: ConcatPart | None = None) -> str:
    """One SMS-DELIVER PDU as the SIM stores it (SMSC field first), upper-case hex.

    GSM 7-bit when every character is in the default alphabet, UCS2 otherwise.
    """
    header = b""
    if part is not None:
        header = bytes([5, CONCAT_IEI_8BIT, 3, part.reference & 0xFF, part.total,
                        part.sequence])
    septets = gsm7_septets(text)
    if septets is not None:
        dcs = DCS_GSM7
        # §9.2.3.24: the text starts on a septet boundary after the header; packing it after
        # the header's bits leaves zero octets where the header goes
        header_bits = len(header) * 8
        fill_bits = (7 - header_bits % 7) % 7
        user_data_length = (header_bits + fill_bits) // 7 + len(septets)
        packed = pack_septets(septets, fill_bits=header_bits + fill_bits)
        user_data = header + packed[len(header):]
        if len(user_data) > 140 or user_data_length > SINGLE_GSM7_SEPTETS:
            raise ValueError("text too long for one PDU: use sms_deliver_parts")
    else:
        dcs = DCS_UCS2
        user_data = header + text.encode("utf-16-be")
        user_data_length = len(user_data)
        if user_data_length > 140:
            raise ValueError("text too long for one PDU: use sms_deliver_parts")
    first = FIRST_OCTET_DELIVER | (TP_UDHI if header else 0)
    tpdu = (bytes([first]) + encode_address(sender) + bytes([0x00, dcs])
            + encode_timestamp(timestamp) + bytes([user_data_length]) + user_data)
    return (encode_smsc(smsc) + tpdu).hex().upper()


def sms_deliver_parts(sender: str, text: str, *, timestamp: datetime.datetime,
                      reference: int = 1, smsc: str = "+79168999100") -> list[str]:
    """The PDUs of a text: one when it fits, else concatenated parts of 153 septets/67 units."""
    septets = gsm7_septets(text)
    single_limit = SINGLE_GSM7_SEPTETS if septets is not None else SINGLE_UCS2_UNITS
    units = len(septets) if septets is not None else len(text.encode("utf-16-be")) // 2
    if units <= single_limit:
        return [sms_deliver(sender, text, timestamp=timestamp, smsc=smsc)]
    if septets is not None:
        chunks = _split(text, limit=PART_GSM7_SEPTETS,
                        cost=lambda char: 2 if char in GSM7_EXTENSION else 1)
    else:
        chunks = _split(text, limit=PART_UCS2_UNITS,
                        cost=lambda char: len(char.encode("utf-16-be")) // 2)
    return [sms_deliver(sender, chunk, timestamp=timestamp, smsc=smsc,
                        part=ConcatPart(reference=reference, total=len(chunks),
                                        sequence=number))
            for number, chunk in enumerate(chunks, start=1)]


def tpdu_length(pdu_hex: str) -> int:
    """The length AT+CMGR/+CMGL/+CMGS give: octets after the SMSC field (TS 27.005 §3.4.1)."""
    data = bytes.fromhex(pdu_hex)
    return len(data) - 1 - data[0]


def _split(text: str, *, limit: int, cost: Callable[[str], int]) -> list[str]:
    """Parts of at most limit units; a character's units (an escape pair, a surrogate pair)
    never straddle two parts."""
    chunks: list[str] = []
    current = ""
    used = 0
    for char in text:
        if used + cost(char) > limit:
            chunks.append(current)
            current, used = "", 0
        current += char
        used += cost(char)
    return chunks + [current]


def _semi_octets(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex("".join(digits[index + 1] + digits[index]
                                 for index in range(0, len(digits), 2)))


def _swapped_bcd(value: int) -> int:
    return (value % 10) << 4 | (value // 10)
