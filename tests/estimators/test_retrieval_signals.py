"""Retrieval confidence: top-1 similarity, the top-1/top-2 margin, and the mean of the top k."""

from __future__ import annotations

import pytest

from demur import Candidate, ConfigError, EstimatorUnavailable, Query
from demur.estimators.base import Attempt, Estimator
from demur.estimators.registry import build_estimator
from demur.estimators.retrieval import RetrievalSimilarity, document_scores
from demur.types import Document


def attempt(*scores: float | None) -> Attempt:
    documents = tuple(
        Document(id=f"d{i}", text=f"passage {i}", score=score) for i, score in enumerate(scores)
    )
    return Attempt(Query("Q?"), Candidate(text="A", model="m", documents=documents))


def test_top1_is_the_best_score_whatever_the_order() -> None:
    score = RetrievalSimilarity("top1").estimate(attempt(0.42, 0.81, 0.63))
    assert (score.estimator, score.status) == ("retrieval_top1", "ok")
    assert score.value == pytest.approx(0.81)
    assert score.confidence == pytest.approx(0.81)
    assert "of 3 passages" in (score.detail or "")


def test_margin_is_top1_minus_top2() -> None:
    score = RetrievalSimilarity("margin").estimate(attempt(0.6, 0.9, 0.7))
    assert score.estimator == "retrieval_margin"
    assert score.value == pytest.approx(0.2)
    assert score.confidence == pytest.approx(0.2)


def test_a_tie_at_the_top_has_no_margin() -> None:
    assert RetrievalSimilarity("margin").estimate(attempt(0.8, 0.8)).confidence == 0.0


def test_mean_averages_the_top_k_only() -> None:
    score = RetrievalSimilarity("mean", k=2).estimate(attempt(0.1, 0.9, 0.7, 0.2))
    assert score.estimator == "retrieval_mean"
    assert score.value == pytest.approx(0.8)
    assert "top 2 of 4" in (score.detail or "")


def test_mean_with_fewer_passages_than_k_averages_those_there_are() -> None:
    score = RetrievalSimilarity("mean", k=5).estimate(attempt(0.9, 0.5))
    assert score.value == pytest.approx(0.7)


def test_unscored_passages_are_skipped() -> None:
    assert document_scores(attempt(None, 0.3, float("nan"), 0.5).candidate.documents) == [0.5, 0.3]
    score = RetrievalSimilarity("margin").estimate(attempt(None, 0.3, 0.5))
    assert score.value == pytest.approx(0.2)


@pytest.mark.parametrize(("raw", "confidence"), [(-0.2, 0.0), (0.0, 0.0), (0.55, 0.55), (1.0, 1.0)])
def test_confidence_is_the_value_clipped_to_the_unit_interval(
    raw: float, confidence: float
) -> None:
    score = RetrievalSimilarity("top1").estimate(attempt(raw))
    assert score.value == pytest.approx(raw)
    assert score.confidence == pytest.approx(confidence)


def test_a_higher_top_score_gives_a_higher_confidence() -> None:
    estimator = RetrievalSimilarity("top1")
    low, high = estimator.estimate(attempt(0.3, 0.2)), estimator.estimate(attempt(0.7, 0.2))
    assert high.confidence is not None and low.confidence is not None
    assert high.confidence > low.confidence


@pytest.mark.parametrize("statistic", ["top1", "margin", "mean"])
def test_a_closed_book_answer_is_unavailable(statistic: str) -> None:
    estimator = RetrievalSimilarity(statistic)  # type: ignore[arg-type]
    with pytest.raises(EstimatorUnavailable, match="closed-book"):
        estimator.estimate(attempt())


def test_passages_without_scores_are_unavailable() -> None:
    with pytest.raises(EstimatorUnavailable, match="none of the 2 passages has one"):
        RetrievalSimilarity().estimate(attempt(None, None))


def test_margin_needs_two_scored_passages() -> None:
    with pytest.raises(EstimatorUnavailable, match="only one has a score"):
        RetrievalSimilarity("margin").estimate(attempt(0.8, None))


async def test_the_async_path_gives_the_same_score() -> None:
    estimator = RetrievalSimilarity("mean", k=3)
    the_attempt = attempt(0.9, 0.5, 0.4, 0.1)
    assert (await estimator.aestimate(the_attempt)).value == estimator.estimate(the_attempt).value


def test_it_is_an_estimator_that_needs_nothing_from_the_answer() -> None:
    estimator = RetrievalSimilarity()
    assert isinstance(estimator, Estimator)
    assert estimator.needs.logprobs is False and estimator.needs.samples == 0


def test_an_unknown_statistic_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'margin'"):
        RetrievalSimilarity("margn")  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_k_must_be_a_positive_integer(k: object) -> None:
    with pytest.raises(ConfigError, match="pass a positive integer"):
        RetrievalSimilarity("mean", k=k)  # type: ignore[arg-type]


def test_the_registry_builds_it_by_name_with_a_statistic() -> None:
    estimator = build_estimator("retrieval", {"statistic": "margin"})
    assert estimator.name == "retrieval_margin"
    assert build_estimator("retrieval").name == "retrieval_top1"
    with pytest.raises(ConfigError, match="no option 'stat'"):
        build_estimator("retrieval", {"stat": "mean"})
