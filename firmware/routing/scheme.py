"""A department's queue and its no-answer scheme: parsed from configuration, used by the B2BUA.

`queue` says how long callers may wait for a free member and how many may wait at once.
`no_answer` is what happens when the department does not answer in time: an ordered list of
steps, each a destination (another department, an employee, or an external number through the
provider) with its own ring time, plus a reserve number used at once when every member is
offline. The short forms `{action: transfer, to: "201"}`, `{action: forward, to: "7916..."}`
and `{action: voicemail}` are one-step schemes. `mobiles` rings the members' mobile phones
(each employee's `mobile`) at once through the provider. Voicemail is a destination like the others,
written `voicemail` (the department's own mailbox) or `voicemail:101` (that employee's or
department's mailbox); the box answers and records, so it can only be the last step.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

DEFAULT_STEP_TIME_S = 30
DEFAULT_MAX_CALLERS = 10
DEFAULT_MAX_WAIT_S = 300
DEFAULT_RETRY_S = 5
DEFAULT_ANNOUNCE_S = 30
MIN_ANNOUNCE_S = 10
DEFAULT_CALLBACK_KEY = "1"
DEFAULT_CALLBACK_ATTEMPTS = 3
DEFAULT_CALLBACK_RETRY_S = 120
# The member has answered and waits, unACKed, while the customer's phone rings (RFC 3725 §4
# flow I): the member's phone gives up on our ACK after 64*T1 = 32 s (RFC 3261 §13.3.1.4), so
# the customer may ring at most a little less.
MAX_CALLBACK_CUSTOMER_RING_S = 25
DTMF_KEYS = frozenset("0123456789*#")
VOICEMAIL = "voicemail"
VOICEMAIL_PREFIX = "voicemail:"
MOBILES = "mobiles"  # the department members' mobile phones, all at once
MOBILES_PREFIX = "mobiles:"


def mobiles_of(destination: str) -> str | None:
    """The department whose members' mobiles a `mobiles:NNN` destination rings."""
    return destination.removeprefix(MOBILES_PREFIX) if destination.startswith(
        MOBILES_PREFIX) else None


def voicemail_box(destination: str) -> str | None:
    """The mailbox a `voicemail:NNN` destination names; None for any other destination."""
    return destination.removeprefix(VOICEMAIL_PREFIX) if destination.startswith(
        VOICEMAIL_PREFIX) else None


class SchemeError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackSettings:
    """A waiting caller may press `key` to be called back instead of waiting on the line; the
    request keeps their place in the queue until `expire_s` after they first came in."""

    key: str = DEFAULT_CALLBACK_KEY
    expire_s: int = DEFAULT_MAX_WAIT_S
    customer_ring_s: int = MAX_CALLBACK_CUSTOMER_RING_S
    attempts: int = DEFAULT_CALLBACK_ATTEMPTS  # tries to reach the customer
    retry_s: int = DEFAULT_CALLBACK_RETRY_S  # between tries
    apology: bool = True  # when the request expires, call to apologise and offer voicemail


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSettings:
    max_callers: int = DEFAULT_MAX_CALLERS
    max_wait_s: int = DEFAULT_MAX_WAIT_S
    retry_s: int = DEFAULT_RETRY_S  # how often a waiting caller is offered again
    callback: CallbackSettings | None = None
    # Early media while waiting: ringback, the position and the callback offer every
    # announce_s seconds; 0: plain ringing (180), keys only as SIP INFO.
    announce_s: int = DEFAULT_ANNOUNCE_S


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    to: str  # a department or extension number, or an external number
    time_s: int = DEFAULT_STEP_TIME_S


@dataclass(frozen=True, slots=True, kw_only=True)
class NoAnswerScheme:
    steps: tuple[Step, ...] = ()
    reserve: str | None = None


def _int(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemeError(path, f"must be a whole number from {low} to {high}")
    if not low <= value <= high:
        raise SchemeError(path, f"must be between {low} and {high}, got {value}")
    return value


def _mapping(value: object, path: str, allowed: set[str]) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise SchemeError(path, "must be a mapping")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise SchemeError(
            f"{path}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})"
        )
    return value


def parse_queue(value: object, path: str) -> QueueSettings:
    data = _mapping(value, path, {"max_callers", "max_wait_s", "retry_s", "callback",
                                  "announce_s"})
    raw_announce = data.get("announce_s", DEFAULT_ANNOUNCE_S)
    announce_s = 0 if raw_announce == 0 and not isinstance(raw_announce, bool) else _int(
        raw_announce, f"{path}.announce_s", MIN_ANNOUNCE_S, 600)
    max_wait_s = _int(data.get("max_wait_s", DEFAULT_MAX_WAIT_S), f"{path}.max_wait_s",
                      10, 3600)
    return QueueSettings(
        max_callers=_int(data.get("max_callers", DEFAULT_MAX_CALLERS), f"{path}.max_callers",
                         1, 100),
        max_wait_s=max_wait_s,
        retry_s=_int(data.get("retry_s", DEFAULT_RETRY_S), f"{path}.retry_s", 1, 60),
        callback=_callback(data.get("callback", False), f"{path}.callback", max_wait_s),
        announce_s=announce_s,
    )


def _callback(value: object, path: str, max_wait_s: int) -> CallbackSettings | None:
    """`callback: true` (the defaults), `false`, or a mapping of the settings."""
    if value is False or value is None:
        return None
    if value is True:
        return CallbackSettings(expire_s=max_wait_s)
    data = _mapping(value, path, {"key", "expire_s", "customer_ring_s", "attempts", "retry_s",
                                  "apology"})
    apology = data.get("apology", True)
    if not isinstance(apology, bool):
        raise SchemeError(f"{path}.apology", "must be true or false")
    key = data.get("key", DEFAULT_CALLBACK_KEY)
    if not isinstance(key, str) or key not in DTMF_KEYS:
        raise SchemeError(f"{path}.key", "must be one phone key: 0-9, * or # (in quotes)")
    return CallbackSettings(
        key=key,
        expire_s=_int(data.get("expire_s", max_wait_s), f"{path}.expire_s", 60, 24 * 3600),
        customer_ring_s=_int(data.get("customer_ring_s", MAX_CALLBACK_CUSTOMER_RING_S),
                             f"{path}.customer_ring_s", 5, MAX_CALLBACK_CUSTOMER_RING_S),
        attempts=_int(data.get("attempts", DEFAULT_CALLBACK_ATTEMPTS), f"{path}.attempts",
                      1, 10),
        retry_s=_int(data.get("retry_s", DEFAULT_CALLBACK_RETRY_S), f"{path}.retry_s",
                     10, 3600),
        apology=apology,
    )


def parse_no_answer(
    value: object, path: str, *, is_destination: Callable[[str], bool], mailbox: str = "",
    mailboxes: Collection[str] = (),
) -> NoAnswerScheme:
    """`is_destination(text)` says whether `text` names an extension, a department or a
    dialable external number; `mailbox` is the department's own (plain `voicemail`), and
    `mailboxes` every extension and department number (`voicemail:NNN`)."""
    def destination(to: object, at: str) -> str:
        return _destination(to, at, is_destination, mailbox, mailboxes)

    data = _mapping(value, path, {"action", "to", "time_s", "steps", "reserve"})
    if "action" in data:
        if "steps" in data:
            raise SchemeError(path, "give either action/to or steps, not both")
        action = data["action"]
        if action not in ("transfer", "forward", VOICEMAIL):
            raise SchemeError(f"{path}.action", "must be transfer, forward or voicemail")
        to = data.get("to")
        if action == VOICEMAIL:
            to = VOICEMAIL if to is None else f"{VOICEMAIL_PREFIX}{to}"
        steps: tuple[Step, ...] = (
            _step({"to": to, "time_s": data.get("time_s", DEFAULT_STEP_TIME_S)},
                  path, destination),
        )
    else:
        raw_steps = data.get("steps", [])
        if not isinstance(raw_steps, list):
            raise SchemeError(f"{path}.steps", "must be a list")
        steps = tuple(_step(item, f"{path}.steps[{i}]", destination)
                      for i, item in enumerate(raw_steps))
        for i, step in enumerate(steps[:-1]):
            if voicemail_box(step.to) is not None:
                raise SchemeError(f"{path}.steps[{i}].to",
                                  "voicemail answers the call, so it must be the last step")
    reserve = data.get("reserve")
    if reserve is not None:
        if not isinstance(reserve, str):
            raise SchemeError(f"{path}.reserve", f"unknown destination {reserve!r}")
        reserve = destination(reserve, f"{path}.reserve")
    return NoAnswerScheme(steps=steps, reserve=reserve)


def _destination(to: object, path: str, is_destination: Callable[[str], bool],
                 mailbox: str, mailboxes: Collection[str]) -> str:
    if to == VOICEMAIL and mailbox:
        return f"{VOICEMAIL_PREFIX}{mailbox}"
    if to == MOBILES and mailbox:
        return f"{MOBILES_PREFIX}{mailbox}"
    box = voicemail_box(to) if isinstance(to, str) else None
    if box is not None:
        if box not in mailboxes:
            raise SchemeError(path, f"unknown mailbox {box!r} (an extension or department "
                                    "number)")
        return str(to)
    if not isinstance(to, str) or not is_destination(to):
        raise SchemeError(path, f"unknown destination {to!r} (an extension, a department, an "
                                "external number in quotes, mobiles or voicemail)")
    return to


def _step(value: object, path: str, destination: Callable[[object, str], str]) -> Step:
    data = _mapping(value, path, {"to", "time_s"})
    to = destination(data.get("to"), f"{path}.to")
    return Step(to=to, time_s=_int(data.get("time_s", DEFAULT_STEP_TIME_S), f"{path}.time_s",
                                   5, 600))


@dataclass(frozen=True, slots=True, kw_only=True)
class DepartmentSettings:
    """A department's routing settings as the configuration gives them, parsed once when the
    configuration is read. Each default here is the only one: the ring plan's snapshot and the
    web UI's form take theirs from `DEPARTMENT_DEFAULTS`."""

    queue: QueueSettings | None = None
    no_answer: NoAnswerScheme = NoAnswerScheme()
    step_delay_s: float = 5.0  # cascading: a new phone joins every step_delay_s
    tier_time_s: float = 15.0  # tiers: how long a tier rings before the next joins
    tier_mode: str = "add"  # tiers: "add" keeps earlier tiers ringing, "replace" stops them
    rank_mode: str = "manual"  # by_rank: "manual" or "auto" (from conversion)
    sticky: str = "none"  # "none", "last_agent" or "crm_owner"
    sticky_ring_s: float = 10.0  # sticky overlays: how long the sticky member rings alone
    wrap_up_s: float = 0.0  # after-call work before the next offer
    auto_break_after: int = 0  # offers rung out in a row that put an agent on a break; 0 never


DEPARTMENT_DEFAULTS = DepartmentSettings()


def parse_department_settings(
    number: str, extra: Mapping[str, object], path: str, *,
    is_destination: Callable[[str], bool], mailboxes: Collection[str] = (),
) -> DepartmentSettings:
    """The settings of department `number` from its configured keys (`extra`), defaults for
    the rest; the configuration checks the knobs' ranges first, naming their keys."""
    defaults = DEPARTMENT_DEFAULTS
    queue = parse_queue(extra["queue"], f"{path}.queue") if "queue" in extra else None
    no_answer = (
        parse_no_answer(extra["no_answer"], f"{path}.no_answer", is_destination=is_destination,
                        mailbox=number, mailboxes=mailboxes)
        if "no_answer" in extra else defaults.no_answer
    )

    def number_of(key: str, default: float) -> float:
        value = extra.get(key, default)
        return float(value) if isinstance(value, int | float) else default

    return DepartmentSettings(
        queue=queue, no_answer=no_answer,
        step_delay_s=number_of("step_delay_s", defaults.step_delay_s),
        tier_time_s=number_of("tier_time_s", defaults.tier_time_s),
        tier_mode=str(extra.get("tier_mode", defaults.tier_mode)),
        rank_mode="auto" if extra.get("rank") == "auto" else defaults.rank_mode,
        sticky=str(extra.get("sticky", defaults.sticky)),
        sticky_ring_s=number_of("sticky_ring_s", defaults.sticky_ring_s),
        wrap_up_s=number_of("wrap_up_s", defaults.wrap_up_s),
        auto_break_after=int(number_of("auto_break_after", defaults.auto_break_after)),
    )
