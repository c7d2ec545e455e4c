"""The toll guard in the gateway (issue 9 item 2): a phone's call to an external number reaches
the provider only within its extension's permission and the hourly limits; a refusal is a 403
with the reason, a WARNING in the log and a security event for the web UI."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from firmware.routing.tollguard import BOX_LIMIT, EXTENSION_LIMIT, NOT_ALLOWED
from firmware.sip.message import Request, Response
from tests.core.network import CONFIG, Office, Peer, authorised_call, office

INTERNATIONAL_NUMBER = "0088213374455"
MOBILE_NUMBER = "89161234567"


def dial(phone: Peer, dialed: str) -> Response:
    """An external call as a phone places it, authorised; the last response to it."""
    return authorised_call(phone, dialed)[1]


def dialled_at_provider(o: Office) -> list[str]:
    return [str(invite.uri.user_unescaped) for invite in o.provider.invites()
            if isinstance(invite, Request)]


def office_with(**changes: Any) -> Office:
    config = copy.deepcopy(CONFIG)
    extensions: Any = config["extensions"]
    extensions[0].update(changes.pop("extension_101", {}))
    config["security"] = changes.pop("security", {})
    config.update(changes)
    return office(config=config)


def test_an_international_number_gets_403_and_the_trunk_receives_nothing() -> None:
    o = office()
    response = dial(o.phones["101"], INTERNATIONAL_NUMBER)
    assert (response.status, response.reason) == (
        403, "Forbidden (international calls not allowed)")
    assert dialled_at_provider(o) == []
    (event,) = o.net.recorder.security_events
    assert (event.kind, event.extension, event.number, event.number_class) == (
        NOT_ALLOWED, "101", INTERNATIONAL_NUMBER, "international")


def test_a_mobile_number_goes_out_through_the_trunk_by_default() -> None:
    o = office()
    assert dial(o.phones["101"], MOBILE_NUMBER).status in (100, 180)
    assert dialled_at_provider(o) == [MOBILE_NUMBER]
    assert o.net.recorder.security_events == []


def test_an_extension_allowed_international_calls_reaches_the_provider() -> None:
    o = office_with(extension_101={"outbound": "international"})
    assert dial(o.phones["101"], INTERNATIONAL_NUMBER).status in (100, 180)
    assert dialled_at_provider(o) == [INTERNATIONAL_NUMBER]


def test_an_internal_only_extension_still_reaches_emergency_services() -> None:
    o = office_with(extension_101={"outbound": "internal"})
    assert dial(o.phones["101"], MOBILE_NUMBER).reason == (
        "Forbidden (external calls not allowed)")
    assert dial(o.phones["101"], "112").status in (100, 180)
    assert dialled_at_provider(o) == ["112"]


def test_the_hourly_limit_refuses_the_next_call_logs_and_records_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    o = office_with(extension_101={"external_calls_per_hour": 2})
    phone = o.phones["101"]
    with caplog.at_level(logging.WARNING):
        assert [dial(phone, MOBILE_NUMBER).status for _ in range(2)] == [180, 180]
        refused = dial(phone, "89161234568")
    assert (refused.status, refused.reason) == (
        403, "Forbidden (hourly limit of external calls reached)")
    assert dialled_at_provider(o) == [MOBILE_NUMBER, MOBILE_NUMBER]
    (event,) = o.net.recorder.security_events
    assert (event.kind, event.extension, event.number) == (EXTENSION_LIMIT, "101", "89161234568")
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "extension 101" in line and "89161234568" in line and "hourly limit" in line


def test_the_box_wide_limit_counts_every_phone_and_frees_up_after_an_hour() -> None:
    o = office_with(security={"external_calls_per_hour": 1})
    assert dial(o.phones["101"], MOBILE_NUMBER).status == 180
    refused = dial(o.phones["102"], MOBILE_NUMBER)
    assert (refused.status, refused.reason) == (
        403, "Forbidden (the office's hourly limit of external calls reached)")
    assert [e.kind for e in o.net.recorder.security_events] == [BOX_LIMIT]
    o.net.advance(3600.0)
    assert dial(o.phones["102"], MOBILE_NUMBER).status == 180
    assert dialled_at_provider(o) == [MOBILE_NUMBER, MOBILE_NUMBER]
