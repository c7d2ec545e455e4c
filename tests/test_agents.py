"""Agent state: statuses with reason and since-when, busy, wrap-up, auto-break, daily figures."""

from __future__ import annotations

import pytest

from firmware.agents import AgentBook
from firmware.routing.model import BREAK, DND, ON_LINE


def test_status_change_records_reason_since_and_source() -> None:
    book = AgentBook()
    change = book.set_status("101", BREAK, 100.0, reason="lunch", source="cli")
    state = book.agent("101")
    assert (state.status, state.reason, state.since) == (BREAK, "lunch", 100.0)
    assert (change.extension, change.status, change.source) == ("101", BREAK, "cli")


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown status"):
        AgentBook().set_status("101", "sleeping", 0.0, source="cli")


def test_repeating_the_same_status_keeps_since() -> None:
    book = AgentBook()
    book.set_status("101", DND, 10.0, source="phone")
    book.set_status("101", DND, 50.0, source="phone")
    assert book.agent("101").since == 10.0


def test_answered_offer_makes_the_agent_busy_until_the_call_ends() -> None:
    book = AgentBook()
    book.offer_answered("101", 0.0)
    assert book.busy("101")
    book.call_ended("101", 60.0, talk_s=60.0)
    assert not book.busy("101")
    assert book.agent("101").last_call_ended_at == 60.0


def test_wrap_up_follows_an_answered_offer() -> None:
    book = AgentBook()
    book.offer_answered("101", 0.0)
    book.call_ended("101", 30.0, talk_s=30.0, wrap_up_s=15)
    assert book.agent("101").wrap_up_until == 45.0
    assert book.next_wrap_up_end(31.0) == 45.0
    assert book.next_wrap_up_end(46.0) is None


def test_the_agents_own_call_brings_no_wrap_up() -> None:
    book = AgentBook()
    book.call_started("101")
    book.call_ended("101", 30.0, talk_s=20.0)
    assert book.agent("101").wrap_up_until is None
    assert book.agent("101").calls_answered == 0


def test_three_unanswered_offers_in_a_row_put_the_agent_on_break() -> None:
    book = AgentBook()
    assert book.offer_unanswered("101", 1.0, auto_break_after=3) is None
    assert book.offer_unanswered("101", 2.0, auto_break_after=3) is None
    change = book.offer_unanswered("101", 3.0, auto_break_after=3)
    assert change is not None and change.status == BREAK and change.source == "auto"
    assert "3 unanswered" in book.agent("101").reason


def test_an_answered_offer_resets_the_unanswered_count() -> None:
    book = AgentBook()
    book.offer_unanswered("101", 1.0, auto_break_after=2)
    book.offer_answered("101", 2.0)
    assert book.offer_unanswered("101", 3.0, auto_break_after=2) is None


def test_auto_break_can_be_disabled() -> None:
    book = AgentBook()
    assert all(book.offer_unanswered("101", float(i), auto_break_after=0) is None
               for i in range(10))
    assert book.agent("101").status == ON_LINE


def test_new_day_resets_talk_time_and_answered_calls() -> None:
    book = AgentBook()
    book.offer_answered("101", 0.0)
    book.call_ended("101", 100.0, talk_s=100.0)
    assert (book.agent("101").talk_time_s, book.agent("101").calls_answered) == (100.0, 1)
    book.new_day()
    assert (book.agent("101").talk_time_s, book.agent("101").calls_answered) == (0.0, 0)


def test_an_agent_without_a_set_status_is_on_line_since_the_book_began() -> None:
    book = AgentBook(started_at=5000.0)
    state = book.agent("101")
    assert (state.status, state.since) == ("on_line", 5000.0)
