"""The `linebox` command line: the daemon, configuration backup/restore, and live status.

Subcommands keep the names the issues fix (`run`, `config import|export`, `status`); later work
adds more. Every subcommand takes `--db`, and finds a running daemon through the control socket
that lives beside that database.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gc
import getpass
import importlib
import json
import logging
import logging.handlers
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import date, tzinfo
from pathlib import Path
from typing import Any, TypeVar

from . import reports
from .display import terminal_json, terminal_text
from .media.ports import DEFAULT_FIRST_PORT, DEFAULT_LAST_PORT
from .media.recorder_store import recording_of
from .routing.model import AGENT_STATUSES
from .routing.rules import normalise_number
from .store import ConfigError, Store, StoreError, dump_yaml, load_yaml_file, seed_default
from .store.errors import DatabaseUnavailableError, RecordNotFoundError
from .store.files import log_path, secure_data_files, use_private_umask
from .store.recovery import add_box_notice, recover_if_broken
from .whatif import cli as whatif_cli

DEFAULT_DB = "var/linebox.db"
DEFAULT_SIP = "127.0.0.1:5060"
DEFAULT_HTTP = "127.0.0.1:8080"
GC_THRESHOLDS = (10_000, 1_000, 1_000_000)
LOG_FILE_BYTES = 1_000_000  # the log beside the database: small, rotated (flash storage)
LOG_FILE_BACKUPS = 3
WEB_STOP_TIMEOUT_S = 5.0
CONTROL_TIMEOUT_S = 5.0  # control_request's own default
# A modem takes its time: each part of an SMS up to 40 s (AT+CMGS), a USSD reply comes from
# the operator's server (the network gives up after 30 s or so).
SMS_SEND_TIMEOUT_S = 120.0
USSD_TIMEOUT_S = 60.0

HTTPS_HELP = ("serve the web UI over HTTPS here (a self-signed certificate is made beside the "
              "database at the first start; the admin may upload the office's own); --http "
              "then only redirects to it")
TRUSTED_PROXY_HELP = ("the address of a reverse proxy in front of the web UI (e.g. one "
                      "ending HTTPS): its X-Forwarded-Proto and X-Forwarded-For are believed, "
                      "nobody else's")

LOGGER = logging.getLogger("linebox")
_T = TypeVar("_T")
# Modules both the web UI and the daemon import beyond what this module imports itself: a forked
# web UI finds them imported (shared pages, not its own copy, and no time spent on them in its
# start-up) while the daemon's own modules wait until after the fork (_run).
# tests/test_startup.py checks that no firmware module both import is missing here.
SHARED_WITH_WEB = (
    "email.message", "email.parser", "email.utils", "http.client",
    "firmware.media.audio", "firmware.media.prompts", "firmware.store.outbox",
    "firmware.update_files",
)


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _port_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    if not (sep and first.isdigit() and last.isdigit()
            and 1024 <= int(first) < int(last) <= 65535 and int(last) - int(first) >= 3):
        raise argparse.ArgumentTypeError(
            f"expected FIRST-LAST, two ports from 1024 to 65535, got {text!r}")
    return int(first), int(last)


def _interval_s(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0.01 <= seconds <= 86400:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected seconds from 0.01 to 86400, got {text!r}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linebox", description="Linebox office SIP gateway")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway daemon")
    run.add_argument("--db", default=DEFAULT_DB, help="SQLite database (created if missing)")
    run.add_argument("--sip", default=DEFAULT_SIP, type=_hostport, help="SIP listen HOST:PORT")
    run.add_argument("--http", type=_hostport, metavar="HOST:PORT",
                     help="also serve the web UI here, in a process of its own that stops "
                          f"with the daemon (make run: {DEFAULT_HTTP})")
    run.add_argument("--https", type=_hostport, metavar="HOST:PORT", help=HTTPS_HELP)
    run.add_argument("--config", help="import this YAML configuration before starting")
    run.add_argument("--rtp-ports", default=f"{DEFAULT_FIRST_PORT}-{DEFAULT_LAST_PORT}",
                     type=_port_range, metavar="FIRST-LAST",
                     help="UDP ports for the box's own media: voicemail, prompts")
    run.add_argument("--trusted-proxy", metavar="ADDRESS", help=TRUSTED_PROXY_HELP)
    # No default here: the daemon's own (firmware/daemon.py DAILY_CHECK_INTERVAL_S), which
    # `linebox run` imports only after the web UI is forked (_run says why).
    run.add_argument("--housekeeping-interval-s", type=_interval_s, metavar="SECONDS",
                     help="how often the daily figures are checked for a new day and the "
                          "30-day conversion for rank: auto is re-read (default: once a "
                          "minute; tests run it more often)")

    web = sub.add_parser("web", help="serve the web UI alone (the daemon may run elsewhere)")
    web.add_argument("--db", default=DEFAULT_DB)
    web.add_argument("--http", default=DEFAULT_HTTP, type=_hostport, metavar="HOST:PORT")
    web.add_argument("--https", type=_hostport, metavar="HOST:PORT", help=HTTPS_HELP)
    web.add_argument("--trusted-proxy", metavar="ADDRESS", help=TRUSTED_PROXY_HELP)

    config = sub.add_parser("config", help="configuration backup and restore (YAML)")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    imp = config_sub.add_parser("import", help="replace the configuration with a YAML file")
    imp.add_argument("file")
    imp.add_argument("--db", default=DEFAULT_DB)
    exp = config_sub.add_parser("export", help="print the whole configuration as YAML")
    exp.add_argument("--db", default=DEFAULT_DB)

    crm = sub.add_parser("crm", help="the CRM's responsible manager per caller")
    crm_sub = crm.add_subparsers(dest="crm_command", required=True)
    crm_import = crm_sub.add_parser(
        "import", help="replace the phone → extension table with a CSV export (phone,extension)"
    )
    crm_import.add_argument("file")
    crm_import.add_argument("--db", default=DEFAULT_DB)

    agent = sub.add_parser("agent", help="set an agent's status (On line, Break, ...)")
    agent.add_argument("extension")
    agent.add_argument("what", choices=["status"])
    agent.add_argument("status", choices=list(AGENT_STATUSES))
    agent.add_argument("--reason", default="", help="shown with the status (e.g. lunch)")
    agent.add_argument("--db", default=DEFAULT_DB)

    status = sub.add_parser("status", help="registrations, trunks, calls and channels")
    status.add_argument("--db", default=DEFAULT_DB)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    report = sub.add_parser("report", help="call reports: by day, by hour, by manager, missed")
    report.add_argument("--from", dest="date_from", type=_report_date, metavar="DATE",
                        help="first day, YYYY-MM-DD (default: 6 days before --to)")
    report.add_argument("--to", dest="date_to", type=_report_date, metavar="DATE",
                        help="last day, included (default: today)")
    report.add_argument("--kind", choices=[*reports.KINDS, "all"],
                        help="which report (default: all; with --csv: daily)")
    report.add_argument("--csv", action="store_true", help="print one report as CSV")
    report.add_argument("--tz", type=_report_zone,
                        help="time zone of the days (default: the site's, from the config)")
    report.add_argument("--line", metavar="NAME",
                        help="only the calls of this line (trunks[].name: the provider, a GSM "
                             "or FXO line)")
    report.add_argument("--db", default=DEFAULT_DB)

    whatif_cli.add_parsers(sub, date_type=_report_date, zone_type=_report_zone,
                           default_db=DEFAULT_DB)

    call = sub.add_parser("call", help="find calls; mark target calls and sales")
    call_sub = call.add_subparsers(dest="call_command", required=True)
    mark = call_sub.add_parser("mark", help="mark a call as a target call and/or a sale")
    mark.add_argument("call_id")
    mark.add_argument("--target", action=argparse.BooleanOptionalAction,
                      help="a real customer enquiry (--no-target: not one; also clears --sale)")
    mark.add_argument("--sale", action=argparse.BooleanOptionalAction,
                      help="the call ended in a sale (implies --target)")
    mark.add_argument("--by", help="who marks it (default: your login name)")
    mark.add_argument("--db", default=DEFAULT_DB)
    saved = call_sub.add_parser("recording", help="write a call's recording to a file (G.711 "
                                                  "WAV: caller left, member right, or mono)")
    saved.add_argument("call_id")
    saved.add_argument("file", help="where to write it (- for standard output)")
    saved.add_argument("--db", default=DEFAULT_DB)
    listing = call_sub.add_parser("list", help="the latest calls with their ids, newest first")
    listing.add_argument("--missed", action="store_true", help="only missed calls")
    listing.add_argument("--line", metavar="NAME", help="only the calls of this line")
    listing.add_argument("--limit", type=int, default=reports.CALL_LIST_LIMIT)
    listing.add_argument("--tz", type=_report_zone,
                         help="show times in this zone (default: the site's, from the config)")
    listing.add_argument("--db", default=DEFAULT_DB)

    voicemail = sub.add_parser("voicemail", help="messages left in the mailboxes")
    vm_sub = voicemail.add_subparsers(dest="voicemail_command", required=True)
    vm_list = vm_sub.add_parser("list", help="messages, newest first")
    vm_list.add_argument("--mailbox", help="only this extension's or department's mailbox")
    vm_list.add_argument("--limit", type=int, default=reports.CALL_LIST_LIMIT)
    vm_list.add_argument("--tz", type=_report_zone,
                         help="show times in this zone (default: the site's, from the config)")
    vm_list.add_argument("--db", default=DEFAULT_DB)
    vm_save = vm_sub.add_parser("save", help="write a message to a WAV file")
    vm_save.add_argument("id", type=int)
    vm_save.add_argument("file", help="where to write it (- for standard output)")
    vm_save.add_argument("--heard", action="store_true", help="and mark it heard")
    vm_save.add_argument("--db", default=DEFAULT_DB)

    sms = sub.add_parser("sms", help="text messages of the GSM lines")
    sms_sub = sms.add_subparsers(dest="sms_command", required=True)
    sms_list = sms_sub.add_parser("list", help="received messages, newest first")
    sms_list.add_argument("--line", help="only this line's")
    sms_list.add_argument("--limit", type=int, default=reports.CALL_LIST_LIMIT)
    sms_list.add_argument("--json", action="store_true", help="machine-readable output")
    sms_list.add_argument("--tz", type=_report_zone,
                          help="show times in this zone (default: the site's, from the config)")
    sms_list.add_argument("--db", default=DEFAULT_DB)
    sms_send = sms_sub.add_parser("send", help="send a message through a GSM line's modem")
    sms_send.add_argument("--line", required=True, help="the GSM line to send it through")
    sms_send.add_argument("number", help="the recipient, e.g. +79161234567")
    sms_send.add_argument("text")
    sms_send.add_argument("--db", default=DEFAULT_DB)

    line = sub.add_parser("line", help="a line: its events; USSD (the balance) of a GSM line")
    line.add_argument("name", help="the line's name (trunks[].name)")
    line_sub = line.add_subparsers(dest="line_command", required=True)
    line_ussd = line_sub.add_parser("ussd", help='send a USSD code, e.g. "*100#" for the '
                                    "balance, and print the network's reply")
    line_ussd.add_argument("code")
    line_ussd.add_argument("--db", default=DEFAULT_DB)
    line_events = line_sub.add_parser("events", help="the line's state changes and the "
                                      "failover's switches to it and away from it, newest first")
    line_events.add_argument("--limit", type=int, default=reports.CALL_LIST_LIMIT)
    line_events.add_argument("--json", action="store_true", help="machine-readable output")
    line_events.add_argument("--tz", type=_report_zone,
                             help="show times in this zone (default: the site's, from the "
                                  "config)")
    line_events.add_argument("--db", default=DEFAULT_DB)

    hw = sub.add_parser("hw", help="the box's own hardware: LEDs")
    hw_sub = hw.add_subparsers(dest="hw_command", required=True)
    leds_check = hw_sub.add_parser("leds-test", help="light each LED of hardware.leds in turn")
    leds_check.add_argument("--gpio", choices=("auto", "mock"),
                            help="pins to use (default: hardware.gpio from the configuration)")
    leds_check.add_argument("--step-s", type=_interval_s, default=0.5,
                            help="how long each LED stays lit")
    leds_check.add_argument("--db", default=DEFAULT_DB)

    dev = sub.add_parser("dev", help="tools for developers")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    fake = dev_sub.add_parser("fake-modem", help="a fake modem on a pseudo-terminal: try a GSM "
                              "or FXO line without hardware")
    fake.add_argument("kind", choices=_fake_modem_kinds())
    fake.add_argument("--imei", help="the IMEI the fake reports (GSM)")
    fake.add_argument("--link", help="also reach the port through this symlink "
                      "(like /dev/serial/by-id/...)")
    return parser


def _fake_modem_kinds() -> list[str]:
    from hal.fake.registry import FAKE_MODEMS  # one line there per kind of fake

    return sorted(FAKE_MODEMS)


def _dev_fake_modem(args: argparse.Namespace) -> int:
    from hal.fake.console import run_fake_modem

    return run_fake_modem(args.kind, imei=args.imei, link=args.link, stdin=sys.stdin,
                          stdout=sys.stdout)


def main(argv: list[str] | None = None) -> int:
    # Before anything is created: the database, its WAL and the log hold every password, so
    # whatever this process creates is its user's alone (issue 9 item 3).
    use_private_umask()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "web":
            return _web(args)
        if args.command == "config":
            return _config_import(args) if args.config_command == "import" else _config_export(args)
        if args.command == "crm":
            return _crm_import(args)
        if args.command == "agent":
            return _agent(args)
        if args.command == "status":
            return _status(args)
        if args.command == "report":
            return _report(args)
        if args.command in ("whatif", "sizing"):
            return _whatif(args)
        if args.command == "call":
            if args.call_command == "recording":
                return _call_recording(args)
            return _call_mark(args) if args.call_command == "mark" else _call_list(args)
        if args.command == "voicemail":
            return (_voicemail_list(args) if args.voicemail_command == "list"
                    else _voicemail_save(args))
        if args.command == "sms":
            return _sms_list(args) if args.sms_command == "list" else _sms_send(args)
        if args.command == "line":
            return _line_ussd(args) if args.line_command == "ussd" else _line_events(args)
        if args.command == "hw":
            return _hw_leds_test(args)
        if args.command == "dev":
            return _dev_fake_modem(args)
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        # The configuration kept in the database no longer passes (a file stored by older
        # firmware with what is refused now, say): say where, and how to mend it.
        print(f"linebox: the stored configuration cannot be used: {exc}\n"
              f"linebox: import a corrected file with `linebox config import FILE`",
              file=sys.stderr)
        return 1
    return 2


def _import_file(store: Store, path: str) -> None:
    # Read with the bounds of an import (size, UTF-8): a bad file is a ConfigError, not a crash.
    store.replace_config(load_yaml_file(path))


def _run(args: argparse.Namespace) -> int:
    _log_to_file(args.db)
    secure_data_files(args.db)
    # A broken database is moved aside and a backup (or nothing) takes its place: the box
    # starts either way rather than crash-looping on it (issue 16). One locked by another
    # process, or that cannot be opened, is not broken: the start fails saying so.
    try:
        recovered = recover_if_broken(args.db)
    except DatabaseUnavailableError as exc:
        logging.getLogger("firmware.store.recovery").error("%s", exc)
        print(f"linebox: {exc}", file=sys.stderr)
        return 1
    store = Store.open(args.db)
    if recovered is not None:
        add_box_notice(store, recovered.notice, at=time.time())
    try:
        if args.config:
            try:
                _import_file(store, args.config)
            except (ConfigError, OSError) as exc:
                print(f"linebox: {args.config}: {exc}", file=sys.stderr)
                return 1
        password = seed_default(store)
        if password is not None:
            print("First start: created department 200 \"Отдел продаж\" with extension 101.")
            print(f"Extension 101 SIP password (shown once): {password}")
            sys.stdout.flush()
        _print_setup_code(store)
        host, port = args.sip
        # From the fork until the daemon's event loop takes the signals over, SIGTERM (init)
        # and SIGINT (Ctrl-C) are noted, not acted on at once: see _StartUpStop.
        stop = _StartUpStop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        web = (_start_web(args.db, args.http, args.trusted_proxy, args.https) if args.http
               else None)
        try:
            # The daemon's own modules (SIP, the core, calls, media, modems: most of the
            # firmware) are imported only now, after the web UI is forked: the web UI never uses
            # them, and it imports Flask and its pages on the other CPU meanwhile rather than
            # waiting for them (the box's boot to ready, images/README.md). What both use —
            # the store, the configuration, reports — is imported above and shared.
            from .daemon import run_daemon

            if stop.requested:  # during the imports: the daemon is not started at all
                return 0
            _tune_garbage_collector()
            interval = ({} if args.housekeeping_interval_s is None
                        else {"housekeeping_interval_s": args.housekeeping_interval_s})
            _event_loop_runner(run_daemon(
                store, sip_host=host, sip_port=port, db_path=args.db, rtp_ports=args.rtp_ports,
                ready=stop.started, **interval))
        finally:
            if web is not None:
                _stop_web(web)
    finally:
        store.close()
    return 0


class _StartUpStop:
    """SIGTERM or SIGINT while `linebox run` starts, after the web UI is forked: the stop is
    noted and carried out where it is safe, and the web UI is stopped with the daemon, as at
    any stop. Not the default actions: SIGTERM's would end this process alone, leaving the web
    UI holding its port against the next start (the daemon's imports take seconds on the box,
    and the web UI answers before they end); and an exception raised from a handler (Python's
    KeyboardInterrupt) can land anywhere, inside logging's fork handler too, which then never
    releases logging's lock (seen: the daemon ran on, every thread stuck at its next log line).
    Noted during the imports, the daemon does not start; during its start, it stops once
    started (run_daemon's `ready`); after that, its loop is asked to stop until the loop's own
    signal handlers take over."""

    def __init__(self) -> None:
        self.requested = False
        self._daemon: Any = None

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True
        if self._daemon is not None:
            self._daemon.loop.call_soon_threadsafe(self._daemon.request_stop)

    def started(self, daemon: Any) -> None:
        self._daemon = daemon
        if self.requested:
            daemon.request_stop()


class _LogFile(logging.handlers.RotatingFileHandler):
    """The log file beside the database, which a full data partition cannot write (issue 16):
    said once on stderr, then the lines go to stderr alone until the file takes them again —
    not a traceback for every line, as logging's default handleError prints."""

    failing = False
    _failed_now = False

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        super().emit(record)  # errors reach handleError
        if self.failing and not self._failed_now:
            self.failing = False
            sys.stderr.write(f"linebox: the log file {self.baseFilename} is written again\n")

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        self._failed_now = True
        if not self.failing:
            sys.stderr.write(f"linebox: the log file {self.baseFilename} cannot be written "
                             f"({error}); the log goes to stderr only meanwhile\n")
        self.failing = True


def _log_to_file(db: str) -> None:
    """The daemon's log also goes to a file beside the database; the web UI's System page
    shows its last lines."""
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    handler = _LogFile(
        log_path(db), maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8",
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def _print_setup_code(store: Store) -> None:
    """While no web UI administrator exists: the one-time code the first-run page asks for,
    so that only someone who sees this console (or can run `linebox status`) sets the box up."""
    code = store.setup_code()
    if code is not None:
        print(f"Web UI setup code (the first-run page asks for it): {code}")
        sys.stdout.flush()


def _start_web(db: str, http: tuple[str, int], trusted_proxy: str | None = None,
               https: tuple[str, int] | None = None) -> subprocess.Popen[bytes] | ForkedWeb:
    """The web UI in a process of its own (a slow page never delays SIP)."""
    host, port = http
    proxy = ["--trusted-proxy", trusted_proxy] if trusted_proxy else []
    arguments = ["--db", str(Path(db).resolve()), "--host", host, "--port", str(port), *proxy,
                 *_https_args(https)]
    web: subprocess.Popen[bytes] | ForkedWeb
    if _may_fork():
        web = _fork_web(arguments)
    else:
        web = subprocess.Popen(
            [sys.executable, "-m", "webui.serve", *arguments],
            # Its own process group: Ctrl-C in a terminal reaches the daemon, which then stops
            # the web UI in order, rather than both at once.
            start_new_session=True,
        )
    print(f"Web UI: https://{https[0]}:{https[1]}/" if https else f"Web UI: http://{host}:{port}/")
    sys.stdout.flush()
    # Where the daemon checks the web UI answers before it marks an updated system good.
    local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    os.environ["LINEBOX_WEB_URL"] = f"http://{f'[{local}]' if ':' in local else local}:{port}/"
    LOGGER.info("web UI process %d on %s:%d", web.pid, host, port)
    return web


def _may_fork() -> bool:
    """Fork the web UI from the daemon (rather than start a new interpreter) where that is
    safe: a POSIX system, no thread started yet (a fork copies only the calling thread), and
    not turned off with LINEBOX_WEB_SPAWN=1."""
    return (hasattr(os, "fork") and threading.active_count() == 1
            and os.environ.get("LINEBOX_WEB_SPAWN", "") != "1")


def _fork_web(arguments: list[str]) -> ForkedWeb:
    """The web UI as a fork of the daemon, before the daemon's event loop, sockets and threads
    exist. The two share the interpreter, the standard library and the firmware modules both
    import (the store, configuration, reports) page for page until either writes to them:
    a new interpreter for the web UI cost the box about 8 MB more of its 80 MB idle budget
    (images/README.md). Start-up objects are frozen out of the cyclic collector on both sides
    first (gc.freeze), so neither's collections write to the pages they share."""
    for name in SHARED_WITH_WEB:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    sys.stdout.flush()
    sys.stderr.flush()
    # SIGTERM and SIGINT wait across the fork: the child takes them only once its own
    # handlers are back to a new interpreter's, not the daemon's (_StartUpStop), which would
    # merely note them there.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        return ForkedWeb(pid)
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a new interpreter has
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        os.setsid()  # its own session, as start_new_session gives the spawned one
        # The daemon's log handlers (its rotating log file) are not the web UI's: it logs to
        # stderr, as `linebox web` does.
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        from webui.serve import main as serve_main

        code = serve_main(arguments)
    except BaseException:  # the child never returns into the daemon's code
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class ForkedWeb:
    """A forked web UI process, with the part of `subprocess.Popen` the daemon uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 0
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"web UI {self.pid}", timeout or 0.0)
            time.sleep(0.05)
        return code


def _stop_web(web: subprocess.Popen[bytes] | ForkedWeb) -> None:
    if web.poll() is None:
        web.send_signal(signal.SIGTERM)
        try:
            web.wait(WEB_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()
    LOGGER.info("web UI process stopped (exit %s)", web.returncode)


def _web(args: argparse.Namespace) -> int:
    from webui.serve import main as serve_main

    secure_data_files(args.db)
    store = Store.open(args.db)
    try:
        _print_setup_code(store)
    finally:
        store.close()
    host, port = args.http
    proxy = ["--trusted-proxy", args.trusted_proxy] if args.trusted_proxy else []
    return serve_main(["--db", args.db, "--host", host, "--port", str(port), *proxy,
                       *_https_args(args.https)])


def _https_args(https: tuple[str, int] | None) -> list[str]:
    return [] if https is None else ["--https-host", https[0], "--https-port", str(https[1])]


def _tune_garbage_collector() -> None:
    """Fewer, cheaper cyclic collections. The SIP core keeps tens of thousands of small objects
    alive for 32 s (transactions waiting out Timer D/J/K). With the default thresholds the
    collector walks them so often that it eats the CPU calls need, and an automatic full
    collection stalls the loop long enough (measured: 300 calls/s failing at 72 % CPU) to set
    off retransmissions. So: young collections stay automatic, older ones are rare, and the
    daemon runs the full collection itself when the box is quiet (daemon.py). Objects from
    start-up are frozen out of collection altogether. Reference counting frees everything that
    is not in a cycle at once, whatever these settings."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _event_loop_runner(coroutine: Any) -> None:
    # asyncio is the daemon's: imported here, after the web UI is forked (which never uses it).
    import asyncio

    try:
        import uvloop
    except ImportError:  # uvloop is an optional fast path (Linux wheels only)
        asyncio.run(coroutine)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coroutine)


def _config_import(args: argparse.Namespace) -> int:
    store = Store.open(args.db)
    try:
        _import_file(store, args.file)
    except ConfigError as exc:
        print(f"linebox: {args.file}: {exc}; nothing was changed", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"linebox: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"imported {args.file}")
    return 0


def _config_export(args: argparse.Namespace) -> int:
    store = Store.open(args.db)
    try:
        sys.stdout.write(dump_yaml(store.load_config()))
    except ConfigError as exc:
        print(f"linebox: the stored configuration cannot be exported: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _crm_import(args: argparse.Namespace) -> int:
    """phone,extension rows (a header row is skipped); every extension must exist. All or
    nothing: one bad row and the table stays as it was."""
    store = Store.open(args.db)
    try:
        extensions = {e.number for e in store.load_config().extensions}
        owners: dict[str, str] = {}
        with open(args.file, encoding="utf-8-sig", newline="") as stream:
            for line_number, row in enumerate(csv.reader(stream), start=1):
                if not row or (line_number == 1 and not any(c.isdigit() for c in row[0])):
                    continue
                if len(row) < 2:
                    print(f"linebox: {args.file}:{line_number}: expected phone,extension",
                          file=sys.stderr)
                    return 1
                phone, extension = normalise_number(row[0].strip()), row[1].strip()
                problem = (
                    f"bad phone {row[0]!r}" if not phone.isdigit()
                    else f"unknown extension {extension!r}" if extension not in extensions
                    else ""
                )
                if problem:
                    print(f"linebox: {args.file}:{line_number}: {problem}; nothing was changed",
                          file=sys.stderr)
                    return 1
                owners[phone] = extension
        store.replace_crm_owners(owners)
    except OSError as exc:
        print(f"linebox: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"imported {len(owners)} responsible managers from {args.file}")
    return 0


def _ask_daemon(db: str, request: dict[str, Any], *,
                timeout_s: float = CONTROL_TIMEOUT_S) -> dict[str, Any] | None:
    """One request over the control socket; None (after saying why) when it did not work."""
    import asyncio

    from .daemon import control_request  # the daemon's module: only this command needs it

    try:
        answer = asyncio.run(control_request(db, request, timeout_s=timeout_s))
    except (TimeoutError, OSError) as exc:
        print(f"linebox: no daemon is running on {db} ({exc})", file=sys.stderr)
        return None
    if not answer.get("ok"):
        print(f"linebox: {answer.get('error')}", file=sys.stderr)
        return None
    return answer


def _agent(args: argparse.Namespace) -> int:
    answer = _ask_daemon(args.db, {"command": "agent", "extension": args.extension,
                                   "status": args.status, "reason": args.reason,
                                   "source": "cli"})
    if answer is None:
        return 1
    print(f"{answer['extension']}: {answer['status']}")
    return 0


def _status(args: argparse.Namespace) -> int:
    setup_code = _pending_setup_code(args.db)
    answer = _ask_daemon(args.db, {"command": "status"})
    if answer is None:
        if setup_code is not None and not args.json:
            print(_setup_code_line(setup_code))
        return 1
    status = {**answer["status"], "setup_code": setup_code}
    if args.json:
        print(terminal_json(json.dumps(status, ensure_ascii=False, indent=2)))
        return 0
    print(format_status(status))
    return 0


def _hw_leds_test(args: argparse.Namespace) -> int:
    # Imported here: gpiozero is needed by this subcommand only.
    from firmware.store.config import Hardware
    from hal.leds import Leds, leds_test, pin_factory

    hardware = Hardware()
    if Path(args.db).is_file():
        with Store.open(args.db) as store:
            hardware = store.load_config().hardware
    if not hardware.leds:
        print("linebox: no LEDs configured (hardware.leds in the configuration)",
              file=sys.stderr)
        return 1
    factory = pin_factory(args.gpio or hardware.gpio)
    leds = Leds(hardware.leds, factory=factory)
    try:
        def report(name: str) -> None:
            state = "on" if leds.is_lit(name) else "NOT on"
            print(f"lit {name} (GPIO {hardware.leds[name]}): pin {state}", flush=True)

        leds_test(leds, step_s=args.step_s, on_lit=report)
    finally:
        leds.close()
        factory.close()
    return 0


def _pending_setup_code(db: str) -> str | None:
    """The web UI's first-run setup code while no administrator exists; None once one does,
    or when this user may not read the database (the code is for the box's owner only)."""
    if not Path(db).is_file():
        return None
    try:
        with Store.open(db) as store:
            return store.setup_code()
    except (sqlite3.Error, OSError, StoreError):
        return None


def _setup_code_line(code: str) -> str:
    return f"Web UI setup code (no administrator yet; the first-run page asks for it): {code}"


def format_status(status: dict[str, Any]) -> str:
    """The status as text for a terminal: every value from outside (caller numbers, phones'
    User-Agent and Contact, names) has its control characters written out as escapes."""
    lines = [f"Linebox on {status['sip']} (pid {status['pid']})", ""]
    if status.get("clock_synchronised") is False:
        # Said only when it matters: the Pi before its first NTP sync (docs/https.md).
        lines += ["Clock: not synchronised by NTP yet; calls recorded meanwhile are marked and "
                  "moved when it is", ""]
    if status.get("setup_code"):
        lines += [_setup_code_line(status["setup_code"]), ""]
    lines.append("Registrations:")
    for reg in status["registrations"] or []:
        lines.append(f"  {reg['extension']:>6}  {reg['contact']}  via {reg['source']}  "
                     f"expires in {reg['expires_in_s']} s  {reg['user_agent']}")
    if not status["registrations"]:
        lines.append("  (none)")
    lines.append("Trunks:")
    for trunk in status["trunks"] or []:
        extra = f" ({trunk['error']})" if trunk.get("error") else ""
        lines.append(f"  {trunk['name']}: {trunk['state']}{extra}")
    if not status["trunks"]:
        lines.append("  (none)")
    lines.append("Lines:")
    for line in status.get("lines") or []:
        lines.append(f"  {line['name']} ({line['kind']}): {line['state']}, {line['reason']}; "
                     f"{line['channels_in_use']} of {line['channels']} channels in use")
        if line["kind"] in ("gsm", "fxo"):
            signal = f"{line['signal_dbm']} dBm" if line.get("signal_dbm") is not None else "-"
            lines.append(f"      {line.get('registration', '-')}, {line.get('operator') or '-'},"
                         f" signal {signal}, SIM {line.get('sim', '-')}, IMEI "
                         f"{line.get('imei') or '-'}, port {line.get('port') or '-'}")
    if not status.get("lines"):
        lines.append("  (none)")
    internet = status.get("internet")
    if internet:
        since = datetime.datetime.fromtimestamp(internet["since"]).strftime("%Y-%m-%d %H:%M:%S")
        reason = f" ({internet['reason']})" if internet.get("reason") else ""
        lines.append(f"Internet: {internet['state']} since {since}{reason}; calls out via "
                     f"{status.get('outbound_line') or 'no line'}")
    if status.get("leds"):
        lines.append("LEDs: " + ", ".join(f"{name} {state}"
                                          for name, state in status["leds"].items()))
    lines.append("Agents:")
    for agent in status.get("agents", []):
        state = agent["status"] + (f" ({agent['reason']})" if agent["reason"] else "")
        extra = " on a call" if agent["on_call"] else (
            f" wrap-up {agent['wrap_up_s']} s" if agent["wrap_up_s"] else "")
        reg = "" if agent["registered"] else " not registered"
        lines.append(f"  {agent['extension']:>6} {agent['name']}: {state} for "
                     f"{agent['since_s']:.0f} s{extra}{reg}")
    lines.append(f"Calls in progress: {len(status['calls'])}")
    for call in status["calls"]:
        who = call["answered_by"] or ",".join(call["ringing"]) or "-"
        lines.append(f"  {call['caller']} → {call['dialed']}  {call['state']}  {who}  "
                     f"{call['duration_s']} s")
    lines.append("Channels in use:")
    for channel in status["channels"]:
        lines.append(f"  {channel['key']}: {channel['in_use']}/{channel['capacity']}")
    lines.append("Banned sources:")
    for ban in status["bans"]:
        lines.append(f"  {ban['source']} ({ban['requests']} requests)")
    if not status["bans"]:
        lines.append("  (none)")
    return "\n".join(terminal_text(line) for line in lines)


# --- reports and call marks (read the database file directly; fine beside a running daemon) ----


def _report_date(text: str) -> date:
    try:
        return reports.parse_day(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _report_zone(text: str) -> tzinfo:
    try:
        return reports.parse_zone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _open_existing(path: str) -> Store | None:
    """The store at `path`, or None (said on stderr) when there is no database there: a report
    must not create an empty one."""
    if not Path(path).is_file():
        print(f"linebox: no database at {path}", file=sys.stderr)
        return None
    return Store.open(path)


def _report(args: argparse.Namespace) -> int:
    kind = args.kind or ("daily" if args.csv else "all")
    if args.csv and kind == "all":
        print("linebox: --csv prints one report; choose it with --kind", file=sys.stderr)
        return 2
    store = _open_existing(args.db)
    if store is None:
        return 1
    try:
        if not _known_line(store, args.line):
            return 2
        tz = args.tz or reports.site_zone(store)
        start, end = reports.period(args.date_from, args.date_to, tz)
        if start > end:
            print(f"linebox: the period ends ({end}) before it starts ({start})",
                  file=sys.stderr)
            return 2
        if args.csv:
            rows = reports.REPORTS[kind](store, start, end, tz, line=args.line)
            sys.stdout.write(reports.format_csv(kind, rows))
        else:
            kinds = reports.KINDS if kind == "all" else (kind,)
            print(reports.text_report(store, kinds, start, end, tz, line=args.line))
    finally:
        store.close()
    return 0


def _whatif(args: argparse.Namespace) -> int:
    store = _open_existing(args.db)
    if store is None:
        return 1
    try:
        if args.command == "whatif":
            return whatif_cli.whatif_command(args, store)
        return whatif_cli.sizing_command(args, store)
    finally:
        store.close()


def _known_line(store: Store, line: str | None) -> bool:
    """Whether `line` (None: no filter) is a configured line or one some call used; if not,
    say so with the lines there are: a misspelt name must not pass for a line without calls."""
    if line is None:
        return True
    names = reports.line_names(store)
    if line in names:
        return True
    print(f"linebox: no line named {terminal_text(line)!r}; lines: "
          f"{', '.join(names) or '(none)'}", file=sys.stderr)
    return False


def _call_mark(args: argparse.Namespace) -> int:
    if args.target is None and args.sale is None:
        print("linebox: nothing to mark: give --target/--no-target and/or --sale/--no-sale",
              file=sys.stderr)
        return 2
    if args.target is False and args.sale is True:
        print("linebox: a sale is always a target call (--sale with --no-target)",
              file=sys.stderr)
        return 2
    by = args.by or _login_name()
    store = _open_existing(args.db)
    if store is None:
        return 1
    try:
        call = store.mark_call(args.call_id, target=args.target, sale=args.sale, by=by)
    except RecordNotFoundError:
        print(f"linebox: no call with id {args.call_id}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"{call['id']}: target call {'yes' if call['target_call'] else 'no'}, "
          f"sale {'yes' if call['sale'] else 'no'} (marked by {call['marked_by']})")
    return 0


def _call_recording(args: argparse.Namespace) -> int:
    store = _open_existing(args.db)
    if store is None:
        return 1
    try:
        found = recording_of(store, args.db, args.call_id)
    finally:
        store.close()
    if found is None:
        print(f"linebox: no recording of call {args.call_id} (not recorded, or deleted to stay "
              "under the recordings' quota)", file=sys.stderr)
        return 1
    audio = found[1].read_bytes()
    if args.file == "-":
        sys.stdout.buffer.write(audio)
        sys.stdout.flush()
    else:
        Path(args.file).write_bytes(audio)
    return 0


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment (a bare container)
        return "cli"


def _read_of_line(args: argparse.Namespace, line: str | None,
                  read: Callable[[Store], _T]) -> tuple[_T, tzinfo] | int:
    """`read(store)` and the time zone to show times in (--tz, else the site's), from the
    database at --db once `line` is found to be a line; else the exit status, said why."""
    store = _open_existing(args.db)
    if store is None:
        return 1
    try:
        if not _known_line(store, line):
            return 2
        return read(store), args.tz or reports.site_zone(store)
    finally:
        store.close()


def _call_list(args: argparse.Namespace) -> int:
    outcomes = reports.MISSED_OUTCOMES if args.missed else None
    found = _read_of_line(args, args.line, lambda store: store.recent_calls(
        args.limit, outcomes=outcomes, line=args.line))
    if isinstance(found, int):
        return found
    calls, tz = found
    print(reports.format_calls(calls, tz))
    return 0


def _voicemail_list(args: argparse.Namespace) -> int:
    store = _open_existing(args.db)
    if store is None:
        return 1
    try:
        messages = store.voicemails(args.mailbox, limit=args.limit)
        tz = args.tz or reports.site_zone(store)
    finally:
        store.close()
    if not messages:
        print("no messages")
        return 0
    print(f"{'id':>5}  {'left at':19}  {'mailbox':8}  {'caller':16}  {'length':>7}  new")
    for message in messages:
        left_at = datetime.datetime.fromtimestamp(message["left_at"], tz)
        caller = terminal_text(str(message["caller"]))  # whatever the caller's From said
        print(f"{message['id']:>5}  {left_at:%Y-%m-%d %H:%M:%S}  {message['mailbox']:8}  "
              f"{caller:16}  {message['duration_s']:>6.1f}s  "
              f"{'' if message['heard'] else '*'}")
    return 0


def _voicemail_save(args: argparse.Namespace) -> int:
    store = _open_existing(args.db)
    if store is None:
        return 1
    try:
        audio = store.voicemail_audio(args.id)
        if args.heard:
            store.mark_voicemail_heard(args.id)
    except RecordNotFoundError:
        print(f"linebox: no message with id {args.id}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.file == "-":
        sys.stdout.buffer.write(audio)
        sys.stdout.flush()
    else:
        Path(args.file).write_bytes(audio)
    return 0


def _sms_list(args: argparse.Namespace) -> int:
    store = _open_existing(args.db)
    if store is None:
        return 1
    try:
        messages = store.sms(args.line, direction="in", limit=args.limit)
        tz = args.tz or reports.site_zone(store)
    finally:
        store.close()
    listed = [{"line": message["line"], "sender": message["number"], "text": message["text"],
               "received_at": datetime.datetime.fromtimestamp(message["at"], tz).isoformat(),
               "complete": message["complete"]} for message in messages]
    if args.json:
        print(terminal_json(json.dumps(listed, ensure_ascii=False, indent=2)))
        return 0
    if not listed:
        print("no messages")
        return 0
    for message, row in zip(messages, listed, strict=True):
        received = datetime.datetime.fromtimestamp(message["at"], tz)
        # What the sender wrote goes to the terminal without its control characters.
        sender = terminal_text(str(row["sender"]))
        text = terminal_text(str(row["text"]))
        part = "" if row["complete"] else "  (parts missing)"
        print(f"{received:%Y-%m-%d %H:%M:%S}  {row['line']:10}  {sender:16}  {text}{part}")
    return 0


def _sms_send(args: argparse.Namespace) -> int:
    answer = _ask_daemon(args.db, {"command": "sms_send", "line": args.line,
                                   "number": args.number, "text": args.text},
                         timeout_s=SMS_SEND_TIMEOUT_S)
    if answer is None:
        return 1
    print(f"{answer['line']}: sent to {answer['number']} in {answer['parts']} part(s)")
    return 0


def _line_events(args: argparse.Namespace) -> int:
    found = _read_of_line(args, args.name,
                          lambda store: store.line_events(args.name, limit=args.limit))
    if isinstance(found, int):
        return found
    events, tz = found
    listed = [{**event, "at": datetime.datetime.fromtimestamp(event["at"], tz).isoformat()}
              for event in events]
    if args.json:
        print(terminal_json(json.dumps(listed, ensure_ascii=False, indent=2)))
        return 0
    if not listed:
        print(f"no events of line {terminal_text(args.name)} yet")
        return 0
    for event in events:
        at = datetime.datetime.fromtimestamp(event["at"], tz)
        print(terminal_text(f"{at:%Y-%m-%d %H:%M:%S}  {reports.line_event_text(event)}"))
    return 0


def _line_ussd(args: argparse.Namespace) -> int:
    answer = _ask_daemon(args.db, {"command": "ussd", "line": args.name, "code": args.code},
                         timeout_s=USSD_TIMEOUT_S)
    if answer is None:
        return 1
    for text in str(answer["reply"]).splitlines() or [""]:  # a menu is several lines
        print(terminal_text(text))
    return 0
