"""`demur ask QUESTION`: route one question and show each step."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from demur.cli import _options, _render

if TYPE_CHECKING:
    from demur.cli._options import Commands


def add_parser(commands: Commands) -> None:
    ask = commands.add_parser("ask", help="answer one question and show each step")
    _options.add_router_options(ask)
    ask.add_argument("question")
    ask.add_argument("--context", action="append", help="a passage to answer from (repeatable)")
    ask.add_argument("--json", action="store_true", help="print the verdict as JSON")
    ask.set_defaults(run=cmd_ask)


def cmd_ask(args: argparse.Namespace) -> int:
    from demur.types import Query

    console = _render.make_console()
    config = _options.router_config(args)
    telemetry = _options.open_telemetry(args, config)
    try:
        query = Query.coerce(args.question)
        if args.context:
            query = Query(args.question, context=tuple(args.context))
        with _options.build_router(config, telemetry) as router:  # closed even if the route raises
            verdict = router.route(query)
    finally:
        telemetry.shutdown()
    if args.json:
        print(verdict.model_dump_json(indent=2))
        return 0
    _render.print_steps(console, verdict)
    console.print(_render.verdict_summary(verdict))
    destination = _options.Traces.resolve(args, config).destination
    console.print(f"[dim]trace {verdict.trace_id} → {destination}[/dim]")
    return 0
