"""Serve the web UI with waitress (a production WSGI server: one process, a few threads, ~34 MB):
`linebox web`, or the process `linebox run --http` starts beside the daemon."""

from __future__ import annotations

import argparse
import logging
import sys

import waitress

from . import create_app

THREADS = 4  # a setup UI for one office: a few people at a time


def serve(db_path: str, host: str, port: int) -> None:
    app = create_app({"DB": db_path})
    logging.getLogger("linebox.web").info("web UI on http://%s:%d/", host, port)
    waitress.serve(app, host=host, port=port, threads=THREADS, ident="Linebox",
                   clear_untrusted_proxy_headers=True, _quiet=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webui.serve")
    parser.add_argument("--db", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(args.db, args.host, args.port)
    except OSError as error:  # the port is taken, or not ours to bind
        print(f"linebox web: cannot listen on {args.host}:{args.port}: {error}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
