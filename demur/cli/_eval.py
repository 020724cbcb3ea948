"""`demur eval DATA`: score estimators against gold answers, a model's or logged ones."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _options, _render

if TYPE_CHECKING:
    from demur.cli._options import Commands
    from demur.config import RouterConfig
    from demur.evaluation.runner import EvalResults
    from demur.protocols import Model


def add_parser(commands: Commands) -> None:
    evaluate = commands.add_parser(
        "eval", help="score estimators against gold answers (a model's, or logged answers)"
    )
    evaluate.add_argument("data", type=Path, help="JSONL: question, answers[, context, response]")
    evaluate.add_argument("--config", type=Path, help="router config whose models --model names")
    evaluate.add_argument(
        "--model",
        help="a model of the config (weak, strong) or a built-in (smollm2-135m); "
        "omit to score the dataset's logged 'response's",
    )
    evaluate.add_argument(
        "--estimators",
        default="mean_logprob,min_prob,gnll,entropy",
        help="comma-separated, options after colons: agreement:similarity=rougeL:samples=5",
    )
    evaluate.add_argument("--grader", default="auto", help="auto, exact, contains or f1")
    evaluate.add_argument("--judge", help="grade with this model instead of --grader")
    evaluate.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    evaluate.add_argument("--adaptive", action="store_true", help="adaptive sampling")
    evaluate.add_argument("--calibration", default="isotonic", help="platt, isotonic, histogram")
    evaluate.add_argument("--limit", type=int, help="only the first N usable rows")
    evaluate.add_argument("--out", type=Path, help="output folder (default .demur/eval/...)")
    evaluate.add_argument("--no-resume", action="store_true", help="start over in --out")
    evaluate.set_defaults(run=cmd_eval, traces="none", trace_file=None)


def _eval_model(name: str, config: RouterConfig) -> Model:
    """A model of the config by name, or a built-in llama.cpp model."""
    from demur.adapters.models.catalog import BUILTIN_MODELS
    from demur.config import build_model
    from demur.errors import unknown_name

    if name in config.models:
        return build_model(name, config.models[name])
    if name in BUILTIN_MODELS:
        from demur.adapters.models.llama_cpp import LlamaCppModel

        return LlamaCppModel(name, builtin=name, max_tokens=32)
    raise unknown_name("model", name, [*config.models, *BUILTIN_MODELS])


def cmd_eval(args: argparse.Namespace) -> int:
    from demur.estimators import parse_estimators
    from demur.evaluation.dataset import load_dataset
    from demur.evaluation.report import write_report
    from demur.evaluation.runner import run_eval
    from demur.evaluation.summary import summarize_run, write_summary, write_tables
    from demur.router.sampling import Sampling

    console = _render.make_console()
    config = _options.router_config(args)
    dataset = load_dataset(args.data, limit=args.limit)
    for problem in dataset.problems:
        console.print(f"[yellow]skipped line {problem.line}: {problem.message}[/yellow]")
    estimators = parse_estimators(args.estimators)
    model = _eval_model(args.model, config) if args.model else None
    judge = _eval_model(args.judge, config) if args.judge else None
    source = args.model or "logged answers"
    out = args.out or Path(".demur") / "eval" / f"{Path(args.data).stem}-{source.replace(' ', '-')}"
    sampling = Sampling(temperature=args.temperature, adaptive=args.adaptive)
    progress = _render.make_progress(console)

    async def evaluate() -> EvalResults:
        try:
            return await run_eval(
                dataset,
                out,
                model=model,
                estimators=estimators,
                grader=args.grader,
                judge=judge,
                sampling=sampling,
                resume=not args.no_resume,
                description={"dataset": str(args.data)},
                on_row=lambda row: progress.update(task, advance=1),
            )
        finally:
            for held in (model, judge):
                if held is not None:
                    await held.aclose()

    with progress:
        task = progress.add_task(f"evaluating {source}", total=len(dataset.items))
        results = asyncio.run(evaluate())
    if results.resumed:
        console.print(f"resumed: {results.resumed} rows were already done in {out}")
    summary = summarize_run(results, calibration=args.calibration)
    write_tables(results)
    write_summary(results, summary)
    report = write_report(results, summary)
    _render.print_eval_summary(console, summary)
    console.print(f"[dim]results → {out}/results.json, results.csv; report → {report}[/dim]")
    return 0
