"""The toll guard's configuration: each extension's `outbound` class and hourly limit, the box's
hourly limit (`security.external_calls_per_hour`) and the dial plan (`site`)."""

from __future__ import annotations

from typing import Any

import pytest

from firmware.routing.tollguard import DialPlan
from firmware.store import ConfigError, Store, config_to_dict, dump_yaml, load_yaml, parse_config
from tests.store.conftest import VALID_YAML, valid_config_data


def test_the_defaults_allow_long_distance_30_calls_an_hour_each_and_100_in_all() -> None:
    config = parse_config(valid_config_data())
    assert {(e.outbound, e.external_calls_per_hour) for e in config.extensions} == {
        ("long_distance", 30)}
    assert config.security.external_calls_per_hour == 100
    assert config.site.dial_plan == DialPlan()


def test_an_export_leaves_the_extension_keys_out_at_their_defaults() -> None:
    data = config_to_dict(parse_config(valid_config_data()))
    assert all("outbound" not in e and "external_calls_per_hour" not in e
               for e in data["extensions"])
    assert "site" not in data


def test_extension_keys_round_trip_through_the_database(store: Store) -> None:
    data = valid_config_data()
    data["extensions"][0].update(outbound="international", external_calls_per_hour=5)
    data["extensions"][1]["outbound"] = "internal"
    data["security"]["external_calls_per_hour"] = 250
    config = parse_config(data)
    store.replace_config(config)
    loaded = store.load_config()
    assert loaded == config
    assert [(e.outbound, e.external_calls_per_hour) for e in loaded.extensions] == [
        ("international", 5), ("internal", 30), ("long_distance", 30)]
    assert load_yaml(dump_yaml(loaded)) == config


@pytest.mark.parametrize(("key", "value", "message"), [
    ("outbound", "everywhere", "must be one of internal, local, mobile, long_distance, "
                               'international, got "everywhere"'),
    ("outbound", 3, "must be text"),
    ("external_calls_per_hour", 0, "must be between 1 and 100000"),
    ("external_calls_per_hour", "30", "must be a whole number"),
])
def test_bad_extension_keys_are_refused_by_their_path(key: str, value: Any, message: str) -> None:
    data = valid_config_data()
    data["extensions"][2][key] = value
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.path == f"extensions[2].{key}"
    assert message in caught.value.message


def test_the_box_limit_is_refused_out_of_range() -> None:
    data = valid_config_data()
    data["security"]["external_calls_per_hour"] = 0
    with pytest.raises(ConfigError, match=r"^security\.external_calls_per_hour: must be between"):
        parse_config(data)


MOSCOW_SITE = """\
site:
  timezone: Europe/Moscow
  local_prefixes: ["495", "499", "800"]
  emergency_numbers: ["112"]
"""


def test_the_dial_plan_keys_are_read_and_exported_where_they_differ(store: Store) -> None:
    config = load_yaml(VALID_YAML + MOSCOW_SITE)
    assert config.site.dial_plan.local_prefixes == ("495", "499", "800")
    assert config.site.dial_plan.emergency_numbers == ("112",)
    assert config.site.dial_plan.country_code == "7"
    assert config_to_dict(config)["site"] == {
        "timezone": "Europe/Moscow", "local_prefixes": ["495", "499", "800"],
        "emergency_numbers": ["112"]}
    store.replace_config(config)
    assert store.load_config() == config


def test_a_plan_for_another_country() -> None:
    site = ('site:\n  country_code: "49"\n  trunk_prefix: "0"\n  international_prefixes: ["00"]\n'
            '  mobile_prefixes: ["15", "16", "17"]\n  local_prefixes: []\n'
            '  foreign_prefixes: []\n  local_number_digits: 8\n')
    plan = load_yaml(VALID_YAML + site).site.dial_plan
    assert (plan.country_code, plan.trunk_prefix, plan.international_prefixes) == (
        "49", "0", ("00",))
    assert plan.local_number_digits == 8


@pytest.mark.parametrize(("key", "value", "path", "message"), [
    ("country_code", 7, "site.country_code", "must be written in quotes"),
    ("country_code", "07", "site.country_code", "never begins with 0"),
    ("country_code", "7000", "site.country_code", "must be 1 to 3 digits"),
    ("trunk_prefix", "8a", "site.trunk_prefix", "must be 1 to 2 digits"),
    ("international_prefixes", [], "site.international_prefixes", "list at least 1"),
    ("mobile_prefixes", ["9", "9"], "site.mobile_prefixes[1]", 'duplicate entry "9"'),
    ("local_prefixes", ["+495"], "site.local_prefixes[0]", "must be 1 to 10 digits"),
    ("national_number_digits", 30, "site.national_number_digits", "between 4 and 14"),
    ("local_number_digits", 10, "site.local_number_digits", "between 1 and 9"),
    ("emergency_numbers", "112", "site.emergency_numbers", "must be a list"),
])
def test_bad_dial_plan_keys_are_refused_by_their_path(key: str, value: Any, path: str,
                                                       message: str) -> None:
    data = valid_config_data()
    data["site"] = {key: value}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.path == path
    assert message in caught.value.message
