"""Run Linphone's console client, `linphonec` (Debian's linphone-cli), headless as a peer for
end-to-end tests.

`Linphonec` starts one linphonec with a private home directory (`HOME`: liblinphone keeps its
database under ~/.local/share/linphone and will not start its SIP stack without that folder) and
a configuration file (`-c`) with one account registering to the box, SIP on a free UDP port of
127.0.0.1 (no TCP or TLS listener) and RTP bound to 127.0.0.1. The test drives it through its
standard input, one command a line, and reads what it prints (`-S`: call states) from its
standard output, line-buffered by coreutils' `stdbuf` (a pipe would otherwise hold the lines
back): "Call 1 ... connected.", "Receiving new incoming call from ...". linphonec prints nothing
when it registers, so the registration is asked for (`states proxies`). There is no sound card
here, so the client runs in file mode (`soundcard use files`): the microphone is a WAV file
(`play`) and what it hears is written to another (`record`), 8 kHz mono for G.711. Codecs are
limited to PCMU and PCMA, as an office phone offers them. liblinphone's own log (`-d 5 -l`)
holds the SIP messages and, as each call's audio stops, its RTP statistics. coreutils' `timeout`
ends the client after a while, whatever happens to the test. Tested with linphonec 5.1.65.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.sipp import free_ports

LINPHONEC_EXE = "linphonec"
LINPHONEC_MISSING_HINT = (
    "linphonec is not installed (no `linphonec` on PATH): install the Debian package "
    "linphone-cli, e.g. `make deb-test` or `apt-get install linphone-cli`"
)
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
STATE_TIMEOUT_S = 5.0  # for linphonec to answer a command
# linphonec is ended by `timeout` after this long, so a test that hangs leaves no phone behind.
LIFETIME_S = 120
MAX_LINES = 20_000

# PCMU and PCMA only (every other codec liblinphone knows is listed disabled: a codec missing
# from the file is added enabled), so the call's audio is G.711 as the box's own media is.
DISABLED_CODECS = (
    ("opus", 48000), ("SILK", 16000), ("speex", 16000), ("speex", 8000), ("speex", 32000),
    ("GSM", 8000), ("G722", 8000), ("G729", 8000), ("iLBC", 8000), ("AMR", 8000),
    ("AMR-WB", 16000), ("BV16", 8000), ("CODEC2", 8000), ("red", 1000), ("t140", 1000),
)
CONFIG_TEMPLATE = """\
[sip]
sip_port={sip_port}
sip_tcp_port=-1
sip_tls_port=-1
bind_address=127.0.0.1
default_proxy=0
register_only_when_network_is_up=0
inc_timeout=60
[rtp]
bind_address=127.0.0.1
audio_rtp_port={audio_port}
video_rtp_port={video_port}
[sound]
echocancellation=0
[video]
enabled=0
capture=0
display=0
[proxy_0]
reg_proxy=<sip:{registrar};transport=udp>
reg_identity=sip:{user}@{registrar}
reg_expires={register_s}
reg_sendregister=1
[auth_info_0]
username={user}
passwd={password}
"""
VERSION_RE = re.compile(r"^version: (\S+)", re.IGNORECASE | re.MULTILINE)


class LinphonecMissingError(RuntimeError):
    """The `linphonec` binary is not on PATH."""


def linphonec_executable() -> str:
    """Full path of linphonec, or LinphonecMissingError saying how to install it."""
    path = shutil.which(LINPHONEC_EXE)
    if path is None:
        raise LinphonecMissingError(LINPHONEC_MISSING_HINT)
    return path


def linphonec_version() -> str:
    """What `linphonec -v` says its version is (e.g. "5.1.65")."""
    result = subprocess.run([linphonec_executable(), "-v"], capture_output=True, text=True,
                            timeout=10, check=False)
    match = VERSION_RE.search(result.stdout + result.stderr)
    assert match, f"no version in linphonec -v: {result.stdout!r} {result.stderr!r}"
    return match.group(1)


def codecs_config() -> str:
    sections = [f"[audio_codec_{i}]\nmime={mime}\nrate={rate}\nenabled=1\n"
                for i, (mime, rate) in enumerate((("PCMU", 8000), ("PCMA", 8000)))]
    sections += [f"[audio_codec_{i}]\nmime={mime}\nrate={rate}\nenabled=0\n"
                 for i, (mime, rate) in enumerate(DISABLED_CODECS, start=2)]
    return "".join(sections)


class Linphonec:
    """One linphonec process with one account, driven over its standard input."""

    def __init__(self, workdir: Path, *, user: str, registrar: str, password: str,
                 audio_source: Path, auto_answer: bool = False, register_s: int = 60,
                 lifetime_s: int = LIFETIME_S) -> None:
        self.workdir = workdir
        self.user = user
        self.audio_source = audio_source
        (workdir / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        self.recordings_dir = workdir / "heard"
        self.recordings_dir.mkdir(exist_ok=True)
        self.sip_port, self.audio_port, self.video_port = free_ports(3)
        self.config_path = workdir / "linphonerc"
        self.config_path.write_text(CONFIG_TEMPLATE.format(
            sip_port=self.sip_port, audio_port=self.audio_port, video_port=self.video_port,
            registrar=registrar, user=user, password=password, register_s=register_s,
        ) + codecs_config(), encoding="utf-8")
        self.log_path = workdir / "liblinphone.log"  # liblinphone's own log: SIP messages too
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._recordings = 0
        command = ["timeout", "-k", "5", str(lifetime_s), "stdbuf", "-oL", linphonec_executable(),
                   "-c", str(self.config_path), "-S", "-d", "5", "-l", str(self.log_path)]
        if auto_answer:
            command.append("-a")
        self.popen = subprocess.Popen(
            command, cwd=workdir, env=dict(os.environ, HOME=str(workdir)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.command("soundcard use files")
            self.wait_for_line(r"Using wav files instead of soundcard", START_TIMEOUT_S)
            self.prepare_call()
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            # The prompt has no newline: it is glued to the start of the next line printed.
            while line.startswith("linphonec> "):
                line = line[len("linphonec> "):]
            with self._changed:
                if len(self._lines) < MAX_LINES:
                    self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "\n".join(self._lines)

    def command(self, command: str) -> None:
        """Type one command (its answer, if any, comes among the lines printed)."""
        assert self.popen.stdin is not None and self.popen.poll() is None, (
            f"linphonec {self.user} has exited:\n{self.output()[-3000:]}")
        self.popen.stdin.write(command.encode() + b"\n")
        self.popen.stdin.flush()

    def mark(self) -> int:
        """Where the output is now: wait_for_line(..., since=mark) sees only later lines."""
        with self._changed:
            return len(self._lines)

    def wait_for_line(self, pattern: str, timeout_s: float, since: int = 0) -> re.Match[str]:
        """The first line printed (from `since` on) that matches `pattern`."""
        regex = re.compile(pattern)
        found: list[re.Match[str]] = []

        def search() -> bool:
            for line in self._lines[since:]:
                match = regex.search(line)
                if match:
                    found.append(match)
                    return True
            return self.popen.poll() is not None

        with self._changed:
            self._changed.wait_for(search, timeout_s)
        assert found, (f"linphonec {self.user} printed no line matching {pattern!r} in "
                       f"{timeout_s} s:\n{self.output()[-3000:]}")
        return found[0]

    def prepare_call(self) -> Path:
        """Point the microphone at the source file and the ear at a new recording, for the
        next call (liblinphone opens both when the call's audio starts; done once at start,
        again only to keep a later call's audio apart)."""
        self._recordings += 1
        recording = self.recordings_dir / f"call{self._recordings}.wav"
        self.command(f"play {self.audio_source}")
        self.command(f"record {recording}")
        self.recording_path = recording
        return recording

    def wait_until_registered(self, timeout_s: float) -> None:
        """The account's registration is LinphoneRegistrationOk (`states proxies`, asked
        again every few tenths of a second: linphonec prints nothing when it registers)."""
        deadline = time.monotonic() + timeout_s
        while True:
            since = self.mark()
            self.command("states proxies")
            state = self.wait_for_line(r"\| (LinphoneRegistration\w+)", STATE_TIMEOUT_S, since)
            if state.group(1) == "LinphoneRegistrationOk":
                return
            assert time.monotonic() < deadline, (
                f"linphonec {self.user} not registered in {timeout_s} s ({state.group(1)}):\n"
                f"{self.log()[-3000:]}")
            time.sleep(0.3)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.popen.poll() is None:
            try:
                self.command("quit")
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.popen.terminate()
                try:
                    self.popen.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait()
        self._reader.join(2)
        return self.popen.returncode


@contextmanager
def running_linphonec(workdir: Path, *, user: str, registrar: str, password: str,
                      audio_source: Path, auto_answer: bool = False) -> Iterator[Linphonec]:
    workdir.mkdir(parents=True, exist_ok=True)
    phone = Linphonec(workdir, user=user, registrar=registrar, password=password,
                      audio_source=audio_source, auto_answer=auto_answer)
    try:
        yield phone
    finally:
        phone.stop()
