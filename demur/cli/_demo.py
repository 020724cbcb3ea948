"""`demur demo`: route the bundled questions (or your own) and compare with one model alone."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _options, _render

if TYPE_CHECKING:
    from demur.cli._options import Commands
    from demur.demo.runner import DemoReport, DemoRow, Guarantee
    from demur.router.router import Router


def add_parser(commands: Commands) -> None:
    demo = commands.add_parser("demo", help="route the bundled questions through local models")
    _options.add_router_options(demo)
    demo.add_argument("--limit", type=int, help="route only the first N questions")
    demo.add_argument("--questions", type=Path, help="a JSONL file of your own questions")
    demo.add_argument("--json", help="also write the summary as JSON to this file")
    demo.set_defaults(run=cmd_demo)


def _demo_guarantee(router: Router) -> Guarantee | None:
    """The default thresholds' error guarantee, when the router runs with those thresholds."""
    from demur.demo.runner import default_guarantee
    from demur.policies.ladder import Ladder

    guarantee = default_guarantee()
    policy = router.policy
    if isinstance(policy, Ladder) and dict(policy.per_model) == dict(guarantee.thresholds):
        return guarantee
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    from demur.demo.runner import load_questions, run_demo

    console = _render.make_console()
    config = _options.router_config(args)
    questions = load_questions(args.questions, limit=args.limit)
    telemetry = _options.open_telemetry(args, config)
    try:
        router = _options.build_router(config, telemetry)
        console.print(
            f"Routing {len(questions)} questions, starting at {router.start} (models: "
            f"{', '.join(router.models)}; policy {router.policy!r})"
        )
        progress = _render.make_progress(console)
        with progress:
            task = progress.add_task("routing", total=len(questions))

            def advance(row: DemoRow) -> None:
                progress.update(task, advance=1, description=f"routing {row.question.id}")

            async def demo() -> DemoReport:
                try:
                    return await run_demo(
                        router, questions, on_row=advance, guarantee=_demo_guarantee(router)
                    )
                finally:
                    await router.aclose()

            report = asyncio.run(demo())
    finally:
        telemetry.shutdown()
    console.print(_render.demo_table(report))
    console.print(_render.demo_summary(report))
    console.print(f"[dim]traces → {_options.Traces.resolve(args, config).destination}[/dim]")
    if router.queue is not None and report.count("pending"):
        console.print(f"[dim]review tickets → {getattr(router.queue, 'path', 'the queue')}[/dim]")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        console.print(f"[dim]report → {args.json}[/dim]")
    return 0
