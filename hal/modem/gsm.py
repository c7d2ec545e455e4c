"""The GSM line driver: a `ModemDriver` (hal/modem/driver.py, kind "gsm") for Huawei voice
sticks, Quectel EC2x and SIMCom SIM7600 modems (profiles in hal/modem/gsm_profiles.py), over
3GPP TS 27.007 / 27.005.

`GsmDriver(name, port=..., audio_port=..., profile="auto", imei=..., pin=...)`; `await
start(on_fact, on_audio)` hands the AT port to a `PortSupervisor` (reopened with backoff, the
modem found again by IMEI) whose every opening runs the init (chan_dongle's and chan_quectel's
order, MODEMS.md §1) and opens the audio port. From then on the driver reports facts: its
status on every change (registration, signal, SIM, port), an incoming call once its caller is
known, the far end ringing, answering and hanging up, keys, SMS. It never answers by itself:
the core calls `answer()`. Call state lives in the pure `CallTracker` (hal/modem/gsm_call.py);
+CLCC is polled while a call is up to make up for a missed URC (bg111#260). Audio: 320-byte
frames of 8 kHz 16-bit PCM both ways, written one every 20 ms while a call is up. SMS: every
stored message is read, handed out (long ones reassembled) and only then deleted, at start, on
+CMTI and on ^SMMEMFULL (lost SMS are the second most common field complaint, wdoekes#47).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from hal.modem.at import CALL_PROGRESS, AtError, CommandCompleted, UnsolicitedResult
from hal.modem.channel import (
    DEFAULT_TIMEOUT_S,
    LONG_TIMEOUT_S,
    AtChannel,
    AtCommandFailed,
    AtTimeout,
)
from hal.modem.driver import (
    FRAME_BYTES,
    CallEnded,
    KeyPressed,
    ModemCommandError,
    ModemFact,
    ModemStatus,
    RemoteAnswered,
    SmsReceived,
    StatusChanged,
)
from hal.modem.gsm_call import CallState, CallTracker
from hal.modem.gsm_profiles import (
    PROFILES,
    REGISTRATION_NAMES,
    CallerIdHeard,
    CallProgressed,
    CallReleased,
    CallResultHeard,
    KeyHeard,
    Profile,
    RegistrationHeard,
    RingHeard,
    SignalHeard,
    SimHeard,
    SmsDelivered,
    SmsStorageFull,
    SmsStored,
    UssdHeard,
    choose_profile,
    interpret,
    parse_clcc,
    parse_cops,
    parse_cpin,
    parse_csq,
    parse_registration_reply,
    rssi_to_dbm,
)
from hal.modem.sms import (
    Reassembler,
    SmsDecodeError,
    decode_deliver,
    encode_submit,
    iter_cmgl,
    parse_cmgr_header,
    parse_cmt_header,
)
from hal.modem.ussd import UssdDecodeError, UssdStatus, parse_cusd, ussd_command
from hal.serial.port import open_port, parse_imei
from hal.serial.supervisor import PortSupervisor

LOGGER = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 5.0  # wdoekes#50: 2 s for ATA was too short
STATUS_POLL_S = 30.0  # +CSQ / +CREG? as a safety net for missed URCs
TICK_S = 0.1  # the call tracker's timers
POLL_TICK_S = 0.25  # how often the poller looks whether +CLCC or a status poll is due
USSD_TIMEOUT_S = 20.0  # the network's +CUSD answer
AUDIO_FRAME_S = 0.020
AUDIO_QUEUE_FRAMES = 5  # 100 ms: older frames are dropped so latency cannot grow
AUDIO_LATE_FRAMES = 5  # a writer this late starts afresh instead of bursting
AUDIO_READ_BYTES = 4096
CME_SIM_NOT_INSERTED = 10  # TS 27.007 §9.2
CME_SIM_FAILURE = 13
CME_INCORRECT_PASSWORD = 16
DTMF_KEYS = "0123456789*#ABCD"
NUMBER_RE = re.compile(r"\+?[0-9*#]{1,32}")
REGISTRATION_RANK = {"home": 4, "roaming": 3, "searching": 2, "denied": 1, "none": 0}


class SupervisorFactory(Protocol):
    def __call__(self, path: str, *, imei: str | None, name: str,
                 on_opened: Callable[[AtChannel, str], Awaitable[None]],
                 on_lost: Callable[[str], None]) -> PortSupervisor: ...


def _default_supervisor(path: str, *, imei: str | None, name: str,
                        on_opened: Callable[[AtChannel, str], Awaitable[None]],
                        on_lost: Callable[[str], None]) -> PortSupervisor:
    return PortSupervisor(path, imei=imei, name=name, on_opened=on_opened, on_lost=on_lost)


def _strip_prefix(line: str, prefix: str) -> str:
    return line.split(":", 1)[1].strip() if line.upper().startswith(prefix.upper()) else line


class GsmDriver:
    """One GSM modem line (see the module docstring)."""

    kind = "gsm"

    def __init__(self, name: str, *, port: str, audio_port: str | None = None,
                 profile: str = "auto", imei: str | None = None, pin: str | None = None,
                 number: str = "", supervisor_factory: SupervisorFactory = _default_supervisor,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if profile != "auto" and profile not in PROFILES:
            raise ValueError(f"unknown GSM modem profile {profile!r}")
        self.name = name
        self.port = port
        self.audio_port = audio_port
        self.profile_name = profile
        self.profile: Profile = PROFILES.get(profile, PROFILES["generic"])
        self.imei = imei
        self.pin = pin
        self.number = number
        self.imsi = self.iccid = self.manufacturer = self.model = self.operator = ""
        self.audio_frames_in = self.audio_frames_out = self.audio_frames_dropped = 0
        self.round_trips_s: list[float] = []  # init commands' AT round trips, for figures
        self.tracker = CallTracker(name)
        self._supervisor_factory = supervisor_factory
        self._clock = clock
        self._supervisor: PortSupervisor | None = None
        self._channel: AtChannel | None = None
        self._on_fact: Callable[[ModemFact], None] = lambda fact: None
        self._on_audio: Callable[[bytes], None] = lambda frame: None
        self._port_state = "starting"  # starting | initialising | open | vanished | silent
        self._sim = "absent"
        self._sim_problem = ""  # "wrong PIN", "SIM PIN required"
        self._pin_rejected = False  # never offer a PIN the SIM refused: 3 tries lock it
        self._registration: dict[bool, int] = {}  # lte? → TS 27.007 <stat>
        self._rssi: int | None = None
        self._status = self._compute_status()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._channel_tasks: list[asyncio.Task[Any]] = []
        self._audio_reader: asyncio.StreamReader | None = None
        self._audio_writer: asyncio.StreamWriter | None = None
        self._audio_out: deque[bytes] = deque()
        self._sms_jobs: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._sms_parts: dict[tuple[str, int, int], list[int]] = {}
        self._reassembler = Reassembler()
        self._sms_reference = random.randrange(256)
        self._ussd_lock = asyncio.Lock()
        self._ussd_waiter: asyncio.Future[str] | None = None
        self._next_status_poll = 0.0

    # ------------------------------------------------------------------ life cycle
    @property
    def status(self) -> ModemStatus:
        return self._status

    async def start(self, on_fact: Callable[[ModemFact], None],
                    on_audio: Callable[[bytes], None]) -> None:
        self._on_fact, self._on_audio = on_fact, on_audio
        self._supervisor = self._supervisor_factory(
            self.port, imei=self.imei, name=self.name, on_opened=self._opened,
            on_lost=self._lost)
        self._supervisor.start()
        for job in (self._ticker(), self._poller(), self._audio_pacer(), self._sms_worker()):
            self._spawn(job)

    async def stop(self) -> None:
        for task in [*self._tasks, *self._channel_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._channel_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._supervisor is not None:
            await self._supervisor.stop()
        self._close_audio()
        self._channel = None

    def _spawn(self, job: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ the port comes and goes
    async def _opened(self, channel: AtChannel, path: str) -> None:
        for task in self._channel_tasks:
            task.cancel()
        self._channel = channel
        self._channel_tasks = [asyncio.get_running_loop().create_task(self._urc_pump(channel))]
        self._port_state = "initialising"
        self._update_status()
        try:
            await self._init(channel)
        except AtError as error:
            self._port_state = "silent"
            self._update_status()
            raise ModemCommandError(f"{self.name}: init failed: {error}") from error
        await self._open_audio()
        self._port_state = "open"
        self._next_status_poll = self._clock() + STATUS_POLL_S
        self._update_status()
        if self._sim == "ready":
            self._sms_jobs.put_nowait(("sweep", None))

    def _lost(self, reason: str) -> None:
        LOGGER.warning("%s: modem port lost (%s)", self.name, reason)
        self._channel = None
        for task in self._channel_tasks:
            task.cancel()
        self._channel_tasks = []
        self._close_audio()
        self._port_state = "vanished"
        self._emit(self.tracker.lost(reason, self._clock()))
        self._update_status()

    async def _init(self, channel: AtChannel) -> None:
        """MODEMS.md §1 "Init": the common 27.007 core in chan_dongle's order, then the
        profile's own. Only ATZ/ATE0 must succeed; anything else a modem refuses is logged."""
        await self._timed(channel, "ATZ")
        await self._timed(channel, "ATE0")
        await self._try("AT+CMEE=1")  # numeric +CME ERROR codes (27.007 §9.1)
        self.manufacturer = await self._query("AT+CGMI", "+CGMI")
        self.model = await self._query("AT+CGMM", "+CGMM")
        revision = await self._query("AT+CGMR", "+CGMR")
        if self.profile_name == "auto":
            self.profile = choose_profile(self.manufacturer, self.model)
        LOGGER.info("%s: %s %s (%s), profile %s", self.name, self.manufacturer, self.model,
                    revision, self.profile.name)
        done = await self._try("AT+CGSN")
        imei = parse_imei(done.info) if done else None
        if imei:
            self.imei = imei
        await self._check_sim()
        if self._sim == "ready":
            self.imsi = await self._query("AT+CIMI", "+CIMI")
            for command, prefix in self.profile.iccid:
                if iccid := await self._query(command, prefix):
                    self.iccid = iccid.strip('"')
                    break
        await self._try("AT+CREG=2")
        if self.profile.lte:
            await self._try("AT+CEREG=2")
        await self._refresh_registration()
        await self._try("AT+COPS=3,0")  # long alphanumeric operator names
        await self._refresh_operator()
        await self._refresh_signal()
        for command in ("AT+CLIP=1", "AT+CMGF=0", 'AT+CPMS="SM","SM","SM"',
                        "AT+CNMI=2,1,0,2,0", *self.profile.init):
            await self._try(command)
        if self.profile.voice_check and await self._try(self.profile.voice_check) is None:
            LOGGER.error("%s: %s refused: this firmware has no voice (calls will fail)",
                         self.name, self.profile.voice_check)

    async def _timed(self, channel: AtChannel, command: str) -> CommandCompleted:
        started = time.perf_counter()
        done = await channel.command(command)
        self.round_trips_s.append(time.perf_counter() - started)
        return done

    async def _check_sim(self) -> None:
        self._sim_problem = ""
        try:
            done = await self._command("AT+CPIN?")
        except AtCommandFailed as failure:
            error_code = failure.completion.error_code
            self._sim = "absent"
            if error_code not in (CME_SIM_NOT_INSERTED, CME_SIM_FAILURE):
                self._sim_problem = f"SIM not readable ({failure.completion.final})"
            return
        code = _strip_prefix(done.info[0], "+CPIN") if done.info else ""
        self._sim = parse_cpin(f"+CPIN: {code}") or "absent"
        if self._sim != "pin":
            return
        if code.upper() != "SIM PIN":
            self._sim_problem = f"SIM wants {code}"  # PUK and kin: for a person, not the box
        elif self._pin_rejected:
            self._sim_problem = "wrong PIN"
        elif not self.pin:
            self._sim_problem = "SIM PIN required"
        else:
            try:
                await self._command(f'AT+CPIN="{self.pin}"')
            except AtCommandFailed as failure:
                # Never again: a SIM locks itself after three wrong PINs (27.007 §8.3).
                self._pin_rejected = True
                self._sim_problem = "wrong PIN"
                LOGGER.error("%s: the SIM refused the PIN (%s); not trying it again",
                             self.name, failure.completion.final)
                return
            self._sim = "ready"

    # ------------------------------------------------------------------ commands
    async def _command(self, line: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                       prefix: str | None = None) -> CommandCompleted:
        channel = self._channel
        if channel is None:
            raise ModemCommandError(f"{self.name}: modem not connected ({self._status.reason})")
        return await channel.command(line, timeout_s=timeout_s, prefix=prefix)

    async def _try(self, line: str, **options: Any) -> CommandCompleted | None:
        """A command whose failure is only logged (a modem that does not know it, a SIM not
        ready); a timeout or a vanished port still raises."""
        try:
            return await self._command(line, **options)
        except AtCommandFailed as failure:
            LOGGER.info("%s: %s → %s", self.name, line, failure.completion.final)
            return None

    async def _do(self, line: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandCompleted:
        """A command the caller asked for: any failure becomes a ModemCommandError."""
        try:
            return await self._command(line, timeout_s=timeout_s)
        except AtError as error:
            raise ModemCommandError(f"{self.name}: {error}") from error

    async def _query(self, line: str, prefix: str) -> str:
        done = await self._try(line, prefix=prefix)
        if done is None or not done.info:
            return ""
        return _strip_prefix(done.info[0], prefix).strip()

    async def _refresh_registration(self) -> None:
        for lte, name in ((False, "+CREG"), (True, "+CEREG")):
            if lte and not self.profile.lte:
                continue
            done = await self._try(f"AT{name}?")
            stat = parse_registration_reply(done.info[0]) if done and done.info else None
            if stat is not None:
                self._registration[lte] = stat

    async def _refresh_operator(self) -> None:
        done = await self._try("AT+COPS?")
        if done and done.info:
            self.operator = parse_cops(done.info[0])

    async def _refresh_signal(self) -> None:
        done = await self._try("AT+CSQ")
        if done and done.info:
            self._rssi = parse_csq(done.info[0])

    # ------------------------------------------------------------------ status
    def _registration_name(self) -> str:
        names = [REGISTRATION_NAMES.get(stat, "none") for stat in self._registration.values()]
        return max(names, key=REGISTRATION_RANK.__getitem__, default="none")

    def _compute_status(self) -> ModemStatus:
        registration = self._registration_name()
        if self._port_state == "starting":
            state, reason = "down", "modem not found yet"
        elif self._port_state == "vanished":
            state, reason = "down", "port vanished"
        elif self._port_state == "silent":
            state, reason = "down", "modem not answering"
        elif self._port_state == "initialising":
            state, reason = "down", "initialising"
        elif self._sim == "absent" and not self._sim_problem:
            state, reason = "down", "no SIM"
        elif self._sim_problem:
            state, reason = "down", self._sim_problem
        elif registration in ("home", "roaming"):
            state, reason = "up", f"registered ({registration})"
        elif registration == "searching":
            state, reason = "degraded", "searching for network"
        elif registration == "denied":
            state, reason = "down", "registration denied"
        else:
            state, reason = "down", "not registered"
        supervisor = self._supervisor
        return ModemStatus(
            state=state, reason=reason, registration=registration,
            signal_dbm=rssi_to_dbm(self._rssi) if self._rssi is not None else None,
            operator=self.operator if registration in ("home", "roaming") else "",
            imei=self.imei or "", sim=self._sim,
            port=(supervisor.path or "") if supervisor is not None else "",
            manufacturer=self.manufacturer, model=self.model, imsi=self.imsi,
            iccid=self.iccid)

    def _update_status(self) -> None:
        status = self._compute_status()
        if status != self._status:
            self._status = status
            LOGGER.info("%s: %s (%s)", self.name, status.state, status.reason)
            self._emit([StatusChanged(line=self.name, status=status)])

    # ------------------------------------------------------------------ facts
    def _emit(self, facts: list[ModemFact]) -> None:
        for fact in facts:
            if isinstance(fact, RemoteAnswered):
                self._spawn(self._profile_commands(self.profile.when_active))
            elif isinstance(fact, CallEnded):
                self._audio_out.clear()
                if self._channel is not None:
                    self._spawn(self._profile_commands(self.profile.when_released))
            LOGGER.info("%s: %s", self.name, fact)
            try:
                self._on_fact(fact)
            except Exception:
                LOGGER.exception("%s: on_fact failed on %s", self.name, fact)

    async def _profile_commands(self, commands: tuple[str, ...]) -> None:
        for command in commands:
            try:
                await self._try(command)
            except (AtError, ModemCommandError) as error:
                LOGGER.warning("%s: %s failed (%s)", self.name, command, error)

    # ------------------------------------------------------------------ unsolicited results
    async def _urc_pump(self, channel: AtChannel) -> None:
        while True:
            urc = await channel.unsolicited.get()
            try:
                self._on_urc(urc)
            except Exception:  # a modem's line must never take the driver down
                LOGGER.exception("%s: unsolicited %r not handled", self.name, urc.line[:80])

    def _on_urc(self, urc: UnsolicitedResult) -> None:
        now = self._clock()
        tracker = self.tracker
        for signal in interpret(self.profile, urc.line, urc.extra):
            if isinstance(signal, RingHeard):
                self._emit(tracker.ring(now))
            elif isinstance(signal, CallerIdHeard):
                self._emit(tracker.caller_id(signal, now))
            elif isinstance(signal, CallProgressed):
                self._emit(tracker.progressed(signal.state, signal.index, now))
            elif isinstance(signal, CallReleased):
                self._emit(tracker.released(signal.cause, signal.definite, now))
            elif isinstance(signal, CallResultHeard):
                self._emit(tracker.result(signal.result, now))
            elif isinstance(signal, KeyHeard):
                if tracker.busy:
                    self._emit([KeyPressed(line=self.name, key=signal.key)])
            elif isinstance(signal, SignalHeard):
                self._rssi = signal.rssi
                self._update_status()
            elif isinstance(signal, RegistrationHeard):
                self._registration[signal.lte] = signal.stat
                self._update_status()
                if self._status.state == "up" and not self.operator:
                    self._spawn(self._refresh_then_update(self._refresh_operator))
            elif isinstance(signal, SimHeard):
                # +CPIN: NOT INSERTED / READY as URCs (Quectel, SIMCom); a PIN request is the
                # init's business (it runs again on the next opening)
                if signal.sim != "pin" and signal.sim != self._sim:
                    self._sim = signal.sim
                    self._update_status()
            elif isinstance(signal, SmsStored):
                self._sms_jobs.put_nowait(("read", signal.index))
            elif isinstance(signal, SmsDelivered):
                self._sms_jobs.put_nowait(("direct", signal))
            elif isinstance(signal, SmsStorageFull):
                LOGGER.warning("%s: SIM message storage full; emptying it", self.name)
                self._sms_jobs.put_nowait(("sweep", None))
            elif isinstance(signal, UssdHeard):
                self._ussd_heard(signal.line)

    async def _refresh_then_update(self, refresh: Callable[[], Awaitable[None]]) -> None:
        with contextlib.suppress(AtError, ModemCommandError):
            await refresh()
        self._update_status()

    # ------------------------------------------------------------------ timers and polls
    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._emit(self.tracker.handle_timer(self._clock()))

    async def _poller(self) -> None:
        while True:
            await asyncio.sleep(POLL_TICK_S)
            if self._channel is None or self._port_state not in ("open", "silent"):
                continue
            try:
                await self._poll_once()
            except AtTimeout as error:
                LOGGER.warning("%s: poll unanswered (%s)", self.name, error)
                self._port_state = "silent"
                self._update_status()
            except (AtError, ModemCommandError) as error:
                LOGGER.info("%s: poll failed (%s)", self.name, error)

    async def _poll_once(self) -> None:
        now = self._clock()
        if self.tracker.clcc_due(now):
            done = await self._try("AT+CLCC")
            if done is not None:
                calls = [c for c in map(parse_clcc, done.info) if c is not None]
                self._emit(self.tracker.calls_listed(calls, self._clock()))
        if now >= self._next_status_poll or self._port_state == "silent":
            self._next_status_poll = now + STATUS_POLL_S
            await self._refresh_signal()
            await self._refresh_registration()
            await self._refresh_operator()
            self._port_state = "open"
            self._update_status()
        for whole in self._reassembler.expire(now):
            # parts that never all came (after an hour): what there is, then free the storage
            key = next((k for k in self._sms_parts
                        if k[0] == whole.sender and k[2] == whole.parts_total), None)
            indices = self._sms_parts.pop(key, []) if key is not None else []
            if self._deliver_sms(whole.sender, whole.text, whole.timestamp, whole.complete,
                                 indices):
                await self._settle(indices)

    # ------------------------------------------------------------------ calls
    async def answer(self) -> None:
        if self.tracker.state is not CallState.RINGING:
            raise ModemCommandError(f"{self.name}: no call ringing ({self.tracker.state.value})")
        await self._open_audio()
        await self._profile_commands(self.profile.before_answer)
        await self._do("ATA", timeout_s=ANSWER_TIMEOUT_S)
        self.tracker.answered_locally(self._clock())
        await self._profile_commands(self.profile.after_answer)
        await self._profile_commands(self.profile.when_active)

    async def dial(self, number: str) -> None:
        if not NUMBER_RE.fullmatch(number):
            raise ModemCommandError(f"{self.name}: cannot dial {number!r}")
        if self.tracker.busy:
            raise ModemCommandError(f"{self.name}: the line carries a call already")
        if self._status.state == "down":
            raise ModemCommandError(f"{self.name}: line down ({self._status.reason})")
        await self._open_audio()
        await self._profile_commands(self.profile.before_dial)
        now = self._clock()
        self.tracker.dialled(now)  # before the write: ^ORIG may come before the OK
        try:
            await self._command(f"ATD{number};")
        except AtCommandFailed as failure:
            final = failure.completion.final
            if final in CALL_PROGRESS:
                self._emit(self.tracker.failed(final, self._clock()))
                return
            self.tracker.forget(self._clock())
            raise ModemCommandError(f"{self.name}: dialling refused ({final})") from failure
        except (AtError, ModemCommandError) as error:
            self.tracker.forget(self._clock())
            raise ModemCommandError(f"{self.name}: dialling failed ({error})") from error
        await self._profile_commands(self.profile.after_dial)

    async def hang_up(self) -> None:
        if not self.tracker.busy:
            return
        self.tracker.hanging_up(self._clock())
        command = self.profile.hang_up(self.tracker.index)
        try:
            await self._command(command, timeout_s=LONG_TIMEOUT_S)
        except AtCommandFailed as failure:
            LOGGER.info("%s: %s → %s (the call is gone already)", self.name, command,
                        failure.completion.final)
        except (AtError, ModemCommandError) as error:
            self._emit(self.tracker.hung_up(self._clock()))
            raise ModemCommandError(f"{self.name}: hang-up failed ({error})") from error
        self._emit(self.tracker.hung_up(self._clock()))

    async def send_dtmf(self, key: str) -> None:
        if len(key) != 1 or key.upper() not in DTMF_KEYS:
            raise ModemCommandError(f"{self.name}: {key!r} is not a DTMF key")
        if not self.tracker.talking:
            raise ModemCommandError(f"{self.name}: no call up for DTMF")
        await self._do(self.profile.dtmf(self.tracker.index, key.upper()))

    # ------------------------------------------------------------------ audio
    async def _open_audio(self) -> None:
        if self.audio_port is None or self._audio_writer is not None or self._channel is None:
            return
        try:
            reader, writer = await open_port(self.audio_port)
        except (OSError, ValueError) as error:
            LOGGER.warning("%s: audio port %s cannot be opened (%s): calls without voice",
                           self.name, self.audio_port, error)
            return
        self._audio_reader, self._audio_writer = reader, writer
        task = asyncio.get_running_loop().create_task(self._audio_receiver(reader))
        self._channel_tasks.append(task)

    def _close_audio(self) -> None:
        writer, self._audio_writer, self._audio_reader = self._audio_writer, None, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()

    async def _audio_receiver(self, reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        try:
            while data := await reader.read(AUDIO_READ_BYTES):
                buffer += data
                while len(buffer) >= FRAME_BYTES:
                    frame = bytes(buffer[:FRAME_BYTES])
                    del buffer[:FRAME_BYTES]
                    self.audio_frames_in += 1
                    if self.tracker.talking:
                        self._on_audio(frame)
        except (OSError, Exception) as error:  # the port vanished (EIO, SerialException)
            LOGGER.info("%s: audio port closed (%s)", self.name, error)
        if self._audio_reader is reader:
            self._close_audio()

    def write_audio(self, frame: bytes) -> None:
        if not self.tracker.talking or len(frame) != FRAME_BYTES:
            return
        if len(self._audio_out) >= AUDIO_QUEUE_FRAMES:
            self._audio_out.popleft()
            self.audio_frames_dropped += 1
        self._audio_out.append(frame)

    async def _audio_pacer(self) -> None:
        """One queued frame to the modem every 20 ms while a call is up (as the modem plays
        them: 8 kHz, 160 samples a frame; chan_dongle's FRAME_SIZE 320)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            now = loop.time()
            if now - next_at > AUDIO_LATE_FRAMES * AUDIO_FRAME_S:
                next_at = now
            await asyncio.sleep(max(0.0, next_at - now))
            next_at += AUDIO_FRAME_S
            writer = self._audio_writer
            if writer is None or not self.tracker.talking or not self._audio_out:
                continue
            try:
                writer.write(self._audio_out.popleft())
                self.audio_frames_out += 1
            except Exception as error:
                LOGGER.info("%s: audio write failed (%s)", self.name, error)
                self._close_audio()

    # ------------------------------------------------------------------ SMS in
    async def _sms_worker(self) -> None:
        while True:
            kind, argument = await self._sms_jobs.get()
            try:
                if kind == "sweep":
                    await self._sweep_sms()
                elif kind == "read":
                    await self._read_sms(argument)
                elif kind == "direct":
                    self._take_pdu(argument.pdu, parse_cmt_header(argument.header).length, [])
                    await self._try("AT+CNMA")  # 27.005 §3.4.4, needed with +CSMS=1
            except (AtError, ModemCommandError, SmsDecodeError) as error:
                LOGGER.warning("%s: SMS %s %s failed (%s); the next sweep retries", self.name,
                               kind, argument if kind == "read" else "", error)

    async def _sweep_sms(self) -> None:
        done = await self._try("AT+CMGL=4", timeout_s=LONG_TIMEOUT_S)  # 4: all (27.005 §3.4.2)
        if done is None:
            return
        for header, pdu_hex in iter_cmgl(done.info):
            assert header.index is not None
            await self._settle(self._take_pdu(pdu_hex, header.length, [header.index]))

    async def _read_sms(self, index: int) -> None:
        done = await self._try(f"AT+CMGR={index}")
        if done is None or len(done.info) < 2:
            return
        header = parse_cmgr_header(done.info[0])
        await self._settle(self._take_pdu(done.info[1].strip(), header.length, [index]))

    async def _settle(self, deletable: list[int]) -> None:
        for index in deletable:
            await self._try(f"AT+CMGD={index}")

    def _take_pdu(self, pdu_hex: str, length: int, indices: list[int]) -> list[int]:
        """Decode, reassemble and hand out; returns the storage indices now safe to delete."""
        try:
            message = decode_deliver(pdu_hex, tpdu_length=length)
        except (SmsDecodeError, ValueError) as error:
            # kept, it would fill the storage for ever: logged in full and deleted
            LOGGER.warning("%s: stored PDU not an SMS-DELIVER (%s): %s", self.name, error,
                           pdu_hex)
            return indices
        parts = indices
        if message.concatenation is not None and message.concatenation.total > 1:
            key = (message.sender, message.concatenation.reference,
                   message.concatenation.total)
            parts = self._sms_parts.setdefault(key, [])
            parts.extend(i for i in indices if i not in parts)
            whole = self._reassembler.add(message, now=self._clock())
            if whole is None:
                return []
            parts = self._sms_parts.pop(key, [])
        else:
            whole = self._reassembler.add(message, now=self._clock())
            if whole is None:
                return indices
        delivered = self._deliver_sms(whole.sender, whole.text, whole.timestamp,
                                      whole.complete, parts)
        return parts if delivered else []

    def _deliver_sms(self, sender: str, text: str, timestamp: Any, complete: bool,
                     indices: list[int]) -> bool:
        received_at = timestamp.timestamp() if timestamp is not None else time.time()
        fact = SmsReceived(line=self.name, sender=sender, text=text, received_at=received_at,
                           complete=complete)
        LOGGER.info("%s: SMS from %s (%d characters)", self.name, sender, len(text))
        try:
            self._on_fact(fact)
        except Exception:
            LOGGER.exception("%s: SMS from %s not taken; kept on the SIM", self.name, sender)
            return False
        return True

    # ------------------------------------------------------------------ SMS out, USSD
    async def send_sms(self, number: str, text: str) -> list[int]:
        """Send `text` (several parts when long) in PDU mode; the message references."""
        if not NUMBER_RE.fullmatch(number):
            raise ModemCommandError(f"{self.name}: cannot send to {number!r}")
        self._sms_reference = (self._sms_reference + 1) % 256
        references = []
        for pdu in encode_submit(number, text, reference=self._sms_reference):
            channel = self._channel
            if channel is None:
                raise ModemCommandError(f"{self.name}: modem not connected")
            try:
                done = await channel.command_with_pdu(
                    f"AT+CMGS={pdu.tpdu_length}", pdu.hex.encode("ascii"),
                    timeout_s=LONG_TIMEOUT_S)
            except AtError as error:
                raise ModemCommandError(f"{self.name}: SMS not sent ({error})") from error
            reference = next((int(m.group(1)) for line in done.info
                              if (m := re.search(r"\+CMGS:\s*(\d+)", line))), -1)
            references.append(reference)
        return references

    async def ussd(self, code: str) -> str:
        """A USSD request (a balance: "*100#"); the network's answer as text."""
        async with self._ussd_lock:
            waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._ussd_waiter = waiter
            try:
                await self._do(ussd_command(code))
                async with asyncio.timeout(USSD_TIMEOUT_S):
                    line = await waiter
            except TimeoutError:
                raise ModemCommandError(
                    f"{self.name}: no USSD answer within {USSD_TIMEOUT_S:g} s") from None
            except ValueError as error:
                raise ModemCommandError(f"{self.name}: bad USSD code ({error})") from error
            finally:
                self._ussd_waiter = None
        try:
            answer = parse_cusd(line)
        except UssdDecodeError as error:
            raise ModemCommandError(f"{self.name}: {error}") from error
        if answer.status is UssdStatus.NOT_SUPPORTED:
            raise ModemCommandError(f"{self.name}: the network does not support {code}")
        if answer.status is UssdStatus.TIMED_OUT:
            raise ModemCommandError(f"{self.name}: the network timed out on {code}")
        if answer.session_open:
            await self._try("AT+CUSD=2")  # a menu we will not walk: close the session
        return answer.text or ""

    def _ussd_heard(self, line: str) -> None:
        waiter = self._ussd_waiter
        if waiter is None or waiter.done():
            LOGGER.info("%s: USSD nobody asked for: %r", self.name, line[:120])
            return
        waiter.set_result(line)
