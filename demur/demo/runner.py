"""Route the demo questions and compare the router with always asking one model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from demur.correctness import is_correct
from demur.errors import ModelError
from demur.router.router import Router
from demur.types import Query, Verdict


@dataclass(frozen=True)
class DemoQuestion:
    id: str
    question: str
    context: str
    answers: tuple[str, ...]


def load_questions(path: str | Path | None = None, limit: int | None = None) -> list[DemoQuestion]:
    """The bundled HaluEval-QA sample (see demur/demo/NOTICE.md), or a JSONL file of your own."""
    if path is None:
        text = resources.files("demur.demo").joinpath("halueval_qa_sample.jsonl").read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    questions = []
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            questions.append(
                DemoQuestion(
                    id=row["id"],
                    question=row["question"],
                    context=row.get("context", ""),
                    answers=tuple(row["answers"]),
                )
            )
    return questions[:limit] if limit is not None else questions


@dataclass(frozen=True)
class Guarantee:
    """The error target the default thresholds were fitted for, and on what."""

    alpha: float
    delta: float
    thresholds: Mapping[str, float]
    fitted_on: str


def default_guarantee() -> Guarantee:
    """The conformal fit behind the default config's thresholds (see docs/benchmarks.md)."""
    text = resources.files("demur.demo").joinpath("thresholds.json").read_text("utf-8")
    fit = json.loads(text)
    return Guarantee(fit["alpha"], fit["delta"], fit["thresholds"], fit["fitted_on"])


@dataclass
class DemoRow:
    """One question: the router's verdict, and what each model alone would have said.

    `baseline_seconds` is how long each model took to answer it alone (read from the route's
    step where the route called that model).
    """

    question: DemoQuestion
    verdict: Verdict
    baseline_answers: dict[str, str | None]
    baseline_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def correct(self) -> bool | None:
        """Whether the routed answer is right; None when the router did not answer."""
        if self.verdict.status != "answered":
            return None
        return is_correct(self.verdict.answer, self.question.answers)

    def baseline_correct(self, model: str) -> bool:
        return is_correct(self.baseline_answers.get(model), self.question.answers)


@dataclass
class DemoReport:
    """The demo's rows and what they add up to; `guarantee` when the thresholds carry one."""

    models: tuple[str, ...]
    rows: list[DemoRow] = field(default_factory=list)
    wall_s: float = 0.0
    guarantee: Guarantee | None = None

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.verdict.status == status)

    @property
    def escalated(self) -> int:
        return sum(1 for r in self.rows if r.verdict.escalated)

    @property
    def answered_accuracy(self) -> float | None:
        graded = [r.correct for r in self.rows if r.correct is not None]
        return sum(graded) / len(graded) if graded else None

    @property
    def coverage(self) -> float:
        return self.count("answered") / len(self.rows) if self.rows else 0.0

    def baseline_accuracy(self, model: str) -> float:
        return sum(r.baseline_correct(model) for r in self.rows) / len(self.rows)

    def gain_over(self, model: str) -> float | None:
        """Accuracy of the answered questions minus that of always asking `model`."""
        accuracy = self.answered_accuracy
        return None if accuracy is None else accuracy - self.baseline_accuracy(model)

    def model_call_share(self, model: str) -> float:
        """Share of routed questions on which `model` was called at least once."""
        return self.reached(model) / len(self.rows) if self.rows else 0.0

    def reached(self, model: str) -> int:
        """How many questions `model` was asked."""
        return sum(1 for r in self.rows if any(s.model == model for s in r.verdict.steps))

    @property
    def route_s(self) -> float:
        """Time spent inside routes, without the extra baseline calls."""
        return sum(r.verdict.latency_s for r in self.rows)

    def baseline_s(self, model: str) -> float:
        """Seconds `model` alone takes to answer every question."""
        return sum(r.baseline_seconds.get(model, 0.0) for r in self.rows)

    def guarantee_json(self) -> dict[str, Any] | None:
        """The error target, what these questions showed, and how loosely so few bound it.

        The guarantee is about the error rate over many questions like those it was fitted on;
        a few dozen answers estimate that rate only roughly, hence the 95% upper bound.
        """
        if self.guarantee is None:
            return None
        from demur.calibration.conformal import error_upper_bound

        graded = [r.correct for r in self.rows if r.correct is not None]
        wrong = sum(1 for ok in graded if not ok)
        error = wrong / len(graded) if graded else None
        return {
            "alpha": self.guarantee.alpha,
            "delta": self.guarantee.delta,
            "fitted_on": self.guarantee.fitted_on,
            "answered": len(graded),
            "observed_error": error,
            "error_upper_95": error_upper_bound(wrong, len(graded), 0.05) if graded else None,
            "held": error is not None and error <= self.guarantee.alpha,
        }

    def to_json(self) -> dict[str, object]:
        largest = self.models[-1]
        return {
            "questions": len(self.rows),
            "answered": self.count("answered"),
            "escalated": self.escalated,
            "pending_human": self.count("pending"),
            "abstained": self.count("abstained"),
            "coverage": self.coverage,
            "answered_accuracy": self.answered_accuracy,
            "gain_over_largest": self.gain_over(largest),
            "baseline_accuracy": {m: self.baseline_accuracy(m) for m in self.models},
            "model_call_share": {m: self.model_call_share(m) for m in self.models},
            "reached": {m: self.reached(m) for m in self.models},
            "guarantee": self.guarantee_json(),
            f"always_{largest}_seconds": self.baseline_s(largest),
            "wall_s": self.wall_s,
            "route_s": self.route_s,
            "route_seconds_per_question": self.route_s / len(self.rows) if self.rows else None,
        }


async def _baseline(
    router: Router, model: str, query: Query, verdict: Verdict
) -> tuple[str | None, float]:
    """What `model` alone answers, and in how many seconds: from the route's step when it was
    asked there (decoding is deterministic, so it would answer the same), else asked now."""
    for step in verdict.steps:
        if step.model == model:
            return (step.candidate.text if step.candidate is not None else None), step.latency_s
    started = time.perf_counter()
    try:
        generation = await router.models[model].agenerate(router.request_for(model, query))
    except ModelError:
        return None, time.perf_counter() - started
    return generation.completions[0].text.strip(), time.perf_counter() - started


def reachable_models(router: Router) -> tuple[str, ...]:
    """The models a route can call, in the router's order: the baselines worth comparing.

    A ladder reaches its start model and the models its rungs escalate or retrieve with; any
    other policy, or a pre-generation stage that may start elsewhere, may reach them all.
    """
    from demur.policies.ladder import Ladder
    from demur.types import Escalate, RetrieveMore

    policy = router.policy
    if not isinstance(policy, Ladder) or router.pregen is not None:
        return tuple(router.models)
    reached = {router.start}
    for rung in policy.rungs:
        model = rung.model if isinstance(rung, Escalate | RetrieveMore) else None
        if model:
            reached.add(model)
    return tuple(name for name in router.models if name in reached)


async def run_demo(
    router: Router,
    questions: Sequence[DemoQuestion],
    *,
    on_row: Callable[[DemoRow], None] | None = None,
    guarantee: Guarantee | None = None,
) -> DemoReport:
    """Route every question, then fill in the stand-alone answer of each model the route can
    reach, for comparison (a configured model no route calls is not asked).

    Decoding is greedy, so a model's answer inside a route is the answer it gives alone.
    """
    report = DemoReport(models=reachable_models(router), guarantee=guarantee)
    started = time.perf_counter()
    for item in questions:
        query = Query(item.question, context=(item.context,) if item.context else (), id=item.id)
        verdict = await router.aroute(query)
        baselines = {m: await _baseline(router, m, query, verdict) for m in report.models}
        row = DemoRow(
            question=item,
            verdict=verdict,
            baseline_answers={m: answer for m, (answer, _) in baselines.items()},
            baseline_seconds={m: seconds for m, (_, seconds) in baselines.items()},
        )
        report.rows.append(row)
        if on_row is not None:
            on_row(row)
    report.wall_s = time.perf_counter() - started
    return report
