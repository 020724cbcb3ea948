"""The embedded ladder on held-out questions: does gating on confidence pay?

Reads the records of `ladder_records.py` (every built-in's greedy answer to the same HaluEval-QA
questions, with its logprob confidences and seconds) and reports, per model and estimator:
accuracy, AUROC, AURC and Platt-calibrated ECE; for the cascade weak -> strong: APGR (the area
under the share-of-gap-recovered vs strong-call-share curve; random routing scores 0.5),
CPT(80%) (the smallest strong-call share recovering 80% of the gap) and the best accuracy;
and the ladder with a person as last rung, its thresholds fitted as conformal bounds (target
error alpha with probability 1 - delta per rung) on one half and measured on the other, both
ways (cross-fitting). Intervals are 95% bootstrap intervals over questions.

    python -m benchmarks.bench_ladder [--records benchmarks/results/ladder-records.jsonl]
        [--json benchmarks/results/ladder.json] [--defaults benchmarks/results/ladder-defaults.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.common import report
from demur.calibration import (
    ConformalThreshold,
    NoValidThresholdError,
    PlattCalibrator,
    aurc,
    auroc,
    ece,
)

WEAK, STRONG = "qwen2.5-0.5b", "qwen2.5-1.5b"
ESTIMATOR = "mean_logprob"  # the default config's confidence
ALPHAS = (0.1, 0.125, 0.135, 0.15, 0.2)
# The demo's aim: answered accuracy at least 10 points above always-strong, with at least 70%
# of questions answered, on a demo-sized set of questions the thresholds were not fitted on.
DEMO_QUESTIONS = 80
DEMO_DRAWS = 500
AIM_GAIN, AIM_COVERAGE = 0.10, 0.70
DELTA = 0.1
BOOTSTRAP = 1000

Array = npt.NDArray[Any]


def load(path: Path, models: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if all(m in r for m in models)]


def column(records: list[dict[str, Any]], model: str, key: str) -> Array:
    if key in ("correct", "seconds"):
        return np.array([r[model][key] for r in records])
    return np.array([r[model]["scores"][key] for r in records], dtype=float)


def interval(values: list[float]) -> list[float]:
    finite = [v for v in values if np.isfinite(v)]  # a resample may have no gap to recover
    low, high = np.percentile(finite, [2.5, 97.5])
    return [round(float(low), 3), round(float(high), 3)]


def bootstrap(n: int, statistic: Any, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(BOOTSTRAP):
        try:
            values.append(float(statistic(rng.integers(0, n, n))))
        except Exception:  # a resample with one class only has no AUROC
            continue
    return interval(values)


# --- the cascade's curve ---------------------------------------------------------------------


def gap_curve(conf_w: Array, ok_w: Array, ok_s: Array) -> tuple[Array, Array, Array]:
    """Strong-call share, accuracy and share of the gap recovered for every weak threshold."""
    order = np.argsort(conf_w, kind="stable")  # escalate the least confident first
    n = len(conf_w)
    gain = (ok_s[order].astype(float) - ok_w[order].astype(float)).cumsum()
    share = np.r_[0.0, np.arange(1, n + 1) / n]
    accuracy = ok_w.mean() + np.r_[0.0, gain] / n
    gap = ok_s.mean() - ok_w.mean()
    recovered = (accuracy - ok_w.mean()) / gap if gap > 0 else np.full_like(share, np.nan)
    return share, accuracy, recovered


def apgr(conf_w: Array, ok_w: Array, ok_s: Array) -> float:
    share, _, recovered = gap_curve(conf_w, ok_w, ok_s)
    return float(np.trapezoid(recovered, share))


def cpt(conf_w: Array, ok_w: Array, ok_s: Array, level: float = 0.8) -> float:
    share, _, recovered = gap_curve(conf_w, ok_w, ok_s)
    reached = np.flatnonzero(recovered >= level)
    return float(share[reached[0]]) if reached.size else float("nan")


# --- the ladder with a person as the last rung ------------------------------------------------


NEVER = 1.01  # a threshold no confidence reaches: the rung never accepts


def fit_ladder(
    conf_w: Array, ok_w: Array, conf_s: Array, ok_s: Array, alpha: float, with_weak: bool = True
) -> tuple[float, float]:
    """Conformal thresholds for each rung; the strong rung's on the questions escalated to it.

    Without the weak rung every question starts at the strong model.
    """
    t_w = NEVER
    # A weak model that cannot meet alpha accepts nothing: every question goes up.
    with contextlib.suppress(NoValidThresholdError):
        if with_weak:
            t_w = ConformalThreshold.fit(conf_w, ok_w, alpha, DELTA).threshold
    escalated = conf_w < t_w
    try:
        t_s = ConformalThreshold.fit(conf_s[escalated], ok_s[escalated], alpha, DELTA).threshold
    except NoValidThresholdError:
        t_s = NEVER  # the strong model cannot meet alpha here: every escalation goes to a person
    return t_w, t_s


def run_ladder(
    t_w: float, t_s: float, conf_w: Array, ok_w: Array, conf_s: Array, ok_s: Array
) -> dict[str, Array]:
    weak_accepts = conf_w >= t_w
    strong_accepts = ~weak_accepts & (conf_s >= t_s)
    answered = weak_accepts | strong_accepts
    right = (weak_accepts & ok_w) | (strong_accepts & ok_s)
    return {"answered": answered, "right": right, "escalated": ~weak_accepts}


def ladder_outcome(
    outcome: dict[str, Array], sec_w: Array, sec_s: Array, with_weak: bool
) -> dict[str, Any]:
    answered, right, escalated = outcome["answered"], outcome["right"], outcome["escalated"]
    n = len(answered)
    seconds = (sec_w if with_weak else 0.0) + np.where(escalated, sec_s, 0.0)

    def accuracy(idx: Array) -> float:
        return float(right[idx].sum() / max(1, answered[idx].sum()))

    everything = np.arange(n)
    return {
        "coverage": round(float(answered.mean()), 3),
        "coverage_ci": bootstrap(n, lambda i: answered[i].mean()),
        "answered_accuracy": round(accuracy(everything), 3),
        "answered_accuracy_ci": bootstrap(n, accuracy),
        "to_person": round(float((~answered).mean()), 3),
        "strong_share": round(float(escalated.mean()), 3),
        "model_seconds_per_question": round(float(seconds.mean()), 3),
        "always_strong_seconds_per_question": round(float(sec_s.mean()), 3),
    }


def cross_fitted(
    records: list[dict[str, Any]], alpha: float, seed: int, with_weak: bool
) -> dict[str, Any]:
    """Fit on one half, apply to the other, both ways; pool the held-out outcomes."""
    n = len(records)
    halves = np.array_split(np.random.default_rng(seed).permutation(n), 2)
    conf_w, ok_w = column(records, WEAK, ESTIMATOR), column(records, WEAK, "correct")
    conf_s, ok_s = column(records, STRONG, ESTIMATOR), column(records, STRONG, "correct")
    pooled: dict[str, Array] = {k: np.zeros(n, bool) for k in ("answered", "right", "escalated")}
    thresholds = []
    for fit, held in ((halves[0], halves[1]), (halves[1], halves[0])):
        t_w, t_s = fit_ladder(conf_w[fit], ok_w[fit], conf_s[fit], ok_s[fit], alpha, with_weak)
        thresholds.append([round(t_w, 4), round(t_s, 4)])
        outcome = run_ladder(t_w, t_s, conf_w[held], ok_w[held], conf_s[held], ok_s[held])
        for key, values in outcome.items():
            pooled[key][held] = values
    result = ladder_outcome(
        pooled, column(records, WEAK, "seconds"), column(records, STRONG, "seconds"), with_weak
    )
    error = 1 - result["answered_accuracy"]
    result.update(
        ladder=f"{WEAK} → {STRONG} → person" if with_weak else f"{STRONG} → person",
        alpha=alpha,
        delta=DELTA,
        thresholds_per_half=thresholds,
        error_of_answered=round(error, 3),
        guarantee_held=bool(error <= alpha),
    )
    return result


def demo_aim(records: list[dict[str, Any]], alpha: float, seed: int) -> dict[str, Any]:
    """How often a demo meets its aim: the strong rung's threshold fitted on all records but a
    demo-sized set, then applied to that set; `DEMO_DRAWS` random draws."""
    conf, ok = column(records, STRONG, ESTIMATOR), column(records, STRONG, "correct").astype(bool)
    rng = np.random.default_rng(seed)
    coverage, gain, held = [], [], []
    for _ in range(DEMO_DRAWS):
        order = rng.permutation(len(records))
        demo, fit = order[:DEMO_QUESTIONS], order[DEMO_QUESTIONS:]
        try:
            threshold = ConformalThreshold.fit(conf[fit], ok[fit], alpha, DELTA).threshold
        except NoValidThresholdError:
            threshold = NEVER
        answered = conf[demo] >= threshold
        share = float(answered.mean())
        accuracy = float(ok[demo][answered].mean()) if answered.any() else 0.0
        coverage.append(share)
        gain.append(accuracy - float(ok[demo].mean()))
        held.append(1 - accuracy <= alpha)
    covered = np.array(coverage) >= AIM_COVERAGE
    gained = np.array(gain) >= AIM_GAIN - 1e-9
    return {
        "alpha": alpha,
        "mean_coverage": round(float(np.mean(coverage)), 3),
        "mean_gain": round(float(np.mean(gain)), 3),
        "coverage_at_least_aim": round(float(covered.mean()), 3),
        "gain_at_least_aim": round(float(gained.mean()), 3),
        "both": round(float((covered & gained).mean()), 3),
        "guarantee_held": round(float(np.mean(held)), 3),
    }


def gain_at_coverage(records: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Accuracy of the strong model's most confident 70% of answers, above always-strong."""
    conf, ok = column(records, STRONG, ESTIMATOR), column(records, STRONG, "correct").astype(bool)
    n = len(records)

    def gain(i: Array) -> float:
        return most_confident_accuracy(conf[i], ok[i], AIM_COVERAGE) - float(ok[i].mean())

    return {"gain": round(gain(np.arange(n)), 3), "gain_ci": bootstrap(n, gain, seed)}


# --- per model --------------------------------------------------------------------------------


def estimator_quality(records: list[dict[str, Any]], model: str, seed: int) -> dict[str, Any]:
    ok = column(records, model, "correct").astype(bool)
    n = len(records)
    halves = np.array_split(np.random.default_rng(seed).permutation(n), 2)
    result: dict[str, Any] = {}
    for name in records[0][model]["scores"]:
        conf = column(records, model, name)
        calibrated = np.zeros(n)
        for fit, held in ((halves[0], halves[1]), (halves[1], halves[0])):
            platt = PlattCalibrator().fit(conf[fit], ok[fit])
            calibrated[held] = [platt.calibrate(float(c)) for c in conf[held]]
        result[name] = {
            "auroc": round(auroc(conf, ok), 3),
            "auroc_ci": bootstrap(n, lambda i, c=conf: auroc(c[i], ok[i])),
            "aurc": round(aurc(conf, ok), 3),
            "ece_raw": round(ece(conf, ok), 3),
            "ece_calibrated": round(ece(calibrated, ok), 3),
        }
    return result


def most_confident_accuracy(conf: Array, ok: Array, share: float) -> float:
    """The accuracy of the most confident `share` of the answers."""
    kept = np.argsort(-conf, kind="stable")[: round(share * len(conf))]
    return float(ok[kept].mean())


def risk_at_coverage(conf: Array, ok: Array) -> dict[str, float]:
    return {
        f"accuracy_at_{int(level * 100)}pct": round(most_confident_accuracy(conf, ok, level), 3)
        for level in (0.7, 0.8, 0.9)
    }


def analyse(records: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    n = len(records)
    models: dict[str, Any] = {}
    for model in (WEAK, STRONG):
        ok = column(records, model, "correct").astype(bool)
        seconds = column(records, model, "seconds")
        models[model] = {
            "accuracy": round(float(ok.mean()), 3),
            "accuracy_ci": bootstrap(n, lambda i, ok=ok: ok[i].mean()),
            "median_seconds": round(float(np.median(seconds)), 3),
            "estimators": estimator_quality(records, model, seed),
            "risk_coverage": risk_at_coverage(column(records, model, ESTIMATOR), ok),
        }
    ok_w = column(records, WEAK, "correct").astype(bool)
    ok_s = column(records, STRONG, "correct").astype(bool)
    cascade = {}
    for name in records[0][WEAK]["scores"]:
        conf_w = column(records, WEAK, name)
        share, accuracy, _ = gap_curve(conf_w, ok_w, ok_s)
        best = int(np.argmax(accuracy))
        cascade[name] = {
            "apgr": round(apgr(conf_w, ok_w, ok_s), 3),
            "apgr_ci": bootstrap(n, lambda i, c=conf_w: apgr(c[i], ok_w[i], ok_s[i])),
            "cpt80": round(cpt(conf_w, ok_w, ok_s), 3),
            "best_accuracy": round(float(accuracy[best]), 3),
            "best_at_strong_share": round(float(share[best]), 3),
        }
    ladders = [
        cross_fitted(records, alpha, seed, with_weak)
        for with_weak in (True, False)
        for alpha in ALPHAS
    ]
    return {
        "questions": n,
        "weak": WEAK,
        "strong": STRONG,
        "estimator": ESTIMATOR,
        "models": models,
        "always_weak_accuracy": models[WEAK]["accuracy"],
        "always_strong_accuracy": models[STRONG]["accuracy"],
        "oracle_accuracy": round(float((ok_w | ok_s).mean()), 3),
        "cascade": cascade,
        "ladder_with_person": ladders,
        "demo_aim": {
            "aim": {"gain": AIM_GAIN, "coverage": AIM_COVERAGE},
            "questions": DEMO_QUESTIONS,
            "draws": DEMO_DRAWS,
            "gain_at_70pct": gain_at_coverage(records, seed),
            "by_alpha": [demo_aim(records, alpha, seed) for alpha in ALPHAS],
        },
    }


def fit_defaults(
    records: list[dict[str, Any]], alpha: float, with_weak: bool = True
) -> dict[str, Any]:
    """The shipped thresholds: fitted on every record (none of them is a demo question)."""
    conf_w, ok_w = column(records, WEAK, ESTIMATOR), column(records, WEAK, "correct")
    conf_s, ok_s = column(records, STRONG, ESTIMATOR), column(records, STRONG, "correct")
    t_w, t_s = fit_ladder(conf_w, ok_w, conf_s, ok_s, alpha, with_weak)
    thresholds = {"weak": round(t_w, 4), "strong": round(t_s, 4)}
    if not with_weak:
        del thresholds["weak"]
    return {
        "ladder": f"{WEAK} → {STRONG} → person" if with_weak else f"{STRONG} → person",
        "estimator": ESTIMATOR,
        "alpha": alpha,
        "delta": DELTA,
        "thresholds": thresholds,
        "fitted_on": f"{len(records)} HaluEval-QA questions outside the demo set",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="benchmarks/results/ladder-records.jsonl")
    parser.add_argument("--json")
    parser.add_argument("--defaults", help="also write the default thresholds here")
    parser.add_argument("--alpha", type=float, default=0.15, help="for --defaults")
    parser.add_argument(
        "--without-weak", action="store_true", help="for --defaults: the strong model alone"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    records = load(Path(args.records), (WEAK, STRONG))
    result = analyse(records, args.seed)
    if args.defaults:
        defaults = fit_defaults(records, args.alpha, not args.without_weak)
        Path(args.defaults).write_text(json.dumps(defaults, indent=2, ensure_ascii=False) + "\n")
        result["defaults"] = defaults
    report(result, args.json)


if __name__ == "__main__":
    main()
