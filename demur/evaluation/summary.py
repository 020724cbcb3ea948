"""From an eval run's rows to tables and metrics: results.json, results.csv, summary.json.

Raw metrics score each estimator's confidence as it is. Calibrated metrics are cross-fitted
(`demur.evaluation.crossfit`): the calibrator is fitted on the other folds and applied to the
held-out fold, so the figures say how the estimator would do once calibrated on data like this,
not how well a calibrator can memorise its own training set. The ensemble is cross-fitted the
same way, member selection included.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from typing import Any

import numpy as np

from demur.calibration.metrics import summarize
from demur.evaluation.crossfit import (
    cross_fit_calibrated,
    cross_fit_ensemble,
    member_table,
)
from demur.evaluation.runner import EvalResults

ENSEMBLE = "ensemble (cross-fitted)"


def write_tables(results: EvalResults) -> None:
    """results.json (every row) and results.csv (one line per row, one column per score)."""
    out = results.out_dir
    (out / "results.json").write_text(json.dumps(results.rows, indent=1) + "\n", "utf-8")
    names = results.estimators
    header = [
        "id",
        "question",
        "answers",
        "response",
        "correct",
        "error",
        "calls",
        "cost",
        "latency_s",
    ]
    for name in names:
        header += [f"{name}.confidence", f"{name}.value", f"{name}.status"]
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in results.rows:
            line = [
                row["id"],
                row["question"],
                " | ".join(row["answers"]),
                row["response"],
                row["correct"],
                row["error"],
                row["calls"],
                row["cost"],
                row["latency_s"],
            ]
            for name in names:
                score = row["scores"].get(name, {})
                line += [score.get("confidence"), score.get("value"), score.get("status")]
            writer.writerow(line)


def _metrics(confidence: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    summary = dict(summarize(confidence, correct))
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}


def summarize_run(
    results: EvalResults,
    *,
    calibration: str = "isotonic",
    folds: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy, and per estimator: availability, cost, raw and calibrated metrics, all
    cross-fitted with `folds` folds shuffled by `seed`; and the cross-fitted ensemble."""
    rows = results.graded()
    correct = np.array([bool(r["correct"]) for r in rows])
    needs = results.settings.get("needs", {})
    sampling_calls = np.array(
        [r["calls"] - 1 - sum(s.get("calls", 0) for s in r["scores"].values()) for r in rows]
    )
    summary: dict[str, Any] = {
        "rows": len(results.rows),
        "graded": len(rows),
        "failed_rows": sum(1 for r in results.rows if r["error"] is not None),
        "accuracy": float(correct.mean()) if rows else None,
        "seconds_per_question": float(np.mean([r["latency_s"] for r in rows])) if rows else None,
        "calibration": {"method": calibration, "folds": folds, "seed": seed},
        "estimators": {},
    }
    usable: list[str] = []
    for name in results.estimators:
        scores = [r["scores"].get(name, {}) for r in rows]
        statuses = Counter(s.get("status", "missing") for s in scores)
        mask = np.array([s.get("confidence") is not None for s in scores], dtype=bool)
        confidence = np.array([s.get("confidence") or 0.0 for s in scores], dtype=float)
        own_calls = np.array([s.get("calls", 0) for s in scores], dtype=float)
        uses_samples = bool(needs.get(name, {}).get("samples", 0))
        calls = own_calls + (sampling_calls if uses_samples else 0)
        entry: dict[str, Any] = {
            "available": int(mask.sum()),
            "statuses": dict(statuses),
            "seconds_per_question": float(np.mean([s.get("duration_s", 0.0) for s in scores]))
            if scores
            else None,
            "model_calls_per_question": float(np.mean(calls)) if rows else None,
            "raw": None,
            "calibrated": None,
            "problems": [],
        }
        details = Counter(s.get("detail") for s in scores if s.get("status") != "ok")
        entry["problems"] = [f"{count}× {detail}" for detail, count in details.most_common(3)]
        if mask.sum() >= 2:
            entry["raw"] = _metrics(confidence[mask], correct[mask])
            try:
                calibrated = cross_fit_calibrated(
                    confidence[mask], correct[mask], method=calibration, folds=folds, seed=seed
                )
                entry["calibrated"] = _metrics(calibrated, correct[mask])
            except ValueError as exc:  # too few examples, or one class in a fold
                entry["problems"].append(f"not calibrated: {exc}")
        if mask.all() and entry["raw"] is not None:
            usable.append(name)
        summary["estimators"][name] = entry
    if len(usable) >= 2 and len(rows) >= 20:
        try:
            table = member_table(rows, usable)
            ensemble = cross_fit_ensemble(table, correct, members=usable, folds=folds, seed=seed)
            calibrated = cross_fit_calibrated(
                ensemble.confidence, correct, method=calibration, folds=folds, seed=seed + 1
            )
            summary["estimators"][ENSEMBLE] = {
                "members": usable,
                "chosen": list(ensemble.chosen),
                "available": len(rows),
                "raw": _metrics(ensemble.confidence, correct),
                "calibrated": _metrics(calibrated, correct),
                "problems": [],
            }
        except ValueError as exc:
            summary["ensemble_problem"] = str(exc)
    return summary


def write_summary(results: EvalResults, summary: dict[str, Any]) -> None:
    (results.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
