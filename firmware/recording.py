"""Call recording: the `recording:` section of the configuration, which calls it records, and the
warning the caller hears first. Pure: no clock, no disk.

Who is recorded is set per number (DID), per department and per employee — `none`, `all` or
`inbound` (calls that came in on a line), each with `stereo` (caller left, member right) or
`mono`. When several apply, the most specific wins: the employee's, then the department's, then
the number's. The employee's comes first because it is about the person actually talking (a
director or a lawyer not recorded, whichever line or department the call came through); the
department's says what kind of work is done there (sales recorded, accounts not), whichever of
the office's numbers brought the call; the number's is the broadest default (an advertised
line recorded for quality). A call that may be recorded — some member it can reach would record
it — is warned before anyone rings (`may_record`); whether it is recorded is decided when a
member answers (`decide`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

NONE, ALL, INBOUND = "none", "all", "inbound"
MODES = (NONE, ALL, INBOUND)
STEREO, MONO = "stereo", "mono"
CHANNEL_MODES = (STEREO, MONO)
SECTION_KEYS = ("quota_mb", "min_free_mb", "channels", "numbers", "departments", "employees")
RULE_KEYS = ("record", "channels")
PROMPT_RECORDING_WARNING = "call_may_be_recorded"
# The office's own warning, uploaded in the web UI, is kept as the greeting of this mailbox,
# one per language (`warning_greeting`).
WARNING_GREETING_PREFIX = "recording_warning:"
QUOTA_MB_MAX = 1_000_000
DEFAULT_MIN_FREE_MB = 64  # left free on the data partition whatever the quota
# quota_mb 0 (the default): this share of the data partition's size.
AUTO_QUOTA_SHARE = 0.5
QUOTA_WARNING_SHARE = 0.9  # the web UI warns from here; the oldest go past 100 %


class RecordingError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingRule:
    record: str  # none | all | inbound
    channels: str  # stereo | mono

    def records(self, direction: str) -> bool:
        return self.record == ALL or (self.record == INBOUND and direction == "inbound")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingSettings:
    quota_mb: int = 0  # 0: AUTO_QUOTA_SHARE of the data partition
    min_free_mb: int = DEFAULT_MIN_FREE_MB
    channels: str = STEREO  # for rules that do not say
    numbers: Mapping[str, RecordingRule] = field(default_factory=dict)
    departments: Mapping[str, RecordingRule] = field(default_factory=dict)
    employees: Mapping[str, RecordingRule] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        """Something may be recorded at all."""
        return any(rule.record != NONE for rules in (self.numbers, self.departments,
                                                     self.employees) for rule in rules.values())


def rule_for(settings: RecordingSettings, *, employee: str | None, department: str | None,
             number: str | None) -> RecordingRule | None:
    """The setting that applies, most specific first: employee, department, number."""
    for rules, key in ((settings.employees, employee), (settings.departments, department),
                       (settings.numbers, number)):
        if key is not None and key in rules:
            return rules[key]
    return None


def decide(settings: RecordingSettings, *, direction: str, employee: str | None,
           department: str | None, number: str | None) -> RecordingRule | None:
    """The rule to record a call answered by `employee` with, or None: not recorded."""
    rule = rule_for(settings, employee=employee, department=department, number=number)
    return rule if rule is not None and rule.records(direction) else None


def may_record(settings: RecordingSettings, *, direction: str, members: Collection[str],
               department: str | None, number: str | None) -> bool:
    """Whether any of `members` (those the call may ring) would record it — or the department
    or number itself when nobody's own setting says otherwise: the caller is then warned."""
    if not settings.any:
        return False
    candidates: list[str | None] = [*members] or [None]
    return any(decide(settings, direction=direction, employee=member, department=department,
                      number=number) is not None for member in candidates)


def warning_greeting(language: str) -> str:
    return f"{WARNING_GREETING_PREFIX}{language}"


# ---------------------------------------------------------------------- the configuration
def parse_recording(value: object, path: str, *, numbers: Collection[str],
                    departments: Collection[str], employees: Collection[str]
                    ) -> RecordingSettings:
    """The `recording:` section; RecordingError naming the key on a bad value."""
    data = _mapping(value, path, SECTION_KEYS)
    channels = _choice(data.get("channels", STEREO), f"{path}.channels", CHANNEL_MODES)
    quota_mb = _whole(data.get("quota_mb", 0), f"{path}.quota_mb", 0, QUOTA_MB_MAX)
    min_free_mb = _whole(data.get("min_free_mb", DEFAULT_MIN_FREE_MB), f"{path}.min_free_mb", 1,
                         QUOTA_MB_MAX)
    rules: dict[str, dict[str, RecordingRule]] = {}
    for key, known, what in (("numbers", numbers, "number"),
                             ("departments", departments, "department"),
                             ("employees", employees, "extension")):
        section = _mapping(data.get(key, {}), f"{path}.{key}", None)
        parsed: dict[str, RecordingRule] = {}
        for name, rule in section.items():
            at = f"{path}.{key}.{name}"
            if name not in known:
                raise RecordingError(at, f'unknown {what} "{name}"')
            parsed[name] = _rule(rule, at, channels)
        rules[key] = parsed
    return RecordingSettings(quota_mb=quota_mb, min_free_mb=min_free_mb, channels=channels,
                             numbers=rules["numbers"], departments=rules["departments"],
                             employees=rules["employees"])


def recording_to_data(settings: RecordingSettings) -> dict[str, object]:
    """Plain data for `settings`, the inverse of `parse_recording` (defaults left out)."""
    data: dict[str, object] = {}
    defaults = RecordingSettings()
    for key in ("quota_mb", "min_free_mb", "channels"):
        if getattr(settings, key) != getattr(defaults, key):
            data[key] = getattr(settings, key)
    for key in ("numbers", "departments", "employees"):
        rules: Mapping[str, RecordingRule] = getattr(settings, key)
        if rules:
            data[key] = {name: rule.record if rule.channels == settings.channels
                         else {"record": rule.record, "channels": rule.channels}
                         for name, rule in rules.items()}
    return data


def _rule(value: object, path: str, channels: str) -> RecordingRule:
    if isinstance(value, str):
        return RecordingRule(record=_choice(value, path, MODES), channels=channels)
    data = _mapping(value, path, RULE_KEYS)
    if "record" not in data:
        raise RecordingError(f"{path}.record", "is required")
    return RecordingRule(record=_choice(data["record"], f"{path}.record", MODES),
                         channels=_choice(data.get("channels", channels), f"{path}.channels",
                                          CHANNEL_MODES))


def _mapping(value: object, path: str, allowed: tuple[str, ...] | None) -> dict[str, object]:
    if not isinstance(value, dict):
        raise RecordingError(path, "must be a mapping of key: value")
    for key in value:
        if not isinstance(key, str):
            raise RecordingError(path, f"key {key!r} must be text (quote numbers)")
        if allowed is not None and key not in allowed:
            raise RecordingError(f"{path}.{key}", f"unknown key (allowed: {', '.join(allowed)})")
    return value


def _choice(value: object, path: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise RecordingError(path, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _whole(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RecordingError(path, f"must be a whole number from {low} to {high}, got {value!r}")
    return value
