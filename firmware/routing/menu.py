"""Voice menus (IVR): what a menu is, and its configuration checked.

A menu plays a greeting — the office's uploaded recording, or built-in prompts in order — and
then routes the call by the key the caller presses: to a department, an employee, voicemail, an
external number, another menu, or "repeat". Without a key it plays the greeting again, up to
`repeats` times, then takes its timeout action; a key it does not know is said to be invalid and
counts the same way toward the invalid action. With `direct_dial` the caller may dial an
extension or department number instead, digits collected until `digit_timeout_s` passes
between two of them (or "#"). A menu with no keys and a `then` destination is the short
announcement before distribution ("this call may be recorded"): it plays once and routes.

Pure: the configuration model and its validation; `firmware.ivr` plays a menu,
`firmware.core.menus` routes what the caller chose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

MENU_PREFIX = "menu:"
REPEAT = "repeat"
HANGUP = "hangup"
MENU_KEYS = "0123456789*#"
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
DEFAULT_GREETING: tuple[str, ...] = ("menu_choose",)
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_REPEATS = 2
DEFAULT_DIGIT_TIMEOUT_S = 3.0
TIMEOUT_MAX_S = 60.0
REPEATS_MAX = 10
MENUS_MAX = 100
ALLOWED_KEYS = ("name", "number", "greeting", "keys", "timeout_s", "repeats", "timeout",
                "invalid", "direct_dial", "digit_timeout_s", "then")
# Dialled by an allowed extension, then a menu's number, to record the menu's greeting by phone
# (firmware/core/menu_greetings.py); the status codes *50..*54 and the pickup codes never clash
# with it (firmware/store/config.py refuses a pickup code that would).
GREETING_CODE = "*97"
# A menu's number, dialled after the greeting code (*97 + number) to record its greeting by
# phone: names are letters, keypads are digits. Stable once written down (menu_to_data).
NUMBER_RE = re.compile(r"[1-9][0-9]{0,3}")
PROMPT_NAME_RE = re.compile(r"[a-z0-9_]{1,64}")


class MenuError(ValueError):
    """A menu's configuration is wrong; `path` names the key."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class Menu:
    name: str
    number: str = "1"  # dialled after the greeting code to record the greeting by phone
    # Built-in prompts played in order, unless the office uploaded a recording for the menu.
    greeting: tuple[str, ...] = DEFAULT_GREETING
    keys: Mapping[str, str] = field(default_factory=dict)  # key → destination or "repeat"
    timeout_s: float = DEFAULT_TIMEOUT_S  # after the greeting, for the first key
    repeats: int = DEFAULT_REPEATS  # the greeting again this many times at most
    timeout: str = HANGUP  # nothing pressed, repeats used up
    invalid: str = HANGUP  # unknown keys, repeats used up
    direct_dial: bool = False
    digit_timeout_s: float = DEFAULT_DIGIT_TIMEOUT_S
    then: str | None = None  # a menu without keys: route here after the greeting

    @property
    def destination(self) -> str:
        """How routing names this menu."""
        return f"{MENU_PREFIX}{self.name}"


def menu_name(destination: str) -> str | None:
    """The menu a `menu:NAME` destination names; None for any other destination."""
    return destination.removeprefix(MENU_PREFIX) if destination.startswith(MENU_PREFIX) else None


def by_number(menus: Collection[Menu], number: str) -> Menu | None:
    """The menu `number` names (what follows the greeting code), or None."""
    return next((menu for menu in menus if menu.number == number), None)


def greeting_key(name: str) -> str:
    """Under which name a menu's uploaded greeting is stored (beside the mailboxes')."""
    return f"{MENU_PREFIX}{name}"


def _number(value: object, path: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MenuError(path, f"must be a number of seconds, got {value!r}")
    if not low <= value <= high:
        raise MenuError(path, f"must be between {low:g} and {high:g}, got {value}")
    return float(value)


def parse_menus(
    items: list[object], path: str, *, check_destination: Callable[[object, str], str],
    prompt_names: Collection[str] | None = None,
) -> tuple[Menu, ...]:
    """Validate `menus:` (a list of mappings). `check_destination(value, path)` checks a
    destination that is no menu (as a number's destination is checked) and returns its text;
    `prompt_names`, when given, are the built-in prompts a greeting may name."""
    if len(items) > MENUS_MAX:
        raise MenuError(path, f"at most {MENUS_MAX} menus")
    names: dict[str, str] = {}
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        at = f"{path}[{index}].name"
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise MenuError(at, 'is required: 1 to 32 letters, digits, "-", "_" or "."')
        if name in names:
            raise MenuError(at, f'duplicate menu "{name}" (already at {names[name]})')
        names[name] = at
    numbers = _menu_numbers(items, path)
    menus = tuple(_parse_menu(item, f"{path}[{index}]", names, check_destination, prompt_names,
                              numbers[index])
                  for index, item in enumerate(items))
    _refuse_automatic_cycles(menus, path)
    return menus


def _menu_numbers(items: list[object], path: str) -> list[str]:
    """Each menu's number: its own `number`, or else the lowest one no menu has, in list order.
    Written down by `menu_to_data`, so the first save keeps them: deleting a menu never
    renumbers the others (a number on a sticker by the phone stays right)."""
    given: dict[str, str] = {}
    for index, item in enumerate(items):
        assert isinstance(item, dict)
        if "number" not in item:
            continue
        raw = item["number"]
        text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        at = f"{path}[{index}].number"
        if not isinstance(text, str) or not NUMBER_RE.fullmatch(text):
            raise MenuError(at, f"must be a number from 1 to 9999, got {raw!r}")
        if text in given:
            raise MenuError(at, f"number {text} is taken by another menu (at {given[text]})")
        given[text] = at
    numbers: list[str] = []
    free = (str(n) for n in range(1, 10_000) if str(n) not in given)
    for item in items:
        assert isinstance(item, dict)
        raw = item.get("number")
        numbers.append(str(raw) if raw is not None else next(free))
    return numbers


def _parse_menu(
    value: object, path: str, names: Mapping[str, str],
    check_destination: Callable[[object, str], str], prompt_names: Collection[str] | None,
    number: str,
) -> Menu:
    if not isinstance(value, dict):
        raise MenuError(path, "must be a mapping of key: value")
    for key in value:
        if key not in ALLOWED_KEYS:
            raise MenuError(f"{path}.{key}", f"unknown key (allowed: {', '.join(ALLOWED_KEYS)})")

    def destination(raw: object, at: str, *, repeat: bool = False, hangup: bool = False) -> str:
        if repeat and raw == REPEAT:
            return REPEAT
        if hangup and raw == HANGUP:
            return HANGUP
        if isinstance(raw, str):
            menu = menu_name(raw)
            if menu is not None:
                if menu not in names:
                    raise MenuError(at, f'unknown menu "{menu}" (menus: '
                                        f'{", ".join(names) or "none"})')
                return raw
        return check_destination(raw, at)

    greeting = DEFAULT_GREETING
    if "greeting" in value:
        raw = value["greeting"]
        raw_list = [raw] if isinstance(raw, str) else raw
        if not isinstance(raw_list, list) or not raw_list:
            raise MenuError(f"{path}.greeting", "must be a prompt's name or a list of them")
        for i, prompt in enumerate(raw_list):
            at = f"{path}.greeting[{i}]"
            if not isinstance(prompt, str) or not PROMPT_NAME_RE.fullmatch(prompt):
                raise MenuError(at, f"must be a prompt's name, got {prompt!r}")
            if prompt_names is not None and prompt not in prompt_names:
                raise MenuError(at, f'no built-in prompt "{prompt}" (there are: '
                                    f'{", ".join(sorted(prompt_names))})')
        greeting = tuple(str(p) for p in raw_list)
    keys: dict[str, str] = {}
    raw_keys = value.get("keys", {})
    if not isinstance(raw_keys, dict):
        raise MenuError(f"{path}.keys", 'must be a mapping of key: destination, e.g. "1": "200"')
    for key, to in raw_keys.items():
        key_text = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
        if not isinstance(key_text, str) or len(key_text) != 1 or key_text not in MENU_KEYS:
            raise MenuError(f"{path}.keys", f"{key!r} is no key: 0-9, * or # (in quotes)")
        keys[key_text] = destination(to, f"{path}.keys.{key_text}", repeat=True)
    then = None
    if "then" in value:
        if keys:
            raise MenuError(f"{path}.then", "a menu routes by its keys or, without keys, to "
                                            "`then`: not both")
        then = destination(value["then"], f"{path}.then")
    direct_dial = value.get("direct_dial", False)
    if not isinstance(direct_dial, bool):
        raise MenuError(f"{path}.direct_dial", "must be true or false")
    if not keys and then is None and not direct_dial:
        raise MenuError(path, "give it keys, direct_dial: true, or (an announcement) `then`")
    return Menu(
        name=str(value["name"]), number=number, greeting=greeting, keys=keys,
        timeout_s=_number(value.get("timeout_s", DEFAULT_TIMEOUT_S), f"{path}.timeout_s",
                          low=1, high=TIMEOUT_MAX_S),
        repeats=int(_number(value.get("repeats", DEFAULT_REPEATS), f"{path}.repeats",
                            low=0, high=REPEATS_MAX)),
        timeout=destination(value.get("timeout", HANGUP), f"{path}.timeout", hangup=True),
        invalid=destination(value.get("invalid", HANGUP), f"{path}.invalid", hangup=True),
        direct_dial=direct_dial,
        digit_timeout_s=_number(value.get("digit_timeout_s", DEFAULT_DIGIT_TIMEOUT_S),
                                f"{path}.digit_timeout_s", low=1, high=10),
        then=then,
    )


def _refuse_automatic_cycles(menus: tuple[Menu, ...], path: str) -> None:
    """Menus may lead back to each other through keys (the caller chooses every time), but not
    through `then` or `timeout` alone: a silent caller would go round for ever."""
    automatic: dict[str, str] = {}
    for menu in menus:
        target = menu_name(menu.then or menu.timeout)
        if target is not None:
            automatic[menu.name] = target
    for index, menu in enumerate(menus):
        seen = [menu.name]
        current = automatic.get(menu.name)
        while current is not None:
            if current == menu.name:
                loop = " → ".join([*seen, current])
                key = "then" if menu.then is not None else "timeout"
                raise MenuError(f"{path}[{index}].{key}", f"menus route to each other without "
                                                          f"a key being pressed: {loop}")
            if current in seen:
                break  # a loop further on: refused at a menu of its own
            seen.append(current)
            current = automatic.get(current)


def menu_to_data(menu: Menu) -> dict[str, object]:
    """Plain data for `menu`, the inverse of its parsing; defaults are left out."""
    data: dict[str, object] = {"name": menu.name, "number": menu.number}
    if menu.greeting != DEFAULT_GREETING:
        data["greeting"] = list(menu.greeting)
    if menu.keys:
        data["keys"] = dict(menu.keys)
    if menu.then is not None:
        data["then"] = menu.then
    for key, default in (("timeout_s", DEFAULT_TIMEOUT_S), ("repeats", DEFAULT_REPEATS),
                         ("timeout", HANGUP), ("invalid", HANGUP), ("direct_dial", False),
                         ("digit_timeout_s", DEFAULT_DIGIT_TIMEOUT_S)):
        value = getattr(menu, key)
        if value != default:
            data[key] = value
    return data
