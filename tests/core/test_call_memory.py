"""A finished call leaves nothing behind that only the cyclic garbage collector could free: the
daemon raises the collector's thresholds for latency, so a reference cycle per call would hold
every finished call in memory for a long while (bench/call_setup.py saw RSS grow with the rate)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from tests.core.network import AFTER_EVERY_TIMER_S, RING_ALL_DID, Office


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_an_answered_call_is_freed_by_reference_counting_alone(
    o: Office, no_cycle_collector: None
) -> None:
    o.provider.call(RING_ALL_DID)
    [call] = o.net.gateway.calls.values()
    freed = weakref.ref(call)
    del call
    o.phones["101"].answer()
    o.phones["101"].hang_up()
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert freed() is None


def test_a_call_the_caller_gave_up_on_is_freed_too(o: Office, no_cycle_collector: None) -> None:
    invite = o.provider.call(RING_ALL_DID)
    [call] = o.net.gateway.calls.values()
    freed = weakref.ref(call)
    del call
    o.provider.cancel(invite)
    o.net.advance(AFTER_EVERY_TIMER_S)
    assert freed() is None
