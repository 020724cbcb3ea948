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


def raw(*logprobs: float, top: list[list[float]] | None = None) -> tuple[TokenLogprob, ...]:
    """Tokens with the given log-probabilities as a backend sent them, valid or not."""
    return tuple(
        TokenLogprob(
            token=f"t{i}",
            logprob=lp,
            top=tuple(TokenAlternative(token=f"a{j}", logprob=q) for j, q in enumerate(top[i]))
            if top
            else (),
        )
        for i, lp in enumerate(logprobs)
    )


ALL = [MeanTokenLogprob(), MinTokenProb(), GreedyNLL(), MeanTokenEntropy(2)]


@pytest.mark.parametrize("estimator", ALL)
@pytest.mark.parametrize(
    ("logprob", "shown"), [(0.5, "0.5"), (40.0, "40"), (math.inf, "inf"), (math.nan, "nan")]
)
def test_a_logprob_above_0_fails_the_score_instead_of_confidence_1(estimator, logprob, shown):
    score = estimator.score(raw(-0.1, logprob, top=[[-0.1, -3.0], [-0.2, -3.0]]))
    assert score.status == "failed"
    assert score.confidence is None and score.value is None
    assert score.detail is not None
    assert f"token 1 has log-probability {shown}, but a log-probability is at most 0" in (
        score.detail
    )
    assert "backend's logprobs are invalid" in score.detail


def test_a_positive_top_k_alternative_fails_the_score_too():
    score = MeanTokenEntropy(2).score(raw(-0.1, top=[[-0.1, 0.3]]))
    assert score.status == "failed"
    assert "token 0 has log-probability 0.3 (a top-k alternative)" in (score.detail or "")


@pytest.mark.parametrize("estimator", ALL)
def test_a_logprob_of_0_and_rounding_above_it_are_certainty(estimator):
    for logprob in (0.0, -0.0, 1e-7, 1e-4):
        score = estimator.score(raw(logprob, top=[[logprob, -30.0]]))
        assert score.status == "ok", (logprob, score.detail)
        assert score.confidence == pytest.approx(1.0, abs=1e-3)


def test_through_the_router_a_positive_logprob_gives_no_confidence():
    from demur import Ladder, Reply, Router, ScriptedModel

    model = ScriptedModel("m", [Reply(text="Paris", logprobs=(0.7,))])
    verdict = Router([model], estimators=[MeanTokenLogprob()], policy=Ladder(0.5)).route("Q?")
    score = verdict.steps[0].scores[0]
    assert (score.status, score.confidence) == ("failed", None)
    assert verdict.steps[0].confidence is None
    assert verdict.status != "answered"
