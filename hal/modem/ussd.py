"""USSD (balance checks such as "*100#"), pure: the `AT+CUSD=1,"<str>",15` request line and the
`+CUSD: <m>[,<str>[,<dcs>]]` answer of 3GPP TS 27.007 §7.15, with <str> in whichever form the
modem uses — plain text, the 7-bit packed hex a Huawei E1550 wants and gives, every septet in hex
(+CSCS="HEX"), or UCS2 hex (+CSCS="UCS2", as Quectel is set up) — and <dcs> read as the cell
broadcast data coding scheme of TS 23.038 §5 (15: GSM 7-bit, 72: UCS2, the form of Russian
operators' "Баланс: 123.45 р.").
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass

from hal.modem.sms import (
    Alphabet,
    decode_ucs2,
    gsm7_decode,
    gsm7_encode,
    pack_septets,
    unpack_septets,
)

LOGGER = logging.getLogger(__name__)

USSD_DCS_GSM7 = 15  # TS 23.038 §5: 0000 1111, GSM 7-bit, language unspecified
USSD_CANCEL_COMMAND = "AT+CUSD=2"
# TS 24.080 §4.4.2.13: a USSD string holds at most 160 octets, 182 packed septets.
USSD_MAX_SEPTETS = 182
_CR = 0x0D
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})*")
# Characters that would end or corrupt the AT command line around a plain request.
_FORBIDDEN_PLAIN = set('"\r\n\x1a\x1b')


class UssdDecodeError(ValueError):
    """A +CUSD line whose <m> is missing or not one TS 27.007 §7.15 defines."""


class UssdTextForm(enum.Enum):
    """How the modem writes <str> for GSM 7-bit text (TS 27.007 §7.15 and +CSCS)."""

    PLAIN = "plain"  # +CSCS="IRA"/"GSM": the characters themselves
    PACKED_HEX = "packed_hex"  # Huawei E1550 and kin: septets packed as in an SMS, in hex
    SEPTET_HEX = "septet_hex"  # +CSCS="HEX": each septet as two hex digits
    UCS2_HEX = "ucs2_hex"  # +CSCS="UCS2": UTF-16BE octets in hex


class UssdStatus(enum.IntEnum):
    """<m> of `+CUSD:` (TS 27.007 §7.15)."""

    NO_FURTHER_ACTION = 0
    FURTHER_ACTION_REQUIRED = 1  # a menu: the network waits for our answer in the same session
    TERMINATED_BY_NETWORK = 2
    OTHER_CLIENT_RESPONDED = 3
    NOT_SUPPORTED = 4
    TIMED_OUT = 5


@dataclass(frozen=True, kw_only=True)
class UssdResponse:
    """One `+CUSD:` from the modem."""

    status: UssdStatus
    text: str | None  # None when the network sent no string (e.g. "+CUSD: 2")
    dcs: int | None

    @property
    def session_open(self) -> bool:
        return self.status is UssdStatus.FURTHER_ACTION_REQUIRED

    @property
    def failed(self) -> bool:
        return self.status in (UssdStatus.NOT_SUPPORTED, UssdStatus.TIMED_OUT)


def _packed_septets(text: str) -> list[int]:
    """Septets of `text` padded for packing as TS 23.038 §6.1.2.3.1 asks of USSD: 7 spare bits
    at the end hold a CR, so the receiver does not read them as '@'; a text that itself ends in
    CR on an octet boundary gets a second CR so that its own is not stripped."""
    septets = gsm7_encode(text)
    if len(septets) % 8 == 7 or (len(septets) % 8 == 0 and septets and septets[-1] == _CR):
        septets.append(_CR)
    return septets


def encode_ussd(code: str, *, form: UssdTextForm = UssdTextForm.PLAIN) -> str:
    """The <str> of a request for `code` in the modem's form. Raises ValueError for text the
    GSM 7-bit alphabet lacks, for one that would break the command line, or one too long."""
    septets = gsm7_encode(code)
    if len(septets) > USSD_MAX_SEPTETS:
        raise ValueError(f"USSD string of {len(septets)} septets, at most {USSD_MAX_SEPTETS}")
    if form is UssdTextForm.PLAIN:
        if _FORBIDDEN_PLAIN & set(code):
            raise ValueError(f"USSD string {code!r} would break the AT command line")
        return code
    if form is UssdTextForm.PACKED_HEX:
        return pack_septets(_packed_septets(code)).hex().upper()
    if form is UssdTextForm.SEPTET_HEX:
        return bytes(septets).hex().upper()
    return code.encode("utf-16-be").hex().upper()


def ussd_command(code: str, *, form: UssdTextForm = UssdTextForm.PLAIN) -> str:
    """`AT+CUSD=1,"<str>",15`: send `code` and have the answer reported as `+CUSD:`."""
    return f'AT+CUSD=1,"{encode_ussd(code, form=form)}",{USSD_DCS_GSM7}'


def unpack_ussd(data: bytes) -> str:
    """Text of 7-bit packed USSD octets. Where the septets end exactly on an octet boundary the
    last one is padding if it is CR (TS 23.038 §6.1.2.3.1) or zero (what some networks send
    instead), and is dropped."""
    count = len(data) * 8 // 7
    septets = unpack_septets(data, count)
    if len(data) % 7 == 0 and septets and septets[-1] in (_CR, 0x00):
        septets.pop()
    return gsm7_decode(septets)


def cbs_alphabet(dcs: int) -> tuple[Alphabet, int]:
    """The alphabet of a cell broadcast DCS (TS 23.038 §5), and how many leading characters
    (GSM 7-bit) or octets (UCS2) are a language indication to skip."""
    group = dcs >> 4
    if dcs == 0x10:  # GSM 7-bit, the message starts with a language and CR: "ru<CR>"
        return Alphabet.GSM7, 3
    if dcs == 0x11:  # UCS2, preceded by a two-character language packed in two octets
        return Alphabet.UCS2, 2
    if group in (0b0100, 0b0101, 0b0110, 0b0111, 0b1001):  # general / with a UDH
        return (Alphabet.GSM7, Alphabet.DATA_8BIT, Alphabet.UCS2, Alphabet.GSM7)[
            (dcs >> 2) & 3
        ], 0
    if group == 0b1111:
        return (Alphabet.DATA_8BIT if dcs & 0x04 else Alphabet.GSM7), 0
    return Alphabet.GSM7, 0  # languages 0000-0011; reserved groups read as GSM 7-bit (§5)


def _from_hex(text: str) -> bytes | None:
    compact = text.strip()
    if not _HEX_RE.fullmatch(compact):
        return None
    return bytes.fromhex(compact)


def decode_ussd_text(
    text: str, dcs: int | None, *, form: UssdTextForm = UssdTextForm.PLAIN
) -> str:
    """The text of <str>. A string that should be hex but is not is logged and returned as
    it came: some firmware decodes it itself, and a balance shown raw beats none."""
    alphabet, skip = cbs_alphabet(USSD_DCS_GSM7 if dcs is None else dcs)
    if alphabet is Alphabet.GSM7 and form is UssdTextForm.PLAIN:
        return text[skip:]
    data = _from_hex(text)
    if data is None:
        LOGGER.warning("USSD string %r (dcs %s) is not the hex it should be", text[:80], dcs)
        return text
    if alphabet is Alphabet.GSM7:
        if form is UssdTextForm.PACKED_HEX:
            decoded = unpack_ussd(data)
        elif form is UssdTextForm.SEPTET_HEX:
            decoded = gsm7_decode(data)
        else:
            decoded = decode_ucs2(data)
        return decoded[skip:]
    if alphabet is Alphabet.UCS2:
        return decode_ucs2(data[skip:])
    return data.decode("latin-1")  # 8-bit data has no character set (TS 23.038 §5)


def parse_cusd(line: str, *, form: UssdTextForm = UssdTextForm.PLAIN) -> UssdResponse:
    """`+CUSD: <m>[,<str>[,<dcs>]]`. <str> runs from its first quote to its last, so quotes or
    commas inside it survive; a modem that breaks it over lines is read as one line when the
    caller joins them with "\\n"."""
    body = line.strip()
    if body.upper().startswith("+CUSD:"):
        body = body[len("+CUSD:") :].strip()
    head, _, rest = body.partition(",")
    try:
        status = UssdStatus(int(head.strip()))
    except ValueError:
        raise UssdDecodeError(f"not a +CUSD result: {line[:80]!r}") from None
    rest = rest.strip()
    if not rest:
        return UssdResponse(status=status, text=None, dcs=None)
    if rest.startswith('"') and rest.count('"') >= 2:
        end = rest.rindex('"')
        raw, tail = rest[1:end], rest[end + 1 :].lstrip(" ,")
    else:  # unquoted, as some firmware writes it: a trailing number is the dcs
        raw, comma, tail = rest.rpartition(",")
        if not comma or not tail.strip().isdigit():
            raw, tail = rest, ""
        raw = raw.strip().strip('"')
    dcs = int(tail) if tail.strip().isdigit() else None
    if tail.strip() and dcs is None:
        LOGGER.warning("+CUSD dcs %r is not a number; read as GSM 7-bit", tail[:20])
    return UssdResponse(status=status, text=decode_ussd_text(raw, dcs, form=form), dcs=dcs)
