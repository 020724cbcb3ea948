"""Logged answers for the benchmarks that score logs: HaluEval-QA with its passages, one greedy
answer and `--samples` sampled answers each, written in `demur eval`'s row format.

    python -m benchmarks.logged_samples --model weak --questions 200 --samples 10 \
        --out benchmarks/results/logged-samples.jsonl

Rows already in `--out` are kept and skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path

from benchmarks.common import halueval_rows
from demur import Accept, Always, MeanTokenLogprob, Query, Router, SampleAgreement
from demur.config import build_model, default_config


def logged_ids(out: Path) -> set[str]:
    """The ids of the rows already in `out`."""
    if not out.exists():
        return set()
    return {json.loads(line)["id"] for line in out.read_text().splitlines() if line.strip()}


async def generate(model_name: str, questions: int, samples: int, seed: int, out: Path) -> None:
    rows = halueval_rows()
    picked = random.Random(seed).sample(range(len(rows)), questions)
    done = logged_ids(out)
    config = default_config()
    model = build_model(model_name, config.models[model_name])
    router = Router(
        [model],
        # One estimator that asks for samples and one that asks for log-probabilities.
        estimators=[SampleAgreement(similarity="rougeL", samples=samples), MeanTokenLogprob()],
        policy=Always(Accept()),
    )
    try:
        with out.open("a", encoding="utf-8") as sink:
            for count, index in enumerate(picked, start=1):
                row_id = f"halueval-qa-{index}"
                if row_id in done:
                    continue
                row = rows[index]
                started = time.perf_counter()
                verdict = await router.aroute(
                    Query(question=row["question"], context=(row["knowledge"],))
                )
                step = verdict.steps[0]
                candidate = step.candidate
                if candidate is None or len(candidate.samples) < samples:
                    # Not logged, so a rerun tries the row again.
                    print(f"{row_id}: incomplete ({step.error or step.notes})", flush=True)
                    continue
                logged = {
                    "id": row_id,
                    "question": row["question"],
                    "answers": [row["right_answer"]],
                    "context": row["knowledge"],
                    "response": candidate.text,
                    "samples": [sample.text for sample in candidate.samples],
                    "logprobs": [t.logprob for t in candidate.tokens or ()],
                }
                sink.write(json.dumps(logged) + "\n")
                sink.flush()
                print(f"{count}/{questions} {time.perf_counter() - started:.1f}s", flush=True)
    finally:
        await router.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="weak", help="a model of the default config")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/logged-samples.jsonl"))
    args = parser.parse_args()
    asyncio.run(generate(args.model, args.questions, args.samples, args.seed, args.out))


if __name__ == "__main__":
    main()
