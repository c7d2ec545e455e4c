"""The `failover:` and `hardware:` sections (issue 12): defaults, bounds, and the way back out."""

from __future__ import annotations

from typing import Any

import pytest

from firmware.failover import FailoverSettings
from firmware.store import ConfigError, Store, parse_config
from firmware.store.config import Hardware, config_to_dict
from tests.store.conftest import valid_config_data


def with_section(name: str, **section: Any) -> dict[str, Any]:
    data = valid_config_data()
    data[name] = section
    return data


def refusal(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value


def test_failover_defaults_to_probes_every_5_s_down_after_2_up_after_3() -> None:
    assert parse_config({}).failover == FailoverSettings(
        order=(), probe_interval_s=5.0, down_after=2, up_after=3)


def test_failover_is_read_and_written_back() -> None:
    config = parse_config(with_section(
        "failover", order=["backup", "provider"], probe_interval_s=2.5, down_after=3,
        up_after=5))
    assert config.failover == FailoverSettings(
        order=("backup", "provider"), probe_interval_s=2.5, down_after=3, up_after=5)
    assert parse_config(config_to_dict(config)) == config


def test_failover_at_its_defaults_is_left_out_of_an_export() -> None:
    assert "failover" not in config_to_dict(parse_config(valid_config_data()))


def test_failover_order_must_name_configured_trunks() -> None:
    error = refusal(with_section("failover", order=["provider", "mts"]))
    assert (error.path, error.message) == ("failover.order[1]", 'unknown trunk "mts"')


def test_failover_order_must_not_list_a_trunk_twice() -> None:
    error = refusal(with_section("failover", order=["provider", "provider"]))
    assert error.path == "failover.order[1]"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("probe_interval_s", 0.5, "must be between 1 and 300 seconds, got 0.5"),
    ("probe_interval_s", 301, "must be between 1 and 300 seconds, got 301"),
    ("down_after", 0, "must be between 1 and 20, got 0"),
    ("up_after", 101, "must be between 1 and 100, got 101"),
    ("up_after", "three", 'must be a whole number, got text "three"'),
])
def test_failover_numbers_out_of_bounds_are_refused(key: str, value: object,
                                                    message: str) -> None:
    error = refusal(with_section("failover", **{key: value}))
    assert (error.path, error.message) == (f"failover.{key}", message)


def test_hardware_defaults_to_auto_gpio_no_pins_and_five_minutes_on_battery() -> None:
    assert parse_config({}).hardware == Hardware(
        gpio="auto", leds={}, power_fail_pin=None, power_fail_active_low=True,
        shutdown_after_s=300)


def test_hardware_is_read_and_written_back() -> None:
    config = parse_config(with_section(
        "hardware", gpio="mock", leds={"power": 17, "gsm": 23}, power_fail_pin=4,
        power_fail_active_low=False, shutdown_after_s=600))
    assert config.hardware == Hardware(
        gpio="mock", leds={"power": 17, "gsm": 23}, power_fail_pin=4,
        power_fail_active_low=False, shutdown_after_s=600)
    assert parse_config(config_to_dict(config)) == config


def test_an_unknown_led_is_refused_naming_the_known_ones() -> None:
    error = refusal(with_section("hardware", leds={"wifi": 5}))
    assert error.path == "hardware.leds.wifi"
    assert "power, internet, provider, gsm, calls" in error.message


def test_a_pin_used_twice_is_refused() -> None:
    error = refusal(with_section("hardware", leds={"power": 17}, power_fail_pin=17))
    assert (error.path, error.message) == (
        "hardware.power_fail_pin", "GPIO 17 is already used by hardware.leds.power")


@pytest.mark.parametrize(("key", "value"), [
    ("gpio", "sysfs"),
    ("power_fail_pin", 28),
    ("shutdown_after_s", 5),
    ("power_fail_active_low", "yes"),
])
def test_hardware_values_out_of_bounds_are_refused(key: str, value: object) -> None:
    assert refusal(with_section("hardware", **{key: value})).path == f"hardware.{key}"


def test_both_sections_survive_the_database(store: Store) -> None:
    config = parse_config({**with_section("failover", order=["provider"], up_after=4),
                           "hardware": {"leds": {"calls": 24}, "shutdown_after_s": 120}})
    store.replace_config(config)
    loaded = store.load_config()
    assert (loaded.failover, loaded.hardware) == (config.failover, config.hardware)
