"""`linebox whatif` and `linebox sizing` on a recorded synthetic office."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest

from firmware.cli import main
from firmware.store import Store
from firmware.whatif.history import load_history
from firmware.whatif.summary import run_variants
from firmware.whatif.variants import VariantError, make_variant

from .synthetic import DID, WALL_START, MemberTruth, SyntheticOffice, record_office

DAY = "2026-01-01"  # WALL_START's day (UTC)
MEMBERS = (MemberTruth("101", 0.9, (2.0, 8.0)), MemberTruth("102", 0.6, (3.0, 12.0)),
           MemberTruth("103", 0.8, (2.0, 10.0)))


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "linebox.db"
    store = record_office(SyntheticOffice(members=MEMBERS, hours=3, calls_per_hour=60), path)
    # A few callers in the period's last week who heard busy: the channels were full.
    store.record_finished_calls([({
        "id": f"blocked-{i}", "started_at": WALL_START + 600 + i, "ended_at": WALL_START + 600 + i,
        "direction": "inbound", "source": "provider", "caller": f"7916000000{i}",
        "dialed": DID, "number": DID, "department": "500", "outcome": "over_capacity",
    }, []) for i in range(5)])
    store.close()
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_whatif_prints_the_variants_side_by_side_as_json(
        db: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    progress = tmp_path / "progress"
    code, out, err = _run(capsys, "whatif", "--db", str(db), "--department", "500",
                          "--from", DAY, "--to", DAY, "--tz", "UTC", "--seeds", "4",
                          "--workers", "2", "--progress", str(progress),
                          "--set", "strategy=ring_all", "--variant", "--set", "remove=102",
                          "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [v["name"] for v in data["variants"]] == [
        "as configured", "strategy=ring_all", "remove=102"]
    assert data["recorded"]["offered"] > 100
    first = data["variants"][0]
    assert first["runs"] == 4 and 0 < first["answered"]["mean"] <= 1
    assert first["answered"]["low"] <= first["answered"]["mean"] <= first["answered"]["high"]
    assert "answered_vs_baseline" not in first
    assert "answered_vs_baseline" in data["variants"][1]
    assert "102" not in data["variants"][2]["members"]
    assert progress.read_text().strip() == "1.0000"


def test_whatif_text_table(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "whatif", "--db", str(db), "--department", "500", "--from", DAY,
                        "--to", DAY, "--tz", "UTC", "--seeds", "3", "--workers", "1",
                        "--set", "ring_timeout_s=30")
    assert code == 0
    assert "ring_timeout_s=30" in out and "answered" in out and "calls of 101" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--department", "999"], "no department 999"),
    (["--department", "500", "--set", "strategy=fastest"], "strategy"),
    (["--department", "500", "--set", "weight.101=130"], "weight"),
    (["--department", "500", "--set", "remove=555"], "555 is not a member"),
    (["--department", "500", "--set", "colour=red"], "colour: unknown setting"),
    (["--department", "500", "--seeds", "0"], "--seeds"),
])
def test_whatif_refuses_what_it_cannot_replay(
        db: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = _run(capsys, "whatif", "--db", str(db), "--from", DAY, "--to", DAY,
                        "--tz", "UTC", *argv)
    assert code == 2
    assert message in err


def test_whatif_of_a_period_without_calls_says_so(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "whatif", "--db", str(db), "--department", "500",
                        "--from", "2025-06-01", "--to", "2025-06-02", "--tz", "UTC")
    assert code == 1 and "no calls" in err


def test_a_set_without_equals_is_an_argument_error(db: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["whatif", "--db", str(db), "--department", "500", "--set", "strategy"])
    assert exit_.value.code == 2


def test_sizing_finds_the_channels_and_warns_of_last_weeks_blocking(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "sizing", "--db", str(db), "--from", DAY, "--to", DAY,
                          "--tz", "UTC", "--json")
    assert code == 0, err
    data = json.loads(out)
    (number,) = data["numbers"]
    assert number["number"] == DID and number["channels_configured"] == 100
    assert 1 <= number["channels_needed"] < 20
    assert number["last_week_blocked"] == 5 and number["warning"] is True
    (department,) = data["departments"]
    assert department["department"] == "500" and department["members"] == 3
    assert department["agents_needed"] >= 1
    code, out, _ = _run(capsys, "sizing", "--db", str(db), "--from", DAY, "--to", DAY,
                        "--tz", "UTC")
    assert code == 0 and "over target" in out


def test_workers_do_not_change_the_results(db: Path) -> None:
    store = Store.open(db)
    try:
        history = load_history(store, "500", WALL_START, WALL_START + 86400,
                               tz=UTC)
    finally:
        store.close()
    variants = [make_variant(history.config, "500", [])]
    alone = run_variants(history, variants, seeds=3, workers=1)
    together = run_variants(history, variants, seeds=3, workers=2)
    assert alone[0].runs == together[0].runs


def test_a_variant_keeps_the_configurations_own_checks(db: Path) -> None:
    store = Store.open(db)
    try:
        config = store.load_config()
    finally:
        store.close()
    with pytest.raises(VariantError, match="add"):
        make_variant(config, "500", [("add", "0")])
    variant = make_variant(config, "500", [("add", "2"), ("queue.max_wait_s", "60")])
    assert list(variant.added) == ["9901", "9902"]
    assert variant.department.settings.queue is not None
    assert variant.department.settings.queue.max_wait_s == 60
    assert [m.extension for m in variant.department.members][-2:] == ["9901", "9902"]
