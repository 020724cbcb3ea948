"""SampleAgreement: mean similarity of the shared samples to the answer."""

from __future__ import annotations

import asyncio

import pytest

from demur import (
    Candidate,
    Completion,
    ConfigError,
    EstimatorUnavailable,
    GenerationRequest,
    Ladder,
    Needs,
    Query,
    Reply,
    Router,
    ScriptedModel,
)
from demur.estimators.base import Attempt
from demur.estimators.consistency import SampleAgreement
from demur.estimators.similarity import SIMILARITIES
from tests.estimators.test_similarity import BagOfWordsEmbedder


def attempt(answer: str, *samples: str) -> Attempt:
    candidate = Candidate(
        text=answer, model="m", samples=tuple(Completion(text=s) for s in samples)
    )
    return Attempt(query=Query("Q?"), candidate=candidate)


def agreement(similarity: str = "rougeL", samples: int = 5) -> SampleAgreement:
    embedder = BagOfWordsEmbedder() if similarity == "embedding" else None
    return SampleAgreement(similarity=similarity, samples=samples, embedder=embedder)


def test_name_and_needs_follow_the_options() -> None:
    estimator = SampleAgreement()
    assert estimator.name == "agreement_rougeL"
    assert estimator.needs == Needs(samples=5)
    assert SampleAgreement("exact", samples=3).needs == Needs(samples=3)
    assert agreement("embedding").name == "agreement_embedding"
    assert repr(estimator) == "SampleAgreement(similarity='rougeL', samples=5)"


def test_exact_agreement_is_the_share_of_samples_that_match() -> None:
    score = agreement("exact").estimate(attempt("Paris", "Paris", "paris.", "Lyon", "Paris"))
    assert score.estimator == "agreement_exact"
    assert score.status == "ok"
    assert score.value == score.confidence == pytest.approx(0.75)
    assert score.detail == "mean exact similarity of 4 samples to the answer"


def test_rouge_l_agreement_gives_partial_credit() -> None:
    score = agreement().estimate(attempt("Jane Austen", "Austen", "Jane Austen", "Dickens"))
    assert score.confidence == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_embedding_agreement_uses_the_cosine() -> None:
    score = agreement("embedding").estimate(attempt("Jane Austen", "Austen", "jane austen"))
    assert score.confidence == pytest.approx((2**-0.5 + 1) / 2)


def test_only_the_first_samples_count() -> None:
    score = agreement("exact", samples=2).estimate(attempt("Paris", "Paris", "Lyon", "Nice"))
    assert score.confidence == pytest.approx(0.5)


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_more_agreement_gives_higher_confidence(similarity: str) -> None:
    others = ["Lyon", "Nice", "Lille", "Metz", "Brest"]
    estimator = agreement(similarity)
    confidences = [
        estimator.estimate(attempt("Paris", *(["Paris"] * k + others[k:]))).confidence
        for k in range(6)
    ]
    assert confidences == sorted(set(confidences))  # strictly increasing
    assert confidences[0] == pytest.approx(0.0) and confidences[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_edge_cases(similarity: str) -> None:
    estimator = agreement(similarity)
    assert estimator.estimate(attempt("Paris", "Paris")).confidence == pytest.approx(1.0)
    assert estimator.estimate(attempt("Paris", "Lyon")).confidence == pytest.approx(0.0)
    assert estimator.estimate(attempt("Paris", *["paris"] * 5)).confidence == pytest.approx(1.0)
    assert estimator.estimate(attempt("Paris", "", "")).confidence == pytest.approx(0.0)


def test_an_attempt_without_samples_is_unavailable() -> None:
    with pytest.raises(EstimatorUnavailable, match="needs sampled answers"):
        agreement().estimate(attempt("Paris"))


def test_an_empty_answer_is_unavailable() -> None:
    with pytest.raises(EstimatorUnavailable, match="cannot score an empty answer"):
        agreement().estimate(attempt("  ", "Paris"))


def test_aestimate_matches_estimate() -> None:
    estimator = agreement("exact")
    case = attempt("Paris", "Paris", "Lyon")
    assert asyncio.run(estimator.aestimate(case)) == estimator.estimate(case)


def test_bad_options_are_explained() -> None:
    with pytest.raises(ConfigError, match=r"SampleAgreement\(samples=0\): samples must be in"):
        SampleAgreement(samples=0)
    with pytest.raises(ConfigError, match="unknown similarity 'cosine'"):
        SampleAgreement(similarity="cosine")
    with pytest.raises(ConfigError, match="needs an embedder"):
        SampleAgreement(similarity="embedding")


def test_several_measures_share_one_draw_of_samples_through_the_router() -> None:
    sampled = iter(["Paris", "paris.", "Lyon", "The Paris", "Nice"])

    def script(request: GenerationRequest) -> Reply:
        if request.temperature == 0:
            return Reply.confident("Paris", 0.9)
        return Reply(text=next(sampled))

    model = ScriptedModel("m", script)
    estimators = [agreement(s, samples=5) for s in SIMILARITIES]
    verdict = Router([model], estimators=estimators, policy=Ladder(0.5)).route("Capital?")
    sampling_calls = [r for r in model.calls if r.temperature > 0]
    assert len(sampling_calls) == 1 and sampling_calls[0].n == 5
    scores = {s.estimator: s for s in verdict.steps[0].scores}
    assert set(scores) == {f"agreement_{s}" for s in SIMILARITIES}
    assert all(s.status == "ok" for s in scores.values())
    assert scores["agreement_exact"].confidence == pytest.approx(0.6)
    assert verdict.status == "answered"
