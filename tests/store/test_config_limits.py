"""Hostile and malformed configurations (issue 9 items 8 and 13), through the Python API.

Each is refused with a `ConfigError` naming its place (line and column, or key path) and the
store is left exactly as it was; what the database already holds is read under the same bounds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from firmware.store import ConfigError, Store, dump_yaml, load_yaml, load_yaml_file, parse_config
from firmware.store.config import (
    CONFIG_MAX_BYTES,
    STORED_CONFIG_MAX_CHARS,
    Config,
    Department,
    Extension,
    Member,
)
from tests.store.conftest import VALID_YAML, valid_config_data
from tests.store.hostile import HOSTILE_FILES, PREFIX

Data = dict[str, Any]


def stored(store: Store) -> tuple[int, str]:
    return store.config_revision(), dump_yaml(store.load_config())


@pytest.mark.parametrize("name", list(HOSTILE_FILES))
def test_a_hostile_file_is_refused_naming_its_place_and_nothing_changes(
    store: Store, name: str,
) -> None:
    content, message = HOSTILE_FILES[name]
    store.replace_config(load_yaml(VALID_YAML))
    before = stored(store)
    with pytest.raises(ConfigError) as caught:
        store.replace_config(load_yaml(content))
    assert message in str(caught.value)
    assert stored(store) == before


@pytest.mark.parametrize("name", list(HOSTILE_FILES))
def test_a_hostile_file_on_disk_is_refused_the_same_way(tmp_path: Path, name: str) -> None:
    content, message = HOSTILE_FILES[name]
    path = tmp_path / "office.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=".") as caught:
        load_yaml_file(path)
    assert message in str(caught.value)


def test_a_file_of_exactly_the_limit_is_still_read() -> None:
    padding = CONFIG_MAX_BYTES - len(PREFIX.encode())
    content = PREFIX + "#" * (padding - 1) + "\n"
    assert len(content.encode()) == CONFIG_MAX_BYTES
    assert [e.number for e in load_yaml(content).extensions] == ["101"]


@pytest.mark.parametrize(("text", "message"), [
    ("ring_timeout_s: .inf", "must be a finite number"),
    ("ring_timeout_s: .nan", "must be a finite number"),
    ("ring_timeout_s: 1.0e+999", "must be a finite number"),
    ("ring_timeout_s: 1000000000000000", "number too large"),
    ("ring_timeout_s: 0x" + "f" * 40, "number too large"),
    ("ring_timeout_s: !!int twenty", "not a valid int"),
    ("ring_timeout_s: !!bool maybe", "not a valid bool"),
    ("ring_timeout_s: 2026-02-30", "not a valid timestamp"),
])
def test_numbers_and_tagged_values_that_cannot_be_read_are_refused_at_their_line(
    text: str, message: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml(PREFIX.replace("ring_timeout_s: 20", text))
    assert str(caught.value).startswith("line 9, column 21: " + message)


def test_an_unquoted_phone_number_still_asks_for_quotes() -> None:
    text = PREFIX.replace("password: secret-101", "password: secret-101\n    mobile: "
                                                  "749512345678901")
    with pytest.raises(ConfigError, match=r"extensions\[0\]\.mobile: must be written in "
                                          r"quotes"):
        load_yaml(text)


def test_an_alias_is_refused_even_where_it_would_be_harmless() -> None:
    text = VALID_YAML.replace("  - number: \"102\"\n    name: Борис Иванов",
                              "  - number: \"102\"\n    name: &boris Борис Иванов")
    with pytest.raises(ConfigError, match=r"line \d+, column 11: an anchor \(&boris\)"):
        load_yaml(text)


# --- the same bounds on plain data (the web UI's forms, the database) ---------------------------


def test_data_that_holds_itself_is_refused() -> None:
    data = valid_config_data()
    loop: list[Any] = []
    loop.append(loop)
    data["departments"][0]["schedule"] = loop
    with pytest.raises(ConfigError, match=r"^departments\[0\]\.schedule(\[0\])+: nested more "
                                          r"than 64 levels deep"):
        parse_config(data)


def test_shared_values_that_expand_past_the_bound_are_refused() -> None:
    data = valid_config_data()
    row = ["lol"] * 100
    data["departments"][0]["schedule"] = [[row] * 100] * 100  # a million strings, 3 lists
    with pytest.raises(ConfigError, match="more than 500000 values"):
        parse_config(data)


def test_a_number_past_the_bound_is_refused_by_its_key_path() -> None:
    data = valid_config_data()
    data["departments"][0]["schedule"] = {"when": 10**15}
    with pytest.raises(ConfigError, match=r"^departments\[0\]\.schedule\.when: number too "
                                          r"large"):
        parse_config(data)


def test_a_huge_stored_configuration_is_refused_before_it_is_read(
    store: Store, db_path: Path,
) -> None:
    # What older firmware stored from an alias bomb: valid, and far over any importable size.
    store.replace_config(load_yaml(VALID_YAML))
    store.db.execute("UPDATE department_members SET extra = ? WHERE extension = '101'",
                     (json.dumps({"skills": ["lang:en"] * (STORED_CONFIG_MAX_CHARS // 8)}),))
    store.db.conn.commit()
    with Store.open(db_path) as daemon_view, pytest.raises(
        ConfigError, match="the stored configuration is .* characters long",
    ):
        daemon_view.load_config()


# --- the export has no aliases ------------------------------------------------------------------


def test_the_export_writes_shared_values_out_in_full_and_imports_back() -> None:
    skills: list[str] = ["lang:en", "product:crm"]
    config = Config(
        extensions=(Extension(number="101", name="A", password="password-1"),
                    Extension(number="102", name="B", password="password-2")),
        departments=(Department(number="200", name="S", strategy="skills", ring_timeout_s=20,
                                members=(Member(extension="101", extra={"skills": skills}),
                                         Member(extension="102", extra={"skills": skills}))),),
    )
    text = dump_yaml(config)
    assert "&" not in text and "*" not in text
    assert load_yaml(text) == config


def test_an_exported_store_has_no_aliases_and_round_trips(store: Store) -> None:
    store.replace_config(load_yaml(VALID_YAML))
    text = dump_yaml(store.load_config())
    events = list(yaml.parse(text))
    assert not any(isinstance(e, yaml.AliasEvent) or getattr(e, "anchor", None) for e in events)
    assert load_yaml(text) == store.load_config()


# --- item 13: control and bidi characters in every text -----------------------------------------


def _at(path: tuple[str | int, ...], value: object) -> Callable[[Data], None]:
    def change(data: Data) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


TEXT_PLACES: list[tuple[tuple[str | int, ...], str, str]] = [
    (("extensions", 0, "name"), "Anna\x00", "extensions[0].name"),
    (("extensions", 0, "name"), "Anna\r\nX-Evil: 1", "extensions[0].name"),
    (("extensions", 0, "name"), "\u202eanna.exe", "extensions[0].name"),
    (("extensions", 0, "password"), "secret\tpassword", "extensions[0].password"),
    (("departments", 0, "name"), "Sales\u2066", "departments[0].name"),
    (("trunks", 0, "password"), "trunk\x7fsecret", "trunks[0].password"),
    (("trunks", 0, "host"), "sip.example.ru\x85", "trunks[0].host"),
    (("sip", "user_agent"), "Linebox\r\nCall-Info: <sip:x>;answer-after=0", "sip.user_agent"),
    (("sip", "realm"), "office\u200f", "sip.realm"),
    (("security", "scanner_user_agents"), ["ok", "sipvicious\x1b[2J"],
     "security.scanner_user_agents[1]"),
]


@pytest.mark.parametrize(("place", "value", "path"), TEXT_PLACES)
def test_control_and_bidi_characters_are_refused_in_every_text(
    place: tuple[str | int, ...], value: object, path: str,
) -> None:
    data = valid_config_data()
    _at(place, value)(data)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.path == path
    assert "must not contain" in caught.value.message and "U+" in caught.value.message


def test_the_error_names_the_character_by_its_code_and_never_shows_it() -> None:
    data = valid_config_data()
    data["sip"]["user_agent"] = "Linebox\r\nX: 1"
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert str(caught.value) == (
        "sip.user_agent: the text must not contain a control character (a line break, tab, "
        "NUL, escape and the like): U+000D at character 8")


def test_a_key_with_a_control_character_is_refused_by_its_mappings_path() -> None:
    data = valid_config_data()
    data["departments"][0]["members"][1]["rank\x00"] = 2
    with pytest.raises(ConfigError, match=r"^departments\[0\]\.members\[1\]: a key must not "
                                          r"contain a control character"):
        parse_config(data)


def test_a_password_may_hold_any_printable_character() -> None:
    data = valid_config_data()
    data["extensions"][0]["password"] = 'p a$$ "wörд" <\\> ~!'
    assert parse_config(data).extensions[0].password == 'p a$$ "wörд" <\\> ~!'


def test_a_name_in_any_script_is_fine() -> None:
    data = valid_config_data()
    data["extensions"][0]["name"] = "Анна Смирнова — 王芳 (שרה)"
    assert parse_config(data).extensions[0].name == "Анна Смирнова — 王芳 (שרה)"


def test_a_control_character_written_as_a_yaml_escape_is_refused_by_its_key_path() -> None:
    text = VALID_YAML.replace("name: Анна Смирнова", 'name: "Анна\\x1b[31m Смирнова"')
    with pytest.raises(ConfigError, match=r"^extensions\[0\]\.name: .*U\+001B at character 5"):
        load_yaml(text)
