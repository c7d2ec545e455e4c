"""What sets GSM modems apart, pure: each profile's extra init, audio switches, hang-up and DTMF
commands (MODEMS.md §1, from chan_dongle and chan_quectel), and the reading of the lines a modem
sends on its own into small signals the GSM driver (hal/modem/gsm.py) acts on. Nothing here does
I/O; `interpret(profile, line, extra)` is a function of its arguments.

Profiles: `huawei` (E1550-class voice sticks: ^ORIG/^CONF/^CONN/^CEND, audio on a second port
after AT^DDSETEX=2), `quectel` (EC2x: +QIND "ccinfo" or ^DSCI, AT+QPCMV=1,0, AT+QHUP),
`simcom` (SIM7600: VOICE CALL: BEGIN/END, MISSED_CALL, +CLCC URCs, AT+CPCMREG=1 once active,
bg111#276) and `generic` (27.007 only), chosen by `choose_profile()` from +CGMI/+CGMM.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from hal.modem.sms import SmsDecodeError, parse_cmti, split_fields

LOGGER = logging.getLogger(__name__)

# 3GPP TS 24.008 Annex H (10.5.4.11) causes the driver tells apart.
CAUSE_NORMAL = 16
CAUSE_BUSY = 17
CAUSE_NO_USER_RESPONDING = 18
CAUSE_NO_ANSWER = 19
CAUSE_REJECTED = 21
CAUSE_TEXTS = {1: "unassigned number", 16: "normal clearing", 17: "user busy",
               18: "no user responding", 19: "no answer", 21: "call rejected",
               27: "destination out of order", 28: "invalid number format",
               31: "normal, unspecified", 34: "no circuit available", 41: "temporary failure"}

# TS 27.007 §7.18 +CLCC <stat>.
CLCC_ACTIVE = 0
CLCC_HELD = 1
CLCC_DIALING = 2
CLCC_ALERTING = 3
CLCC_INCOMING = 4
CLCC_WAITING = 5
CLCC_RELEASED = 6  # SIMCom's +CLCC URC and Quectel's ^DSCI: disconnected
QUECTEL_CCINFO_RELEASED = -1

# TS 27.007 §7.2 +CREG <stat> → what `linebox status` calls it. 6/7 are "SMS only" (E-UTRAN):
# the SIM is registered all the same.
REGISTRATION_NAMES = {0: "none", 1: "home", 2: "searching", 3: "denied", 4: "none",
                      5: "roaming", 6: "home", 7: "roaming", 8: "none", 9: "home",
                      10: "roaming"}
# TS 27.007 §8.5: <rssi> 0 is -113 dBm or less, 31 is -51 dBm or more, 2 dBm a step; 99 unknown.
RSSI_UNKNOWN = 99
RSSI_BASE_DBM = -113
RSSI_STEP_DBM = 2
NUMBER_TYPE_INTERNATIONAL = 145  # TS 24.008 §10.5.4.7: TON international, ISDN plan


# ------------------------------------------------------------------------------- signals
@dataclass(frozen=True, slots=True, kw_only=True)
class RingHeard:
    """RING, or a call-state URC saying a call comes in."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerIdHeard:
    """+CLIP (TS 27.007 §7.6): `number` None when withheld, with the reason."""

    number: str | None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallProgressed:
    """A call moved: "dialing", "alerting", "active" or "incoming"."""

    state: str
    index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallReleased:
    """A call ended. `cause` (TS 24.008) when the URC carries one; `definite`: the URC is the
    modem's last word on it (^CEND, VOICE CALL: END, MISSED_CALL). Otherwise a V.250 result
    (NO CARRIER, BUSY) usually follows with the reason, and the driver waits a moment for it."""

    cause: int | None = None
    definite: bool = False
    index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResultHeard:
    """NO CARRIER / BUSY / NO ANSWER with no command pending (V.250 §6.3.1)."""

    result: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalHeard:
    rssi: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationHeard:
    stat: int
    lte: bool  # +CEREG rather than +CREG


@dataclass(frozen=True, slots=True, kw_only=True)
class SimHeard:
    sim: str  # ready | pin | absent


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsStored:
    memory: str
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsDelivered:
    """+CMT: a message handed over directly, with its PDU line."""

    header: str
    pdu: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsStorageFull:
    """^SMMEMFULL: +CMTI stops coming until the storage is emptied (wdoekes#47)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UssdHeard:
    line: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyHeard:
    key: str


Signal = (RingHeard | CallerIdHeard | CallProgressed | CallReleased | CallResultHeard
          | SignalHeard | RegistrationHeard | SimHeard | SmsStored | SmsDelivered
          | SmsStorageFull | UssdHeard | KeyHeard)


# ------------------------------------------------------------------------------- profiles
def _chup(index: int) -> str:
    return "AT+CHUP"  # TS 27.007 §6.5


def _qhup(index: int) -> str:
    # Quectel AT+QHUP=<cause>,<idx>: hangs up one call with a cause the far end sees.
    return f"AT+QHUP={CAUSE_NORMAL},{index}"


def _vts(index: int, key: str) -> str:
    return f"AT+VTS={key}"  # TS 27.007 §C.2.11


def _huawei_dtmf(index: int, key: str) -> str:
    return f"AT^DTMF={index},{key}"


@dataclass(frozen=True, kw_only=True)
class Profile:
    """One family of modems: what the driver sends beyond TS 27.007 and when."""

    name: str
    init: tuple[str, ...] = ()  # after the common init; failures are logged, not fatal
    voice_check: str | None = None  # a command whose success says the firmware does voice
    # (command, answer prefix) tried in turn until one gives the SIM's ICCID
    iccid: tuple[tuple[str, str], ...] = (("AT+CCID", "+CCID"), ("AT+ICCID", "+ICCID"))
    before_answer: tuple[str, ...] = ()
    after_answer: tuple[str, ...] = ()
    before_dial: tuple[str, ...] = ()
    after_dial: tuple[str, ...] = ()
    when_active: tuple[str, ...] = ()  # once the call is active (answered by either side)
    when_released: tuple[str, ...] = ()
    hang_up: Callable[[int], str] = _chup
    dtmf: Callable[[int, str], str] = _vts
    lte: bool = False  # +CEREG exists


HUAWEI = Profile(
    name="huawei",
    init=("AT+CSSN=1,1",),
    voice_check="AT^CVOICE?",  # ^CVOICE:0,8000,16,20 on a voice firmware, an error otherwise
    iccid=(("AT^ICCID?", "^ICCID"), ("AT+CCID", "+CCID")),
    # chan_dongle: the audio port carries voice only after ^DDSETEX=2, sent after ATA / ATD.
    after_answer=("AT^DDSETEX=2",),
    after_dial=("AT^DDSETEX=2",),
    dtmf=_huawei_dtmf,
)
QUECTEL = Profile(
    name="quectel",
    init=('AT+QINDCFG="ccinfo",1,0', 'AT+QINDCFG="csq",1,0', 'AT+QINDCFG="act",1,0',
          "AT+QTONEDET=1", "AT+QPCMV?"),
    iccid=(("AT+QCCID", "+QCCID"),),
    # chan_quectel (QI): AT+QPCMV=0;+QPCMV=1,0 before D/A: voice over the USB serial port.
    before_answer=("AT+QPCMV=0", "AT+QPCMV=1,0"),
    before_dial=("AT+QPCMV=0", "AT+QPCMV=1,0"),
    hang_up=_qhup,
    lte=True,
)
SIMCOM = Profile(
    name="simcom",
    init=("AT+CLCC=1", "AT+AUTOCSQ=1,1", "AT+DDET=1", "AT+CPCMREG?"),
    iccid=(("AT+CICCID", "+ICCID"),),
    before_dial=("AT+CPCMREG=0",),
    # bg111#276: no audio unless AT+CPCMREG=1 is sent once the call is active.
    when_active=("AT+CPCMREG=1",),
    when_released=("AT+CPCMREG=0",),
    lte=True,
)
GENERIC = Profile(name="generic", lte=True)
PROFILES = {p.name: p for p in (HUAWEI, QUECTEL, SIMCOM, GENERIC)}


def choose_profile(manufacturer: str, model: str) -> Profile:
    """The profile for `auto`, from +CGMI / +CGMM."""
    text = f"{manufacturer} {model}".lower()
    if "huawei" in text or re.search(r"\be1[0-9]{3}\b", text):
        return HUAWEI
    if "quectel" in text or re.search(r"\beg?c2[0-9]\b", text):
        return QUECTEL
    if "simcom" in text or "sim7" in text or "sim5" in text:
        return SIMCOM
    LOGGER.warning("unknown modem %r %r: plain TS 27.007 (no audio switch)", manufacturer, model)
    return GENERIC


# ------------------------------------------------------------------------------- parsing
def rssi_to_dbm(rssi: int) -> int | None:
    if not 0 <= rssi <= 31:
        return None
    return RSSI_BASE_DBM + RSSI_STEP_DBM * rssi


def _body(line: str) -> str:
    return line.split(":", 1)[1].strip() if ":" in line else ""


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def parse_csq(line: str) -> int | None:
    """`+CSQ: <rssi>,<ber>` (also SIMCom's +CSQN and Quectel's +QIND "csq" bodies)."""
    fields = split_fields(_body(line))
    if fields and fields[0].strip('"').lower() == "csq":
        fields = fields[1:]
    return _int(fields[0]) if fields else None


def parse_registration_reply(line: str) -> int | None:
    """The <stat> of a +CREG?/+CEREG? answer `<n>,<stat>[,...]` (TS 27.007 §7.2)."""
    fields = split_fields(_body(line))
    return _int(fields[1]) if len(fields) >= 2 else None


def parse_registration_urc(line: str) -> int | None:
    """The <stat> of a +CREG/+CEREG URC `<stat>[,<lac>,<ci>[,<AcT>]]`."""
    fields = split_fields(_body(line))
    return _int(fields[0]) if fields else None


def parse_cops(line: str) -> str:
    """The operator of `+COPS: <mode>[,<format>,<oper>[,<AcT>]]` ('' when not registered)."""
    fields = split_fields(_body(line))
    return fields[2] if len(fields) >= 3 else ""


def parse_cpin(line: str) -> str | None:
    """`+CPIN: READY` / `SIM PIN` / `NOT INSERTED` → ready | pin | absent (other codes: PUK...
    are reported as pin: the SIM wants a code the box will not guess)."""
    code = _body(line).upper()
    if code == "READY":
        return "ready"
    if "NOT INSERTED" in code or "NOT READY" in code:
        return "absent"
    return "pin" if code else None


def parse_clip(line: str) -> CallerIdHeard | None:
    """`+CLIP: <number>,<type>[,<subaddr>,<satype>[,<alpha>[,<CLI validity>]]]` (§7.6); None
    when it is not one (no <type>: a garbled line must not ring the line)."""
    fields = split_fields(_body(line))
    if len(fields) < 2 or _int(fields[1]) is None or not re.fullmatch(r"\+?[0-9*#]*", fields[0]):
        return None
    number = fields[0]
    number_type = _int(fields[1])
    validity = _int(fields[5]) if len(fields) > 5 else None
    if validity == 2:
        return CallerIdHeard(number=None, reason="unavailable")
    if validity == 1 or not number:
        return CallerIdHeard(number=None, reason="private")
    if number_type == NUMBER_TYPE_INTERNATIONAL and not number.startswith("+"):
        number = "+" + number
    return CallerIdHeard(number=number)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedCall:
    """One line of +CLCC (TS 27.007 §7.18)."""

    index: int
    incoming: bool
    stat: int
    number: str = ""


def parse_clcc(line: str) -> ListedCall | None:
    fields = split_fields(_body(line))
    if len(fields) < 3:
        return None
    index, direction, stat = _int(fields[0]), _int(fields[1]), _int(fields[2])
    if index is None or direction is None or stat is None:
        return None
    return ListedCall(index=index, incoming=direction == 1, stat=stat,
                      number=fields[5] if len(fields) > 5 else "")


_STATE_OF_STAT = {CLCC_ACTIVE: "active", CLCC_DIALING: "dialing", CLCC_ALERTING: "alerting",
                  CLCC_INCOMING: "incoming", CLCC_WAITING: "incoming"}


def _call_state(index: int | None, stat: int | None) -> list[Signal]:
    if stat is None:
        return []
    if stat in (CLCC_RELEASED, QUECTEL_CCINFO_RELEASED):
        return [CallReleased(index=index)]
    state = _STATE_OF_STAT.get(stat)
    if state == "incoming":
        return [RingHeard()]
    return [CallProgressed(state=state, index=index)] if state else []


def _key(text: str) -> list[Signal]:
    text = text.strip().strip('"')
    if text.isdigit() and len(text) > 1:  # Quectel +QTONEDET: the key's ASCII code
        text = chr(int(text)) if int(text) < 128 else ""
    return [KeyHeard(key=text)] if len(text) == 1 and text in "0123456789*#ABCD" else []


def interpret(profile: Profile, line: str, extra: tuple[str, ...] = ()) -> list[Signal]:
    """The signals in one unsolicited line (with the PDU line of a +CMT in `extra`). A line
    nobody knows gives none; a malformed one is logged and gives none."""
    try:
        return _interpret(profile, line.strip(), extra)
    except (ValueError, IndexError, SmsDecodeError) as error:
        LOGGER.warning("unsolicited line not understood: %r (%s)", line[:80], error)
        return []


def _interpret(profile: Profile, line: str, extra: tuple[str, ...]) -> list[Signal]:
    upper = line.upper()
    name = upper.split(":", 1)[0].strip()
    if upper == "RING" or upper.startswith("+CRING"):
        return [RingHeard()]
    if upper in ("NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"):
        return [CallResultHeard(result=upper)]
    if name == "+CLIP":
        heard = parse_clip(line)
        return [heard] if heard is not None else []
    if name in ("+CSQ", "+CSQN", "^RSSI"):
        rssi = parse_csq(line) if name != "^RSSI" else _int(_body(line))
        return [SignalHeard(rssi=rssi)] if rssi is not None else []
    if name in ("+CREG", "+CEREG", "+CGREG"):
        stat = parse_registration_urc(line)
        return [RegistrationHeard(stat=stat, lte=name == "+CEREG")] if stat is not None else []
    if name == "+CPIN":
        sim = parse_cpin(line)
        return [SimHeard(sim=sim)] if sim else []
    if name == "+CMTI":
        memory, index = parse_cmti(line)
        return [SmsStored(memory=memory, index=index)]
    if name == "+CMT":
        return [SmsDelivered(header=line, pdu=extra[0])] if extra else []
    if name == "^SMMEMFULL":
        return [SmsStorageFull()]
    if name == "+CUSD":
        return [UssdHeard(line=line)]
    if name == "+CLCC":
        listed = parse_clcc(line)
        return _call_state(listed.index, listed.stat) if listed else []
    if name in ("+RXDTMF", "+DTMF", "+QTONEDET"):
        return _key(_body(line))
    # Huawei (chan_dongle at_response.c): ^ORIG:i,t ^CONF:i ^CONN:i,t ^CEND:i,dur,status,cause
    if name in ("^ORIG", "^CONF", "^CONN"):
        call = _int(split_fields(_body(line))[0])
        if call is None:
            return []
        state = {"^ORIG": "dialing", "^CONF": "alerting", "^CONN": "active"}[name]
        return [CallProgressed(state=state, index=call)]
    if name == "^CEND":
        fields = split_fields(_body(line))
        call = _int(fields[0])
        if call is None or len(fields) < 4:
            return []
        return [CallReleased(index=call, cause=_int(fields[3]), definite=True)]
    # Quectel: +QIND: "ccinfo",idx,dir,state,mode,mpty,"num",toa / +QIND: "csq",rssi,ber
    if name == "+QIND":
        fields = split_fields(_body(line))
        kind = fields[0].lower() if fields else ""
        if kind == "ccinfo" and len(fields) > 3:
            return _call_state(_int(fields[1]), _int(fields[3]))
        if kind == "csq" and len(fields) > 1:
            rssi = _int(fields[1])
            return [SignalHeard(rssi=rssi)] if rssi is not None else []
        return []
    if name == "^DSCI":  # ^DSCI: id,dir,stat,type,num,toa
        fields = split_fields(_body(line))
        return _call_state(_int(fields[0]), _int(fields[2])) if len(fields) > 2 else []
    # SIMCom: VOICE CALL: BEGIN / VOICE CALL: END: <duration> / MISSED_CALL: <time> <number>
    if upper.startswith("VOICE CALL:"):
        if "BEGIN" in upper:
            return [CallProgressed(state="active")]
        if "END" in upper:
            return [CallReleased(definite=True)]
        return []
    if upper.startswith("MISSED_CALL"):
        return [CallReleased(definite=True)]
    return []


def cause_text(cause: int | None) -> str:
    if cause is None:
        return "released"
    return CAUSE_TEXTS.get(cause, f"cause {cause}")
