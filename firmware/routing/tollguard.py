"""The toll guard: which external numbers a phone may call, and how many calls an hour.

Toll fraud is the costly end of a stolen SIP password (issue 9 item 2): whoever holds a phone's
credentials calls premium numbers abroad on the office's bill, as many at once as the trunk
takes. So a phone's INVITE to an external number passes two checks before it reaches the
provider. `classify` sorts the dialled number into a class — local, mobile, long distance or
international — by the site's dial plan (the shapes of Russian numbers by default: `8 9xx…`
and `+7 9xx…` mobile, `8 xxx…` and `+7 xxx…` long distance, `8 10…`, `00…` and `+` with
another country code international, a short number local), and each extension is allowed
classes up to its `outbound` permission (international off by default). A number the plan does
not recognise counts as international, the strictest class. Then sliding windows count the
calls let through in the last hour, per extension and for the whole box. Emergency numbers are
always let through and never counted.

Pure: `now` is passed in; the gateway replies and records what `TollGuard.admit` returns. A
refusal is logged (WARNING) and handed back as an event to record at most once a minute per
extension and kind, with the number of those not reported meanwhile, so someone hammering the
guard with a stolen password fills neither the log nor the database.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware.store.config import Config

LOGGER = logging.getLogger(__name__)

# Number classes, from the cheapest; an extension's permission is the dearest class it may call.
INTERNAL = "internal"  # no external calls at all (as a permission only)
LOCAL = "local"
MOBILE = "mobile"
LONG_DISTANCE = "long_distance"
INTERNATIONAL = "international"
OUTBOUND_CLASSES = (INTERNAL, LOCAL, MOBILE, LONG_DISTANCE, INTERNATIONAL)
EMERGENCY = "emergency"  # a class of numbers, never refused: not a permission

DEFAULT_OUTBOUND = LONG_DISTANCE
DEFAULT_EXTENSION_CALLS_PER_HOUR = 30
DEFAULT_BOX_CALLS_PER_HOUR = 100
CALLS_PER_HOUR_MAX = 100_000
WINDOW_S = 3600.0
# A refusal of the same kind for the same extension is reported (logged and recorded) at most
# this often; the next report says how many went unreported.
REPORT_INTERVAL_S = 60.0

# Why a call was refused: the kinds of security events the web UI lists.
NOT_ALLOWED = "outbound_not_allowed"
EXTENSION_LIMIT = "outbound_extension_limit"
BOX_LIMIT = "outbound_box_limit"
REFUSAL_KINDS = (NOT_ALLOWED, EXTENSION_LIMIT, BOX_LIMIT)

# RFC 3261 §21.4.4: 403 Forbidden, "the server understood the request, but is refusing to
# fulfill it ... the request SHOULD NOT be repeated"; the reason phrase, which phones display,
# says why. A limit is a 403 too, not a 503: a 503 invites a retry elsewhere (§21.5.4).
FORBIDDEN = 403
NOT_ALLOWED_REASONS = {  # by the class dialled, or INTERNAL for an extension allowed none
    INTERNAL: "Forbidden (external calls not allowed)",
    MOBILE: "Forbidden (calls to mobiles not allowed)",
    LONG_DISTANCE: "Forbidden (long-distance calls not allowed)",
    INTERNATIONAL: "Forbidden (international calls not allowed)",
}
LIMIT_REASONS = {
    EXTENSION_LIMIT: "Forbidden (hourly limit of external calls reached)",
    BOX_LIMIT: "Forbidden (the office's hourly limit of external calls reached)",
}

RUSSIAN_EMERGENCY_NUMBERS = ("112", "101", "102", "103", "104", "01", "02", "03", "04")


@dataclass(frozen=True, kw_only=True)
class DialPlan:
    """How numbers are written where the box is (`site` keys of the same names).

    A national number is `national_number_digits` long after the trunk prefix ("8") or the
    country code ("+7", or "7" without the plus); it is local, mobile or long distance by how it
    begins. The defaults are Russia's: Kazakhstan shares +7 (its numbers begin with 6 and 7),
    8-800 numbers are free to call.
    """

    country_code: str = "7"
    trunk_prefix: str = "8"
    international_prefixes: tuple[str, ...] = ("810", "00")
    national_number_digits: int = 10
    mobile_prefixes: tuple[str, ...] = ("9",)
    local_prefixes: tuple[str, ...] = ("800",)  # the office's own area codes belong here too
    foreign_prefixes: tuple[str, ...] = ("6", "7")  # national numbers of another country
    local_number_digits: int = 7  # a number this short, dialled as it is, is a local one
    emergency_numbers: tuple[str, ...] = RUSSIAN_EMERGENCY_NUMBERS


def classify(number: str, plan: DialPlan) -> str:
    """The class of a dialled external number: EMERGENCY, LOCAL, MOBILE, LONG_DISTANCE or
    INTERNATIONAL (also for anything the plan does not recognise: the strictest class)."""
    if number in plan.emergency_numbers:
        return EMERGENCY
    if number.startswith("+"):
        digits = number[1:]
        if digits.startswith(plan.country_code):
            return _national(digits[len(plan.country_code):], plan)
        return INTERNATIONAL
    if not (number.isascii() and number.isdigit()):
        return INTERNATIONAL  # * or # among the digits: no number of the plan
    if any(number.startswith(prefix) for prefix in plan.international_prefixes):
        return INTERNATIONAL
    for prefix in (plan.trunk_prefix, plan.country_code):
        if prefix and number.startswith(prefix) and (
            len(number) == len(prefix) + plan.national_number_digits
        ):
            return _national(number[len(prefix):], plan)
    if len(number) == plan.national_number_digits:
        return _national(number, plan)
    if len(number) <= plan.local_number_digits:
        return LOCAL
    return INTERNATIONAL


def _national(digits: str, plan: DialPlan) -> str:
    if not (digits.isascii() and digits.isdigit()) or (
        len(digits) != plan.national_number_digits
    ):
        return INTERNATIONAL
    if any(digits.startswith(prefix) for prefix in plan.foreign_prefixes):
        return INTERNATIONAL
    if any(digits.startswith(prefix) for prefix in plan.local_prefixes):
        return LOCAL
    if any(digits.startswith(prefix) for prefix in plan.mobile_prefixes):
        return MOBILE
    return LONG_DISTANCE


def allows(permission: str, number_class: str) -> bool:
    """Whether an extension allowed `permission` may call a number of `number_class`."""
    if number_class == EMERGENCY:
        return True
    return OUTBOUND_CLASSES.index(number_class) <= OUTBOUND_CLASSES.index(permission)


class SlidingWindow:
    """The events of the last `window_s` seconds, kept as their times (at most as many as the
    limit lets through, so memory is bounded by the configuration)."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def count(self, now: float) -> int:
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        return len(self._times)

    def add(self, now: float) -> None:
        self._times.append(now)


@dataclass(frozen=True, kw_only=True)
class OutboundCallRefused:
    """A phone's external call stopped by the guard (a security event for the web UI).

    `repeated`: refusals of the same kind for the same extension since the last one reported,
    which were not reported on their own.
    """

    at: float
    kind: str  # one of REFUSAL_KINDS
    extension: str
    number: str
    number_class: str
    repeated: int = 0


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """What to answer the phone; `event` is None while this kind was reported a moment ago."""

    status: int
    reason: str
    event: OutboundCallRefused | None


class TollGuard:
    """Admits or refuses the external calls phones dial; one per gateway, kept across
    configuration changes (a saved configuration does not reset the hour's count)."""

    def __init__(self) -> None:
        self._box = SlidingWindow()
        self._extensions: dict[str, SlidingWindow] = {}
        # (extension, kind) → when it was last reported, refusals since.
        self._reported: dict[tuple[str, str], tuple[float, int]] = {}

    def admit(self, config: Config, extension: str, number: str, now: float) -> Refusal | None:
        """None to let `extension`'s call to the external `number` go out (it is counted);
        else the refusal to answer."""
        plan = config.site.dial_plan
        number_class = classify(number, plan)
        if number_class == EMERGENCY:
            return None
        account = next((e for e in config.extensions if e.number == extension), None)
        permission = account.outbound if account is not None else INTERNAL
        if not allows(permission, number_class):
            reason = NOT_ALLOWED_REASONS[INTERNAL if permission == INTERNAL else number_class]
            return self._refuse(NOT_ALLOWED, reason, extension, number, number_class, now)
        window = self._extensions.get(extension)
        if window is None:
            self._forget_removed(config)
            window = self._extensions[extension] = SlidingWindow()
        limit = account.external_calls_per_hour if account is not None else 0
        if window.count(now) >= limit:
            return self._refuse(EXTENSION_LIMIT, LIMIT_REASONS[EXTENSION_LIMIT], extension,
                                number, number_class, now)
        if self._box.count(now) >= config.security.external_calls_per_hour:
            return self._refuse(BOX_LIMIT, LIMIT_REASONS[BOX_LIMIT], extension, number,
                                number_class, now)
        window.add(now)
        self._box.add(now)
        return None

    def _forget_removed(self, config: Config) -> None:
        # Bounded by the configuration: windows of extensions no longer configured go.
        configured = {e.number for e in config.extensions}
        for extension in [e for e in self._extensions if e not in configured]:
            del self._extensions[extension]
        for key in [k for k in self._reported if k[0] not in configured]:
            del self._reported[key]

    def _refuse(self, kind: str, reason: str, extension: str, number: str, number_class: str,
                now: float) -> Refusal:
        last = self._reported.get((extension, kind))
        if last is not None and now - last[0] < REPORT_INTERVAL_S:
            self._reported[(extension, kind)] = (last[0], last[1] + 1)
            return Refusal(status=FORBIDDEN, reason=reason, event=None)
        repeated = 0 if last is None else last[1]
        self._reported[(extension, kind)] = (now, 0)
        LOGGER.warning(
            "external call refused: extension %s dialled %s (%s): %s%s", extension, number,
            number_class.replace("_", " "), reason,
            f"; {repeated} more refused since the last report" if repeated else "",
        )
        event = OutboundCallRefused(at=now, kind=kind, extension=extension, number=number,
                                    number_class=number_class, repeated=repeated)
        return Refusal(status=FORBIDDEN, reason=reason, event=event)
