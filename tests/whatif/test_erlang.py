"""Erlang B and C against published tables."""

from __future__ import annotations

import pytest

from firmware.whatif.erlang import (
    agents_for_service_level,
    channels_for_blocking,
    erlang_b,
    erlang_c,
    mean_wait_s,
    service_level,
)


@pytest.mark.parametrize(("erlangs", "blocking", "channels"), [
    # Erlang B table (e.g. ITU-T E.501's dimensioning tables, any textbook's "Erlang B
    # table"): offered traffic that N channels carry at the given grade of service.
    (10.0, 0.01, 18),   # 10 E at 1 % -> 18 (17 give 1.29 %, 18 give 0.71 %)
    (2.0, 0.01, 7),
    (5.0, 0.02, 10),
    (20.0, 0.01, 30),
    (0.5, 0.001, 5),
])
def test_channels_for_a_blocking_target_match_the_erlang_b_table(
        erlangs: float, blocking: float, channels: int) -> None:
    assert channels_for_blocking(erlangs, blocking) == channels
    assert erlang_b(erlangs, channels) <= blocking < erlang_b(erlangs, channels - 1)


def test_erlang_b_values() -> None:
    assert erlang_b(10.0, 18) == pytest.approx(0.00714, abs=5e-5)
    assert erlang_b(10.0, 17) == pytest.approx(0.01290, abs=5e-5)
    assert erlang_b(1.0, 1) == pytest.approx(0.5)
    assert erlang_b(3.0, 0) == 1.0
    assert channels_for_blocking(0.0) == 0


def test_erlang_c_matches_the_worked_call_centre_example() -> None:
    # The standard worked example: 10 erlangs (e.g. 200 calls an hour at a 180 s handling
    # time), target 80 % answered within 20 s. Published: the probability of waiting is
    # 68.21 % / 44.94 % / 28.53 % / 17.41 % with 11 / 12 / 13 / 14 agents, and the service
    # level 39.0 % / 64.0 % / 79.6 % / 88.8 %: 14 agents are the fewest that reach 80 %.
    for agents, waiting, level in ((11, 0.6821, 0.390), (12, 0.4494, 0.640),
                                   (13, 0.2853, 0.796), (14, 0.1741, 0.888)):
        assert erlang_c(10.0, agents) == pytest.approx(waiting, abs=5e-4)
        assert service_level(10.0, agents, 180.0, 20.0) == pytest.approx(level, abs=1e-3)
    assert agents_for_service_level(10.0, 180.0, target=0.8, answer_within_s=20.0) == 14
    assert mean_wait_s(10.0, 11, 180.0) == pytest.approx(0.6821 * 180.0, rel=1e-3)
    assert erlang_c(10.0, 10) == 1.0  # as many agents as erlangs: every caller waits


def test_bad_targets_are_refused() -> None:
    with pytest.raises(ValueError):
        channels_for_blocking(1.0, 0.0)
    with pytest.raises(ValueError):
        agents_for_service_level(1.0, 60.0, target=1.5)
    with pytest.raises(ValueError):
        erlang_b(-1.0, 3)
