"""The seam between a call and its parties (firmware/legs.py): a call rings any `Leg` and
answers any `CallerParty`, knowing neither's protocol. The legs here are a line of their own
kind — what a GSM or FXO line will be — driven by hand; time is stepped."""

from __future__ import annotations

import ast
import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from firmware.calls import Call, CallInfo, CallState
from firmware.legs import (
    LEG_TRANSITIONS,
    CallerParty,
    Leg,
    LegAnswered,
    LegEnded,
    LegFailed,
    LegListener,
    LegRecord,
    LegRinging,
    LegSetup,
    LegState,
    SessionDescription,
    result_of,
)
from firmware.media.pcm import PcmEnd
from firmware.routing.plan import RingPlan, RingStep

ROOT = Path(__file__).resolve().parent.parent
OFFER = SessionDescription(body=b"v=0 caller's offer")
ANSWER = SessionDescription(body=b"v=0 member's answer")


@dataclass(eq=False)
class LineLeg:
    """A leg on a line that is not SIP: it records what the call asked of it, and says what
    its far end does when the test says so."""

    label: str
    employee: str | None = None
    channel: str | None = None
    record: LegRecord = field(init=False)
    state: LegState = LegState.CALLING
    setup: LegSetup | None = None
    listener: LegListener | None = None
    asked: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.record = LegRecord(target=self.label, contact=f"line:{self.label}",
                                started_at=0.0)

    @property
    def active(self) -> bool:
        return self.state in (LegState.CALLING, LegState.RINGING)

    def start(self, setup: LegSetup, listener: LegListener, now: float) -> None:
        self.setup, self.listener = setup, listener
        self.record.started_at = now
        self.asked.append("start")

    def cancel(self, now: float, *, result: str = "cancelled") -> None:
        self.asked.append(f"cancel:{result}")
        self.state = LegState.DONE
        self.record.result = result

    def hang_up(self, now: float) -> None:
        self.asked.append("hang_up")
        self.state = LegState.DONE

    def complete_answer(self, answer: SessionDescription | None, now: float) -> None:
        self.asked.append("complete_answer")

    # what the far end does
    def rings(self, now: float) -> None:
        self.state = LegState.RINGING
        assert self.listener is not None
        self.listener.leg_event(LegRinging(leg=self), now)

    def answers(self, now: float, media: object = ANSWER) -> None:
        self.state = LegState.ANSWERED
        assert self.listener is not None
        self.listener.leg_event(LegAnswered(leg=self, media=media), now)  # type: ignore[arg-type]

    def fails(self, status: int, now: float) -> None:
        self.state = LegState.DONE
        self.record.result, self.record.sip_status = result_of(status), status
        assert self.listener is not None
        self.listener.leg_event(LegFailed(leg=self, status=status, result=result_of(status)),
                                now)

    def hangs_up(self, now: float) -> None:
        self.state = LegState.DONE
        assert self.listener is not None
        self.listener.leg_event(LegEnded(leg=self, cause="far end"), now)


@dataclass
class Caller:
    """A caller on a line: what the call told it."""

    heard: list[str] = field(default_factory=list)
    can_be_answered: bool = True
    offer: SessionDescription | None = OFFER
    hints: Mapping[str, str] = field(default_factory=dict)

    def ringing(self, early_media: SessionDescription | None, now: float) -> None:
        self.heard.append("early media" if early_media else "ringing")

    def answerable(self) -> bool:
        return self.can_be_answered

    def answer(self, media: SessionDescription, now: float) -> None:
        self.heard.append(f"answered with {media.body.decode()}")

    def reject(self, status: int, reason: str | None, now: float) -> None:
        self.heard.append(f"rejected {status}")

    def hang_up(self, now: float) -> None:
        self.heard.append("hung up")


class Services:
    def __init__(self) -> None:
        self.timers: list[tuple[float, int, Callable[[float], None]]] = []
        self.seq = itertools.count()
        self.finished: list[Call] = []
        self.released: list[str] = []
        self.connected: list[tuple[str, object]] = []

    def call_at(self, when: float, callback: Callable[[float], None]) -> _Timer:
        heapq.heappush(self.timers, (when, next(self.seq), callback))
        return _Timer()

    def run_until(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            when, _, callback = heapq.heappop(self.timers)
            callback(when)

    def call_finished(self, call: Call, now: float) -> None:
        self.finished.append(call)

    def release_channel(self, key: str) -> None:
        self.released.append(key)

    def party_connected(self, call: Call, side: str, party: CallerParty | Leg) -> None:
        self.connected.append((side, party))


class _Timer:
    def cancel(self) -> None:
        pass


def a_call(caller: Caller | None = None) -> tuple[Call, Caller, Services]:
    services = Services()
    caller = caller or Caller()
    call = Call(services=services, caller=caller, key="k", signalling_id="sig",
                info=CallInfo(direction="inbound", source="gsm", caller="+79161234567",
                              dialed="200", display="Ivan"), started_at=0.0)
    return call, caller, services


def test_the_call_module_imports_nothing_from_firmware_sip() -> None:
    for module in ("firmware/calls.py", "firmware/legs.py"):
        tree = ast.parse((ROOT / module).read_text())
        imported = [node.module or "" for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom)]
        assert not [m for m in imported if m.startswith(("sip", ".sip", "firmware.sip"))], module


def test_legs_are_started_with_who_calls_and_the_callers_offer() -> None:
    call, _, _ = a_call()
    legs = [LineLeg("101"), LineLeg("102")]
    call.ring_legs(list(legs), 30.0, 0.0)
    assert [leg.asked for leg in legs] == [["start"], ["start"]]
    setup = legs[0].setup
    assert setup is not None
    assert (setup.caller_number, setup.display, setup.offer) == ("+79161234567", "Ivan", OFFER)


def test_the_caller_hears_ringing_once_however_many_legs_ring() -> None:
    call, caller, _ = a_call()
    legs = [LineLeg("101"), LineLeg("102")]
    call.ring_legs(list(legs), 30.0, 0.0)
    legs[0].rings(1.0)
    legs[1].rings(1.5)
    assert caller.heard == ["ringing"]


def test_the_first_answer_wins_the_rest_are_cancelled_and_the_caller_gets_its_media() -> None:
    call, caller, services = a_call()
    legs = [LineLeg("101"), LineLeg("102")]
    call.ring_legs(list(legs), 30.0, 0.0)
    legs[1].answers(2.0)
    assert call.state is CallState.ANSWERED and call.winner is legs[1]
    assert legs[0].asked == ["start", "cancel:cancelled"]
    assert caller.heard == ["answered with v=0 member's answer"]
    assert [side for side, _ in services.connected] == ["b", "a"]
    assert legs[1].record.result == "answered" and call.answered_by == "102"


def test_an_answer_after_another_won_is_hung_up() -> None:
    call, _, _ = a_call()
    legs = [LineLeg("101"), LineLeg("102")]
    call.ring_legs(list(legs), 30.0, 0.0)
    legs[0].answers(2.0)
    legs[1].answers(2.1)  # crossed the cancel
    assert legs[1].asked[-1] == "hang_up" and legs[1].record.result == "cancelled"


def test_every_leg_failing_busy_gives_the_caller_busy() -> None:
    call, caller, services = a_call()
    legs = [LineLeg("101"), LineLeg("102")]
    call.ring_legs(list(legs), 30.0, 0.0)
    legs[0].fails(486, 1.0)
    legs[1].fails(486, 1.2)
    assert caller.heard == ["rejected 486"] and call.outcome == "missed"
    assert services.finished == [call]


def test_a_ring_plan_starts_the_next_member_when_its_step_comes() -> None:
    call, _, services = a_call()
    made: dict[str, LineLeg] = {}

    def resolve(member: str) -> list[Leg]:
        made[member] = LineLeg(member)
        return [made[member]]

    plan = RingPlan(steps=[RingStep(0.0, start=("101",)),
                           RingStep(15.0, start=("102",), stop=("101",))], give_up_at_s=60.0)
    call.ring(plan, resolve, 0.0)
    assert list(made) == ["101"]
    services.run_until(15.0)
    assert list(made) == ["101", "102"]
    assert made["101"].asked == ["start", "cancel:no_answer"]


def test_a_line_leg_that_hangs_up_hangs_up_the_caller() -> None:
    call, caller, _ = a_call()
    leg = LineLeg("mts")
    call.ring_legs([leg], 30.0, 0.0)
    leg.answers(1.0)
    leg.hangs_up(9.0)
    assert caller.heard[-1] == "hung up"
    assert (call.state, call.end_cause, call.outcome) == (CallState.ENDED, "hangup by callee",
                                                          "answered")


def test_a_leg_holding_a_channel_gives_it_back_when_it_fails() -> None:
    call, _, services = a_call()
    leg = LineLeg("+79160000000", channel="line:mts")
    call.ring_legs([leg], 30.0, 0.0)
    leg.fails(480, 1.0)
    assert services.released == ["line:mts"]


def test_pcm_media_is_refused_where_the_box_does_not_hold_the_callers_media() -> None:
    call, caller, _ = a_call()
    leg = LineLeg("mts")
    call.ring_legs([leg], 30.0, 0.0)
    leg.answers(1.0, media=PcmEnd(name="mts"))
    assert leg.asked[-1] == "hang_up" and leg.record.sip_status == 488
    assert caller.heard == ["rejected 488"]


def test_a_caller_that_cannot_be_answered_fails_the_call_with_400() -> None:
    call, caller, _ = a_call(Caller(can_be_answered=False))
    leg = LineLeg("101")
    call.ring_legs([leg], 30.0, 0.0)
    leg.answers(1.0)
    assert leg.asked[-1] == "hang_up" and caller.heard == ["rejected 400"]


def test_the_leg_table_ends_in_done_and_done_goes_nowhere() -> None:
    assert set(LEG_TRANSITIONS) == set(LegState)
    assert LEG_TRANSITIONS[LegState.DONE] == frozenset()
    assert all(LegState.DONE in moves for state, moves in LEG_TRANSITIONS.items()
               if state is not LegState.DONE)


@pytest.mark.parametrize(("status", "result"), [(486, "busy"), (600, "busy"), (603, "declined"),
                                                (480, "unavailable"), (408, "no_answer"),
                                                (500, "failed")])
def test_failure_statuses_have_the_records_words(status: int, result: str) -> None:
    assert result_of(status) == result
