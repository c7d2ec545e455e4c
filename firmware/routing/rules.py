"""Caller rules: what to do with an inbound call because of who is calling.

A `CallerRule` matches the caller's number and says `blacklist` (refuse the call with 486 Busy
Here or 603 Decline), `vip` (put the caller first in the queue, or with `to` send them straight
to an extension or department) or `route` (send the call to `to`). A rule may apply only at
some hours and on some weekdays of the site's time zone. The first rule that matches, in the
configured order, wins; `CompiledRules` indexes a rule list once so that a call costs a few dict
lookups however long the blacklist is.

Match syntax:
- an exact number, "79990000000" or "+7 (999) 000-00-00";
- a prefix, a number followed by "*": "7495*";
- an Asterisk-style pattern starting with "_": X is any digit, Z is 1-9, N is 2-9, [1-5] and
  [13579] are classes, a final "." is one or more of anything; "_7495XXXXXXX".

Numbers are normalised before they are compared: spaces, dashes and parentheses are dropped, so
is a leading "+"; a number written without "+" that has 11 digits and starts with 8 is the
Russian trunk form and is rewritten to start with 7 (8 495 123-45-67 is +7 495 123-45-67). A
number written with "+" is international and keeps its digits (+81 3 1234 5678 is Tokyo, not a
Russian 8 13... number). For the same reason prefixes and patterns see an 11-digit caller that
starts with 7 in both forms, so "8495*" and "7495*" match the same callers, unless the prefix is
written with "+" ("+8495*" means a number abroad). A caller that is not digits after
normalising (anonymous, a SIP user name) matches no rule.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .schedule import (
    DAYS_PER_WEEK,
    MINUTES_PER_DAY,
    ScheduleError,
    TimeRange,
    WeeklyHours,
    load_zone,
    normalise_weekly_hours,
    within_weekly_hours,
)
from .scheme import VOICEMAIL_PREFIX

BLACKLIST = "blacklist"
VIP = "vip"
ROUTE = "route"
ACTIONS = (BLACKLIST, VIP, ROUTE)
# RFC 3261 §21.4.24 486 Busy Here (the caller may try later) and §21.6.2 603 Decline (the callee
# does not want to talk, do not retry).
REPLY_STATUS = {"busy": 486, "reject": 603}
DEFAULT_REPLY = "busy"
NUMBER_DIGITS_MAX = 15  # E.164
RUSSIAN_NUMBER_DIGITS = 11

_SEPARATORS = re.compile(r"[\s()\-]")
_PATTERN_CLASS = re.compile(r"\[((?:\d-\d|\d)+)\]")
_PATTERN_LETTERS = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}


class RuleSyntaxError(ValueError):
    """A rule's match, action, reply, destination or time window is malformed."""


def normalise_number(number: str) -> str:
    """The digits callers and rules are compared by; see the module docstring."""
    digits = _SEPARATORS.sub("", number)
    if digits.startswith("+"):
        return digits[1:]
    if len(digits) == RUSSIAN_NUMBER_DIGITS and digits.startswith("8"):
        return "7" + digits[1:]
    return digits


def _trunk_forms(number: str) -> tuple[str, ...]:
    """`number` and, for an 11-digit number starting with 7, its 8... form too."""
    if len(number) == RUSSIAN_NUMBER_DIGITS and number.startswith("7"):
        return (number, "8" + number[1:])
    return (number,)


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


@dataclass(frozen=True, slots=True)
class _Matcher:
    kind: str  # "exact", "prefix", "international_prefix" or "pattern"
    key: str  # the normalised number or prefix; the source of the regex for a pattern
    regex: re.Pattern[str] | None = None


def _compile_match(match: str) -> _Matcher:
    if match.startswith("_"):
        return _Matcher("pattern", match, re.compile(_pattern_regex(match)))
    if match.endswith("*"):
        body = _SEPARATORS.sub("", match[:-1])
        international = body.startswith("+")
        digits = body[1:] if international else body
        if not (_is_digits(digits) and len(digits) <= NUMBER_DIGITS_MAX):
            raise RuleSyntaxError(
                f'a prefix must be 1 to {NUMBER_DIGITS_MAX} digits before "*", got "{match}"'
            )
        return _Matcher("international_prefix" if international else "prefix", digits)
    number = normalise_number(match)
    if not (_is_digits(number) and len(number) <= NUMBER_DIGITS_MAX):
        raise RuleSyntaxError(
            f"must be a number of 1 to {NUMBER_DIGITS_MAX} digits, a prefix ending in \"*\" or "
            f'a pattern starting with "_", got "{match}"'
        )
    return _Matcher("exact", number)


def _pattern_regex(pattern: str) -> str:
    """Translate an Asterisk extension pattern ("_7495XXXXXXX") into a regular expression."""
    parts: list[str] = []
    position = 1
    while position < len(pattern):
        char = pattern[position]
        if char.isascii() and char.isdigit():
            parts.append(char)
        elif char.upper() in _PATTERN_LETTERS:
            parts.append(_PATTERN_LETTERS[char.upper()])
        elif char == "[":
            found = _PATTERN_CLASS.match(pattern, position)
            if found is None:
                raise RuleSyntaxError(
                    f'a class must be digits or ranges of digits in brackets, like [1-5] or '
                    f'[13579], at position {position + 1} of "{pattern}"'
                )
            for low, high in re.findall(r"(\d)-(\d)", found.group(1)):
                if low > high:
                    raise RuleSyntaxError(f'range {low}-{high} is backwards in "{pattern}"')
            parts.append(found.group(0))
            position = found.end()
            continue
        elif char == ".":
            if position != len(pattern) - 1:
                raise RuleSyntaxError(f'"." may only end a pattern, in "{pattern}"')
            parts.append(".+")
        elif char in " -":
            pass  # readability separators, as in numbers: "_7 495 XXX-XX-XX"
        else:
            raise RuleSyntaxError(
                f'unexpected "{char}" at position {position + 1} of "{pattern}" (allowed: '
                "digits, X, Z, N, [classes] and a final \".\"; numbers are compared without \"+\")"
            )
        position += 1
    if not parts:
        raise RuleSyntaxError(f'a pattern needs something after "_", got "{pattern}"')
    return "".join(parts)


def check_match(match: str) -> None:
    """Raise `RuleSyntaxError` unless `match` is a valid exact number, prefix or pattern."""
    _compile_match(match)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerRule:
    """One caller rule; `hours` and `weekdays` (0 = Monday) limit when it applies, in the site's
    time zone — a range belongs to the weekday it starts on and may cross midnight."""

    match: str
    action: str
    to: str | None = None
    reply: str = DEFAULT_REPLY
    hours: tuple[TimeRange, ...] | None = None
    weekdays: frozenset[int] | None = None

    def __post_init__(self) -> None:
        check_match(self.match)
        if self.action not in ACTIONS:
            raise RuleSyntaxError(
                f'unknown action "{self.action}" (allowed: {", ".join(ACTIONS)})'
            )
        if self.reply not in REPLY_STATUS:
            raise RuleSyntaxError(
                f'unknown reply "{self.reply}" (allowed: {", ".join(REPLY_STATUS)})'
            )
        if self.action != BLACKLIST and self.reply != DEFAULT_REPLY:
            raise RuleSyntaxError("a reply is only given by blacklist rules")
        if self.action == BLACKLIST and self.to is not None:
            raise RuleSyntaxError("a blacklist rule sends the call nowhere; it takes no `to`")
        if self.action == ROUTE and self.to is None:
            raise RuleSyntaxError("a route rule needs `to`")
        if self.to is not None and not _is_digits(
                self.to.removeprefix("+").removeprefix(VOICEMAIL_PREFIX)):
            raise RuleSyntaxError(f'`to` must be a number or voicemail:NUMBER, got "{self.to}"')
        if self.action == VIP and self.to is not None and self.to.startswith(VOICEMAIL_PREFIX):
            raise RuleSyntaxError("a VIP goes to a person or a department, not to voicemail")
        if self.hours is not None:
            if not self.hours:
                raise RuleSyntaxError("hours must list at least one range (or be left out)")
            try:
                week = normalise_weekly_hours({0: self.hours})
            except ScheduleError as error:
                raise RuleSyntaxError(str(error)) from error
            object.__setattr__(self, "hours", week[0])
        if self.weekdays is not None:
            weekdays = frozenset(self.weekdays)
            if not weekdays:
                raise RuleSyntaxError("weekdays must list at least one day (or be left out)")
            if not weekdays <= frozenset(range(DAYS_PER_WEEK)):
                raise RuleSyntaxError(f"weekdays must be 0 (Monday) to 6 (Sunday), got {weekdays}")
            object.__setattr__(self, "weekdays", weekdays)


def reply_status(rule: CallerRule) -> int:
    """The SIP status a blacklist rule refuses with: 486 for "busy", 603 for "reject"."""
    return REPLY_STATUS[rule.reply]


def _window(rule: CallerRule) -> WeeklyHours | None:
    """The rule's time window as a week of opening hours; None when it always applies."""
    if rule.hours is None and rule.weekdays is None:
        return None
    hours = rule.hours or ((0, MINUTES_PER_DAY),)
    weekdays = range(DAYS_PER_WEEK) if rule.weekdays is None else sorted(rule.weekdays)
    return {weekday: hours for weekday in weekdays}


class CompiledRules:
    """Caller rules indexed for matching: exact numbers and prefixes by dict, patterns as
    compiled regular expressions. Build once per configuration, then `match` per call."""

    def __init__(self, rules: Iterable[CallerRule]) -> None:
        self.rules: tuple[CallerRule, ...] = tuple(rules)
        self._exact: dict[str, list[int]] = {}
        self._prefixes: dict[str, list[int]] = {}
        self._international_prefixes: dict[str, list[int]] = {}
        self._patterns: list[tuple[int, re.Pattern[str]]] = []
        self._windows: list[WeeklyHours | None] = [_window(rule) for rule in self.rules]
        for index, rule in enumerate(self.rules):
            matcher = _compile_match(rule.match)
            if matcher.kind == "exact":
                self._exact.setdefault(matcher.key, []).append(index)
            elif matcher.kind == "prefix":
                self._prefixes.setdefault(matcher.key, []).append(index)
            elif matcher.kind == "international_prefix":
                self._international_prefixes.setdefault(matcher.key, []).append(index)
            else:
                assert matcher.regex is not None
                self._patterns.append((index, matcher.regex))

    def match(self, caller: str, now_utc: float, timezone: str) -> CallerRule | None:
        """The first rule, in configured order, that matches `caller` and applies at `now_utc`
        (Unix seconds) on the wall clock of `timezone`; None when no rule does."""
        number = normalise_number(caller)
        if not _is_digits(number):
            return None
        forms = _trunk_forms(number)
        hits = set(self._exact.get(number, ()))
        for form in forms:
            hits.update(_prefix_hits(self._prefixes, form))
        hits.update(_prefix_hits(self._international_prefixes, number))
        for index, regex in self._patterns:
            if any(regex.fullmatch(form) for form in forms):
                hits.add(index)
        local: dt.datetime | None = None
        for index in sorted(hits):
            window = self._windows[index]
            if window is None:
                return self.rules[index]
            if local is None:
                local = dt.datetime.fromtimestamp(now_utc, load_zone(timezone))
            if within_weekly_hours(window, local):
                return self.rules[index]
        return None


def _prefix_hits(prefixes: dict[str, list[int]], number: str) -> Iterable[int]:
    for length in range(1, len(number) + 1):
        yield from prefixes.get(number[:length], ())


def compile_rules(rules: Iterable[CallerRule]) -> CompiledRules:
    return CompiledRules(rules)


def match_caller(
    rules: CompiledRules | Iterable[CallerRule], caller: str, now_utc: float, timezone: str
) -> CallerRule | None:
    """The first of `rules` matching `caller` at `now_utc` in `timezone`, or None.

    Pass a `CompiledRules` on the call path; a plain sequence is compiled on every call.
    """
    compiled = rules if isinstance(rules, CompiledRules) else CompiledRules(rules)
    return compiled.match(caller, now_utc, timezone)
