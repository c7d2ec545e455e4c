"""The `security.tcp_*` settings: their defaults, their bounds, and their way back out."""

from __future__ import annotations

from typing import Any

import pytest

from firmware.store import ConfigError, parse_config
from firmware.store.config import config_to_dict
from tests.store.conftest import valid_config_data


def with_security(**security: Any) -> dict[str, Any]:
    data = valid_config_data()
    data["security"] = {**data.get("security", {}), **security}
    return data


def test_tcp_limits_default_to_bounded_values() -> None:
    security = parse_config({}).security
    assert security.tcp_max_connections == 256
    assert security.tcp_max_connections_per_address == 16
    assert security.tcp_idle_s == 120.0
    assert security.tcp_message_timeout_s == 10.0


def test_tcp_limits_are_read_and_written_back() -> None:
    config = parse_config(with_security(
        tcp_max_connections=64, tcp_max_connections_per_address=4, tcp_idle_s=30,
        tcp_message_timeout_s=2.5,
    ))
    assert (config.security.tcp_max_connections, config.security.tcp_max_connections_per_address,
            config.security.tcp_idle_s, config.security.tcp_message_timeout_s) == (64, 4, 30.0, 2.5)
    assert parse_config(config_to_dict(config)) == config


@pytest.mark.parametrize(("key", "value"), [
    ("tcp_max_connections", 0),
    ("tcp_max_connections", "many"),
    ("tcp_max_connections_per_address", 0),
    ("tcp_max_connections_per_address", 1.5),
    ("tcp_idle_s", 0),
    ("tcp_idle_s", -1),
    ("tcp_message_timeout_s", 0),
    ("tcp_message_timeout_s", float("inf")),
])
def test_a_tcp_limit_out_of_range_is_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_security(**{key: value}))
    assert caught.value.path == f"security.{key}"
