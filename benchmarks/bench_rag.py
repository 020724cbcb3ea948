"""Answer or abstain on CLAP NQ dev: vanilla RAG per embedding model against Confident RAG.

N answerable and N unanswerable CLAP NQ dev questions (seeded sample) go through a real Router
with a local model, a real chromadb store holding all 600 dev passages (one collection per
embedding model: minilm-l6, e5-small, mpnet-base) and `ConfidentRag(k)`, under a policy that
accepts every answer. One route per question gives every system at once: each branch of the
step is vanilla RAG with one embedding model, and the branch the step kept is Confident RAG's
answer (the most confident of the three).

A system answers when its confidence clears a threshold, and abstains otherwise (an answer
that is itself a refusal, such as "the passage does not say", counts as abstaining). An
unanswerable question is handled correctly when the system abstains; an answerable one when
it answers and the answer is right. CLAP NQ's answers are long and the models answer short,
so an answer is right when at least half of its distinct content words (after
`normalize_answer`, stopwords dropped) occur in the gold answer, and it is not a refusal.

Per system: answer-or-abstain accuracy at the threshold that does best on the other half of
the questions (2-fold cross-fitted, averaged over random stratified halvings), the AUROC of
the confidence for "answerable and answered right", and the accuracy among answered questions
at matched coverage (the top 30%, 50%, 70% of questions by confidence).

    python -m benchmarks.bench_rag [--questions 50] [--model weak] [--store DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.clapnq import EMBEDDERS, PREFIX, embedders, index, load_rows
from benchmarks.common import report
from demur import Accept, Query
from demur.calibration import UndefinedMetricError, auroc
from demur.config import build_model, default_config
from demur.estimators import STOPWORDS, is_refusal, parse_estimators
from demur.evaluation import normalize_answer
from demur.grounding import ConfidentRag
from demur.policies import Always
from demur.retrieval import ChromaStore
from demur.router import Budget, RetryPolicy, Router

COVERAGES = (0.3, 0.5, 0.7)
CONFIDENT = "confident_rag"


# Every answer is accepted: the benchmark grades what each system would have answered.
ACCEPT_EVERYTHING = Always(Accept(), "benchmark: every answer is scored", name="accept-everything")


# --- grading ---------------------------------------------------------------------------------


def content_words(text: str) -> list[str]:
    return [w for w in normalize_answer(text).split() if w not in STOPWORDS]


def is_right(answer: str | None, gold: str, *, ignore: str = "") -> bool:
    """At least half of the answer's distinct content words occur in the gold answer.

    `ignore` (the question, for the stricter variant) removes words that only echo it.
    """
    if not answer or not gold or is_refusal(answer):
        return False
    skip = set(content_words(ignore))
    words = [w for w in dict.fromkeys(content_words(answer)) if w not in skip]
    if not words:
        return False
    expected = set(content_words(gold))
    return sum(w in expected for w in words) / len(words) >= 0.5


# --- running ---------------------------------------------------------------------------------


async def collect(
    store: ChromaStore,
    models: list[Any],
    questions: list[dict[str, Any]],
    model_name: str,
    estimators: str,
    k: int,
) -> list[dict[str, Any]]:
    config = default_config()
    # Three answers per question queue for one local model: give each call time to wait.
    section = config.models[model_name].model_copy(update={"timeout_s": 600.0})
    model = build_model(model_name, section)
    router = Router(
        [model],
        policy=ACCEPT_EVERYTHING,
        estimators=parse_estimators(estimators),
        retrievers=[store.retriever(m) for m in models],
        grounding=ConfidentRag(k=k),
        budget=Budget(max_steps=1, deadline_s=3600),
        retry=RetryPolicy(max_attempts=2),
        estimator_timeout_s=60.0,
    )
    records = []
    try:
        for row in questions:
            started = time.perf_counter()
            verdict = await router.aroute(Query(row["question"], id=row["id"]))
            seconds = time.perf_counter() - started
            step = verdict.steps[0]
            branches = {}
            for branch in step.branches:
                documents = branch.retrieval.documents if branch.retrieval is not None else ()
                answer = branch.candidate.text if branch.candidate is not None else None
                branches[branch.name] = {
                    "answer": answer,
                    "confidence": branch.confidence,
                    "error": branch.error,
                    "gold_retrieved": any(d.id == row["id"] for d in documents),
                    "passages": len(branch.candidate.documents) if branch.candidate else 0,
                    # Passages dropped to fit the model's context window, if any.
                    "note": branch.retrieval.note if branch.retrieval is not None else None,
                }
            answer = step.candidate.text if step.candidate is not None else None
            branches[CONFIDENT] = {
                "answer": answer,
                "confidence": step.confidence,
                "error": step.error,
                "branch": step.branch,
            }
            for entry in branches.values():
                entry["right"] = is_right(entry["answer"], row["answer"])
                entry["right_strict"] = is_right(
                    entry["answer"], row["answer"], ignore=row["question"]
                )
                entry["refusal"] = bool(entry["answer"]) and is_refusal(entry["answer"])
            records.append(
                {
                    "id": row["id"],
                    "question": row["question"],
                    "answerable": bool(row["answer"]),
                    "seconds": seconds,
                    "systems": branches,
                }
            )
            print(
                f"{len(records)}/{len(questions)} {seconds:.1f}s "
                f"{'A' if row['answer'] else 'U'} {CONFIDENT}={step.branch}: {answer!r}",
                flush=True,
            )
    finally:
        await router.aclose()
    return records


# --- analysis --------------------------------------------------------------------------------


def _effective(entries: list[dict[str, Any]]) -> np.ndarray:
    """Confidence, or -1 when the system gave no answer or a refusal (it never answers)."""
    values = []
    for e in entries:
        if e["answer"] is None or not e["answer"].strip() or e["refusal"]:
            values.append(-1.0)
        else:
            values.append(e["confidence"] if e["confidence"] is not None else 0.0)
    return np.array(values)


def _handled(threshold: float, conf: np.ndarray, right: np.ndarray, answerable: np.ndarray):
    answers = conf >= threshold
    return (answers & right & answerable) | (~answers & ~answerable)


def _best_threshold(conf: np.ndarray, right: np.ndarray, answerable: np.ndarray) -> float:
    candidates = np.unique(np.concatenate([conf[conf >= 0], [np.inf]]))
    scores = np.array([_handled(t, conf, right, answerable).mean() for t in candidates])
    tied = candidates[scores == scores.max()]
    return float(tied[len(tied) // 2])  # the middle of the best range, not its edge


def cross_fitted(
    conf: np.ndarray, right: np.ndarray, answerable: np.ndarray, repeats: int
) -> tuple[float, float, float]:
    """Mean and spread of 2-fold cross-fitted accuracy, and the mean threshold chosen."""
    accuracies, thresholds = [], []
    yes, no = np.flatnonzero(answerable), np.flatnonzero(~answerable)
    for repeat in range(repeats):
        rng = np.random.default_rng(repeat)
        a, b = rng.permutation(yes), rng.permutation(no)
        first = np.concatenate([a[: len(a) // 2], b[: len(b) // 2]])
        second = np.concatenate([a[len(a) // 2 :], b[len(b) // 2 :]])
        handled = 0
        for fit, test in ((first, second), (second, first)):
            t = _best_threshold(conf[fit], right[fit], answerable[fit])
            thresholds.append(t)
            handled += _handled(t, conf[test], right[test], answerable[test]).sum()
        accuracies.append(handled / len(conf))
    finite = [t for t in thresholds if np.isfinite(t)]
    return (
        float(np.mean(accuracies)),
        float(np.std(accuracies)),
        float(np.mean(finite)) if finite else float("inf"),
    )


def at_coverage(conf: np.ndarray, right: np.ndarray, answerable: np.ndarray, coverage: float):
    """Accuracy among the `coverage` share of questions with the highest confidence."""
    m = round(coverage * len(conf))
    order = np.argsort(-conf, kind="stable")[:m]
    if m == 0 or (conf[order] < 0).any():
        return None  # the system does not answer that many questions
    return round(float((right[order] & answerable[order]).mean()), 4)


def analyse(records: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    answerable = np.array([r["answerable"] for r in records])
    systems: dict[str, Any] = {}
    for name in [*EMBEDDERS, CONFIDENT]:
        if any(name not in r["systems"] for r in records):
            continue
        entries: list[dict[str, Any]] = [r["systems"][name] for r in records]
        conf = _effective(entries)
        right = np.array([e["right"] for e in entries])
        strict = np.array([e["right_strict"] for e in entries])
        label = right & answerable
        try:
            discrimination: float | None = round(auroc(np.clip(conf, 0.0, 1.0), label), 4)
        except UndefinedMetricError:
            discrimination = None
        mean, spread, threshold = cross_fitted(conf, right, answerable, repeats)
        in_sample = _best_threshold(conf, right, answerable)
        entry: dict[str, Any] = {
            "answerable_right": round(float(right[answerable].mean()), 4),
            "answerable_right_without_question_words": round(float(strict[answerable].mean()), 4),
            "refusals_answerable": int((conf[answerable] < 0).sum()),
            "refusals_unanswerable": int((conf[~answerable] < 0).sum()),
            "accuracy_always_answer": round(
                float(_handled(0.0, conf, right, answerable).mean()), 4
            ),
            "accuracy_cross_fitted": round(mean, 4),
            "accuracy_cross_fitted_std": round(spread, 4),
            "mean_threshold_chosen": None if not np.isfinite(threshold) else round(threshold, 4),
            "accuracy_best_threshold_in_sample": round(
                float(_handled(in_sample, conf, right, answerable).mean()), 4
            ),
            "auroc": discrimination,
            "accuracy_answered_at_coverage": {
                f"{c:.0%}": at_coverage(conf, right, answerable, c) for c in COVERAGES
            },
        }
        if name != CONFIDENT:
            gold = [e["gold_retrieved"] for e, a in zip(entries, answerable, strict=True) if a]
            entry["gold_passage_retrieved"] = round(float(np.mean(gold)), 4) if gold else None
            entry["failed"] = sum(e["error"] is not None for e in entries)
            entry["passages_dropped_to_fit"] = sum(e["note"] is not None for e in entries)
        else:
            picks = [e["branch"] for e in entries]
            entry["picked"] = {n: picks.count(n) for n in EMBEDDERS}
        systems[name] = entry
    best = max(EMBEDDERS, key=lambda n: systems[n]["accuracy_cross_fitted"] if n in systems else -1)
    return {"systems": systems, "best_single_embedder": best}


def measure(args: argparse.Namespace, store_dir: Path) -> dict[str, Any]:
    answerable, unanswerable = load_rows(args.corpus)
    rng = random.Random(args.seed)
    questions = rng.sample(answerable, min(args.questions, len(answerable))) + rng.sample(
        unanswerable, min(args.questions, len(unanswerable))
    )
    store = ChromaStore(store_dir, prefix=PREFIX)
    models = embedders()
    indexing = index(store, answerable + unanswerable, models)
    records = asyncio.run(collect(store, models, questions, args.model, args.estimators, args.k))
    if args.rows:
        Path(args.rows).write_text("".join(json.dumps(r) + "\n" for r in records))
    section = default_config().models.get(args.model)
    result = {
        "data": "CLAP NQ dev",
        "model": args.model,
        "builtin": getattr(section, "builtin", None),
        "estimators": args.estimators,
        "k": args.k,
        "questions_answerable": sum(r["answerable"] for r in records),
        "questions_unanswerable": sum(not r["answerable"] for r in records),
        "passages_in_store": {n: v["collection_size"] for n, v in indexing.items()},
        "cross_fit_repeats": args.repeats,
        # The first route loads the model and the embedders.
        "seconds_first_question": round(records[0]["seconds"], 2),
        "seconds_per_question": round(
            float(np.mean([r["seconds"] for r in records[1:] or records])), 2
        ),
        **analyse(records, args.repeats),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--questions", type=int, default=50, help="answerable and as many unanswerable"
    )
    parser.add_argument("--model", default="weak", help="a model of the default config")
    parser.add_argument("--estimators", default="mean_logprob")
    parser.add_argument("--k", type=int, default=3, help="passages per embedding model")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50, help="random halvings to cross-fit")
    parser.add_argument(
        "--store",
        type=Path,
        help="chroma folder (e.g. the one bench_retrieval.py filled); missing passages are "
        "indexed; a temporary one by default",
    )
    parser.add_argument(
        "--corpus", type=int, default=300, help="rows taken from each CLAP NQ file (max 300)"
    )
    parser.add_argument("--rows", help="also write the per-question rows to this JSONL file")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.store is not None:
        result = measure(args, args.store)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            result = measure(args, Path(scratch))
    report(result, args.json)


if __name__ == "__main__":
    main()
