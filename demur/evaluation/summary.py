"""From an eval run's rows to tables and metrics: results.json, results.csv, summary.json.

Raw metrics score each estimator's confidence as it is. Calibrated metrics are cross-fitted:
the calibrator is fitted on the other folds and applied to the held-out fold, so the figures
say how the estimator would do once calibrated on data like this, not how well a calibrator
can memorise its own training set. The ensemble is cross-fitted the same way.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from typing import Any

import numpy as np

from demur.calibration.metrics import summarize
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


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::k] for i in range(k)]


def _cross_fit_calibrated(
    confidence: np.ndarray, correct: np.ndarray, method: str, folds: int, seed: int
) -> np.ndarray:
    from demur.calibration.calibrators import (
        HistogramBinningCalibrator,
        IsotonicCalibrator,
        PlattCalibrator,
    )

    kinds = {
        "platt": PlattCalibrator,
        "isotonic": IsotonicCalibrator,
        "histogram": HistogramBinningCalibrator,
    }
    calibrated = np.empty_like(confidence)
    for held_out in _folds(len(confidence), folds, seed):
        train = np.setdiff1d(np.arange(len(confidence)), held_out)
        calibrator = kinds[method]().fit(confidence[train], correct[train])
        calibrated[held_out] = calibrator.calibrate_many(confidence[held_out])
    return calibrated


def _cross_fit_ensemble(
    rows: list[dict[str, Any]], names: list[str], correct: np.ndarray, folds: int, seed: int
) -> np.ndarray:
    from demur.estimators.ensemble import Ensemble

    table = [{n: row["scores"].get(n, {}).get("confidence") for n in names} for row in rows]
    combined = np.empty(len(rows))
    for held_out in _folds(len(rows), folds, seed):
        train = np.setdiff1d(np.arange(len(rows)), held_out)
        ensemble = Ensemble.fit([table[i] for i in train], correct[train])
        combined[held_out] = [ensemble.combine(table[i]) for i in held_out]
    return combined


def _metrics(confidence: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    summary = dict(summarize(confidence, correct))
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}


def summarize_run(
    results: EvalResults, *, calibration: str = "isotonic", folds: int = 2, seed: int = 0
) -> dict[str, Any]:
    """Accuracy, and per estimator: availability, cost, raw and calibrated metrics."""
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
        "calibration": {"method": calibration, "folds": folds},
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
                calibrated = _cross_fit_calibrated(
                    confidence[mask], correct[mask], calibration, folds, seed
                )
                entry["calibrated"] = _metrics(calibrated, correct[mask])
            except ValueError as exc:  # too few examples, or one class in a fold
                entry["problems"].append(f"not calibrated: {exc}")
        if mask.all() and entry["raw"] is not None:
            usable.append(name)
        summary["estimators"][name] = entry
    if len(usable) >= 2 and len(rows) >= 20:
        try:
            ensemble = _cross_fit_ensemble(rows, usable, correct, folds, seed)
            calibrated = _cross_fit_calibrated(ensemble, correct, calibration, folds, seed + 1)
            summary["estimators"][ENSEMBLE] = {
                "members": usable,
                "available": len(rows),
                "raw": _metrics(ensemble, correct),
                "calibrated": _metrics(calibrated, correct),
                "problems": [],
            }
        except ValueError as exc:
            summary["ensemble_problem"] = str(exc)
    return summary


def write_summary(results: EvalResults, summary: dict[str, Any]) -> None:
    (results.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
