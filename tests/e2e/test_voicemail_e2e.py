"""Voicemail end to end with real SIPp peers and real RTP on loopback.

The caller is SIPp: it streams a 440 Hz tone from a raw u-law file (SIPp's rtp_stream) and
presses keys with SIPp's own recorded RFC 4733 packets (/usr/share/sip-tester/*.pcap). The
caller's SDP points the box's RTP at a socket this test holds, so what the caller would hear
(the greeting, the tone) is checked too. The message must reach the database as a WAV file
holding the caller's tone.
"""

from __future__ import annotations

import io
import sqlite3
import time
import wave
from array import array
from contextlib import closing
from pathlib import Path
from typing import Any

from firmware.media import g711, prompts
from tests.e2e.linebox import DAEMON_WAIT_S, LineboxProcess, base_config, running_linebox
from tests.e2e.media import RtpListener, crossings_per_s, scenario, tone_file
from tests.e2e.sipp import Sipp, free_port, wait_until_bound
from tests.e2e.test_calls import DID, PROVIDER_IP, provider_call, wait_for_records

CALLER = "79161234567"
TONE_HZ = 440
SPEAK_S = 3.0
# What a restarted box has left of a saved callback request's wait: time enough to start
# and put the request back in its queue, so that its own timer expires it. A start is ~0.6 s
# on a quiet machine and was measured at 6 s on two cores shared with a full test run; with
# 5 s left a slow start found the request expired already (no queue to see it in).
LEFT_AFTER_RESTART_S = 12.0
# The customer's SIPp lives through the restart, the rest of the wait, the apology, the key,
# the message (~25 s here under load): SIPp's own bound, it ends when the call does.
CUSTOMER_TIMEOUT_S = 60


def voicemails(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM voicemails ORDER BY id")]


def waiting(linebox: LineboxProcess) -> list[dict[str, Any]]:
    return [entry for queue in linebox.status()["queues"] for entry in queue["waiting"]]


def bring_expiry_forward(db: Path, left_s: float) -> None:
    """Make the one saved callback request (the box stopped) expire `left_s` from now, as if
    the box had been off for the rest of its wait: it came in that much earlier too."""
    with closing(sqlite3.connect(db)) as conn, conn:
        [(expires_at,)] = conn.execute("SELECT expires_at FROM callback_requests").fetchall()
        earlier_s = expires_at - (time.time() + left_s)
        conn.execute("UPDATE callback_requests SET entered_at = entered_at - ?, "
                     "expires_at = expires_at - ?", (earlier_s, earlier_s))


def wav_samples(data: bytes) -> array[int]:
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        return g711.pcm_samples(wav.readframes(wav.getnframes()))


def test_a_caller_leaves_a_message_heard_back_from_the_database(tmp_path: Path) -> None:
    config = base_config(site={"language": "en"})
    # Nobody on line in department 200 (no phone registered): straight to its mailbox.
    config["departments"][0]["no_answer"] = {"action": "voicemail"}
    greeting_s = len(prompts.prompt("en", "voicemail_greeting")) / 16000
    listener = RtpListener(PROVIDER_IP)
    try:
        with running_linebox(tmp_path / "linebox", config) as linebox:
            caller = provider_call(
                linebox, tmp_path, name="caller",
                scenario=scenario(tmp_path, "provider_voicemail.template.xml",
                                  audio=tone_file(tmp_path, SPEAK_S, TONE_HZ),
                                  dtmf="dtmf_2833_pound.pcap"),
                variables={"caller_id": CALLER, "rtp_port": listener.port,
                           "listen_ms": int((greeting_s + 0.5 + 0.5) * 1000),
                           "speak_ms": int(SPEAK_S * 1000)},
                extra_args=["-mp", str(free_port(PROVIDER_IP))],
            ).run()
            assert caller.ok, caller.describe()
            rows = linebox.wait_for(lambda: voicemails(linebox.db), DAEMON_WAIT_S, "the message")
            calls = linebox.wait_for(linebox.calls, DAEMON_WAIT_S, "the call record")
    finally:
        listener.close()

    [message] = rows
    assert (message["mailbox"], message["caller"], message["heard"]) == ("200", CALLER, 0)
    # The tone streamed for 3 s; the message ends at the # (a few frames of leeway).
    assert SPEAK_S - 0.2 <= message["duration_s"] <= SPEAK_S + 0.6
    recorded = wav_samples(message["audio"])
    assert abs(crossings_per_s(recorded[4000:20000]) - TONE_HZ) <= 5
    [call] = calls
    assert (call["outcome"], call["department"], call["end_cause"]) == (
        "voicemail", "200", "hangup by the box")

    heard = listener.audio()
    greeting = g711.pcm_samples(g711.ulaw_decode(g711.ulaw_encode(
        prompts.prompt("en", "voicemail_greeting"))))
    start = heard.tobytes().find(greeting[1000:1400].tobytes())
    assert start >= 0, "the caller did not hear the greeting"
    beep_at = start // 2 - 1000 + len(greeting)
    assert abs(crossings_per_s(heard[beep_at + 400:beep_at + 3600]) - 1000) <= 10


def test_an_expired_callback_calls_back_to_apologise_and_takes_a_message(
    tmp_path: Path,
) -> None:
    customer_port = free_port(PROVIDER_IP)
    config = base_config()  # Russian prompts, the default
    config["trunks"][0]["port"] = customer_port
    config["departments"] = [{
        "number": "200", "name": "Sales", "strategy": "ring_all", "ring_timeout_s": 20,
        "members": ["101"],
        "queue": {"max_callers": 5, "max_wait_s": 60,
                  "callback": {"key": "1", "expire_s": 60}},
    }]
    apology_s = len(prompts.prompt("ru", "callback_apology")) / 16000
    workdir = tmp_path / "linebox"
    with running_linebox(workdir, config) as linebox:
        answer = linebox.control({"command": "agent", "extension": "101", "status": "break"})
        assert answer["ok"], answer
        caller = provider_call(
            linebox, tmp_path, scenario="provider_callback_request.xml",
            variables={"caller_id": CALLER}, name="caller",
        ).run()
        assert caller.ok, caller.describe()
        linebox.wait_for(lambda: waiting(linebox), DAEMON_WAIT_S,
                         "the callback request in the queue")
        wait_for_records(linebox, 1)
    # Nobody comes back on line. Rather than wait out the minute, the box is off for most of
    # it: the saved request comes back with a few seconds left and the box's own timer expires
    # it (the full minute, stepped: tests/core/test_voicemail.py::
    # test_an_expired_callback_calls_the_customer_and_takes_a_message_on_key_1).
    listener = RtpListener(PROVIDER_IP)
    try:
        customer_sipp = Sipp(
            scenario=scenario(tmp_path, "customer_apology.template.xml",
                              audio=tone_file(tmp_path, SPEAK_S, TONE_HZ),
                              dtmf="dtmf_2833_1.pcap"),
            local_ip=PROVIDER_IP, local_port=customer_port, calls=1,
            timeout_s=CUSTOMER_TIMEOUT_S, trace_dir=tmp_path, name="customer",
            variables={"rtp_port": listener.port,
                       "listen_ms": int((apology_s + 0.5) * 1000),
                       "speak_ms": int(SPEAK_S * 1000)},
            extra_args=["-mp", str(free_port(PROVIDER_IP))],
        )
        with customer_sipp.start() as customer:
            assert wait_until_bound(customer_port, PROVIDER_IP), customer.wait(0).describe()
            # The customer's phone is ready: the rest of the wait starts now, the restart in it.
            bring_expiry_forward(workdir / "linebox.db", LEFT_AFTER_RESTART_S)
            expires = time.monotonic() + LEFT_AFTER_RESTART_S
            with running_linebox(workdir, config) as linebox:
                back = linebox.wait_for(lambda: waiting(linebox), expires - time.monotonic(),
                                        "the request back in its queue before it expires")
                assert [(e["caller"], e["callback"]) for e in back] == [(CALLER, True)]
                apologised = customer.wait()
                assert apologised.ok, apologised.describe()
                rows = linebox.wait_for(lambda: voicemails(linebox.db), DAEMON_WAIT_S,
                                        "the message")
                calls = linebox.wait_for(lambda: len(c := linebox.calls()) >= 2 and c,
                                         DAEMON_WAIT_S, "the call records")
    finally:
        listener.close()

    [message] = rows
    assert (message["mailbox"], message["caller"]) == ("200", CALLER)
    # The customer hangs up after streaming 3 s; the recording started at the tone.
    assert SPEAK_S - 0.3 <= message["duration_s"] <= SPEAK_S + 1.5
    recorded = wav_samples(message["audio"])
    tone_start = next(i for i, s in enumerate(recorded) if abs(s) > 2000)
    assert abs(crossings_per_s(recorded[tone_start + 800:tone_start + 16800]) - TONE_HZ) <= 5
    origin, apology = calls
    assert (origin["outcome"], origin["callback_state"]) == ("callback", "expired")
    assert (apology["direction"], apology["source"], apology["outcome"]) == (
        "callback", "apology", "voicemail")
    assert [leg["target"] for leg in apology["legs"]] == [CALLER]
    assert len(listener.audio()) >= 8000 * apology_s * 0.9  # the apology was heard


_ = DID
