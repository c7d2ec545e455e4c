"""Every validation rule of `parse_config`, each asserting the key path the error names."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest

from firmware.store import STRATEGIES, Config, ConfigError, Member, parse_config
from tests.store.conftest import valid_config_data

Data = dict[str, Any]


def error_after(change: Callable[[Data], object]) -> ConfigError:
    data = valid_config_data()
    change(data)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value


def test_the_valid_example_config_passes() -> None:
    config = parse_config(valid_config_data())

    assert [e.number for e in config.extensions] == ["101", "102", "103"]


def test_missing_sections_default_to_empty() -> None:
    assert parse_config({}) == Config()


def test_error_message_is_path_then_problem() -> None:
    error = error_after(lambda d: d["departments"][0]["members"].append("109"))

    assert isinstance(error, ValueError)
    assert str(error) == 'departments[0].members[2]: unknown extension "109"'
    assert error.path == "departments[0].members[2]"
    assert error.message == 'unknown extension "109"'


def test_config_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(["extensions"])

    assert caught.value.path == ""


def test_unknown_top_level_key_is_rejected() -> None:
    error = error_after(lambda d: d.update(extentions=[]))

    assert error.path == "extentions"
    assert "unknown key" in error.message


def test_section_must_be_a_list() -> None:
    error = error_after(lambda d: d.update(extensions={"number": "101"}))

    assert error.path == "extensions"


# --- extensions ----------------------------------------------------------------------------------


def test_misspelt_extension_key_is_rejected_before_the_missing_one() -> None:
    error = error_after(
        lambda d: d["extensions"][0].update(pasword=d["extensions"][0].pop("password"))
    )

    assert error.path == "extensions[0].pasword"
    assert "unknown key" in error.message


def test_extension_password_is_required() -> None:
    error = error_after(lambda d: d["extensions"][1].pop("password"))

    assert (error.path, error.message) == ("extensions[1].password", "is required")


def test_extension_password_needs_at_least_8_characters() -> None:
    error = error_after(lambda d: d["extensions"][0].update(password="1234567"))

    assert error.path == "extensions[0].password"


def test_extension_name_must_be_text() -> None:
    error = error_after(lambda d: d["extensions"][2].update(name=42))

    assert error.path == "extensions[2].name"
    assert "must be text" in error.message


@pytest.mark.parametrize("number", ["1", "123456789", "10a", "１０１", "+101", ""])
def test_extension_number_is_2_to_8_ascii_digits(number: str) -> None:
    error = error_after(lambda d: d["extensions"][0].update(number=number))

    assert error.path == "extensions[0].number"


def test_extension_number_written_without_quotes_is_refused_with_a_hint() -> None:
    error = error_after(lambda d: d["extensions"][0].update(number=101))

    assert error.path == "extensions[0].number"
    assert "quotes" in error.message


def test_duplicate_extension_number_is_rejected() -> None:
    error = error_after(lambda d: d["extensions"][2].update(number="101"))

    assert error.path == "extensions[2].number"
    assert "duplicate" in error.message


# --- departments ---------------------------------------------------------------------------------


def test_department_number_must_be_digits() -> None:
    error = error_after(lambda d: d["departments"][0].update(number="sales"))

    assert error.path == "departments[0].number"


def test_department_number_must_not_be_an_extension() -> None:
    error = error_after(lambda d: d["departments"][1].update(number="102"))

    assert error.path == "departments[1].number"
    assert "already an extension" in error.message


def test_duplicate_department_number_is_rejected() -> None:
    error = error_after(lambda d: d["departments"][1].update(number="200"))

    assert error.path == "departments[1].number"
    assert "duplicate" in error.message


def test_unknown_strategy_is_rejected() -> None:
    error = error_after(lambda d: d["departments"][0].update(strategy="ring_everyone"))

    assert error.path == "departments[0].strategy"


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_reserved_strategy_is_accepted(strategy: str) -> None:
    data = valid_config_data()
    data["departments"][0]["strategy"] = strategy

    assert parse_config(data).departments[0].strategy == strategy


@pytest.mark.parametrize("seconds", [4, 601])
def test_ring_timeout_is_between_5_and_600_seconds(seconds: int) -> None:
    error = error_after(lambda d: d["departments"][1].update(ring_timeout_s=seconds))

    assert error.path == "departments[1].ring_timeout_s"


def test_ring_timeout_must_be_a_whole_number() -> None:
    error = error_after(lambda d: d["departments"][0].update(ring_timeout_s=20.5))

    assert error.path == "departments[0].ring_timeout_s"


def test_department_strategy_is_required() -> None:
    error = error_after(lambda d: d["departments"][0].pop("strategy"))

    assert (error.path, error.message) == ("departments[0].strategy", "is required")


def test_unknown_department_key_is_rejected() -> None:
    error = error_after(lambda d: d["departments"][0].update(queue_size=5))

    assert error.path == "departments[0].queue_size"


def test_department_routing_keys_go_to_extra() -> None:
    data = valid_config_data()
    data["departments"][0].update(
        step_delay_s=5, queue={"max_callers": 3}, no_answer={"action": "transfer", "to": "300"},
        tier_mode="replace", sticky="last_agent",
    )

    assert parse_config(data).departments[0].extra == {
        "step_delay_s": 5,
        "queue": {"max_callers": 3},
        "no_answer": {"action": "transfer", "to": "300"},
        "tier_mode": "replace",
        "sticky": "last_agent",
    }


def test_queue_with_an_unknown_key_is_refused() -> None:
    error = error_after(lambda d: d["departments"][0].update(queue={"max": 3}))
    assert error.path == "departments[0].queue.max"


def test_queue_wait_out_of_range_is_refused() -> None:
    error = error_after(lambda d: d["departments"][0].update(queue={"max_wait_s": 5}))
    assert error.path == "departments[0].queue.max_wait_s"


def test_no_answer_step_to_an_unknown_number_is_refused() -> None:
    error = error_after(lambda d: d["departments"][0].update(
        no_answer={"steps": [{"to": "300"}, {"to": "99"}]}
    ))
    assert error.path == "departments[0].no_answer.steps[1].to"


def test_voicemail_is_a_no_answer_action_for_the_departments_own_mailbox() -> None:
    data = valid_config_data()
    data["departments"][0]["no_answer"] = {"action": "voicemail"}
    assert parse_config(data).departments[0].extra["no_answer"] == {"action": "voicemail"}


def test_voicemail_must_be_the_last_step() -> None:
    error = error_after(lambda d: d["departments"][0].update(no_answer={"steps": [
        {"to": "voicemail"}, {"to": "102"}]}))
    assert error.path == "departments[0].no_answer.steps[0].to"
    assert "last step" in str(error)


def test_a_mailbox_must_be_an_extension_or_a_department() -> None:
    error = error_after(lambda d: d["departments"][0].update(no_answer={
        "action": "voicemail", "to": "79160000000"}))
    assert error.path == "departments[0].no_answer.to"


def test_an_after_hours_mailbox_must_exist() -> None:
    error = error_after(lambda d: d.update(schedules=[
        {"name": "day", "hours": {"mon": ["09:00-18:00"]}, "after_hours": "voicemail:999"}]))
    assert error.path == "schedules[0].after_hours"
    assert "unknown mailbox" in str(error)


def test_prompt_language_is_one_of_the_built_in_ones() -> None:
    error = error_after(lambda d: d.update(site={"language": "de"}))
    assert error.path == "site.language"


def test_unknown_tier_mode_is_refused() -> None:
    error = error_after(lambda d: d["departments"][0].update(tier_mode="sometimes"))
    assert error.path == "departments[0].tier_mode"


def test_member_weight_must_be_a_percentage() -> None:
    error = error_after(lambda d: d["departments"][1].update(
        members=[{"extension": "103", "weight": 150}, "101"]
    ))
    assert error.path == "departments[1].members[0].weight"


def test_reserved_keys_must_hold_plain_data() -> None:
    error = error_after(
        lambda d: d["departments"][0].update(queue={"closed_on": [datetime.date(2025, 1, 1)]})
    )

    assert error.path == "departments[0].queue.closed_on[0]"


# --- members -------------------------------------------------------------------------------------


def test_member_must_be_an_existing_extension() -> None:
    error = error_after(lambda d: d["departments"][1]["members"].insert(1, "109"))

    assert str(error) == 'departments[1].members[1]: unknown extension "109"'


def test_member_mapping_must_name_an_existing_extension() -> None:
    error = error_after(lambda d: d["departments"][0]["members"][1].update(extension="109"))

    assert error.path == "departments[0].members[1].extension"


def test_member_mapping_needs_an_extension() -> None:
    error = error_after(lambda d: d["departments"][0]["members"][1].pop("extension"))

    assert error.path == "departments[0].members[1].extension"


def test_member_must_not_be_listed_twice() -> None:
    error = error_after(lambda d: d["departments"][0]["members"].append({"extension": "101"}))

    assert error.path == "departments[0].members[2]"
    assert "twice" in error.message


@pytest.mark.parametrize("seconds", [4, 601])
def test_member_ring_time_is_between_5_and_600_seconds(seconds: int) -> None:
    error = error_after(lambda d: d["departments"][0]["members"][1].update(ring_time_s=seconds))

    assert error.path == "departments[0].members[1].ring_time_s"


def test_unknown_member_key_is_rejected() -> None:
    error = error_after(lambda d: d["departments"][0]["members"][1].update(priority=1))

    assert error.path == "departments[0].members[1].priority"


def test_reserved_member_keys_go_to_extra() -> None:
    data = valid_config_data()
    data["departments"][0]["members"][1].update(tier=1, weight=3, skills=["ru", "en"])

    assert parse_config(data).departments[0].members[1] == Member(
        extension="102",
        ring_time_s=15,
        extra={"rank": 2, "tier": 1, "weight": 3, "skills": ["ru", "en"]},
    )


def test_member_must_be_text_or_mapping() -> None:
    error = error_after(lambda d: d["departments"][0]["members"].append(["104"]))

    assert error.path == "departments[0].members[2]"


# --- trunks --------------------------------------------------------------------------------------


def test_trunk_host_is_required() -> None:
    error = error_after(lambda d: d["trunks"][0].pop("host"))

    assert (error.path, error.message) == ("trunks[0].host", "is required")


@pytest.mark.parametrize("channels", [2, 101, "10"])
def test_trunk_channels_are_a_whole_number_from_3_to_100(channels: object) -> None:
    error = error_after(lambda d: d["trunks"][0].update(channels=channels))

    assert error.path == "trunks[0].channels"


@pytest.mark.parametrize("port", [0, 65536])
def test_trunk_port_is_1_to_65535(port: int) -> None:
    error = error_after(lambda d: d["trunks"][1].update(port=port))

    assert error.path == "trunks[1].port"


def test_trunk_transport_is_udp_or_tcp() -> None:
    error = error_after(lambda d: d["trunks"][0].update(transport="tls"))

    assert error.path == "trunks[0].transport"


def test_trunk_type_must_be_known() -> None:
    error = error_after(lambda d: d["trunks"][0].update(type="iax2"))

    assert error.path == "trunks[0].type"


def test_trunk_register_must_be_a_real_boolean() -> None:
    error = error_after(lambda d: d["trunks"][1].update(register="no"))

    assert error.path == "trunks[1].register"
    assert "true or false" in error.message


def test_registering_trunk_needs_a_username() -> None:
    error = error_after(lambda d: d["trunks"][0].pop("username"))

    assert error.path == "trunks[0].username"


def test_trunk_name_must_be_a_plain_identifier() -> None:
    error = error_after(lambda d: d["trunks"][0].update(name="my provider"))

    assert error.path == "trunks[0].name"


def test_duplicate_trunk_name_is_rejected() -> None:
    error = error_after(lambda d: d["trunks"][1].update(name="provider"))

    assert error.path == "trunks[1].name"
    assert "duplicate" in error.message


def test_unknown_trunk_key_is_rejected() -> None:
    error = error_after(lambda d: d["trunks"][0].update(hostname="sip.example.ru"))

    assert error.path == "trunks[0].hostname"


def test_trunk_defaults_apply_to_missing_optional_keys() -> None:
    trunk = parse_config(valid_config_data()).trunks[0]

    assert (trunk.type, trunk.port, trunk.transport, trunk.register, trunk.expires_s) == (
        "sip",
        5060,
        "udp",
        True,
        3600,
    )
    assert trunk.from_domain is None


# --- numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["+7 495 123", "7495-1234", "++74951234567", "+", "12"])
def test_did_number_is_digits_with_an_optional_leading_plus(number: str) -> None:
    error = error_after(lambda d: d["numbers"][0].update(number=number))

    assert error.path == "numbers[0].number"


def test_did_number_written_without_quotes_is_refused() -> None:
    error = error_after(lambda d: d["numbers"][1].update(number=84957654321))

    assert error.path == "numbers[1].number"


def test_duplicate_did_number_is_rejected() -> None:
    error = error_after(lambda d: d["numbers"][1].update(number="+74951234567"))

    assert error.path == "numbers[1].number"


def test_number_trunk_must_exist() -> None:
    error = error_after(lambda d: d["numbers"][0].update(trunk="nosuch"))

    assert str(error) == 'numbers[0].trunk: unknown trunk "nosuch"'


def test_number_destination_must_be_an_extension_or_department() -> None:
    error = error_after(lambda d: d["numbers"][1].update(destination="999"))

    assert error.path == "numbers[1].destination"


@pytest.mark.parametrize("channels", [2, 101])
def test_number_channels_are_from_3_to_100(channels: int) -> None:
    error = error_after(lambda d: d["numbers"][0].update(channels=channels))

    assert error.path == "numbers[0].channels"


def test_number_channels_are_required() -> None:
    error = error_after(lambda d: d["numbers"][0].pop("channels"))

    assert error.path == "numbers[0].channels"


# --- scalar sections -----------------------------------------------------------------------------


def test_security_window_must_be_above_zero() -> None:
    error = error_after(lambda d: d["security"].update(rate_limit_window_s=0))

    assert error.path == "security.rate_limit_window_s"


def test_security_whole_seconds_are_read_as_floats() -> None:
    assert parse_config(valid_config_data()).security.ban_s == 600.0


def test_security_scanner_user_agents_must_be_texts() -> None:
    error = error_after(lambda d: d["security"].update(scanner_user_agents=["sipvicious", 7]))

    assert error.path == "security.scanner_user_agents[1]"


def test_unknown_sip_setting_is_rejected() -> None:
    error = error_after(lambda d: d["sip"].update(relm="office"))

    assert error.path == "sip.relm"


def test_section_given_as_a_list_is_rejected() -> None:
    error = error_after(lambda d: d.update(security=["ban_s"]))

    assert error.path == "security"
