"""What `firmware.notify` decides to send for each fact, with the configuration and `now`."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from firmware.notify import Notifier, VoicemailFact
from firmware.reports import DailyRow, ManagerRow
from firmware.store.config import ConfigError, parse_config

NOW = 1_767_268_800.0  # 2026-01-01 12:00 UTC, 15:00 in Moscow


def config(**notifications: Any) -> Any:
    return parse_config({
        "extensions": [{"number": "101", "name": "Anna", "password": "secret123"}],
        "departments": [{"number": "200", "name": "Sales", "strategy": "ring_all",
                         "ring_timeout_s": 20, "members": ["101"]}],
        "smtp": {"host": "mail.office.test", "from": "box@office.test"},
        "notifications": notifications,
    })


def missed_call(**fields: Any) -> dict[str, Any]:
    return {"id": "c1", "direction": "inbound", "caller": "+79161234567", "number": "4950001",
            "department": "200", "outcome": "missed", "started_at": NOW - 60, "waited_s": 25.0,
            "callback_state": None, **fields}


TOLD = {"missed_calls": {"200": {"email": ["boss@office.test"], "sms": ["+79990001122"]}}}


def test_a_missed_call_is_told_to_the_departments_addresses_and_mobiles() -> None:
    out = Notifier(config(**TOLD)).call_recorded(missed_call(), now=NOW)
    assert [(o.channel, o.recipient, o.kind) for o in out] == [
        ("email", "boss@office.test", "missed"), ("sms", "+79990001122", "missed")]
    assert "+79161234567" in out[0].subject
    assert "14:59" in out[0].body  # local time in the site's zone (Moscow)
    assert out[0].key == "missed:c1:email:boss@office.test"


@pytest.mark.parametrize("outcome", ["answered", "voicemail", "closed", "forwarded"])
def test_calls_someone_answered_or_that_left_a_message_are_not_missed(outcome: str) -> None:
    assert Notifier(config(**TOLD)).call_recorded(missed_call(outcome=outcome), now=NOW) == []


def test_outbound_and_internal_calls_are_never_missed_calls() -> None:
    notifier = Notifier(config(**TOLD))
    assert notifier.call_recorded(missed_call(direction="internal"), now=NOW) == []
    assert notifier.call_recorded(missed_call(direction="outbound"), now=NOW) == []


def test_a_department_nobody_is_told_about_sends_nothing() -> None:
    assert Notifier(config()).call_recorded(missed_call(), now=NOW) == []


def test_a_pending_callback_is_not_missed_until_it_expires() -> None:
    notifier = Notifier(config(**TOLD))
    call = missed_call(outcome="callback", callback_state="requested")
    assert notifier.call_recorded(call, now=NOW) == []
    assert notifier.callback_state("c1", "done", now=NOW) == []
    notifier.call_recorded(call, now=NOW)
    out = notifier.callback_state("c1", "expired", now=NOW + 3600)
    assert [o.recipient for o in out] == ["boss@office.test", "+79990001122"]
    assert "expired" in out[0].body


def test_a_callback_pending_before_a_restart_still_becomes_a_missed_call() -> None:
    notifier = Notifier(config(**TOLD))
    notifier.restore_pending([{"origin_call_id": "c9", "department": "200",
                               "customer": "+79161234567", "number": None,
                               "entered_at": NOW - 600}])
    out = notifier.callback_state("c9", "failed", now=NOW)
    assert out and out[0].key == "missed:c9:email:boss@office.test"


def test_the_caller_is_texted_once_per_local_day_by_key() -> None:
    notifier = Notifier(config(missed_calls={"200": {"caller_sms": True}}))
    first = notifier.call_recorded(missed_call(), now=NOW)
    again = notifier.call_recorded(missed_call(id="c2", started_at=NOW + 600), now=NOW)
    next_day = notifier.call_recorded(missed_call(id="c3", started_at=NOW + 86400), now=NOW)
    assert [(o.channel, o.recipient, o.kind) for o in first] == [
        ("sms", "+79161234567", "caller")]
    assert first[0].key == again[0].key == "caller:+79161234567:2026-01-01"
    assert next_day[0].key == "caller:+79161234567:2026-01-02"
    assert "перезвоним" in first[0].body


@pytest.mark.parametrize("caller", ["", "anonymous", "900", "101"])
def test_a_caller_with_no_full_number_gets_no_sms(caller: str) -> None:
    notifier = Notifier(config(missed_calls={"200": {"caller_sms": True}}))
    assert notifier.call_recorded(missed_call(caller=caller), now=NOW) == []


def test_a_voicemail_goes_to_the_mailbox_with_its_call_to_attach() -> None:
    notifier = Notifier(config(voicemail={"200": {"email": ["sales@office.test"]}}))
    fact = VoicemailFact(call_id="c1", mailbox="200", caller="+79161234567", left_at=NOW,
                         duration_s=75.0)
    (out,) = notifier.voicemail_left(fact, now=NOW)
    assert (out.recipient, out.voicemail_call_id, out.kind) == ("sales@office.test", "c1",
                                                                "voicemail")
    assert "1 мин 15 с" in out.subject
    assert notifier.voicemail_left(
        VoicemailFact(call_id="c2", mailbox="101", caller="x", left_at=NOW, duration_s=3),
        now=NOW) == []


def test_the_daily_summary_is_due_from_its_time_in_the_sites_zone() -> None:
    notifier = Notifier(config(daily_summary={"time": "19:00", "email": ["boss@office.test"]}))
    assert notifier.summary_due(NOW) is None  # 15:00 in Moscow
    assert notifier.summary_due(NOW + 4 * 3600) == datetime.date(2026, 1, 1)  # 19:00


def test_the_daily_summary_holds_the_days_figures_and_each_manager() -> None:
    notifier = Notifier(config(daily_summary={"time": "19:00", "email": ["boss@office.test"],
                                              "sms": ["+79990001122"]}))
    day = datetime.date(2026, 1, 1)
    row = DailyRow(day=day, received=12, answered=9, missed=3, closed=1, other=0,
                   mean_wait_s=8.0)
    manager = ManagerRow(extension="101", name="Anna", offered=10, answered=9, missed_offers=1,
                         talk_s=1800.0, target_answered=0, sales=0, conversion=None)
    email, sms = notifier.summary(day, row, [manager])
    assert email.key == "summary:2026-01-01:email:boss@office.test"
    assert "принято 12, отвечено 9, пропущено 3" in email.body
    assert "101 Anna: отвечено 9 из 10" in email.body
    assert sms.body == "2026-01-01: звонков 12, отвечено 9, пропущено 3"


def test_english_texts_follow_the_sites_language() -> None:
    cfg = parse_config({**_data(), "site": {"language": "en"}})
    (out,) = Notifier(cfg).call_recorded(missed_call(), now=NOW)
    assert out.subject == "Missed call from +79161234567"


def _data() -> dict[str, Any]:
    return {
        "departments": [{"number": "200", "name": "Sales", "strategy": "ring_all",
                         "ring_timeout_s": 20}],
        "smtp": {"host": "mail.office.test", "from": "box@office.test"},
        "notifications": {"missed_calls": {"200": {"email": ["boss@office.test"]}}},
    }


@pytest.mark.parametrize(("change", "path"), [
    ({"smtp": None}, "notifications.missed_calls.200.email"),
    ({"notifications": {"missed_calls": {"300": {}}}}, "notifications.missed_calls.300"),
    ({"notifications": {"missed_calls": {"200": {"email": ["not an address"]}}}},
     "notifications.missed_calls.200.email[0]"),
    ({"notifications": {"missed_calls": {"200": {"sms": [79161234567]}}}},
     "notifications.missed_calls.200.sms[0]"),
    ({"notifications": {"daily_summary": {"time": "7pm"}}}, "notifications.daily_summary.time"),
    ({"notifications": {"sms_line": "mts"}}, "notifications.sms_line"),
    ({"smtp": {"host": "mail", "from": "box@office.test", "security": "ssl"}}, "smtp.security"),
    ({"smtp": {"host": "mail", "from": "box@office.test", "password": "x"}}, "smtp.username"),
])
def test_the_configuration_is_refused_naming_the_key(change: dict[str, Any], path: str) -> None:
    data = {**_data(), **change}
    if data.get("smtp") is None:
        data.pop("smtp")
    with pytest.raises(ConfigError) as refused:
        parse_config(data)
    assert refused.value.path == path


def test_the_smtp_port_follows_the_security_and_the_password_stays_in_exports() -> None:
    from firmware.store.config import config_to_dict
    cfg = parse_config({**_data(), "smtp": {"host": "mail", "from": "box@office.test",
                                            "security": "tls", "username": "box",
                                            "password": "s3cret"}})
    assert cfg.smtp.port == 465
    assert "s3cret" not in repr(cfg.smtp)
    assert config_to_dict(cfg)["smtp"]["password"] == "s3cret"
    assert parse_config(config_to_dict(cfg)) == cfg
