"""Run a model and estimators over a labelled dataset, one row at a time, resumably.

Every row goes through a real Router (one model, an always-accept policy), so samples, judge
calls, timeouts and failures behave exactly as in production. Rows are appended to
`results.jsonl` as they finish; a run that is interrupted picks up where it stopped.
Logged answers (rows with a `response`) are replayed instead of asking a model, and a row's own
`label` grades its logged answer in place of the gold answers.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demur.adapters.models.replay import ReplayModel
from demur.correctness import check_grader, grade
from demur.errors import ConfigError
from demur.estimators.registry import check_unique_names
from demur.estimators.specs import estimator_specs
from demur.evaluation.dataset import EvalDataset, EvalItem
from demur.evaluation.grading import JudgeGrader
from demur.policies.basic import Always, FirstOf
from demur.protocols import Estimator, Model, RouteState
from demur.router.budget import Budget
from demur.router.retry import RetryPolicy
from demur.router.router import Router
from demur.router.sampling import Sampling
from demur.types import Abstain, Accept, Decision, Query, Score, Step

RESULTS = "results.jsonl"
SETTINGS = "run.json"


class _NoAnswer:
    """Ends a route whose model gave no answer, so the row is recorded with its error."""

    name = "no-answer"

    def decide(self, state: RouteState) -> Decision | None:
        if state.current.candidate is not None:
            return None
        return Decision(action=Abstain(), reason="evaluation: the model gave no answer")


# The eval's policy: every answer is scored, none is routed elsewhere. It has no threshold, so
# adaptive sampling stops only when the samples agree.
_SCORE_EVERY_ANSWER = FirstOf(
    _NoAnswer(),
    Always(Accept(), "evaluation: every answer is scored", name="accept-everything"),
)


class UnusedSamplesWarning(UserWarning):
    """Logged rows hold more samples than the estimators ask for, so some go unscored."""


@dataclass
class EvalResults:
    """The rows of a run (finished ones, including those from before a resume)."""

    out_dir: Path
    settings: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    resumed: int = 0

    @property
    def estimators(self) -> list[str]:
        return list(self.settings["estimators"])

    def graded(self) -> list[dict[str, Any]]:
        """Rows with an answer and a correctness label."""
        return [r for r in self.rows if r["correct"] is not None]

    def why_none_graded(self) -> str:
        """Why the run has no graded row: no rows at all, or what kept each from an answer."""
        if not self.rows:
            return "the run scored no rows"
        errors = Counter(r["error"] or "no answer" for r in self.rows if r["correct"] is None)
        listed = "; ".join(f"{count}× {error}" for error, count in errors.most_common(3))
        more = f"; and {len(errors) - 3} other reasons" if len(errors) > 3 else ""
        return f"none of the {len(self.rows)} rows got an answer to grade ({listed}{more})"

    def unscored(self) -> dict[str, str]:
        """Estimators with no confidence on any graded row, each with its commonest reasons."""
        graded = self.graded()
        reasons = {}
        for name in self.estimators:
            scores = [r["scores"].get(name, {}) for r in graded]
            if any(s.get("confidence") is not None for s in scores):
                continue
            details = Counter(
                f"{s.get('status', 'missing')}: {s.get('detail') or 'no detail'}" for s in scores
            )
            reasons[name] = "; ".join(f"{n}× {d}" for d, n in details.most_common(2))
        return reasons


def _row(
    item: EvalItem, step: Step, correct: bool | None, graded_by: str | None, latency_s: float
) -> dict[str, Any]:
    candidate = step.candidate
    return {
        "id": item.id,
        "question": item.question,
        "answers": list(item.answers),
        "response": candidate.text if candidate is not None else None,
        "correct": correct,
        "graded_by": graded_by,
        "error": step.error,
        "model": step.model,
        "samples": len(candidate.samples) if candidate is not None else 0,
        "calls": step.calls,
        "cost": step.cost,
        "latency_s": latency_s,
        "scores": {s.estimator: score_entry(s) for s in step.scores},
    }


def score_entry(score: Score) -> dict[str, Any]:
    """One estimator's score as an eval row stores it, under the estimator's name."""
    return {
        "status": score.status,
        "value": score.value,
        "confidence": score.confidence,
        "detail": score.detail,
        "duration_s": score.duration_s,
        "calls": score.calls,
    }


def _open_run(out_dir: Path, settings: dict[str, Any], resume: bool) -> list[dict[str, Any]]:
    """Create the run folder; on resume, check the settings match and load the rows done."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings_path, results_path = out_dir / SETTINGS, out_dir / RESULTS
    if not resume or not results_path.exists():
        results_path.unlink(missing_ok=True)
        settings_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        return []
    previous = (
        json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.exists() else {}
    )
    # Runs recorded before estimator specs were kept have no "specs" to compare.
    compared = [k for k in settings if k != "started_at" and (k != "specs" or k in previous)]
    changed = [k for k in compared if previous.get(k) != settings[k]]
    if changed:
        raise ConfigError(
            f"{out_dir} holds a run with different settings ({', '.join(changed)}); "
            "resume with the same options, or pass --no-resume (or another --out) to start anew"
        )
    rows = []
    for line in results_path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a row cut off by the interruption: it is run again
    # Rewrite without any partial last line.
    results_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


async def run_eval(
    dataset: EvalDataset,
    out_dir: str | Path,
    *,
    model: Model | None = None,
    estimators: Sequence[Estimator],
    asked: Sequence[Model] = (),
    grader: str = "auto",
    judge: Model | None = None,
    sampling: Sampling | None = None,
    estimator_timeout_s: float = 60.0,
    resume: bool = True,
    description: dict[str, Any] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> EvalResults:
    """Answer (or replay) and score every row; return all rows, resumed ones included.

    `asked` are models the estimators ask by name (a judge), besides the one that answers.
    With `model=None` the dataset must carry logged `response`s, which are replayed; a row's
    `label` then grades its response instead of `grader` (or `judge`). With a model, labels
    are not used (they grade the logged answers), so every row needs gold answers.
    """
    if model is None and not dataset.has_responses:
        missing = sum(1 for item in dataset.items if item.response is None)
        raise ConfigError(
            f"no model given and {missing} row(s) have no 'response' to score; pass a model "
            "(demur eval --model NAME) or add the logged answers to the dataset"
        )
    if model is not None:
        ungradable = [item.id for item in dataset.items if not item.answers]
        if ungradable:
            raise ConfigError(
                f"{len(ungradable)} row(s) (e.g. '{ungradable[0]}') have a 'label' but no gold "
                "'answers'; a label grades the logged response, not a model's new answer, so "
                "add 'answers' to grade with a model, or leave out the model to score the log"
            )
    check_grader(grader)
    planned = max((e.needs.samples for e in estimators), default=0)
    if model is None and 0 < planned < dataset.most_samples:
        warnings.warn(
            f"the estimators use {planned} samples per row, and rows have up to "
            f"{dataset.most_samples} logged; give them samples={dataset.most_samples} to "
            "score with every logged sample",
            UnusedSamplesWarning,
            stacklevel=2,
        )
    replay = ReplayModel() if model is None else None
    target: Model = replay if replay is not None else model  # type: ignore[assignment]
    out = Path(out_dir)
    check_unique_names(estimators)
    grader_name = grader if judge is None else f"judge:{judge.name}"
    labelled = replay is not None and any(item.label is not None for item in dataset.items)
    settings = {
        "model": target.name,
        "estimators": [e.name for e in estimators],
        "needs": {e.name: e.needs.model_dump() for e in estimators},
        # How each estimator was built, so `demur ensemble fit` rebuilds it with its options.
        "specs": {
            name: spec.model_dump() if spec is not None else None
            for name, spec in estimator_specs(list(estimators)).items()
        },
        "grader": f"label, else {grader_name}" if labelled else grader_name,
        "sampling": (sampling or Sampling()).model_dump(),
        **({"asked": [m.name for m in asked]} if asked else {}),
        **(description or {}),
    }
    rows = _open_run(out, settings, resume)
    results = EvalResults(out_dir=out, settings=settings, rows=rows, resumed=len(rows))
    done = {r["id"] for r in rows}
    router = Router(
        [target, *asked],
        estimators=estimators,
        policy=_SCORE_EVERY_ANSWER,
        sampling=sampling,
        estimator_timeout_s=estimator_timeout_s,
        budget=Budget(max_steps=1, deadline_s=3600),
        retry=RetryPolicy(max_attempts=3),
    )
    judge_grader = JudgeGrader(judge, fallback=grader) if judge is not None else None
    with (out / RESULTS).open("a", encoding="utf-8") as sink:
        for item in dataset.items:
            if item.id in done:
                continue
            if replay is not None:
                replay.load(item.response or "", item.samples, item.logprobs)
            started = time.perf_counter()
            verdict = await router.aroute(Query(item.question, context=item.context, id=item.id))
            step = verdict.steps[0]
            response = step.candidate.text if step.candidate is not None else None
            correct: bool | None = None
            graded_by: str | None = None
            if response is not None:
                if replay is not None and item.label is not None:
                    correct, graded_by = item.label, "label"
                elif judge_grader is not None:
                    correct = await judge_grader.agrade(item.question, response, item.answers)
                    graded_by = grader_name
                else:
                    correct, graded_by = grade(response, item.answers, grader), grader
            row = _row(item, step, correct, graded_by, time.perf_counter() - started)
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            results.rows.append(row)
            if on_row is not None:
                on_row(row)
    return results
