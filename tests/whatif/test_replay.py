"""The what-if replay against a synthetic office whose truth is known (tests/whatif/synthetic.py:
Poisson callers, members answering with set probabilities, recorded by the real core).

Tolerances, stated once: the replay of the strategy actually used must find the recorded
answered and abandoned shares within 3 percentage points, the mean wait within 15 % and the 90th
percentile within 20 % (one recorded period is itself a sample: across generator seeds these
figures move by about as much). Each member's fitted answer probability must be within 0.1 of
the probability the script gave them. And the replay under another strategy must predict what
the core records when the office really runs that strategy, within 3 points and 20 %.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from firmware.whatif.behaviour import fit, kaplan_meier
from firmware.whatif.history import History, load_history
from firmware.whatif.replay import Replay
from firmware.whatif.summary import recorded_figures, run_variants
from firmware.whatif.variants import make_variant

from .synthetic import WALL_START, MemberTruth, SyntheticOffice, record_office

MEMBERS = (
    MemberTruth("101", 0.9, (2.0, 8.0)),
    MemberTruth("102", 0.7, (3.0, 12.0)),
    MemberTruth("103", 0.5, (2.0, 14.0)),
    MemberTruth("104", 0.8, (4.0, 10.0)),
)


def _history(tmp: Path, strategy: str, seed: int = 1) -> History:
    office = SyntheticOffice(members=MEMBERS, hours=8, calls_per_hour=70, seed=seed,
                             strategy=strategy)
    store = record_office(office, tmp / f"{strategy}.db")
    try:
        return load_history(store, "500", WALL_START, WALL_START + 9 * 3600, tz=UTC)
    finally:
        store.close()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, History]:
    tmp = tmp_path_factory.mktemp("office")
    return {strategy: _history(tmp, strategy) for strategy in ("longest_idle", "ring_all")}


def _close(replayed: float, actual: float, relative: float) -> bool:
    return abs(replayed - actual) <= relative * actual


@pytest.mark.parametrize("strategy", ["longest_idle", "ring_all"])
def test_the_replay_of_the_strategy_used_finds_what_was_recorded(
        recorded: dict[str, History], strategy: str) -> None:
    history = recorded[strategy]
    actual = recorded_figures(history)
    assert actual["offered"] > 450  # 8 hours at 70 calls an hour
    summary = run_variants(history, [make_variant(history.config, "500", [])], seeds=20)[0]
    print(f"\n{strategy}: recorded answered {actual['answered']:.3f} abandoned "
          f"{actual['abandoned']:.3f} wait {actual['mean_wait_s']} s p90 {actual['p90_wait_s']} s;"
          f" replayed {summary.answered.mean:.3f} {summary.abandoned.mean:.3f} "
          f"{summary.mean_wait_s.mean:.2f} s {summary.p90_wait_s.mean:.2f} s")
    assert abs(summary.answered.mean - actual["answered"]) <= 0.03
    assert abs(summary.abandoned.mean - actual["abandoned"]) <= 0.03
    assert _close(summary.mean_wait_s.mean, actual["mean_wait_s"], 0.15)
    assert _close(summary.p90_wait_s.mean, actual["p90_wait_s"], 0.20)
    # Every member's share of the answered calls, too (within 5 points).
    total = sum(actual["members"].values())
    replayed = summary.member_calls()
    replayed_total = sum(spread.mean for spread in replayed.values())
    for member, count in actual["members"].items():
        assert abs(replayed[member].mean / replayed_total - count / total) <= 0.05, member


def test_the_fitted_answer_probabilities_are_the_scripted_ones(
        recorded: dict[str, History]) -> None:
    behaviour = fit(recorded["longest_idle"])
    for truth in MEMBERS:
        fitted = behaviour.members[truth.extension].overall.answer_probability
        assert abs(fitted - truth.answer_probability) <= 0.1, (truth, fitted)


def test_another_strategy_replayed_predicts_what_running_it_records(
        recorded: dict[str, History]) -> None:
    history = recorded["longest_idle"]
    predicted = run_variants(
        history, [make_variant(history.config, "500", [("strategy", "ring_all")])], seeds=20)[0]
    actual = recorded_figures(recorded["ring_all"])
    print(f"\nring_all predicted from longest_idle's record: answered "
          f"{predicted.answered.mean:.3f} (recorded {actual['answered']:.3f}), wait "
          f"{predicted.mean_wait_s.mean:.2f} s (recorded {actual['mean_wait_s']} s)")
    assert abs(predicted.answered.mean - actual["answered"]) <= 0.03
    assert _close(predicted.mean_wait_s.mean, actual["mean_wait_s"], 0.20)


def test_a_replay_repeats_with_its_seed_and_differs_with_another(
        recorded: dict[str, History]) -> None:
    history = recorded["ring_all"]
    behaviour = fit(history)
    department = history.department
    first = Replay(history, behaviour, department, seed=5).run()
    again = Replay(history, behaviour, department, seed=5).run()
    other = Replay(history, behaviour, department, seed=6).run()
    assert first == again
    assert first.waits != other.waits


def test_fewer_members_answer_fewer_calls_and_the_difference_is_called_real(
        recorded: dict[str, History]) -> None:
    history = recorded["longest_idle"]
    baseline, fewer, more = run_variants(history, [
        make_variant(history.config, "500", []),
        make_variant(history.config, "500", [("remove", "101,104")]),
        make_variant(history.config, "500", [("add", "2")]),
    ], seeds=20)
    difference = fewer.answered_difference(baseline)
    assert difference.high < 0 and difference.excludes_zero
    assert more.answered_difference(baseline).low > 0
    assert "101" not in fewer.member_calls() and "9901" in more.member_calls()
    data = fewer.as_dict(baseline)
    assert data["answered_vs_baseline"]["real"] is True


def test_kaplan_meier_counts_a_race_lost_as_not_yet_answered() -> None:
    # Ten rings: four answered at 2 s, three cancelled at 1 s (a colleague was quicker),
    # three rang out at 20 s. Of the seven still ringing at 2 s, four answered: 4/7.
    model = kaplan_meier([(2.0, True)] * 4 + [(1.0, False)] * 3 + [(20.0, False)] * 3)
    assert model.delays == (2.0,)
    assert model.answer_probability == pytest.approx(4 / 7)
    # Answers at the same time as censorings count first (the ring was answered).
    tied = kaplan_meier([(5.0, True), (5.0, False)])
    assert tied.answer_probability == pytest.approx(0.5)
    assert kaplan_meier([]).answer_probability == 0.0
