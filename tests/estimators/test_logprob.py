"""White-box estimators on hand-made token sequences."""

from __future__ import annotations

import math

import pytest

from demur import (
    ConfigError,
    EstimatorUnavailable,
    GreedyNLL,
    MeanTokenEntropy,
    MeanTokenLogprob,
    MinTokenProb,
    TokenAlternative,
    TokenLogprob,
)


def tokens(*probs: float, top: list[list[float]] | None = None) -> tuple[TokenLogprob, ...]:
    out = []
    for i, p in enumerate(probs):
        alternatives = top[i] if top else [p]
        out.append(
            TokenLogprob(
                token=f"t{i}",
                logprob=math.log(p),
                top=tuple(
                    TokenAlternative(token=f"a{j}", logprob=math.log(q))
                    for j, q in enumerate(alternatives)
                ),
            )
        )
    return tuple(out)


def test_mean_logprob_is_the_geometric_mean_probability():
    score = MeanTokenLogprob().score(tokens(0.9, 0.1))
    assert score.value == pytest.approx((math.log(0.9) + math.log(0.1)) / 2)
    assert score.confidence == pytest.approx(math.sqrt(0.9 * 0.1))


def test_min_prob_is_the_weakest_token():
    assert MinTokenProb().score(tokens(0.9, 0.2, 0.8)).confidence == pytest.approx(0.2)


def test_gnll_is_the_sequence_nll_and_confidence_its_probability():
    score = GreedyNLL().score(tokens(0.5, 0.5))
    assert score.value == pytest.approx(-2 * math.log(0.5))
    assert score.confidence == pytest.approx(0.25)


def test_entropy_is_low_for_peaked_and_high_for_flat_distributions():
    entropy = MeanTokenEntropy(top_k=3)
    peaked = entropy.score(tokens(0.98, top=[[0.98, 0.01, 0.01]]))
    flat = entropy.score(tokens(0.25, top=[[0.25, 0.25, 0.25]]))  # 0.25 left outside the top 3
    assert flat.value == pytest.approx(1.0)  # four equal outcomes: maximal normalised entropy
    assert flat.confidence == pytest.approx(0.0)
    assert peaked.confidence > 0.85
    assert entropy.needs.top_logprobs == 3


def test_entropy_needs_alternatives():
    with pytest.raises(EstimatorUnavailable, match="top-k alternatives"):
        MeanTokenEntropy().score(tokens(0.9))
    with pytest.raises(ConfigError, match=r"MeanTokenEntropy\(top_k=1\): top_k must be in 2..20"):
        MeanTokenEntropy(top_k=1)


@pytest.mark.parametrize("estimator", [MeanTokenLogprob(), MinTokenProb(), GreedyNLL()])
def test_without_logprobs_the_estimator_is_unavailable(estimator):
    with pytest.raises(EstimatorUnavailable, match="returned none"):
        estimator.score(None)
    with pytest.raises(EstimatorUnavailable, match="empty answer"):
        estimator.score(())


@pytest.mark.parametrize(
    "estimator", [MeanTokenLogprob(), MinTokenProb(), GreedyNLL(), MeanTokenEntropy(2)]
)
def test_confidence_is_monotone_in_token_probability(estimator):
    low = estimator.score(tokens(0.3, 0.4, top=[[0.3, 0.3], [0.4, 0.3]]))
    high = estimator.score(tokens(0.9, 0.95, top=[[0.9, 0.05], [0.95, 0.03]]))
    assert 0.0 <= low.confidence < high.confidence <= 1.0
