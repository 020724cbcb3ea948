"""The Markdown of the ensemble section of docs/benchmarks.md, from bench_ensemble's result."""

from __future__ import annotations


def render_ensemble(result: dict) -> list[str]:
    folds, shuffles = result["folds"], result["shuffles"]
    sources = sorted({entry["source"] for entry in result["sets"].values()})
    lines = [
        "## The ensemble against its best member (`benchmarks/bench_ensemble.py`)",
        "",
        "No model runs: each set is one model's graded answers with every member's confidence "
        f"per row, as the benchmarks stored them ({', '.join(f'`{s}`' for s in sources)}). "
        "The best member is picked with hindsight, on "
        "the rows everything is measured on. The ensemble is `demur.evaluation."
        f"cross_fit_ensemble`: {folds} stratified folds, each scored by an ensemble fitted on "
        "the others (pruning, C by inner cross-validation, fall-back to the best member when "
        "the combination's inner-CV log-loss is not lower). Intervals are bootstrap 95% over "
        f"rows ({result['bootstrap']} draws), the difference paired. ECE calibrated: after a "
        "cross-fitted isotonic calibrator.",
        "",
        "| set | rows | accuracy | best member | its AUROC | ensemble AUROC | difference | "
        "ECE | ECE calibrated | folds' choices |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in result["sets"].items():
        chosen = ", ".join(entry["chosen"])
        lines.append(
            f"| {name} | {entry['rows']} | {entry['accuracy']:.0%} | {entry['best_member']} | "
            f"{entry['best_member_auroc']:.3f} {_ci(entry['best_member_ci'])} | "
            f"{entry['ensemble_auroc']:.3f} {_ci(entry['ensemble_ci'])} | "
            f"{entry['difference']:+.3f} {_ci(entry['difference_ci'], signed=True)} | "
            f"{entry['ensemble_ece']:.3f} | {entry['calibrated_ece']:.3f} | {chosen} |"
        )
    lines += [
        "",
        f"Mean AUROC over {shuffles} fold shuffles, on the same folds: the ensemble; the best "
        "member alone, Platt-scaled per fold (what the ensemble falls back to); the previous "
        "fitting (every member, C=1, confidences clipped at 1e-9). A member picked with "
        "hindsight has an edge no fitted procedure has (whichever member a fold's fit prefers "
        "tends to do worse on the rows it did not see, since the totals are fixed), so the "
        "cross-fitted best member is the like-for-like comparison.",
        "",
        "| set | members (AUROC) | ensemble | best member, cross-fitted | previous fitting |",
        "|---|---|---|---|---|",
    ]
    for name, entry in result["sets"].items():
        members = ", ".join(f"{m} {a:.3f}" for m, a in entry["members"].items())
        mean = entry["mean_over_shuffles"]
        lines.append(
            f"| {name} | {members} | {mean['ensemble']:.3f} | {mean['best_member']:.3f} | "
            f"{mean['previous']:.3f} |"
        )
    for name, reason in result.get("skipped", {}).items():
        lines += ["", f"Skipped {name}: {reason}."]
    lines.append("")
    return lines


def _ci(bounds: list[float], signed: bool = False) -> str:
    low, high = bounds
    return f"[{low:+.3f}, {high:+.3f}]" if signed else f"[{low:.3f}, {high:.3f}]"
