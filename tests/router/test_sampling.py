"""Samples drawn once per attempt and shared; adaptive sampling; estimators calling models."""

from __future__ import annotations

import pytest

from demur import (
    Generation,
    GenerationRequest,
    Ladder,
    MeanTokenLogprob,
    Needs,
    Price,
    Reply,
    Router,
    Score,
    ScriptedModel,
    ServerError,
)
from demur.bases import EstimatorBase
from demur.estimators.base import Attempt
from demur.router.sampling import Sampling, agreeing_needed, agreement, settled


class Agreement(EstimatorBase):
    """Share of samples equal to the answer: a minimal sampling estimator for these tests."""

    def __init__(self, name: str = "agreement", samples: int = 4) -> None:
        self.name = name
        self.needs = Needs(samples=samples)
        self.seen: list[tuple[str, ...]] = []

    async def aestimate(self, attempt: Attempt) -> Score:
        texts = tuple(s.text for s in attempt.candidate.samples)
        self.seen.append(texts)
        share = agreement(attempt.candidate.text, texts) / len(texts)
        return Score(estimator=self.name, value=share, confidence=share)


def sampled_model(*samples: str) -> ScriptedModel:
    """Answers greedily with 'Paris'; sampled requests get the given answers in turn."""
    queue = list(samples)

    def script(request: GenerationRequest) -> Reply:
        if request.temperature == 0:
            return Reply.confident("Paris", 0.9)
        return Reply(text=queue.pop(0))

    return ScriptedModel("m", script, price=Price(output_per_1k=1000.0))


def test_samples_are_drawn_once_and_shared_by_every_estimator():
    model = sampled_model("Paris", "paris.", "Lyon", "Paris", "x", "y")
    first, second = Agreement("a", samples=4), Agreement("b", samples=2)
    router = Router([model], estimators=[first, second], policy=Ladder(0.5))
    verdict = router.route("Capital of France?")
    assert first.seen == second.seen == [("Paris", "paris.", "Lyon", "Paris")]
    assert verdict.steps[0].scores[0].confidence == pytest.approx(0.75)
    sampled = [r for r in model.calls if r.temperature > 0]
    assert len(sampled) == 1 and sampled[0].n == 4 and sampled[0].temperature == 1.0
    step = verdict.steps[0]
    assert step.calls == 2
    assert step.cost == pytest.approx(1 + 4)  # one answer word, four sampled words


def test_no_samples_are_drawn_when_no_estimator_wants_them():
    model = sampled_model()
    Router([model], estimators=[MeanTokenLogprob()], policy=Ladder(0.5)).route("Q?")
    assert all(r.temperature == 0 for r in model.calls)


def test_adaptive_sampling_stops_when_all_samples_agree():
    model = sampled_model(*["Paris"] * 10)
    router = Router(
        [model],
        estimators=[Agreement(samples=10)],
        policy=Ladder(0.5),
        sampling=Sampling(adaptive=True, batch_size=2, min_samples=2),
    )
    verdict = router.route("Q?")
    assert len(verdict.steps[0].candidate.samples) == 2
    assert verdict.steps[0].calls == 2


def test_adaptive_sampling_stops_when_the_outcome_cannot_change():
    # Threshold 0.5 of 6 planned: after 4 disagreeing samples, at most 2/6 can agree.
    model = sampled_model("a", "b", "c", "d", "Paris", "Paris")
    router = Router(
        [model],
        estimators=[Agreement(samples=6)],
        policy=Ladder(0.5),
        sampling=Sampling(adaptive=True, batch_size=2, min_samples=2),
    )
    verdict = router.route("Q?")
    assert len(verdict.steps[0].candidate.samples) == 4


def test_settled_rule():
    assert settled("x", ["x", "x"], planned=6, min_samples=2, threshold=None)
    assert not settled("x", ["x", "y"], planned=6, min_samples=2, threshold=None)
    assert not settled("x", ["x"], planned=6, min_samples=2, threshold=0.5)
    assert settled("x", ["x", "x", "x", "y"], planned=6, min_samples=2, threshold=0.5)
    assert not settled("x", ["x", "y", "x", "y"], planned=6, min_samples=2, threshold=0.5)
    assert settled("x", ["y", "y", "y", "y"], planned=6, min_samples=2, threshold=0.5)


def test_agreeing_samples_needed_grow_with_the_threshold_at_a_unanimity_level():
    assert agreeing_needed(2, None, None) == agreeing_needed(2, 0.9, None) == 2
    assert agreeing_needed(2, None, 0.1) == 4  # 0.5 ** 4 = 0.0625 <= 0.1 < 0.5 ** 3
    assert agreeing_needed(2, 0.7, 0.1) == 7  # 0.7 ** 7 = 0.082
    assert agreeing_needed(2, 0.5, 0.25) == 2
    assert agreeing_needed(5, 0.5, 0.25) == 5  # never fewer than min_samples
    assert agreeing_needed(2, 0.0, 0.1) == 2
    assert agreeing_needed(2, 1.0, 0.1) > 100


def test_settled_rule_with_a_unanimity_level():
    assert not settled(
        "x", ["x", "x"], planned=10, min_samples=2, threshold=None, unanimity_level=0.1
    )
    assert settled("x", ["x"] * 4, planned=10, min_samples=2, threshold=None, unanimity_level=0.1)
    # The threshold still settles what no remaining sample can change: 6 of 8 agree at 0.5.
    assert settled("x", ["x"] * 6, planned=8, min_samples=2, threshold=0.5, unanimity_level=0.01)


def test_adaptive_sampling_at_a_unanimity_level_draws_until_agreement_is_unlikely_by_chance():
    model = sampled_model(*["Paris"] * 10)
    router = Router(
        [model],
        estimators=[Agreement(samples=10)],
        policy=Ladder(0.5),
        sampling=Sampling(adaptive=True, batch_size=2, min_samples=2, unanimity_level=0.1),
    )
    verdict = router.route("Q?")
    assert len(verdict.steps[0].candidate.samples) == 4


def test_a_failed_sampling_call_leaves_the_samples_drawn_so_far():
    calls = {"n": 0}

    def script(request: GenerationRequest) -> Reply | Exception:
        if request.temperature == 0:
            return Reply.confident("Paris", 0.9)
        calls["n"] += 1
        return Reply(text="Paris") if calls["n"] == 1 else ServerError("sampler down")

    model = ScriptedModel("m", script)
    router = Router(
        [model],
        estimators=[Agreement(samples=4)],
        policy=Ladder(0.5),
        sampling=Sampling(adaptive=True, batch_size=1, min_samples=3),
    )
    from demur import RetryPolicy

    router.retry = RetryPolicy(max_attempts=1)
    verdict = router.route("Q?")
    assert [s.text for s in verdict.steps[0].candidate.samples] == ["Paris"]
    assert verdict.status == "answered"


class Judge(EstimatorBase):
    """Asks a model whether the answer is right: exercises Attempt.ask."""

    name = "judge"
    needs = Needs()

    def __init__(self, target: object = None) -> None:
        self.target = target

    async def aestimate(self, attempt: Attempt) -> Score:
        request = GenerationRequest(prompt=f"Is '{attempt.candidate.text}' right?", max_tokens=2)
        generation: Generation = await attempt.ask(request, self.target)  # type: ignore[arg-type]
        verdict = generation.completions[0].text
        confidence = 1.0 if verdict == "yes" else 0.0
        return Score(estimator=self.name, value=confidence, confidence=confidence)


def test_estimators_can_ask_another_model_and_the_step_counts_it():
    weak = ScriptedModel("weak", [Reply.confident("Paris", 0.9)], price=Price(output_per_1k=1000))
    judge = ScriptedModel("judge", ["yes"], price=Price(output_per_1k=2000))
    router = Router([weak, judge], estimators=[Judge("judge")], policy=Ladder(0.5))
    verdict = router.route("Capital?")
    assert verdict.confidence == 1.0
    assert verdict.steps[0].calls == 2
    assert verdict.steps[0].scores[0].calls == 1
    assert verdict.steps[0].cost == pytest.approx(1 + 2)
    assert judge.calls[0].prompt == "Is 'Paris' right?"


def test_an_outside_judge_model_object_works_too():
    weak = ScriptedModel("weak", [Reply.confident("Paris", 0.9)])
    outside = ScriptedModel("outside", ["no"])
    verdict = Router([weak], estimators=[Judge(outside)], policy=Ladder(0.5)).route("Q?")
    assert verdict.confidence == 0.0
    assert outside.calls


def test_asking_an_unknown_model_fails_the_estimator_only():
    weak = ScriptedModel("weak", [Reply.confident("Paris", 0.9)])
    verdict = Router([weak], estimators=[Judge("jugde")], policy=Ladder(0.5)).route("Q?")
    score = verdict.steps[0].scores[0]
    assert score.status == "failed"
    assert "model 'jugde'" in (score.detail or "")


def test_attempt_without_a_caller_is_unavailable():
    import asyncio

    from demur import Candidate, EstimatorUnavailable, Query

    attempt = Attempt(query=Query("Q?"), candidate=Candidate(text="x", model="m"))
    with pytest.raises(EstimatorUnavailable, match="no model to ask"):
        asyncio.run(attempt.ask(GenerationRequest(prompt="p")))
