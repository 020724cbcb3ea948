"""Drift: how many routes after a shift until DriftMonitor alarms, and how often it alarms on
traffic that did not shift.

Traffic is simulated from the ladder records (1,000 HaluEval-QA questions, each model's
greedy answer, whether it is right, and its mean-logprob confidence). Qwen2.5-1.5B answers;
its conformal threshold (alpha 0.15, delta 0.1, as the default config) is fitted on a random
half of the questions, and routes draw questions from the other half, with replacement.
Answers above the threshold are accepted; a share of them is spot-checked, and each check is
an outcome for the monitor (alpha 0.15, delta 0.05). Each stream has `--routes` routes; the
shifted streams change halfway:

- question mix: from the shift on, questions come only from those Qwen2.5-0.5B gets wrong
  (harder questions: the 1.5B model's accepted answers are wrong more often);
- misleading passages: from the shift on, the answer and its confidence are Qwen2.5-0.5B's,
  as if the passages now led the model astray.

Each scenario is replicated with `--replications` seeds. Reported: the median (and 90th
percentile) routes from the shift to the first alarm, the share of shifted streams that
alarmed before the end, and the false-alarm rate (any alarm on an unshifted stream of the
same length, or before the shift). For contrast, a single-window check (alarm when the error
of the last 100 checked answers exceeds alpha) on the same streams.

    python -m benchmarks.bench_drift [--records benchmarks/results/ladder-records.jsonl]
        [--routes 12000] [--replications 300] [--json benchmarks/results/drift.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.common import report
from demur.calibration import ConformalThreshold
from demur.drift import DriftMonitor

WEAK, STRONG = "qwen2.5-0.5b", "qwen2.5-1.5b"
ESTIMATOR = "mean_logprob"
ALPHA, FIT_DELTA, DRIFT_DELTA = 0.15, 0.1, 0.05
NAIVE_WINDOW = 100
SPOT_CHECKS = (1.0, 0.25)
SCENARIOS = ("unshifted", "question mix", "misleading passages")

Array = npt.NDArray[Any]


def load(path: Path) -> dict[str, Array]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [r for r in records if WEAK in r and STRONG in r]
    return {
        f"{key}_{name}": np.array(
            [
                r[model]["correct"] if key == "ok" else r[model]["scores"][ESTIMATOR]
                for r in records
            ],
            dtype=bool if key == "ok" else float,
        )
        for name, model in (("strong", STRONG), ("weak", WEAK))
        for key in ("ok", "conf")
    }


def naive_alarm(errors: list[bool]) -> int | None:
    """The first outcome at which the last NAIVE_WINDOW outcomes' error exceeds alpha."""
    window: deque[bool] = deque(maxlen=NAIVE_WINDOW)
    wrong = 0
    for number, error in enumerate(errors, 1):
        if len(window) == NAIVE_WINDOW:
            wrong -= window[0]
        window.append(error)
        wrong += error
        if len(window) == NAIVE_WINDOW and wrong / NAIVE_WINDOW > ALPHA:
            return number
    return None


def stream(
    rng: np.random.Generator,
    data: dict[str, Array],
    pool: Array,
    hard: Array,
    scenario: str,
    routes: int,
) -> tuple[Array, Array]:
    """Each route's confidence and correctness for one simulated stream."""
    shift = routes // 2 if scenario != "unshifted" else routes
    before = rng.choice(pool, shift)
    after = rng.choice(hard if scenario == "question mix" else pool, routes - shift)
    answerer = "weak" if scenario == "misleading passages" else "strong"
    confidence = np.r_[data["conf_strong"][before], data[f"conf_{answerer}"][after]]
    correct = np.r_[data["ok_strong"][before], data[f"ok_{answerer}"][after]]
    return confidence, correct


def replicate(
    data: dict[str, Array],
    pool: Array,
    hard: Array,
    threshold: float,
    scenario: str,
    spot_check: float,
    routes: int,
    seed: int,
) -> dict[str, Any]:
    """One stream through a DriftMonitor: where it first alarmed, in routes (None: never)."""
    rng = np.random.default_rng(seed)
    confidence, correct = stream(rng, data, pool, hard, scenario, routes)
    accepted = confidence >= threshold
    checked = accepted & (rng.random(routes) < spot_check)
    monitor = DriftMonitor(ALPHA, delta=DRIFT_DELTA)
    first: int | None = None
    outcome_route: list[int] = []  # the route of each outcome, for the naive check
    for route in range(routes):
        monitor.observe_route(bool(accepted[route]))
        if checked[route]:
            outcome_route.append(route)
            alarm = monitor.observe_outcome(
                bool(correct[route]), confidence=float(confidence[route])
            )
            if alarm is not None and first is None:
                first = route
    errors = [not correct[r] for r in outcome_route]
    naive = naive_alarm(errors)
    return {
        "alarm_route": first,
        "naive_alarm_route": outcome_route[naive - 1] if naive is not None else None,
        "outcomes": len(outcome_route),
    }


def summarise(runs: list[dict[str, Any]], key: str, shift: int | None) -> dict[str, Any]:
    firsts = [run[key] for run in runs]
    if shift is None:  # unshifted: any alarm is a false one
        false = sum(first is not None for first in firsts)
        return {"false_alarm_rate": round(false / len(runs), 4)}
    early = sum(first is not None and first < shift for first in firsts)
    # A stream that never alarmed after the shift took longer than it lasted: +inf, so the
    # percentiles stay honest (None when more than that share never alarmed).
    delays = np.array(
        [
            first - shift if first is not None and first >= shift else np.inf
            for first in firsts
            if first is None or first >= shift
        ]
    )

    def percentile(q: float) -> float | None:
        value = float(np.percentile(delays, q)) if len(delays) else np.inf
        return value if np.isfinite(value) else None

    return {
        "false_alarm_rate_before_shift": round(early / len(runs), 4),
        "detected": round(float(np.isfinite(delays).sum()) / len(runs), 4),
        "median_routes_to_alarm": percentile(50),
        "p90_routes_to_alarm": percentile(90),
    }


def accepted_error(confidence: Array, correct: Array, threshold: float) -> dict[str, float]:
    accepted = confidence >= threshold
    return {
        "acceptance": round(float(accepted.mean()), 4),
        "accepted_error": round(float(1 - correct[accepted].mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="benchmarks/results/ladder-records.jsonl")
    parser.add_argument("--routes", type=int, default=12000, help="routes per stream")
    parser.add_argument("--replications", type=int, default=300, help="streams per scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    logging.getLogger("demur.drift").setLevel(logging.ERROR)  # thousands of alarms otherwise
    started = time.perf_counter()
    data = load(Path(args.records))
    n = len(data["ok_strong"])
    order = np.random.default_rng(args.seed).permutation(n)
    fit, pool = order[: n // 2], order[n // 2 :]
    threshold = ConformalThreshold.fit(
        data["conf_strong"][fit], data["ok_strong"][fit], ALPHA, FIT_DELTA
    ).threshold
    hard = pool[~data["ok_weak"][pool]]
    traffic = {
        "unshifted": accepted_error(data["conf_strong"][pool], data["ok_strong"][pool], threshold),
        "question mix": accepted_error(
            data["conf_strong"][hard], data["ok_strong"][hard], threshold
        ),
        "misleading passages": accepted_error(
            data["conf_weak"][pool], data["ok_weak"][pool], threshold
        ),
    }
    monitor = DriftMonitor(ALPHA, delta=DRIFT_DELTA)
    results = []
    for spot_check in SPOT_CHECKS:
        for scenario in SCENARIOS:
            runs = [
                replicate(data, pool, hard, threshold, scenario, spot_check, args.routes, seed)
                for seed in range(args.seed, args.seed + args.replications)
            ]
            shift = None if scenario == "unshifted" else args.routes // 2
            results.append(
                {
                    "scenario": scenario,
                    "spot_check": spot_check,
                    "outcomes_per_stream": float(np.median([r["outcomes"] for r in runs])),
                    "cusum": summarise(runs, "alarm_route", shift),
                    "single_window": summarise(runs, "naive_alarm_route", shift),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    report(
        {
            "model": STRONG,
            "estimator": ESTIMATOR,
            "alpha": ALPHA,
            "fit_delta": FIT_DELTA,
            "drift_delta": DRIFT_DELTA,
            "margin": monitor.margin,
            "horizon": monitor.horizon,
            "alarm_threshold": round(monitor.threshold, 3),
            "detectable_error": round(monitor.detectable_error, 4),
            "naive_window": NAIVE_WINDOW,
            "threshold": round(float(threshold), 4),
            "fit_questions": len(fit),
            "pool_questions": len(pool),
            "hard_questions": len(hard),
            "traffic": traffic,
            "routes": args.routes,
            "shift_at": args.routes // 2,
            "replications": args.replications,
            "results": results,
            "wall_s": round(time.perf_counter() - started, 1),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
