"""The box's view of its own network: links, addresses and default routes, from rtnetlink.

`NetworkMonitor` subscribes to the kernel's link, IPv4/IPv6 address and IPv4/IPv6 route groups
and turns what it hears into facts for `firmware/failover.py`:
`DefaultRouteLost` / `DefaultRoutePresent`, `LinkWentDown` / `LinkCameUp`, `AddressChanged`.
The kernel drops the default route of a link that goes down *without* sending RTM_DELROUTE for
it (DEPENDENCIES.md, pyroute2), so the monitor never trusts route events alone: after every
batch of messages, whatever it was, it asks the kernel again whether a default route exists.
The state is read once at start and reported as facts too. Netlink cannot see an outage beyond
the box's router; the failover monitor's probes cover that. The netlink sockets live on a stock
asyncio loop in a thread of the monitor's own: the daemon runs on uvloop, which cannot make a
datagram endpoint of a netlink socket (it fails with ValueError "invalid family 16").

The rtnetlink messages are read by the small codec below (`hal/rtnl.py`), not by pyroute2:
importing pyroute2 cost the daemon ~22 MB of resident memory (372 modules) on the box's 80 MB
idle budget (issue 13), for the four message kinds used here (rtnetlink(7)).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hal.rtnl import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    RtnlSocket,
)

LOGGER = logging.getLogger(__name__)

GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000  # the carrier (linux/if.h)
RTN_UNICAST = 1  # a default route of type unreachable/blackhole/prohibit leads nowhere
RT_TABLE_MAIN = 254  # the routes the box's traffic takes (ip route; not local or policy tables)
RT_SCOPE_UNIVERSE = 0  # addresses the provider can see; link-local and host ones are ignored
ADDRESS_EVENTS = frozenset({"RTM_NEWADDR", "RTM_DELADDR"})
# After a netlink error (the receive buffer overflowed: ENOBUFS, messages lost), wait this long
# before reading the whole state again, so a storm of errors is not a busy loop.
RESYNC_DELAY_S = 0.5
# How long a cancelled monitor waits for its thread to close the netlink sockets.
THREAD_STOP_TIMEOUT_S = 2.0


@dataclass(frozen=True, kw_only=True)
class DefaultRouteLost:
    at: float


@dataclass(frozen=True, kw_only=True)
class DefaultRoutePresent:
    at: float


@dataclass(frozen=True, kw_only=True)
class LinkWentDown:
    name: str
    at: float


@dataclass(frozen=True, kw_only=True)
class LinkCameUp:
    name: str
    at: float


@dataclass(frozen=True, kw_only=True)
class AddressChanged:
    """A global (scope universe) address was added to or removed from a link."""

    link: str
    address: str
    added: bool
    at: float


NetworkFact = DefaultRouteLost | DefaultRoutePresent | LinkWentDown | LinkCameUp | AddressChanged


class NetworkFactSink(Protocol):
    """What takes the facts: `firmware.failover.FailoverMonitor` has these methods."""

    def default_route_lost(self, now: float) -> None: ...
    def default_route_present(self, now: float) -> None: ...
    def link_down(self, name: str, now: float) -> None: ...
    def link_up(self, name: str, now: float) -> None: ...
    def address_changed(self, now: float) -> None: ...


def deliver(fact: NetworkFact, sink: NetworkFactSink) -> None:
    """Hand one fact to `sink` (the daemon's failover monitor) as the method it stands for."""
    if isinstance(fact, DefaultRouteLost):
        sink.default_route_lost(fact.at)
    elif isinstance(fact, DefaultRoutePresent):
        sink.default_route_present(fact.at)
    elif isinstance(fact, LinkWentDown):
        sink.link_down(fact.name, fact.at)
    elif isinstance(fact, LinkCameUp):
        sink.link_up(fact.name, fact.at)
    else:
        sink.address_changed(fact.at)


def _link_is_up(message: Any) -> bool:
    flags = int(message["flags"])
    return bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)


class NetworkMonitor:
    """Reports network facts to `on_fact` as they happen; `run()` until cancelled.

    `families` says which default routes count (any one present means "present"); by default
    IPv4 and IPv6, as a SIP provider may be reached over either.
    """

    def __init__(
        self,
        on_fact: Callable[[NetworkFact], None],
        *,
        families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6),
    ) -> None:
        self._on_fact = on_fact
        self._families = families
        self._events: RtnlSocket | None = None  # bound to the groups: only multicast arrives
        self._queries: RtnlSocket | None = None  # for dumps, so replies never mix with events
        self._route_present: bool | None = None
        self._links: dict[int, tuple[str, bool]] = {}  # index → (name, up)
        self.started = asyncio.Event()
        self._main: asyncio.AbstractEventLoop | None = None  # the caller's loop, once run()

    @property
    def default_route_present(self) -> bool | None:
        """What the kernel said last (None before the start)."""
        return self._route_present

    def links(self) -> dict[str, bool]:
        """Each link's name → whether it is up (administratively and with a carrier)."""
        return {name: up for name, up in self._links.values()}

    async def run(self) -> None:
        """Subscribe, report the initial state, then report changes until cancelled.

        The watching runs on a loop of its own thread (whatever loop the caller runs, uvloop
        included); facts reach `on_fact` on the caller's loop, stamped with its clock. A failure
        to watch (no netlink here) is raised from this call."""
        main = asyncio.get_running_loop()
        self._main = main
        loop = asyncio.new_event_loop()
        watching = loop.create_task(self._watch())
        ended: asyncio.Future[None] = main.create_future()

        def settle(error: BaseException | None) -> None:
            if not ended.done():
                if error is None:
                    ended.set_result(None)
                else:
                    ended.set_exception(error)

        def thread_main() -> None:
            error: BaseException | None = None
            try:
                loop.run_until_complete(watching)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # handed to the caller, who decides
                error = exc
            finally:
                loop.close()
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed already
                main.call_soon_threadsafe(settle, error)

        thread = threading.Thread(target=thread_main, name="netmon", daemon=True)
        thread.start()
        try:
            await ended
        finally:
            with contextlib.suppress(RuntimeError):  # the thread's loop has ended already
                loop.call_soon_threadsafe(watching.cancel)
            await asyncio.to_thread(thread.join, THREAD_STOP_TIMEOUT_S)

    async def _watch(self) -> None:
        """The watching itself, on the monitor thread's loop."""
        # Subscribed before the state is read, so nothing that happens in between is missed.
        events = self._events = RtnlSocket(groups=GROUPS)
        try:
            # Inside the try: if this one cannot be made (out of file descriptors, ...), the
            # first is closed all the same.
            self._queries = RtnlSocket()
            await self._resync()
            self._caller_loop().call_soon_threadsafe(self.started.set)
            while True:
                try:
                    for message in await events.receive_batch():
                        self._on_message(message)
                    await self._check_default_route()
                except (OSError, ValueError) as exc:
                    # ENOBUFS and kin: events were lost, so the state is read whole again.
                    LOGGER.warning("netlink: %s; reading the network state again", exc)
                    await asyncio.sleep(RESYNC_DELAY_S)
                    await self._resync()
        finally:
            events.close()
            if self._queries is not None:
                self._queries.close()

    # --- inside ----------------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _caller_loop(self) -> asyncio.AbstractEventLoop:
        assert self._main is not None, "run() sets the caller's loop first"
        return self._main

    def _emit(self, fact: NetworkFact) -> None:
        self._caller_loop().call_soon_threadsafe(self._deliver, fact)

    def _deliver(self, fact: NetworkFact) -> None:
        """On the caller's loop: the fact, at the caller's time, to `on_fact`."""
        fact = dataclasses.replace(fact, at=self._caller_loop().time())
        LOGGER.debug("network fact: %s", fact)
        try:
            self._on_fact(fact)
        except Exception:  # a consumer's bug must not stop the watching
            LOGGER.exception("network fact handler failed on %s", fact)

    def _query_socket(self) -> RtnlSocket:
        assert self._queries is not None, "_watch() opens it first"
        return self._queries

    async def _resync(self) -> None:
        for message in await self._query_socket().dump_links():
            self._on_link(message)
        await self._check_default_route()

    def _on_message(self, message: Any) -> None:
        event = message.get("event")
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            self._on_link(message)
        elif event in ADDRESS_EVENTS and message["scope"] == RT_SCOPE_UNIVERSE:
            link = self._links.get(message["index"], ("?", False))[0]
            self._emit(AddressChanged(
                link=link, address=str(message.get("address") or message.get("local")),
                added=event == "RTM_NEWADDR", at=self._now()))

    def _on_link(self, message: Any) -> None:
        index = message["index"]
        name = message.get("ifname") or self._links.get(index, (f"#{index}", False))[0]
        up = message.get("event") != "RTM_DELLINK" and _link_is_up(message)
        known = self._links.get(index)
        if message.get("event") == "RTM_DELLINK":
            self._links.pop(index, None)
        else:
            self._links[index] = (name, up)
        if known is None and not up and message.get("event") != "RTM_DELLINK":
            self._emit(LinkWentDown(name=name, at=self._now()))
        elif known is not None and known[1] != up:
            self._emit((LinkCameUp if up else LinkWentDown)(name=name, at=self._now()))

    async def _check_default_route(self) -> None:
        present = False
        for family in self._families:
            for route in await self._query_socket().dump_routes(family):
                if (route.get("event") == "RTM_NEWROUTE" and route["type"] == RTN_UNICAST
                        and route["dst_len"] == 0 and route["table"] == RT_TABLE_MAIN):
                    present = True
        if present != self._route_present:
            self._route_present = present
            LOGGER.log(logging.INFO if present else logging.WARNING,
                       "default route %s", "present" if present else "lost")
            self._emit((DefaultRoutePresent if present else DefaultRouteLost)(at=self._now()))
