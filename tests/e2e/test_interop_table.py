"""README.md's "Tested with" table (issue 14) kept true: every ✓ is a test that exists, every
test of the matrix has its ✓, every cell without one says why, and each client's version in the
table is the version the installed client reports now.

Why a check of the table against the tests rather than a table generated from a results file the
tests write: a results file is only as whole as the last run (`pytest -k hold` would write a
table with holes, a failed run one without its failures, and two sessions on one machine would
write over each other), and a generated README changes under the developers' feet. Here the
table is written by hand from the tests' results and cannot drift from them: remove or rename a
test and this fails; a ✓ without a test fails; the tests behind each ✓ fail themselves when the
client cannot do the feature (in `make test`, which runs them all). Test ids are read from
pytest's own collection, parameters included.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.e2e.linebox import REPO_ROOT
from tests.e2e.linphone import linphonec_version

README = REPO_ROOT / "README.md"
SECTION = "## Tested with"
CHECK = "✓"
CLIENTS_FILE = "tests/e2e/test_interop_clients.py"

# The tests behind each ✓: (feature row, client) → pytest node id.
MATRIX: dict[tuple[str, str], str] = {}
for _client in ("baresip", "linphonec"):
    for _feature, _test in (
        ("register (digest)", "test_registers_with_digest_auth"),
        ("call a department", "test_calls_a_department_a_colleague_answers_and_hangs_up"),
        ("answer", "test_calls_a_department_a_colleague_answers_and_hangs_up"),
        ("audio both ways", "test_audio_flows_both_ways"),
        ("hold / resume (music from the box)",
         "test_hold_plays_the_box_music_then_resume_brings_back_the_colleague"),
        ("blind transfer", "test_blind_transfer_reaches_the_target_showing_the_caller"),
        ("blind transfer of a caller on hold", "test_blind_transfer_of_a_caller_on_hold"),
        ("hang up", "test_calls_a_department_a_colleague_answers_and_hangs_up"),
    ):
        MATRIX[(_feature, _client)] = f"{CLIENTS_FILE}::{_test}[{_client}]"
    for _code, _row in (("*8", "pickup `*8`"), ("**102", "pickup `**EXT`")):
        MATRIX[(_row, _client)] = (
            f"{CLIENTS_FILE}::test_pickup_takes_the_call_ringing_a_colleague[{_client}-{_code}]")
MATRIX[("attended transfer", "linphonec")] = (
    f"{CLIENTS_FILE}::test_attended_transfer_joins_the_caller_and_the_consulted_colleague"
    "[linphonec]")
# SIPp: the features' own end-to-end tests (SIPp plays each phone and the provider).
MATRIX.update({
    ("register (digest)", "SIPp"):
        "tests/e2e/test_calls.py::test_agents_register_with_digest_auth",
    ("call a department", "SIPp"):
        "tests/e2e/test_calls.py::test_extension_calls_the_department_after_a_digest_challenge",
    ("answer", "SIPp"):
        "tests/e2e/test_calls.py::test_provider_call_rings_the_department_and_completes_with_bye",
    ("audio both ways", "SIPp"):
        "tests/e2e/test_hold_e2e.py::"
        "test_the_held_agent_hears_music_then_both_hear_each_other_after_resume",
    ("hold / resume (music from the box)", "SIPp"):
        "tests/e2e/test_hold_e2e.py::"
        "test_the_held_agent_hears_music_then_both_hear_each_other_after_resume",
    ("blind transfer", "SIPp"):
        "tests/e2e/test_transfer_e2e.py::test_an_agent_transfers_the_provider_call_to_a_colleague",
    ("attended transfer", "SIPp"):
        "tests/e2e/test_transfer_e2e.py::"
        "test_an_agent_consults_a_colleague_and_transfers_the_caller_to_them",
    ("pickup `*8`", "SIPp"):
        "tests/e2e/test_pickup_e2e.py::test_a_colleague_picks_up_the_ringing_provider_call[*8]",
    ("pickup `**EXT`", "SIPp"):
        "tests/e2e/test_pickup_e2e.py::test_a_colleague_picks_up_the_ringing_provider_call[**102]",
    ("busy lamp (BLF)", "SIPp"):
        "tests/e2e/test_blf_e2e.py::test_a_busy_lamp_goes_idle_early_confirmed_terminated",
    ("hang up", "SIPp"):
        "tests/e2e/test_calls.py::test_provider_call_rings_the_department_and_completes_with_bye",
})


def table() -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """The section's table: each client's version from the header ("baresip 1.0.0"), and each
    cell by (feature, client)."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|")]
    header, _rule, *body = rows
    versions = dict(cell.rsplit(" ", 1) for cell in header[1:])
    clients = [cell.rsplit(" ", 1)[0] for cell in header[1:]]
    cells = {}
    for row in body:
        assert len(row) == len(header), row
        for client, cell in zip(clients, row[1:], strict=True):
            cells[(row[0], client)] = cell
    return versions, cells


def collected_tests() -> set[str]:
    """The node ids pytest collects from the files the matrix names."""
    files = sorted({node.split("::", 1)[0] for node in MATRIX.values()})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *files],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {line.strip() for line in result.stdout.splitlines() if "::" in line}


def installed_versions() -> dict[str, str]:
    """What each client says its version is."""
    def first(pattern: str, command: list[str]) -> str:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10,
                                check=False)
        match = re.search(pattern, result.stdout + result.stderr)
        assert match, (command, result.stdout, result.stderr)
        return match.group(1)

    return {
        "baresip": first(r"baresip v(\S+)", ["baresip", "-h"]),
        "linphonec": linphonec_version(),
        "SIPp": first(r"SIPp v(\d+(?:\.\d+)+)", ["sipp", "-v"]),
    }


def test_every_tick_in_the_table_is_a_test_and_every_test_has_its_tick() -> None:
    _versions, cells = table()
    ticked = {key for key, cell in cells.items() if cell == CHECK}
    assert ticked == set(MATRIX), {
        "ticked without a test": sorted(ticked - set(MATRIX)),
        "tested without a tick": sorted(set(MATRIX) - ticked)}
    missing = sorted(set(MATRIX.values()) - collected_tests())
    assert not missing, f"the table's tests are gone: {missing}"


def test_every_cell_without_a_tick_says_why() -> None:
    _versions, cells = table()
    for key, cell in cells.items():
        if cell != CHECK:
            assert CHECK not in cell and len(cell.split()) >= 4, (key, cell)


def test_the_versions_in_the_table_are_the_installed_clients() -> None:
    versions, _cells = table()
    assert versions == installed_versions()
