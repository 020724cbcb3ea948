"""Retrieval on CLAP NQ dev: recall per embedding model, and what a conformal cutoff delivers.

No language model. The passages of the 300 answerable and 300 unanswerable CLAP NQ dev rows
(one passage, one chunk, under the row's id) are indexed into a real chromadb store, one
collection per embedder (minilm-l6, e5-small, mpnet-base). For each answerable question, whose
gold passage is its own row's passage: recall@1/3/5/10 and MRR@10, and the indexing time.

Then the conformal cutoff (`demur.ConformalCutoff`): the similarity of each answerable
question to its gold passage; over 100 random 50/50 calibration/test splits, the cutoff fitted
at alpha on the calibration half, and on the test half the realised coverage (share of gold
passages whose similarity clears the cutoff), the share of splits whose coverage fell below
1 - alpha, and how many of the top 10 passages clear the cutoff per question (what the
guarantee costs in context length).

    python -m benchmarks.bench_retrieval [--store DIR] [--corpus 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.clapnq import EMBEDDERS, PREFIX, embedders, index, load_rows
from benchmarks.common import report
from demur import CachedEmbedder, ConfigError
from demur.retrieval import ChromaStore, ConformalCutoff, gold_similarities, realised_coverage

ALPHAS = (0.05, 0.1, 0.2)
RECALL_AT = (1, 3, 5, 10)
TOP = 10


def search(
    store: ChromaStore, embedder: CachedEmbedder, questions: list[dict[str, Any]]
) -> tuple[list[int | None], np.ndarray]:
    """The gold passage's rank in the top 10 (None when absent) and the top-10 similarities."""
    retriever = store.retriever(embedder)
    ranks: list[int | None] = []
    scores = np.full((len(questions), TOP), -np.inf)
    for i, row in enumerate(questions):
        documents = retriever.retrieve(row["question"], TOP)
        # Three passages occur twice in CLAP NQ dev under different ids: the text decides.
        hits = [
            r for r, d in enumerate(documents, 1) if d.id == row["id"] or d.text == row["passage"]
        ]
        ranks.append(hits[0] if hits else None)
        for j, document in enumerate(documents):
            scores[i, j] = document.score if document.score is not None else -np.inf
    return ranks, scores


def recall(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    figures = {f"recall@{k}": sum(r is not None and r <= k for r in ranks) / n for k in RECALL_AT}
    figures["mrr@10"] = sum(1 / r for r in ranks if r is not None) / n
    return {k: round(v, 4) for k, v in figures.items()}


def cutoff_table(
    name: str,
    similarities: np.ndarray,
    top_scores: np.ndarray,
    in_top: np.ndarray,
    splits: int,
) -> list[dict[str, Any]]:
    """The conformal cutoff at each alpha over random calibration/test halves."""
    n = len(similarities)
    table = []
    for alpha in ALPHAS:
        coverages, kept, gold_kept, cutoffs, failed = [], [], [], [], 0
        for split in range(splits):
            order = np.random.default_rng(split).permutation(n)
            calibration, test = order[: n // 2], order[n // 2 :]
            try:
                cutoff = ConformalCutoff.fit(similarities[calibration], alpha, embedder=name)
            except ConfigError:  # too few calibration questions for this alpha
                failed += 1
                continue
            cutoffs.append(cutoff.cutoff)
            coverages.append(realised_coverage(cutoff, similarities[test]))
            kept.append(float((top_scores[test] >= cutoff.cutoff).sum(axis=1).mean()))
            # The gold passage reaches the model only if it is also among the top 10.
            cleared = similarities[test] >= cutoff.cutoff
            gold_kept.append(float((in_top[test] & cleared).mean()))
        done = len(coverages)
        table.append(
            {
                "alpha": alpha,
                "target_coverage": 1 - alpha,
                "splits": splits,
                "splits_without_cutoff": failed,
                "calibration_questions": n // 2,
                "test_questions": n - n // 2,
                "mean_cutoff": _mean(cutoffs),
                "mean_coverage": _mean(coverages),
                "share_below_target": (
                    round(sum(c < 1 - alpha for c in coverages) / done, 4) if done else None
                ),
                "mean_passages_kept_of_top10": _mean(kept, 2),
                "mean_gold_in_top10_and_kept": _mean(gold_kept),
            }
        )
    return table


def _mean(values: list[float], digits: int = 4) -> float | None:
    return round(float(np.mean(values)), digits) if values else None


def measure(store_dir: Path, corpus: int, splits: int, names: list[str]) -> dict[str, Any]:
    answerable, unanswerable = load_rows(corpus)
    store = ChromaStore(store_dir, prefix=PREFIX)
    models = embedders(names)
    indexing = index(store, answerable + unanswerable, models, fresh=True)
    questions = [row["question"] for row in answerable]
    gold = [row["passage"] for row in answerable]
    result: dict[str, Any] = {
        "data": "CLAP NQ dev",
        "passages_indexed": len(answerable) + len(unanswerable),
        "questions": len(answerable),
        "splits": splits,
        "embedders": {},
    }
    for embedder in models:
        ranks, top_scores = search(store, embedder, answerable)
        similarities = gold_similarities(embedder, questions, gold)
        # The gold similarity as computed for the cutoff against the store's own score.
        found = [(i, r) for i, r in enumerate(ranks) if r is not None]
        drift = max((abs(similarities[i] - top_scores[i, r - 1]) for i, r in found), default=None)
        result["embedders"][embedder.name] = {
            "indexing": indexing[embedder.name],
            "recall": recall(ranks),
            "gold_similarity": {
                "mean": round(float(similarities.mean()), 4),
                "p05": round(float(np.quantile(similarities, 0.05)), 4),
                "median": round(float(np.median(similarities)), 4),
                "max_abs_difference_from_store_score": (
                    None if drift is None else round(float(drift), 6)
                ),
            },
            "top10_similarity_mean": round(float(top_scores[np.isfinite(top_scores)].mean()), 4),
            "cutoff": cutoff_table(
                embedder.name,
                similarities,
                top_scores,
                np.array([r is not None for r in ranks]),
                splits,
            ),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--store",
        type=Path,
        help="chroma folder to index into (kept for bench_rag.py); a temporary one by default",
    )
    parser.add_argument(
        "--corpus", type=int, default=300, help="rows taken from each CLAP NQ file (max 300)"
    )
    parser.add_argument("--splits", type=int, default=100)
    parser.add_argument("--embedders", default=",".join(EMBEDDERS))
    parser.add_argument("--json")
    args = parser.parse_args()
    names = [n.strip() for n in args.embedders.split(",") if n.strip()]
    if args.store is not None:
        result = measure(args.store, args.corpus, args.splits, names)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            result = measure(Path(scratch), args.corpus, args.splits, names)
    report(result, args.json)


if __name__ == "__main__":
    main()
