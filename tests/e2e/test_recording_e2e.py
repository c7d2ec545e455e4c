"""A recorded call end to end: the real daemon, a SIPp caller from the provider and a SIPp agent
on loopback, each streaming a tone of its own. The caller hears the warning (183, early media)
before the agent's phone rings; the file the box writes has the warning first in the caller's
channel, then each side's tone at its frequency in its own channel for as long as it was sent,
and its row in `recordings`. sox reads the file as the box says it is (G.711 in WAV).
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from array import array
from pathlib import Path
from typing import Any

from firmware.media import g711, prompts
from firmware.media.recorder import HEADER_BYTES, read_header
from firmware.media.recorder_store import recordings_dir
from firmware.recording import PROMPT_RECORDING_WARNING
from tests.e2e.linebox import DAEMON_WAIT_S, LineboxProcess, base_config, running_linebox
from tests.e2e.media import RtpListener, crossings_per_s, scenario, tone_file
from tests.e2e.sipp import free_port
from tests.e2e.test_calls import PROVIDER_IP, provider_call, start_agent

CALLER = "79161234567"
CALLER_HZ = 440
MEMBER_HZ = 1000
TALK_S = 3.0
WARNING_PCM = prompts.prompt("en", PROMPT_RECORDING_WARNING)
WARNING_S = len(WARNING_PCM) / 2 / 8000


def recording_config(channels: str = "stereo") -> dict[str, Any]:
    config = base_config(site={"language": "en"})
    config["recording"] = {"departments": {"200": "all"}, "channels": channels}
    return config


def recorded_call(tmp_path: Path, config: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """One call the provider makes to department 200, agent 101 answering; its recording's row
    and file."""
    caller_ear = RtpListener(PROVIDER_IP)
    member_ear = RtpListener("127.0.0.1")
    try:
        with running_linebox(tmp_path / "linebox", config) as linebox:
            with start_agent(
                linebox, "101", tmp_path,
                scenario=str(scenario(tmp_path, "agent_answer_rtp.template.xml",
                                      audio=tone_file(tmp_path, TALK_S, MEMBER_HZ))),
                variables={"rtp_port": member_ear.port}, timeout_s=60,
            ) as agent:
                talked = provider_call(
                    linebox, tmp_path, name="caller", timeout_s=60,
                    scenario=scenario(tmp_path, "provider_queue_talk.template.xml",
                                      audio=tone_file(tmp_path, TALK_S, CALLER_HZ)),
                    variables={"caller_id": CALLER, "rtp_port": caller_ear.port,
                               "talk_ms": int((TALK_S + 0.5) * 1000)},
                    extra_args=["-mp", str(free_port(PROVIDER_IP))],
                ).run()
                answered = agent.wait()
            assert talked.ok, talked.describe()
            assert answered.ok, answered.describe()
            [call] = linebox.wait_for(linebox.calls, DAEMON_WAIT_S, "the call record")
            db = linebox.db
            row = linebox.wait_for(lambda: _recording_row(db, call["id"]), DAEMON_WAIT_S,
                                   "the recording closed")
    finally:
        caller_ear.close()
        member_ear.close()
    assert (call["outcome"], call["answered_by"]) == ("answered", "101")
    # The caller heard the warning before anything else (the 183's early media).
    heard = caller_ear.audio()
    warning = g711.pcm_samples(g711.ulaw_decode(g711.ulaw_encode(WARNING_PCM)))
    assert heard.tobytes().find(warning[800:2400].tobytes()) >= 0, "no warning heard"
    return row, recordings_dir(db) / row["file"]


def _recording_row(db: Path, call_id: str) -> dict[str, Any] | None:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM recordings WHERE call_id = ? AND state = 'done'",
                           (call_id,)).fetchone()
    return dict(row) if row is not None else None


def channels_of(path: Path) -> tuple[int, list[array[int]]]:
    data = path.read_bytes()
    info = read_header(data)
    assert len(data) == HEADER_BYTES + info.data_bytes  # the header's sizes fixed up
    body = data[HEADER_BYTES:]
    decode = g711.ulaw_decode if info.codec == "PCMU" else g711.alaw_decode
    return info.channels, [g711.pcm_samples(decode(body[i::info.channels]))
                           for i in range(info.channels)]


def loud_span(samples: array[int], start: int) -> tuple[int, int]:
    """The first and last 10 ms window past `start` with a tone's loudness in it."""
    loud = [i for i in range(start, len(samples) - 80, 80)
            if max(abs(s) for s in samples[i:i + 80]) > 1500]
    return (loud[0], loud[-1] + 80) if loud else (0, 0)


def sox_duration_s(path: Path) -> float:
    result = subprocess.run(["sox", "--i", "-D", str(path)], capture_output=True, text=True,
                            timeout=10, check=True)
    return float(result.stdout)


def sox_frequency_hz(path: Path, channel: int, start_s: float, length_s: float) -> float:
    """sox's rough frequency of one channel of the file over a stretch."""
    result = subprocess.run(["sox", str(path), "-n", "trim", f"{start_s:.3f}", f"{length_s:.3f}",
                             "remix", str(channel), "stat"], capture_output=True, text=True,
                            timeout=10, check=True)
    line = next(row for row in result.stderr.splitlines() if row.startswith("Rough"))
    return float(line.split(":")[1])


def test_a_recorded_call_has_the_warning_first_then_both_sides_in_their_channels(
    tmp_path: Path,
) -> None:
    row, path = recorded_call(tmp_path, recording_config())
    channels, (caller, member) = channels_of(path)
    assert (channels, row["channels"], row["codec"]) == (2, 2, "PCMU")
    assert abs(sox_duration_s(path) - row["duration_s"]) < 0.05
    assert row["bytes"] == path.stat().st_size
    # The caller's channel begins with the warning, sample for sample (µ-law both ways).
    warning = g711.pcm_samples(g711.ulaw_decode(g711.ulaw_encode(WARNING_PCM)))
    assert caller[:len(warning)].tobytes() == warning.tobytes()
    assert max(abs(s) for s in member[:len(warning)]) < 100  # nobody else yet
    # Then each tone in its own channel, at its frequency, as long as it was sent.
    for samples, hz in ((caller, CALLER_HZ), (member, MEMBER_HZ)):
        first, last = loud_span(samples, len(warning) + 800)
        assert abs((last - first) / 8000 - TALK_S) < 0.25, (hz, first, last)
        middle = (first + last) // 2
        assert abs(crossings_per_s(samples[middle - 4000:middle + 4000]) - hz) <= 5
    # And only there: the member's tone is not in the caller's channel.
    first, last = loud_span(member, len(warning) + 800)
    middle = (first + last) // 2
    # sox reads the file the same: each channel's tone at its frequency (its "rough" one).
    assert abs(sox_frequency_hz(path, 1, middle / 8000 - 0.5, 1.0) - CALLER_HZ) <= 0.05 * CALLER_HZ
    assert abs(sox_frequency_hz(path, 2, middle / 8000 - 0.5, 1.0) - MEMBER_HZ) <= 0.05 * MEMBER_HZ
    assert abs(crossings_per_s(caller[middle - 4000:middle + 4000]) - MEMBER_HZ) > 100
    assert row["duration_s"] >= WARNING_S + TALK_S


def test_mono_mixes_both_sides_into_one_channel(tmp_path: Path) -> None:
    row, path = recorded_call(tmp_path, recording_config("mono"))
    channels, (mixed,) = channels_of(path)
    assert (channels, row["channels"]) == (1, 1)
    warning = g711.pcm_samples(g711.ulaw_decode(g711.ulaw_encode(WARNING_PCM)))
    assert mixed[:len(warning)].tobytes() == warning.tobytes()
    first, last = loud_span(mixed, len(warning) + 800)
    assert abs((last - first) / 8000 - TALK_S) < 0.5
    assert abs(sox_duration_s(path) - row["duration_s"]) < 0.05


LONG_TALK_S = 10.0


def test_a_recording_cut_off_by_a_power_cut_is_mended_at_the_next_start(tmp_path: Path) -> None:
    """SIGKILL in the middle of a recorded call (no clean stop, as a power cut): the file on disk
    holds the audio up to about the last second, with the header still saying "empty"; the next
    start mends the header from the file's length and marks the row 'repaired'."""
    workdir = tmp_path / "linebox"
    caller_ear = RtpListener(PROVIDER_IP)
    member_ear = RtpListener("127.0.0.1")
    linebox = LineboxProcess(workdir, recording_config())
    try:
        with start_agent(
            linebox, "101", tmp_path,
            scenario=str(scenario(tmp_path, "agent_answer_rtp.template.xml",
                                  audio=tone_file(tmp_path, LONG_TALK_S, MEMBER_HZ))),
            variables={"rtp_port": member_ear.port}, timeout_s=60,
        ) as agent, provider_call(
            linebox, tmp_path, name="caller", timeout_s=60,
            scenario=scenario(tmp_path, "provider_queue_talk.template.xml",
                              audio=tone_file(tmp_path, LONG_TALK_S, CALLER_HZ)),
            variables={"caller_id": CALLER, "rtp_port": caller_ear.port,
                       "talk_ms": int(LONG_TALK_S * 1000)},
            extra_args=["-mp", str(free_port(PROVIDER_IP))],
        ).start() as caller:
            db = linebox.db
            folder = recordings_dir(db)
            # The warning, then about three seconds of talk on disk.
            wanted = HEADER_BYTES + 2 * 8000 * (WARNING_S + 3.0)
            files = linebox.wait_for(
                lambda: [p for p in folder.rglob("*.wav") if p.stat().st_size >= wanted],
                30, "three seconds of the call on disk")
            linebox.popen.send_signal(signal.SIGKILL)
            linebox.popen.wait(timeout=10)
            caller.kill()
            agent.kill()
        [path] = files
        on_disk = path.read_bytes()
        assert read_header(on_disk).data_bytes == 0  # the header was not fixed up
        cut_bytes = len(on_disk)
        again = LineboxProcess(workdir, None, port=linebox.port)
        try:
            row = again.wait_for(lambda: _row_in_state(db, "repaired"), 10, "the repair")
        finally:
            assert again.stop() == 0
    finally:
        caller_ear.close()
        member_ear.close()
        if linebox.popen.poll() is None:
            linebox.stop()
    assert recordings_dir(db) / row["file"] == path
    channels, (caller_side, member_side) = channels_of(path)  # header and length agree now
    assert channels == 2
    assert path.stat().st_size in (cut_bytes, cut_bytes - 1)  # a half frame at most dropped
    assert row["duration_s"] == round((path.stat().st_size - HEADER_BYTES) / 2 / 8000, 2)
    warning = g711.pcm_samples(g711.ulaw_decode(g711.ulaw_encode(WARNING_PCM)))
    assert caller_side[:len(warning)].tobytes() == warning.tobytes()
    first, last = loud_span(caller_side, len(warning) + 800)
    assert last - first >= 2 * 8000  # the talk up to the cut is kept
    middle = (first + last) // 2
    assert abs(crossings_per_s(caller_side[middle - 4000:middle + 4000]) - CALLER_HZ) <= 5
    assert abs(crossings_per_s(member_side[middle - 4000:middle + 4000]) - MEMBER_HZ) <= 5


def _row_in_state(db: Path, state: str) -> dict[str, Any] | None:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM recordings WHERE state = ?", (state,)).fetchone()
    return dict(row) if row is not None else None
