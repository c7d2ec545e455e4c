"""A voice menu's greeting recorded by phone, end to end: the real daemon, extension 103 as a
SIPp phone dialling *971 (digest challenge, then credentials), pressing 1, speaking a 440 Hz
tone (SIPp's rtp_stream from a raw u-law file), #, 2 (listen), 3 (save) as RFC 4733 events from
SIPp's own pcaps. The greeting stored for the menu is the WAV a web UI upload would be and holds
the tone; a caller from the provider reaching the menu afterwards hears it as the greeting. An
extension not allowed is refused with 403 and the refusal is in the daemon's log.
"""

from __future__ import annotations

import io
import sqlite3
import wave
from array import array
from contextlib import closing
from pathlib import Path
from typing import Any

from firmware.media import g711
from firmware.media.audio import to_pcm8k
from tests.e2e.linebox import (
    AGENT_PASSWORDS,
    DAEMON_WAIT_S,
    LineboxProcess,
    base_config,
    running_linebox,
)
from tests.e2e.media import (
    SIPP_DTMF_DIR,
    RtpListener,
    crossings_per_s,
    scenario,
    tone_file,
    tone_share,
)
from tests.e2e.sipp import SCENARIOS_DIR, Sipp, free_port
from tests.e2e.test_calls import DID, PROVIDER_IP, provider_call, start_agent

TONE_HZ = 440
SPEAK_S = 3.0
RECORDER = "103"
CODE = "*971"  # the greeting code and menu main's number
CALLER = "79161234567"


def greeting_config() -> dict[str, Any]:
    config = base_config(site={"language": "en", "greeting_recorders": [RECORDER]})
    config["numbers"][0]["destination"] = "menu:main"
    # Two levels, so the caller's second key (2) is pressed while the box still plays.
    config["menus"] = [{"name": "main", "keys": {"1": "menu:next"}, "timeout_s": 10},
                       {"name": "next", "keys": {"2": "200"}, "timeout_s": 10}]
    return config


def stored_greeting(db: Path, key: str) -> tuple[bytes, float] | None:
    with closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT audio, duration_s FROM greetings WHERE mailbox = ?",
                           (key,)).fetchone()
    return None if row is None else (bytes(row[0]), float(row[1]))


def record_by_phone(linebox: LineboxProcess, tmp_path: Path, extension: str,
                    ear: RtpListener) -> Any:
    text = (SCENARIOS_DIR / "phone_record_greeting.template.xml").read_bytes()
    for mark, pcap in ((b"@KEY1@", "dtmf_2833_1.pcap"), (b"@KEYHASH@", "dtmf_2833_pound.pcap"),
                       (b"@KEY2@", "dtmf_2833_2.pcap"), (b"@KEY3@", "dtmf_2833_3.pcap")):
        text = text.replace(mark, bytes(SIPP_DTMF_DIR / pcap))
    text = text.replace(b"@AUDIO@", bytes(tone_file(tmp_path, SPEAK_S, TONE_HZ)))
    path = tmp_path / f"phone_record_greeting_{extension}.xml"
    path.write_bytes(text)
    return Sipp(
        scenario=path, remote=linebox.address, service=CODE,
        auth_user=extension, auth_password=AGENT_PASSWORDS[extension],
        auth_uri=f"{CODE}@{linebox.address}", keys={"caller": extension}, calls=1,
        variables={"rtp_port": ear.port, "speak_ms": int((SPEAK_S + 0.3) * 1000),
                   "listen_ms": int((SPEAK_S + 1.5) * 1000), "saved_ms": 3000},
        extra_args=["-mp", str(free_port("127.0.0.1"))],
        timeout_s=40, trace_dir=tmp_path, name=f"recorder{extension}",
    ).run()


def loud(samples: array[int]) -> array[int]:
    """From the first loud sample to the last: what was said, without the silence around."""
    indexes = [i for i, s in enumerate(samples) if abs(s) > 1000]
    return samples[indexes[0]:indexes[-1] + 1] if indexes else array("h")


def test_a_greeting_recorded_by_phone_is_stored_as_an_upload_and_callers_hear_it(
    tmp_path: Path,
) -> None:
    ear = RtpListener("127.0.0.1")
    caller_ear = RtpListener(PROVIDER_IP)
    try:
        with running_linebox(tmp_path / "linebox", greeting_config()) as linebox:
            recorder = record_by_phone(linebox, tmp_path, RECORDER, ear)
            assert recorder.ok, recorder.describe()
            stored = linebox.wait_for(lambda: stored_greeting(linebox.db, "menu:main"),
                                      DAEMON_WAIT_S, "the greeting in the store")
            # A caller reaches the menu: the recording is the greeting now. They listen to
            # it whole, press 1 (the next menu), 2 (department 200) and 101 answers.
            keys = scenario(tmp_path, "provider_menu_keys.template.xml",
                            dtmf="dtmf_2833_1.pcap")
            keys.write_bytes(keys.read_bytes().replace(
                b"@DTMF2@", bytes(SIPP_DTMF_DIR / "dtmf_2833_2.pcap")))
            with start_agent(linebox, "101", tmp_path, timeout_s=60) as agent:
                caller = provider_call(
                    linebox, tmp_path, name="caller", service=DID, scenario=keys,
                    timeout_s=60,
                    variables={"caller_id": CALLER, "rtp_port": caller_ear.port,
                               "wait_ms": int((SPEAK_S + 2.0) * 1000), "talk_ms": 1000},
                    extra_args=["-mp", str(free_port(PROVIDER_IP))],
                ).run()
                answered = agent.wait()
            assert caller.ok, caller.describe()
            assert answered.ok, answered.describe()
            log = linebox.log()
    finally:
        ear.close()
        caller_ear.close()
    audio, duration_s = stored
    # Exactly what an upload stores: a 16-bit 8 kHz mono WAV that converts to itself.
    with wave.open(io.BytesIO(audio)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        pcm = wav.readframes(wav.getnframes())
    assert to_pcm8k(audio, max_s=120.0) == pcm
    assert abs(duration_s - len(pcm) / 16000) < 0.01
    samples = g711.pcm_samples(pcm)
    tone = loud(samples)
    assert SPEAK_S - 0.3 <= len(tone) / 8000 <= SPEAK_S + 0.3, len(tone) / 8000
    assert abs(crossings_per_s(tone) - TONE_HZ) < 10
    assert tone_share(tone[:8000], TONE_HZ) > 0.9
    assert "menu main: greeting of" in log and "recorded by phone saved" in log
    # The phone heard its recording played back after 2 (besides the prompts: they have no
    # steady 440 Hz second in them).
    heard = ear.audio()
    assert any(tone_share(heard[i:i + 8000], TONE_HZ) > 0.9
               for i in range(0, len(heard) - 8000, 800)), "the recording was not played back"
    # The caller heard the new greeting, the tone, before pressing 1.
    greeting_heard = loud(caller_ear.audio())
    for second in range(int(SPEAK_S) - 1):
        block = greeting_heard[second * 8000:(second + 1) * 8000]
        assert len(block) == 8000 and tone_share(block, TONE_HZ) > 0.9, second


def test_an_extension_not_allowed_is_refused_403_and_logged(tmp_path: Path) -> None:
    ear = RtpListener("127.0.0.1")
    try:
        with running_linebox(tmp_path / "linebox", greeting_config()) as linebox:
            refused = record_by_phone(linebox, tmp_path, "102", ear)
            log = linebox.log()
            assert stored_greeting(linebox.db, "menu:main") is None
            assert linebox.status()["calls"] == []
    finally:
        ear.close()
    assert not refused.ok
    assert refused.message_log is not None
    assert "SIP/2.0 403 Not allowed to record greetings" in refused.message_log.read_text(
        errors="replace")
    assert "extension 102 may not record the greeting of menu main" in log
    assert ear.packets == []
