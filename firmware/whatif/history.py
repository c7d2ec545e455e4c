"""A department's recorded past, as the what-if replay needs it, read from the box's records.

The replay takes arrivals (when each caller came, who they were, whether they were a target
call and bought), the members' recorded behaviour (every ring of every member's phone: how long
it rang and whether they answered — from the call legs), who was On line when (the status
log), when members were busy with calls of their own (outbound and internal calls), and how
long each answered call was talked. Everything here is plain data; `load_history` is the only
function that reads the database, and it runs once per replay request, outside the daemon.

Times are Unix seconds, as the records keep them; hours of the day (for answer behaviour by
hour) are the site's local hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from ..routing.model import ON_LINE
from ..store import Store
from ..store.config import Config, Department

# The caller hung up before anyone answered: in the queue (outcome "abandoned"), or while the
# members' phones rang (outcome "missed", with the cause the core gives a CANCEL — calls.py).
ABANDONED_OUTCOMES = frozenset({"abandoned", "cancelled"})
CALLER_GAVE_UP_CAUSES = frozenset({"caller cancelled", "caller hung up in the queue"})
# Outcomes of calls that never reached the members (the number's channels were full, a caller
# rule, the schedule): offered traffic for sizing, but not replayed through the department.
REFUSED_OUTCOMES = frozenset({"over_capacity", "blacklisted", "closed", "busy"})


@dataclass(frozen=True, slots=True)
class Ring:
    """One member's phone ringing for one call: for `rang_s`, answered or not."""

    extension: str
    hour: int  # local hour of day the ring started
    rang_s: float
    answered: bool


@dataclass(frozen=True, slots=True)
class RecordedCall:
    id: str
    at: float  # Unix seconds the call reached the box
    caller: str
    number: str | None
    outcome: str
    end_cause: str
    answered_at: float | None
    ended_at: float | None
    talk_s: float | None
    answered_by: str | None
    target_call: bool
    sale: bool
    by_member: bool  # answered by a member of the department (not after the no-answer action)

    @property
    def answered(self) -> bool:
        return self.by_member and self.outcome == "answered"

    @property
    def abandoned(self) -> bool:
        return self.outcome in ABANDONED_OUTCOMES or (
            self.answered_at is None and self.end_cause in CALLER_GAVE_UP_CAUSES)

    @property
    def abandoned_in_queue(self) -> bool:
        return self.outcome == "abandoned"

    @property
    def waited_s(self) -> float:
        """From arrival to the answer, or to the end when nobody answered."""
        end = self.answered_at if self.answered_at is not None else self.ended_at
        return max(0.0, end - self.at) if end is not None else 0.0


@dataclass(frozen=True, slots=True)
class StatusChange:
    extension: str
    at: float
    status: str


@dataclass(frozen=True, slots=True)
class BusySpan:
    """A member on a call of their own (not an offer of the department's): not available."""

    extension: str
    start: float
    end: float


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    config: Config
    department: Department
    since: float
    until: float
    tz: tzinfo
    calls: tuple[RecordedCall, ...]
    rings: tuple[Ring, ...]
    initial_status: dict[str, str] = field(default_factory=dict)  # at `since`
    status_changes: tuple[StatusChange, ...] = ()  # in time order
    busy: tuple[BusySpan, ...] = ()

    def hour_of(self, at: float) -> int:
        return datetime.fromtimestamp(at, self.tz).hour


class HistoryError(ValueError):
    """The period or the department cannot be replayed (unknown department, empty period)."""


def load_history(store: Store, department: str, since: float, until: float, *,
                 tz: tzinfo, config: Config | None = None) -> History:
    """The recorded past of `department` for calls that started in [since, until)."""
    if until <= since:
        raise HistoryError("the period ends before it starts")
    config = config if config is not None else store.load_config()
    found = next((d for d in config.departments if d.number == department), None)
    if found is None:
        raise HistoryError(f"no department {department}")
    members = [m.extension for m in found.members]
    db = store.db
    rows = list(db.query(
        "SELECT id, started_at, caller, number, outcome, end_cause, answered_at, ended_at,"
        " talk_s, answered_by, target_call, sale FROM calls WHERE department = ?"
        " AND direction != 'callback' AND started_at >= ? AND started_at < ?"
        " ORDER BY started_at, id",
        [department, since, until]))
    calls = tuple(_recorded_call(row, frozenset(members)) for row in rows)

    def hour(at: float) -> int:
        return datetime.fromtimestamp(at, tz).hour

    rings = []
    for leg in db.query(
        "SELECT l.target, l.started_at, l.answered_at, l.ended_at, l.result FROM call_legs l"
        " JOIN calls c ON c.id = l.call_id WHERE c.department = ? AND c.started_at >= ?"
        " AND c.started_at < ? ORDER BY l.started_at",
        [department, since, until],
    ):
        if leg["target"] not in members or leg["started_at"] is None:
            continue
        answered = leg["result"] == "answered" and leg["answered_at"] is not None
        end = leg["answered_at"] if answered else leg["ended_at"]
        if end is None:
            continue
        rings.append(Ring(extension=leg["target"], hour=hour(leg["started_at"]),
                          rang_s=max(0.0, float(end) - float(leg["started_at"])),
                          answered=answered))

    placeholders = ", ".join("?" for _ in members)
    initial: dict[str, str] = {}
    changes: list[StatusChange] = []
    if members:
        for row in db.query(
            f"SELECT extension, status, at FROM agent_status_log WHERE extension IN"
            f" ({placeholders}) AND at < ? ORDER BY at, id", [*members, until]):
            if row["at"] < since:
                initial[row["extension"]] = row["status"]
            else:
                changes.append(StatusChange(row["extension"], float(row["at"]), row["status"]))
    for extension in members:
        initial.setdefault(extension, ON_LINE)

    busy = []
    if members:
        for row in db.query(
            f"SELECT caller, answered_at, ended_at FROM calls WHERE caller IN ({placeholders})"
            " AND direction IN ('outbound', 'internal') AND answered_at IS NOT NULL"
            " AND ended_at IS NOT NULL AND started_at >= ? AND started_at < ?",
            [*members, since, until]):
            busy.append(BusySpan(row["caller"], float(row["answered_at"]),
                                 float(row["ended_at"])))
    busy.sort(key=lambda span: span.start)
    return History(config=config, department=found, since=since, until=until, tz=tz,
                   calls=calls, rings=tuple(rings), initial_status=initial,
                   status_changes=tuple(changes), busy=tuple(busy))


def _recorded_call(row: dict[str, Any], members: frozenset[str]) -> RecordedCall:
    def optional(key: str) -> float | None:
        value = row[key]
        return None if value is None else float(value)

    return RecordedCall(
        id=str(row["id"]), at=float(row["started_at"]), caller=str(row["caller"]),
        number=row["number"], outcome=str(row["outcome"] or "missed"),
        end_cause=str(row["end_cause"] or ""), answered_at=optional("answered_at"),
        ended_at=optional("ended_at"), talk_s=optional("talk_s"),
        answered_by=row["answered_by"], target_call=bool(row["target_call"]),
        sale=bool(row["sale"]), by_member=row["answered_by"] in members,
    )
