"""The `mobiles` no-answer step: the department members' mobile phones ring at once through the
provider (department 20 s → members' mobiles 20 s → voicemail, as in the issue's example)."""

from __future__ import annotations

import copy

import pytest

from firmware.sip.message import Request
from firmware.store.config import ConfigError, parse_config
from tests.core.network import Office, config_with, office

MOBILES_DID = "+74950000980"
MOBILE = {"101": "+79160000101", "102": "+79160000102"}

MOBILES = config_with(
    [{"number": "980", "name": "Field", "strategy": "ring_all", "ring_timeout_s": 10,
      "members": ["101", "102", "103"],
      "no_answer": {"steps": [{"to": "mobiles", "time_s": 20}, {"to": "voicemail"}]}}],
    [{"number": MOBILES_DID, "trunk": "provider", "channels": 5, "destination": "980"}],
)
for extension in MOBILES["extensions"]:  # type: ignore[union-attr]
    if extension["number"] in MOBILE:
        extension["mobile"] = MOBILE[extension["number"]]


def mobile_invites(o: Office) -> list[Request]:
    return [r for r in o.provider.invites() if "7916000010" in str(r.uri)]


def at_the_mobiles(config: dict[str, object] = MOBILES) -> tuple[Office, Request]:
    """Nobody's desk phone is registered: the department rings nobody, so the mobiles."""
    o = office(registered=(), config=config)
    invite = o.provider.call(MOBILES_DID)
    return o, invite


def test_the_members_mobiles_ring_at_once_through_the_provider() -> None:
    o, _ = at_the_mobiles()
    assert sorted(str(r.uri.user) for r in mobile_invites(o)) == [  # type: ignore[union-attr]
        "+79160000101", "+79160000102"]
    # The caller's channel, and one per ringing mobile.
    assert o.net.channels_in_use()["trunk:provider"] == 3


def test_the_mobile_that_answers_wins_and_counts_for_its_employee() -> None:
    o, invite = at_the_mobiles()
    first = next(r for r in mobile_invites(o) if "101" in str(r.uri))
    o.provider.reply(first, 200)
    assert o.provider.requests("CANCEL"), "the other mobile still rings"
    assert o.net.channels_in_use()["trunk:provider"] == 2  # the caller's and 101's mobile
    o.provider.bye(invite)
    row, legs = o.rows[-1]
    assert (row["outcome"], row["answered_by"]) == ("answered", "101")
    assert sorted(leg["target"] for leg in legs) == ["+79160000101", "+79160000102"]
    assert o.net.channels_in_use()["trunk:provider"] == 0


def test_unanswered_mobiles_give_way_to_the_next_step() -> None:
    o, invite = at_the_mobiles()
    o.net.advance(20.5)
    assert len(o.provider.requests("CANCEL")) == 2
    assert 200 in o.provider.final_statuses()  # voicemail answered
    assert o.net.channels_in_use()["trunk:provider"] == 1


def test_a_member_on_break_is_not_rung_on_the_mobile_either() -> None:
    o = office(registered=(), config=MOBILES)
    o.net.gateway.set_agent_status("102", "break", source="cli", now=o.net.now)
    o.provider.call(MOBILES_DID)
    assert [str(r.uri.user) for r in mobile_invites(o)] == [  # type: ignore[union-attr]
        "+79160000101"]


def test_without_any_mobile_the_scheme_goes_on_at_once() -> None:
    config = copy.deepcopy(MOBILES)
    for extension in config["extensions"]:  # type: ignore[union-attr]
        extension.pop("mobile", None)
    o, _ = at_the_mobiles(config)
    assert mobile_invites(o) == []
    assert 200 in o.provider.final_statuses()  # straight to voicemail


def test_mobiles_must_be_known_destination_words() -> None:
    config = copy.deepcopy(MOBILES)
    config["departments"][-1]["no_answer"] = {  # type: ignore[index]
        "steps": [{"to": "mobile", "time_s": 20}]}
    with pytest.raises(ConfigError, match="mobiles or voicemail"):
        parse_config(config)


def test_the_reserve_may_be_the_members_mobiles() -> None:
    config = copy.deepcopy(MOBILES)
    config["departments"][-1]["no_answer"] = {"reserve": "mobiles"}  # type: ignore[index]
    o, _ = at_the_mobiles(config)  # every desk phone is offline: the reserve at once
    assert len(mobile_invites(o)) == 2
