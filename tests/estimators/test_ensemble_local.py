"""A fitted ensemble scoring a real local model's answer inside a router."""

from __future__ import annotations

import random

import pytest

from demur import Ensemble, Ladder, LlamaCppModel, Query, Router

pytestmark = pytest.mark.local_model


def test_a_fitted_ensemble_scores_a_real_answer(tmp_path):
    rng = random.Random(3)
    rows, correct = [], []
    for _ in range(200):
        p = rng.random()
        rows.append({"mean_logprob": p, "min_prob": min(1.0, p * rng.uniform(0.5, 1.0))})
        correct.append(rng.random() < p)
    fitted = Ensemble.fit(rows, correct)
    path = tmp_path / "ensemble.json"
    fitted.save(path)
    ensemble = Ensemble.load(path)

    router = Router(
        [LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=16)],
        estimators=[ensemble],
        policy=Ladder(0.0),
    )
    with router:
        verdict = router.route(
            Query("Who wrote Emma?", context=("Emma is a novel by Jane Austen.",))
        )
    score = verdict.steps[0].scores[0]
    assert score.status == "ok", score.detail
    assert 0.0 <= (score.confidence or -1) <= 1.0
    assert verdict.steps[0].candidate is not None and verdict.steps[0].candidate.tokens
