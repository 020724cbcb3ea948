"""Pre-generation routing on the weak -> strong cascade: does predicting from the question help?

Reads the records of `ladder_records.py` (each built-in's greedy answer to the same HaluEval-QA
questions, with its passage in the prompt, its confidences and seconds), joins the questions
and passages, and embeds each question with MiniLM. Every figure is cross-fitted over K folds:
the predictor is fitted on the other folds, and so are the thresholds, which are placed on
the training folds' own out-of-fold predictions (a nested cross-fit) and then applied to the
held-out fold; the held-out outcomes are pooled. Policies, at 101 strong-call budgets:

- post-generation only: weak answers every question; escalate when its mean_logprob is below
  a threshold (the shipped ladder);
- pre-generation only: skip weak for the questions with the lowest predicted score, keep
  weak's answer for the rest (no check);
- combined: skip weak for the lowest predicted, then the post-generation threshold on the rest;
  for each budget the pair with the best accuracy on the training folds (their Pareto front);
- random routing: escalate a random share (expected figures).

The pre-generation score is P(weak succeeds), or P(weak) - P(strong) ("gain": skip where the
strong model is predicted to do better), from `KnnPredictor` and `LogisticPredictor`.
APGR, CPT(50%) and CPT(80%) are read off each pooled curve (bench_ladder's definitions: the
area under the share-of-gap-recovered curve; the smallest strong-call share recovering that
much of the gap), with 95% bootstrap intervals over questions; model-seconds per question
count the seconds of the models actually called, from the records.

    python -m benchmarks.bench_pregen [--records benchmarks/results/ladder-records.jsonl]
        [--json benchmarks/results/pregen.json]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_ladder import (
    ESTIMATOR,
    STRONG,
    WEAK,
    Array,
    apgr,
    bootstrap,
    column,
    cpt,
    load,
)
from benchmarks.common import ROOT, halueval_rows, report
from demur.calibration import auroc
from demur.evaluation import records_to_rows
from demur.pregen import (
    CHEAP_FEATURES,
    Featurizer,
    KnnPredictor,
    LogisticPredictor,
    Predictor,
    QueryFeatures,
    RoutingRow,
    cross_fit,
    fingerprint,
    fold_of,
)

EMBEDDER = "minilm-l6"
FOLDS = 5
LEVELS = np.linspace(0.0, 1.0, 101)  # strong-call budgets
SKIP_GRID = np.linspace(0.0, 1.0, 41)  # shares of training questions skipped straight to strong
CHECK_GRID = np.linspace(0.0, 1.0, 101)  # shares of training questions below the weak threshold
CACHE = ROOT / ".demur" / "bench" / "pregen-features.npz"

LEARNERS: dict[str, Callable[[], Predictor]] = {
    "knn": lambda: KnnPredictor(EMBEDDER, k=25),
    "logistic": lambda: LogisticPredictor(EMBEDDER, C=0.1),
}
SCORES = ("p_weak", "gain")


# --- data ----------------------------------------------------------------------------------------


def routing_rows(records: list[dict[str, Any]]) -> list[RoutingRow]:
    """The records as routing rows, with HaluEval's question and knowledge passage."""
    halueval = halueval_rows()
    joined = [
        {
            "question": halueval[r["row"]]["question"],
            "context": [halueval[r["row"]]["knowledge"]],
            WEAK: r[WEAK],
            STRONG: r[STRONG],
        }
        for r in records
    ]
    return records_to_rows(joined, "ladder records")


def query_features(rows: list[RoutingRow], cache: Path | None) -> tuple[QueryFeatures, float]:
    """Features of every row (from the cache when it holds these rows) and seconds spent."""
    key = hashlib.sha256(f"{EMBEDDER}\n{fingerprint(rows)}".encode()).hexdigest()
    if cache is not None and cache.exists():
        saved = np.load(cache)
        if str(saved["key"]) == key:
            return QueryFeatures(saved["embedding"], saved["cheap"], CHEAP_FEATURES), float(
                saved["seconds"]
            )
    started = time.perf_counter()
    features = Featurizer(EMBEDDER).features(
        [row.question for row in rows], [row.context for row in rows]
    )
    seconds = time.perf_counter() - started
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            cache, key=key, embedding=features.embedding, cheap=features.cheap, seconds=seconds
        )
    return features, seconds


# --- nested cross-fitting ------------------------------------------------------------------------


@dataclass
class Predictions:
    """Out-of-fold P(success) of weak and strong: `held[m]` for every row from the fit on the
    other folds; `inner[k][m]` for fold k's training rows, cross-fitted within them."""

    held: dict[str, Array]
    inner: list[dict[str, Array]]


def nested(
    make: Callable[[], Predictor], features: QueryFeatures, labels: dict[str, Array], fold: Array
) -> Predictions:
    held = {m: np.full(len(features), np.nan) for m in labels}
    inner = []
    for k in range(FOLDS):
        train = fold != k
        train_labels = {m: y[train] for m, y in labels.items()}
        inner.append(cross_fit(make(), features.take(train), train_labels, folds=FOLDS, seed=k))
        fitted = make().fit_features(features.take(train), train_labels)
        for m, p in fitted.predict_features(features.take(~train)).items():
            held[m][~train] = p
    return Predictions(held, inner)


def score(predicted: dict[str, Array], kind: str) -> Array:
    """Higher: keep weak. "p_weak": P(weak); "gain": P(weak) - P(strong)."""
    return predicted[WEAK] if kind == "p_weak" else predicted[WEAK] - predicted[STRONG]


# --- policies ------------------------------------------------------------------------------------


@dataclass
class Outcomes:
    """Per question (rows) and budget (columns): was strong called, was weak, was it right."""

    strong: Array
    weak: Array
    right: Array

    @classmethod
    def empty(cls, n: int) -> Outcomes:
        shape = (n, len(LEVELS))
        return cls(np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool))


def cut(values: Array, share: float) -> float:
    """The threshold below which `share` of `values` fall (-inf: none; inf: all)."""
    if share <= 0:
        return -np.inf
    if share >= 1:
        return np.inf
    return float(np.quantile(values, share))


def place(
    out: Outcomes, held: Array, skip: Array, escalate: Array, ok_w: Array, ok_s: Array, level: int
) -> None:
    strong = skip | escalate
    out.strong[held, level] = strong
    out.weak[held, level] = ~skip
    out.right[held, level] = np.where(strong, ok_s, ok_w)


def post_only(conf: Array, ok_w: Array, ok_s: Array, fold: Array) -> Outcomes:
    out = Outcomes.empty(len(conf))
    for k in range(FOLDS):
        train, held = fold != k, fold == k
        for j, level in enumerate(LEVELS):
            t = cut(conf[train], level)
            none = np.zeros(held.sum(), bool)
            place(out, held, none, conf[held] < t, ok_w[held], ok_s[held], j)
    return out


def pre_only(pred: Predictions, kind: str, ok_w: Array, ok_s: Array, fold: Array) -> Outcomes:
    out = Outcomes.empty(len(ok_w))
    held_score = score(pred.held, kind)
    for k in range(FOLDS):
        held = fold == k
        inner = score(pred.inner[k], kind)
        for j, level in enumerate(LEVELS):
            a = cut(inner, level)
            none = np.zeros(held.sum(), bool)
            place(out, held, held_score[held] < a, none, ok_w[held], ok_s[held], j)
    return out


def combined(
    pred: Predictions, kind: str, conf: Array, ok_w: Array, ok_s: Array, fold: Array
) -> tuple[Outcomes, list[list[float]]]:
    """Skip then check, the pair for each budget chosen on the training folds."""
    out = Outcomes.empty(len(conf))
    held_score = score(pred.held, kind)
    chosen = np.zeros((FOLDS, len(LEVELS), 2))
    for k in range(FOLDS):
        train, held = fold != k, fold == k
        s_tr, c_tr = score(pred.inner[k], kind), conf[train]
        a = np.array([cut(s_tr, q) for q in SKIP_GRID])
        t = np.array([cut(c_tr, r) for r in CHECK_GRID])
        skip = s_tr[None, :] < a[:, None]  # (skips, rows)
        escalate = c_tr[None, :] < t[:, None]  # (checks, rows)
        strong = skip[:, None, :] | escalate[None, :, :]  # (skips, checks, rows)
        share = strong.mean(axis=2)
        accuracy = np.where(strong, ok_s[train], ok_w[train]).mean(axis=2)
        for j, level in enumerate(LEVELS):
            # the best training accuracy within the budget; ties go to the smaller share
            allowed = share <= level + 1e-9
            value = np.where(allowed, accuracy - 1e-9 * share, -np.inf)
            q, r = np.unravel_index(np.argmax(value), value.shape)
            chosen[k, j] = SKIP_GRID[q], CHECK_GRID[r]
            skipped = held_score[held] < a[q]
            place(out, held, skipped, ~skipped & (conf[held] < t[r]), ok_w[held], ok_s[held], j)
    mean_choice = chosen.mean(axis=0)
    return out, [[round(float(q), 3), round(float(r), 3)] for q, r in mean_choice]


# --- curves --------------------------------------------------------------------------------------


def curve(share: Array, accuracy: Array, acc_w: float, acc_s: float) -> tuple[Array, Array]:
    """Share-of-gap-recovered against strong-call share, sorted, from always weak (0, 0) to
    always strong (1, 1)."""
    recovered = (accuracy - acc_w) / (acc_s - acc_w)
    order = np.argsort(share, kind="stable")
    return np.r_[0.0, share[order], 1.0], np.r_[0.0, recovered[order], 1.0]


def metrics_of(out: Outcomes, idx: Array, ok_w: Array, ok_s: Array) -> dict[str, float]:
    share = out.strong[idx].mean(axis=0)
    accuracy = out.right[idx].mean(axis=0)
    x, y = curve(share, accuracy, float(ok_w[idx].mean()), float(ok_s[idx].mean()))
    return {
        "apgr": float(np.trapezoid(y, x)),
        "cpt50": reach(x, y, 0.5),
        "cpt80": reach(x, y, 0.8),
    }


def reach(x: Array, y: Array, level: float) -> float:
    hit = np.flatnonzero(y >= level)
    return float(x[hit[0]]) if hit.size else float("nan")


def summarize(
    out: Outcomes, ok_w: Array, ok_s: Array, sec_w: Array, sec_s: Array, **extra: Any
) -> dict[str, Any]:
    n = len(ok_w)
    everything = np.arange(n)
    figures = metrics_of(out, everything, ok_w, ok_s)
    share = out.strong.mean(axis=0)
    accuracy = out.right.mean(axis=0)
    seconds = (out.weak * sec_w[:, None] + out.strong * sec_s[:, None]).mean(axis=0)
    recovered = (accuracy - ok_w.mean()) / (ok_s.mean() - ok_w.mean())
    result: dict[str, Any] = {}
    for name in ("apgr", "cpt50", "cpt80"):
        result[name] = round(figures[name], 3)
        result[f"{name}_ci"] = bootstrap(
            n, lambda i, name=name: metrics_of(out, i, ok_w, ok_s)[name]
        )
    for level, name in ((0.5, "at_cpt50"), (0.8, "at_cpt80")):
        hit = np.flatnonzero(recovered >= level)
        j = int(hit[np.argmin(share[hit])]) if hit.size else len(LEVELS) - 1
        result[name] = {
            "strong_share": round(float(share[j]), 3),
            "weak_share": round(float(out.weak[:, j].mean()), 3),
            "accuracy": round(float(accuracy[j]), 3),
            "model_seconds_per_question": round(float(seconds[j]), 3),
            "least_model_seconds_per_question": round(
                float(seconds[hit].min() if hit.size else seconds[j]), 3
            ),
        }
    best = int(np.argmax(accuracy))
    result["best_accuracy"] = round(float(accuracy[best]), 3)
    result["best_at_strong_share"] = round(float(share[best]), 3)
    result["curve"] = [
        [round(float(s), 3), round(float(a), 3), round(float(c), 3)]
        for s, a, c in zip(share, accuracy, seconds, strict=True)
    ]
    result.update(extra)
    return result


def swept(scores: Array, ok_w: Array, ok_s: Array) -> dict[str, Any]:
    """bench_ladder's figures for a score swept on the pooled held-out rows (no threshold
    placement): the reference for a single score."""
    n = len(scores)
    return {
        "apgr": round(apgr(scores, ok_w, ok_s), 3),
        "apgr_ci": bootstrap(n, lambda i: apgr(scores[i], ok_w[i], ok_s[i])),
        "cpt50": round(cpt(scores, ok_w, ok_s, 0.5), 3),
        "cpt80": round(cpt(scores, ok_w, ok_s, 0.8), 3),
    }


# --- the run -------------------------------------------------------------------------------------


def analyse(records: list[dict[str, Any]], seed: int, cache: Path | None) -> dict[str, Any]:
    rows = routing_rows(records)
    features, embed_s = query_features(rows, cache)
    ok_w = column(records, WEAK, "correct").astype(bool)
    ok_s = column(records, STRONG, "correct").astype(bool)
    conf = column(records, WEAK, ESTIMATOR)
    sec_w, sec_s = column(records, WEAK, "seconds"), column(records, STRONG, "seconds")
    n = len(records)
    fold = fold_of(n, FOLDS, seed)
    labels = {WEAK: ok_w.astype(float), STRONG: ok_s.astype(float)}
    gap = float(ok_s.mean() - ok_w.mean())
    policies: dict[str, Any] = {
        "random": {
            "apgr": 0.5,
            "cpt50": 0.5,
            "cpt80": 0.8,
            "at_cpt80": {
                "strong_share": 0.8,
                "accuracy": round(float(ok_w.mean() + 0.8 * gap), 3),
                "model_seconds_per_question": round(float(sec_w.mean() + 0.8 * sec_s.mean()), 3),
                "least_model_seconds_per_question": round(
                    float(sec_w.mean() + 0.8 * sec_s.mean()), 3
                ),
            },
            "note": "expected figures of escalating a random share",
        },
        "post": summarize(
            post_only(conf, ok_w, ok_s, fold),
            ok_w,
            ok_s,
            sec_w,
            sec_s,
            swept=swept(conf, ok_w, ok_s),
        ),
    }
    predictors: dict[str, Any] = {}
    for learner, make in LEARNERS.items():
        started = time.perf_counter()
        pred = nested(make, features, labels, fold)
        predictors[learner] = {
            "describe": make().describe(),
            "fit_and_predict_seconds": round(time.perf_counter() - started, 1),
            **{
                f"auroc_{name}": round(auroc(pred.held[model], ok), 3)
                for name, model, ok in (("weak", WEAK, ok_w), ("strong", STRONG, ok_s))
            },
            "auroc_weak_ci": bootstrap(n, lambda i, p=pred: auroc(p.held[WEAK][i], ok_w[i])),
        }
        for kind in SCORES:
            policies[f"pre:{learner}:{kind}"] = summarize(
                pre_only(pred, kind, ok_w, ok_s, fold),
                ok_w,
                ok_s,
                sec_w,
                sec_s,
                swept=swept(score(pred.held, kind), ok_w, ok_s),
            )
            outcomes, chosen = combined(pred, kind, conf, ok_w, ok_s, fold)
            policies[f"both:{learner}:{kind}"] = summarize(
                outcomes, ok_w, ok_s, sec_w, sec_s, chosen_skip_and_check_share=chosen
            )
    post = policies["post"]
    aims = {}
    for name, policy in policies.items():
        if not name.startswith("both:"):
            continue
        _, learner, kind = name.split(":")
        pre = policies[f"pre:{learner}:{kind}"]
        aims[name] = {
            "beats_post_apgr": policy["apgr"] > post["apgr"],
            "beats_pre_apgr": policy["apgr"] > pre["apgr"],
            "beats_post_apgr_beyond_ci": policy["apgr_ci"][0] > post["apgr"],
            "cpt80_vs_post": round(policy["cpt80"] / post["cpt80"], 3),
            "cpt80_third_better": policy["cpt80"] <= post["cpt80"] * 2 / 3,
            "seconds_at_80_vs_post": round(
                policy["at_cpt80"]["least_model_seconds_per_question"]
                / post["at_cpt80"]["least_model_seconds_per_question"],
                3,
            ),
        }
    return {
        "questions": n,
        "weak": WEAK,
        "strong": STRONG,
        "estimator": ESTIMATOR,
        "embedder": EMBEDDER,
        "folds": FOLDS,
        "seed": seed,
        "levels": len(LEVELS),
        "embedding_seconds": round(embed_s, 1),
        "always_weak_accuracy": round(float(ok_w.mean()), 3),
        "always_strong_accuracy": round(float(ok_s.mean()), 3),
        "oracle_accuracy": round(float((ok_w | ok_s).mean()), 3),
        "always_weak_seconds": round(float(sec_w.mean()), 3),
        "always_strong_seconds": round(float(sec_s.mean()), 3),
        "predictors": predictors,
        "policies": policies,
        "aims": aims,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="benchmarks/results/ladder-records.jsonl")
    parser.add_argument("--json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache", type=Path, default=CACHE, help="question features kept between runs"
    )
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    records = load(Path(args.records), (WEAK, STRONG))
    result = analyse(records, args.seed, None if args.no_cache else args.cache)
    report(result, args.json)


if __name__ == "__main__":
    main()
