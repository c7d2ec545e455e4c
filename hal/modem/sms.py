"""SMS in PDU mode, pure: the GSM 7-bit alphabet, SMS-DELIVER/SUBMIT/STATUS-REPORT codecs,
the reassembly of concatenated messages and the parsing of the `+CMGR`/`+CMGL`/`+CMT`/`+CMTI`
headers of 3GPP TS 27.005. Nothing here does I/O or reads the clock: the GSM driver reads PDUs
from the modem and hands them over, and passes `now` to the `Reassembler`.

Our own codec rather than a library: python-gsmmodem-new 0.13.0 raises ValueError when asked to
send an emoji and lets StopIteration escape from a truncated PDU; smspdudecoder 2.2.0 cannot
encode at all, needs bitstring<5, and turns the alphanumeric sender "Megafon" into "Megafon@"
(figures in tests/hal/test_sms_vectors.py).
"""

from __future__ import annotations

import enum
import logging
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

LOGGER = logging.getLogger(__name__)

# Sizes of the user data (TS 23.040 §9.2.3.24: 140 octets of TP-UD).
USER_DATA_MAX_OCTETS = 140
GSM7_SINGLE_MAX_SEPTETS = 160
UCS2_SINGLE_MAX_UNITS = 70  # UTF-16 code units
# One part of a concatenated message carries a 6-octet UDH (UDHL + 8-bit reference IE):
# 7 septets of GSM text, 3 UTF-16 units of UCS2.
GSM7_PART_MAX_SEPTETS = 153
UCS2_PART_MAX_UNITS = 67
MAX_PARTS = 255
# Incomplete concatenated messages are handed out after this long rather than kept for ever.
INCOMPLETE_TIMEOUT_S = 3600.0
# TP-SCTS years at or above this two-digit value are 19xx (SMS began in the 1990s).
YEAR_PIVOT = 90
# Bound on sets waiting for parts; beyond it the oldest is handed out incomplete.
MAX_PENDING_SETS = 256

_ESC = 0x1B
# TS 23.038 §6.2.1, the GSM 7-bit default alphabet, in septet order.
_GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# TS 23.038 §6.2.1.1, the default extension table, reached by ESC (0x1B).
_GSM7_EXTENSION = {
    0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
    0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€",
}
_GSM7_ENCODE: dict[str, tuple[int, ...]] = {
    char: (code,) for code, char in enumerate(_GSM7_BASIC) if code != _ESC
}
_GSM7_ENCODE.update({char: (_ESC, code) for code, char in _GSM7_EXTENSION.items()})

# TS 23.040 §9.1.2.5: semi-octet digits beyond 9.
_BCD_DIGITS = "0123456789*#abc"
_TON_INTERNATIONAL = 0b001
_TON_ALPHANUMERIC = 0b101
_TOA_INTERNATIONAL = 0x91  # ext bit, TON international, NPI ISDN/E.164
_TOA_UNKNOWN = 0x81  # ext bit, TON unknown: the network reads any prefix in the digits
_NUMBER_RE = re.compile(r"\+?[0-9*#]{1,20}")
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})+")

# TS 23.040 §9.2.3.1: TP-MTI in bits 1-0 of the first octet (MS side of the link).
_MTI_DELIVER = 0b00
_MTI_SUBMIT = 0b01
_MTI_STATUS_REPORT = 0b10
_FO_UDHI = 0x40
_IEI_CONCAT_8BIT = 0x00
_IEI_CONCAT_16BIT = 0x08


class SmsDecodeError(ValueError):
    """A PDU (or a +CMGR/+CMGL header) that cannot be what the modem claims it is."""


class Alphabet(enum.Enum):
    """The character set of the user data (TS 23.038 §4)."""

    GSM7 = "gsm7"
    DATA_8BIT = "8bit"
    UCS2 = "ucs2"


@dataclass(frozen=True, kw_only=True)
class Concatenation:
    """The concatenation information element (TS 23.040 §9.2.3.24.1 and .8)."""

    reference: int
    total: int
    sequence: int  # 1-based


@dataclass(frozen=True, kw_only=True)
class SmsDeliver:
    """One received PDU (SMS-DELIVER, TS 23.040 §9.2.2.1)."""

    smsc: str | None
    sender: str  # "+" and digits when international, the text of an alphanumeric sender
    timestamp: datetime | None  # aware; None when the service centre's stamp was not a date
    protocol_id: int
    dcs: int
    alphabet: Alphabet
    text: str
    data: bytes  # the user data without its header: septets for GSM7, octets otherwise
    concatenation: Concatenation | None
    status_report_indicated: bool


@dataclass(frozen=True, kw_only=True)
class SmsSubmit:
    """A decoded SMS-SUBMIT (TS 23.040 §9.2.2.2), as stored in the SIM's sent box."""

    smsc: str | None
    recipient: str
    message_reference: int
    protocol_id: int
    dcs: int
    alphabet: Alphabet
    validity: timedelta | datetime | None
    text: str
    data: bytes
    concatenation: Concatenation | None
    status_report_requested: bool
    reject_duplicates: bool


@dataclass(frozen=True, kw_only=True)
class SmsStatusReport:
    """A delivery report (SMS-STATUS-REPORT, TS 23.040 §9.2.2.3)."""

    smsc: str | None
    message_reference: int
    recipient: str
    submitted_at: datetime | None
    discharged_at: datetime | None
    status: int  # TP-ST, §9.2.3.15: 0x00-0x1F delivered, 0x20-0x3F still trying, above failed

    @property
    def delivered(self) -> bool:
        return self.status < 0x20


@dataclass(frozen=True, kw_only=True)
class SubmitPdu:
    """One SMS-SUBMIT to write after `AT+CMGS=<tpdu_length>` and the `> ` prompt."""

    data: bytes  # with the SMSC field in front (00: the SIM's default centre)
    tpdu_length: int  # octets after the SMSC field, TS 27.005 §3.5.1 <length>

    @property
    def hex(self) -> str:
        return self.data.hex().upper()


@dataclass(frozen=True, kw_only=True)
class ReceivedSms:
    """A whole message as it goes to the store: one PDU, or all the parts of a long one."""

    sender: str
    text: str
    timestamp: datetime | None  # the first part's service-centre stamp
    smsc: str | None
    parts_total: int
    parts_received: int
    missing: tuple[int, ...]  # sequence numbers that never came

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(frozen=True, kw_only=True)
class StoredMessageHeader:
    """The header line of `+CMGR`/`+CMGL`/`+CMT` in PDU mode (TS 27.005 §3.4.2, §3.4.3, §3.4.1)."""

    index: int | None  # +CMGL only
    status: int | None  # 0 unread, 1 read, 2 unsent, 3 sent; +CMT has none
    alpha: str | None
    length: int  # TPDU octets, SMSC field not counted


# ---------------------------------------------------------------- GSM 7-bit alphabet


def gsm7_fits(text: str) -> bool:
    """True when every character of `text` is in the default alphabet or its extension."""
    return all(char in _GSM7_ENCODE for char in text)


def gsm7_encode(text: str) -> list[int]:
    """Septets of `text`; extension characters take two. Raises ValueError for others."""
    septets: list[int] = []
    for char in text:
        try:
            septets.extend(_GSM7_ENCODE[char])
        except KeyError:
            raise ValueError(f"{char!r} is not in the GSM 7-bit alphabet") from None
    return septets


def gsm7_decode(septets: Iterable[int]) -> str:
    """Text of unpacked septets. An escape to a code the extension table lacks shows the
    basic table's character (TS 23.038 §6.2.1.1 note 1); a trailing escape shows nothing."""
    chars: list[str] = []
    escaped = False
    for septet in septets:
        septet &= 0x7F
        if escaped:
            # ESC ESC leads to a national table we do not have: a space, as §6.2.1.1 shows it.
            fallback = " " if septet == _ESC else _GSM7_BASIC[septet]
            chars.append(_GSM7_EXTENSION.get(septet, fallback))
            escaped = False
        elif septet == _ESC:
            escaped = True
        else:
            chars.append(_GSM7_BASIC[septet])
    return "".join(chars)


def pack_septets(septets: Sequence[int], *, header: bytes = b"") -> bytes:
    """Pack septets LSB first (TS 23.038 §6.1.2.1.1), after an optional user data header that
    is padded with fill bits to a septet boundary (TS 23.040 §9.2.3.24)."""
    header_septets = math.ceil(len(header) * 8 / 7)
    value = int.from_bytes(header, "little")
    for position, septet in enumerate(septets, start=header_septets):
        value |= (septet & 0x7F) << (7 * position)
    total_bits = 7 * (header_septets + len(septets))
    return value.to_bytes(math.ceil(total_bits / 8), "little")


def unpack_septets(data: bytes, count: int, *, skip_septets: int = 0) -> list[int]:
    """`count` septets from packed `data`, after the first `skip_septets` (a header); stops
    early when the data runs out rather than inventing septets."""
    available = len(data) * 8 // 7 - skip_septets
    value = int.from_bytes(data, "little")
    return [
        (value >> (7 * (skip_septets + i))) & 0x7F for i in range(max(0, min(count, available)))
    ]


# ---------------------------------------------------------------- fields


class _Reader:
    """Octets of a PDU, read in order; running off the end is a SmsDecodeError."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def octet(self) -> int:
        return self.take(1)[0]

    def take(self, count: int) -> bytes:
        end = self._position + count
        if end > len(self._data):
            raise SmsDecodeError(
                f"PDU ends at octet {len(self._data)}, needed {end} (read so far: "
                f"{self._data[: self._position].hex().upper()})"
            )
        chunk = self._data[self._position : end]
        self._position = end
        return chunk

    def rest(self) -> bytes:
        chunk = self._data[self._position :]
        self._position = len(self._data)
        return chunk

    @property
    def remaining(self) -> int:
        return len(self._data) - self._position


def _to_bytes(pdu: bytes | str) -> bytes:
    if isinstance(pdu, str):
        try:
            return bytes.fromhex(pdu.strip())
        except ValueError:
            raise SmsDecodeError(f"PDU is not hexadecimal: {pdu[:80]!r}") from None
    return bytes(pdu)


def _decode_semi_octets(data: bytes, digits: int) -> str:
    out: list[str] = []
    for octet in data:
        out.append(_BCD_DIGITS[octet & 0x0F] if octet & 0x0F != 0x0F else "")
        out.append(_BCD_DIGITS[octet >> 4] if octet >> 4 != 0x0F else "")
    return "".join(out)[:digits]


def _encode_semi_octets(digits: str) -> bytes:
    nibbles = [_BCD_DIGITS.index(d) for d in digits]
    if len(nibbles) % 2:
        nibbles.append(0x0F)
    return bytes(low | high << 4 for low, high in zip(nibbles[::2], nibbles[1::2], strict=True))


def _decode_number(toa: int, data: bytes, digits: int) -> str:
    ton = (toa >> 4) & 0x07
    if ton == _TON_ALPHANUMERIC:
        # TS 23.040 §9.1.2.5: the address length counts the semi-octets the septets use.
        return gsm7_decode(unpack_septets(data, digits * 4 // 7))
    number = _decode_semi_octets(data, digits)
    return "+" + number if ton == _TON_INTERNATIONAL else number


def _read_address(reader: _Reader) -> str:
    """TP-OA/TP-DA/TP-RA (TS 23.040 §9.1.2.5): the length is in semi-octets."""
    digits = reader.octet()
    toa = reader.octet()
    return _decode_number(toa, reader.take((digits + 1) // 2), digits)


def _read_smsc(reader: _Reader) -> str | None:
    """The SC address (TS 24.011 §8.2.5.1, as in TS 27.005 PDUs): the length is in octets."""
    octets = reader.octet()
    if octets == 0:
        return None
    toa = reader.octet()
    number = _decode_number(toa, reader.take(octets - 1), 2 * (octets - 1))
    return number or None


def _encode_address(number: str) -> bytes:
    if not _NUMBER_RE.fullmatch(number):
        raise ValueError(f"not a phone number: {number!r}")
    digits = number.lstrip("+")
    toa = _TOA_INTERNATIONAL if number.startswith("+") else _TOA_UNKNOWN
    return bytes([len(digits), toa]) + _encode_semi_octets(digits)


def _encode_smsc(number: str | None) -> bytes:
    if number is None:
        return b"\x00"
    address = _encode_address(number)
    return bytes([len(address) - 1]) + address[1:]


def _bcd_value(octet: int) -> int:
    """A swapped-BCD octet as a number, the digits of TS 23.040 §9.2.3.11."""
    low, high = octet & 0x0F, octet >> 4
    if low > 9 or high > 9:
        raise ValueError(f"not BCD: {octet:02X}")
    return low * 10 + high


def _decode_timestamp(data: bytes) -> datetime | None:
    """TP-SCTS (TS 23.040 §9.2.3.11): YYMMDDhhmmss in swapped BCD and the zone in quarter hours,
    its sign in bit 3 of the last octet. A stamp that is not a date is logged, not fatal."""
    try:
        year, month, day, hour, minute, second = (_bcd_value(octet) for octet in data[:6])
        zone = data[6]
        quarters = _bcd_value(zone & 0xF7)
        offset = timedelta(minutes=15 * quarters) * (-1 if zone & 0x08 else 1)
        # Two digits of year: the GSM 03.40 tutorials' 1999 stamps are 99, not 2099.
        century = 1900 if year >= YEAR_PIVOT else 2000
        return datetime(century + year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError as error:
        LOGGER.warning("service centre time stamp %s is not a date: %s", data.hex().upper(), error)
        return None


def _encode_timestamp(stamp: datetime) -> bytes:
    offset = stamp.utcoffset()
    if offset is None:
        raise ValueError("a validity time needs a time zone")
    quarters = int(abs(offset.total_seconds()) // 900)

    def swapped(value: int) -> int:
        return (value % 10) << 4 | value // 10

    zone = swapped(quarters) | (0x08 if offset < timedelta(0) else 0)
    fields = (stamp.year % 100, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
    return bytes(swapped(value) for value in fields) + bytes([zone])


def encode_relative_validity(validity: timedelta) -> int:
    """TP-VP relative format (TS 23.040 §9.2.3.12.1), rounded up to the next step."""
    minutes = math.ceil(validity.total_seconds() / 60)
    if minutes <= 12 * 60:
        return max(0, math.ceil(minutes / 5) - 1)
    if minutes <= 24 * 60:
        return 143 + math.ceil((minutes - 12 * 60) / 30)
    days = math.ceil(minutes / (24 * 60))
    if days <= 30:
        return 166 + days
    weeks = math.ceil(days / 7)
    if weeks <= 63:
        return 192 + weeks
    raise ValueError(f"validity {validity} is beyond 63 weeks")


def decode_relative_validity(value: int) -> timedelta:
    if not 0 <= value <= 255:
        raise ValueError(f"TP-VP {value} is not an octet")
    if value <= 143:
        return timedelta(minutes=5 * (value + 1))
    if value <= 167:
        return timedelta(hours=12, minutes=30 * (value - 143))
    if value <= 196:
        return timedelta(days=value - 166)
    return timedelta(weeks=value - 192)


def _alphabet(dcs: int) -> Alphabet:
    """TS 23.038 §4, SMS data coding scheme. Reserved codings are read as GSM 7-bit, as §4 says."""
    group = dcs >> 4
    if group <= 0b0111:  # general data coding (and its automatic-deletion twin)
        if dcs & 0x20:
            LOGGER.warning("DCS %02X says compressed text; read as 8-bit data", dcs)
            return Alphabet.DATA_8BIT
        return (Alphabet.GSM7, Alphabet.DATA_8BIT, Alphabet.UCS2, Alphabet.GSM7)[(dcs >> 2) & 3]
    if group == 0b1110:  # message waiting, store message, UCS2
        return Alphabet.UCS2
    if group == 0b1111:  # data coding / message class
        return Alphabet.DATA_8BIT if dcs & 0x04 else Alphabet.GSM7
    return Alphabet.GSM7


def _parse_udh(header: bytes) -> Concatenation | None:
    """Information elements of a UDH (TS 23.040 §9.2.3.24); only concatenation matters here."""
    concatenation = None
    reader = _Reader(header)
    while reader.remaining:
        iei = reader.octet()
        body = reader.take(reader.octet())
        if iei == _IEI_CONCAT_8BIT and len(body) == 3:
            reference, total, sequence = body
        elif iei == _IEI_CONCAT_16BIT and len(body) == 4:
            reference, total, sequence = int.from_bytes(body[:2], "big"), body[2], body[3]
        else:
            continue
        # §9.2.3.24.1: a sequence number of 0 or beyond the total voids the element.
        if 1 <= sequence <= total:
            concatenation = Concatenation(reference=reference, total=total, sequence=sequence)
        else:
            LOGGER.warning("concatenation element %s ignored", body.hex().upper())
    return concatenation


def _decode_user_data(
    reader: _Reader, dcs: int, has_header: bool
) -> tuple[Alphabet, str, bytes, Concatenation | None]:
    alphabet = _alphabet(dcs)
    length = reader.octet()  # TP-UDL: septets for GSM7, octets otherwise
    user_data = reader.rest()
    header = b""
    if has_header:
        if not user_data:
            raise SmsDecodeError("UDHI set but no user data")
        header = user_data[: 1 + user_data[0]]
        if len(header) != 1 + user_data[0]:
            raise SmsDecodeError(f"user data header overruns the PDU: {user_data.hex().upper()}")
    concatenation = _parse_udh(header[1:]) if header else None
    if alphabet is Alphabet.GSM7:
        skip = math.ceil(len(header) * 8 / 7)
        septets = unpack_septets(user_data, length - skip, skip_septets=skip)
        if len(septets) < length - skip:
            LOGGER.warning("TP-UDL %d septets, PDU holds %d", length, skip + len(septets))
        return alphabet, gsm7_decode(septets), bytes(septets), concatenation
    body = user_data[len(header) : length]
    if len(header) + len(body) < length:
        LOGGER.warning("TP-UDL %d octets, PDU holds %d", length, len(user_data))
    if alphabet is Alphabet.UCS2:
        return alphabet, decode_ucs2(body), body, concatenation
    # TS 23.038 §4: 8-bit data has no character set; Latin-1 shows it without loss.
    return alphabet, body.decode("latin-1"), body, concatenation


def decode_ucs2(data: bytes) -> str:
    """UCS2 as every current phone sends it: UTF-16BE, emoji as surrogate pairs; an odd octet
    or a lone surrogate (a part boundary cut through a pair) becomes U+FFFD."""
    return data.decode("utf-16-be", errors="replace")


def _split_smsc(pdu: bytes | str, tpdu_length: int | None) -> tuple[_Reader, str | None]:
    data = _to_bytes(pdu)
    reader = _Reader(data)
    # TS 27.005 §3.1 <pdu>: the SMSC field comes first, unless the modem left it out (then the
    # whole PDU is as long as the header line's <length> says).
    if tpdu_length is not None and len(data) == tpdu_length:
        return reader, None
    return reader, _read_smsc(reader)


def _check_mti(first_octet: int, expected: int, name: str) -> None:
    if first_octet & 0x03 != expected:
        raise SmsDecodeError(f"first octet {first_octet:02X} is not an {name}")


def decode_deliver(pdu: bytes | str, *, tpdu_length: int | None = None) -> SmsDeliver:
    """Decode an SMS-DELIVER as `+CMGR`, `+CMGL` or `+CMT` hands it over (hex or bytes)."""
    reader, smsc = _split_smsc(pdu, tpdu_length)
    first = reader.octet()
    _check_mti(first, _MTI_DELIVER, "SMS-DELIVER")
    sender = _read_address(reader)
    protocol_id = reader.octet()
    dcs = reader.octet()
    timestamp = _decode_timestamp(reader.take(7))
    alphabet, text, data, concatenation = _decode_user_data(reader, dcs, bool(first & _FO_UDHI))
    return SmsDeliver(
        smsc=smsc,
        sender=sender,
        timestamp=timestamp,
        protocol_id=protocol_id,
        dcs=dcs,
        alphabet=alphabet,
        text=text,
        data=data,
        concatenation=concatenation,
        status_report_indicated=bool(first & 0x20),
    )


def decode_submit(pdu: bytes | str, *, tpdu_length: int | None = None) -> SmsSubmit:
    """Decode an SMS-SUBMIT (the SIM's sent box, or our own PDUs in tests)."""
    reader, smsc = _split_smsc(pdu, tpdu_length)
    first = reader.octet()
    _check_mti(first, _MTI_SUBMIT, "SMS-SUBMIT")
    reference = reader.octet()
    recipient = _read_address(reader)
    protocol_id = reader.octet()
    dcs = reader.octet()
    validity: timedelta | datetime | None = None
    vpf = (first >> 3) & 0x03  # TS 23.040 §9.2.3.3
    if vpf == 0b10:
        validity = decode_relative_validity(reader.octet())
    elif vpf == 0b11:
        validity = _decode_timestamp(reader.take(7))
    elif vpf == 0b01:
        reader.take(7)  # enhanced format (§9.2.3.12.3): skipped
    alphabet, text, data, concatenation = _decode_user_data(reader, dcs, bool(first & _FO_UDHI))
    return SmsSubmit(
        smsc=smsc,
        recipient=recipient,
        message_reference=reference,
        protocol_id=protocol_id,
        dcs=dcs,
        alphabet=alphabet,
        validity=validity,
        text=text,
        data=data,
        concatenation=concatenation,
        status_report_requested=bool(first & 0x20),
        reject_duplicates=bool(first & 0x04),
    )


def decode_status_report(pdu: bytes | str, *, tpdu_length: int | None = None) -> SmsStatusReport:
    """Decode an SMS-STATUS-REPORT (`+CDS`, or a stored report)."""
    reader, smsc = _split_smsc(pdu, tpdu_length)
    _check_mti(reader.octet(), _MTI_STATUS_REPORT, "SMS-STATUS-REPORT")
    reference = reader.octet()
    recipient = _read_address(reader)
    submitted_at = _decode_timestamp(reader.take(7))
    discharged_at = _decode_timestamp(reader.take(7))
    return SmsStatusReport(
        smsc=smsc,
        message_reference=reference,
        recipient=recipient,
        submitted_at=submitted_at,
        discharged_at=discharged_at,
        status=reader.octet(),
    )


# ---------------------------------------------------------------- encoding


def _units(char: str, alphabet: Alphabet) -> int:
    if alphabet is Alphabet.GSM7:
        return len(_GSM7_ENCODE[char])
    return 2 if ord(char) > 0xFFFF else 1


def split_text(text: str) -> tuple[Alphabet, list[str]]:
    """The alphabet for `text` (GSM 7-bit when every character fits, else UCS2) and its parts:
    one when it fits a single message, else chunks of at most 153 septets / 67 UTF-16 units.
    A chunk never ends inside an escape sequence or a surrogate pair, as characters are kept
    whole."""
    alphabet = Alphabet.GSM7 if gsm7_fits(text) else Alphabet.UCS2
    single, part = (
        (GSM7_SINGLE_MAX_SEPTETS, GSM7_PART_MAX_SEPTETS)
        if alphabet is Alphabet.GSM7
        else (UCS2_SINGLE_MAX_UNITS, UCS2_PART_MAX_UNITS)
    )
    if sum(_units(char, alphabet) for char in text) <= single:
        return alphabet, [text]
    chunks: list[str] = []
    start = used = 0
    for index, char in enumerate(text):
        size = _units(char, alphabet)
        if used + size > part:
            chunks.append(text[start:index])
            start, used = index, 0
        used += size
    chunks.append(text[start:])
    if len(chunks) > MAX_PARTS:
        raise ValueError(f"text needs {len(chunks)} parts, at most {MAX_PARTS} can be linked")
    return alphabet, chunks


def _user_data(chunk: str, alphabet: Alphabet, header: bytes) -> tuple[int, bytes]:
    """TP-UDL and TP-UD of one part."""
    if alphabet is Alphabet.GSM7:
        septets = gsm7_encode(chunk)
        packed = pack_septets(septets, header=header)
        return math.ceil(len(header) * 8 / 7) + len(septets), packed
    body = header + chunk.encode("utf-16-be")
    return len(body), body


def _concatenation_header(reference: int, total: int, sequence: int) -> bytes:
    if total == 1:
        return b""
    return bytes([5, _IEI_CONCAT_8BIT, 3, reference & 0xFF, total, sequence])


def encode_submit(
    number: str,
    text: str,
    *,
    reference: int,
    request_status_report: bool = False,
    validity: timedelta | datetime | None = None,
    smsc: str | None = None,
    reject_duplicates: bool = False,
    flash: bool = False,
) -> list[SubmitPdu]:
    """SMS-SUBMIT PDUs for `text` to `number` ("+" for international). `reference` (0-255) is
    both TP-MR and the concatenation reference; the caller counts it up per message so that
    two long messages in a row are not merged by the phone that receives them."""
    alphabet, chunks = split_text(text)
    # TS 23.040 §9.2.3.1-§9.2.3.5: MTI=01, RD bit 2, VPF bits 4-3, SRR bit 5, UDHI bit 6.
    first_base = _MTI_SUBMIT | (0x04 if reject_duplicates else 0)
    first_base |= 0x20 if request_status_report else 0
    validity_field = b""
    if isinstance(validity, timedelta):
        first_base |= 0b10 << 3
        validity_field = bytes([encode_relative_validity(validity)])
    elif isinstance(validity, datetime):
        first_base |= 0b11 << 3
        validity_field = _encode_timestamp(validity)
    elif validity is not None:
        raise TypeError(f"validity must be a timedelta or a datetime, not {type(validity)}")
    dcs = 0x08 if alphabet is Alphabet.UCS2 else 0x00
    dcs |= 0x10 if flash else 0  # §4: bit 4 says bits 1-0 are the class; class 0 = flash
    smsc_field = _encode_smsc(smsc)
    address = _encode_address(number)
    pdus = []
    for sequence, chunk in enumerate(chunks, start=1):
        header = _concatenation_header(reference, len(chunks), sequence)
        length, user_data = _user_data(chunk, alphabet, header)
        first = first_base | (_FO_UDHI if header else 0)
        tpdu = (
            bytes([first, reference & 0xFF])
            + address
            + bytes([0x00, dcs])
            + validity_field
            + bytes([length])
            + user_data
        )
        pdus.append(SubmitPdu(data=smsc_field + tpdu, tpdu_length=len(tpdu)))
    return pdus


def encode_deliver(
    sender: str,
    text: str,
    *,
    timestamp: datetime,
    reference: int = 0,
    smsc: str | None = None,
) -> list[bytes]:
    """SMS-DELIVER PDUs as a network would deliver `text` (for fake modems and tests).
    `sender` is a number ("+" for international) or an alphanumeric name."""
    alphabet, chunks = split_text(text)
    if _NUMBER_RE.fullmatch(sender):
        address = _encode_address(sender)
    else:
        septets = gsm7_encode(sender)
        packed = pack_septets(septets)
        address = bytes([math.ceil(len(septets) * 7 / 4), 0xD0]) + packed
    dcs = 0x08 if alphabet is Alphabet.UCS2 else 0x00
    pdus = []
    for sequence, chunk in enumerate(chunks, start=1):
        header = _concatenation_header(reference, len(chunks), sequence)
        length, user_data = _user_data(chunk, alphabet, header)
        # MTI=00; TP-MMS bit 2 set means "no more messages are waiting" (§9.2.3.2).
        first = _MTI_DELIVER | 0x04 | (_FO_UDHI if header else 0)
        pdus.append(
            _encode_smsc(smsc)
            + bytes([first])
            + address
            + bytes([0x00, dcs])
            + _encode_timestamp(timestamp)
            + bytes([length])
            + user_data
        )
    return pdus


# ---------------------------------------------------------------- reassembly


@dataclass
class _PendingSet:
    first_seen: float
    parts: dict[int, SmsDeliver]


def _join_parts(parts: Sequence[SmsDeliver]) -> str:
    """Text of parts in order. Runs of UCS2 parts are joined as octets before decoding, so an
    emoji whose surrogate pair a sender cut across two parts comes out whole."""
    out: list[str] = []
    ucs2_run = b""
    for part in parts:
        if part.alphabet is Alphabet.UCS2:
            ucs2_run += part.data
            continue
        if ucs2_run:
            out.append(decode_ucs2(ucs2_run))
            ucs2_run = b""
        out.append(part.text)
    if ucs2_run:
        out.append(decode_ucs2(ucs2_run))
    return "".join(out)


def _whole(parts: Sequence[SmsDeliver], total: int) -> ReceivedSms:
    ordered = sorted(parts, key=lambda p: p.concatenation.sequence if p.concatenation else 1)
    present = {p.concatenation.sequence if p.concatenation else 1 for p in ordered}
    first = ordered[0]
    return ReceivedSms(
        sender=first.sender,
        text=_join_parts(ordered),
        timestamp=first.timestamp,
        smsc=first.smsc,
        parts_total=total,
        parts_received=len(ordered),
        missing=tuple(n for n in range(1, total + 1) if n not in present),
    )


_SetKey = tuple[str, int, int]


class Reassembler:
    """Collects the parts of concatenated messages (TS 23.040 §9.2.3.24.1), keyed by sender,
    reference and total. `add()` returns the whole message once every part is in; `expire(now)`
    hands out sets still incomplete after `timeout_s` from their first part, marked incomplete,
    so that a lost part never costs the office the rest of the message. A part that repeats one
    already held (the modem delivered it twice) is dropped, also shortly after its set
    completed. `now` is any monotonic clock in seconds."""

    def __init__(
        self, *, timeout_s: float = INCOMPLETE_TIMEOUT_S, max_pending: int = MAX_PENDING_SETS
    ) -> None:
        self._timeout_s = timeout_s
        self._max_pending = max_pending
        self._pending: dict[_SetKey, _PendingSet] = {}
        # Sets completed recently: their parts, to recognise a late duplicate.
        self._completed: dict[_SetKey, _PendingSet] = {}

    def add(self, message: SmsDeliver, *, now: float) -> ReceivedSms | None:
        concatenation = message.concatenation
        if concatenation is None or concatenation.total == 1:
            return _whole([message], 1)
        key = (message.sender, concatenation.reference, concatenation.total)
        self._forget_completed(now)
        done = self._completed.get(key)
        if done is not None:
            earlier = done.parts.get(concatenation.sequence)
            if earlier is not None and earlier.data == message.data:
                LOGGER.info("duplicate part %d of a completed message from %s dropped",
                            concatenation.sequence, message.sender)
                return None
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _PendingSet(first_seen=now, parts={})
        if concatenation.sequence in pending.parts:
            LOGGER.info("duplicate part %d from %s dropped", concatenation.sequence, message.sender)
            return None
        pending.parts[concatenation.sequence] = message
        if len(pending.parts) == concatenation.total:
            del self._pending[key]
            self._completed[key] = _PendingSet(first_seen=now, parts=pending.parts)
            return _whole(list(pending.parts.values()), concatenation.total)
        return None

    def expire(self, now: float) -> list[ReceivedSms]:
        """Incomplete messages whose time is up, and the oldest beyond `max_pending`."""
        self._forget_completed(now)
        expired = [
            key for key, pending in self._pending.items()
            if now - pending.first_seen >= self._timeout_s
        ]
        overflow = len(self._pending) - len(expired) - self._max_pending
        if overflow > 0:
            by_age = sorted(
                (key for key in self._pending if key not in expired),
                key=lambda k: self._pending[k].first_seen,
            )
            expired.extend(by_age[:overflow])
        out = []
        for key in expired:
            pending = self._pending.pop(key)
            LOGGER.warning("message from %s handed out with %d of %d parts",
                           key[0], len(pending.parts), key[2])
            out.append(_whole(list(pending.parts.values()), key[2]))
        return out

    def _forget_completed(self, now: float) -> None:
        self._completed = {
            key: done for key, done in self._completed.items()
            if now - done.first_seen < self._timeout_s
        }

    def next_deadline(self) -> float | None:
        """When `expire()` next has something to do (the aioquic `get_timer` shape)."""
        if not self._pending:
            return None
        return min(p.first_seen for p in self._pending.values()) + self._timeout_s

    @property
    def pending_count(self) -> int:
        return len(self._pending)


# ---------------------------------------------------------------- TS 27.005 headers


def split_fields(text: str) -> list[str]:
    """Comma-separated AT result fields; commas inside quotes do not split, quotes are removed."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    fields.append("".join(current).strip())
    return fields


# Text-mode names some modems print even in PDU mode (TS 27.005 §3.1 <stat>).
_STATUS_NAMES = {"REC UNREAD": 0, "REC READ": 1, "STO UNSENT": 2, "STO SENT": 3, "ALL": 4}


def _strip_prefix(line: str, prefix: str) -> str:
    line = line.strip()
    if line.upper().startswith(prefix):
        return line[len(prefix) :].lstrip()
    return line


def _int_field(value: str, what: str, line: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SmsDecodeError(f"{what} {value!r} is not a number in {line!r}") from None


def _status_field(value: str, line: str) -> int:
    if value.upper() in _STATUS_NAMES:
        return _STATUS_NAMES[value.upper()]
    return _int_field(value, "status", line)


def parse_cmgr_header(line: str) -> StoredMessageHeader:
    """`+CMGR: <stat>,[<alpha>],<length>` (TS 27.005 §3.4.3, PDU mode)."""
    fields = split_fields(_strip_prefix(line, "+CMGR:"))
    if len(fields) < 2:
        raise SmsDecodeError(f"not a +CMGR header: {line!r}")
    alpha = (fields[1] or None) if len(fields) > 2 else None
    return StoredMessageHeader(
        index=None,
        status=_status_field(fields[0], line),
        alpha=alpha,
        length=_int_field(fields[-1], "length", line),
    )


def parse_cmgl_header(line: str) -> StoredMessageHeader:
    """`+CMGL: <index>,<stat>,[<alpha>],<length>` (TS 27.005 §3.4.2, PDU mode)."""
    fields = split_fields(_strip_prefix(line, "+CMGL:"))
    if len(fields) < 3:
        raise SmsDecodeError(f"not a +CMGL header: {line!r}")
    return StoredMessageHeader(
        index=_int_field(fields[0], "index", line),
        status=_status_field(fields[1], line),
        alpha=(fields[2] or None) if len(fields) > 3 else None,
        length=_int_field(fields[-1], "length", line),
    )


def parse_cmt_header(line: str) -> StoredMessageHeader:
    """`+CMT: [<alpha>],<length>` (TS 27.005 §3.4.1, direct delivery in PDU mode)."""
    fields = split_fields(_strip_prefix(line, "+CMT:"))
    return StoredMessageHeader(
        index=None,
        status=None,
        alpha=(fields[0] or None) if len(fields) > 1 else None,
        length=_int_field(fields[-1], "length", line),
    )


def parse_cmti(line: str) -> tuple[str, int]:
    """`+CMTI: <mem>,<index>` (TS 27.005 §3.4.1): where the new message was stored."""
    fields = split_fields(_strip_prefix(line, "+CMTI:"))
    if len(fields) != 2:
        raise SmsDecodeError(f"not a +CMTI indication: {line!r}")
    return fields[0], _int_field(fields[1], "index", line)


def iter_cmgl(info: Sequence[str]) -> Iterator[tuple[StoredMessageHeader, str]]:
    """(header, PDU hex) pairs of a `+CMGL` response's information lines. A header whose PDU
    line is missing, or a line that is neither a header nor hex, is logged and skipped."""
    pending: StoredMessageHeader | None = None
    for line in info:
        if line.strip().upper().startswith("+CMGL:"):
            if pending is not None:
                LOGGER.warning("+CMGL entry %s has no PDU line", pending.index)
            try:
                pending = parse_cmgl_header(line)
            except SmsDecodeError as error:
                LOGGER.warning("%s", error)
                pending = None
        elif pending is not None and _HEX_RE.fullmatch(line.strip()):
            yield pending, line.strip()
            pending = None
        elif line.strip():
            LOGGER.warning("stray line in +CMGL response: %r", line[:80])
    if pending is not None:
        LOGGER.warning("+CMGL entry %s has no PDU line", pending.index)
