"""The cross-fitted ensemble against its best member, on per-row confidences already stored.

No model runs. A set is one model's graded answers with every member's confidence per row:

- from `--records` (benchmarks/results/ladder-records.jsonl): per built-in model, the four
  logprob estimators (mean_logprob, min_prob, gnll, entropy) on HaluEval-QA questions asked
  with their passage;
- from each `--runs` folder: a `demur eval` run's results.jsonl, every estimator it scored;
- from `--logged` (benchmarks/results/logged-samples.jsonl, written by
  `benchmarks.logged_samples`): logged answers with 10 samples each, scored here without a
  model by the sample-based estimators and the logprob ones (`LOGGED_ESTIMATORS`).

Only members that scored every row take part; sets with fewer than `--min-rows` graded rows
are listed as skipped. Per set:

- each member's AUROC on all rows, and the best of them, picked with hindsight on the rows the
  ensemble is measured on;
- the ensemble cross-fitted by `demur.evaluation.cross_fit_ensemble` (`--folds` stratified
  folds, seed 0): its AUROC and the paired difference to the best member, with bootstrap 95%
  intervals over rows; its ECE, and its ECE after a cross-fitted isotonic calibrator; what each
  fold's fit chose;
- on the same folds, the best member Platt-scaled and cross-fitted (what the ensemble falls
  back to), and the previous fitting (every member, C=1, confidences clipped at 1e-9);
- those AUROCs averaged over `--shuffles` fold shuffles: one shuffle moves them by about 0.002.

    python -m benchmarks.bench_ensemble --json benchmarks/results/ensemble.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, report
from demur.calibration import auroc, ece
from demur.evaluation import cross_fit_calibrated, cross_fit_ensemble, member_table

RECORDS = ROOT / "benchmarks" / "results" / "ladder-records.jsonl"
LOGGED = ROOT / "benchmarks" / "results" / "logged-samples.jsonl"
LOGGED_ESTIMATORS = (
    "agreement:similarity=exact,agreement:similarity=rougeL,agreement:similarity=jaccard,"
    "num_sets:similarity=jaccard,eigv:similarity=jaccard,degree:similarity=jaccard,"
    "eccentricity:similarity=rougeL,mean_logprob,min_prob,gnll"
)
PREVIOUS = {"C": 1.0, "select": False, "clip": 1e-9}


def record_sets(path: Path) -> dict[str, tuple[list[dict], np.ndarray]]:
    """Per model in the ladder records: ({member: confidence} rows, labels)."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    models = sorted({k for r in records for k, v in r.items() if isinstance(v, dict)})
    sets = {}
    for model in models:
        answered = [r[model] for r in records if model in r]
        sets[model] = (
            [dict(a["scores"]) for a in answered],
            np.array([bool(a["correct"]) for a in answered]),
        )
    return sets


def run_set(folder: Path) -> tuple[list[dict], np.ndarray]:
    """A `demur eval` run's graded rows as ({member: confidence} rows, labels)."""
    lines = (folder / "results.jsonl").read_text().splitlines()
    rows = [r for r in map(json.loads, filter(str.strip, lines)) if r["correct"] is not None]
    names = sorted({name for r in rows for name in r["scores"]})
    return member_table(rows, names), np.array([bool(r["correct"]) for r in rows])


def bootstrap(
    ensemble: np.ndarray, member: np.ndarray, y: np.ndarray, draws: int, seed: int = 0
) -> dict[str, list[float]]:
    """95% percentile intervals of the ensemble's AUROC, the member's, and their difference,
    over rows drawn with replacement (the same draws for both)."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {"ensemble": [], "member": [], "difference": []}
    for _ in range(draws):
        pick = rng.integers(0, len(y), len(y))
        if y[pick].all() or not y[pick].any():
            continue
        a, b = auroc(ensemble[pick], y[pick]), auroc(member[pick], y[pick])
        values["ensemble"].append(a)
        values["member"].append(b)
        values["difference"].append(a - b)
    return {k: np.percentile(v, [2.5, 97.5]).tolist() for k, v in values.items()}


def measure_set(
    rows: list[dict], y: np.ndarray, folds: int, shuffles: int, draws: int
) -> dict[str, Any]:
    names = sorted({k for r in rows for k in r if all(x.get(k) is not None for x in rows)})
    columns = {n: np.array([r[n] for r in rows], dtype=float) for n in names}
    members = {n: auroc(c, y) for n, c in columns.items()}
    best = max(members, key=members.__getitem__)
    out = cross_fit_ensemble(rows, y, members=names, folds=folds, seed=0)
    calibrated = cross_fit_calibrated(out.confidence, y, folds=folds, seed=1)
    intervals = bootstrap(out.confidence, columns[best], y, draws)
    shuffled: dict[str, list[float]] = {"ensemble": [], "best_member": [], "previous": []}
    for seed in range(shuffles):
        runs = {
            "ensemble": cross_fit_ensemble(rows, y, members=names, folds=folds, seed=seed),
            "best_member": cross_fit_ensemble(rows, y, members=[best], folds=folds, seed=seed),
            "previous": cross_fit_ensemble(
                rows, y, members=names, folds=folds, seed=seed, **PREVIOUS
            ),
        }
        for key, run in runs.items():
            shuffled[key].append(auroc(run.confidence, y))
    return {
        "rows": len(y),
        "accuracy": float(y.mean()),
        "members": members,
        "best_member": best,
        "best_member_auroc": members[best],
        "best_member_ci": intervals["member"],
        "ensemble_auroc": auroc(out.confidence, y),
        "ensemble_ci": intervals["ensemble"],
        "difference": auroc(out.confidence, y) - members[best],
        "difference_ci": intervals["difference"],
        "ensemble_ece": ece(out.confidence, y),
        "calibrated_ece": ece(calibrated, y),
        "chosen": list(out.chosen),
        "best_member_cross_fitted_auroc": shuffled["best_member"][0],
        "previous_auroc": shuffled["previous"][0],
        "mean_over_shuffles": {key: float(np.mean(v)) for key, v in shuffled.items()},
    }


def logged_set(path: Path, out: Path) -> tuple[list[dict], np.ndarray]:
    """Score the logged answers (no model) into `out`, then read them like a `--runs` folder."""
    import asyncio

    from demur.estimators import parse_estimators
    from demur.evaluation import load_dataset, run_eval

    dataset = load_dataset(path)
    estimators = parse_estimators(LOGGED_ESTIMATORS, defaults={"samples": dataset.most_samples})
    asyncio.run(run_eval(dataset, out, estimators=estimators, resume=False))
    return run_set(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=Path, default=RECORDS)
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="demur eval folders")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--shuffles", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--logged", type=Path, default=LOGGED, help="logged samples (JSONL)")
    parser.add_argument("--min-rows", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args()
    sets = record_sets(args.records) if args.records.exists() else {}
    sources = {name: str(args.records.relative_to(ROOT)) for name in sets}
    for folder in args.runs:
        sets[folder.name] = run_set(folder)
        sources[folder.name] = str(folder)
    if args.logged.exists():
        import tempfile

        name = "qwen2.5-0.5b, logged samples"
        with tempfile.TemporaryDirectory() as scratch:
            sets[name] = logged_set(args.logged, Path(scratch) / "run")
        sources[name] = str(args.logged.relative_to(ROOT))
    measured, skipped = {}, {}
    for name, (rows, y) in sets.items():
        if len(y) < args.min_rows:
            skipped[name] = f"{len(y)} graded rows, fewer than {args.min_rows}"
        elif y.all() or not y.any():
            skipped[name] = "every answer is of one kind"
        else:
            print(f"== {name}: {len(y)} rows", flush=True)
            measured[name] = {
                "source": sources[name],
                **measure_set(rows, y, args.folds, args.shuffles, args.bootstrap),
            }
    result = {
        "folds": args.folds,
        "shuffles": args.shuffles,
        "bootstrap": args.bootstrap,
        "sets": measured,
        "skipped": skipped,
    }
    report(result, args.json)


if __name__ == "__main__":
    main()
