"""The interop matrix (issue 14): Debian's softphones, driven headless, against the real daemon.

Each test is one feature of an office phone, run once per client that can do it: baresip 1.0.0
over its control socket (tests/e2e/baresip.py) and linphonec 5.1 over its standard input
(tests/e2e/linphone.py). SIPp's row of the matrix is the SIPp tests of the features
(test_calls.py, test_hold_e2e.py, test_transfer_e2e.py, test_pickup_e2e.py, test_blf_e2e.py);
README.md's "Tested with" table names them all, and test_interop_table.py keeps the table and
these tests in step.

Every phone speaks a tone of its own from a WAV file and records what it hears. A tone is found
in a recording by sox (its `stat` effect's rough frequency over a stretch of the recording) and,
block by block, by a Goertzel filter (tests/e2e/media.py), which also tells the box's music on
hold apart: a piece of the built-in tune found sample for sample in what the phone decoded.
RTP is counted at both ends by the clients themselves (baresip's audio debug, liblinphone's RTP
statistics).

baresip 1.0.0 drops its recording filter from the receive path when a re-INVITE changes the
media (its `sndfile` stops at a hold or a transfer), so where a test must hear a phone after a
re-INVITE, that phone is a linphonec: the held party of a hold, the transferred caller of a
transfer, the caller whose ringing call is picked up. The client under test is the one that
presses the key (hold, transfer, the pickup code), and the transfer target, whose display must
show the caller's number.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware.media import g711, prompts
from tests.e2e.baresip import Baresip, account_line
from tests.e2e.linebox import AGENT_PASSWORDS, LineboxProcess, base_config, running_linebox
from tests.e2e.linphone import Linphonec, linphonec_version
from tests.e2e.media import SAMPLE_RATE_HZ, read_wav, tone_share, tone_wav

CLIENTS = ("baresip", "linphonec")
TONE_FILE_S = 60.0  # longer than any call here
TONES_HZ = {"101": 600.0, "102": 1000.0, "103": 1400.0, "104": 800.0}
REGISTER_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 15.0
TALK_S = 2.5  # each stretch of a call (talk, hold, after the resume, after a transfer)
BLOCK_SAMPLES = 400  # 50 ms
TONE_SHARE = 0.9  # a block "is" a tone when the tone holds this share of its energy
SOX_TOLERANCE_HZ = 5.0  # two of sox's bins
PACKETS_PER_S = 50  # 20 ms G.711 frames
SILENCE_RMS = 300.0  # below this a block is silence (a tone here has an RMS of ~4200)


# --- phones -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RtpCounts:
    """RTP packets a phone sent, and received, as the client counts them."""

    sent: int
    received: int
    # Packets received per source "host:port", where the client tells them apart.
    sources: tuple[tuple[str, int], ...] = ()


BARESIP_SENT_RE = re.compile(r"TX: packets=(\d+)")
BARESIP_MEMBER_RE = re.compile(r"IP=([\d.]+):(\d+) psent=\d+ rcvd=(\d+)")


class BaresipPhone:
    """baresip's menu commands over its control socket; the call events it sends."""

    def __init__(self, phone: Baresip, user: str) -> None:
        self.phone = phone
        self.user = user
        self.last_counts: RtpCounts | None = None

    def dial(self, number: str) -> None:
        self.phone.command("dial", number)

    def wait_incoming(self) -> str:
        """Who the call is from, as the phone shows it (an auto-answering baresip 1.0.0 sends
        no CALL_INCOMING: its first event of the call names the caller as well)."""
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while not (events := [e for e in self.phone.events()
                              if e.get("class") == "call" and e.get("peeruri")]):
            assert time.monotonic() < deadline, (
                f"no call at baresip {self.user} in {CALL_TIMEOUT_S} s:\n{self.phone.log()}")
            time.sleep(0.05)
        return str(events[0]["peeruri"])

    def answer(self) -> None:
        self.phone.command("accept")

    def wait_established(self, calls: int = 1) -> None:
        self.phone.wait_for_event("CALL_ESTABLISHED", CALL_TIMEOUT_S)
        assert len(self.phone.events("CALL_ESTABLISHED")) == calls

    def hold(self) -> None:
        self.phone.command("hold")

    def resume(self) -> None:
        self.phone.command("resume")

    def transfer(self, number: str) -> None:
        self.phone.command("transfer", number)

    def hang_up(self) -> None:
        self.phone.command("hangup")

    def wait_closed(self) -> None:
        self.phone.wait_for_event("CALL_CLOSED", CALL_TIMEOUT_S)

    def recording(self) -> Path:
        return self.phone.recording("dec")

    def rtp_counts(self) -> RtpCounts:
        """Packets sent, and received per source, in the call so far (the audio stream's RTCP
        session as `audio_debug` prints it; asked while the call is up)."""
        debug = self.phone.command("audio_debug")
        sent = BARESIP_SENT_RE.search(debug)
        assert sent, debug
        sources = tuple((f"{host}:{port}", int(count))
                        for host, port, count in BARESIP_MEMBER_RE.findall(debug))
        self.last_counts = RtpCounts(sent=int(sent.group(1)),
                                     received=sum(n for _, n in sources), sources=sources)
        return self.last_counts

    def stop(self) -> None:
        self.phone.stop()


LINPHONE_INCOMING_RE = r"Receiving new incoming call from (\S+), assigned id (\d+)"
LINPHONE_STATS_RE = re.compile(
    r"ortp-message-sent\s+(\d+) packets.*?ortp-message-received\s+(\d+) packets", re.S)


class LinphonePhone:
    """linphonec's commands on its standard input; the states it prints."""

    def __init__(self, phone: Linphonec, user: str) -> None:
        self.phone = phone
        self.user = user

    def dial(self, number: str) -> None:
        self.phone.command(f"call {number}")

    def wait_incoming(self) -> str:
        return self.phone.wait_for_line(LINPHONE_INCOMING_RE, CALL_TIMEOUT_S).group(1)

    def answer(self) -> None:
        self.phone.command("answer")

    def wait_established(self, calls: int = 1) -> None:
        """`calls` calls of this phone connected so far."""
        self._wait_count(re.compile(r"Call \d+ (with|to) .* connected\."), calls)

    def _wait_count(self, pattern: re.Pattern[str], count: int) -> None:
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while len([line for line in self.phone.output().splitlines()
                   if pattern.search(line)]) < count:
            assert time.monotonic() < deadline, (
                f"linphonec {self.user}: not {count} lines like {pattern.pattern!r} in "
                f"{CALL_TIMEOUT_S} s:\n{self.phone.output()[-3000:]}")
            time.sleep(0.05)

    def hold(self) -> None:
        since = self.phone.mark()
        self.phone.command("pause")
        self.phone.wait_for_line(r"is now paused\.", CALL_TIMEOUT_S, since)

    def resume(self) -> None:
        since = self.phone.mark()
        self.phone.command("resume")
        self.phone.wait_for_line(r"Media streams established", CALL_TIMEOUT_S, since)

    def transfer(self, number: str) -> None:
        """Blind transfer of the phone's first call (`transfer ID URI`: the call may be
        paused, when linphonec has no current call)."""
        since = self.phone.mark()
        self.phone.command(f"transfer 1 {number}")
        self.phone.wait_for_line(r"has been transfered", CALL_TIMEOUT_S, since)

    def list_calls(self) -> str:
        """linphonec's `calls`: a line per call, its id, the other party and its state."""
        since = self.phone.mark()
        self.phone.command("calls")
        self.phone.wait_for_line(r"^\s*\d+\s*\|", CALL_TIMEOUT_S, since)
        time.sleep(0.2)  # the rest of the table
        return "\n".join(self.phone.output().splitlines()[since:])

    def attended_transfer(self, *, held: int, consultation: int) -> None:
        """Transfer call `held` to the other party of call `consultation` (linphonec's
        `transfer ID --to-call ID`: a REFER whose Refer-To carries Replaces, RFC 3891)."""
        self.phone.command(f"transfer {held} --to-call {consultation}")

    def hang_up(self) -> None:
        self.phone.command("terminate")

    def wait_closed(self, calls: int = 1) -> None:
        """`calls` calls of this phone ended so far."""
        self._wait_count(re.compile(r"Call \d+ with .* ended"), calls)

    def recording(self) -> Path:
        return self.phone.recording_path

    def rtp_counts(self) -> RtpCounts:
        """Packets sent and received in the last call that ended (liblinphone's RTP
        statistics of its audio session, logged when the stream stops)."""
        found = LINPHONE_STATS_RE.findall(self.phone.log())
        assert found, f"no RTP statistics in {self.phone.log_path}"
        sent, received = found[-1]
        return RtpCounts(sent=int(sent), received=int(received))

    def stop(self) -> None:
        self.phone.stop()


# What a test does with a phone, whichever client it is.
Phone = BaresipPhone | LinphonePhone


def digest_config(client: str) -> dict[str, Any]:
    """base_config, with MD5 alone offered where baresip registers: baresip 1.0.0 gives up on
    a 401 that offers an algorithm it does not know beside MD5 (see test_baresip_e2e.py)."""
    config = base_config(site={"language": "en"})
    if client == "baresip":
        config["sip"] = {"digest_algorithms": ["MD5"]}
    return config


@contextmanager
def phone(client: str, box: LineboxProcess, user: str, workdir: Path, *,
          auto_answer: bool = False) -> Iterator[Phone]:
    """A registered phone of `client` as extension `user`, speaking its tone."""
    source = tone_wav(workdir / f"tone{user}.wav", TONE_FILE_S, TONES_HZ[user])
    directory = workdir / f"{client}{user}"
    directory.mkdir(parents=True, exist_ok=True)
    adapter: Phone
    if client == "baresip":
        adapter = BaresipPhone(Baresip(
            directory, account=account_line(user, box.address, AGENT_PASSWORDS[user],
                                            auto_answer=auto_answer),
            audio_source=source), user)
    else:
        adapter = LinphonePhone(Linphonec(
            directory, user=user, registrar=box.address, password=AGENT_PASSWORDS[user],
            audio_source=source, auto_answer=auto_answer), user)
    try:
        box.wait_for(lambda: user in registered(box), REGISTER_TIMEOUT_S,
                     f"{client} {user} registered")
        if isinstance(adapter, LinphonePhone):  # and the phone agrees
            adapter.phone.wait_until_registered(REGISTER_TIMEOUT_S)
        yield adapter
    finally:
        adapter.stop()


def registered(box: LineboxProcess) -> dict[str, dict[str, Any]]:
    return {r["extension"]: r for r in box.status()["registrations"]}


# --- what was heard -----------------------------------------------------------------------

SOX_BIN_RE = re.compile(r"^(\d+\.\d+)\s+(\d+(?:\.\d+)?)$", re.M)
SOX_RMS_RE = re.compile(r"RMS\s+amplitude:\s+([\d.]+)")


def sox_frequency_hz(recording: Path, start_s: float, length_s: float) -> float:
    """The strongest frequency in `length_s` of the recording from `start_s`, by sox: its
    `stat -freq` prints the power spectrum of each 4096-sample window (bins of ~2 Hz at
    8 kHz), summed here per bin. A silent stretch fails the test rather than pass as 0 Hz."""
    sox = shutil.which("sox")
    assert sox, ("sox is not installed: install the Debian package sox, e.g. `make deb-test` "
                 "or `apt-get install sox`")
    result = subprocess.run(
        [sox, str(recording), "-n", "trim", f"{start_s:.3f}", f"{length_s:.3f}",
         "stat", "-freq"],
        capture_output=True, text=True, timeout=30, check=True)
    rms = SOX_RMS_RE.search(result.stderr)
    assert rms, result.stderr[-2000:]
    assert float(rms.group(1)) * 32768 > SILENCE_RMS, f"silence in {recording} at {start_s} s"
    power: dict[float, float] = {}
    for frequency, value in SOX_BIN_RE.findall(result.stderr):
        power[float(frequency)] = power.get(float(frequency), 0.0) + float(value)
    assert power, result.stderr[-2000:]
    return max(power, key=lambda f: power[f])


HOLD_MUSIC = g711.pcm_samples(g711.ulaw_decode(g711.ulaw_encode(
    prompts.prompt("en", "hold_music")))).tobytes()


def labels(recording: Path, tones_hz: dict[str, float]) -> list[str]:
    """Per 50 ms block: the name of the tone it holds, "music" when it starts with 10 ms of the
    box's built-in music on hold (sample for sample, as G.711 carries it), "-" for anything else
    (silence, the edges of a change)."""
    samples = read_wav(recording)
    names = []
    for i in range(0, len(samples) - BLOCK_SAMPLES + 1, BLOCK_SAMPLES):
        block = samples[i:i + BLOCK_SAMPLES]
        name = next((n for n, hz in tones_hz.items() if tone_share(block, hz) >= TONE_SHARE),
                    "-")
        if name == "-" and max(abs(s) for s in block) > SILENCE_RMS and (
                HOLD_MUSIC.find(block[:80].tobytes()) >= 0):
            name = "music"
        names.append(name)
    return names


@dataclass(frozen=True, kw_only=True)
class Run:
    name: str
    start_s: float
    length_s: float


def runs(names: list[str], min_s: float = 0.5) -> list[Run]:
    """The stretches of one label, in order ("-" left out), each at least `min_s` long once
    stretches of the same label with only "-" between them are joined (a late or lost packet
    the client's concealment fills in is not a change of sound)."""
    block_s = BLOCK_SAMPLES / SAMPLE_RATE_HZ
    joined: list[tuple[str, int, int]] = []  # name, first block, last block
    for i, name in enumerate(names):
        if name == "-":
            continue
        if joined and joined[-1][0] == name:
            joined[-1] = (name, joined[-1][1], i)
        else:
            joined.append((name, i, i))
    kept: list[tuple[str, int, int]] = []
    for name, first, last in joined:
        if (last - first + 1) * block_s < min_s:
            continue  # a blip (a block that happens to pass for another sound)
        if kept and kept[-1][0] == name:
            first = kept.pop()[1]
        kept.append((name, first, last))
    return [Run(name=name, start_s=first * block_s, length_s=(last - first + 1) * block_s)
            for name, first, last in kept]


def assert_heard(recording: Path, expected: list[str], tones_hz: dict[str, float]) -> list[Run]:
    """The recording is, in order, the stretches named (each at least half a second), and each
    tone's stretch is at its frequency by sox too."""
    found = runs(labels(recording, tones_hz))
    assert [r.name for r in found] == expected, (recording, found)
    for run in found:
        if run.name in tones_hz:
            # The middle of the stretch: its edges may hold the change from one sound to another.
            heard = sox_frequency_hz(recording, run.start_s + 0.1, run.length_s - 0.2)
            assert abs(heard - tones_hz[run.name]) <= SOX_TOLERANCE_HZ, (recording, run, heard)
    return found


def talk(box: LineboxProcess, seconds: float = TALK_S) -> None:
    """Let the call run for `seconds` (its audio is what is tested), the daemon up all along."""
    time.sleep(seconds)
    assert box.popen.poll() is None, box.log()[-3000:]


def record_of_the_call(box: LineboxProcess) -> dict[str, Any]:
    (record,) = box.wait_for(lambda: [c for c in box.calls() if c["ended_at"]], 10,
                             "the call's record")
    return dict(record)


# --- the matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_registers_with_digest_auth(client: str, tmp_path: Path) -> None:
    with (
        running_linebox(tmp_path / "box", digest_config(client)) as box,
        phone(client, box, "101", tmp_path),
    ):
        registration = registered(box)["101"]
    version = client_version(client)
    assert version in registration["user_agent"], (version, registration)
    assert registration["contact"].startswith("sip:101")
    assert registration["source"].startswith("udp:127.0.0.1:")


def client_version(client: str) -> str:
    """The version the client reports of itself, as the README's table must show it."""
    if client == "linphonec":
        return linphonec_version()
    result = subprocess.run(["baresip", "-h"], capture_output=True, text=True, timeout=10,
                            check=False)
    match = re.search(r"baresip v(\S+)", result.stdout + result.stderr)
    assert match, result
    return match.group(1)


@pytest.mark.parametrize("client", CLIENTS)
def test_calls_a_department_a_colleague_answers_and_hangs_up(
    client: str, tmp_path: Path,
) -> None:
    with (
        running_linebox(tmp_path / "box", digest_config(client)) as box,
        phone(client, box, "102", tmp_path) as colleague,
        phone(client, box, "101", tmp_path) as caller,
    ):
        caller.dial("200")
        shown = colleague.wait_incoming()
        assert shown.startswith("sip:101@"), shown
        colleague.answer()
        caller.wait_established()
        colleague.wait_established()
        assert [c["state"] for c in box.status()["calls"]] == ["answered"]
        colleague.hang_up()
        colleague.wait_closed()
        caller.wait_closed()
        record = record_of_the_call(box)
        assert box.status()["calls"] == []
    assert (record["caller"], record["dialed"], record["department"], record["answered_by"],
            record["outcome"]) == ("101", "200", "200", "102", "answered")
    assert record["end_cause"] == "hangup by callee", record["end_cause"]


@pytest.mark.parametrize("client", CLIENTS)
def test_audio_flows_both_ways(client: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        box = stack.enter_context(running_linebox(tmp_path / "box", digest_config(client)))
        colleague = stack.enter_context(phone(client, box, "102", tmp_path, auto_answer=True))
        caller = stack.enter_context(phone(client, box, "101", tmp_path))
        caller.dial("200")
        caller.wait_established()
        colleague.wait_established()
        talk(box)
        during = [p.rtp_counts() for p in (caller, colleague) if isinstance(p, BaresipPhone)]
        caller.hang_up()
        caller.wait_closed()
        colleague.wait_closed()
        stack.close()  # the phones stop: their recordings are complete
        after = [p.rtp_counts() for p in (caller, colleague) if isinstance(p, LinphonePhone)]
    # Each end counted at least the call's talk time of packets, sent and received.
    least = int(PACKETS_PER_S * (TALK_S - 0.5))
    for counts in during + after:
        assert counts.sent >= least and counts.received >= least, counts
    tones = {"101": TONES_HZ["101"], "102": TONES_HZ["102"]}
    assert_heard(caller.recording(), ["102"], tones)
    assert_heard(colleague.recording(), ["101"], tones)


def talking_to_a_colleague(stack: ExitStack, client: str,
                           tmp_path: Path) -> tuple[LineboxProcess, Phone, Phone]:
    """The box, colleague 102 (the client under test, answering by itself) and caller 101 (a
    linphonec, whose recording survives re-INVITEs): 101 has called department 200, 102
    answered, and the two have talked for a while."""
    box = stack.enter_context(running_linebox(tmp_path / "box", digest_config(client)))
    colleague = stack.enter_context(phone(client, box, "102", tmp_path, auto_answer=True))
    caller = stack.enter_context(phone("linphonec", box, "101", tmp_path))
    caller.dial("200")
    caller.wait_established()
    colleague.wait_established()
    talk(box)
    return box, colleague, caller


@pytest.mark.parametrize("client", CLIENTS)
def test_hold_plays_the_box_music_then_resume_brings_back_the_colleague(
    client: str, tmp_path: Path,
) -> None:
    """The colleague (the client under test) puts the caller (linphonec) on hold, then
    resumes: the caller hears the colleague, the box's music, the colleague again."""
    with ExitStack() as stack:
        box, colleague, caller = talking_to_a_colleague(stack, client, tmp_path)
        colleague.hold()
        box.wait_for(lambda: [c["media"] for c in box.status()["calls"]] == ["anchored"],
                     CALL_TIMEOUT_S, "the box in the media path")
        talk(box)
        colleague.resume()
        talk(box)
        held = colleague.rtp_counts() if isinstance(colleague, BaresipPhone) else None
        caller.hang_up()
        caller.wait_closed()
        colleague.wait_closed()
        record = record_of_the_call(box)
        stack.close()
    tones = {"102": TONES_HZ["102"], "101": TONES_HZ["101"]}
    heard = assert_heard(caller.recording(), ["102", "music", "102"], tones)
    assert heard[1].length_s >= TALK_S - 1.0 and heard[2].length_s >= TALK_S - 1.0, heard
    assert isinstance(caller, LinphonePhone)
    counts = caller.rtp_counts()
    least = int(PACKETS_PER_S * (3 * TALK_S - 1.5))
    assert counts.received >= least, counts
    if held is not None:
        # baresip counted its own RTP: the talk before the hold and after the resume, both ways
        # (it cannot tell whose: the box relays the caller's stream keeping its SSRC).
        least = int(PACKETS_PER_S * (2 * TALK_S - 1.0))
        assert held.sent >= least and held.received >= least, held
    assert (record["answered_by"], record["outcome"], record["end_cause"]) == (
        "102", "answered", "hangup by caller")


def transfer_to_103(box: LineboxProcess, colleague: Phone, caller: Phone,
                    target: Phone) -> tuple[str, dict[str, Any]]:
    """The colleague transfers the caller blind to 103, which answers by itself; the two talk
    and the caller hangs up. Who 103 was shown the call from, and the call's record."""
    colleague.transfer("103")
    shown = target.wait_incoming()
    target.wait_established()
    colleague.wait_closed()
    talk(box)
    caller.hang_up()
    caller.wait_closed()
    target.wait_closed()
    return shown, record_of_the_call(box)


@pytest.mark.parametrize("client", CLIENTS)
def test_blind_transfer_reaches_the_target_showing_the_caller(
    client: str, tmp_path: Path,
) -> None:
    """The colleague (the client under test) transfers the caller (linphonec) to 103 (the
    client under test too): 103 rings showing 101, answers, and the two talk."""
    with ExitStack() as stack:
        box, colleague, caller = talking_to_a_colleague(stack, client, tmp_path)
        target = stack.enter_context(phone(client, box, "103", tmp_path, auto_answer=True))
        shown, record = transfer_to_103(box, colleague, caller, target)
        stack.close()
    assert shown.startswith("sip:101@"), shown
    tones = {name: TONES_HZ[name] for name in ("101", "102", "103")}
    assert_heard(caller.recording(), ["102", "103"], tones)
    assert_heard(target.recording(), ["101"], tones)
    assert (record["caller"], record["answered_by"], record["outcome"]) == (
        "101", "103", "answered")
    assert sorted((leg["target"], leg["result"]) for leg in record["legs"]) == [
        ("102", "answered"), ("103", "answered")]


@pytest.mark.parametrize("client", CLIENTS)
def test_blind_transfer_of_a_caller_on_hold(client: str, tmp_path: Path) -> None:
    """The colleague (the client under test) puts the caller (linphonec) on hold, then
    transfers it to 103 (the client under test): the caller hears the colleague, the box's
    music, then 103; the box, in the media since the hold, carries the call on its ports."""
    with ExitStack() as stack:
        box, colleague, caller = talking_to_a_colleague(stack, client, tmp_path)
        target = stack.enter_context(phone(client, box, "103", tmp_path, auto_answer=True))
        colleague.hold()
        box.wait_for(lambda: [c["media"] for c in box.status()["calls"]] == ["anchored"],
                     CALL_TIMEOUT_S, "the box in the media path")
        talk(box)
        shown, record = transfer_to_103(box, colleague, caller, target)
        stack.close()
    assert shown.startswith("sip:101@"), shown
    tones = {name: TONES_HZ[name] for name in ("101", "102", "103")}
    assert_heard(caller.recording(), ["102", "music", "103"], tones)
    assert_heard(target.recording(), ["101"], tones)
    assert (record["caller"], record["answered_by"], record["outcome"]) == (
        "101", "103", "answered")


# baresip 1.0.0 cannot: its menu's only transfer command is a blind REFER (no Replaces).
ATTENDED_TRANSFER_CLIENTS = ("linphonec",)


@pytest.mark.parametrize("client", ATTENDED_TRANSFER_CLIENTS)
def test_attended_transfer_joins_the_caller_and_the_consulted_colleague(
    client: str, tmp_path: Path,
) -> None:
    """The colleague (the client under test) holds the caller (linphonec), calls 103 (the
    client under test), talks to it, then transfers the caller to that call (REFER with
    Replaces): the caller and 103 talk, the colleague is out of both calls."""
    with ExitStack() as stack:
        box, colleague, caller = talking_to_a_colleague(stack, client, tmp_path)
        target = stack.enter_context(phone(client, box, "103", tmp_path, auto_answer=True))
        assert isinstance(colleague, LinphonePhone) and isinstance(target, LinphonePhone)
        colleague.hold()
        colleague.dial("103")
        shown = target.wait_incoming()
        target.wait_established()
        colleague.wait_established(calls=2)
        talk(box)
        colleague.attended_transfer(held=1, consultation=2)
        colleague.wait_closed(calls=2)
        talk(box)
        listed = target.list_calls()
        caller.hang_up()
        caller.wait_closed()
        target.wait_closed()
        records = box.wait_for(lambda: len([c for c in box.calls() if c["ended_at"]]) == 2
                               and box.calls(), 10, "the two calls' records")
        assert box.status()["calls"] == []
        stack.close()
    # 103 was called by the colleague (the consultation), then talked to the caller, whose
    # number the box's re-INVITE told it (RFC 3325 P-Asserted-Identity: a dialog's From stays).
    # linphonec 5.1 still lists the colleague as the call's party (README's table says so).
    assert shown.startswith("sip:102@"), shown
    assert re.search(r"^1\s+\|\s+sip:102@", listed, re.M), listed
    assert re.search(r"^P-Asserted-Identity: <sip:101@", target.phone.log(), re.M), (
        "the target was not told the caller's number")
    tones = {name: TONES_HZ[name] for name in ("101", "102", "103")}
    assert_heard(caller.recording(), ["102", "music", "103"], tones)
    assert_heard(target.recording(), ["102", "101"], tones)
    customer = next(r for r in records if r["caller"] == "101")
    consultation = next(r for r in records if r["caller"] == "102")
    assert (customer["answered_by"], customer["outcome"]) == ("103", "answered"), customer
    assert sorted(leg["target"] for leg in customer["legs"]) == ["102", "103"], customer
    assert consultation["dialed"] == "103", consultation


@pytest.mark.parametrize("code", ["*8", "**102"])
@pytest.mark.parametrize("client", CLIENTS)
def test_pickup_takes_the_call_ringing_a_colleague(
    client: str, code: str, tmp_path: Path,
) -> None:
    """104 (linphonec) calls department 200, whose phones 101 and 102 ring unanswered; 103
    (the client under test), their colleague in department 300, dials the pickup code, and
    takes the call: the ringing stops, 103 and 104 talk."""
    config = digest_config(client)
    config["departments"].append({"number": "300", "name": "Office", "strategy": "ring_all",
                                  "ring_timeout_s": 20, "members": ["101", "102", "103"]})
    with ExitStack() as stack:
        box = stack.enter_context(running_linebox(tmp_path / "box", config))
        for member in ("101", "102"):
            stack.enter_context(phone(client, box, member, tmp_path))
        picker = stack.enter_context(phone(client, box, "103", tmp_path))
        caller = stack.enter_context(phone("linphonec", box, "104", tmp_path))
        caller.dial("200")
        box.wait_for(lambda: [c["ringing"] for c in box.status()["calls"]] == [["101", "102"]],
                     CALL_TIMEOUT_S, "the call ringing 101 and 102")
        picker.dial(code)
        picker.wait_established()
        caller.wait_established()
        talk(box)
        caller.hang_up()
        caller.wait_closed()
        picker.wait_closed()
        record = record_of_the_call(box)
        assert box.status()["calls"] == []
        stack.close()
    tones = {name: TONES_HZ[name] for name in ("103", "104")}
    assert_heard(caller.recording(), ["103"], tones)
    assert_heard(picker.recording(), ["104"], tones)
    assert (record["caller"], record["answered_by"], record["department"]) == (
        "104", "103", "200")
    assert sorted((leg["target"], leg["result"]) for leg in record["legs"]) == [
        ("101", "cancelled"), ("102", "cancelled"), ("103", "answered")]
