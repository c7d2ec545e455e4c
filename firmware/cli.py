"""The `linebox` command line: the daemon, configuration backup/restore, and live status.

Subcommands keep the names the issues fix (`run`, `config import|export`, `status`); later work
adds more. Every subcommand takes `--db`, and finds a running daemon through the control socket
that lives beside that database.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .daemon import control_request, run_daemon
from .store import ConfigError, Store, dump_yaml, load_yaml, seed_default

DEFAULT_DB = "var/linebox.db"
DEFAULT_SIP = "127.0.0.1:5060"
DEFAULT_HTTP = "127.0.0.1:8080"
GC_THRESHOLDS = (10_000, 1_000, 1_000_000)

LOGGER = logging.getLogger("linebox")


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linebox", description="Linebox office SIP gateway")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway daemon")
    run.add_argument("--db", default=DEFAULT_DB, help="SQLite database (created if missing)")
    run.add_argument("--sip", default=DEFAULT_SIP, type=_hostport, help="SIP listen HOST:PORT")
    run.add_argument("--http", default=DEFAULT_HTTP, type=_hostport,
                     help="web UI HOST:PORT (reserved: the web UI is not part of this build)")
    run.add_argument("--config", help="import this YAML configuration before starting")

    config = sub.add_parser("config", help="configuration backup and restore (YAML)")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    imp = config_sub.add_parser("import", help="replace the configuration with a YAML file")
    imp.add_argument("file")
    imp.add_argument("--db", default=DEFAULT_DB)
    exp = config_sub.add_parser("export", help="print the whole configuration as YAML")
    exp.add_argument("--db", default=DEFAULT_DB)

    status = sub.add_parser("status", help="registrations, trunks, calls and channels")
    status.add_argument("--db", default=DEFAULT_DB)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "config":
            return _config_import(args) if args.config_command == "import" else _config_export(args)
        if args.command == "status":
            return _status(args)
    except KeyboardInterrupt:
        return 130
    return 2


def _import_file(store: Store, path: str) -> None:
    text = Path(path).read_text(encoding="utf-8")
    store.replace_config(load_yaml(text))


def _run(args: argparse.Namespace) -> int:
    store = Store.open(args.db)
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
        host, port = args.sip
        http_host, http_port = args.http
        LOGGER.info("web UI address %s:%d is reserved; the web UI is not in this build",
                    http_host, http_port)
        _tune_garbage_collector()
        _event_loop_runner(run_daemon(store, sip_host=host, sip_port=port, db_path=args.db))
    finally:
        store.close()
    return 0


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
    finally:
        store.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        answer = asyncio.run(control_request(args.db, {"command": "status"}))
    except (TimeoutError, OSError) as exc:
        print(f"linebox: no daemon is running on {args.db} ({exc})", file=sys.stderr)
        return 1
    if not answer.get("ok"):
        print(f"linebox: {answer.get('error')}", file=sys.stderr)
        return 1
    status = answer["status"]
    if args.json:
        print(json.dumps(status, ensure_ascii=False, indent=2))
        return 0
    print(format_status(status))
    return 0


def format_status(status: dict[str, Any]) -> str:
    lines = [f"Linebox on {status['sip']} (pid {status['pid']})", "", "Registrations:"]
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
    return "\n".join(lines)
