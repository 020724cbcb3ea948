"""Test doubles and contract checks for code built on demur.

    from demur.testing import Reply, ScriptedModel, check_estimator

    score = check_estimator(MyEstimator(), attempt)   # raises AssertionError on a broken contract

The checks say what every component of its kind must do, whatever it computes: the same
checks run over demur's own estimators, policies and groundings.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from demur.adapters.models.replay import ReplayModel
from demur.adapters.models.scripted import Reply, ScriptedModel
from demur.protocols import (
    Attempt,
    BranchPlan,
    Estimator,
    Grounding,
    Model,
    Needs,
    Policy,
    RouterSpec,
    RouteState,
)
from demur.scoring import failure_score, run_estimator
from demur.types import Branch, Decision, GenerationRequest, Query, Score


def check_estimator(estimator: Estimator, attempt: Attempt, timeout_s: float = 30.0) -> Score:
    """Score `attempt` and check the Estimator contract; returns the Score.

    A Score named after the estimator, with a confidence in [0, 1] exactly when its status is
    "ok"; `needs` is a Needs; an in-process estimator scores the same through `aestimate`.
    """
    assert isinstance(estimator, Estimator), f"{estimator!r} is not a demur Estimator"
    assert isinstance(estimator.needs, Needs), f"{estimator.name}: needs is not a Needs"
    score = asyncio.run(run_estimator(estimator, attempt, timeout_s))
    assert isinstance(score, Score)
    assert score.estimator == estimator.name, f"{score.estimator!r} != {estimator.name!r}"
    if score.status == "ok":
        confidence = score.confidence
        assert confidence is not None and 0.0 <= confidence <= 1.0, f"{score!r}"
        assert score.value is None or not math.isnan(score.value), f"{score!r}"
    else:
        assert score.confidence is None, f"a {score.status} score has a confidence: {score!r}"
    if estimator.in_process:
        try:
            again = asyncio.run(estimator.aestimate(attempt))
        except Exception as exc:
            again = failure_score(estimator.name, exc)
        assert (again.status, again.confidence) == (score.status, score.confidence), (
            f"{estimator.name}: aestimate scores differently from estimate"
        )
    return score


def check_policy(policy: Policy, states: Sequence[RouteState], spec: RouterSpec) -> None:
    """Check the Policy contract: valid against `spec`, pure and deterministic on `states`."""
    assert isinstance(policy, Policy), f"{policy!r} is not a demur Policy"
    policy.validate(spec)
    for state in states:
        first = policy.decide(state)
        assert isinstance(first, Decision), f"{policy.name} returned {first!r}"
        assert first == policy.decide(state), f"{policy.name} decided differently twice"
        assert first.reason, f"{policy.name} gave no reason for {first.action!r}"
    for model in spec.models:
        threshold = policy.threshold_for(model)
        assert threshold is None or 0.0 <= threshold <= 1.0, f"threshold_for({model!r})"


def check_grounding(
    grounding: Grounding, query: Query, retrievers: Sequence[str], branches: Sequence[Branch]
) -> None:
    """Check the Grounding contract: plans named branches; `select` is pure and deterministic."""
    assert isinstance(grounding, Grounding), f"{grounding!r} is not a demur Grounding"
    grounding.validate(RouterSpec(models=("model",), retrievers=tuple(retrievers)))
    plans = grounding.plan(query, retrievers, None)
    assert plans and all(isinstance(p, BranchPlan) for p in plans), f"plan gave {plans!r}"
    assert len({p.name for p in plans}) == len(plans), "branch names must be unique"
    first = grounding.select(query, branches)
    assert first == grounding.select(query, branches), f"{grounding.name}: select is not pure"
    assert first.branch is None or first.branch in {b.name for b in branches}
    assert first.confidence is None or 0.0 <= first.confidence <= 1.0


def check_model(model: Model, question: str = "Say yes.") -> None:
    """Check the Model contract on one request: a completion, usage, and a clean close."""
    assert isinstance(model, Model), f"{model!r} is not a demur Model"

    async def run() -> None:
        request = GenerationRequest(prompt=question, max_tokens=8)
        generation = await model.agenerate(request)
        assert generation.completions, f"{model.name} returned no completion"
        assert model.price.cost(generation.usage) >= 0.0
        await model.aclose()

    asyncio.run(run())


__all__ = [
    "ReplayModel",
    "Reply",
    "ScriptedModel",
    "check_estimator",
    "check_grounding",
    "check_model",
    "check_policy",
]
