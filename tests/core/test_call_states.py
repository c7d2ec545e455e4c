"""A call's life is a table of moves (firmware.calls.CALL_TRANSITIONS): what is not in it raises."""

from __future__ import annotations

import pytest

from firmware.calls import CALL_TRANSITIONS, CallState, IllegalTransition
from tests.core.network import RING_ALL_DID, Office


def test_every_state_has_its_moves_and_an_ended_call_has_none() -> None:
    assert set(CALL_TRANSITIONS) == set(CallState)
    assert CALL_TRANSITIONS[CallState.ENDED] == frozenset()
    assert all(CallState.ENDED in moves for state, moves in CALL_TRANSITIONS.items()
               if state is not CallState.ENDED)


def test_a_ringing_call_moves_to_answered_and_cannot_go_back(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    [call] = o.net.gateway.calls.values()
    assert call.state is CallState.RINGING
    o.phones["101"].answer()
    assert call.state is CallState.ANSWERED
    with pytest.raises(IllegalTransition):
        call.move_to(CallState.RINGING)
    assert call.state is CallState.ANSWERED


def test_the_status_shows_the_states_value(o: Office) -> None:
    o.provider.call(RING_ALL_DID)
    assert [c["state"] for c in o.net.calls()] == ["ringing"]
