"""The Markdown of the drift section of docs/benchmarks.md, from bench_drift's result."""

from __future__ import annotations

import math


def _routes(value: float | None, after: int) -> str:
    return f"> {after}" if value is None else f"{value:.0f}"


def render_drift(result: dict) -> list[str]:
    traffic = result["traffic"]
    after = result["routes"] - result["shift_at"]
    alpha = result["alpha"]
    lines = [
        "## Drift alarm (`benchmarks/bench_drift.py`)",
        "",
        f"Simulated traffic from the ladder records: {result['model']} answers, accepted when "
        f"its {result['estimator']} confidence clears the conformal threshold "
        f"({result['threshold']:.3f}: alpha {alpha:g}, delta {result['fit_delta']:g}, fitted on "
        f"{result['fit_questions']} questions); routes draw from the other "
        f"{result['pool_questions']} with replacement. A share of accepted answers is "
        "spot-checked, and each check is an outcome for `DriftMonitor` (alpha "
        f"{alpha:g}, delta {result['drift_delta']:g}, margin {result['margin']:g}, horizon "
        f"{result['horizon']}: it alarms at {result['alarm_threshold']:.1f}, and alarms "
        f"eventually on any error above {result['detectable_error']:.3f}). Streams of "
        f"{result['routes']} routes, shifted ones changing at route {result['shift_at']}; "
        f"{result['replications']} seeded streams per row.",
        "",
        "| traffic | acceptance | error of accepted answers |",
        "|---|---|---|",
    ]
    described = {
        "unshifted": "unshifted",
        "question mix": f"question mix: only the {result['hard_questions']} questions "
        "Qwen2.5-0.5B gets wrong",
        "misleading passages": "misleading passages: Qwen2.5-0.5B's answers and confidences",
    }
    for name, figures in traffic.items():
        lines.append(
            f"| {described.get(name, name)} | {figures['acceptance']:.0%} | "
            f"{figures['accepted_error']:.1%} |"
        )
    lines += [
        "",
        "Routes from the shift to the first alarm (median, 90th percentile; "
        f"> {after}: more than the stream had left), the share of shifted streams that alarmed "
        "in it, and false alarms: on unshifted streams of the same length, or before the "
        "shift. `single window` is the comparison the sequential test replaces: alarm when "
        f"the error of the last {result['naive_window']} checked answers exceeds alpha.",
        "",
        "| spot-checked | scenario | checks per stream | test | median routes to alarm | "
        "p90 | alarmed | false alarms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["results"]:
        for test, key in (("CUSUM", "cusum"), ("single window", "single_window")):
            figures = row[key]
            if row["scenario"] == "unshifted":
                delays = ["—", "—", "—"]
                false = figures["false_alarm_rate"]
            else:
                delays = [
                    _routes(figures["median_routes_to_alarm"], after),
                    _routes(figures["p90_routes_to_alarm"], after),
                    f"{figures['detected']:.0%}",
                ]
                false = figures["false_alarm_rate_before_shift"]
            lines.append(
                f"| {row['spot_check']:.0%} | {row['scenario']} | "
                f"{row['outcomes_per_stream']:.0f} | {test} | {' | '.join(delays)} | "
                f"{false:.1%} |"
            )
    p0, p1 = alpha, alpha + result["margin"]
    shifted = {name: f for name, f in traffic.items() if name != "unshifted"}
    drifts = [
        f["accepted_error"] * math.log(p1 / p0)
        + (1 - f["accepted_error"]) * math.log((1 - p1) / (1 - p0))
        for f in shifted.values()
    ]
    errors = [f["accepted_error"] for f in shifted.values()]
    before = traffic["unshifted"]["accepted_error"]
    lines += [
        "",
        f"The shifts raise the accepted answers' error from {before:.0%} "
        f"to {min(errors):.0%}–{max(errors):.0%} against an alpha of {alpha:g}: a small excess, "
        f"which moves the statistic up by only {min(drifts):.3f}–{max(drifts):.3f} per checked "
        f"answer on average, so the alarm at {result['alarm_threshold']:.1f} takes hundreds of "
        "checked answers, and checking a quarter of the answers takes about four times as many "
        "routes. The single window alarms sooner only because it alarms on noise: it sets off "
        "on most unshifted streams too.",
        "",
    ]
    return lines
