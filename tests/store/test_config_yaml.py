"""YAML reading and writing of the configuration, and the round trip through the database."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from firmware.store import (
    Config,
    ConfigError,
    Department,
    Extension,
    Member,
    Store,
    config_to_dict,
    dump_yaml,
    load_yaml,
    parse_config,
)
from tests.store.conftest import VALID_YAML, valid_config_data

DOCS_CONFIG = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_config_to_dict_is_the_exact_inverse_of_parse_config() -> None:
    config = parse_config(valid_config_data())

    assert parse_config(config_to_dict(config)) == config


def test_member_with_only_an_extension_is_written_as_plain_text() -> None:
    department = Department(
        number="200",
        name="Продажи",
        strategy="ring_all",
        ring_timeout_s=20,
        members=(Member(extension="101"), Member(extension="102", ring_time_s=10)),
    )
    config = Config(
        extensions=(
            Extension(number="101", name="А", password="password1"),
            Extension(number="102", name="Б", password="password2"),
        ),
        departments=(department,),
    )

    assert config_to_dict(config)["departments"][0]["members"] == [
        "101",
        {"extension": "102", "ring_time_s": 10},
    ]


def test_dump_yaml_keeps_cyrillic_readable_and_keys_in_schema_order() -> None:
    text = dump_yaml(load_yaml(VALID_YAML))

    assert "Отдел продаж" in text
    assert "\\u" not in text
    assert re.findall(r"^(\w+):", text, flags=re.MULTILINE) == [
        "extensions",
        "departments",
        "trunks",
        "numbers",
        "security",
        "sip",
    ]


def test_dump_yaml_quotes_numbers_so_they_load_back_as_text() -> None:
    config = load_yaml(VALID_YAML)

    assert load_yaml(dump_yaml(config)) == config


def test_yaml_to_config_to_database_and_back_gives_the_same_yaml(store: Store) -> None:
    exported_before = dump_yaml(load_yaml(VALID_YAML))

    store.replace_config(load_yaml(VALID_YAML))
    exported_after = dump_yaml(store.load_config())

    assert exported_after == exported_before


def test_database_round_trip_preserves_order_of_every_list(store: Store) -> None:
    data = valid_config_data()
    data["extensions"].reverse()
    data["departments"].reverse()
    data["departments"][0]["members"].reverse()
    config = parse_config(data)

    store.replace_config(config)

    assert store.load_config() == config


def test_yaml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml('extensions:\n  - number: "101"\n    name: [unclosed\n')

    assert re.search(r"line \d+, column \d+", str(caught.value))


def test_key_repeated_in_one_mapping_is_a_yaml_error_not_a_silent_override() -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml("sip:\n  realm: office\n  realm: linebox\n")

    assert "line 3, column 3" in str(caught.value)
    assert "'realm' twice" in str(caught.value)


def test_empty_yaml_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty"):
        load_yaml("# nothing here\n")


def test_yaml_yes_is_a_real_boolean() -> None:
    text = VALID_YAML.replace("register: false", "register: no")

    assert load_yaml(text).trunks[1].register is False


def test_validation_errors_from_yaml_name_the_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml(VALID_YAML.replace('members: ["103", "101"]', 'members: ["103", "109"]'))

    assert str(caught.value) == 'departments[1].members[1]: unknown extension "109"'


def test_example_file_in_the_admin_docs_is_valid() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS_CONFIG.read_text(encoding="utf-8"), re.DOTALL)
    full_examples = [block for block in blocks if block.startswith("extensions:")]

    assert full_examples, "docs/config.md should contain a complete example file"
    for block in full_examples:
        config = load_yaml(block)
        assert config.extensions and config.departments and config.trunks and config.numbers
