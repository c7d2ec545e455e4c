"""A voice menu's greeting recorded by phone, through the sans-IO gateway with stepped time: an
allowed extension dials *97 and the menu's number, the box answers with its own SDP and says the
options; 1 records after the beep until #, 2 plays the recording back, 3 hands it to the daemon
(`MenuGreetingRecorded`) and, once the daemon says it is stored, confirms. A refused extension
gets 403, an unknown number 404, and hanging up before 3 hands nothing over."""

from __future__ import annotations

import copy

import pytest

from firmware.core.menu_greetings import GREETING_CODE, GREETING_MAX_S
from firmware.ivr import (
    OPTIONS_TIMES,
    OPTIONS_WAIT_S,
    PROMPT_GREETING_NOT_SAVED,
    PROMPT_GREETING_OPTIONS,
    PROMPT_GREETING_SAVED,
)
from firmware.media import g711, prompts, sdp
from firmware.routing.menu import greeting_key
from firmware.store.config import ConfigError, parse_config
from tests.core.network import CONFIG, Office, authorised_call, office, request
from tests.core.test_voicemail import CALLER_SDP, Caller, tone_pcm
from webui.voicemail import GREETING_MAX_S as UPLOAD_MAX_S

MENUS = copy.deepcopy(CONFIG)
MENUS["menus"] = [{"name": "main", "keys": {"1": "200"}},
                  {"name": "support", "number": 7, "keys": {"1": "400"}}]
MENUS["site"] = {"language": "en", "greeting_recorders": ["101"]}
OPTIONS_S = len(prompts.prompt("en", PROMPT_GREETING_OPTIONS)) / 16000
SAVED_S = len(prompts.prompt("en", PROMPT_GREETING_SAVED)) / 16000
BEEP_S = 0.5


def dial(extension: str, dialed: str) -> tuple[Office, int, Caller | None]:
    o = office(config=MENUS)
    _invite, response = authorised_call(o.phones[extension], dialed, sdp=CALLER_SDP)
    if response.status != 200:
        return o, response.status, None
    choice = sdp.accept_answer(response.body)
    return o, response.status, Caller(o, choice.remote_port)


def info_key(o: Office, key: str) -> int:
    """`key` as SIP INFO (application/dtmf-relay, RFC 6086) inside 101's answered call."""
    phone = o.phones["101"]
    call = phone.outgoing[-1]
    assert call.answer is not None
    info = request("INFO", str(call.answer.contacts[0].uri), [
        ("Via", phone.via()), ("Max-Forwards", "70"),
        ("From", call.invite.headers.get("From") or ""),
        ("To", call.answer.headers.get("To") or ""),
        ("Call-ID", call.invite.call_id), ("CSeq", "5 INFO"),
        ("Content-Type", "application/dtmf-relay"),
    ], f"Signal={key}\r\nDuration=160\r\n".encode())
    phone.send(info)
    return phone.responses("INFO")[-1].status


def alaw(pcm: bytes) -> list[int]:
    return list(g711.pcm_samples(g711.alaw_decode(g711.alaw_encode(pcm))))


def rising_per_s(samples: list[int]) -> float:
    return sum(1 for a, b in zip(samples, samples[1:], strict=False) if a < 0 <= b) / (
        len(samples) / 8000)


def record_tone(caller: Caller, seconds: float) -> None:
    caller.wait(OPTIONS_S + 0.1)
    caller.press("1")
    caller.wait(BEEP_S + 0.1)
    caller.say(tone_pcm(440, seconds))
    caller.press("#")


def test_menus_are_numbered_in_order_unless_given_a_number() -> None:
    config = parse_config(MENUS)
    assert [(m.name, m.number) for m in config.menus] == [("main", "1"), ("support", "7")]


def test_the_box_answers_and_says_the_options() -> None:
    o, status, caller = dial("101", f"{GREETING_CODE}1")
    assert status == 200 and caller is not None
    caller.wait(OPTIONS_S)
    heard = list(g711.pcm_samples(caller.heard_pcm()))
    options = alaw(prompts.prompt("en", PROMPT_GREETING_OPTIONS))
    assert heard[:len(options)][:8000] == options[:8000]


def test_record_listen_save_hands_the_recording_to_the_daemon_and_confirms() -> None:
    o, _status, caller = dial("101", f"{GREETING_CODE}7")
    assert caller is not None
    record_tone(caller, 2.0)
    assert o.net.menu_greetings == []  # recorded, not saved yet
    caller.heard.clear()
    caller.press("2")
    caller.wait(2.2)
    heard = list(g711.pcm_samples(caller.heard_pcm()))
    # What was said comes back: two seconds of the 440 Hz tone.
    start = next(i for i, s in enumerate(heard) if abs(s) > 1000)
    played = heard[start:start + 16000]
    assert len(played) >= 16000 - 320
    assert 430 <= rising_per_s(played) <= 450
    caller.press("3")
    saved = o.net.menu_greetings
    assert len(saved) == 1
    event = saved[0]
    assert event.menu == "support" and event.key == greeting_key("support")
    assert 1.9 <= len(event.pcm) / 16000 <= 2.1
    caller.heard.clear()
    o.net.gateway.menu_greeting_saved(event.call_id, True, o.net.now)
    caller.wait(SAVED_S)
    confirmation = alaw(prompts.prompt("en", PROMPT_GREETING_SAVED))
    assert list(g711.pcm_samples(caller.heard_pcm()))[:4000] == confirmation[:4000]


def test_saving_before_recording_saves_nothing() -> None:
    o, _status, caller = dial("101", f"{GREETING_CODE}1")
    assert caller is not None
    caller.wait(1)
    caller.press("3")
    caller.wait(3)
    assert o.net.menu_greetings == []


def test_hanging_up_without_saving_changes_nothing() -> None:
    o, _status, caller = dial("101", f"{GREETING_CODE}1")
    assert caller is not None
    record_tone(caller, 1.5)
    o.phones["101"].bye(o.phones["101"].outgoing[-1].invite)
    o.net.advance(1)
    assert o.net.menu_greetings == []
    row, _legs = o.rows[-1]
    assert row["direction"] == "internal" and row["dialed"] == f"{GREETING_CODE}1"


def test_an_extension_not_allowed_is_refused_403_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="firmware.core.menu_greetings"):
        o, status, caller = dial("102", f"{GREETING_CODE}1")
    assert status == 403 and caller is None
    assert "extension 102 may not record the greeting of menu main" in caplog.text
    assert o.net.rtp_to_send() == []


def test_an_unknown_menu_number_is_404() -> None:
    _o, status, caller = dial("101", f"{GREETING_CODE}5")
    assert status == 404 and caller is None


def test_a_recording_stops_at_the_uploads_limit() -> None:
    assert GREETING_MAX_S == UPLOAD_MAX_S
    o, _status, caller = dial("101", f"{GREETING_CODE}1")
    assert caller is not None
    caller.wait(OPTIONS_S + 0.1)
    caller.press("1")
    caller.wait(BEEP_S + 0.1)
    caller.say(tone_pcm(440, GREETING_MAX_S + 2))
    caller.press("3")
    assert len(o.net.menu_greetings) == 1
    assert len(o.net.menu_greetings[0].pcm) / 16000 <= GREETING_MAX_S + 0.05


def test_greeting_recorders_must_be_extension_numbers() -> None:
    config = copy.deepcopy(MENUS)
    config["site"] = {"greeting_recorders": "101"}
    with pytest.raises(ConfigError, match="site.greeting_recorders"):
        parse_config(config)


def test_keys_by_sip_info_work_as_well() -> None:
    o, _status, caller = dial("101", f"{GREETING_CODE}1")
    assert caller is not None
    caller.wait(1)
    assert info_key(o, "1") == 200
    caller.wait(BEEP_S + 0.1)
    caller.say(tone_pcm(440, 1.0))
    assert info_key(o, "#") == 200
    assert info_key(o, "3") == 200
    assert len(o.net.menu_greetings) == 1


def test_a_store_that_cannot_write_is_said_so() -> None:
    o, _status, caller = dial("101", f"{GREETING_CODE}1")
    assert caller is not None
    record_tone(caller, 1.0)
    caller.press("3")
    [event] = o.net.menu_greetings
    caller.heard.clear()
    o.net.gateway.menu_greeting_saved(event.call_id, False, o.net.now)
    caller.wait(1)
    sorry = alaw(prompts.prompt("en", PROMPT_GREETING_NOT_SAVED))
    assert list(g711.pcm_samples(caller.heard_pcm()))[:4000] == sorry[:4000]


def test_nothing_pressed_the_box_says_the_options_three_times_and_hangs_up() -> None:
    o, _status, caller = dial("101", f"{GREETING_CODE}1")
    assert caller is not None
    caller.wait(OPTIONS_TIMES * (OPTIONS_S + OPTIONS_WAIT_S) - 1)
    assert o.phones["101"].requests("BYE") == []
    caller.wait(2)
    assert len(o.phones["101"].requests("BYE")) == 1
    assert o.net.menu_greetings == []


@pytest.mark.parametrize(("site", "message"), [
    ({"greeting_recorders": ["999"]}, "site.greeting_recorders: no extension 999"),
    ({"pickup_code": "*9"}, "site.pickup_code: *9 clashes with *97"),
    ({"directed_pickup_prefix": "*970"}, "site.directed_pickup_prefix: *970 clashes with *97"),
])
def test_the_greeting_code_is_guarded_in_the_configuration(site: dict[str, object],
                                                           message: str) -> None:
    config = copy.deepcopy(MENUS)
    config["site"] = site
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    assert message in str(error.value)
