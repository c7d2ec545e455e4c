"""`linebox whatif` and `linebox sizing`: the owner's two questions from the command line.

    linebox whatif --department 200 --from 2026-11-01 --to 2026-11-30 \
        --set strategy=weighted --set weight.101=60 --set weight.102=40 [--variant ...] [--json]
    linebox sizing [--from DATE --to DATE] [--blocking 0.01] [--json]

Each `--variant` starts a new variant whose settings are the `--set`s after it; `--set`s before
the first `--variant` make one variant. The department as configured is always replayed too,
first, as the baseline every variant is compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import reports
from ..store import Store

if TYPE_CHECKING:
    from .summary import VariantSummary

# The parsers are built for every `linebox` command, `run` included: the replay's modules are
# imported only when a what-if command runs, so the daemon does not carry them.
DEFAULT_DAYS = 28
MAX_SEEDS = 200
DEFAULT_SEEDS = 20  # summary.DEFAULT_SEEDS
DEFAULT_BLOCKING = 0.01  # sizing.DEFAULT_BLOCKING
DEFAULT_SERVICE_LEVEL = 0.8
DEFAULT_ANSWER_WITHIN_S = 20.0


def add_parsers(sub: Any, *, date_type: Any, zone_type: Any, default_db: str) -> None:
    whatif = sub.add_parser(
        "whatif", help="replay a period's calls under other department settings",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    whatif.add_argument("--department", required=True, metavar="NUMBER")
    _period_arguments(whatif, date_type, zone_type)
    whatif.add_argument("--set", dest="settings", action="append", default=[],
                        type=_set_item, metavar="KEY=VALUE",
                        help="a changed setting (strategy=weighted, ring_timeout_s=20, "
                             "wrap_up_s=15, queue.max_wait_s=120, weight.101=40, remove=103, "
                             "add=1, ...)")
    whatif.add_argument("--variant", dest="settings", action="append_const", const=None,
                        help="start another variant (its --set options follow)")
    whatif.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                        help=f"runs per variant (default {DEFAULT_SEEDS})")
    whatif.add_argument("--workers", type=int, default=default_workers(),
                        help="processes replaying at once (default: the cores, at most 4)")
    whatif.add_argument("--progress", metavar="FILE",
                        help="keep the share done (0..1) in this file (the web UI reads it)")
    whatif.add_argument("--json", action="store_true", help="machine-readable output")
    whatif.add_argument("--db", default=default_db)

    size = sub.add_parser("sizing", help="channels (Erlang B) and agents (Erlang C) the "
                                         "office's busy hour needs")
    _period_arguments(size, date_type, zone_type)
    size.add_argument("--blocking", type=float, default=DEFAULT_BLOCKING,
                      help="target share of callers who hear busy (default 0.01)")
    size.add_argument("--service-level", type=float, default=DEFAULT_SERVICE_LEVEL,
                      help="target share answered within --answer-within (default 0.8)")
    size.add_argument("--answer-within", type=float, default=DEFAULT_ANSWER_WITHIN_S,
                      help="seconds (default 20)")
    size.add_argument("--json", action="store_true", help="machine-readable output")
    size.add_argument("--db", default=default_db)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class ProgressFile:
    """The share of the runs done, written to a file at most twice a second (replaced whole,
    so a reader never sees half a number)."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.written_at = 0.0

    def __call__(self, fraction: float, *, force: bool = False) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if not force and now - self.written_at < 0.5:
            return
        self.written_at = now
        partial = self.path.with_name(self.path.name + ".part")
        partial.write_text(f"{fraction:.4f}\n", encoding="ascii")
        os.replace(partial, self.path)


def _period_arguments(parser: argparse.ArgumentParser, date_type: Any, zone_type: Any) -> None:
    parser.add_argument("--from", dest="date_from", type=date_type, metavar="DATE",
                        help=f"first day, YYYY-MM-DD (default: {DEFAULT_DAYS} days before --to)")
    parser.add_argument("--to", dest="date_to", type=date_type, metavar="DATE",
                        help="last day, included (default: yesterday)")
    parser.add_argument("--tz", type=zone_type,
                        help="time zone of the days (default: the site's)")


def _set_item(text: str) -> str:
    from .variants import VariantError, parse_settings

    try:
        parse_settings([text])
    except VariantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _period(args: argparse.Namespace, tz: tzinfo) -> tuple[float, float, date, date]:
    end = args.date_to
    if end is None:
        end = date.fromordinal(date.today().toordinal() - 1)
    start = args.date_from or date.fromordinal(end.toordinal() - DEFAULT_DAYS + 1)
    since = reports.local_midnight(start, tz)
    until = reports.local_midnight(date.fromordinal(end.toordinal() + 1), tz)
    return since, until, start, end


def variant_groups(items: list[str | None]) -> list[list[str]]:
    """The --set/--variant sequence → each variant's settings (empty groups dropped)."""
    groups: list[list[str]] = [[]]
    for item in items:
        if item is None:
            groups.append([])
        else:
            groups[-1].append(item)
    return [group for group in groups if group]


def whatif_command(args: argparse.Namespace, store: Store) -> int:
    from .history import HistoryError, load_history
    from .summary import recorded_figures, run_variants
    from .variants import VariantError, make_variant, parse_settings

    if not 1 <= args.seeds <= MAX_SEEDS:
        print(f"linebox: --seeds must be from 1 to {MAX_SEEDS}", file=sys.stderr)
        return 2
    if not 1 <= args.workers <= 64:
        print("linebox: --workers must be from 1 to 64", file=sys.stderr)
        return 2
    progress = ProgressFile(args.progress)
    progress(0.0, force=True)
    tz = args.tz or reports.site_zone(store)
    since, until, start, end = _period(args, tz)
    try:
        history = load_history(store, args.department, since, until, tz=tz)
        variants = [make_variant(history.config, args.department, [], name="as configured")]
        for group in variant_groups(args.settings):
            variants.append(make_variant(history.config, args.department,
                                         parse_settings(group)))
    except (HistoryError, VariantError) as exc:
        print(f"linebox: {exc}", file=sys.stderr)
        return 2
    if not history.calls:
        print(f"linebox: department {args.department} had no calls from {start} to {end}",
              file=sys.stderr)
        return 1
    started = time.monotonic()
    summaries = run_variants(history, variants, seeds=args.seeds, workers=args.workers,
                             progress=progress)
    progress(1.0, force=True)
    elapsed = time.monotonic() - started
    recorded = recorded_figures(history)
    baseline = summaries[0]
    if args.json:
        print(json.dumps({
            "department": args.department, "from": start.isoformat(), "to": end.isoformat(),
            "seeds": args.seeds, "seconds": round(elapsed, 2), "recorded": recorded,
            "variants": [s.as_dict(baseline) for s in summaries],
        }, ensure_ascii=False, indent=2))
    else:
        print(f"Department {args.department}, {start} to {end}: {recorded['offered']} calls; "
              f"{args.seeds} runs per variant ({elapsed:.1f} s)")
        print(format_variants(recorded, summaries))
    return 0


def _cell(spread: Any, percent: bool = False, digits: int = 1) -> str:
    if spread is None:
        return "-"
    if percent:
        return (f"{spread.mean * 100:.{digits}f}% "
                f"({spread.low * 100:.{digits}f} .. {spread.high * 100:.{digits}f})")
    return f"{spread.mean:.{digits}f} ({spread.low:.{digits}f} .. {spread.high:.{digits}f})"


def format_variants(recorded: dict[str, Any], summaries: list[VariantSummary]) -> str:
    """Variants side by side, each figure as mean (5th-95th percentile across runs)."""
    baseline = summaries[0]
    rows: list[tuple[str, list[str]]] = [
        ("", ["recorded", *[s.name for s in summaries]]),
        ("answered", [f"{recorded['answered'] * 100:.1f}%",
                      *[_cell(s.answered, True) for s in summaries]]),
        ("missed", [f"{recorded['missed'] * 100:.1f}%",
                    *[_cell(s.missed, True) for s in summaries]]),
        ("abandoned", [f"{recorded['abandoned'] * 100:.1f}%",
                       *[_cell(s.abandoned, True) for s in summaries]]),
        ("  in the queue", [f"{recorded['abandoned_in_queue'] * 100:.1f}%",
                            *[_cell(s.abandoned_in_queue, True) for s in summaries]]),
        ("mean wait, s", [f"{recorded['mean_wait_s']:.1f}",
                          *[_cell(s.mean_wait_s) for s in summaries]]),
        ("p90 wait, s", [f"{recorded['p90_wait_s']:.1f}",
                         *[_cell(s.p90_wait_s) for s in summaries]]),
        ("load spread (CV)", ["", *[_cell(s.load_spread, digits=2) for s in summaries]]),
        ("conversion", ["", *[_cell(s.conversion, True) for s in summaries]]),
        ("answered vs first", ["", "", *[
            _cell(s.answered_difference(baseline), True)
            + (" real" if s.answered_difference(baseline).excludes_zero else " may be luck")
            for s in summaries[1:]]]),
    ]
    members = sorted({m for s in summaries for m in s.member_calls()})
    for member in members:
        recorded_calls = recorded["members"].get(member, 0)
        rows.append((f"calls of {member}", [str(recorded_calls), *[
            _cell(s.member_calls().get(member), digits=0) for s in summaries]]))
    width = max(len(label) for label, _ in rows)
    columns = max(len(cells) for _, cells in rows)
    widths = [max(len(cells[i]) if i < len(cells) else 0 for _, cells in rows)
              for i in range(columns)]
    lines = []
    for label, cells in rows:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells)]
        lines.append(f"{label.ljust(width)}  " + "  ".join(padded).rstrip())
    return "\n".join(lines)


def sizing_command(args: argparse.Namespace, store: Store) -> int:
    from .sizing import sizing

    for name, value in (("--blocking", args.blocking), ("--service-level", args.service_level)):
        if not 0 < value < 1:
            print(f"linebox: {name} must be between 0 and 1", file=sys.stderr)
            return 2
    if args.answer_within <= 0:
        print("linebox: --answer-within must be positive", file=sys.stderr)
        return 2
    tz = args.tz or reports.site_zone(store)
    since, until, start, end = _period(args, tz)
    report = sizing(store, since, until, tz=tz, target_blocking=args.blocking,
                    target_service_level=args.service_level,
                    answer_within_s=args.answer_within)
    if args.json:
        print(json.dumps({"from": start.isoformat(), "to": end.isoformat(),
                          **report.as_dict()}, ensure_ascii=False, indent=2))
        return 0
    print(f"Busy hour from {start} to {end}; target blocking {args.blocking:.1%}")
    print(f"{'number':<16} {'calls':>6} {'busy hour':>9} {'erlangs':>8} {'channels':>8} "
          f"{'needed':>6} {'blocking':>8} {'last week':>9}")
    for n in report.numbers:
        hour = f"{n.busy_hour:02d}:00" if n.busy_hour is not None else "-"
        flag = "  over target" if n.last_week_blocking > args.blocking else ""
        print(f"{n.number:<16} {n.calls:>6} {hour:>9} {n.busy_hour_erlangs:>8.2f} "
              f"{n.channels_configured:>8} {n.channels_needed:>6} "
              f"{n.blocking_configured:>8.2%} {n.last_week_blocking:>9.2%}{flag}")
    if report.departments:
        print(f"\nAgents for {args.service_level:.0%} answered within {args.answer_within:g} s:")
        print(f"{'department':<12} {'busy hour':>9} {'calls/h':>8} {'handle s':>8} "
              f"{'erlangs':>8} {'members':>7} {'needed':>6} {'level now':>9}")
        for d in report.departments:
            hour = f"{d.busy_hour:02d}:00" if d.busy_hour is not None else "-"
            print(f"{d.department:<12} {hour:>9} {d.busy_hour_calls:>8.1f} {d.handle_s:>8.0f} "
                  f"{d.erlangs:>8.2f} {d.members:>7} {d.agents_needed:>6} "
                  f"{d.service_level_with_members:>9.1%}")
    return 0
