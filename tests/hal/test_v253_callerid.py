"""Caller ID as V.253 modems format it between the first and second ring (`AT+VCID=1`)."""

from __future__ import annotations

from hal.modem.v253 import (
    CallerId,
    CallerIdTime,
    NumberAbsence,
    caller_id_field,
    parse_caller_id,
)


def test_a_full_block_between_rings_is_read() -> None:
    lines = ["RING", "", "DATE=0805", "TIME=1432", "NMBR=5551234", "NAME=JOHN DOE", "", "RING"]
    assert parse_caller_id(lines) == CallerId(
        number="5551234",
        number_absence=None,
        name="JOHN DOE",
        sent_at=CallerIdTime(month=8, day=5, hour=14, minute=32),
    )


def test_spaced_forms_are_read_like_compact_ones() -> None:
    spaced = parse_caller_id(["DATE = 0805", "TIME = 1432", "NMBR = 5551234", "NAME = ACME"])
    compact = parse_caller_id(["DATE=0805", "TIME=1432", "NMBR=5551234", "NAME=ACME"])
    assert spaced == compact


def test_p_means_a_private_number() -> None:
    caller = parse_caller_id(["DATE=0805", "TIME=1432", "NMBR=P"])
    assert caller is not None
    assert (caller.number, caller.number_absence) == (None, NumberAbsence.PRIVATE)


def test_o_means_an_unavailable_number() -> None:
    caller = parse_caller_id(["NMBR=O", "NAME=O"])
    assert caller is not None
    assert (caller.number, caller.number_absence, caller.name) == (
        None,
        NumberAbsence.UNAVAILABLE,
        None,
    )


def test_a_name_without_a_number_leaves_the_number_unavailable() -> None:
    caller = parse_caller_id(["NAME=ACME LTD"])
    assert caller is not None
    assert (caller.number, caller.number_absence, caller.name) == (
        None,
        NumberAbsence.UNAVAILABLE,
        "ACME LTD",
    )


def test_an_international_number_keeps_its_plus_and_loses_its_dashes() -> None:
    caller = parse_caller_id(["NMBR=+7-495-123-45-67"])
    assert caller is not None
    assert caller.number == "+74951234567"


def test_a_number_that_is_not_one_is_taken_as_unavailable() -> None:
    caller = parse_caller_id(["NMBR=\x07\x00??"])
    assert caller is not None
    assert (caller.number, caller.number_absence) == (None, NumberAbsence.UNAVAILABLE)


def test_a_dialled_number_field_stands_in_for_nmbr() -> None:
    caller = parse_caller_id(["DDN_NMBR=5550100"])
    assert caller is not None
    assert caller.number == "5550100"


def test_an_impossible_date_is_dropped_and_the_number_kept() -> None:
    caller = parse_caller_id(["DATE=1340", "TIME=2575", "NMBR=5551234"])
    assert caller is not None
    assert (caller.number, caller.sent_at) == ("5551234", None)


def test_a_date_without_a_time_gives_no_time() -> None:
    caller = parse_caller_id(["DATE=0805", "NMBR=5551234"])
    assert caller is not None
    assert caller.sent_at is None


def test_rings_alone_give_no_caller_id() -> None:
    assert parse_caller_id(["RING", "", "RING"]) is None


def test_other_modem_lines_are_not_caller_id_fields() -> None:
    for line in ("OK", "RING", "CONNECT", "VCON", "+VCID: 1", "FOO=BAR", "=5551234"):
        assert caller_id_field(line) is None


def test_field_names_are_read_in_any_case() -> None:
    assert caller_id_field("nmbr=5551234") == ("NMBR", "5551234")
