"""An HTML report of an eval run, with PNG plots: reliability diagrams, risk-coverage, ROC.

matplotlib (the `[eval]` extra) draws the plots off-screen. Every string that came from a
dataset or a model is HTML-escaped.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from demur.calibration.metrics import reliability_bins, risk_coverage_curve
from demur.errors import MissingDependencyError
from demur.evaluation.runner import EvalResults

METRICS = ("auroc", "auprc", "aurc", "prr", "ece", "adaptive_ece", "brier")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("matplotlib", "eval", "The eval report's plots") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _columns(results: EvalResults, name: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in results.graded() if r["scores"].get(name, {}).get("confidence") is not None]
    confidence = np.array([r["scores"][name]["confidence"] for r in rows], dtype=float)
    correct = np.array([bool(r["correct"]) for r in rows])
    return confidence, correct


def _plots(results: EvalResults, names: list[str]) -> list[str]:
    plt = _pyplot()
    out = results.out_dir
    drawn = [n for n in names if len(_columns(results, n)[0]) >= 2]
    files = []

    columns = min(3, max(1, len(drawn)))
    rows = max(1, -(-len(drawn) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for ax in axes.flat[len(drawn) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, drawn, strict=False):
        bins = reliability_bins(*_columns(results, name), n_bins=10)
        used = bins.count > 0
        centers = (bins.lower + bins.upper) / 2
        ax.bar(centers[used], bins.accuracy[used], width=0.09, alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set(title=name, xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=90)
    plt.close(fig)
    files.append("reliability.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name in drawn:
        curve = risk_coverage_curve(*_columns(results, name))
        ax.plot(curve.coverage, curve.risk, label=name)
    ax.set(xlabel="coverage", ylabel="error among accepted", title="Risk-coverage", xlim=(0, 1))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "risk_coverage.png", dpi=90)
    plt.close(fig)
    files.append("risk_coverage.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name in drawn:
        confidence, correct = _columns(results, name)
        if correct.all() or not correct.any():
            continue
        fpr, tpr = _roc(confidence, correct)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=90)
    plt.close(fig)
    files.append("roc.png")
    return files


def _roc(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC points, one per distinct threshold (highest first)."""
    order = np.argsort(-confidence, kind="stable")
    c, y = confidence[order], correct[order]
    distinct = np.r_[np.flatnonzero(np.diff(c)), len(c) - 1]
    tps, fps = np.cumsum(y)[distinct], np.cumsum(~y)[distinct]
    return np.r_[0.0, fps / max(1, (~y).sum())], np.r_[0.0, tps / max(1, y.sum())]


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def write_report(results: EvalResults, summary: dict[str, Any]) -> Path:
    """report.html beside the results, with the plots as PNG files next to it."""
    plots = _plots(results, results.estimators)
    e = html.escape
    head = "".join(f"<th>{m}</th>" for m in METRICS)
    table = []
    for name, entry in summary["estimators"].items():
        for kind in ("raw", "calibrated"):
            metrics = entry.get(kind) or {}
            cells = "".join(f"<td>{_fmt(metrics.get(m))}</td>" for m in METRICS)
            table.append(f"<tr><td>{e(name)}</td><td>{kind}</td>{cells}</tr>")
    costs = "".join(
        f"<tr><td>{e(n)}</td><td>{_fmt(x.get('available'))}</td>"
        f"<td>{_fmt(x.get('model_calls_per_question'))}</td>"
        f"<td>{_fmt(x.get('seconds_per_question'))}</td>"
        f"<td>{e('; '.join(x.get('problems', [])))}</td></tr>"
        for n, x in summary["estimators"].items()
    )
    examples = "".join(
        f"<tr><td>{e(r['id'])}</td><td>{e(r['question'])}</td><td>{e(' | '.join(r['answers']))}"
        f"</td><td>{e(r['response'] or r['error'] or '')}</td><td>{_fmt(r['correct'])}</td></tr>"
        for r in results.rows[:50]
    )
    settings = e(", ".join(f"{k}={v}" for k, v in results.settings.items() if k != "needs"))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>demur eval report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;
margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}img{{max-width:100%}}
</style></head><body>
<h1>demur eval report</h1>
<p>{settings}</p>
<p>{summary["graded"]} graded rows of {summary["rows"]} ({summary["failed_rows"]} failed);
accuracy {_fmt(summary["accuracy"])}; {_fmt(summary["seconds_per_question"])} s per question.
Calibrated metrics are {summary["calibration"]["folds"]}-fold cross-fitted
({e(summary["calibration"]["method"])}).</p>
<h2>Metrics</h2>
<table><tr><th>estimator</th><th></th>{head}</tr>{"".join(table)}</table>
<h2>Cost and availability</h2>
<table><tr><th>estimator</th><th>scored rows</th><th>model calls / question</th>
<th>seconds / question</th><th>problems</th></tr>{costs}</table>
<h2>Plots</h2>
{"".join(f'<p><img src="{p}" alt="{p}"></p>' for p in plots)}
<h2>First rows</h2>
<table><tr><th>id</th><th>question</th><th>gold</th><th>answer</th><th>correct</th></tr>
{examples}</table>
</body></html>
"""
    path = results.out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
