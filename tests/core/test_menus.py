"""Voice menus (IVR) through the sans-IO gateway with stepped time: the caller gets a 183 with the
box's SDP and hears the menu's greeting in the RTP; a key (RFC 4733 in the RTP, or SIP INFO)
routes the call as a number's destination would, on the same anchored media, so the member who
answers is bridged to the caller; unknown keys, silence, the repeat limit, nested menus, dialling
an extension directly with the inter-digit timeout, and the announcement that plays then routes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from firmware.media import g711, prompts, sdp
from firmware.media.rtp import RtpPacket, TelephoneEvent, parse_rtp
from firmware.routing.menu import menu_to_data
from firmware.sip.message import Request
from firmware.store.config import ConfigError, config_to_dict, parse_config
from firmware.store.db import Store
from tests.core.network import (
    CONFIG,
    GATEWAY,
    Office,
    answer_with_sdp,
    office,
    request,
)
from tests.core.test_queue_media import CALLER_RTP, CALLER_SDP, MEMBER_RTP, MEMBER_SDP

MENU_DID = "+74950000700"
NOTICE_DID = "+74950000701"
DIRECT_DID = "+74950000702"
TIMEOUT_S = 4
DIGIT_TIMEOUT_S = 3

MENUS = [
    {"name": "main", "greeting": ["menu_welcome", "menu_choose"],
     "keys": {"1": "200", "2": "menu:accounts", "3": "voicemail:200", "*": "repeat"},
     "timeout_s": TIMEOUT_S, "repeats": 1, "timeout": "400"},
    {"name": "accounts", "greeting": "goodbye", "keys": {"1": "300", "0": "menu:main"}},
    {"name": "notice", "greeting": ["call_may_be_recorded"], "then": "200"},
    {"name": "direct", "greeting": ["menu_dial_extension"], "keys": {"1": "400"},
     "direct_dial": True, "digit_timeout_s": DIGIT_TIMEOUT_S, "timeout_s": 10},
]


def menu_config() -> dict[str, object]:
    config = copy.deepcopy(CONFIG)
    config["numbers"] = [*config["numbers"], *(  # type: ignore[misc]
        {"number": did, "trunk": "provider", "channels": 3, "destination": f"menu:{name}"}
        for did, name in ((MENU_DID, "main"), (NOTICE_DID, "notice"), (DIRECT_DID, "direct")))]
    config["menus"] = copy.deepcopy(MENUS)
    config["site"] = {"timezone": "Europe/Moscow", "language": "en"}
    return config


def caller_in_menu(did: str = MENU_DID) -> tuple[Office, Request, int]:
    """A provider caller with SDP reaches `did`; returns the box's port from the 183."""
    o = office(config=menu_config())
    invite = o.provider.call(did, sdp=CALLER_SDP)
    early = [r for r in o.provider.responses() if r.status == 183]
    assert early, "no early media"
    return o, invite, sdp.accept_answer(early[-1].body).remote_port


def heard_pcm(o: Office) -> bytes:
    packets = [parse_rtp(data) for _, data, to in o.net.rtp_to_send() if to == CALLER_RTP]
    return b"".join(g711.alaw_decode(p.payload) for p in packets if p.payload_type == 8)


def sounds_like(heard: bytes, name: str) -> bool:
    prompt = g711.alaw_decode(g711.alaw_encode(prompts.prompt("en", name)))
    middle = len(prompt) // 4 * 2  # a sample boundary halfway through
    return prompt[middle:middle + 800] in heard


def press_rtp(o: Office, port: int, key: str) -> None:
    """An RFC 4733 event for `key` in the caller's RTP (start, then three end packets)."""
    event = "0123456789*#".index(key)
    started = int(o.net.now * 8000)  # one event: one timestamp (RFC 4733 §2.5.1.1)
    for i, end in enumerate((False, False, True, True, True)):
        o.net.advance(0.02)
        o.net.gateway.receive_rtp(port, RtpPacket(
            payload_type=101, sequence=int(o.net.now * 50) % 60000,
            timestamp=started, ssrc=9, marker=i == 0,
            payload=TelephoneEvent(event=event, end=end, volume=10, duration=160 * (i + 1))
            .to_bytes()).to_bytes(), o.net.now)
        o.net.pump()


def press_info(o: Office, invite: Request, key: str) -> int:
    """DTMF as SIP INFO (application/dtmf-relay) in the early dialog of the box's 183."""
    early = [r for r in o.provider.responses() if r.call_id == invite.call_id and r.status == 183]
    info = request("INFO", f"sip:linebox@{GATEWAY.host}:{GATEWAY.port}", [
        ("Via", o.provider.via()), ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""), ("To", early[-1].headers.get("To") or ""),
        ("Call-ID", invite.call_id), ("CSeq", "2 INFO"),
        ("Content-Type", "application/dtmf-relay"),
    ], f"Signal={key}\r\nDuration=160\r\n".encode())
    before = len(o.provider.responses("INFO"))
    o.provider.send(info)
    return o.provider.responses("INFO")[before:][-1].status


def ringing(o: Office, extension: str) -> bool:
    phone = o.phones[extension]
    return any(entry.last is None or entry.last.status < 200 for entry in phone.incoming.values())


def finals(o: Office, invite: Request) -> list[int]:
    return [r.status for r in o.provider.responses()
            if r.call_id == invite.call_id and r.status >= 200]


# ---------------------------------------------------------------------- reaching the menu
def test_the_caller_gets_183_with_the_boxes_sdp_and_hears_the_greeting() -> None:
    o, invite, port = caller_in_menu()
    statuses = [r.status for r in o.provider.responses() if r.call_id == invite.call_id]
    assert 183 in statuses and 180 not in statuses and not finals(o, invite)
    early = [r for r in o.provider.responses() if r.status == 183][-1]
    assert sdp.accept_answer(early.body).remote_host == GATEWAY.host
    o.net.advance(6.0)
    heard = heard_pcm(o)
    assert sounds_like(heard, "menu_welcome") and sounds_like(heard, "menu_choose")
    assert not any(ringing(o, ext) for ext in ("101", "102", "103"))


def test_key_1_rings_the_department_with_the_boxes_offer_and_the_member_is_bridged() -> None:
    o, invite, port = caller_in_menu()
    o.net.advance(1.0)
    press_rtp(o, port, "1")
    assert ringing(o, "101") and ringing(o, "102")
    offer = sdp.SessionDescription.parse(o.phones["101"].ringing_invite().body)
    assert offer.connection == GATEWAY.host
    member_port = offer.media[0].port
    answer_with_sdp(o.phones["101"], MEMBER_SDP)
    early, final = (next(r for r in o.provider.responses()
                         if r.call_id == invite.call_id and r.status == status)
                    for status in (183, 200))
    assert final.body == early.body  # RFC 3261 §13.2.1: the same answer
    o.net.rtp_to_send()
    # The caller's voice (PCMA) reaches the member from the member-facing port, as PCMU.
    voice = RtpPacket(payload_type=8, sequence=1, timestamp=160, ssrc=7, payload=b"\x55" * 160)
    o.net.gateway.receive_rtp(port, voice.to_bytes(), o.net.now)
    to_member = [(p, parse_rtp(d)) for p, d, to in o.net.rtp_to_send() if to == MEMBER_RTP]
    assert [(p, packet.ssrc, packet.payload_type) for p, packet in to_member] == [
        (member_port, 7, 0)]
    o.provider.bye(invite)
    [(record, _)] = o.rows
    assert record["department"] == "200" and record["outcome"] == "answered"


def test_a_key_by_sip_info_routes_the_same_way() -> None:
    o, invite, port = caller_in_menu()
    assert press_info(o, invite, "1") == 200
    assert ringing(o, "101") and ringing(o, "102")


def test_while_the_choice_rings_the_caller_hears_ringback_not_the_greeting() -> None:
    o, invite, port = caller_in_menu()
    press_rtp(o, port, "1")
    o.net.rtp_to_send()
    o.net.advance(5.0)
    heard = heard_pcm(o)
    assert not sounds_like(heard, "menu_choose")
    samples = g711.pcm_samples(heard)
    assert max(abs(s) for s in samples[:8000]) > 1000  # ringback tone, not silence


def test_repeat_plays_the_greeting_again() -> None:
    o, invite, port = caller_in_menu()
    o.net.advance(0.5)
    press_rtp(o, port, "*")
    o.net.rtp_to_send()
    o.net.advance(3.0)
    assert sounds_like(heard_pcm(o), "menu_welcome")


# ---------------------------------------------------------------------- invalid, timeout
def test_an_unknown_key_is_said_invalid_and_the_greeting_plays_again() -> None:
    o, invite, port = caller_in_menu()
    o.net.advance(0.5)
    press_rtp(o, port, "7")
    o.net.advance(3.5)
    heard = heard_pcm(o)
    assert sounds_like(heard, "menu_invalid") and sounds_like(heard, "menu_welcome")
    assert not finals(o, invite)


def test_past_the_repeat_limit_an_unknown_key_takes_the_invalid_action() -> None:
    o, invite, port = caller_in_menu()
    press_rtp(o, port, "7")  # repeats: 1 → one more greeting
    o.net.advance(0.5)
    press_rtp(o, port, "8")  # invalid: hangup (the default)
    assert finals(o, invite) == [480]
    [(record, _)] = o.rows
    assert record["outcome"] == "missed"
    assert o.net.gateway.local_media == {}  # the ports are given back


def test_silence_plays_the_greeting_again_then_takes_the_timeout_action() -> None:
    o, invite, port = caller_in_menu()
    greeting_s = sum(len(prompts.prompt("en", n)) for n in ("menu_welcome", "menu_choose")) / 16000
    o.net.advance(greeting_s + TIMEOUT_S - 0.5)
    assert not ringing(o, "103")
    o.net.advance(greeting_s + TIMEOUT_S)
    assert not ringing(o, "103")  # the second greeting and its wait are not over yet
    o.net.advance(1.0)
    assert ringing(o, "103")  # timeout: "400", the warehouse


def test_silence_replays_the_greeting_once() -> None:
    o, invite, port = caller_in_menu()
    greeting_s = sum(len(prompts.prompt("en", n)) for n in ("menu_welcome", "menu_choose")) / 16000
    o.net.advance(greeting_s + TIMEOUT_S + 0.1)
    o.net.rtp_to_send()
    o.net.advance(2.0)
    assert sounds_like(heard_pcm(o), "menu_welcome")


# ---------------------------------------------------------------------- nesting
def test_a_key_leads_to_a_nested_menu_and_its_key_rings_that_department() -> None:
    o, invite, port = caller_in_menu()
    press_rtp(o, port, "2")
    o.net.rtp_to_send()
    o.net.advance(1.0)
    assert sounds_like(heard_pcm(o), "goodbye")  # the accounts menu's greeting
    press_rtp(o, port, "1")
    assert ringing(o, "101") and not ringing(o, "102")  # 300: in order, 101 first


def test_a_nested_menu_leads_back_by_a_key() -> None:
    o, invite, port = caller_in_menu()
    press_rtp(o, port, "2")
    press_rtp(o, port, "0")
    o.net.rtp_to_send()
    o.net.advance(2.0)
    assert sounds_like(heard_pcm(o), "menu_welcome")
    press_rtp(o, port, "1")
    assert ringing(o, "101") and ringing(o, "102")


def test_voicemail_from_a_menu_answers_on_the_same_session() -> None:
    o, invite, port = caller_in_menu()
    press_rtp(o, port, "3")
    responses = [r for r in o.provider.responses() if r.call_id == invite.call_id]
    early = next(r for r in responses if r.status == 183)
    final = next(r for r in responses if r.status == 200)
    assert final.body == early.body
    o.net.rtp_to_send()
    o.net.advance(6.0)
    assert sounds_like(heard_pcm(o), "voicemail_greeting")


# ---------------------------------------------------------------------- dialling directly
def test_a_complete_extension_dialled_directly_rings_at_once() -> None:
    o, invite, port = caller_in_menu(DIRECT_DID)
    for key in "102":
        press_rtp(o, port, key)
    assert ringing(o, "102") and not ringing(o, "101")


def test_a_single_digit_waits_the_inter_digit_timeout_then_counts_as_its_key() -> None:
    o, invite, port = caller_in_menu(DIRECT_DID)
    press_rtp(o, port, "1")  # begins 101..103 and is key 1
    o.net.advance(DIGIT_TIMEOUT_S - 0.5)
    assert not ringing(o, "103")
    o.net.advance(1.0)
    assert ringing(o, "103")  # key 1: "400"


def test_hash_ends_the_digits_at_once() -> None:
    o, invite, port = caller_in_menu(DIRECT_DID)
    press_rtp(o, port, "1")
    press_rtp(o, port, "#")
    assert ringing(o, "103")


def test_digits_that_are_no_number_are_invalid() -> None:
    o, invite, port = caller_in_menu(DIRECT_DID)
    press_rtp(o, port, "1")
    press_rtp(o, port, "0")  # "10": 101..103 begin like this
    o.net.rtp_to_send()
    o.net.advance(DIGIT_TIMEOUT_S + 2.0)
    assert sounds_like(heard_pcm(o), "menu_invalid")
    assert not any(ringing(o, ext) for ext in ("101", "102", "103"))


# ---------------------------------------------------------------------- the announcement
def test_an_announcement_plays_then_routes() -> None:
    o, invite, port = caller_in_menu(NOTICE_DID)
    length_s = len(prompts.prompt("en", "call_may_be_recorded")) / 16000
    o.net.advance(length_s - 0.3)
    assert not ringing(o, "101")
    o.net.advance(0.6)
    assert ringing(o, "101") and ringing(o, "102")


def test_a_late_offer_caller_goes_straight_to_the_timeout_action() -> None:
    o = office(config=menu_config())
    invite = o.provider.call(MENU_DID)  # no SDP: nothing to answer with early media
    assert ringing(o, "103")
    assert [r.status for r in o.provider.responses() if r.call_id == invite.call_id
            and r.status == 183] == []


def test_a_no_answer_step_may_go_to_a_menu() -> None:
    config = menu_config()
    departments = config["departments"]
    assert isinstance(departments, list)
    departments[2]["no_answer"] = {"steps": [{"to": "menu:accounts", "time_s": 10}]}
    departments[2]["ring_timeout_s"] = 10
    o = office(config=config)
    invite = o.provider.call("+74950000400", sdp=CALLER_SDP)
    assert ringing(o, "103")
    o.net.advance(10.5)
    early = [r for r in o.provider.responses() if r.call_id == invite.call_id and r.status == 183]
    assert early and not finals(o, invite)
    port = sdp.accept_answer(early[-1].body).remote_port
    press_rtp(o, port, "1")
    assert ringing(o, "101")


# ---------------------------------------------------------------------- configuration
def test_menus_round_trip_through_plain_data() -> None:
    parsed = parse_config(menu_config())
    assert parse_config(config_to_dict(parsed)).menus == parsed.menus
    # The number is always written down: once saved, deleting a menu renumbers no other.
    assert menu_to_data(parsed.menus[2]) == {"name": "notice", "number": "3",
                                              "greeting": ["call_may_be_recorded"],
                                              "then": "200"}


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m[0]["keys"].update({"x": "200"}), "menus[0].keys: 'x' is no key"),
    (lambda m: m[0]["keys"].update({"5": "209"}), "menus[0].keys.5: unknown destination"),
    (lambda m: m[0]["keys"].update({"5": "menu:nope"}), 'unknown menu "nope"'),
    (lambda m: m[1].update({"greeting": "no_such_prompt"}), 'no built-in prompt "no_such'),
    (lambda m: m[2].update({"then": "menu:main", "name": "notice"})
     or m[0].update({"timeout": "menu:notice"}), "without a key being pressed"),
    (lambda m: m[3].update({"keys": {}, "direct_dial": False}), "give it keys"),
    (lambda m: m.append({"name": "main", "then": "200"}), 'duplicate menu "main"'),
])
def test_bad_menus_are_refused_naming_the_key(change: object, message: str) -> None:
    config = menu_config()
    assert callable(change)
    change(config["menus"])
    with pytest.raises(ConfigError, match=None) as error:
        parse_config(config)
    assert message in str(error.value)


def test_a_number_may_not_name_an_unknown_menu() -> None:
    config = menu_config()
    config["menus"] = [m for m in MENUS if m["name"] != "notice"]
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    assert 'unknown destination "menu:notice"' in str(error.value)


def test_menus_are_kept_by_the_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "linebox.db")
    try:
        store.replace_config(parse_config(menu_config()))
        assert store.load_config().menus == parse_config(menu_config()).menus
    finally:
        store.close()


def test_the_documented_example_is_a_valid_configuration() -> None:
    text = (Path(__file__).parents[2] / "docs" / "config.md").read_text(encoding="utf-8")
    section = text[text.index("## `menus`"):text.index("## `security`")]
    start = section.index("```yaml") + len("```yaml")
    example = yaml.safe_load(section[start:section.index("```", start)])
    config = copy.deepcopy(CONFIG)
    config["numbers"] = example["numbers"]
    config["menus"] = example["menus"]
    menus = parse_config(config).menus
    assert [m.name for m in menus] == ["welcome", "main", "support"]
    assert menus[1].keys["2"] == "menu:support" and menus[0].then == "menu:main"
