"""Debian's own softphone against the box as a newcomer sets it up (issue 10).

`linebox run` on an empty database, as `make run` starts it, creates department 200 with
extension 101 and prints 101's password once. baresip 1.0.0 registers as 101 with that password
and the box's defaults. A colleague's phone, another baresip, is added as extension 102 and a
member of department 200 through a YAML file imported with `--config` (the export of the box's
configuration plus the colleague), and answers by itself. 101 dials 200; each phone speaks its
own tone from a WAV file and records what it hears, and each must have heard the other's tone.

baresip 1.0.0's SIP library gives up on a 401 that offers an algorithm it does not know beside
MD5 ("Register: Function not implemented"), so this test also stands for the default of one
MD5 challenge. Audio runs phone to phone (the box relays only SIP) in PCMU or PCMA. Without
baresip the test fails, saying how to install it (`make test` does).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.baresip import Baresip, account_line, running_baresip
from tests.e2e.linebox import REPO_ROOT, LineboxProcess, running_linebox
from tests.e2e.media import SAMPLE_RATE_HZ, read_wav, tone_share, tone_wav

CALLER_HZ = 600.0
MEMBER_HZ = 1000.0
TONE_FILE_S = 30.0  # longer than the call: baresip's aufile sends silence after the file's end
HEARD_S = 3.0  # each phone hears at least this much of the call before 101 hangs up
REGISTER_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 15.0
AUDIO_TIMEOUT_S = 15.0
BLOCK_SAMPLES = 400  # 50 ms: tone measured block by block, so gaps and jitter show
# A block "is" a tone when the tone holds this share of its energy (a clean G.711 tone: ~0.99).
TONE_SHARE = 0.9
COLLEAGUE = {"number": "102", "name": "Коллега 102", "password": "colleague-102-pw"}


def exported_config(box: LineboxProcess) -> dict[str, Any]:
    """`linebox config export`, as the owner would run it."""
    result = subprocess.run(
        [sys.executable, "-m", "firmware", "config", "export", "--db", str(box.db)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True,
    )
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def registered(box: LineboxProcess) -> set[str]:
    return {r["extension"] for r in box.status()["registrations"]}


def wait_until_registered(box: LineboxProcess, phones: dict[str, Baresip]) -> None:
    """Every phone registered at the box; if not, the phones' logs say why (their first
    REGISTER fails before the test can hear of it over the control socket)."""
    try:
        box.wait_for(lambda: registered(box) >= set(phones), REGISTER_TIMEOUT_S,
                     f"registrations of {sorted(phones)}")
    except AssertionError:
        logs = "".join(f"\n--- baresip {extension}:\n{phone.log()[-2000:]}"
                       for extension, phone in phones.items())
        raise AssertionError(f"registered {sorted(registered(box))}, not {sorted(phones)}"
                             f"{logs}") from None


def heard_seconds(phone: Baresip) -> float:
    try:
        path = phone.recording("dec")
    except AssertionError:
        return 0.0
    return max(0, path.stat().st_size - 44) / 2 / SAMPLE_RATE_HZ  # 44: the WAV header


def blocks(samples: Any) -> list[Any]:
    return [samples[i:i + BLOCK_SAMPLES]
            for i in range(0, len(samples) - BLOCK_SAMPLES + 1, BLOCK_SAMPLES)]


def seconds_of_tone(recording: Path, frequency_hz: float) -> float:
    tone_blocks = [b for b in blocks(read_wav(recording))
                   if tone_share(b, frequency_hz) >= TONE_SHARE]
    return len(tone_blocks) * BLOCK_SAMPLES / SAMPLE_RATE_HZ


def test_baresip_registers_with_the_printed_password_and_talks_to_department_200(
    tmp_path: Path,
) -> None:
    with running_linebox(tmp_path / "box", None) as box:
        password = box.first_start_password()
        office = exported_config(box)
    office["extensions"].append(COLLEAGUE)
    department = next(d for d in office["departments"] if d["number"] == "200")
    department["members"].append(COLLEAGUE["number"])

    with (
        running_linebox(tmp_path / "box", office) as box,
        running_baresip(
            tmp_path / "member",
            account=account_line("102", box.address, COLLEAGUE["password"], auto_answer=True),
            audio_source=tone_wav(tmp_path / "member.wav", TONE_FILE_S, MEMBER_HZ),
        ) as member,
        running_baresip(
            tmp_path / "caller",
            account=account_line("101", box.address, password),
            audio_source=tone_wav(tmp_path / "caller.wav", TONE_FILE_S, CALLER_HZ),
        ) as caller,
    ):
        wait_until_registered(box, {"101": caller, "102": member})
        caller.command("dial", "200")
        caller.wait_for_event("CALL_ESTABLISHED", CALL_TIMEOUT_S)
        member.wait_for_event("CALL_ESTABLISHED", CALL_TIMEOUT_S)
        box.wait_for(lambda: min(heard_seconds(caller), heard_seconds(member)) >= HEARD_S,
                     AUDIO_TIMEOUT_S, f"{HEARD_S} s of audio at both phones")
        caller.command("hangup")
        caller.wait_for_event("CALL_CLOSED", CALL_TIMEOUT_S)
        member.wait_for_event("CALL_CLOSED", CALL_TIMEOUT_S)
        records = box.wait_for(lambda: [c for c in box.calls() if c["ended_at"]], 10,
                               "the call's record")
    # The recordings are read once the phones have stopped and closed their files.

    assert [(r["caller"], r["dialed"], r["department"], r["answered_by"]) for r in records] == [
        ("101", "200", "200", "102")]
    # Both ways: each phone heard the other's tone for most of what it recorded, and never its
    # own (the box must not loop a phone's audio back to it).
    for phone, theirs, own in ((caller, MEMBER_HZ, CALLER_HZ), (member, CALLER_HZ, MEMBER_HZ)):
        heard = phone.recording("dec")
        assert seconds_of_tone(heard, theirs) >= HEARD_S - 0.5, heard
        assert seconds_of_tone(heard, own) == 0, heard
