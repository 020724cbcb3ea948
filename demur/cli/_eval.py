"""`demur eval DATA`: score estimators against gold answers, a model's or logged ones."""

from __future__ import annotations

import argparse
import asyncio
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _options, _progress, _render

if TYPE_CHECKING:
    from rich.console import Console

    from demur.cli._options import Commands
    from demur.config import RouterConfig
    from demur.evaluation.dataset import EvalDataset
    from demur.evaluation.runner import EvalResults
    from demur.protocols import Estimator, Model

# The most samples a sample-based estimator takes (its `samples` option's upper bound).
_MOST_SAMPLES = 100


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
        help="comma-separated, options after colons: agreement:similarity=rougeL:samples=5; "
        "name= runs one estimator twice: agreement:similarity=jaccard:name=agreement_j",
    )
    evaluate.add_argument("--grader", default="auto", help="auto, exact, contains or f1")
    evaluate.add_argument("--judge", help="grade with this model instead of --grader")
    evaluate.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    evaluate.add_argument("--adaptive", action="store_true", help="adaptive sampling")
    evaluate.add_argument(
        "--unanimity-level",
        type=float,
        help="with --adaptive: agreeing samples end the drawing only once that many would agree "
        "with chance <= this at an agreement rate of 0.5 (0.1: four samples)",
    )
    evaluate.add_argument(
        "--samples",
        type=int,
        help="samples per question for estimators whose spec sets no samples= "
        "(default: every logged sample; with --model, each estimator's own default)",
    )
    evaluate.add_argument("--calibration", default="isotonic", help="platt, isotonic, histogram")
    evaluate.add_argument(
        "--folds", type=int, help="folds for the cross-fitted calibrated metrics (default 2)"
    )
    evaluate.add_argument("--seed", type=int, help="seed of the fold split (default 0)")
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


def _check_counts(args: argparse.Namespace) -> dict[str, int]:
    """--limit, --samples, --folds and --seed checked; the summary's keyword arguments given."""
    from demur.errors import ConfigError

    for flag, value, least in (("limit", args.limit, 1), ("samples", args.samples, 1)):
        if value is not None and value < least:
            raise ConfigError(f"--{flag} must be at least {least}, got {value}")
    if args.folds is not None and args.folds < 2:
        raise ConfigError(
            f"--folds must be at least 2 (fit on some folds, score the held-out one), "
            f"got {args.folds}"
        )
    given = {"folds": args.folds, "seed": args.seed}
    return {key: value for key, value in given.items() if value is not None}


def _check_calibration(method: str) -> None:
    from demur.calibration.calibrators import CALIBRATORS
    from demur.errors import ConfigError, did_you_mean

    if method not in CALIBRATORS:
        raise ConfigError(
            f"unknown --calibration '{method}'.{did_you_mean(method, CALIBRATORS)} "
            f"Use one of: {', '.join(sorted(CALIBRATORS))}."
        )


def _estimators(
    args: argparse.Namespace, dataset: EvalDataset, console: Console
) -> tuple[list[Estimator], list[str]]:
    """The --estimators, built, and the other models they ask by name (a judge). Those that
    take samples and set no samples= get --samples, or every logged sample when scoring logged
    answers (up to the estimators' limit)."""
    from rich.markup import escape

    from demur.estimators.registry import check_unique_names, parse_spec_entries

    entries = parse_spec_entries(args.estimators)
    defaults: dict[str, int] = {}
    if args.samples is not None:
        defaults["samples"] = args.samples
    elif not args.model and dataset.most_samples:
        defaults["samples"] = min(dataset.most_samples, _MOST_SAMPLES)
        open_ended = [s for s in entries if s.accepts("samples") and "samples" not in s.options]
        if open_ended:
            fewest, most = min(len(i.samples) for i in dataset.items), dataset.most_samples
            logged = f"every row has {most}" if fewest == most else f"rows have {fewest} to {most}"
            limit = " (the most an estimator takes)" if most > _MOST_SAMPLES else ""
            names = escape(", ".join(s.text for s in open_ended))
            console.print(
                f"[dim]{names}: every logged sample, up to {defaults['samples']} per row{limit}; "
                f"{logged}. Cap with --samples N.[/dim]"
            )
    estimators = [entry.build(defaults) for entry in entries]
    check_unique_names(estimators)
    return estimators, sorted({n for e in entries for n in e.asked_models()} - {args.model})


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from demur.errors import ConfigError, DataError
    from demur.evaluation.dataset import load_dataset
    from demur.evaluation.report import write_report
    from demur.evaluation.runner import UnusedSamplesWarning, run_eval
    from demur.evaluation.summary import summarize_run, write_summary, write_tables
    from demur.router.sampling import Sampling

    console = _render.make_console()
    summary_options = _check_counts(args)
    _check_calibration(args.calibration)
    if args.unanimity_level is not None and not args.adaptive:
        raise ConfigError("--unanimity-level applies to adaptive sampling; add --adaptive")
    sampling = _options.settings(
        Sampling,
        "sampling options",
        temperature=args.temperature,
        adaptive=args.adaptive,
        unanimity_level=args.unanimity_level,
    )
    config = _options.router_config(args)
    dataset = load_dataset(args.data, limit=args.limit)
    for problem in dataset.problems:
        console.print(f"[yellow]skipped line {problem.line}: {escape(problem.message)}[/yellow]")
    note = dataset.unknown_fields_note()
    if note is not None:
        console.print(f"[yellow]{escape(note)}[/yellow]")
    if args.model and any(item.label is not None for item in dataset.items):
        console.print(
            "[yellow]the rows' labels grade their logged responses, not the answers of "
            f"{args.model}; they are not used[/yellow]"
        )
    estimators, asked_names = _estimators(args, dataset, console)
    asked = [_eval_model(name, config) for name in asked_names]
    model = _eval_model(args.model, config) if args.model else None
    judge = _eval_model(args.judge, config) if args.judge else None
    source = args.model or "logged answers"
    out = args.out or Path(".demur") / "eval" / f"{Path(args.data).stem}-{source.replace(' ', '-')}"
    progress = _progress.make_progress(console)
    scored = 0

    def row_done(row: dict[str, object]) -> None:
        nonlocal scored
        scored += 1
        progress.update(task, advance=1)

    async def evaluate() -> EvalResults:
        try:
            return await run_eval(
                dataset,
                out,
                model=model,
                estimators=estimators,
                asked=asked,
                grader=args.grader,
                judge=judge,
                sampling=sampling,
                resume=not args.no_resume,
                description={"dataset": str(args.data)},
                on_row=row_done,
            )
        finally:
            for held in (model, judge, *asked):
                if held is not None:
                    await held.aclose()

    with progress, warnings.catch_warnings():
        # Fewer samples than were logged is what --samples or a samples= asked for.
        warnings.simplefilter("ignore", UnusedSamplesWarning)
        task = progress.add_task(f"evaluating {source}", total=len(dataset.items), unit="rows")
        try:
            results = asyncio.run(evaluate())
        except KeyboardInterrupt:
            console.print(
                f"interrupted: the {scored} row(s) scored in this run are saved in {out}. "
                "Rerun the same command to resume from there (--no-resume starts over).",
                markup=False,
            )
            raise
    if results.resumed:
        console.print(f"resumed: {results.resumed} rows were already done in {out}")
    write_tables(results)
    if not results.graded():
        raise DataError(
            f"nothing to summarise: {results.why_none_graded()}; the rows are in {out}/results.json"
        )
    unscored = results.unscored()
    if len(unscored) == len(results.estimators):
        raise DataError(
            f"no estimator scored any of the {len(results.graded())} graded rows: "
            + "; ".join(f"{name}: {why}" for name, why in unscored.items())
        )
    for name, why in unscored.items():
        console.print(f"[yellow]{escape(name)} scored no graded row: {escape(why)}[/yellow]")
    summary = summarize_run(results, calibration=args.calibration, **summary_options)
    write_summary(results, summary)
    report = write_report(results, summary)
    _render.print_eval_summary(console, summary)
    console.print(f"[dim]results → {out}/results.json, results.csv; report → {report}[/dim]")
    return 0
