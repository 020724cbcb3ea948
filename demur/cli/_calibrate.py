"""`demur calibrate RESULTS`: fit a calibrator and a conformal threshold from eval results."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from demur.cli import _render

if TYPE_CHECKING:
    from demur.cli._options import Commands


def add_parser(commands: Commands) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="fit a calibrator and a conformal threshold from eval results"
    )
    calibrate.add_argument("results", type=Path, help="a `demur eval` output folder")
    calibrate.add_argument("--estimators", help="comma-separated (default: all in the run)")
    calibrate.add_argument("--combine", default="mean", help="mean, min, max or first")
    calibrate.add_argument("--method", default="isotonic", help="platt, isotonic, histogram")
    calibrate.add_argument("--alpha", type=float, default=0.1, help="error rate to allow")
    calibrate.add_argument("--delta", type=float, default=0.1, help="chance the bound fails")
    calibrate.add_argument(
        "--conformal-share", type=float, default=0.5, help="share of rows for the threshold"
    )
    calibrate.add_argument("--no-conformal", action="store_true", help="only fit a calibrator")
    calibrate.add_argument("--out", type=Path, default=Path("calibration.json"))
    calibrate.set_defaults(run=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from demur.calibration.bundle import fit_bundle
    from demur.errors import ConfigError
    from demur.evaluation.runner import RESULTS, SETTINGS

    results_dir = Path(args.results)
    results_file = results_dir / RESULTS if results_dir.is_dir() else results_dir
    if not results_file.exists():
        raise ConfigError(f"{results_file} does not exist; run `demur eval` first")
    rows = [json.loads(line) for line in results_file.read_text("utf-8").splitlines() if line]
    settings_file = results_file.parent / SETTINGS
    settings = json.loads(settings_file.read_text("utf-8")) if settings_file.exists() else {}
    estimators = [e for e in args.estimators.split(",") if e] if args.estimators else None
    estimators = estimators or settings.get("estimators") or []
    bundle, report = fit_bundle(
        rows,
        estimators,
        combine=args.combine,
        method=args.method,
        alpha=None if args.no_conformal else args.alpha,
        delta=args.delta,
        conformal_share=args.conformal_share,
        model=settings.get("model"),
        source=str(results_file),
    )
    bundle.save(args.out)
    console = _render.make_console()
    console.print(
        f"calibrator ({args.method}) fitted on {report['calibrator_rows']} rows for "
        f"{', '.join(estimators)} combined by {args.combine}; "
        f"ECE {bundle.calibrator.metadata.metrics['before']['ece']:.3f} → "  # type: ignore[union-attr]
        f"{bundle.calibrator.metadata.metrics['after']['ece']:.3f} on its own rows"  # type: ignore[union-attr]
    )
    if bundle.conformal is not None:
        c = bundle.conformal
        console.print(
            f"conformal threshold {c.threshold:.3f} from {report['conformal_rows']} held-out "
            f"rows: error among accepted <= {c.alpha:g} with probability >= {1 - c.delta:g}; "
            f"there it accepted {c.accepted}/{c.n} (coverage {c.coverage:.0%}) with "
            f"{c.errors} errors (bound {c.bound:.3f})"
        )
    if report["dropped_rows"]:
        console.print(f"[yellow]{report['dropped_rows']} rows had no score and were left out")
    console.print(f"written to {args.out}", markup=False, soft_wrap=True)
    console.print("to route with it, put this in a router config:")
    console.print(
        config_snippet(estimators, args.combine, args.out, conformal=bundle.conformal is not None),
        markup=False,
        soft_wrap=True,
    )
    return 0


def config_snippet(estimators: Sequence[str], combine: str, path: Path, *, conformal: bool) -> str:
    """The router config lines that load a calibration file, as YAML."""
    from demur.estimators.registry import ESTIMATORS

    lines = [
        f"estimators: [{', '.join(estimators)}]",
        f"combine: {combine}",
        f"calibration: {json.dumps(str(path))}",
    ]
    if conformal:
        lines.append("policy: {threshold: conformal}")
    unregistered = [name for name in estimators if name not in ESTIMATORS]
    if unregistered:
        lines.insert(
            1,
            f"# {', '.join(unregistered)}: scores' names; give each estimator as the eval built "
            "it, e.g. {name: agreement, similarity: rougeL}",
        )
    return "\n".join(f"  {line}" for line in lines)
