"""Lines as the core sees them: state, the line a request came from, the line calls go out on."""

from __future__ import annotations

from firmware.core import Gateway
from firmware.core.events import LineStateChanged
from firmware.core.lines import LineState
from firmware.sip.message import Headers, Request, make_response
from firmware.sip.transaction import Address
from firmware.sip.uri import parse_uri
from firmware.sip_legs import SipLeg
from firmware.store.config import parse_config

BOX = Address("udp", "127.0.0.1", 5060)
FIRST = Address("udp", "127.0.0.2", 5060)
SECOND = Address("udp", "127.0.0.3", 5070)


def gateway(addresses: dict[str, Address], **second: object) -> Gateway:
    config = parse_config({
        "trunks": [
            {"name": "first", "host": "sip.first.example", "register": False, "channels": 4},
            {"name": "second", "host": "127.0.0.3", "port": 5070, "register": False,
             "channels": 6, **second},
        ],
    })
    return Gateway(config, local=BOX, trunk_addresses=addresses, key=b"k" * 32, now=0.0)


def invite(uri: str = "sip:100@127.0.0.1") -> Request:
    return Request("INVITE", parse_uri(uri), Headers())


def test_a_line_whose_host_does_not_resolve_is_down_and_skipped_for_calls_out() -> None:
    g = gateway({"second": SECOND})
    assert [(s.name, s.state, s.reason) for s in g.lines.statuses(0.0)] == [
        ("first", LineState.DOWN, "cannot resolve sip.first.example"),
        ("second", LineState.UP, "no registration (calls by address)"),
    ]
    line = g.lines.outbound(0.0)
    assert line is not None and line.name == "second"
    leg = line.place("84951234567", 0.0)
    assert isinstance(leg, SipLeg) and leg.label == "84951234567"
    target = leg.target
    assert (target.request_uri, target.destination) == ("sip:84951234567@127.0.0.3:5070", SECOND)


def test_the_first_line_that_is_up_carries_calls_out() -> None:
    line = gateway({"first": FIRST, "second": SECOND}).lines.outbound(0.0)
    assert line is not None and line.name == "first"


def test_a_request_belongs_to_the_line_whose_address_and_port_it_comes_from() -> None:
    lines = gateway({"first": FIRST, "second": SECOND}).lines
    assert lines.of_request(invite(), SECOND).name == "second"  # type: ignore[union-attr]
    assert lines.of_request(invite(), Address("udp", "127.0.0.3", 5999)) is None
    # Over TCP the provider connects from any port.
    assert lines.of_request(invite(), Address("tcp", "127.0.0.3", 40000)) is not None


def test_inbound_match_address_accepts_any_port_of_the_line() -> None:
    lines = gateway({"first": FIRST, "second": SECOND}, inbound_match="address").lines
    assert lines.of_request(invite(), Address("udp", "127.0.0.3", 5999)) is not None


def test_each_line_counts_its_own_channels() -> None:
    g = gateway({"first": FIRST, "second": SECOND})
    line = g.lines.named("second")
    assert line is not None and g.channels.acquire([line.channel_key])
    statuses = {s.name: (s.channels_in_use, s.channels) for s in g.lines.statuses(0.0)}
    assert statuses == {"first": (0, 4), "second": (1, 6)}


def test_a_registering_line_knows_its_calls_by_the_line_token_of_its_contact() -> None:
    g = gateway({"first": FIRST, "second": SECOND}, register=True, username="box",
                password="provider-password")
    registration = next(g.lines.registrations())
    contact = registration.build_register(0.0).contacts[0].uri
    token = contact.params.get("line")  # type: ignore[union-attr]
    assert token
    elsewhere = Address("udp", "127.0.0.9", 5060)  # the provider's other proxy
    assert g.lines.of_request(invite(f"sip:box@127.0.0.1;line={token}"), elsewhere) is not None
    assert g.lines.of_request(invite("sip:box@127.0.0.1;line=guessed"), elsewhere) is None
    assert g.lines.statuses(0.0)[1].state is LineState.DEGRADED  # still registering


def test_a_line_that_changes_state_is_reported_once_as_an_event() -> None:
    g = gateway({"first": FIRST, "second": SECOND}, register=True, username="box",
                password="provider-password")
    g.handle_timer(1.0)  # the first look tells every line's state
    first = [e for e in drain(g) if isinstance(e, LineStateChanged)]
    assert [(e.name, e.state) for e in first] == [("first", "up"), ("second", "degraded")]
    g.handle_timer(2.0)
    assert [e for e in drain(g) if isinstance(e, LineStateChanged)] == []  # nothing new
    registration = next(g.lines.registrations())
    refused = make_response(registration.build_register(2.5), 403)
    assert registration.on_response(refused, 2.5) is None  # the provider refuses the account
    g.handle_timer(3.0)
    [change] = [e for e in drain(g) if isinstance(e, LineStateChanged)]
    assert (change.name, change.state, change.at) == ("second", "degraded", 3.0)
    assert "403" in change.reason


def drain(g: Gateway) -> list[object]:
    events = []
    while (event := g.next_event()) is not None:
        events.append(event)
    return events
