"""`demur ensemble fit RESULTS` and `demur ensemble show FILE`: fit a deployable ensemble on an
eval run, save it, and read a saved one back."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _render

if TYPE_CHECKING:
    from rich.console import Console

    from demur.cli._options import Commands
    from demur.estimators.ensemble import Ensemble
    from demur.evaluation.ensemble import FittedRunEnsemble


def add_parser(commands: Commands) -> None:
    ensemble = commands.add_parser(
        "ensemble", help="fit an ensemble of estimators on eval results, or show a saved one"
    )
    actions = ensemble.add_subparsers(dest="action", required=True)
    fit = actions.add_parser("fit", help="fit, cross-check and save an ensemble")
    fit.add_argument("results", type=Path, help="a `demur eval` output folder (or results.jsonl)")
    fit.add_argument(
        "--estimators",
        help="the members, as `demur eval --estimators` built them "
        "(default: the run's estimators, as it recorded them)",
    )
    fit.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    fit.add_argument("--seed", type=int, default=0, help="shuffles the folds (default 0)")
    fit.add_argument("--C", type=float, help="inverse L2 strength (default: chosen by CV)")
    fit.add_argument(
        "--no-select",
        action="store_true",
        help="keep every member; never fall back to the best one alone",
    )
    fit.add_argument("--name", default="ensemble", help="the estimator's name in routes")
    fit.add_argument("--out", type=Path, default=Path("ensemble.json"))
    show = actions.add_parser("show", help="load a saved ensemble and describe it")
    show.add_argument("file", type=Path)
    ensemble.set_defaults(run=cmd_ensemble)


def cmd_ensemble(args: argparse.Namespace) -> int:
    from demur.estimators.ensemble import Ensemble

    console = _render.make_console()
    if args.action == "show":
        print_ensemble(console, Ensemble.load(args.file))
        return 0
    from demur.evaluation.ensemble import fit_run_ensemble, read_results, run_members

    results = read_results(args.results)
    fitted = fit_run_ensemble(
        results,
        run_members(results, args.estimators),
        folds=args.folds,
        seed=args.seed,
        C=args.C,
        select=not args.no_select,
        name=args.name,
    )
    fitted.ensemble.save(args.out)
    print_ensemble(console, fitted.ensemble)
    print_cross_fit(console, fitted)
    console.print(
        f"[dim]written to {args.out}; use it with `estimators: [{{name: ensemble, path: "
        f"{args.out}}}]` in a router config[/dim]"
    )
    return 0


def _options(options: dict[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items() if v is not None) or "—"


def print_ensemble(console: Console, ensemble: Ensemble) -> None:
    """Members with their options and weights, what fitting chose, and the training data."""
    from rich.table import Table

    from demur.estimators._ensemble_file import member_spec

    assert ensemble.weights is not None
    table = Table(title=f"ensemble '{ensemble.name}': intercept {ensemble.intercept:.3f}")
    for column in ("member", "kind", "options", "weight", "imputed"):
        table.add_column(column)
    for member, weight, imputed in zip(
        ensemble.members, ensemble.weights.tolist(), ensemble.imputation.tolist(), strict=True
    ):
        spec = member_spec(member)
        table.add_row(
            member.name, spec.kind or "—", _options(spec.options), f"{weight:.3f}", f"{imputed:.3f}"
        )
    console.print(table)
    selection = ensemble.selection
    if selection is not None:
        if selection.chosen == "member":
            console.print(f"fell back to {selection.member} alone (Platt-scaled)")
        else:
            console.print(f"combination of {', '.join(selection.kept)} with C={selection.C:g}")
        for name, reason in selection.dropped.items():
            console.print(f"  dropped {name}: {reason}")
        scored = ", ".join(
            f"{name} {m['auroc']:.3f}/{m['log_loss']:.3f}" for name, m in selection.inner_cv.items()
        )
        if scored:
            console.print(
                f"  inner {selection.folds}-fold CV, AUROC/log-loss: {scored}", soft_wrap=True
            )
    for name, reason in ensemble.unbuilt.items():
        console.print(f"[yellow]{name} is known by name only: {reason}[/yellow]")
    training, metadata = ensemble.training, ensemble.metadata
    if training is not None:
        source = f" from {metadata.data}" if metadata and metadata.data else ""
        console.print(
            f"fitted on {training.rows} rows{source} (sha256 {training.sha256[:16]}…)"
            + (f", model {metadata.model}" if metadata and metadata.model else "")
        )


def print_cross_fit(console: Console, fitted: FittedRunEnsemble) -> None:
    """The procedure's cross-fitted AUROC and ECE against each member's on the same rows."""
    import numpy as np

    from demur.calibration.metrics import auroc, ece

    if fitted.cross_fitted is None:
        console.print(f"[yellow]{fitted.problem}[/yellow]")
        return
    out, y = fitted.cross_fitted, fitted.correct
    scored = ~np.isnan(out.confidence)
    ensemble_auroc = auroc(out.confidence[scored], y[scored])
    training = fitted.ensemble.training
    columns = training.columns if training else out.members
    console.print(
        f"cross-fitted ({len(out.chosen)} folds, chosen per fold: {', '.join(out.chosen)}): "
        f"AUROC {ensemble_auroc:.3f}, ECE {ece(out.confidence[scored], y[scored]):.3f}",
        soft_wrap=True,
    )
    metrics = (fitted.ensemble.metadata.metrics if fitted.ensemble.metadata else {}) or {}
    members = ", ".join(
        f"{name} {metrics[name]['auroc']:.3f}"
        for name in columns
        if metrics.get(name, {}).get("auroc") is not None
    )
    if members:
        console.print(f"  members' own AUROC on the same rows: {members}", soft_wrap=True)
