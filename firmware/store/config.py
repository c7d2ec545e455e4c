"""The configuration model of the gateway: frozen dataclasses for extensions, departments, trunks,
DID numbers, the site and the scalar settings sections (opening-hour schedules and caller rules
are `firmware.routing`'s own types), a validating parser from the plain data an admin
writes in YAML (`parse_config`, `load_yaml`) and its exact inverse (`config_to_dict`, `dump_yaml`).
Every validation failure is a `ConfigError` naming the key path, so an import can refuse a file
and tell the admin exactly which line to fix. The model knows nothing of the database (first-boot
seeding, which writes through the store, is `firmware.store.seed`).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from firmware.failover import (
    DOWN_AFTER_MAX,
    DOWN_AFTER_MIN,
    PROBE_INTERVAL_MAX_S,
    PROBE_INTERVAL_MIN_S,
    UP_AFTER_MAX,
    UP_AFTER_MIN,
    FailoverSettings,
)
from firmware.recording import (
    RecordingError,
    RecordingSettings,
    parse_recording,
    recording_to_data,
)
from firmware.routing.menu import (
    GREETING_CODE,
    MENU_PREFIX,
    Menu,
    MenuError,
    menu_to_data,
    parse_menus,
)
from firmware.routing.rules import (
    ACTIONS,
    BLACKLIST,
    DEFAULT_REPLY,
    REPLY_STATUS,
    ROUTE,
    VIP,
    CallerRule,
    RuleSyntaxError,
    check_match,
)
from firmware.routing.schedule import (
    WEEKDAY_NAMES,
    Schedule,
    ScheduleError,
    TimeRange,
    format_time_range,
    load_zone,
    parse_time_range,
)
from firmware.routing.scheme import DEPARTMENT_DEFAULTS as DEPARTMENT_DEFAULTS

# The destination words of no-answer schemes, re-exported for those who write configuration
# (the web UI).
from firmware.routing.scheme import MOBILES as MOBILES
from firmware.routing.scheme import VOICEMAIL as VOICEMAIL
from firmware.routing.scheme import VOICEMAIL_PREFIX as VOICEMAIL_PREFIX
from firmware.routing.scheme import (
    DepartmentSettings,
    SchemeError,
    parse_department_settings,
    voicemail_box,
)
from firmware.routing.tollguard import (
    CALLS_PER_HOUR_MAX,
    DEFAULT_BOX_CALLS_PER_HOUR,
    DEFAULT_EXTENSION_CALLS_PER_HOUR,
    DEFAULT_OUTBOUND,
    OUTBOUND_CLASSES,
    DialPlan,
)

_Key = TypeVar("_Key", bound=Hashable)

# Every distribution strategy the config accepts. The routing code refuses, at run time, the ones
# it does not implement yet; they are accepted here so configs written for later firmware parse.
STRATEGIES = frozenset(
    {
        "ring_all",
        "in_order",
        "longest_idle",
        "round_robin",
        "cascading",
        "by_rank",
        "tiers",
        "weighted",
        "least_talk_time",
        "fewest_calls",
        "random",
        "skills",
    }
)
TRUNK_TYPES = frozenset({"sip", "gsm", "fxo"})
# Lines through a modem on a serial port (issue 12): one call at a time each.
MODEM_TRUNK_TYPES = ("gsm", "fxo")
MODEM_LINE_CHANNELS = 1
# The driver profiles (hal/modem/): "auto" asks a GSM modem who it is (AT+CGMI / AT+CGMM).
MODEMS = {
    "gsm": ("auto", "huawei", "quectel", "simcom"),
    "fxo": ("v253", "usr5637", "cx930xx", "generic"),
}
DEFAULT_MODEMS = {"gsm": "auto", "fxo": "v253"}
IMEI_DIGITS = 15  # 14 digits and the Luhn check digit (3GPP TS 23.003 §6.2.1, Annex B)
PIN_DIGITS_MIN = 4  # a SIM's PIN1 is 4 to 8 digits
PIN_DIGITS_MAX = 8
GAIN_MIN_DB = -12.0
GAIN_MAX_DB = 12.0
# Keys of a SIP trunk that mean nothing on a modem line: named in the refusal, so an admin who
# turned a SIP trunk into a GSM line knows what to delete.
SIP_TRUNK_KEYS = ("host", "transport", "username", "password", "register", "expires_s",
                  "from_domain", "digest_algorithms", "inbound_match")
WEBHOOK_TIMEOUT_MAX_S = 10.0
DIGEST_ALGORITHMS = ("MD5", "SHA-256")
TRANSPORTS = frozenset({"udp", "tcp"})
# Keys reserved for later strategies and queueing; stored verbatim in `extra`, not interpreted yet.
MEMBER_EXTRA_KEYS = ("rank", "tier", "weight", "skills")
DEPARTMENT_EXTRA_KEYS = (
    "step_delay_s", "queue", "no_answer", "schedule", "tier_time_s", "tier_mode", "rank",
    "sticky", "sticky_ring_s", "wrap_up_s", "auto_break_after",
)
TIER_MODES = ("add", "replace")
RANK_MODES = ("manual", "auto")
STICKY_MODES = ("none", "last_agent", "crm_owner")
# `schedule` was reserved before schedules existed: text names a schedule (`Department.schedule`);
# any other plain data is the old reserved form, still kept verbatim in `extra` with no effect.
LEGACY_EXTRA_KEYS = frozenset({"schedule"})
DEFAULT_TIMEZONE = "Europe/Moscow"
DEFAULT_LANGUAGE = "ru"
PROMPT_LANGUAGES = ("ru", "en")  # firmware/media/prompts/<language>/

EXTENSION_DIGITS_MIN = 2
EXTENSION_DIGITS_MAX = 8
DID_DIGITS_MIN = 3
DID_DIGITS_MAX = 15  # E.164 allows at most 15 digits
CHANNELS_MIN = 3
CHANNELS_MAX = 100
RING_TIMEOUT_MIN_S = 5
RING_TIMEOUT_MAX_S = 600
EXPIRES_MIN_S = 60
EXPIRES_MAX_S = 86400
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 128
TRUNK_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
# An employee's skill, "key:value" as the `skills` strategy matches it against the call's
# attributes (e.g. "lang:en"): no spaces, commas or further colons, so a list of them can be
# written (and typed in the web UI) as "lang:en, product:windows".
SKILL_PATTERN = re.compile(r"[^\s:,]+:[^\s:,]+")
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")

SECTIONS = (
    "extensions",
    "departments",
    "trunks",
    "numbers",
    "security",
    "sip",
    "site",
    "schedules",
    "rules",
    "crm",
    "failover",
    "hardware",
    "smtp",
    "notifications",
    "menus",
    "recording",
)

# Bounds on what is read as a configuration (issue 9 item 8): a real one is a few kilobytes and
# a few levels deep, and its numbers are counts and seconds. Past them a file (or what is stored
# in the database) is refused at once, before it can take the time and memory of an import, or
# stall the daemon's reload.
CONFIG_MAX_BYTES = 1 << 20  # of a YAML file
STORED_CONFIG_MAX_CHARS = 2 * CONFIG_MAX_BYTES  # of the database's config tables, as JSON
CONFIG_MAX_DEPTH = 64  # nested lists and mappings
CONFIG_MAX_ITEMS = 500_000  # values, keys included: more than any 1 MiB file holds
# Whole numbers stay below 10**15, so a phone number written without quotes (E.164: at most 15
# digits) still gets the "write it in quotes" message rather than this bound's.
INTEGER_DIGITS_MAX = 15
INTEGER_MAX = 10**INTEGER_DIGITS_MAX - 1
# Characters no configured text may hold (issue 9 item 13), whatever the key: every text is one
# line, so the C0 controls (TAB, CR, LF and NUL among them: CR LF in the User-Agent became a SIP
# header), DEL and the C1 controls; the bidirectional marks, embeddings, overrides and isolates
# (Unicode TR #9; U+202E shows "gpj.exe" as "exe.jpg") and the line and paragraph separators;
# and lone surrogates, which are not text at all (no UTF-8 encoding exists for them). Passwords
# are no exception: any printable character is fine in them, these are not.
_FORBIDDEN_IN_TEXT = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


class ConfigError(ValueError):
    """A configuration is invalid; `path` locates the offending key, e.g. `trunks[0].port`."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        return (ConfigError, (self.path, self.message))


@dataclass(frozen=True, kw_only=True)
class Extension:
    """A phone account: `number` is what colleagues dial, `password` the SIP digest secret."""

    number: str
    name: str
    password: str = field(repr=False)
    mobile: str | None = None  # the employee's mobile phone, an external number
    skills: tuple[str, ...] = ()  # "key:value" each, e.g. "lang:en"; the `skills` strategy
    # Digest algorithms this phone is challenged with; None: `sip.digest_algorithms`.
    digest_algorithms: tuple[str, ...] | None = None
    # Accept RFC 2069 answers (no qop, so no nonce count): only for old phones that need it.
    digest_without_qop: bool = False
    # The dearest class of external numbers this phone may dial (`firmware.routing.tollguard`)
    # and how many external calls it may place in an hour.
    outbound: str = DEFAULT_OUTBOUND
    external_calls_per_hour: int = DEFAULT_EXTENSION_CALLS_PER_HOUR


@dataclass(frozen=True, kw_only=True)
class Member:
    """One extension in a department's ring list; `extra` holds keys for later strategies."""

    extension: str
    ring_time_s: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Department:
    """A dialable group of extensions; `members` are in ring order."""

    number: str
    name: str
    strategy: str
    ring_timeout_s: int
    members: tuple[Member, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None  # name of a schedule; None: always open
    # `extra` parsed, set when the configuration is read (parse_config); not exported.
    settings: DepartmentSettings = field(default=DEPARTMENT_DEFAULTS, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class Trunk:
    """A line that carries external calls: an account at a SIP provider (`type` "sip"), or a
    GSM modem or an analog line through a voice modem (`type` "gsm" or "fxo", the modem fields
    below; one call at a time, no host)."""

    name: str
    type: str = "sip"
    host: str = ""
    port: int = 5060
    transport: str = "udp"
    username: str = ""
    password: str = field(default="", repr=False)
    register: bool = True
    expires_s: int = 3600
    channels: int = 10
    from_domain: str | None = None
    # Which of the provider's challenges the box answers, in preference order (RFC 8760 §2.4).
    digest_algorithms: tuple[str, ...] = ("MD5",)
    # How the provider's own requests are told from a stranger's: by the address and port it
    # sends from ("address_port", as providers document their signalling address), or by the
    # address alone ("address", for a provider that sends from a pool of ports — weaker: any
    # program on that host, or a spoofed UDP datagram, passes as the provider).
    inbound_match: str = "address_port"
    # Modem lines only. The YAML's `port` and `audio_port` of a gsm/fxo line are these paths
    # (`port` above stays the SIP port of a SIP trunk).
    device: str = ""  # the AT command port, e.g. /dev/serial/by-id/usb-HUAWEI_...-if02-port0
    audio_device: str = ""  # the PCM port of a modem that has one (Huawei); "": none
    modem: str = "auto"  # the driver profile, one of MODEMS[type]
    imei: str = ""  # "": the modem on `device`, whichever it is; else only this one, anywhere
    pin: str = field(default="", repr=False)  # the SIM's PIN1; "": none asked
    number: str = ""  # the SIM's (or the analog line's) own number
    gain_db: float = 0.0  # applied to the line's audio both ways

    @property
    def is_modem(self) -> bool:
        return self.type in MODEM_TRUNK_TYPES


@dataclass(frozen=True, kw_only=True)
class Number:
    """A DID number arriving over `trunk`, routed to an extension or department `destination`."""

    number: str
    trunk: str
    channels: int
    destination: str
    schedule: str | None = None  # name of a schedule; None: always open
    # Webhook routing: the box asks this URL where the call should go; `destination` is the
    # fallback when it errs, answers nonsense or takes longer than `webhook_timeout_s`.
    webhook: str | None = None
    webhook_timeout_s: float = 2.0


@dataclass(frozen=True, kw_only=True)
class Security:
    """Flood and scanner protection of the SIP port."""

    rate_limit_requests: int = 16
    rate_limit_window_s: float = 2.0
    ban_s: float = 300.0
    scanner_user_agents: tuple[str, ...] = ("friendly-scanner", "sipvicious", "sipcli")
    # Password guessing: failed digest answers within `auth_window_s` (a sliding window) that
    # ban a source address, or lock an extension against every source but its own phones.
    auth_failures_per_source: int = 10
    auth_failures_per_extension: int = 20
    auth_window_s: float = 600.0
    # SIP over TCP (RFC 3261 §18.3): connections in total (further capped so that descriptors
    # stay free for calls) and per source address; a connection completing no message for
    # `tcp_idle_s` is closed unless a registration uses it; a message must arrive whole within
    # `tcp_message_timeout_s` of its first byte.
    tcp_max_connections: int = 256
    tcp_max_connections_per_address: int = 16
    tcp_idle_s: float = 120.0
    tcp_message_timeout_s: float = 10.0
    # External calls the phones together may place in an hour (toll fraud: a stolen password).
    external_calls_per_hour: int = DEFAULT_BOX_CALLS_PER_HOUR


@dataclass(frozen=True, kw_only=True)
class SipSettings:
    """How the gateway presents itself in SIP: digest realm and User-Agent/Server header."""

    realm: str = "linebox"
    user_agent: str = "Linebox/0.1"
    # Offered in this order (RFC 7616 §3.7). MD5 alone by default: many phones read only the
    # first challenge, and some (baresip 1.0's libre) give up on a 401 that carries an algorithm
    # they do not know instead of picking the one they do. SHA-256 (RFC 8760) is turned on per
    # extension or for the whole box where the phones are known to speak it.
    digest_algorithms: tuple[str, ...] = ("MD5",)


DEFAULT_PICKUP_CODE = "*8"
DEFAULT_DIRECTED_PICKUP_PREFIX = "**"
# A feature code: a * or # and then at most 7 keys; never one of the status codes *50..*54.
FEATURE_CODE_RE = re.compile(r"[*#][0-9*#]{0,7}")
STATUS_CODES = ("*50", "*51", "*52", "*53", "*54")


@dataclass(frozen=True, kw_only=True)
class Site:
    """Where the box is: its IANA time zone is the default of schedules and the clock of rules."""

    timezone: str = DEFAULT_TIMEZONE
    language: str = DEFAULT_LANGUAGE  # of the built-in voice prompts (voicemail, apology)
    # How numbers are written here: which external calls are local, mobile, long distance or
    # international (the `site` keys of DialPlan's field names).
    dial_plan: DialPlan = field(default_factory=DialPlan)
    # Call pickup (docs/agents.md): `pickup_code` takes a call ringing a colleague of one's
    # departments; the prefix and an extension take the call ringing that extension.
    pickup_code: str = DEFAULT_PICKUP_CODE
    directed_pickup_prefix: str = DEFAULT_DIRECTED_PICKUP_PREFIX
    # Extensions that may record a voice menu's greeting by phone (*97 + the menu's number,
    # docs/menus.md); nobody by default: the greeting is what every caller hears.
    greeting_recorders: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Crm:
    """The office CRM, asked per call for the caller's responsible manager (departments with
    `sticky: crm_owner`); when it errs or is slow, the imported phone → extension table is
    used."""

    url: str | None = None
    timeout_s: float = 2.0


# The box's LEDs (hal/leds.py) and the GPIO numbers they may use: BCM numbering, the 28 pins of
# the Raspberry Pi's 40-pin header.
LED_NAMES = ("power", "internet", "provider", "gsm", "calls")
GPIO_MODES = ("auto", "mock")
BCM_PIN_MAX = 27
SHUTDOWN_AFTER_MIN_S = 10
SHUTDOWN_AFTER_MAX_S = 86400


@dataclass(frozen=True, kw_only=True)
class Hardware:
    """The box's own hardware: LED pins, the UPS's power-fail input, the time on battery."""

    gpio: str = "auto"  # "mock": no GPIO even where there is some (a bench, a demo)
    leds: dict[str, int] = field(default_factory=dict)  # LED name → BCM pin; absent: no LED
    power_fail_pin: int | None = None
    power_fail_active_low: bool = True  # the UPS pulls the pin low when the mains fail
    # On battery this long, the box shuts down cleanly (a UPS HAT lasts minutes, not hours).
    shutdown_after_s: int = 300


# E-mail and SMS notifications (issue 15): the office's SMTP server and who is told what.
SMTP_SECURITY_PORTS = {"none": 25, "starttls": 587, "tls": 465}  # RFC 5321, 3207, 8314
SMTP_TIMEOUT_MAX_S = 120.0
EMAIL_PATTERN = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+")
MOBILE_PATTERN = re.compile(r"\+?[0-9]{3,20}")  # as `linebox sms send` takes it
SUMMARY_TIME_PATTERN = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


@dataclass(frozen=True, kw_only=True)
class Smtp:
    """The office's mail server the box sends notifications through (`smtp:`)."""

    host: str = ""  # "": no e-mail
    port: int = 587
    security: str = "starttls"  # none | starttls | tls (implicit TLS, RFC 8314)
    username: str = ""  # "": no login
    password: str = field(default="", repr=False)
    sender: str = ""  # the From address (key `from`)
    verify_certificate: bool = True
    timeout_s: float = 30.0


@dataclass(frozen=True, kw_only=True)
class Recipients:
    """Who is told: e-mail addresses and mobile numbers (SMS through a GSM line)."""

    email: tuple[str, ...] = ()
    sms: tuple[str, ...] = ()
    caller_sms: bool = False  # missed calls: the caller gets "we will call back" once a day


@dataclass(frozen=True, kw_only=True)
class Notifications:
    """`notifications:` — department → missed calls, mailbox → voicemail, the daily summary."""

    missed_calls: dict[str, Recipients] = field(default_factory=dict)
    voicemail: dict[str, Recipients] = field(default_factory=dict)
    summary_time: str | None = None  # "HH:MM" in the site's zone; None: no daily summary
    summary: Recipients = field(default_factory=Recipients)
    sms_line: str | None = None  # a GSM trunk; None: the first GSM line that is up
    caller_sms_text: str = ""  # "": the built-in text in the site's language


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole configuration of one box."""

    extensions: tuple[Extension, ...] = ()
    departments: tuple[Department, ...] = ()
    trunks: tuple[Trunk, ...] = ()
    numbers: tuple[Number, ...] = ()
    security: Security = field(default_factory=Security)
    sip: SipSettings = field(default_factory=SipSettings)
    site: Site = field(default_factory=Site)
    schedules: tuple[Schedule, ...] = ()
    rules: tuple[CallerRule, ...] = ()
    crm: Crm = field(default_factory=Crm)
    failover: FailoverSettings = field(default_factory=FailoverSettings)
    hardware: Hardware = field(default_factory=Hardware)
    smtp: Smtp = field(default_factory=Smtp)
    notifications: Notifications = field(default_factory=Notifications)
    menus: tuple[Menu, ...] = ()  # voice menus (firmware/routing/menu.py)
    recording: RecordingSettings = field(default_factory=RecordingSettings)  # call recording


# --- parsing -------------------------------------------------------------------------------------


def _at_key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _at_index(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _mapping(
    value: object, path: str, *, required: Iterable[str], optional: Iterable[str]
) -> dict[str, object]:
    """Check `value` is a mapping with text keys, all required keys and no unknown ones."""
    if not isinstance(value, dict):
        raise ConfigError(path, "must be a mapping of key: value")
    required = tuple(required)
    allowed = required + tuple(optional)
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(path, f"key {key!r} must be text")
    # Unknown keys first: a misspelt key is reported as such, not as the key it should have been.
    for key in value:
        if key not in allowed:
            raise ConfigError(_at_key(path, key), f"unknown key (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in value:
            raise ConfigError(_at_key(path, key), "is required")
    return value


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise ConfigError(path, "must be a list")
    return value


def _text(value: object, path: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"must be text, got {_describe(value)}")
    if not allow_empty and not value.strip():
        raise ConfigError(path, "must not be empty")
    return value


def _token(value: object, path: str) -> str:
    """Text without whitespace: host names, SIP user names."""
    text = _text(value, path)
    if any(char.isspace() for char in text):
        raise ConfigError(path, f'must not contain spaces, got "{text}"')
    return text


def _dial_string(value: object, path: str, *, min_digits: int, max_digits: int, plus: bool) -> str:
    """A number made of digits, which must be written as quoted text in YAML."""
    _refuse_unquoted_number(value, path)
    text = _text(value, path)
    digits = text[1:] if plus and text.startswith("+") else text
    if not (digits.isascii() and digits.isdigit() and min_digits <= len(digits) <= max_digits):
        prefix = 'an optional "+" and ' if plus else ""
        raise ConfigError(
            path, f'must be {prefix}{min_digits} to {max_digits} digits, got "{text}"'
        )
    return text


def _refuse_unquoted_number(value: object, path: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        # Unquoted, YAML turns 0101 into 65 and +7495... into 7495...; refuse rather than guess.
        raise ConfigError(
            path,
            f'must be written in quotes, e.g. "101" (YAML read the unquoted value as the '
            f'number {value}, dropping any leading zeros and "+")',
        )


def _extension_number(value: object, path: str) -> str:
    return _dial_string(
        value, path, min_digits=EXTENSION_DIGITS_MIN, max_digits=EXTENSION_DIGITS_MAX, plus=False
    )


def _integer(value: object, path: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be a whole number, got {_describe(value)}")
    if not low <= value <= high:
        raise ConfigError(path, f"must be between {low} and {high}, got {value}")
    return value


def _seconds(value: object, path: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"must be a number of seconds, got {_describe(value)}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        raise ConfigError(path, f"must be {'above' if positive else 'at least'} 0, got {value}")
    return seconds


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {_describe(value)}")
    return value


def _plain_data(value: object, path: str) -> object:
    """Check `value` survives a JSON round trip unchanged (it is stored as JSON text)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(path, "must be a finite number")
        return value
    if isinstance(value, list):
        for index, item in enumerate(value):
            _plain_data(item, _at_index(path, index))
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(path, f"key {key!r} must be text")
            _plain_data(item, _at_key(path, key))
        return value
    raise ConfigError(
        path,
        f"must be text, a number, true/false, a list or a mapping, got {_describe(value)} "
        "(quote dates and times)",
    )


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return f'text "{value}"'
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _password(value: object, path: str) -> str:
    password = _text(value, path)
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise ConfigError(
            path,
            f"must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters, got {len(password)}",
        )
    return password


def _parse_extension(value: object, path: str) -> Extension:
    data = _mapping(
        value, path, required=("number", "name", "password"),
        optional=("mobile", "skills", "digest_algorithms", "digest_without_qop", "outbound",
                  "external_calls_per_hour"),
    )
    mobile = data.get("mobile")
    algorithms = data.get("digest_algorithms")
    return Extension(
        number=_extension_number(data["number"], _at_key(path, "number")),
        name=_text(data["name"], _at_key(path, "name")),
        password=_password(data["password"], _at_key(path, "password")),
        mobile=None
        if mobile is None
        else _dial_string(
            mobile,
            _at_key(path, "mobile"),
            min_digits=DID_DIGITS_MIN,
            max_digits=DID_DIGITS_MAX,
            plus=True,
        ),
        skills=_skills(data.get("skills", []), _at_key(path, "skills")),
        digest_algorithms=None if algorithms is None
        else _digest_algorithms(algorithms, _at_key(path, "digest_algorithms")),
        digest_without_qop=_boolean(
            data.get("digest_without_qop", False), _at_key(path, "digest_without_qop")
        ),
        outbound=_choice(data.get("outbound", DEFAULT_OUTBOUND), _at_key(path, "outbound"),
                         OUTBOUND_CLASSES),
        external_calls_per_hour=_calls_per_hour(
            data.get("external_calls_per_hour", DEFAULT_EXTENSION_CALLS_PER_HOUR),
            _at_key(path, "external_calls_per_hour"),
        ),
    )


def _calls_per_hour(value: object, path: str) -> int:
    return _integer(value, path, low=1, high=CALLS_PER_HOUR_MAX)


def _skills(value: object, path: str) -> tuple[str, ...]:
    """A list of "key:value" skills, each once."""
    seen: dict[str, str] = {}
    for index, item in enumerate(_list(value, path)):
        item_path = _at_index(path, index)
        skill = _text(item, item_path)
        if not SKILL_PATTERN.fullmatch(skill):
            raise ConfigError(
                item_path,
                f'must be key:value without spaces, e.g. "lang:en", got "{skill}"',
            )
        _reject_duplicate(seen, skill, item_path, "skill")
    return tuple(seen)


def _parse_member(value: object, path: str, extension_numbers: set[str]) -> Member:
    if isinstance(value, dict):
        data = _mapping(
            value, path, required=("extension",), optional=("ring_time_s", *MEMBER_EXTRA_KEYS)
        )
        extension_path = _at_key(path, "extension")
        extension = _extension_number(data["extension"], extension_path)
        ring_time = data.get("ring_time_s")
        ring_time_s = (
            None
            if ring_time is None
            else _integer(
                ring_time,
                _at_key(path, "ring_time_s"),
                low=RING_TIMEOUT_MIN_S,
                high=RING_TIMEOUT_MAX_S,
            )
        )
        extra = {
            key: _plain_data(data[key], _at_key(path, key))
            for key in MEMBER_EXTRA_KEYS
            if key in data
        }
    else:
        extension_path = path
        extension = _extension_number(value, path)
        ring_time_s = None
        extra = {}
    if extension not in extension_numbers:
        raise ConfigError(extension_path, f'unknown extension "{extension}"')
    return Member(extension=extension, ring_time_s=ring_time_s, extra=extra)


def _parse_department(value: object, path: str, extension_numbers: set[str]) -> Department:
    data = _mapping(
        value,
        path,
        required=("number", "name", "strategy", "ring_timeout_s"),
        optional=("members", *DEPARTMENT_EXTRA_KEYS),
    )
    number = _extension_number(data["number"], _at_key(path, "number"))
    strategy_path = _at_key(path, "strategy")
    strategy = _text(data["strategy"], strategy_path)
    if strategy not in STRATEGIES:
        raise ConfigError(
            strategy_path,
            f'unknown strategy "{strategy}" (allowed: {", ".join(sorted(STRATEGIES))})',
        )
    # Text names a schedule; anything else is the old reserved form, kept in `extra` (see
    # LEGACY_EXTRA_KEYS). The name is checked against `schedules` by `parse_config`.
    schedule_value = data.get("schedule")
    schedule = (
        _text(schedule_value, _at_key(path, "schedule"))
        if isinstance(schedule_value, str)
        else None
    )
    members_path = _at_key(path, "members")
    members: list[Member] = []
    seen: set[str] = set()
    for index, item in enumerate(_list(data.get("members", []), members_path)):
        member_path = _at_index(members_path, index)
        member = _parse_member(item, member_path, extension_numbers)
        if member.extension in seen:
            raise ConfigError(member_path, f'extension "{member.extension}" is listed twice')
        seen.add(member.extension)
        members.append(member)
    return Department(
        number=number,
        name=_text(data["name"], _at_key(path, "name")),
        strategy=strategy,
        ring_timeout_s=_integer(
            data["ring_timeout_s"],
            _at_key(path, "ring_timeout_s"),
            low=RING_TIMEOUT_MIN_S,
            high=RING_TIMEOUT_MAX_S,
        ),
        members=tuple(members),
        extra={
            key: _plain_data(data[key], _at_key(path, key))
            for key in DEPARTMENT_EXTRA_KEYS
            if key in data and not (key in LEGACY_EXTRA_KEYS and schedule is not None)
        },
        schedule=schedule,
    )


_TRUNK_DEFAULTS = Trunk(name="defaults", host="defaults")
INBOUND_MATCHES = ("address_port", "address")


def _parse_trunk(value: object, path: str) -> Trunk:
    if isinstance(value, dict) and value.get("type") in MODEM_TRUNK_TYPES:
        return _parse_modem_trunk(value, path)
    data = _mapping(
        value,
        path,
        required=("name", "host"),
        optional=(
            "type",
            "port",
            "transport",
            "username",
            "password",
            "register",
            "expires_s",
            "channels",
            "from_domain",
            "digest_algorithms",
            "inbound_match",
        ),
    )
    defaults = _TRUNK_DEFAULTS
    name = _trunk_name(data["name"], _at_key(path, "name"))
    type_path = _at_key(path, "type")
    trunk_type = _text(data.get("type", defaults.type), type_path)
    if trunk_type not in TRUNK_TYPES:
        raise ConfigError(
            type_path,
            f'unknown trunk type "{trunk_type}" (allowed: {", ".join(sorted(TRUNK_TYPES))})',
        )
    transport_path = _at_key(path, "transport")
    transport = _text(data.get("transport", defaults.transport), transport_path)
    if transport not in TRANSPORTS:
        raise ConfigError(
            transport_path,
            f'unknown transport "{transport}" (allowed: {", ".join(sorted(TRANSPORTS))})',
        )
    username = _text(
        data.get("username", defaults.username), _at_key(path, "username"), allow_empty=True
    )
    register = _boolean(data.get("register", defaults.register), _at_key(path, "register"))
    if register and not username:
        raise ConfigError(_at_key(path, "username"), "is required when register is true")
    from_domain = data.get("from_domain")
    return Trunk(
        name=name,
        type=trunk_type,
        host=_token(data["host"], _at_key(path, "host")),
        port=_integer(data.get("port", defaults.port), _at_key(path, "port"), low=1, high=65535),
        transport=transport,
        username=username,
        password=_text(
            data.get("password", defaults.password), _at_key(path, "password"), allow_empty=True
        ),
        register=register,
        expires_s=_integer(
            data.get("expires_s", defaults.expires_s),
            _at_key(path, "expires_s"),
            low=EXPIRES_MIN_S,
            high=EXPIRES_MAX_S,
        ),
        channels=_integer(
            data.get("channels", defaults.channels),
            _at_key(path, "channels"),
            low=CHANNELS_MIN,
            high=CHANNELS_MAX,
        ),
        from_domain=None
        if from_domain is None
        else _token(from_domain, _at_key(path, "from_domain")),
        digest_algorithms=_digest_algorithms(
            data.get("digest_algorithms", list(defaults.digest_algorithms)),
            _at_key(path, "digest_algorithms"),
        ),
        inbound_match=_choice(
            data.get("inbound_match", defaults.inbound_match), _at_key(path, "inbound_match"),
            INBOUND_MATCHES,
        ),
    )


MODEM_TRUNK_KEYS = {
    "gsm": ("port", "audio_port", "modem", "imei", "pin", "number", "gain_db", "channels"),
    # A voice modem carries its audio on its AT port, and has neither SIM nor IMEI.
    "fxo": ("port", "modem", "number", "gain_db", "channels"),
}


def _parse_modem_trunk(value: dict[str, object], path: str) -> Trunk:
    """A gsm or fxo line: the modem's serial port(s), its driver profile, what identifies it."""
    trunk_type = str(value["type"])
    for key in SIP_TRUNK_KEYS:
        if key in value:
            raise ConfigError(_at_key(path, key),
                              f"a {trunk_type} line has no {key} (that is a SIP trunk's key); "
                              "delete it")
    data = _mapping(value, path, required=("name", "type", "port"),
                    optional=MODEM_TRUNK_KEYS[trunk_type])
    channels_path = _at_key(path, "channels")
    channels = _integer(data.get("channels", MODEM_LINE_CHANNELS), channels_path, low=1,
                        high=CHANNELS_MAX)
    if channels != MODEM_LINE_CHANNELS:
        raise ConfigError(channels_path, f"a {trunk_type} line carries one call at a time: "
                                         f"channels must be 1, got {channels}")
    device = _device_path(data["port"], _at_key(path, "port"))
    audio_device = ""
    if "audio_port" in data:
        audio_path = _at_key(path, "audio_port")
        audio_device = _device_path(data["audio_port"], audio_path)
        if audio_device == device:
            raise ConfigError(audio_path, "must differ from port (leave it out when the modem "
                                          "has no audio port of its own)")
    number = data.get("number")
    return Trunk(
        name=_trunk_name(data["name"], _at_key(path, "name")),
        type=trunk_type,
        register=False,
        channels=MODEM_LINE_CHANNELS,
        device=device,
        audio_device=audio_device,
        modem=_choice(data.get("modem", DEFAULT_MODEMS[trunk_type]), _at_key(path, "modem"),
                      MODEMS[trunk_type]),
        imei=_imei(data["imei"], _at_key(path, "imei")) if "imei" in data else "",
        pin=_dial_string(data["pin"], _at_key(path, "pin"), min_digits=PIN_DIGITS_MIN,
                         max_digits=PIN_DIGITS_MAX, plus=False) if "pin" in data else "",
        number="" if number is None else _dial_string(
            number, _at_key(path, "number"), min_digits=DID_DIGITS_MIN,
            max_digits=DID_DIGITS_MAX, plus=True),
        gain_db=_gain_db(data.get("gain_db", 0.0), _at_key(path, "gain_db")),
    )


def _trunk_name(value: object, path: str) -> str:
    name = _text(value, path)
    if not TRUNK_NAME_PATTERN.fullmatch(name):
        raise ConfigError(path, f'must be 1 to 32 letters, digits, "-", "_" or ".", got "{name}"')
    return name


def _device_path(value: object, path: str) -> str:
    """A serial device: an absolute path such as /dev/serial/by-id/usb-..., /dev/ttyUSB2."""
    device = _token(value, path)
    parts = device.split("/")
    if not device.startswith("/") or ".." in parts or device.endswith("/"):
        raise ConfigError(path, "must be the absolute path of a serial device, e.g. "
                                f'/dev/serial/by-id/usb-HUAWEI_Mobile-if02-port0, got "{device}"')
    return device


def luhn_valid(digits: str) -> bool:
    """Whether the last of `digits` is the Luhn check digit of the others (ISO/IEC 7812-1
    Annex B, as 3GPP TS 23.003 Annex B computes an IMEI's)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _imei(value: object, path: str) -> str:
    imei = _dial_string(value, path, min_digits=IMEI_DIGITS, max_digits=IMEI_DIGITS, plus=False)
    if not luhn_valid(imei):
        # A typo in one digit always breaks the check (and the modem would never be found).
        raise ConfigError(path, f'"{imei}" is not an IMEI: its last digit is not the check '
                                "digit of the others (copy it from AT+CGSN or the modem's label)")
    return imei


def _gain_db(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"must be a number of decibels, got {_describe(value)}")
    if not GAIN_MIN_DB <= value <= GAIN_MAX_DB:
        raise ConfigError(path, f"must be between {GAIN_MIN_DB:g} and {GAIN_MAX_DB:g} dB, "
                                f"got {value:g}")
    return float(value)


def _choice(value: object, path: str, allowed: tuple[str, ...]) -> str:
    text = _text(value, path)
    if text not in allowed:
        raise ConfigError(path, f'must be one of {", ".join(allowed)}, got "{text}"')
    return text


def _parse_number(
    value: object, path: str, trunk_types: Mapping[str, str], destinations: set[str]
) -> Number:
    """A DID number; `trunk_types` maps each trunk's name to its type."""
    # A number on a modem line (the SIM's own number) takes that line's one call at a time:
    # `channels` may be left out there.
    named = value.get("trunk") if isinstance(value, dict) else None
    on_modem = isinstance(named, str) and trunk_types.get(named, "") in MODEM_TRUNK_TYPES
    data = _mapping(
        value, path,
        required=("number", "trunk", "destination") if on_modem
        else ("number", "trunk", "channels", "destination"),
        optional=("schedule", "webhook", "webhook_timeout_s", "channels"),
    )
    webhook = _url(data["webhook"], _at_key(path, "webhook")) if "webhook" in data else None
    webhook_timeout_s = _webhook_timeout(data.get("webhook_timeout_s", 2.0),
                                         _at_key(path, "webhook_timeout_s"))
    trunk_path = _at_key(path, "trunk")
    trunk = _text(data["trunk"], trunk_path)
    if trunk not in trunk_types:
        raise ConfigError(trunk_path, f'unknown trunk "{trunk}"')
    channels_path = _at_key(path, "channels")
    if on_modem:
        channels = _integer(data.get("channels", MODEM_LINE_CHANNELS), channels_path, low=1,
                            high=CHANNELS_MAX)
        if channels != MODEM_LINE_CHANNELS:
            raise ConfigError(channels_path, f'trunk "{trunk}" is a {trunk_types[trunk]} line, '
                                             "one call at a time: channels must be 1")
    else:
        channels = _integer(data["channels"], channels_path, low=CHANNELS_MIN, high=CHANNELS_MAX)
    destination_path = _at_key(path, "destination")
    raw_destination = data["destination"]
    if isinstance(raw_destination, str) and raw_destination.startswith(MENU_PREFIX):
        destination = raw_destination  # a voice menu: known or refused just below
    else:
        destination = _extension_number(raw_destination, destination_path)
    if destination not in destinations:
        raise ConfigError(
            destination_path,
            f'unknown destination "{destination}" (not an extension or department number)',
        )
    return Number(
        number=_dial_string(
            data["number"],
            _at_key(path, "number"),
            min_digits=DID_DIGITS_MIN,
            max_digits=DID_DIGITS_MAX,
            plus=True,
        ),
        trunk=trunk,
        channels=channels,
        destination=destination,
        schedule=None
        if "schedule" not in data
        else _text(data["schedule"], _at_key(path, "schedule")),
        webhook=webhook,
        webhook_timeout_s=webhook_timeout_s,
    )


def _parse_security(value: object, path: str) -> Security:
    # Whole-number and seconds keys with their bounds; every key is optional.
    whole_keys = {
        "rate_limit_requests": (1, 100000),
        "auth_failures_per_source": (1, 10000),
        "auth_failures_per_extension": (1, 10000),
        "tcp_max_connections": (1, 65536),
        "tcp_max_connections_per_address": (1, 65536),
    }
    seconds_keys = {  # key → whether 0 is refused
        "rate_limit_window_s": True, "ban_s": False, "auth_window_s": True,
        "tcp_idle_s": True, "tcp_message_timeout_s": True,
    }
    data = _mapping(
        value, path, required=(),
        optional=(*whole_keys, *seconds_keys, "scanner_user_agents", "external_calls_per_hour"),
    )
    defaults = Security()

    def given(key: str) -> object:
        return data.get(key, getattr(defaults, key))

    agents_path = _at_key(path, "scanner_user_agents")
    agents = (
        tuple(
            _text(item, _at_index(agents_path, index))
            for index, item in enumerate(_list(data["scanner_user_agents"], agents_path))
        )
        if "scanner_user_agents" in data
        else defaults.scanner_user_agents
    )
    fields: dict[str, Any] = {
        key: _integer(given(key), _at_key(path, key), low=low, high=high)
        for key, (low, high) in whole_keys.items()
    }
    fields.update({key: _seconds(given(key), _at_key(path, key), positive=positive)
                   for key, positive in seconds_keys.items()})
    return Security(
        scanner_user_agents=agents,
        external_calls_per_hour=_calls_per_hour(
            given("external_calls_per_hour"), _at_key(path, "external_calls_per_hour"),
        ),
        **fields,
    )


def _parse_sip(value: object, path: str) -> SipSettings:
    data = _mapping(
        value, path, required=(), optional=("realm", "user_agent", "digest_algorithms")
    )
    defaults = SipSettings()
    return SipSettings(
        realm=_token(data.get("realm", defaults.realm), _at_key(path, "realm")),
        user_agent=_text(data.get("user_agent", defaults.user_agent), _at_key(path, "user_agent")),
        digest_algorithms=_digest_algorithms(
            data.get("digest_algorithms", list(defaults.digest_algorithms)),
            _at_key(path, "digest_algorithms"),
        ),
    )


def _digest_algorithms(value: object, path: str) -> tuple[str, ...]:
    """A non-empty list of digest algorithm names, each once, in preference order."""
    algorithms = _list(value, path)
    if not algorithms:
        raise ConfigError(path, "at least one algorithm is required")
    for index, algorithm in enumerate(algorithms):
        if algorithm not in DIGEST_ALGORITHMS:
            raise ConfigError(
                _at_index(path, index),
                f"{_describe(algorithm)} is not one of {', '.join(DIGEST_ALGORITHMS)}",
            )
    if len(set(algorithms)) != len(algorithms):
        raise ConfigError(path, "an algorithm is listed twice")
    return tuple(str(a) for a in algorithms)


def _url(value: object, path: str) -> str:
    url = _text(value, path)
    if not re.match(r"https?://[^\s/]+", url):
        raise ConfigError(path, "must be an http:// or https:// URL")
    return url


def _webhook_timeout(value: object, path: str) -> float:
    timeout_s = _seconds(value, path, positive=True)
    if timeout_s > WEBHOOK_TIMEOUT_MAX_S:
        raise ConfigError(path, f"at most {WEBHOOK_TIMEOUT_MAX_S:g} s: callers are waiting")
    return timeout_s


def _parse_crm(value: object, path: str) -> Crm:
    data = _mapping(value, path, required=(), optional=("url", "timeout_s"))
    return Crm(
        url=_url(data["url"], _at_key(path, "url")) if "url" in data else None,
        timeout_s=_webhook_timeout(data.get("timeout_s", 2.0), _at_key(path, "timeout_s")),
    )


def _parse_failover(value: object, path: str, trunk_names: Collection[str]) -> FailoverSettings:
    data = _mapping(value, path, required=(),
                    optional=("order", "probe_interval_s", "down_after", "up_after"))
    defaults = FailoverSettings()
    order_path = _at_key(path, "order")
    order: list[str] = []
    for index, item in enumerate(_list(data.get("order", []), order_path)):
        name = _text(item, _at_index(order_path, index))
        if name not in trunk_names:
            raise ConfigError(_at_index(order_path, index), f'unknown trunk "{name}"')
        if name in order:
            raise ConfigError(_at_index(order_path, index), f'"{name}" is listed twice')
        order.append(name)
    interval_path = _at_key(path, "probe_interval_s")
    interval_s = _seconds(data.get("probe_interval_s", defaults.probe_interval_s),
                          interval_path, positive=True)
    if not PROBE_INTERVAL_MIN_S <= interval_s <= PROBE_INTERVAL_MAX_S:
        raise ConfigError(interval_path, f"must be between {PROBE_INTERVAL_MIN_S:g} and "
                                         f"{PROBE_INTERVAL_MAX_S:g} seconds, got {interval_s:g}")
    return FailoverSettings(
        order=tuple(order),
        probe_interval_s=interval_s,
        down_after=_integer(data.get("down_after", defaults.down_after),
                            _at_key(path, "down_after"), low=DOWN_AFTER_MIN, high=DOWN_AFTER_MAX),
        up_after=_integer(data.get("up_after", defaults.up_after),
                          _at_key(path, "up_after"), low=UP_AFTER_MIN, high=UP_AFTER_MAX),
    )


def _parse_hardware(value: object, path: str) -> Hardware:
    data = _mapping(value, path, required=(), optional=(
        "gpio", "leds", "power_fail_pin", "power_fail_active_low", "shutdown_after_s"))
    defaults = Hardware()
    pins: dict[int, str] = {}  # pin → the key that took it

    def pin(item: object, item_path: str) -> int:
        number = _integer(item, item_path, low=0, high=BCM_PIN_MAX)
        if number in pins:
            raise ConfigError(item_path, f"GPIO {number} is already used by {pins[number]}")
        pins[number] = item_path
        return number

    leds_path = _at_key(path, "leds")
    leds = _mapping(data.get("leds", {}), leds_path, required=(), optional=LED_NAMES)
    power_fail_pin = data.get("power_fail_pin")
    return Hardware(
        gpio=_choice(data.get("gpio", defaults.gpio), _at_key(path, "gpio"), GPIO_MODES),
        leds={name: pin(item, _at_key(leds_path, name)) for name, item in leds.items()},
        power_fail_pin=None if power_fail_pin is None
        else pin(power_fail_pin, _at_key(path, "power_fail_pin")),
        power_fail_active_low=_boolean(
            data.get("power_fail_active_low", defaults.power_fail_active_low),
            _at_key(path, "power_fail_active_low")),
        shutdown_after_s=_integer(
            data.get("shutdown_after_s", defaults.shutdown_after_s),
            _at_key(path, "shutdown_after_s"),
            low=SHUTDOWN_AFTER_MIN_S, high=SHUTDOWN_AFTER_MAX_S),
    )


def _parse_smtp(value: object, path: str) -> Smtp:
    data = _mapping(value, path, required=("host", "from"), optional=(
        "port", "security", "username", "password", "verify_certificate", "timeout_s"))
    security = _choice(data.get("security", "starttls"), _at_key(path, "security"),
                       tuple(SMTP_SECURITY_PORTS))
    sender = _text(data["from"], _at_key(path, "from"))
    if not EMAIL_PATTERN.search(sender):
        raise ConfigError(_at_key(path, "from"), f'must hold an e-mail address, got "{sender}"')
    username = _text(data.get("username", ""), _at_key(path, "username"), allow_empty=True)
    password = _text(data.get("password", ""), _at_key(path, "password"), allow_empty=True)
    if password and not username:
        raise ConfigError(_at_key(path, "username"), "is required with a password")
    timeout_s = _seconds(data.get("timeout_s", Smtp().timeout_s), _at_key(path, "timeout_s"),
                         positive=True)
    if timeout_s > SMTP_TIMEOUT_MAX_S:
        raise ConfigError(_at_key(path, "timeout_s"), f"at most {SMTP_TIMEOUT_MAX_S:g} s")
    return Smtp(
        host=_token(data["host"], _at_key(path, "host")),
        port=_integer(data.get("port", SMTP_SECURITY_PORTS[security]), _at_key(path, "port"),
                      low=1, high=65535),
        security=security, username=username, password=password, sender=sender,
        verify_certificate=_boolean(data.get("verify_certificate", True),
                                    _at_key(path, "verify_certificate")),
        timeout_s=timeout_s,
    )


def _parse_recipients(value: object, path: str, *, smtp: Smtp, caller_sms: bool) -> Recipients:
    data = _mapping(value, path, required=(),
                    optional=("email", "sms", "caller_sms") if caller_sms else ("email", "sms"))
    emails = []
    for index, item in enumerate(_list(data.get("email", []), _at_key(path, "email"))):
        address = _text(item, _at_index(_at_key(path, "email"), index)).strip()
        if not EMAIL_PATTERN.fullmatch(address):
            raise ConfigError(_at_index(_at_key(path, "email"), index),
                              f'must be an e-mail address, got "{address}"')
        emails.append(address)
    if emails and not smtp.host:
        raise ConfigError(_at_key(path, "email"), "e-mail needs the smtp: section (host, from)")
    mobiles = []
    for index, item in enumerate(_list(data.get("sms", []), _at_key(path, "sms"))):
        _refuse_unquoted_number(item, _at_index(_at_key(path, "sms"), index))
        number = _text(item, _at_index(_at_key(path, "sms"), index)).strip()
        if not MOBILE_PATTERN.fullmatch(number):
            raise ConfigError(_at_index(_at_key(path, "sms"), index),
                              f'must be 3 to 20 digits with an optional "+", got "{number}"')
        mobiles.append(number)
    return Recipients(email=tuple(emails), sms=tuple(mobiles), caller_sms=_boolean(
        data.get("caller_sms", False), _at_key(path, "caller_sms")))


def _parse_notifications(value: object, path: str, *, smtp: Smtp, departments: Collection[str],
                         mailboxes: Collection[str], trunks: Mapping[str, str]
                         ) -> Notifications:
    data = _mapping(value, path, required=(), optional=(
        "missed_calls", "voicemail", "daily_summary", "sms_line", "caller_sms_text"))

    def by_number(key: str, known: Collection[str], what: str) -> dict[str, Recipients]:
        section = data.get(key, {})
        if not isinstance(section, dict):
            raise ConfigError(_at_key(path, key), 'must be a mapping of "number": {email, sms}')
        out = {}
        for number, item in section.items():
            item_path = _at_key(_at_key(path, key), str(number))
            if not isinstance(number, str):
                raise ConfigError(item_path, f'write the number in quotes, e.g. "{number}"')
            if number not in known:
                raise ConfigError(item_path, f'"{number}" is not {what}')
            out[number] = _parse_recipients(item, item_path, smtp=smtp,
                                            caller_sms=key == "missed_calls")
        return out

    summary_path = _at_key(path, "daily_summary")
    summary_data = _mapping(data.get("daily_summary", {}), summary_path, required=(),
                            optional=("time", "email", "sms"))
    summary_time = None
    if summary_data:
        summary_time = _text(summary_data.get("time", ""), _at_key(summary_path, "time"))
        if not SUMMARY_TIME_PATTERN.fullmatch(summary_time):
            raise ConfigError(_at_key(summary_path, "time"),
                              f'must be a time of day "HH:MM" in quotes, got "{summary_time}"')
    sms_line = data.get("sms_line")
    if sms_line is not None:
        sms_line = _text(sms_line, _at_key(path, "sms_line"))
        if trunks.get(sms_line) != "gsm":
            gsm = ", ".join(name for name, kind in trunks.items() if kind == "gsm") or "none"
            raise ConfigError(_at_key(path, "sms_line"),
                              f'"{sms_line}" is not a GSM line (GSM lines: {gsm})')
    return Notifications(
        missed_calls=by_number("missed_calls", departments, "a department"),
        voicemail=by_number("voicemail", mailboxes, "a department or an extension"),
        summary_time=summary_time,
        summary=_parse_recipients({k: v for k, v in summary_data.items() if k != "time"},
                                  summary_path, smtp=smtp, caller_sms=False),
        sms_line=sms_line,
        caller_sms_text=_text(data.get("caller_sms_text", ""), _at_key(path, "caller_sms_text"),
                              allow_empty=True),
    )


def _recipients_to_data(recipients: Recipients) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if recipients.email:
        data["email"] = list(recipients.email)
    if recipients.sms:
        data["sms"] = list(recipients.sms)
    if recipients.caller_sms:
        data["caller_sms"] = True
    return data


def _notifications_to_data(cfg: Config) -> dict[str, Any]:
    """`smtp` and `notifications` where set; the password is kept, as SIP passwords are."""
    data: dict[str, Any] = {}
    smtp = cfg.smtp
    if smtp != Smtp():
        data["smtp"] = {"host": smtp.host, "port": smtp.port, "security": smtp.security,
                        "from": smtp.sender}
        if smtp.username:
            data["smtp"].update(username=smtp.username, password=smtp.password)
        if not smtp.verify_certificate:
            data["smtp"]["verify_certificate"] = False
        if smtp.timeout_s != Smtp().timeout_s:
            data["smtp"]["timeout_s"] = smtp.timeout_s
    notes = cfg.notifications
    if notes != Notifications():
        section: dict[str, Any] = {}
        for key in ("missed_calls", "voicemail"):
            if getattr(notes, key):
                section[key] = {number: _recipients_to_data(recipients)
                                for number, recipients in getattr(notes, key).items()}
        if notes.summary_time is not None:
            section["daily_summary"] = {"time": notes.summary_time,
                                        **_recipients_to_data(notes.summary)}
        if notes.sms_line is not None:
            section["sms_line"] = notes.sms_line
        if notes.caller_sms_text:
            section["caller_sms_text"] = notes.caller_sms_text
        data["notifications"] = section
    return data


DIAL_PLAN_KEYS = tuple(f.name for f in dataclasses.fields(DialPlan))
_DIAL_PLAN_DEFAULTS = DialPlan()
NATIONAL_DIGITS_MIN = 4
NATIONAL_DIGITS_MAX = 14  # with a country code of 1 digit, E.164's 15


def _parse_site(value: object, path: str) -> Site:
    data = _mapping(value, path, required=(), optional=(
        "timezone", "language", "pickup_code", "directed_pickup_prefix", "greeting_recorders",
        *DIAL_PLAN_KEYS))
    language = data.get("language", DEFAULT_LANGUAGE)
    if language not in PROMPT_LANGUAGES:
        raise ConfigError(_at_key(path, "language"),
                          f"must be one of {', '.join(PROMPT_LANGUAGES)}, got {language!r}")
    codes = _pickup_codes(data, path)
    return Site(
        timezone=_timezone(data.get("timezone", DEFAULT_TIMEZONE), _at_key(path, "timezone")),
        language=str(language),
        dial_plan=_dial_plan(data, path),
        pickup_code=codes["pickup_code"],
        directed_pickup_prefix=codes["directed_pickup_prefix"],
        greeting_recorders=_greeting_recorders(data.get("greeting_recorders", []),
                                               _at_key(path, "greeting_recorders")),
    )


def _greeting_recorders(value: object, path: str) -> tuple[str, ...]:
    """`site.greeting_recorders`: extension numbers, as text."""
    if not isinstance(value, list):
        raise ConfigError(path, 'must be a list of extension numbers, e.g. ["101"]')
    recorders: list[str] = []
    for item in value:
        text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(text, str) or not text.isdigit():
            raise ConfigError(path, f"must be extension numbers, got {item!r}")
        recorders.append(text)
    return tuple(recorders)


def _pickup_codes(data: dict[str, object], path: str) -> dict[str, str]:
    """`site.pickup_code` and `site.directed_pickup_prefix`: keypad codes that neither clash
    with each other nor with the status codes."""
    codes: dict[str, str] = {}
    for key, default in (("pickup_code", DEFAULT_PICKUP_CODE),
                         ("directed_pickup_prefix", DEFAULT_DIRECTED_PICKUP_PREFIX)):
        code = data.get(key, default)
        key_path = _at_key(path, key)
        if not isinstance(code, str) or not FEATURE_CODE_RE.fullmatch(code):
            raise ConfigError(key_path, f"must be * or # and up to 7 keys, got {code!r}")
        if any(status.startswith(code) for status in STATUS_CODES):
            raise ConfigError(key_path, f"{code} is taken by the status codes *50..*54")
        if code.startswith(GREETING_CODE) or GREETING_CODE.startswith(code):
            raise ConfigError(key_path, f"{code} clashes with {GREETING_CODE}, the code that "
                                        "records a menu's greeting by phone")
        codes[key] = code
    if codes["directed_pickup_prefix"].startswith(codes["pickup_code"]) or codes[
        "pickup_code"
    ].startswith(codes["directed_pickup_prefix"]):
        raise ConfigError(_at_key(path, "directed_pickup_prefix"),
                          "must not begin with pickup_code nor be its beginning")
    return codes


def _dial_plan(data: dict[str, object], path: str) -> DialPlan:
    """The dial plan keys of `site` (each optional: Russia's by default)."""
    defaults = _DIAL_PLAN_DEFAULTS

    def given(key: str) -> object:
        default = getattr(defaults, key)
        return data.get(key, list(default) if isinstance(default, tuple) else default)

    national_path = _at_key(path, "national_number_digits")
    national = _integer(given("national_number_digits"), national_path,
                        low=NATIONAL_DIGITS_MIN, high=NATIONAL_DIGITS_MAX)
    country_path = _at_key(path, "country_code")
    country_code = _dial_string(given("country_code"), country_path, min_digits=1,
                                max_digits=3, plus=False)
    if country_code.startswith("0"):
        raise ConfigError(country_path, f'a country code never begins with 0, got "{country_code}"')
    trunk_path = _at_key(path, "trunk_prefix")
    trunk_prefix = _text(given("trunk_prefix"), trunk_path, allow_empty=True)
    if trunk_prefix:
        _dial_string(trunk_prefix, trunk_path, min_digits=1, max_digits=2, plus=False)

    def prefixes(key: str, max_digits: int, *, min_count: int = 0) -> tuple[str, ...]:
        return _digit_strings(given(key), _at_key(path, key), max_digits=max_digits,
                              min_count=min_count)

    return DialPlan(
        country_code=country_code,
        trunk_prefix=trunk_prefix,
        international_prefixes=prefixes("international_prefixes", 4, min_count=1),
        national_number_digits=national,
        mobile_prefixes=prefixes("mobile_prefixes", national),
        local_prefixes=prefixes("local_prefixes", national),
        foreign_prefixes=prefixes("foreign_prefixes", national),
        local_number_digits=_integer(given("local_number_digits"),
                                     _at_key(path, "local_number_digits"), low=1,
                                     high=national - 1),
        emergency_numbers=prefixes("emergency_numbers", 6),
    )


def _digit_strings(value: object, path: str, *, max_digits: int,
                   min_count: int) -> tuple[str, ...]:
    """A list of quoted digit strings (prefixes or short numbers), each once."""
    seen: dict[str, str] = {}
    for index, item in enumerate(_list(value, path)):
        item_path = _at_index(path, index)
        digits = _dial_string(item, item_path, min_digits=1, max_digits=max_digits, plus=False)
        _reject_duplicate(seen, digits, item_path, "entry")
    if len(seen) < min_count:
        raise ConfigError(path, f"list at least {min_count}")
    return tuple(seen)


def _timezone(value: object, path: str) -> str:
    name = _token(value, path)
    try:
        load_zone(name)
    except ScheduleError as error:
        raise ConfigError(path, str(error)) from error
    return name


def _time_range(value: object, path: str) -> TimeRange:
    if not isinstance(value, str):
        raise ConfigError(
            path, f'must be a range in quotes like "09:00-18:00", got {_describe(value)}'
        )
    try:
        return parse_time_range(value)
    except ScheduleError as error:
        raise ConfigError(path, str(error)) from error


def _time_ranges(value: object, path: str) -> tuple[TimeRange, ...]:
    return tuple(
        _time_range(item, _at_index(path, index)) for index, item in enumerate(_list(value, path))
    )


def _date(value: object, path: str) -> datetime.date:
    """A date written "2026-12-31"; YAML reads it unquoted as a date already, which is fine."""
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value
    if isinstance(value, str) and DATE_PATTERN.fullmatch(value):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            raise ConfigError(path, f'no such date "{value}"') from None
    raise ConfigError(path, f'must be a date like "2026-12-31", got {_describe(value)}')


def _destination(value: object, path: str, destinations: set[str]) -> str:
    """An extension or department number, an external number, or `voicemail:NNN` (the
    mailbox of extension or department NNN).

    Up to EXTENSION_DIGITS_MAX digits it must be an existing extension or department (a typo
    of one must not dial out); longer, or written with "+", it is an external number.
    """
    _refuse_unquoted_number(value, path)
    text = _text(value, path)
    if text in destinations:
        return text
    mailbox = voicemail_box(text)
    if mailbox is not None:
        if mailbox not in destinations or mailbox.startswith(MENU_PREFIX):
            raise ConfigError(path, f'unknown mailbox "{mailbox}" in "{text}" (voicemail:'
                                    "followed by an extension or department number)")
        return text
    digits = text.removeprefix("+")
    if not (
        digits.isascii() and digits.isdigit() and DID_DIGITS_MIN <= len(digits) <= DID_DIGITS_MAX
    ):
        raise ConfigError(
            path,
            f"must be an extension or department number, or an external number of "
            f'{DID_DIGITS_MIN} to {DID_DIGITS_MAX} digits with an optional "+", got "{text}"',
        )
    if text.startswith("+") or len(digits) > EXTENSION_DIGITS_MAX:
        return text
    raise ConfigError(
        path,
        f'unknown destination "{text}" (not an extension or department number; write an '
        f'external number in full, with "+" if it is short)',
    )


def _parse_schedule(value: object, path: str, site: Site, destinations: set[str]) -> Schedule:
    data = _mapping(
        value,
        path,
        required=("name", "hours"),
        optional=("timezone", "holidays", "after_hours"),
    )
    hours_path = _at_key(path, "hours")
    week = _mapping(data["hours"], hours_path, required=(), optional=WEEKDAY_NAMES)
    hours = {
        weekday: _time_ranges(week[day_name], _at_key(hours_path, day_name))
        for weekday, day_name in enumerate(WEEKDAY_NAMES)
        if day_name in week
    }
    holidays_path = _at_key(path, "holidays")
    holidays: dict[datetime.date, str] = {}
    for index, item in enumerate(_list(data.get("holidays", []), holidays_path)):
        item_path = _at_index(holidays_path, index)
        _reject_duplicate(holidays, _date(item, item_path), item_path, "holiday")
    after_hours = data.get("after_hours")
    return Schedule(
        name=_text(data["name"], _at_key(path, "name")),
        timezone=_timezone(data.get("timezone", site.timezone), _at_key(path, "timezone")),
        hours=hours,
        holidays=frozenset(holidays),
        after_hours=None
        if after_hours is None
        else _destination(after_hours, _at_key(path, "after_hours"), destinations),
    )


def _parse_rule(value: object, path: str, destinations: set[str]) -> CallerRule:
    data = _mapping(
        value,
        path,
        required=("match", "action"),
        optional=("to", "reply", "hours", "weekdays"),
    )
    match_path = _at_key(path, "match")
    _refuse_unquoted_number(data["match"], match_path)
    match = _text(data["match"], match_path)
    try:
        check_match(match)
    except RuleSyntaxError as error:
        raise ConfigError(match_path, str(error)) from error
    action_path = _at_key(path, "action")
    action = _text(data["action"], action_path)
    if action not in ACTIONS:
        raise ConfigError(action_path, f'unknown action "{action}" (allowed: {", ".join(ACTIONS)})')
    to_path = _at_key(path, "to")
    to: str | None = None
    if action == BLACKLIST and "to" in data:
        raise ConfigError(to_path, "a blacklist rule sends the call nowhere; leave `to` out")
    if action == ROUTE and "to" not in data:
        raise ConfigError(to_path, "is required for a route rule")
    if action == ROUTE:
        to = _destination(data["to"], to_path, destinations)
    elif action == VIP and "to" in data:
        to = _extension_number(data["to"], to_path)
        if to not in destinations:
            raise ConfigError(
                to_path, f'unknown destination "{to}" (not an extension or department number)'
            )
    reply_path = _at_key(path, "reply")
    reply = DEFAULT_REPLY
    if "reply" in data:
        if action != BLACKLIST:
            raise ConfigError(reply_path, "only blacklist rules take a reply")
        reply = _text(data["reply"], reply_path)
        if reply not in REPLY_STATUS:
            raise ConfigError(
                reply_path, f'unknown reply "{reply}" (allowed: {", ".join(REPLY_STATUS)})'
            )
    hours_path = _at_key(path, "hours")
    hours = None if "hours" not in data else _time_ranges(data["hours"], hours_path)
    if hours == ():
        raise ConfigError(hours_path, "list at least one range, or leave hours out for all day")
    return CallerRule(
        match=match,
        action=action,
        to=to,
        reply=reply,
        hours=hours,
        weekdays=None
        if "weekdays" not in data
        else _weekdays(data["weekdays"], _at_key(path, "weekdays")),
    )


def _weekdays(value: object, path: str) -> frozenset[int]:
    days: dict[str, str] = {}
    for index, item in enumerate(_list(value, path)):
        item_path = _at_index(path, index)
        if not isinstance(item, str) or item not in WEEKDAY_NAMES:
            raise ConfigError(
                item_path,
                f"{_describe(item)} is not a day (allowed: {', '.join(WEEKDAY_NAMES)})",
            )
        _reject_duplicate(days, item, item_path, "day")
    if not days:
        raise ConfigError(path, "list at least one day, or leave weekdays out for every day")
    return frozenset(WEEKDAY_NAMES.index(day) for day in days)


def _reject_duplicate(seen: dict[_Key, str], key: _Key, path: str, what: str) -> None:
    if key in seen:
        raise ConfigError(path, f'duplicate {what} "{key}" (already at {seen[key]})')
    seen[key] = path


def check_bounds(data: object) -> None:
    """Refuse, naming the key path, data past the configuration's bounds: nested deeper than
    CONFIG_MAX_DEPTH, holding more than CONFIG_MAX_ITEMS values or STORED_CONFIG_MAX_CHARS
    characters of text (what an alias bomb expands to, or a structure that holds itself), a
    whole number of more than INTEGER_DIGITS_MAX digits, a number that is not finite, or text
    with a character of `_FORBIDDEN_IN_TEXT` (keys too).

    One walk over everything, before any key is interpreted, so that every text of every
    section is held to the same rule and no later message quotes such a character back."""
    budget = [CONFIG_MAX_ITEMS, STORED_CONFIG_MAX_CHARS]
    # Depth-first with an explicit stack: no recursion to run out of, whatever the input.
    stack: list[tuple[object, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(path, f"the configuration holds more than {CONFIG_MAX_ITEMS} "
                                    "values; a real one holds a few thousand")
        if isinstance(value, str):
            budget[1] -= len(value)
            if budget[1] < 0:
                raise ConfigError(path, f"the configuration's texts are longer than "
                                        f"{STORED_CONFIG_MAX_CHARS} characters in all")
            _check_characters(value, path)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if abs(value) > INTEGER_MAX:
                raise ConfigError(path, f"number too large: at most {INTEGER_DIGITS_MAX} digits "
                                        "(write phone numbers in quotes)")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ConfigError(path, "must be a finite number")
        elif isinstance(value, list | dict):
            if depth >= CONFIG_MAX_DEPTH:
                raise ConfigError(path, f"nested more than {CONFIG_MAX_DEPTH} levels deep")
            # Pushed last to first, so the first offence in the file's order is the one named.
            if isinstance(value, list):
                stack.extend((value[index], _at_index(path, index), depth + 1)
                             for index in range(len(value) - 1, -1, -1))
                continue
            for key in value:
                if isinstance(key, str):
                    _check_characters(key, path, key=True)
            stack.extend((item, _at_key(path, key) if isinstance(key, str) else path, depth + 1)
                         for key, item in reversed(value.items()))


def _check_characters(text: str, path: str, *, key: bool = False) -> None:
    found = _FORBIDDEN_IN_TEXT.search(text)
    if found is None:
        return
    char = found.group()
    if "\ud800" <= char <= "\udfff":
        what = "a lone surrogate, which is not text (no UTF-8 encoding exists for it)"
    elif char in "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        what = "a bidirectional control character, which can make text read backwards"
    elif char in "\u2028\u2029":
        what = "a line separator"
    else:
        what = "a control character (a line break, tab, NUL, escape and the like)"
    where = "a key" if key else "the text"
    raise ConfigError(path, f"{where} must not contain {what}: U+{ord(char):04X} at character "
                            f"{found.start() + 1}")


def _prompt_names() -> frozenset[str]:
    """The built-in prompts a menu's greeting may name (firmware/media/prompts/en)."""
    prompts = Path(__file__).resolve().parent.parent / "media" / "prompts" / "en"
    return frozenset(path.stem for path in prompts.glob("*.wav"))


def parse_config(data: object) -> Config:
    """Validate plain data (as loaded from YAML) and build a `Config`; raise `ConfigError`."""
    check_bounds(data)
    top = _mapping(data, "", required=(), optional=SECTIONS)

    extensions: list[Extension] = []
    extension_paths: dict[str, str] = {}
    for index, item in enumerate(_list(top.get("extensions", []), "extensions")):
        path = _at_index("extensions", index)
        extension = _parse_extension(item, path)
        _reject_duplicate(extension_paths, extension.number, _at_key(path, "number"), "extension")
        extensions.append(extension)
    extension_numbers = set(extension_paths)

    departments: list[Department] = []
    department_paths: dict[str, str] = {}
    for index, item in enumerate(_list(top.get("departments", []), "departments")):
        path = _at_index("departments", index)
        department = _parse_department(item, path, extension_numbers)
        number_path = _at_key(path, "number")
        if department.number in extension_numbers:
            raise ConfigError(
                number_path,
                f'"{department.number}" is already an extension '
                f"(at {extension_paths[department.number]})",
            )
        _reject_duplicate(department_paths, department.number, number_path, "department")
        departments.append(department)

    trunks: list[Trunk] = []
    trunk_paths: dict[str, str] = {}
    device_paths: dict[str, str] = {}
    imei_paths: dict[str, str] = {}
    for index, item in enumerate(_list(top.get("trunks", []), "trunks")):
        path = _at_index("trunks", index)
        trunk = _parse_trunk(item, path)
        _reject_duplicate(trunk_paths, trunk.name, _at_key(path, "name"), "trunk")
        # Two lines on one modem would fight over its one port.
        for device, key in ((trunk.device, "port"), (trunk.audio_device, "audio_port")):
            if device:
                _reject_duplicate(device_paths, device, _at_key(path, key), "serial device")
        if trunk.imei:
            _reject_duplicate(imei_paths, trunk.imei, _at_key(path, "imei"), "IMEI")
        trunks.append(trunk)

    numbers: list[Number] = []
    number_paths: dict[str, str] = {}
    destinations = extension_numbers | set(department_paths)
    try:
        menus = parse_menus(
            _list(top.get("menus", []), "menus"), "menus",
            check_destination=lambda value, at: _destination(value, at, destinations),
            prompt_names=_prompt_names())
    except MenuError as error:
        raise ConfigError(error.path, error.message) from None
    # From here on a number, a schedule's after_hours, a rule or a no-answer step may name a
    # menu as `menu:NAME`.
    destinations = destinations | {menu.destination for menu in menus}
    for index, item in enumerate(_list(top.get("numbers", []), "numbers")):
        path = _at_index("numbers", index)
        number = _parse_number(item, path, {t.name: t.type for t in trunks}, destinations)
        _reject_duplicate(number_paths, number.number, _at_key(path, "number"), "number")
        numbers.append(number)

    security = _parse_security(top.get("security", {}), "security")
    sip = _parse_sip(top.get("sip", {}), "sip")
    site = _parse_site(top.get("site", {}), "site")
    unknown = [n for n in site.greeting_recorders if n not in extension_numbers]
    if unknown:
        raise ConfigError("site.greeting_recorders", f"no extension {unknown[0]}")
    crm = _parse_crm(top.get("crm", {}), "crm")
    failover = _parse_failover(top.get("failover", {}), "failover", trunk_paths)
    hardware = _parse_hardware(top.get("hardware", {}), "hardware")
    smtp = _parse_smtp(top["smtp"], "smtp") if "smtp" in top else Smtp()
    notifications = _parse_notifications(
        top.get("notifications", {}), "notifications", smtp=smtp, departments=department_paths,
        mailboxes=destinations, trunks={t.name: t.type for t in trunks})

    schedules: list[Schedule] = []
    schedule_paths: dict[str, str] = {}
    for index, item in enumerate(_list(top.get("schedules", []), "schedules")):
        path = _at_index("schedules", index)
        schedule = _parse_schedule(item, path, site, destinations)
        _reject_duplicate(schedule_paths, schedule.name, _at_key(path, "name"), "schedule")
        schedules.append(schedule)
    references = [
        (_at_key(_at_index("departments", index), "schedule"), department.schedule)
        for index, department in enumerate(departments)
    ] + [
        (_at_key(_at_index("numbers", index), "schedule"), number.schedule)
        for index, number in enumerate(numbers)
    ]
    for path, name in references:
        if name is not None and name not in schedule_paths:
            raise ConfigError(path, f'unknown schedule "{name}"')

    try:
        recording = parse_recording(
            top.get("recording", {}), "recording", numbers=set(number_paths),
            departments=set(department_paths), employees=extension_numbers)
    except RecordingError as error:
        raise ConfigError(error.path, error.message) from None

    rules = tuple(
        _parse_rule(item, _at_index("rules", index), destinations)
        for index, item in enumerate(_list(top.get("rules", []), "rules"))
    )

    def is_destination(text: str) -> bool:
        digits = text[1:] if text.startswith("+") else text
        return text in destinations or (digits.isdigit() and 3 <= len(digits) <= 15)

    # Checked here, naming each bad key, and kept parsed: the gateway reads `settings` and
    # never parses `extra` again.
    departments = [
        dataclasses.replace(department, settings=_check_department_routing(
            department, _at_index("departments", index), is_destination, destinations))
        for index, department in enumerate(departments)
    ]

    return Config(
        extensions=tuple(extensions),
        departments=tuple(departments),
        trunks=tuple(trunks),
        numbers=tuple(numbers),
        security=security,
        sip=sip,
        site=site,
        schedules=tuple(schedules),
        rules=rules,
        crm=crm,
        failover=failover,
        hardware=hardware,
        menus=menus,
        recording=recording,
        smtp=smtp,
        notifications=notifications,
    )


def _check_department_routing(
    department: Department, path: str, is_destination: Callable[[str], bool],
    mailboxes: Collection[str],
) -> DepartmentSettings:
    """The routing keys of a department and its members (queue, no-answer scheme, strategy
    knobs), checked here so a bad value is refused at import, naming its key; the department's
    parsed settings."""
    extra = department.extra
    for key in ("step_delay_s", "tier_time_s", "sticky_ring_s"):
        if key in extra:
            _integer(extra[key], _at_key(path, key), low=1, high=RING_TIMEOUT_MAX_S)
    if "wrap_up_s" in extra:
        _integer(extra["wrap_up_s"], _at_key(path, "wrap_up_s"), low=0, high=3600)
    if "auto_break_after" in extra:
        _integer(extra["auto_break_after"], _at_key(path, "auto_break_after"), low=0, high=100)
    for key, allowed in (("tier_mode", TIER_MODES), ("rank", RANK_MODES),
                         ("sticky", STICKY_MODES)):
        if key in extra and extra[key] not in allowed:
            raise ConfigError(_at_key(path, key), f"must be one of {', '.join(allowed)}")
    for index, member in enumerate(department.members):
        member_path = _at_index(_at_key(path, "members"), index)
        if "rank" in member.extra:
            _integer(member.extra["rank"], _at_key(member_path, "rank"), low=1, high=1000)
        if "tier" in member.extra:
            _integer(member.extra["tier"], _at_key(member_path, "tier"), low=1, high=9)
        if "weight" in member.extra:
            weight = member.extra["weight"]
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not (
                0 <= weight <= 100
            ):
                raise ConfigError(_at_key(member_path, "weight"),
                                  "must be a percentage from 0 to 100")
        if "skills" in member.extra:
            skills = member.extra["skills"]
            if not isinstance(skills, list) or not all(isinstance(x, str) for x in skills):
                raise ConfigError(_at_key(member_path, "skills"),
                                  'must be a list of texts like "lang:en"')
    try:
        return parse_department_settings(department.number, extra, path,
                                         is_destination=is_destination, mailboxes=mailboxes)
    except SchemeError as exc:
        raise ConfigError(exc.path, exc.message) from None


# --- serialising ---------------------------------------------------------------------------------

def _member_to_data(member: Member) -> str | dict[str, Any]:
    if member.ring_time_s is None and not member.extra:
        return member.extension
    data: dict[str, Any] = {"extension": member.extension}
    if member.ring_time_s is not None:
        data["ring_time_s"] = member.ring_time_s
    data.update(member.extra)
    return data


def extension_to_data(extension: Extension) -> dict[str, Any]:
    # `mobile` and `skills` only when set, so an export of a box that does not use them still
    # imports on firmware that predates them.
    data: dict[str, Any] = {
        "number": extension.number,
        "name": extension.name,
        "password": extension.password,
    }
    if extension.mobile is not None:
        data["mobile"] = extension.mobile
    if extension.skills:
        data["skills"] = list(extension.skills)
    if extension.digest_algorithms is not None:
        data["digest_algorithms"] = list(extension.digest_algorithms)
    if extension.digest_without_qop:
        data["digest_without_qop"] = True
    if extension.outbound != DEFAULT_OUTBOUND:
        data["outbound"] = extension.outbound
    if extension.external_calls_per_hour != DEFAULT_EXTENSION_CALLS_PER_HOUR:
        data["external_calls_per_hour"] = extension.external_calls_per_hour
    return data


def trunk_to_data(trunk: Trunk) -> dict[str, Any]:
    if trunk.is_modem:
        return _modem_trunk_to_data(trunk)
    data = dataclasses.asdict(trunk)
    for key in MODEM_FIELDS:
        del data[key]
    if trunk.from_domain is None:
        del data["from_domain"]
    # The newer keys only where they differ from their defaults (an export stays importable by
    # firmware that predates them).
    for key in ("digest_algorithms", "inbound_match"):
        if data[key] == getattr(_TRUNK_DEFAULTS, key):
            del data[key]
        elif key == "digest_algorithms":
            data[key] = list(trunk.digest_algorithms)
    return data


# The Trunk fields of modem lines, absent from a SIP trunk's data.
MODEM_FIELDS = ("device", "audio_device", "modem", "imei", "pin", "number", "gain_db")


def _modem_trunk_to_data(trunk: Trunk) -> dict[str, Any]:
    """A gsm/fxo line as written in YAML: its device paths under `port` and `audio_port`, the
    optional keys only when set. The PIN is kept, as SIP passwords are: an export is a backup."""
    data: dict[str, Any] = {"name": trunk.name, "type": trunk.type, "port": trunk.device}
    if trunk.audio_device:
        data["audio_port"] = trunk.audio_device
    data["modem"] = trunk.modem
    for key in ("imei", "pin", "number"):
        if getattr(trunk, key):
            data[key] = getattr(trunk, key)
    if trunk.gain_db:
        data["gain_db"] = trunk.gain_db
    return data


def _department_to_data(department: Department) -> dict[str, Any]:
    data: dict[str, Any] = {
        "number": department.number,
        "name": department.name,
        "strategy": department.strategy,
        "ring_timeout_s": department.ring_timeout_s,
        "members": [_member_to_data(member) for member in department.members],
        **department.extra,
    }
    if department.schedule is not None:
        data["schedule"] = department.schedule
    return data


def _number_to_data(number: Number) -> dict[str, Any]:
    data = dataclasses.asdict(number)
    if number.schedule is None:
        del data["schedule"]
    if number.webhook is None:
        del data["webhook"], data["webhook_timeout_s"]
    return data


def _schedule_to_data(schedule: Schedule, site: Site) -> dict[str, Any]:
    data: dict[str, Any] = {"name": schedule.name}
    if schedule.timezone != site.timezone:
        data["timezone"] = schedule.timezone
    data["hours"] = {
        day_name: [format_time_range(time_range) for time_range in schedule.hours.get(weekday, ())]
        for weekday, day_name in enumerate(WEEKDAY_NAMES)
    }
    data["holidays"] = [holiday.isoformat() for holiday in sorted(schedule.holidays)]
    if schedule.after_hours is not None:
        data["after_hours"] = schedule.after_hours
    return data


def _rule_to_data(rule: CallerRule) -> dict[str, Any]:
    data: dict[str, Any] = {"match": rule.match, "action": rule.action}
    if rule.to is not None:
        data["to"] = rule.to
    if rule.action == BLACKLIST:
        data["reply"] = rule.reply
    if rule.hours is not None:
        data["hours"] = [format_time_range(time_range) for time_range in rule.hours]
    if rule.weekdays is not None:
        data["weekdays"] = [WEEKDAY_NAMES[weekday] for weekday in sorted(rule.weekdays)]
    return data


def _dial_plan_to_data(plan: DialPlan) -> dict[str, Any]:
    """The dial plan keys that differ from their defaults (lists as lists)."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key in DIAL_PLAN_KEYS
        if (value := getattr(plan, key)) != getattr(_DIAL_PLAN_DEFAULTS, key)
    }


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain data for `cfg`, the exact inverse of `parse_config`.

    `site`, `schedules` and `rules` are left out while they hold their defaults, so a file
    exported by a box that does not use them still imports on firmware that predates them.
    """
    data: dict[str, Any] = {
        "extensions": [extension_to_data(extension) for extension in cfg.extensions],
        "departments": [_department_to_data(department) for department in cfg.departments],
        "trunks": [trunk_to_data(trunk) for trunk in cfg.trunks],
        "numbers": [_number_to_data(number) for number in cfg.numbers],
        "security": {
            "rate_limit_requests": cfg.security.rate_limit_requests,
            "rate_limit_window_s": cfg.security.rate_limit_window_s,
            "ban_s": cfg.security.ban_s,
            "scanner_user_agents": list(cfg.security.scanner_user_agents),
            "auth_failures_per_source": cfg.security.auth_failures_per_source,
            "auth_failures_per_extension": cfg.security.auth_failures_per_extension,
            "auth_window_s": cfg.security.auth_window_s,
            "tcp_max_connections": cfg.security.tcp_max_connections,
            "tcp_max_connections_per_address": cfg.security.tcp_max_connections_per_address,
            "tcp_idle_s": cfg.security.tcp_idle_s,
            "tcp_message_timeout_s": cfg.security.tcp_message_timeout_s,
            "external_calls_per_hour": cfg.security.external_calls_per_hour,
        },
        "sip": {
            "realm": cfg.sip.realm,
            "user_agent": cfg.sip.user_agent,
            "digest_algorithms": list(cfg.sip.digest_algorithms),
        },
    }
    if cfg.site != Site():
        data["site"] = {"timezone": cfg.site.timezone}
        if cfg.site.language != DEFAULT_LANGUAGE:
            data["site"]["language"] = cfg.site.language
        data["site"].update(_dial_plan_to_data(cfg.site.dial_plan))
        for key, default in (("pickup_code", DEFAULT_PICKUP_CODE),
                             ("directed_pickup_prefix", DEFAULT_DIRECTED_PICKUP_PREFIX)):
            if getattr(cfg.site, key) != default:
                data["site"][key] = getattr(cfg.site, key)
        if cfg.site.greeting_recorders:
            data["site"]["greeting_recorders"] = list(cfg.site.greeting_recorders)
    if cfg.schedules:
        data["schedules"] = [_schedule_to_data(schedule, cfg.site) for schedule in cfg.schedules]
    if cfg.rules:
        data["rules"] = [_rule_to_data(rule) for rule in cfg.rules]
    if cfg.crm != Crm():
        data["crm"] = {key: value for key, value in dataclasses.asdict(cfg.crm).items()
                       if value is not None}
    # The sections of issue 12 only where they differ from their defaults, key by key.
    for section, defaults in (("failover", FailoverSettings()), ("hardware", Hardware())):
        differing = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(getattr(cfg, section)).items()
            if value != getattr(defaults, key)
        }
        if differing:
            data[section] = differing
    data.update(_notifications_to_data(cfg))
    if cfg.menus:
        data["menus"] = [menu_to_data(menu) for menu in cfg.menus]
    if cfg.recording != RecordingSettings():
        data["recording"] = recording_to_data(cfg.recording)
    return data


# --- YAML ----------------------------------------------------------------------------------------
# PyYAML itself is used in config_yaml.py, imported on first use (it says why).


def load_yaml(text: str | bytes) -> Config:
    """Parse and validate a YAML config file (its text, or its bytes as UTF-8); syntax errors
    and refused values name the line and column, invalid settings their key path."""
    from .config_yaml import YamlProblem, load_data

    if len(text) > CONFIG_MAX_BYTES or (
        isinstance(text, str) and len(text.encode("utf-8", "surrogatepass")) > CONFIG_MAX_BYTES
    ):
        raise ConfigError("", f"the file is larger than {CONFIG_MAX_BYTES // 1024} KiB; a "
                              "configuration is a few kilobytes")
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            line = raw.count(b"\n", 0, error.start) + 1
            raise ConfigError("", f"not UTF-8 text: line {line}, byte {error.start + 1} of the "
                                  "file (save it as UTF-8)") from None
    try:
        data = load_data(text, max_depth=CONFIG_MAX_DEPTH, integer_digits_max=INTEGER_DIGITS_MAX,
                         integer_max=INTEGER_MAX)
    except YamlProblem as error:
        raise ConfigError("", str(error)) from error.__cause__
    if data is None:
        raise ConfigError("", "the file is empty")
    return parse_config(data)


def load_yaml_file(path: str | Path) -> Config:
    """`load_yaml` of the file at `path`, reading no more of it than the size it may have."""
    with open(path, "rb") as handle:
        data = handle.read(CONFIG_MAX_BYTES + 1)
    return load_yaml(data)


def dump_yaml(cfg: Config) -> str:
    """YAML text for `cfg`, keys in schema order, Cyrillic left readable, no aliases."""
    from .config_yaml import dump_data

    return dump_data(config_to_dict(cfg))
