"""The registrar's side of registrations kept across a restart (issue 16): which extensions'
bindings changed, their rows in wall time, and taking them back in a new process whose
monotonic clock starts elsewhere."""

from __future__ import annotations

from firmware.registrar import Registrar
from firmware.sip.message import Request, parse_message
from firmware.sip.transaction import Address

PHONE = Address("udp", "10.0.0.11", 5062)
WALL_OFFSET_S = 1_700_000_000.0


def register_request(expires: int = 600) -> Request:
    text = ("REGISTER sip:192.0.2.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 10.0.0.11:5062;branch=z9hG4bKr1\r\n"
            "From: <sip:101@192.0.2.1>;tag=t\r\nTo: <sip:101@192.0.2.1>\r\n"
            "Call-ID: reg-1\r\nCSeq: 7 REGISTER\r\n"
            f'Contact: "Anna" <sip:101@10.0.0.11:5062;transport=udp>;expires={expires}\r\n'
            "User-Agent: Phone/1\r\nContent-Length: 0\r\n\r\n")
    request = parse_message(text.encode())
    assert isinstance(request, Request)
    return request


def test_a_binding_survives_a_restart_through_its_rows() -> None:
    before = Registrar()
    before.register(register_request(), "101", PHONE, 100.0, to_tag="x")
    assert before.take_changed() == {"101"}
    assert before.take_changed() == set()
    rows = before.rows("101", WALL_OFFSET_S)

    # The new process's monotonic clock starts elsewhere: 5000.0 is 200 s later in wall time.
    after = Registrar()
    assert after.restore(rows, 5000.0, WALL_OFFSET_S - 4700.0) == 1
    (binding,) = after.bindings("101", 5000.0)
    assert binding.destination == Address("udp", "10.0.0.11", 5062)
    assert binding.expires_at == 5000.0 + 400.0  # 600 s from the REGISTER, 200 s gone
    assert binding.cseq == 7 and binding.user_agent == "Phone/1"
    assert after.is_binding_source(PHONE, "101")
    assert "10.0.0.11" in after.registered_hosts()
    assert after.take_changed() == set()


def test_an_expired_or_unreadable_binding_is_not_restored() -> None:
    registrar = Registrar()
    registrar.register(register_request(), "101", PHONE, 100.0, to_tag="x")
    (row,) = registrar.rows("101", WALL_OFFSET_S)

    assert Registrar().restore([row], 701.0, WALL_OFFSET_S) == 0
    assert Registrar().restore([row | {"contact": "<sip:"}], 200.0, WALL_OFFSET_S) == 0
    assert Registrar().restore([row | {"source_port": "x"}], 200.0, WALL_OFFSET_S) == 0


def test_expiry_and_unregistering_are_changes_to_write() -> None:
    registrar = Registrar()
    registrar.register(register_request(), "101", PHONE, 100.0, to_tag="x")
    registrar.take_changed()
    registrar.expire(200.0)
    assert registrar.take_changed() == set()
    registrar.expire(800.0)
    assert registrar.take_changed() == {"101"}
    assert registrar.rows("101", WALL_OFFSET_S) == []
