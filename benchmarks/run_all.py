"""Run every benchmark, keep the JSON in benchmarks/results/, and rewrite docs/benchmarks.md.

python -m benchmarks.run_all [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT
from benchmarks.render import render

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
# The CLAP NQ store bench_retrieval fills and bench_rag answers from.
STORE = ROOT / ".demur" / "bench" / "chroma-clapnq"
LADDER_RECORDS = RESULTS / "ladder-records.jsonl"
CONFLICT_ROWS = RESULTS / "conflict-rows.jsonl"
DEFAULTS = ROOT / "demur" / "demo" / "thresholds.json"


SKIP: set[str] = set()
# Wall seconds of each step this run launched, in order, for the page.
WALL: dict[str, float] = {}


def launch(module: str, *args: str) -> None:
    """Run `python -m benchmarks.<module> ARGS` from the repository root, timing it."""
    print(f"== {module} {' '.join(args)}", flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT, check=True)
    step = module.removeprefix("bench_")
    WALL[step] = WALL.get(step, 0.0) + time.perf_counter() - started


def run(module: str, *args: str) -> dict:
    """Run one benchmark and load its JSON (or only load it, when skipped)."""
    name = module.removeprefix("bench_")
    out = RESULTS / f"{name}.json"
    if name not in SKIP:
        launch(module, *args, "--json", str(out))
    return json.loads(out.read_text())


def run_optional(module: str, *args: str) -> dict | None:
    """Like `run`, but a skipped benchmark without saved results leaves its section out."""
    name = module.removeprefix("bench_")
    if name in SKIP and not (RESULTS / f"{name}.json").exists():
        print(f"== {module}: skipped, no saved results", flush=True)
        return None
    return run(module, *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller samples")
    parser.add_argument(
        "--ladder-questions",
        type=int,
        default=1000,
        help="HaluEval-QA questions for the ladder records (resumable; 0: use those saved)",
    )
    parser.add_argument(
        "--estimator-questions",
        type=int,
        default=200,
        help="questions per model for bench_estimators (0: reuse the saved results)",
    )
    parser.add_argument(
        "--rag-questions",
        type=int,
        default=30,
        help="answerable and as many unanswerable CLAP NQ questions for bench_rag",
    )
    parser.add_argument(
        "--conflict-questions",
        type=int,
        default=100,
        help="questions per dataset for bench_conflict",
    )
    parser.add_argument(
        "--reuse",
        default="",
        help="comma-separated benchmarks to take from saved results: "
        "overhead,import,demo,ladder,ensemble,pregen,embeddings,extra_buffers,retrieval,rag,conflict,langchain,"
        "gateway,hostile,queue,drift",
    )
    args = parser.parse_args()
    SKIP.update(filter(None, args.reuse.split(",")))
    if not args.estimator_questions:
        SKIP.add("estimators")
    RESULTS.mkdir(exist_ok=True)
    overhead = run("bench_overhead", *(["--routes", "500", "--rounds", "3"] if args.quick else []))
    imports = run("bench_import", *(["--repeats", "5"] if args.quick else []))
    demo = run("bench_demo", *(["--limit", "10"] if args.quick else []))
    ladder_questions = 30 if args.quick else args.ladder_questions
    if ladder_questions and "ladder" not in SKIP:
        launch("ladder_records", "--questions", str(ladder_questions), "--out", str(LADDER_RECORDS))
    ladder = run_optional("bench_ladder", "--records", str(LADDER_RECORDS))
    ensemble = run_optional(
        "bench_ensemble",
        *("--records", str(LADDER_RECORDS)),
        *(["--shuffles", "1", "--bootstrap", "200"] if args.quick else []),
    )
    pregen = run_optional("bench_pregen", "--records", str(LADDER_RECORDS))
    embeddings = run_optional(
        "bench_embeddings",
        *(["--texts", "16", "--rounds", "1", "--index-per-file", "20"] if args.quick else []),
    )
    extra_buffers = run_optional(
        "bench_extra_buffers", *(["--requests", "3"] if args.quick else [])
    )
    if ladder is not None:
        ladder["defaults"] = json.loads(DEFAULTS.read_text())
    estimators = []
    for model in ("weak", "strong"):
        saved = RESULTS / f"estimators-{model}.json"
        if args.estimator_questions:
            questions = 20 if args.quick else args.estimator_questions
            launch(
                "bench_estimators",
                "--model",
                model,
                "--questions",
                str(questions),
                "--json",
                str(saved),
            )
        if saved.exists():
            estimators.append(json.loads(saved.read_text()))
    store = ["--store", str(STORE)]
    corpus = ["--corpus", "50"] if args.quick else []
    retrieval = run_optional("bench_retrieval", *store, *corpus)
    rag_questions = 5 if args.quick else args.rag_questions
    rag = run_optional("bench_rag", *store, *corpus, "--questions", str(rag_questions))
    conflict_questions = 10 if args.quick else args.conflict_questions
    # The strong model answers the default route; its rows are kept, so a rerun resumes.
    conflict = run_optional(
        "bench_conflict",
        *("--model", "strong", "--questions", str(conflict_questions)),
        *([] if args.quick else ["--rows", str(CONFLICT_ROWS)]),
    )
    langchain = run_optional(
        "bench_langchain", *(["--calls", "200", "--rounds", "3"] if args.quick else [])
    )
    gateway = run_optional(
        "bench_gateway", *(["--requests", "100", "--rounds", "2"] if args.quick else [])
    )
    hostile = run_optional("bench_hostile")
    queue = run_optional("bench_queue", *(["--tickets", "200"] if args.quick else []))
    drift = run_optional(
        "bench_drift",
        *("--records", str(LADDER_RECORDS)),
        *(["--routes", "2000", "--replications", "20"] if args.quick else []),
    )
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text(
        render(
            overhead,
            imports,
            demo,
            ladder,
            extra_buffers,
            estimators,
            retrieval,
            rag,
            conflict,
            langchain,
            gateway,
            queue,
            ensemble=ensemble,
            embeddings=embeddings,
            pregen=pregen,
            drift=drift,
            hostile=hostile,
            skipped=SKIP,
            wall_s=WALL,
        )
        + "\n"
    )
    print(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
