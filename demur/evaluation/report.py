"""An HTML report of an eval run, with PNG plots: reliability diagrams, risk-coverage, ROC.

Reliability bins show how many answers each holds and a 95% Wilson interval on their accuracy,
so a bin of three answers is not read like one of three hundred. Curves differ in colour and
dash pattern, and one identical to another is named in the legend rather than hidden.

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


# Colours and dash patterns for curves: every estimator gets its own pair.
_COLOURS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9")
_DASHES = ("-", "--", "-.", ":")


def curve_styles(count: int) -> list[dict[str, Any]]:
    """One matplotlib style per curve: a distinct colour and dash pair, and lines that get
    thinner (and drawn higher) as they go, so a curve on top of another leaves it visible."""
    styles = []
    for i in range(count):
        colour = _COLOURS[i % len(_COLOURS)]
        dash = _DASHES[(i + i // len(_COLOURS)) % len(_DASHES)]
        width = max(1.0, 3.2 - 0.4 * i)
        styles.append({"color": colour, "linestyle": dash, "linewidth": width, "zorder": 2 + i})
    return styles


def draw_curves(ax: Any, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Every curve with its own style and a legend entry; one identical to an earlier curve
    says so in the legend ("= name") instead of vanishing under it."""
    drawn: list[tuple[str, np.ndarray, np.ndarray]] = []
    for (name, (x, y)), style in zip(curves.items(), curve_styles(len(curves)), strict=True):
        same = next(
            (other for other, ox, oy in drawn if np.array_equal(ox, x) and np.array_equal(oy, y)),
            None,
        )
        label = name if same is None else f"{name} (= {same})"
        ax.plot(x, y, label=label, **style)
        drawn.append((name, x, y))
    if drawn:
        ax.legend(fontsize=7, loc="best")


def draw_reliability(ax: Any, confidence: np.ndarray, correct: np.ndarray, name: str) -> None:
    """Accuracy per confidence bin (a bar and a dot, so an empty-handed bin still shows) with
    its 95% Wilson interval, and above it the number of answers in the bin."""
    bins = reliability_bins(confidence, correct, n_bins=10)
    used = bins.count > 0
    centres = ((bins.lower + bins.upper) / 2)[used]
    accuracy = bins.accuracy[used]
    low, high = (bound[used] for bound in bins.accuracy_interval())
    ax.bar(centres, accuracy, width=0.09, alpha=0.5, color="C0", label="accuracy")
    ax.errorbar(
        centres,
        accuracy,
        yerr=np.clip([accuracy - low, high - accuracy], 0.0, None),  # no rounding below 0
        fmt="o",
        markersize=3,
        color="C0",
        ecolor="black",
        elinewidth=1,
        capsize=2,
        label="95% Wilson interval",
    )
    for x, count in zip(centres, bins.count[used], strict=True):
        ax.text(x, 1.02, str(count), ha="center", va="bottom", fontsize=6)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set(
        title=f"{name} (n={len(confidence)})",
        xlabel="confidence",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(-0.03, 1.1),
    )


def _plots(results: EvalResults, names: list[str]) -> list[str]:
    plt = _pyplot()
    out = results.out_dir
    columns_of = {n: _columns(results, n) for n in names}
    drawn = [n for n in names if len(columns_of[n][0]) >= 2]
    files = []

    columns = min(3, max(1, len(drawn)))
    rows = max(1, -(-len(drawn) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for ax in axes.flat[len(drawn) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, drawn, strict=False):
        draw_reliability(ax, *columns_of[name], name)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        labels = [*labels[:-1], f"{labels[-1]}; numbers above: answers per bin"]
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.06 / rows, 1, 1))
    fig.savefig(out / "reliability.png", dpi=90)
    plt.close(fig)
    files.append("reliability.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    risk = {}
    for name in drawn:
        curve = risk_coverage_curve(*columns_of[name])
        risk[name] = (curve.coverage, curve.risk)
    draw_curves(ax, risk)
    ax.set(xlabel="coverage", ylabel="error among accepted", title="Risk-coverage", xlim=(0, 1))
    fig.tight_layout()
    fig.savefig(out / "risk_coverage.png", dpi=90)
    plt.close(fig)
    files.append("risk_coverage.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    roc = {}
    for name in drawn:
        confidence, correct = columns_of[name]
        if correct.any() and not correct.all():
            roc[name] = _roc(confidence, correct)
    draw_curves(ax, roc)
    if drawn and not roc:
        ax.text(0.5, 0.5, "ROC needs both right and wrong answers", ha="center", fontsize=9)
    ax.plot([0, 1], [0, 1], "k:", linewidth=1, zorder=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
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
