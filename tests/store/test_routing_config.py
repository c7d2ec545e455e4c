"""The `site`, `schedules` and `rules` sections and the `schedule` of departments and numbers:
validation with key paths, defaults and round trips."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from firmware.routing.rules import CallerRule
from firmware.routing.schedule import Schedule
from firmware.store import Config, ConfigError, Store, config_to_dict, dump_yaml, load_yaml
from firmware.store.config import DEPARTMENT_DEFAULTS, Crm, Site, parse_config
from tests.store.conftest import VALID_YAML

Data = dict[str, Any]

DOCS_CONFIG = Path(__file__).resolve().parents[2] / "docs" / "config.md"

ROUTING_YAML = (
    VALID_YAML
    + """\
site:
  timezone: Europe/Moscow
schedules:
  - name: office
    hours:
      mon: ["09:00-18:00"]
      tue: ["09:00-18:00"]
      wed: ["09:00-13:00", "14:00-18:00"]
      thu: ["09:00-18:00"]
      fri: ["09:00-17:00", "22:00-06:00"]
      sat: []
    holidays: ["2026-12-31", 2027-01-01]
    after_hours: "103"
  - name: berlin
    timezone: Europe/Berlin
    hours:
      sun: ["00:00-24:00"]
rules:
  - match: "+7 (999) 000-00-00"
    action: blacklist
    reply: reject
  - match: "7495*"
    action: vip
    to: "300"
    hours: ["09:00-18:00"]
    weekdays: [mon, tue, wed, thu, fri]
  - match: _79[0-5]XXXXXXXX
    action: route
    to: "+74957654321"
  - match: "8800*"
    action: vip
crm:
  url: https://crm.example.ru/api/owner
  timeout_s: 1.5
"""
)


def routing_data() -> Data:
    data: Data = yaml.safe_load(ROUTING_YAML)
    data["departments"][0]["schedule"] = "office"
    data["numbers"][1]["schedule"] = "berlin"
    return data


def error_after(change: Callable[[Data], object]) -> ConfigError:
    data = routing_data()
    change(data)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value


def test_routing_example_passes() -> None:
    config = parse_config(routing_data())

    assert [schedule.name for schedule in config.schedules] == ["office", "berlin"]
    assert [rule.action for rule in config.rules] == ["blacklist", "vip", "route", "vip"]


# --- site ----------------------------------------------------------------------------------------


def test_site_time_zone_defaults_to_moscow() -> None:
    assert parse_config({}).site == Site(timezone="Europe/Moscow")


def test_site_time_zone_is_read() -> None:
    assert parse_config({"site": {"timezone": "Asia/Novosibirsk"}}).site.timezone == (
        "Asia/Novosibirsk"
    )


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "Europe", "europe/moscow", "", "/etc/x"])
def test_site_time_zone_must_be_a_known_zone(timezone: str) -> None:
    error = error_after(lambda d: d["site"].update(timezone=timezone))

    assert error.path == "site.timezone"


def test_unknown_site_key_is_rejected() -> None:
    error = error_after(lambda d: d["site"].update(tz="UTC"))

    assert error.path == "site.tz"


# --- schedules -----------------------------------------------------------------------------------


def test_schedule_is_read_into_weekday_minute_ranges() -> None:
    office = parse_config(routing_data()).schedules[0]

    assert office == Schedule(
        name="office",
        timezone="Europe/Moscow",
        hours={
            0: ((540, 1080),),
            1: ((540, 1080),),
            2: ((540, 780), (840, 1080)),
            3: ((540, 1080),),
            4: ((540, 1020), (1320, 360)),
        },
        holidays=frozenset({datetime.date(2026, 12, 31), datetime.date(2027, 1, 1)}),
        after_hours="103",
    )


def test_schedule_time_zone_defaults_to_the_site_one() -> None:
    data = routing_data()
    data["site"]["timezone"] = "Asia/Yekaterinburg"

    assert parse_config(data).schedules[0].timezone == "Asia/Yekaterinburg"


def test_schedule_may_have_its_own_time_zone() -> None:
    assert parse_config(routing_data()).schedules[1].timezone == "Europe/Berlin"


def test_schedule_without_after_hours_sends_calls_nowhere() -> None:
    assert parse_config(routing_data()).schedules[1].after_hours is None


def test_schedule_name_is_required() -> None:
    error = error_after(lambda d: d["schedules"][0].pop("name"))

    assert (error.path, error.message) == ("schedules[0].name", "is required")


def test_schedule_hours_are_required() -> None:
    error = error_after(lambda d: d["schedules"][1].pop("hours"))

    assert (error.path, error.message) == ("schedules[1].hours", "is required")


def test_duplicate_schedule_name_is_rejected() -> None:
    error = error_after(lambda d: d["schedules"][1].update(name="office"))

    assert error.path == "schedules[1].name"
    assert "duplicate" in error.message


def test_misspelt_weekday_is_rejected() -> None:
    error = error_after(lambda d: d["schedules"][0]["hours"].update(monday=["09:00-18:00"]))

    assert error.path == "schedules[0].hours.monday"
    assert "unknown key" in error.message


def test_malformed_time_range_names_its_list_position() -> None:
    error = error_after(lambda d: d["schedules"][0]["hours"]["wed"].__setitem__(1, "14:00-25:00"))

    assert error.path == "schedules[0].hours.wed[1]"


def test_time_range_that_yaml_read_as_a_number_is_refused_with_a_hint() -> None:
    # Unquoted 18:00 is YAML 1.1 base 60: the number 1080.
    error = error_after(lambda d: d["schedules"][0]["hours"].update(sat=[1080]))

    assert error.path == "schedules[0].hours.sat[0]"
    assert "quotes" in error.message


def test_day_hours_must_be_a_list() -> None:
    error = error_after(lambda d: d["schedules"][0]["hours"].update(sat="10:00-14:00"))

    assert error.path == "schedules[0].hours.sat"


@pytest.mark.parametrize("holiday", ["31.12.2026", "2026-02-30", 20261231, "2026-1-1"])
def test_holiday_must_be_a_real_date(holiday: object) -> None:
    error = error_after(lambda d: d["schedules"][0]["holidays"].append(holiday))

    assert error.path == "schedules[0].holidays[2]"


def test_holiday_listed_twice_is_rejected() -> None:
    error = error_after(lambda d: d["schedules"][0]["holidays"].append("2027-01-01"))

    assert error.path == "schedules[0].holidays[2]"
    assert "duplicate" in error.message


def test_schedule_time_zone_must_be_known() -> None:
    error = error_after(lambda d: d["schedules"][1].update(timezone="Berlin"))

    assert error.path == "schedules[1].timezone"


def test_after_hours_may_be_a_department() -> None:
    data = routing_data()
    data["schedules"][0]["after_hours"] = "300"

    assert parse_config(data).schedules[0].after_hours == "300"


@pytest.mark.parametrize("number", ["84951234567", "+74951234567", "+112"])
def test_after_hours_may_be_an_external_number(number: str) -> None:
    data = routing_data()
    data["schedules"][0]["after_hours"] = number

    assert parse_config(data).schedules[0].after_hours == number


def test_after_hours_of_extension_length_must_exist() -> None:
    error = error_after(lambda d: d["schedules"][0].update(after_hours="205"))

    assert str(error) == (
        'schedules[0].after_hours: unknown destination "205" (not an extension or department '
        'number; write an external number in full, with "+" if it is short)'
    )


@pytest.mark.parametrize("value", ["voicemail", "+", "1234567890123456"])
def test_after_hours_must_be_a_number(value: str) -> None:
    error = error_after(lambda d: d["schedules"][0].update(after_hours=value))

    assert error.path == "schedules[0].after_hours"


def test_after_hours_written_without_quotes_is_refused() -> None:
    error = error_after(lambda d: d["schedules"][0].update(after_hours=103))

    assert error.path == "schedules[0].after_hours"
    assert "quotes" in error.message


# --- schedule of departments and numbers ---------------------------------------------------------


def test_department_schedule_names_a_schedule() -> None:
    department = parse_config(routing_data()).departments[0]

    assert department.schedule == "office"
    assert "schedule" not in department.extra


def test_department_schedule_must_exist() -> None:
    error = error_after(lambda d: d["departments"][1].update(schedule="night"))

    assert str(error) == 'departments[1].schedule: unknown schedule "night"'


def test_department_schedule_in_the_old_reserved_form_stays_in_extra() -> None:
    data = routing_data()
    data["departments"][0]["schedule"] = {"mon": ["09:00", "18:00"]}

    department = parse_config(data).departments[0]

    assert department.schedule is None
    assert department.extra["schedule"] == {"mon": ["09:00", "18:00"]}


def test_department_without_schedule_is_always_open() -> None:
    assert parse_config(routing_data()).departments[1].schedule is None


def test_number_schedule_names_a_schedule() -> None:
    assert parse_config(routing_data()).numbers[1].schedule == "berlin"


def test_number_schedule_must_exist() -> None:
    error = error_after(lambda d: d["numbers"][0].update(schedule="office "))

    assert str(error) == 'numbers[0].schedule: unknown schedule "office "'


def test_number_schedule_must_be_text() -> None:
    error = error_after(lambda d: d["numbers"][0].update(schedule=["office"]))

    assert error.path == "numbers[0].schedule"


# --- rules ---------------------------------------------------------------------------------------


def test_rules_are_read_in_order_with_their_windows() -> None:
    rules = parse_config(routing_data()).rules

    assert rules[0] == CallerRule(match="+7 (999) 000-00-00", action="blacklist", reply="reject")
    assert rules[1] == CallerRule(
        match="7495*",
        action="vip",
        to="300",
        hours=((540, 1080),),
        weekdays=frozenset({0, 1, 2, 3, 4}),
    )


def test_blacklist_reply_defaults_to_busy() -> None:
    data = routing_data()
    del data["rules"][0]["reply"]

    assert parse_config(data).rules[0].reply == "busy"


def test_vip_without_destination_only_jumps_the_queue() -> None:
    assert parse_config(routing_data()).rules[3].to is None


@pytest.mark.parametrize("match", ["_7[9-0]X", "_7.X", "74 95x*", "anonymous"])
def test_malformed_match_is_rejected(match: str) -> None:
    error = error_after(lambda d: d["rules"][2].update(match=match))

    assert error.path == "rules[2].match"


def test_match_written_without_quotes_is_refused() -> None:
    error = error_after(lambda d: d["rules"][1].update(match=79990000000))

    assert error.path == "rules[1].match"
    assert "quotes" in error.message


def test_match_and_action_are_required() -> None:
    error = error_after(lambda d: d["rules"][1].pop("action"))

    assert (error.path, error.message) == ("rules[1].action", "is required")


def test_unknown_action_is_rejected() -> None:
    error = error_after(lambda d: d["rules"][1].update(action="whitelist"))

    assert str(error) == (
        'rules[1].action: unknown action "whitelist" (allowed: blacklist, vip, route)'
    )


def test_vip_destination_must_be_an_extension_or_department() -> None:
    error = error_after(lambda d: d["rules"][1].update(to="301"))

    assert error.path == "rules[1].to"


def test_vip_destination_may_not_be_external() -> None:
    error = error_after(lambda d: d["rules"][1].update(to="+74957654321"))

    assert error.path == "rules[1].to"


def test_route_needs_a_destination() -> None:
    error = error_after(lambda d: d["rules"][2].pop("to"))

    assert (error.path, error.message) == ("rules[2].to", "is required for a route rule")


def test_route_destination_of_extension_length_must_exist() -> None:
    error = error_after(lambda d: d["rules"][2].update(to="999"))

    assert error.path == "rules[2].to"


def test_route_may_go_to_an_extension() -> None:
    data = routing_data()
    data["rules"][2]["to"] = "101"

    assert parse_config(data).rules[2].to == "101"


def test_blacklist_takes_no_destination() -> None:
    error = error_after(lambda d: d["rules"][0].update(to="101"))

    assert error.path == "rules[0].to"


def test_reply_must_be_busy_or_reject() -> None:
    error = error_after(lambda d: d["rules"][0].update(reply="486"))

    assert str(error) == 'rules[0].reply: unknown reply "486" (allowed: busy, reject)'


def test_reply_is_only_for_blacklist_rules() -> None:
    error = error_after(lambda d: d["rules"][1].update(reply="busy"))

    assert error.path == "rules[1].reply"


def test_rule_hours_name_the_bad_range() -> None:
    error = error_after(lambda d: d["rules"][1].update(hours=["09:00-18:00", "18:00"]))

    assert error.path == "rules[1].hours[1]"


def test_rule_hours_must_not_be_empty() -> None:
    error = error_after(lambda d: d["rules"][1].update(hours=[]))

    assert error.path == "rules[1].hours"


def test_rule_weekday_must_be_a_day_name() -> None:
    error = error_after(lambda d: d["rules"][1].update(weekdays=["mon", "friday"]))

    assert error.path == "rules[1].weekdays[1]"


def test_rule_weekday_listed_twice_is_rejected() -> None:
    error = error_after(lambda d: d["rules"][1].update(weekdays=["mon", "tue", "mon"]))

    assert error.path == "rules[1].weekdays[2]"


def test_rule_weekdays_must_not_be_empty() -> None:
    error = error_after(lambda d: d["rules"][1].update(weekdays=[]))

    assert error.path == "rules[1].weekdays"


def test_unknown_rule_key_is_rejected() -> None:
    error = error_after(lambda d: d["rules"][0].update(when="night"))

    assert error.path == "rules[0].when"


def test_rules_must_be_a_list() -> None:
    error = error_after(lambda d: d.update(rules={"match": "7495*"}))

    assert error.path == "rules"


# --- crm -----------------------------------------------------------------------------------------


def test_crm_lookup_is_read_and_off_by_default() -> None:
    assert parse_config(routing_data()).crm == Crm(url="https://crm.example.ru/api/owner",
                                                   timeout_s=1.5)
    assert parse_config({}).crm == Crm(url=None, timeout_s=2.0)


@pytest.mark.parametrize(("crm", "path"), [
    ({"url": "crm.example.ru/owner"}, "crm.url"),
    ({"url": "ftp://crm.example.ru"}, "crm.url"),
    ({"url": "http://crm", "timeout_s": 30}, "crm.timeout_s"),
    ({"url": "http://crm", "timeout_s": 0}, "crm.timeout_s"),
    ({"token": "x"}, "crm.token"),
])
def test_bad_crm_settings_are_refused_naming_the_key(crm: Data, path: str) -> None:
    error = error_after(lambda d: d.update(crm=crm))
    assert error.path == path


# --- round trips ---------------------------------------------------------------------------------


def test_config_to_dict_is_the_exact_inverse_of_parse_config_with_routing() -> None:
    config = parse_config(routing_data())

    assert parse_config(config_to_dict(config)) == config


def test_yaml_round_trip_keeps_schedules_and_rules() -> None:
    config = parse_config(routing_data())

    assert load_yaml(dump_yaml(config)) == config


def test_export_writes_every_weekday_and_holidays_as_quoted_dates() -> None:
    office = config_to_dict(parse_config(routing_data()))["schedules"][0]

    assert list(office["hours"]) == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert office["hours"]["fri"] == ["09:00-17:00", "22:00-06:00"]
    assert office["holidays"] == ["2026-12-31", "2027-01-01"]


def test_export_leaves_out_a_schedule_time_zone_equal_to_the_site_one() -> None:
    schedules = config_to_dict(parse_config(routing_data()))["schedules"]

    assert "timezone" not in schedules[0]
    assert schedules[1]["timezone"] == "Europe/Berlin"


def test_export_of_a_config_without_routing_has_no_routing_sections() -> None:
    data = config_to_dict(load_yaml(VALID_YAML))

    assert not {"site", "schedules", "rules", "crm"} & set(data)


def test_export_keeps_a_site_time_zone_other_than_the_default() -> None:
    config = Config(site=Site(timezone="Asia/Novosibirsk"))

    assert config_to_dict(config)["site"] == {"timezone": "Asia/Novosibirsk"}


def test_database_round_trip_keeps_routing(store: Store) -> None:
    config = parse_config(routing_data())

    store.replace_config(config)

    assert store.load_config() == config


def test_routing_snippets_in_the_admin_docs_are_valid() -> None:
    text = DOCS_CONFIG.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    full = next(yaml.safe_load(block) for block in blocks if block.startswith("extensions:"))
    snippets = [
        yaml.safe_load(block)
        for block in blocks
        if block.startswith(("site:", "schedules:", "rules:"))
    ]

    assert len(snippets) == 3
    for snippet in snippets:
        parse_config({**full, **snippet})


# --- department settings, parsed once ------------------------------------------------------------


def test_a_departments_routing_keys_are_parsed_once_with_the_configuration() -> None:
    data = routing_data()
    data["departments"][0].update({
        "step_delay_s": 7, "sticky": "last_agent", "wrap_up_s": 30,
        "queue": {"max_wait_s": 90, "max_callers": 4},
        "no_answer": {"steps": [{"to": "103", "time_s": 15}]},
    })
    department = parse_config(data).departments[0]
    settings = department.settings
    assert (settings.step_delay_s, settings.sticky, settings.wrap_up_s) == (7.0, "last_agent", 30.0)
    assert settings.queue is not None and settings.queue.max_wait_s == 90
    assert [step.to for step in settings.no_answer.steps] == ["103"]
    # What is not configured takes the one set of defaults.
    assert settings.tier_time_s == DEPARTMENT_DEFAULTS.tier_time_s


def test_an_unconfigured_department_has_the_defaults() -> None:
    assert parse_config(routing_data()).departments[1].settings == DEPARTMENT_DEFAULTS
