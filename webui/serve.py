"""Serve the web UI with waitress (a production WSGI server: one process, a few threads, ~34 MB):
`linebox web`, or the process `linebox run --http` starts beside the daemon.

waitress's defaults suit a server behind a proxy in a data centre, not a box whose web port
may face the office network or the internet: with them, 100 connections that each send half a
request (slowloris) hold every place for two minutes, and `/login` stops answering. So every
limit below is chosen, with its reason, and two guards are added on each connection
(`GuardedChannel`): a request must arrive whole within a deadline however slowly it trickles in
(waitress only closes connections that are silent), and one address may hold only so many
connections at once.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import waitress
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from firmware.store.files import use_private_umask

from . import create_app

if TYPE_CHECKING:
    from .tls import TlsState

LOGGER = logging.getLogger("linebox.web")

THREADS = 4  # a setup UI for one office: a few people at a time
GUARD_LOG_INTERVAL_S = 10.0  # a flood of refused connections makes one log line this often


@dataclass(frozen=True, kw_only=True)
class WebLimits:
    """What one web UI process accepts from its clients."""

    # Connections open at once. Each takes a descriptor (up to three with a large body); 200
    # leaves room under the usual limit of 1024 while far more than an office's browsers need
    # (a browser opens up to 6 per site).
    connection_limit: int = 200
    # Connections one client address may hold at once: a slowloris from one address fills at
    # most this many places; an office behind one NAT address still has room for several
    # people. The trusted proxy's address is exempt (it carries everyone).
    connections_per_address: int = 24
    # A request's head (request line and headers) must be complete this long after its first
    # byte arrived, whether or not bytes keep trickling in.
    head_timeout_s: float = 15.0
    # Then its body must keep at least this average rate: 25 MB (the largest greeting upload)
    # gets ~7 minutes; a 2 KB form gets the head's deadline plus a fraction of a second.
    min_body_bytes_per_s: int = 64 * 1024
    # A connection with no request in progress and no bytes for this long is closed (waitress:
    # 120 s). The live monitor asks every few seconds, so an open page keeps its connection.
    channel_timeout_s: int = 30
    # How often idle connections and overdue requests are looked for (waitress: every 30 s).
    cleanup_interval_s: int = 2
    # Request heads larger than this are refused (431): our cookie and forms need a few KB
    # (waitress: 256 KB).
    max_request_header_bytes: int = 32 * 1024
    # Bodies larger than this are refused (413) before they are read: the largest is a greeting
    # upload (GREETING_MAX_CONTENT_LENGTH, 25 MB); Flask then holds every other view to 2 MB
    # (waitress: 1 GB).
    max_request_body_bytes: int = 26 * 1024 * 1024
    # A body larger than this is buffered in a temporary file, not in memory (waitress: 512 KB):
    # a few uploads at once must not take the box's RAM.
    inbuf_overflow_bytes: int = 256 * 1024
    # An answer larger than this waits in a temporary file for a slow reader (waitress: 1 MB),
    # and a view's output pauses beyond the high watermark (waitress: 16 MB).
    outbuf_overflow_bytes: int = 1024 * 1024
    outbuf_high_watermark_bytes: int = 4 * 1024 * 1024
    # Connections waiting in the kernel for their turn (waitress: 1024).
    backlog: int = 128

    def adjustments(self) -> dict[str, Any]:
        """The limits as waitress's own settings (`waitress.adjustments.Adjustments`)."""
        return {
            "connection_limit": self.connection_limit,
            "channel_timeout": self.channel_timeout_s,
            "cleanup_interval": self.cleanup_interval_s,
            "max_request_header_size": self.max_request_header_bytes,
            "max_request_body_size": self.max_request_body_bytes,
            "inbuf_overflow": self.inbuf_overflow_bytes,
            "outbuf_overflow": self.outbuf_overflow_bytes,
            "outbuf_high_watermark": self.outbuf_high_watermark_bytes,
            "backlog": self.backlog,
            # poll(), not select(): select() fails on descriptors above 1023.
            "asyncore_use_poll": True,
        }


DEFAULT_LIMITS = WebLimits()


class GuardedChannel(HTTPChannel):  # type: ignore[misc]
    """waitress's HTTP connection with the two guards waitress lacks: a deadline for each
    request to arrive whole, and a cap on connections per client address. waitress asks each
    connection `readable()` at least once a second (its loop's timeout), so that is where an
    overdue request is noticed; setting `will_close` makes waitress close the connection."""

    limits: ClassVar[WebLimits] = DEFAULT_LIMITS
    exempt_address: ClassVar[str | None] = None  # the trusted proxy
    _last_logged: ClassVar[dict[str, float]] = {}

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        super().__init__(server, sock, addr, adj, map=map)
        self._partial: Any = None
        self._partial_since = 0.0
        host = addr[0] if isinstance(addr, tuple) and addr else None
        if host is None or host == self.exempt_address:
            return
        held = sum(1 for channel in list(server.active_channels.values())
                   if isinstance(channel.addr, tuple) and channel.addr[:1] == (host,))
        if held > self.limits.connections_per_address:
            self._log_once("per-address", "web UI: %s holds %d connections (at most %d); "
                           "closing the newest", host, held,
                           self.limits.connections_per_address)
            self.will_close = True

    def received(self, data: bytes) -> bool:
        result = bool(super().received(data))
        if self.request is not None and self.request is not self._partial:
            self._partial = self.request
            self._partial_since = time.monotonic()
        return result

    def readable(self) -> bool:
        if self._overdue(time.monotonic()):
            self._log_once("deadline", "web UI: a request from %s did not arrive whole in "
                           "time; connection closed", self.addr[0] if self.addr else "?")
            self.will_close = True
            return False
        return bool(super().readable())

    def _overdue(self, now: float) -> bool:
        request = self.request
        if request is None or request is not self._partial or self.will_close:
            return False
        allowed = self.limits.head_timeout_s
        if request.headers_finished:
            allowed += request.content_length / self.limits.min_body_bytes_per_s
        return now - self._partial_since > allowed

    @classmethod
    def _log_once(cls, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - cls._last_logged.get(kind, -GUARD_LOG_INTERVAL_S) >= GUARD_LOG_INTERVAL_S:
            cls._last_logged[kind] = now
            LOGGER.warning(message, *args)


def make_server(app: Any, host: str, port: int, *, limits: WebLimits = DEFAULT_LIMITS,
                trusted_proxy: str | None = None, tls: TlsState | None = None,
                socket_map: dict[int, Any] | None = None, threads: int = THREADS) -> Any:
    """A waitress server for `app` on `host:port` (not yet running: call its `run()`).

    With `trusted_proxy` (an address), X-Forwarded-Proto and X-Forwarded-For from that address
    alone say whether the client used HTTPS and who it is (the session cookie's Secure flag
    and the login limits follow them); from anyone else they are removed. With `tls`, the
    server speaks HTTPS (webui/tls.py). Servers given one `socket_map` run in one loop."""
    from .tls import TlsChannel

    proxy: dict[str, Any] = {}
    if trusted_proxy:
        proxy = {"trusted_proxy": trusted_proxy, "trusted_proxy_count": 1,
                 "trusted_proxy_headers": {"x-forwarded-proto", "x-forwarded-for"}}
    if tls is not None:
        proxy["url_scheme"] = "https"  # request.is_secure: the session cookie is Secure
    channel = type("GuardedChannel", (TlsChannel if tls is not None else GuardedChannel,),
                   {"limits": limits, "exempt_address": trusted_proxy, "_last_logged": {},
                    "tls": tls})
    socket_map = {} if socket_map is None else socket_map
    earlier = set(socket_map)  # another server's, sharing the loop: its channels stay its own
    server = waitress.create_server(
        app, map=socket_map, host=host, port=port, threads=threads, ident="Linebox",
        clear_untrusted_proxy_headers=True, **limits.adjustments(), **proxy)
    # waitress makes each connection with its server's `channel_class`; ours adds the guards.
    for fd, dispatcher in list(socket_map.items()):
        if fd not in earlier and isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = channel
    return server


def serve(db_path: str, host: str, port: int, *, trusted_proxy: str | None = None,
          https: tuple[str, int] | None = None) -> None:
    """The web UI on `host:port`; with `https` (host, port), over HTTPS there, and
    `host:port` only redirects to it (webui/tls.py)."""
    if https is None:
        app = create_app({"DB": db_path})
        server = make_server(app, host, port, trusted_proxy=trusted_proxy)
        LOGGER.info("web UI on http://%s:%d/", host, port)
        server.run()
        return
    from .tls import TlsState, ensure_certificate, redirect_app, server_context, tls_directory

    directory = tls_directory(db_path)
    try:
        ensure_certificate(directory, (host, https[0]))
        state = TlsState(directory, server_context(directory))
    except (RuntimeError, OSError, ssl.SSLError, subprocess.SubprocessError) as error:
        # No openssl, a full disk, a damaged key: the box stays reachable over plain HTTP,
        # and says why, rather than have no web UI at all.
        LOGGER.error("web UI: no HTTPS (%s); serving plain HTTP on %s:%d", error, host, port)
        serve(db_path, host, port, trusted_proxy=trusted_proxy)
        return
    app = create_app({"DB": db_path, "TLS_STATE": state})
    socket_map: dict[int, Any] = {}
    server = make_server(app, https[0], https[1], trusted_proxy=trusted_proxy, tls=state,
                         socket_map=socket_map)
    make_server(redirect_app(https[1], app), host, port, socket_map=socket_map, threads=1)
    LOGGER.info("web UI on https://%s:%d/ (http://%s:%d/ redirects to it)", https[0],
                https[1], host, port)
    server.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webui.serve")
    parser.add_argument("--db", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--trusted-proxy", metavar="ADDRESS")
    parser.add_argument("--https-host", help="serve HTTPS here; --port then redirects to it")
    parser.add_argument("--https-port", type=int)
    args = parser.parse_args(argv)
    use_private_umask()  # the database and its WAL, if this process creates them
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(args.db, args.host, args.port, trusted_proxy=args.trusted_proxy,
              https=(args.https_host or args.host, args.https_port)
              if args.https_port is not None else None)
    except OSError as error:  # the port is taken, or not ours to bind
        print(f"linebox web: cannot listen on {args.host}:{args.port}: {error}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
