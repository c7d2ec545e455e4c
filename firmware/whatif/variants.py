"""A variant: the department's recorded configuration with some settings changed.

Settings are given as `key=value` pairs, the way `linebox whatif --set` and the web UI's form
take them, applied to the configuration as data and parsed again by the configuration's own
parser — so a variant is checked exactly as a saved configuration would be (a weight of 130 %
or an unknown strategy is refused with the same message), and the replay runs what the daemon
would run.

    strategy=weighted            ring_timeout_s=20        wrap_up_s=15
    step_delay_s=5  tier_time_s=10  tier_mode=replace  sticky=last_agent  sticky_ring_s=8
    rank=auto                    auto_break_after=3
    queue.max_callers=10  queue.max_wait_s=120  queue.retry_s=5   queue=none (no queue)
    weight.101=40  rank.101=1  tier.101=2  ring_time_s.101=15     (one member's keys)
    remove=103,104               (members left out)
    add=2                        (members added, behaving like the department's average and
                                  On line whenever any recorded member is)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..store.config import Config, ConfigError, Department, config_to_dict, parse_config

DEPARTMENT_NUMBERS = ("ring_timeout_s", "step_delay_s", "tier_time_s", "sticky_ring_s",
                      "wrap_up_s", "auto_break_after")
DEPARTMENT_WORDS = ("strategy", "tier_mode", "sticky", "rank")
QUEUE_KEYS = ("max_callers", "max_wait_s", "retry_s", "announce_s")
MEMBER_KEYS = ("weight", "rank", "tier", "ring_time_s")
MAX_ADDED = 20
ADDED_FIRST_NUMBER = 9901


class VariantError(ValueError):
    """A setting the variant cannot take (unknown key, a value out of range)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    name: str
    settings: tuple[tuple[str, str], ...]
    department: Department
    added: Mapping[str, str]  # added member's extension -> whose behaviour it takes ("" pooled)


def parse_settings(pairs: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """`["strategy=weighted", "weight.101=40"]` → pairs; VariantError for a pair with no `=`."""
    parsed = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise VariantError(f"{pair!r}: expected key=value, e.g. strategy=weighted")
        parsed.append((key.strip(), value.strip()))
    return tuple(parsed)


def _number(key: str, value: str) -> int | float:
    try:
        number = float(value)
    except ValueError:
        raise VariantError(f"{key}: {value!r} is not a number") from None
    return int(number) if number.is_integer() else number


def make_variant(config: Config, department: str, settings: Iterable[tuple[str, str]], *,
                 name: str = "") -> Variant:
    settings = tuple(settings)
    data = config_to_dict(config)
    found = next((d for d in data.get("departments", []) if str(d["number"]) == department),
                 None)
    if found is None:
        raise VariantError(f"no department {department}")
    members: list[Any] = list(found.get("members", []))

    def member_data(extension: str) -> dict[str, Any]:
        for index, member in enumerate(members):
            current = member if isinstance(member, dict) else {"extension": member}
            if str(current["extension"]) == extension:
                members[index] = current
                return current
        raise VariantError(f"{extension} is not a member of department {department}")

    added: dict[str, str] = {}
    for key, value in settings:
        if key in DEPARTMENT_NUMBERS:
            found[key] = _number(key, value)
        elif key in DEPARTMENT_WORDS:
            found[key] = value
        elif key == "queue" and value in ("none", "off", "no"):
            found.pop("queue", None)
        elif key.startswith("queue."):
            sub = key.removeprefix("queue.")
            if sub not in QUEUE_KEYS:
                raise VariantError(f"{key}: unknown queue setting (one of "
                                   f"{', '.join('queue.' + k for k in QUEUE_KEYS)})")
            queue = found.get("queue")
            queue = dict(queue) if isinstance(queue, dict) else {}
            queue[sub] = _number(key, value)
            found["queue"] = queue
        elif "." in key and key.split(".", 1)[0] in MEMBER_KEYS:
            field, extension = key.split(".", 1)
            member_data(extension)[field] = _number(key, value)
        elif key == "remove":
            gone = {part.strip() for part in value.split(",") if part.strip()}
            for extension in gone:
                member_data(extension)  # says so when it is not a member
            members = [m for m in members if str(m if not isinstance(m, dict)
                                                 else m["extension"]) not in gone]
        elif key == "add":
            count = _number(key, value)
            if not isinstance(count, int) or not 1 <= count <= MAX_ADDED:
                raise VariantError(f"add: a whole number of members from 1 to {MAX_ADDED}")
            taken = {str(e["number"]) for e in data.get("extensions", [])}
            number = ADDED_FIRST_NUMBER
            for _ in range(count):
                while str(number) in taken:
                    number += 1
                extension = str(number)
                taken.add(extension)
                data.setdefault("extensions", []).append({
                    "number": extension, "name": f"What-if member {extension}",
                    "password": secrets.token_urlsafe(18)})
                members.append(extension)
                added[extension] = ""
        else:
            raise VariantError(f"{key}: unknown setting (see `linebox whatif --help`)")
    found["members"] = members
    try:
        parsed = parse_config(data)
    except ConfigError as exc:
        raise VariantError(str(exc)) from None
    variant_department = next(d for d in parsed.departments if d.number == department)
    label = name or ", ".join(f"{k}={v}" for k, v in settings) or "as configured"
    return Variant(name=label, settings=settings, department=variant_department, added=added)
