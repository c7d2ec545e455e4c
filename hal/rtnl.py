"""A small rtnetlink reader: what `hal/netmon.py` needs of the kernel's routing socket, no more.

Link, address and route messages (rtnetlink(7): RTM_NEWLINK/DELLINK, RTM_NEWADDR/DELADDR,
RTM_NEWROUTE/DELROUTE) decoded into plain dicts with the few fields the monitor reads, the
multicast groups subscribed to, and the two dumps it asks for (every link; every route of one
family). It replaces pyroute2 there, whose import alone cost ~22 MB of resident memory on the
box (issue 13's 80 MB idle budget); nothing here is a general netlink library.

The socket is non-blocking and read on the asyncio loop it is used from (a stock loop: uvloop
cannot wrap a netlink socket, see hal/netmon.py). A receive buffer overrun (the kernel's
ENOBUFS: messages were lost) is raised as OSError, which the monitor answers by reading the
whole state again.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import struct
from typing import Any

# linux/rtnetlink.h: the multicast groups (as bit masks for bind()) and the message types.
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
EVENT_NAMES = {
    RTM_NEWLINK: "RTM_NEWLINK", RTM_DELLINK: "RTM_DELLINK",
    RTM_NEWADDR: "RTM_NEWADDR", RTM_DELADDR: "RTM_DELADDR",
    RTM_NEWROUTE: "RTM_NEWROUTE", RTM_DELROUTE: "RTM_DELROUTE",
}
# linux/netlink.h
NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
RTATTR_HEADER = struct.Struct("=HH")  # length, type
IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
#                                      type, flags
IFLA_IFNAME = 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_TABLE = 15
ALIGN_BYTES = 4
RECEIVE_BYTES = 1 << 16  # one datagram: the kernel sends dumps in pieces well under this
# A burst of events (a link flapping, a hundred routes) fits before the kernel drops any.
SOCKET_BUFFER_BYTES = 1 << 20
# A dump's answer comes at once from the kernel; a socket that gives none within this is a bug.
DUMP_TIMEOUT_S = 5.0


def _align(length: int) -> int:
    return (length + ALIGN_BYTES - 1) & ~(ALIGN_BYTES - 1)


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """The route attributes (struct rtattr) from `offset` to the end of `data`: type → payload."""
    found: dict[int, bytes] = {}
    while offset + RTATTR_HEADER.size <= len(data):
        length, kind = RTATTR_HEADER.unpack_from(data, offset)
        if length < RTATTR_HEADER.size or offset + length > len(data):
            break  # malformed: stop rather than read past the message
        found[kind & 0x3FFF] = data[offset + RTATTR_HEADER.size:offset + length]
        offset += _align(length)
    return found


def _address(family: int, raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return socket.inet_ntop(family, raw)
    except (ValueError, OSError):
        return None


def decode(kind: int, body: bytes) -> dict[str, Any] | None:
    """One link, address or route message (its body after the netlink header) as a dict, or
    None for a kind the monitor does not read."""
    event = EVENT_NAMES.get(kind)
    if event is None:
        return None
    if kind in (RTM_NEWLINK, RTM_DELLINK) and len(body) >= IFINFOMSG.size:
        _family, _type, index, flags, _change = IFINFOMSG.unpack_from(body)
        attrs = attributes(body, IFINFOMSG.size)
        name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
        return {"event": event, "index": index, "flags": flags, "ifname": name or None}
    if kind in (RTM_NEWADDR, RTM_DELADDR) and len(body) >= IFADDRMSG.size:
        family, _prefix, _flags, scope, index = IFADDRMSG.unpack_from(body)
        attrs = attributes(body, IFADDRMSG.size)
        return {"event": event, "family": family, "scope": scope, "index": index,
                "address": _address(family, attrs.get(IFA_ADDRESS)),
                "local": _address(family, attrs.get(IFA_LOCAL))}
    if kind in (RTM_NEWROUTE, RTM_DELROUTE) and len(body) >= RTMSG.size:
        family, dst_len, _src, _tos, table, _proto, scope, route_type, _flags = \
            RTMSG.unpack_from(body)
        attrs = attributes(body, RTMSG.size)
        # Tables above 255 are only in RTA_TABLE (the header's field then says 252, compat).
        if RTA_TABLE in attrs and len(attrs[RTA_TABLE]) == 4:
            table = struct.unpack("=I", attrs[RTA_TABLE])[0]
        return {"event": event, "family": family, "dst_len": dst_len, "table": table,
                "scope": scope, "type": route_type}
    return None


def messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """The netlink messages of one datagram: (type, sequence, body)."""
    found = []
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind, _flags, sequence, _port = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size or offset + length > len(data):
            break
        found.append((kind, sequence, data[offset + NLMSG_HEADER.size:offset + length]))
        offset += _align(length)
    return found


class RtnlSocket:
    """A NETLINK_ROUTE socket: subscribed to `groups` (events), or with none (dumps)."""

    def __init__(self, *, groups: int = 0) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                                   | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
            self._sock.bind((0, groups))
        except OSError:
            self._sock.close()
            raise
        self._sequence = itertools.count(1)

    def close(self) -> None:
        self._sock.close()

    async def receive_batch(self) -> list[dict[str, Any]]:
        """The messages of the next datagram the kernel sends (waits for one)."""
        data = await asyncio.get_running_loop().sock_recv(self._sock, RECEIVE_BYTES)
        found = []
        for kind, _sequence, body in messages(data):
            if kind == NLMSG_ERROR:
                _raise_error(body)
            message = decode(kind, body)
            if message is not None:
                found.append(message)
        return found

    async def dump_links(self) -> list[dict[str, Any]]:
        return await self._dump(RTM_GETLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))

    async def dump_routes(self, family: int) -> list[dict[str, Any]]:
        return await self._dump(RTM_GETROUTE, RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0))

    async def _dump(self, kind: int, header: bytes) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        sequence = next(self._sequence)
        request = NLMSG_HEADER.pack(NLMSG_HEADER.size + len(header), kind,
                                    NLM_F_REQUEST | NLM_F_DUMP, sequence, 0) + header
        await loop.sock_sendall(self._sock, request)
        found: list[dict[str, Any]] = []
        async with asyncio.timeout(DUMP_TIMEOUT_S):
            while True:
                data = await loop.sock_recv(self._sock, RECEIVE_BYTES)
                for reply_kind, reply_sequence, body in messages(data):
                    if reply_sequence != sequence:
                        continue  # the answer to an earlier dump that timed out
                    if reply_kind == NLMSG_DONE:
                        return found
                    if reply_kind == NLMSG_ERROR:
                        _raise_error(body)
                    message = decode(reply_kind, body)
                    if message is not None:
                        found.append(message)


def _raise_error(body: bytes) -> None:
    code = struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
    if code:  # zero is an acknowledgement
        raise OSError(-code, f"netlink: {os.strerror(-code)}")
