"""The fake V.253 modem over its real pty, driven by a plain os.read/os.write client.

The client unshields the voice stream with hal.modem.v253's DleDecoder, which the fake does not
use: the fake's stream and the box's decoder check each other.
"""

from __future__ import annotations

import os
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from hal.fake.v253 import PATTERN, FakeV253Modem
from hal.modem.v253 import (
    DLE,
    ETX,
    PROFILES,
    Answered,
    CallEnded,
    CallerIdReceived,
    DleDecoder,
    DleEncoder,
    DleEvent,
    DleKind,
    DtmfReceived,
    EndReason,
    FarEndHungUp,
    FxoCall,
    FxoEvent,
    LeaveVoice,
    RingDetected,
    SendCommand,
    VoiceSamples,
    parse_caller_id,
    parse_vsm_offers,
)

FINAL = (b"\r\nOK\r\n", b"\r\nERROR\r\n", b"\r\nCONNECT\r\n")
DEADLINE_S = 3.0


class Client:
    """The DTE: opens the port like a serial device and reads with a deadline on every wait."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.buffer = bytearray()

    def close(self) -> None:
        os.close(self.fd)

    def read_some(self) -> bytes:
        try:
            return os.read(self.fd, 4096)
        except BlockingIOError:
            return b""

    def read_until(self, *ends: bytes, deadline_s: float = DEADLINE_S) -> bytes:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for end in ends:
                at = self.buffer.find(end)
                if at >= 0:
                    taken = bytes(self.buffer[: at + len(end)])
                    del self.buffer[: at + len(end)]
                    return taken
            self.buffer += self.read_some()
            time.sleep(0.005)
        raise AssertionError(f"none of {ends} within {deadline_s} s; got {bytes(self.buffer)!r}")

    def command(self, line: str) -> bytes:
        os.write(self.fd, line.encode() + b"\r")
        return self.read_until(*FINAL)

    def read_for(self, seconds: float) -> bytes:
        deadline = time.monotonic() + seconds
        data = bytearray(self.buffer)
        self.buffer.clear()
        while time.monotonic() < deadline:
            data += self.read_some()
            time.sleep(0.005)
        return bytes(data)


@pytest.fixture
def modem() -> Iterator[FakeV253Modem]:
    with FakeV253Modem(ring_period_s=0.3) as fake:
        yield fake


@pytest.fixture
def client(modem: FakeV253Modem) -> Iterator[Client]:
    dte = Client(modem.path)
    yield dte
    dte.close()


def voice_mode(client: Client) -> None:
    for line in ("ATE0", "AT+FCLASS=8", "AT+VSM=128,8000", "AT+VCID=1"):
        assert client.command(line).endswith(b"OK\r\n")


def decode(data: bytes) -> tuple[bytes, list[DleEvent]]:
    decoder = DleDecoder()
    decoder.receive_data(data)
    samples, events = bytearray(), []
    while (event := decoder.next_event()) is not None:
        if isinstance(event, VoiceSamples):
            samples += event.data
        else:
            events.append(event)
    return bytes(samples), events


def test_commands_are_echoed_until_ate0(client: Client) -> None:
    assert client.command("AT") == b"AT\r\r\nOK\r\n"
    assert client.command("ATE0") == b"ATE0\r\r\nOK\r\n"
    assert client.command("AT") == b"\r\nOK\r\n"


def test_ati_names_the_modem(client: Client) -> None:
    client.command("ATE0")
    assert b"U.S. Robotics" in client.command("ATI")


def test_the_modem_offers_voice_class_8(client: Client) -> None:
    client.command("ATE0")
    assert client.command("AT+FCLASS=?") == b"\r\n0,1,8\r\n\r\nOK\r\n"


def test_voice_commands_need_class_8(client: Client) -> None:
    client.command("ATE0")
    assert client.command("AT+VLS=1").endswith(b"ERROR\r\n")
    assert client.command("AT+FCLASS=8").endswith(b"OK\r\n")
    assert client.command("AT+VLS=1").endswith(b"OK\r\n")


def test_the_sample_formats_read_as_usr_formats(client: Client) -> None:
    voice_mode(client)
    lines = client.command("AT+VSM=?").decode().split("\r\n")
    codes = [offer.code for offer in parse_vsm_offers(line for line in lines if '"' in line)]
    assert codes == [128, 129, 130, 131, 132]


def test_an_unknown_format_is_refused(client: Client) -> None:
    voice_mode(client)
    assert client.command("AT+VSM=7,8000").endswith(b"ERROR\r\n")


def test_streaming_on_hook_is_refused(client: Client) -> None:
    voice_mode(client)
    assert client.command("AT+VTR").endswith(b"ERROR\r\n")


def test_a_ring_brings_caller_id_before_the_second_ring(
        modem: FakeV253Modem, client: Client) -> None:
    voice_mode(client)
    modem.ring("5551234", name="JOHN DOE", rings=2)
    text = (client.read_until(b"RING\r\n") + client.read_until(b"RING\r\n")).decode()
    lines = text.split("\r\n")
    assert lines.count("RING") == 2
    caller = parse_caller_id(lines)
    assert caller is not None
    assert (caller.number, caller.name) == ("5551234", "JOHN DOE")


def test_a_private_caller_sends_p(modem: FakeV253Modem, client: Client) -> None:
    voice_mode(client)
    modem.ring("5551234", private=True, rings=2)
    text = client.read_until(b"RING\r\n") + client.read_until(b"RING\r\n")
    assert b"NMBR=P\r\n" in text
    assert b"5551234" not in text


def test_without_vcid_there_is_no_caller_id(modem: FakeV253Modem, client: Client) -> None:
    client.command("ATE0")
    modem.ring("5551234", rings=2)
    text = client.read_until(b"RING\r\n") + client.read_until(b"RING\r\n")
    assert b"NMBR" not in text


def test_off_hook_reports_dial_tone(client: Client) -> None:
    voice_mode(client)
    client.command("AT+VLS=1")
    assert client.read_until(bytes([DLE]) + b"d") == bytes([DLE]) + b"d"


def test_duplex_voice_streams_the_pattern_shielded(client: Client) -> None:
    voice_mode(client)
    client.command("AT+VLS=1")
    assert client.command("AT+VTR").endswith(b"CONNECT\r\n")
    samples, events = decode(client.read_for(0.3))
    assert [event.kind for event in events] in ([], [DleKind.DIAL_TONE])
    assert len(samples) >= 800
    start = PATTERN.index(samples[0])
    expected = (PATTERN * (len(samples) // len(PATTERN) + 2))[start : start + len(samples)]
    assert samples == expected


def test_the_stream_is_paced_not_flooded(client: Client) -> None:
    voice_mode(client)
    client.command("AT+VLS=1")
    client.command("AT+VRX")
    began = time.monotonic()
    samples, _ = decode(client.read_for(0.5))
    elapsed = time.monotonic() - began
    # 8000 samples a second, with a tick of slack at each end.
    assert len(samples) <= 8000 * elapsed + 2 * 160


@pytest.mark.parametrize(
    ("act", "voice", "event"),
    [
        ("far_end_hangs_up", "AT+VTR", DleEvent(code="l", kind=DleKind.LOOP_BREAK)),
        ("busy_tone", "AT+VRX", DleEvent(code="b", kind=DleKind.BUSY)),
    ],
)
def test_the_line_ending_is_reported_in_the_stream(
        modem: FakeV253Modem, client: Client, act: str, voice: str, event: DleEvent) -> None:
    voice_mode(client)
    client.command("AT+VLS=1")
    client.command(voice)
    getattr(modem, act)()
    _, events = decode(client.read_for(0.2))
    assert event in events


def test_far_end_digits_arrive_as_shielded_dtmf(modem: FakeV253Modem, client: Client) -> None:
    voice_mode(client)
    client.command("AT+VLS=1")
    client.command("AT+VTR")
    modem.send_dtmf("12#")
    _, events = decode(client.read_for(0.2))
    assert [event.digit for event in events if event.kind is DleKind.DTMF] == ["1", "2", "#"]


def test_samples_the_box_sends_are_collected_unshielded(
        modem: FakeV253Modem, client: Client) -> None:
    voice_mode(client)
    client.command("AT+VLS=1")
    client.command("AT+VTX")
    sent = bytes(range(256)) * 4
    os.write(client.fd, DleEncoder().encode(sent) + bytes([DLE, ETX]))
    modem.wait_until(lambda: not modem.streaming, what="end of transmit")
    assert bytes(modem.received_samples) == sent
    assert client.read_until(b"OK\r\n").endswith(bytes([DLE, ETX]) + b"\r\nOK\r\n")


@pytest.mark.parametrize("stop", [b"!", b"^"])
def test_a_stop_code_ends_the_stream_and_commands_work_again(
        modem: FakeV253Modem, client: Client, stop: bytes) -> None:
    voice_mode(client)
    client.command("AT+VLS=1")
    client.command("AT+VTR")
    os.write(client.fd, bytes([DLE]) + stop)
    client.read_until(bytes([DLE, ETX]) + b"\r\nOK\r\n")
    assert not modem.streaming
    assert client.command("ATH") == b"\r\nOK\r\n"
    assert not modem.off_hook


def test_dialling_in_voice_mode_goes_off_hook(modem: FakeV253Modem, client: Client) -> None:
    voice_mode(client)
    assert client.command("ATD5551234;").endswith(b"OK\r\n")
    assert modem.dialled == ["5551234"]
    assert modem.off_hook


def test_every_command_is_recorded(modem: FakeV253Modem, client: Client) -> None:
    voice_mode(client)
    assert modem.commands == ["ATE0", "AT+FCLASS=8", "AT+VSM=128,8000", "AT+VCID=1"]


def test_garbage_gets_error_and_the_modem_goes_on(client: Client) -> None:
    client.command("ATE0")
    os.write(client.fd, b"\x00\xff\x13garbage\r")
    assert client.read_until(*FINAL).endswith(b"ERROR\r\n")
    assert client.command("AT") == b"\r\nOK\r\n"


def test_unplugging_fails_the_clients_reads(modem: FakeV253Modem, client: Client) -> None:
    modem.unplug()
    with pytest.raises(OSError):
        for _ in range(100):
            if os.read(client.fd, 1) == b"":
                raise OSError("end of file")
            time.sleep(0.01)


def test_a_replugged_modem_answers_again_from_its_power_up_state(
        modem: FakeV253Modem, client: Client) -> None:
    client.command("ATE0")
    modem.unplug()
    modem.replug()
    again = Client(modem.path)
    try:
        assert again.command("AT") == b"AT\r\r\nOK\r\n"
    finally:
        again.close()


def perform(call: FxoCall, client: Client, now: float) -> list[FxoEvent]:
    """What a driver does with FxoCall's outputs: commands in order, stream endings awaited."""
    facts = []
    while (event := call.next_event()) is not None:
        if isinstance(event, SendCommand):
            answer = client.command(event.line)
            if answer.endswith(b"CONNECT\r\n"):
                call.voice_started(now)
            elif not answer.endswith(b"OK\r\n"):
                call.command_failed(event.line, now)
        elif isinstance(event, LeaveVoice):
            os.write(client.fd, event.data)
            client.read_until(bytes([DLE, ETX]) + b"\r\nOK\r\n")
        else:
            facts.append(event)
    return facts


def test_an_incoming_call_runs_through_fxocall_against_the_fake(
        modem: FakeV253Modem, client: Client) -> None:
    profile = PROFILES["usr5637"]
    for line in profile.init:
        assert client.command(line).endswith(b"OK\r\n"), line
    call = FxoCall(profile=profile)
    modem.ring("5551234", name="ACME", rings=3)
    for line in (client.read_until(b"RING\r\n") + client.read_until(b"RING\r\n")).split(b"\r\n"):
        call.line_received(line.decode(), 1.0)
    facts = perform(call, client, 1.0)
    assert [type(fact) for fact in facts] == [RingDetected, CallerIdReceived, RingDetected]
    assert call.caller_id is not None
    assert (call.caller_id.number, call.caller_id.name) == ("5551234", "ACME")

    call.answer(2.0)
    assert perform(call, client, 2.0) == [Answered(outgoing=False)]
    assert modem.streaming and modem.off_hook

    modem.send_dtmf("42")
    modem.far_end_hangs_up()
    decoder = DleDecoder()
    decoder.receive_data(client.read_for(0.2))
    while (stream_event := decoder.next_event()) is not None:
        if isinstance(stream_event, DleEvent):
            call.dle_received(stream_event, 3.0)
    assert perform(call, client, 3.0) == [
        DtmfReceived(digit="4"),
        DtmfReceived(digit="2"),
        FarEndHungUp(reason=EndReason.LOOP_BREAK),
        CallEnded(reason=EndReason.LOOP_BREAK),
    ]
    assert not modem.streaming
    assert not modem.off_hook
    assert modem.commands[-1] == "AT+VLS=0"


def test_a_by_id_link_follows_the_modem_across_a_replug(tmp_path: Path) -> None:
    link = tmp_path / "by-id" / "usb-USR_5637-if00"
    with FakeV253Modem(link) as modem:
        assert modem.port == str(link)
        modem.unplug()
        assert not link.exists()
        modem.replug()
        client = Client(str(link))
        try:
            assert client.command("AT") == b"AT\r\r\nOK\r\n"
        finally:
            client.close()
