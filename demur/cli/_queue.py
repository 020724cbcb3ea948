"""`demur queue list|stats|export`: the human review queue from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _options

if TYPE_CHECKING:
    from demur.cli._options import Commands


def add_parser(commands: Commands) -> None:
    queue = commands.add_parser(
        "queue", help="the human review queue: list or count tickets, export human verdicts"
    )
    queue_actions = queue.add_subparsers(dest="action", required=True)
    export = queue_actions.add_parser(
        "export", help="write resolved tickets as labelled rows for `demur calibrate`"
    )
    listing = queue_actions.add_parser("list", help="list tickets (waiting ones first)")
    stats = queue_actions.add_parser("stats", help="count tickets by state; time to resolve")
    for sub in (export, listing, stats):
        _options.add_queue_options(sub)
    export.add_argument(
        "--out", type=Path, default=Path(".demur/queue-export"), help="output folder"
    )
    export.add_argument("--since", help="only tickets resolved since this ISO date or time")
    export.add_argument("--model", help="only this model's answers (a calibrator is per model)")
    export.add_argument(
        "--grader",
        default="auto",
        help="how answers are judged against a human's: auto, exact, contains, f1",
    )
    listing.add_argument(
        "--status", action="append", choices=["pending", "claimed", "resolved", "cancelled"]
    )
    listing.add_argument("--text", help="only tickets whose question or answer contains this")
    listing.add_argument("--order", default="queue", choices=["queue", "newest", "oldest"])
    listing.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    listing.add_argument("--json", action="store_true", help="one JSON ticket per line")
    stats.add_argument("--json", action="store_true", help="print the stats as JSON")
    queue.set_defaults(run=cmd_queue)


def cmd_queue(args: argparse.Namespace) -> int:
    queue = _options.open_queue(args)
    try:
        if args.action == "export":
            from demur.evaluation.labels import export_resolved

            report = export_resolved(
                queue,
                args.out,
                since=_options.parse_since(args.since),
                model=args.model,
                grader=args.grader,
            )
            print(
                f"{report.rows} rows from {report.tickets} resolved tickets "
                f"(estimators: {', '.join(report.estimators) or 'none'}) → {report.path}; "
                f"recalibrate with: demur calibrate {report.path} --out calibration.json"
            )
            return 0
        if args.action == "stats":
            stats = queue.stats()
            if args.json:
                print(stats.model_dump_json(indent=2))
                return 0
            counts = ", ".join(f"{n} {status}" for status, n in stats.counts.items())
            print(f"{stats.total} tickets: {counts}")
            if stats.expired_leases:
                print(f"{stats.expired_leases} claims expired (counted as pending)")
            if stats.overdue:
                print(f"{stats.overdue} open tickets are past their deadline")
            if stats.oldest_pending_age_s is not None:
                print(f"oldest pending ticket: {stats.oldest_pending_age_s:.0f}s old")
            if stats.mean_resolve_s is not None:
                print(f"mean time to resolve: {stats.mean_resolve_s:.1f}s")
            return 0
        tickets = queue.tickets(
            status=args.status or None, text=args.text, limit=args.limit, order=args.order
        )
        if args.json:
            for ticket in tickets:
                print(ticket.model_dump_json())
            return 0
        for ticket in tickets:
            question = " ".join(ticket.question.split())
            question = question if len(question) <= 60 else question[:59] + "…"
            print(
                f"{ticket.id}  {ticket.status:<9}  p{ticket.priority:<3}  "
                f"{ticket.created_at:%Y-%m-%d %H:%M}  {question}"
            )
        return 0
    finally:
        queue.close()
