"""`demur predictor fit ROWS...` and `demur predictor eval FILE ROWS...`: fit a pre-generation
predictor on labelled rows and save it, or measure a saved one on rows, cross-fitted."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _render

if TYPE_CHECKING:
    from rich.console import Console

    from demur.cli._options import Commands
    from demur.pregen.base import Predictor
    from demur.pregen.evaluate import PredictorEvaluation
    from demur.pregen.rows import RoutingRow

ROWS_HELP = (
    "`demur eval` run folders (one per model), `demur queue export` folders, route logs kept "
    "with their text, or per-question records (JSONL: question, context, and per model "
    "{correct, accepted, seconds})"
)


def add_parser(commands: Commands) -> None:
    predictor = commands.add_parser(
        "predictor",
        help="fit or evaluate a pre-generation predictor (where a route should start)",
    )
    actions = predictor.add_subparsers(dest="action", required=True)
    fit = actions.add_parser("fit", help="fit a predictor on labelled rows and save it")
    fit.add_argument("rows", type=Path, nargs="+", help=ROWS_HELP)
    fit.add_argument("--learner", choices=("knn", "logistic"), default="knn")
    fit.add_argument("--embedder", default="minilm-l6", help="embedder name (default minilm-l6)")
    fit.add_argument("--k", type=int, default=25, help="knn: neighbours (default 25)")
    fit.add_argument("--prior", type=float, default=2.0, help="knn: smoothing rows (default 2)")
    fit.add_argument("--C", type=float, default=0.1, help="logistic: inverse L2 (default 0.1)")
    fit.add_argument(
        "--no-similarity",
        action="store_true",
        help="leave out question-passage similarity (saves embedding the passages)",
    )
    fit.add_argument("--min-rows", type=int, default=20, help="fewest rows to predict a model")
    fit.add_argument("--dataset", type=Path, help="the eval runs' dataset, for their passages")
    fit.add_argument("--out", type=Path, default=Path("predictor.json"))
    evaluate = actions.add_parser(
        "eval", help="cross-fitted figures of a saved predictor's learner on labelled rows"
    )
    evaluate.add_argument("file", type=Path, help="a file written by `demur predictor fit`")
    evaluate.add_argument("rows", type=Path, nargs="+", help=ROWS_HELP)
    evaluate.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5)")
    evaluate.add_argument("--seed", type=int, default=0, help="shuffles the folds (default 0)")
    evaluate.add_argument(
        "--ladder", help="models cheapest first, comma-separated (default: by mean seconds)"
    )
    evaluate.add_argument(
        "--min-success", type=float, default=0.5, help="start at a model this likely to succeed"
    )
    evaluate.add_argument("--dataset", type=Path, help="the eval runs' dataset, for passages")
    predictor.set_defaults(run=cmd_predictor)


def _rows(args: argparse.Namespace) -> list[RoutingRow]:
    from demur.evaluation.pregen_rows import load_routing_rows

    return load_routing_rows(args.rows, dataset=args.dataset)


def _new_predictor(args: argparse.Namespace) -> Predictor:
    from demur.pregen.knn import KnnPredictor
    from demur.pregen.logistic import LogisticPredictor

    common = {"similarity": not args.no_similarity, "min_rows": args.min_rows}
    if args.learner == "knn":
        return KnnPredictor(args.embedder, k=args.k, prior=args.prior, **common)
    return LogisticPredictor(args.embedder, C=args.C, **common)


def cmd_predictor(args: argparse.Namespace) -> int:
    from demur.pregen.base import Predictor

    console = _render.make_console()
    if args.action == "fit":
        rows = _rows(args)
        predictor = _new_predictor(args).fit(rows, data=", ".join(str(p) for p in args.rows))
        predictor.save(args.out)
        print_predictor(console, predictor)
        console.print(f"written to {args.out}", markup=False, soft_wrap=True)
        return 0
    predictor = Predictor.load(args.file)
    rows = _rows(args)
    from demur.pregen.evaluate import evaluate_predictor

    ladder = [m for m in args.ladder.split(",") if m] if args.ladder else None
    report = evaluate_predictor(
        predictor,
        rows,
        folds=args.folds,
        seed=args.seed,
        ladder=ladder,
        min_success=args.min_success,
    )
    print_evaluation(console, predictor, report)
    return 0


def print_predictor(console: Console, predictor: Predictor) -> None:
    """The learner, and per model: rows, success rate, mean seconds, predicted or not."""
    from rich.table import Table

    training = predictor.training
    assert training is not None
    console.print(f"{predictor.describe()}, fitted on {training.rows} questions", soft_wrap=True)
    table = Table()
    for column in ("model", "rows", "succeeded", "mean s", "predicted"):
        table.add_column(column)
    for model in predictor.models:
        rows, successes = training.per_model[model], training.successes[model]
        seconds = predictor.costs.get(model)
        table.add_row(
            model,
            str(rows),
            f"{successes / rows:.0%}" if rows else "—",
            f"{seconds:.2f}" if seconds is not None else "—",
            "yes" if model in predictor.predicted_models else "no: too few rows, or one label",
        )
    console.print(table)
    console.print(f"[dim]rows sha256 {training.sha256[:16]}…[/dim]")


def print_evaluation(console: Console, predictor: Predictor, report: PredictorEvaluation) -> None:
    """Per-model AUROC, the skip curve against random, and where the router would start."""
    from rich.table import Table

    console.print(
        f"{predictor.describe()}: {report.rows} questions, {report.folds}-fold cross-fitted"
        + (" (these are the rows it was fitted on)" if report.in_sample else ""),
        soft_wrap=True,
    )
    table = Table(title="P(success) per model: AUROC")
    for column in ("model", "rows", "succeeded", "cross-fitted", "saved predictor"):
        table.add_column(column)
    for figures in report.models:
        saved = _num(figures.auroc_saved) + (" (in-sample)" if report.in_sample else "")
        table.add_row(
            figures.model,
            str(figures.rows),
            f"{figures.success_rate:.0%}",
            _num(figures.auroc_cross_fitted),
            saved,
        )
    console.print(table)
    if report.curve:
        bottom, top = report.ladder[0], report.ladder[-1]
        console.print(
            f"{bottom} → {top}: skip {bottom} for the lowest P({bottom}), no check after",
            soft_wrap=True,
        )
        curve = Table()
        for column in (f"{top}-call share", "accuracy", "random routing"):
            curve.add_column(column)
        for point, random in zip(report.curve, report.random, strict=True):
            curve.add_row(f"{point.share:.0%}", f"{point.accuracy:.1%}", f"{random.accuracy:.1%}")
        console.print(curve)
    starts = ", ".join(f"{model} {share:.0%}" for model, share in report.starts.items())
    accuracy = (
        f"; accuracy of the starting model's answer {report.routed_accuracy:.1%}"
        if report.routed_accuracy is not None
        else ""
    )
    console.print(
        f"PreGenerationRouter at min_success {report.min_success:g} starts at: {starts}{accuracy}",
        soft_wrap=True,
    )


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
