"""The rtnetlink codec of hal/rtnl.py on messages built by hand (the namespace tests in
test_netmon.py read the real kernel's): fields decoded, malformed input stops cleanly."""

from __future__ import annotations

import socket
import struct

from hal import rtnl


def _attr(kind: int, payload: bytes) -> bytes:
    raw = rtnl.RTATTR_HEADER.pack(rtnl.RTATTR_HEADER.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _message(kind: int, body: bytes, sequence: int = 7) -> bytes:
    return rtnl.NLMSG_HEADER.pack(rtnl.NLMSG_HEADER.size + len(body), kind, 0, sequence, 0) + body


def test_a_link_message_gives_index_flags_and_name() -> None:
    body = rtnl.IFINFOMSG.pack(0, 1, 3, 0x10003, 0) + _attr(rtnl.IFLA_IFNAME, b"eth0\0")
    assert rtnl.decode(rtnl.RTM_NEWLINK, body) == {
        "event": "RTM_NEWLINK", "index": 3, "flags": 0x10003, "ifname": "eth0"}


def test_an_address_message_gives_scope_and_address() -> None:
    body = (rtnl.IFADDRMSG.pack(socket.AF_INET, 24, 0, 0, 3)
            + _attr(rtnl.IFA_ADDRESS, socket.inet_aton("10.9.1.7")))
    message = rtnl.decode(rtnl.RTM_DELADDR, body)
    assert message is not None
    assert (message["event"], message["scope"], message["address"], message["local"]) == (
        "RTM_DELADDR", 0, "10.9.1.7", None)


def test_a_route_table_above_255_is_read_from_its_attribute() -> None:
    body = rtnl.RTMSG.pack(socket.AF_INET6, 0, 0, 0, 252, 0, 0, 1, 0) + _attr(
        rtnl.RTA_TABLE, struct.pack("=I", 1000))
    assert rtnl.decode(rtnl.RTM_NEWROUTE, body) == {
        "event": "RTM_NEWROUTE", "family": socket.AF_INET6, "dst_len": 0, "table": 1000,
        "scope": 0, "type": 1}


def test_several_messages_in_one_datagram_are_all_read() -> None:
    link = rtnl.IFINFOMSG.pack(0, 1, 2, 0, 0) + _attr(rtnl.IFLA_IFNAME, b"lo\0")
    data = _message(rtnl.RTM_NEWLINK, link) + _message(rtnl.NLMSG_DONE, b"\0" * 4)
    assert [kind for kind, _, _ in rtnl.messages(data)] == [rtnl.RTM_NEWLINK, rtnl.NLMSG_DONE]


def test_a_truncated_message_or_attribute_stops_the_reading_without_error() -> None:
    link = rtnl.IFINFOMSG.pack(0, 1, 2, 0, 0) + _attr(rtnl.IFLA_IFNAME, b"eth1\0")
    data = _message(rtnl.RTM_NEWLINK, link)
    assert rtnl.messages(data[:-3]) == []  # the header claims more than arrived
    bad_attr = rtnl.IFINFOMSG.pack(0, 1, 2, 0, 0) + rtnl.RTATTR_HEADER.pack(40, rtnl.IFLA_IFNAME)
    assert rtnl.decode(rtnl.RTM_NEWLINK, bad_attr) == {
        "event": "RTM_NEWLINK", "index": 2, "flags": 0, "ifname": None}
    assert rtnl.decode(rtnl.RTM_NEWLINK, b"\0" * 5) is None  # shorter than its header
    assert rtnl.decode(99, b"") is None  # a kind the monitor does not read
