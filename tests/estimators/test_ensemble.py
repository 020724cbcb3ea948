"""The Ensemble estimator: fitting, combining, imputing, saving, and routing."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

from demur import (
    ConfigError,
    EstimatorError,
    EstimatorUnavailable,
    Ladder,
    MeanTokenEntropy,
    MeanTokenLogprob,
    MinTokenProb,
    Needs,
    Query,
    Reply,
    Router,
    Score,
    ScriptedModel,
    TokenLogprob,
)
from demur.bases import EstimatorBase
from demur.calibration.metrics import auroc
from demur.estimators.base import Attempt
from demur.estimators.ensemble import Ensemble, load_ensemble
from demur.types import Candidate

pytest.importorskip("sklearn")


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def two_signals(n: int, seed: int, missing_every: int = 0) -> tuple[list[dict], np.ndarray]:
    """Correctness depends on two independent signals; each member sees one, with noise."""
    rng = np.random.default_rng(seed)
    s1, s2 = rng.normal(size=n), rng.normal(size=n)
    correct = rng.uniform(size=n) < 1 / (1 + np.exp(-(1.5 * s1 + 1.5 * s2)))
    first = 1 / (1 + np.exp(-(s1 + 0.3 * rng.normal(size=n))))
    second = 1 / (1 + np.exp(-(s2 + 0.3 * rng.normal(size=n))))
    rows = [
        {
            "mean_logprob": float(a),
            "min_prob": None if missing_every and i % missing_every == 0 else float(b),
        }
        for i, (a, b) in enumerate(zip(first, second, strict=True))
    ]
    return rows, correct


class AsyncEstimator(EstimatorBase):
    """An estimator with only the async path, as one that calls a judge model would have."""

    needs = Needs(samples=3)

    def __init__(
        self,
        name: str,
        confidence: float = 0.7,
        delay_s: float = 0.0,
        error: Exception | None = None,
    ) -> None:
        self.name = name
        self.confidence = confidence
        self.delay_s = delay_s
        self.error = error

    async def aestimate(self, attempt: Attempt) -> Score:
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return Score(estimator=self.name, value=self.confidence, confidence=self.confidence)


def attempt(text: str = "Paris", probs: tuple[float, ...] | None = (0.9,)) -> Attempt:
    """An offline attempt whose answer has these token probabilities (None: no logprobs)."""
    tokens = None
    if probs is not None:
        tokens = tuple(
            TokenLogprob(token=f"t{i}", logprob=math.log(p)) for i, p in enumerate(probs)
        )
    return Attempt(
        query=Query("Capital?"), candidate=Candidate(text=text, model="m", tokens=tokens)
    )


WEIGHTS = {"mean_logprob": 1.0, "min_prob": 0.5}


def hand_ensemble() -> Ensemble:
    return Ensemble([MeanTokenLogprob(), MinTokenProb()], weights=WEIGHTS, intercept=0.2)


# --- combining ----------------------------------------------------------------------------------


def test_combination_is_a_logistic_function_of_member_logits():
    ensemble = hand_ensemble()
    expected = sigmoid(0.2 + 1.0 * logit(0.6) + 0.5 * logit(0.4))
    assert ensemble.combine({"mean_logprob": 0.6, "min_prob": 0.4}) == pytest.approx(expected)
    many = ensemble.combine_many([{"mean_logprob": 0.6, "min_prob": 0.4}, {}])
    assert many[0] == pytest.approx(expected)
    assert math.isnan(many[1])


def test_a_missing_member_takes_its_imputation_value():
    ensemble = Ensemble(
        [MeanTokenLogprob(), MinTokenProb()],
        weights=WEIGHTS,
        imputation={"mean_logprob": 0.5, "min_prob": 0.3},
    )
    expected = sigmoid(logit(0.6) + 0.5 * logit(0.3))
    assert ensemble.combine({"mean_logprob": 0.6, "min_prob": None}) == pytest.approx(expected)
    assert ensemble.combine({"mean_logprob": 0.6, "min_prob": math.nan}) == pytest.approx(expected)
    with pytest.raises(EstimatorUnavailable, match="every member"):
        ensemble.combine({"mean_logprob": None})


def test_needs_are_the_merge_of_the_members_needs():
    ensemble = Ensemble([MeanTokenLogprob(), MeanTokenEntropy(top_k=4), AsyncEstimator("judge")])
    assert ensemble.needs == Needs(logprobs=True, top_logprobs=4, samples=3)


def test_sync_and_async_paths_agree_and_report_imputation():
    ensemble = Ensemble([MeanTokenLogprob(), MeanTokenEntropy(top_k=3)], weights=[1.0, 2.0])
    assert ensemble.estimate is not None  # every member is in-process
    one = attempt(probs=(0.9, 0.8))  # no top-k alternatives: entropy is unavailable
    score = ensemble.estimate(one)
    assert asyncio.run(ensemble.aestimate(one)) == score
    assert score.confidence == pytest.approx(sigmoid(logit(math.sqrt(0.72))))
    assert score.value == pytest.approx(logit(math.sqrt(0.72)))
    assert score.detail is not None and "imputed entropy (unavailable:" in score.detail


def test_all_members_unavailable_makes_the_ensemble_unavailable():
    with pytest.raises(EstimatorUnavailable, match="no member of ensemble produced a score"):
        hand_ensemble().estimate(attempt(probs=None))


def test_failing_members_are_imputed_and_all_failing_is_an_error():
    ensemble = Ensemble(
        [AsyncEstimator("a", error=RuntimeError("boom")), AsyncEstimator("b", 0.8)],
        weights=[1.0, 1.0],
    )
    assert not ensemble.in_process  # not every member is
    score = asyncio.run(ensemble.aestimate(attempt()))
    assert score.confidence == pytest.approx(0.8)
    assert "a (failed: a raised RuntimeError)" in (score.detail or "")
    broken = Ensemble([AsyncEstimator("a", error=RuntimeError("boom"))], weights=[1.0])
    with pytest.raises(EstimatorError, match="a: failed: a raised RuntimeError") as info:
        asyncio.run(broken.aestimate(attempt()))
    assert not isinstance(info.value, EstimatorUnavailable)


def test_slow_async_members_time_out_and_the_rest_still_count():
    ensemble = Ensemble(
        [
            AsyncEstimator("a", 0.6, delay_s=0.3),
            AsyncEstimator("b", 0.7, delay_s=0.3),
            AsyncEstimator("slow", 0.9, delay_s=5.0),
        ],
        weights=[1.0, 1.0, 1.0],
        member_timeout_s=0.5,
    )
    score = asyncio.run(ensemble.aestimate(attempt()))
    assert score.confidence == pytest.approx(sigmoid(logit(0.6) + logit(0.7)))
    assert "slow (timeout)" in (score.detail or "")


# --- fitting ------------------------------------------------------------------------------------


def test_fitted_ensemble_beats_its_best_member_on_held_out_data():
    rows, correct = two_signals(3000, seed=0)
    ensemble = Ensemble([MeanTokenLogprob(), MinTokenProb()]).fit(rows, correct, model="weak")
    test_rows, test_correct = two_signals(20_000, seed=1)
    members = [
        auroc([r[name] for r in test_rows], test_correct) for name in ("mean_logprob", "min_prob")
    ]
    combined = auroc(ensemble.combine_many(test_rows), test_correct)
    assert combined >= max(members) + 0.03, (combined, members)
    assert ensemble.weights is not None and np.all(ensemble.weights > 0)
    meta = ensemble.metadata
    assert meta is not None and meta.estimators == ("mean_logprob", "min_prob")
    assert meta.n == 3000 and meta.model == "weak"
    assert meta.metrics["ensemble"]["auroc"] > meta.metrics["mean_logprob"]["auroc"]


def test_fit_on_the_class_builds_members_from_the_row_keys():
    rows, correct = two_signals(500, seed=6)
    rows = [{**r, "never_scored": None} for r in rows]
    ensemble = Ensemble.fit(rows, correct, data="qa.jsonl")
    assert [type(m) for m in ensemble.members] == [MeanTokenLogprob, MinTokenProb]
    assert ensemble.names == ("mean_logprob", "min_prob")
    assert ensemble.metadata is not None and ensemble.metadata.data == "qa.jsonl"
    mine = Ensemble([MinTokenProb(), MeanTokenLogprob()])
    assert mine.fit(rows, correct) is mine  # on an instance: fits it in place, keeps its members
    row = {"mean_logprob": 0.7, "min_prob": 0.2}
    assert mine.combine(row) == pytest.approx(ensemble.combine(row), rel=1e-6)
    with pytest.raises(ConfigError, match="no row holds any score"):
        Ensemble.fit([{"a": None}] * 20, correct[:20])


def test_members_may_be_given_by_registry_name():
    ensemble = Ensemble(["mean_logprob", "min_prob"], weights=WEIGHTS, intercept=0.2)
    assert [type(m) for m in ensemble.members] == [MeanTokenLogprob, MinTokenProb]
    assert ensemble.estimate is not None
    assert ensemble.estimate(attempt(probs=(0.6,))).confidence == pytest.approx(
        sigmoid(0.2 + 1.5 * logit(0.6))
    )


def test_fit_imputes_missing_members_with_the_training_mean_logit():
    rows, correct = two_signals(2000, seed=2, missing_every=4)
    ensemble = Ensemble([MeanTokenLogprob(), MinTokenProb()]).fit(rows, correct)
    seen = np.array([r["min_prob"] for r in rows if r["min_prob"] is not None])
    expected = sigmoid(float(np.mean(np.log(seen / (1 - seen)))))
    assert ensemble.imputation[1] == pytest.approx(expected)
    missing = ensemble.combine({"mean_logprob": 0.7, "min_prob": None})
    assert missing == pytest.approx(ensemble.combine({"mean_logprob": 0.7, "min_prob": expected}))
    assert ensemble.metadata is not None
    assert ensemble.metadata.metrics["min_prob"]["n"] == len(seen)


def test_fit_refuses_bad_data():
    ensemble = Ensemble([MeanTokenLogprob(), MinTokenProb()])
    rows, correct = two_signals(50, seed=3)
    with pytest.raises(ConfigError, match="at least 10 rows"):
        ensemble.fit(rows[:5], correct[:5])
    with pytest.raises(ConfigError, match="all 50 answers are correct"):
        ensemble.fit(rows, np.ones(50, dtype=bool))
    with pytest.raises(ConfigError, match="got 50 rows but 49 labels"):
        ensemble.fit(rows, correct[:49])
    renamed = [{"mean_logprob": r["mean_logprob"], "minprob": r["min_prob"]} for r in rows]
    with pytest.raises(
        ConfigError, match="member.s. min_prob; rows hold the keys mean_logprob, minprob"
    ):
        ensemble.fit(renamed, correct)
    with pytest.raises(ConfigError, match=r"\[0, 1\].*row 0 mean_logprob=1.5"):
        ensemble.fit([{"mean_logprob": 1.5}, *rows[1:]], correct)


def test_unfitted_ensemble_explains_how_to_fit():
    with pytest.raises(ConfigError, match=r"no weights: call \.fit\(rows, correct\)"):
        Ensemble([MeanTokenLogprob()]).estimate(attempt())  # type: ignore[misc]


def test_constructor_checks_its_arguments():
    with pytest.raises(ConfigError, match="distinct names; repeated: mean_logprob"):
        Ensemble([MeanTokenLogprob(), MeanTokenLogprob()])
    with pytest.raises(ConfigError, match="got 1 weights for 2 members"):
        Ensemble([MeanTokenLogprob(), MinTokenProb()], weights=[1.0])
    with pytest.raises(ConfigError, match="missing min_prob; unknown min"):
        Ensemble([MeanTokenLogprob(), MinTokenProb()], weights={"mean_logprob": 1, "min": 1})
    with pytest.raises(ConfigError, match="at least one member"):
        Ensemble([])


# --- saving -------------------------------------------------------------------------------------


def test_json_round_trip_rebuilds_members_with_their_options_and_gives_identical_outputs(
    tmp_path,
):
    rows, correct = two_signals(1000, seed=4, missing_every=3)
    noise = np.random.default_rng(7).uniform(0.2, 0.8, size=len(rows))
    rows = [{**r, "entropy": float(x)} for r, x in zip(rows, noise, strict=True)]
    members = [MeanTokenLogprob(), MinTokenProb(), MeanTokenEntropy(top_k=3)]
    ensemble = Ensemble(members, name="combined").fit(rows, correct, data="qa.jsonl", select=False)
    test_rows, _ = two_signals(500, seed=5, missing_every=2)

    document = json.loads(ensemble.to_json())
    assert document["version"] == 2
    assert document["members"][2] == {"name": "entropy", "kind": "entropy", "options": {"top_k": 3}}
    assert document["metadata"]["data"] == "qa.jsonl"
    assert document["training"]["rows"] == 1000
    assert document["selection"]["chosen"] == "ensemble"

    path = tmp_path / "ensemble.json"
    ensemble.save(path)
    for again in (
        Ensemble.from_json(ensemble.to_json()),
        Ensemble.load(path),
        load_ensemble(str(path)),
    ):
        assert again.name == "combined"
        assert [type(m) for m in again.members] == [type(m) for m in members]
        assert again.members[2].top_k == 3  # type: ignore[attr-defined]
        assert np.array_equal(again.combine_many(test_rows), ensemble.combine_many(test_rows))
        assert again.metadata == ensemble.metadata
        assert again.training == ensemble.training and again.selection == ensemble.selection


def test_members_the_registry_cannot_build_are_kept_by_name_until_passed_in():
    ensemble = Ensemble([MeanTokenLogprob(), AsyncEstimator("judge")], weights=[1.0, 2.0])
    text = ensemble.to_json()
    by_name = Ensemble.from_json(text)
    row = {"mean_logprob": 0.6, "judge": 0.8}
    assert by_name.combine(row) == ensemble.combine(row)  # stored scores still combine
    assert by_name.unbuilt.keys() == {"judge"}
    with pytest.raises(ConfigError, match=r"judge are known by name only.*members=\[\.\.\.\]"):
        asyncio.run(by_name.aestimate(attempt()))
    judge = AsyncEstimator("judge")
    again = Ensemble.from_json(text, members=[judge])
    assert again.members[1] is judge and not again.unbuilt
    assert asyncio.run(again.aestimate(attempt())).confidence == pytest.approx(
        sigmoid(logit(0.9) + 2 * logit(0.7))
    )
    with pytest.raises(ConfigError, match="has no member.s. jduge"):
        Ensemble.from_json(text, members=[AsyncEstimator("jduge")])


# --- in a router --------------------------------------------------------------------------------


def test_ensemble_inside_a_router():
    model = ScriptedModel(
        "m", [Reply(text="Paris France", logprobs=(math.log(0.9), math.log(0.4)))]
    )
    router = Router([model], estimators=[hand_ensemble()], policy=Ladder(0.5))
    verdict = router.route("Capital of France?")
    (score,) = verdict.steps[0].scores
    expected = sigmoid(0.2 + logit(0.6) + 0.5 * logit(0.4))  # geometric mean 0.6, min 0.4
    assert score.estimator == "ensemble" and score.status == "ok"
    assert verdict.confidence == pytest.approx(expected)
    assert verdict.status == "answered"


def test_ensemble_without_logprobs_is_unavailable_in_a_router():
    router = Router(
        [ScriptedModel("m", ["Paris"])], estimators=[hand_ensemble()], policy=Ladder(0.5)
    )
    verdict = router.route("Capital of France?")
    (score,) = verdict.steps[0].scores
    assert score.status == "unavailable"
    assert verdict.status == "abstained"


def test_ensemble_with_async_members_routes_through_the_async_path():
    ensemble = Ensemble(
        [MeanTokenLogprob(), AsyncEstimator("judge", 0.8, delay_s=0.01)], weights=[1.0, 1.0]
    )
    model = ScriptedModel("m", [Reply.confident("Paris", 0.6)])
    router = Router([model], estimators=[ensemble], policy=Ladder(0.5))
    verdict = router.route("Capital of France?")
    assert verdict.confidence == pytest.approx(sigmoid(logit(0.6) + logit(0.8)))
