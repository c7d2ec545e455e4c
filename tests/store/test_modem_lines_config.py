"""GSM and FXO lines in `trunks` (issue 12): the keys, their bounds, and the way back out
through an export and the database."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from firmware.store import ConfigError, Store, parse_config
from firmware.store.config import (
    Trunk,
    config_to_dict,
    dump_yaml,
    load_yaml,
    luhn_valid,
    trunk_to_data,
)
from tests.store.conftest import valid_config_data

# The issue's example, with an IMEI whose check digit is right (the issue's 861234567890123 is
# not: its Luhn check digit would be 7).
HUAWEI_IMEI = "861234567890127"
MTS = {
    "name": "mts",
    "type": "gsm",
    "port": "/dev/serial/by-id/usb-HUAWEI_Mobile-if02-port0",
    "audio_port": "/dev/serial/by-id/usb-HUAWEI_Mobile-if01-port0",
    "modem": "huawei",
    "imei": HUAWEI_IMEI,
    "pin": "1234",
    "number": "+79161234567",
}
CITY = {"name": "city", "type": "fxo", "port": "/dev/ttyACM0", "modem": "v253"}


def with_lines(*lines: dict[str, Any], numbers: list[dict[str, Any]] | None = None
               ) -> dict[str, Any]:
    data = valid_config_data()
    data["trunks"] += [dict(line) for line in lines]
    data["numbers"] += numbers or []
    return data


def refusal(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value


def line(data: dict[str, Any], name: str) -> Trunk:
    return next(t for t in parse_config(data).trunks if t.name == name)


def test_the_issues_gsm_line_is_read_into_the_modem_fields() -> None:
    mts = line(with_lines(MTS), "mts")
    assert mts == Trunk(
        name="mts", type="gsm", host="", register=False, channels=1,
        device="/dev/serial/by-id/usb-HUAWEI_Mobile-if02-port0",
        audio_device="/dev/serial/by-id/usb-HUAWEI_Mobile-if01-port0",
        modem="huawei", imei=HUAWEI_IMEI, pin="1234", number="+79161234567", gain_db=0.0)
    assert mts.is_modem


def test_the_issues_fxo_line_is_read_with_one_channel_and_no_host() -> None:
    city = line(with_lines(CITY), "city")
    assert (city.type, city.device, city.modem, city.channels, city.host, city.register) == (
        "fxo", "/dev/ttyACM0", "v253", 1, "", False)


def test_modem_defaults_to_auto_for_gsm_and_v253_for_fxo() -> None:
    data = with_lines({"name": "g", "type": "gsm", "port": "/dev/ttyUSB2"},
                      {"name": "f", "type": "fxo", "port": "/dev/ttyACM0"})
    assert (line(data, "g").modem, line(data, "f").modem) == ("auto", "v253")


def test_the_pin_is_not_shown_in_a_trunks_repr() -> None:
    assert "5829" not in repr(line(with_lines({**MTS, "pin": "5829"}), "mts"))


@pytest.mark.parametrize(("kind", "modem"), [("gsm", "v253"), ("fxo", "huawei"), ("gsm", "zte")])
def test_a_modem_of_the_other_kind_is_refused(kind: str, modem: str) -> None:
    error = refusal(with_lines({"name": "x", "type": kind, "port": "/dev/ttyUSB0",
                                "modem": modem}))
    assert error.path == "trunks[2].modem"
    assert "must be one of" in error.message


def test_channels_above_one_are_refused_with_the_reason() -> None:
    error = refusal(with_lines({**MTS, "channels": 2}))
    assert (error.path, error.message) == (
        "trunks[2].channels",
        "a gsm line carries one call at a time: channels must be 1, got 2")


def test_channels_one_is_accepted() -> None:
    assert line(with_lines({**CITY, "channels": 1}), "city").channels == 1


@pytest.mark.parametrize("key", ["host", "username", "password", "transport", "register",
                                 "digest_algorithms"])
def test_sip_keys_on_a_modem_line_are_refused_by_name(key: str) -> None:
    error = refusal(with_lines({**MTS, key: "x"}))
    assert error.path == f"trunks[2].{key}"
    assert error.message == f"a gsm line has no {key} (that is a SIP trunk's key); delete it"


@pytest.mark.parametrize("key", ["imei", "pin", "audio_port"])
def test_an_fxo_line_has_no_sim_imei_or_audio_port(key: str) -> None:
    error = refusal(with_lines({**CITY, key: MTS[key]}))
    assert error.path == f"trunks[2].{key}"
    assert error.message.startswith("unknown key")


def test_the_port_is_required() -> None:
    error = refusal(with_lines({"name": "g", "type": "gsm"}))
    assert (error.path, error.message) == ("trunks[2].port", "is required")


@pytest.mark.parametrize("port", ["ttyUSB0", "dev/ttyUSB0", "/dev/../tmp/x", "/dev/", 5060,
                                  "/dev/tty USB0"])
def test_the_port_must_be_an_absolute_device_path(port: object) -> None:
    error = refusal(with_lines({**CITY, "port": port}))
    assert error.path == "trunks[2].port"


def test_the_audio_port_must_differ_from_the_port() -> None:
    error = refusal(with_lines({**MTS, "audio_port": MTS["port"]}))
    assert error.path == "trunks[2].audio_port"


def test_two_lines_on_one_device_are_refused() -> None:
    error = refusal(with_lines(CITY, {"name": "g", "type": "gsm", "port": "/dev/ttyACM0"}))
    assert error.path == "trunks[3].port"
    assert "duplicate serial device" in error.message


def test_two_lines_bound_to_one_imei_are_refused() -> None:
    other = {"name": "g", "type": "gsm", "port": "/dev/ttyUSB5", "imei": HUAWEI_IMEI}
    error = refusal(with_lines(MTS, other))
    assert error.path == "trunks[3].imei"


def test_luhn_check_digit() -> None:
    # 3GPP TS 23.003 Annex B's example IMEI 35-209900-176148 has the check digit 1.
    assert luhn_valid("352099001761481")
    assert not luhn_valid("352099001761482")
    assert not luhn_valid("861234567890123")


@pytest.mark.parametrize(("imei", "fragment"), [
    ("861234567890123", "check digit"),
    ("86123456789012", "15 to 15 digits"),
    ("8612345678901277", "15 to 15 digits"),
    ("86123456789012A", "15 to 15 digits"),
])
def test_a_wrong_imei_is_refused(imei: str, fragment: str) -> None:
    error = refusal(with_lines({**MTS, "imei": imei}))
    assert error.path == "trunks[2].imei"
    assert fragment in error.message


def test_an_unquoted_imei_asks_for_quotes() -> None:
    error = refusal(with_lines({**MTS, "imei": 861234567890127}))
    assert "quotes" in error.message


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", ""])
def test_a_pin_is_4_to_8_digits(pin: str) -> None:
    assert refusal(with_lines({**MTS, "pin": pin})).path == "trunks[2].pin"


def test_an_eight_digit_pin_is_kept() -> None:
    assert line(with_lines({**MTS, "pin": "00001234"}), "mts").pin == "00001234"


@pytest.mark.parametrize("number", ["+79", "79161234567x", "++79161234567"])
def test_the_lines_own_number_must_be_digits(number: str) -> None:
    assert refusal(with_lines({**MTS, "number": number})).path == "trunks[2].number"


@pytest.mark.parametrize(("gain", "ok"), [(-12, True), (12.0, True), (3.5, True),
                                          (-12.5, False), (13, False), ("6", False)])
def test_gain_is_minus_12_to_12_db(gain: object, ok: bool) -> None:
    data = with_lines({**CITY, "gain_db": gain})
    if ok:
        assert line(data, "city").gain_db == float(gain)  # type: ignore[arg-type]
    else:
        assert refusal(data).path == "trunks[2].gain_db"


def test_a_number_on_a_gsm_line_routes_like_any_did_with_one_channel() -> None:
    data = with_lines(MTS, numbers=[{"number": "+79161234567", "trunk": "mts",
                                     "destination": "200"}])
    number = parse_config(data).numbers[-1]
    assert (number.trunk, number.channels, number.destination) == ("mts", 1, "200")


def test_a_number_on_a_modem_line_refuses_more_channels() -> None:
    data = with_lines(CITY, numbers=[{"number": "84951112233", "trunk": "city",
                                      "channels": 3, "destination": "200"}])
    error = refusal(data)
    assert error.path == "numbers[2].channels"
    assert "one call at a time" in error.message


def test_a_number_on_a_sip_trunk_still_needs_its_channels() -> None:
    data = with_lines(numbers=[{"number": "84951112233", "trunk": "provider",
                                "destination": "200"}])
    assert refusal(data).path == "numbers[2].channels"


def test_failover_order_may_name_modem_lines() -> None:
    data = with_lines(MTS, CITY)
    data["failover"] = {"order": ["provider", "mts", "city"]}
    assert parse_config(data).failover.order == ("provider", "mts", "city")


def test_a_modem_line_exports_as_the_admin_wrote_it() -> None:
    assert trunk_to_data(line(with_lines(MTS), "mts")) == {**MTS}
    assert trunk_to_data(line(with_lines({**CITY, "gain_db": -3}), "city")) == {
        **CITY, "gain_db": -3.0}


def test_a_sip_trunks_export_is_unchanged_by_the_modem_fields() -> None:
    exported = trunk_to_data(parse_config(valid_config_data()).trunks[0])
    assert not {"device", "audio_device", "modem", "imei", "pin", "number",
                "gain_db"} & set(exported)


def test_modem_lines_survive_export_and_import_as_yaml() -> None:
    data = with_lines(MTS, {**CITY, "gain_db": 2.5, "number": "84951112233"},
                      numbers=[{"number": "+79161234567", "trunk": "mts",
                                "destination": "200"}])
    config = parse_config(data)
    assert load_yaml(dump_yaml(config)) == config
    assert parse_config(config_to_dict(config)) == config


def test_modem_lines_survive_the_database(store: Store) -> None:
    data = with_lines(MTS, {**CITY, "gain_db": -6, "number": "84951112233"},
                      numbers=[{"number": "+79161234567", "trunk": "mts",
                                "destination": "200"}])
    data["failover"] = {"order": ["provider", "mts", "city"]}
    config = parse_config(data)
    store.replace_config(config)
    assert store.load_config() == config
    assert store.load_config().trunks[2].pin == "1234"


def test_the_gsm_and_fxo_example_in_the_admin_docs_is_valid() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text(
        encoding="utf-8")
    block = next(block for block in re.findall(r"```yaml\n(.*?)```", docs, re.DOTALL)
                 if "type: gsm" in block and block.startswith("trunks:"))
    config = load_yaml(block)
    assert [(t.name, t.type, t.modem) for t in config.trunks] == [
        ("mts", "gsm", "huawei"), ("city", "fxo", "v253")]


@pytest.mark.parametrize("guide", ["reserve-line.md", "reserve-line.ru.md"])
def test_the_admin_guides_lines_and_failover_are_valid(guide: str) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / guide).read_text(encoding="utf-8")
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", docs,
                                                            re.DOTALL)]
    lines, failover = blocks[0], blocks[1]["failover"]
    data = valid_config_data()
    data["trunks"][0]["name"] = "provider"
    data["trunks"] += lines["trunks"]
    data["numbers"] += lines["numbers"]
    data["failover"] = failover
    config = parse_config(data)
    assert config.failover.order == ("provider", "mts", "city")
    assert [t.type for t in config.trunks[-2:]] == ["gsm", "fxo"]
