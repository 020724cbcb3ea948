"""White-box estimators computed from the answer's token log-probabilities.

Each needs logprobs from the backend; without them it reports "unavailable" and the route
carries on under its policy. Logprobs that no probability has (above 0, or NaN) are the
backend's error: the score is "failed", never a confidence of 1.0.
"""

from __future__ import annotations

import math
from abc import abstractmethod

from demur._construct import construct
from demur.bases import EstimatorBase
from demur.errors import EstimatorUnavailable, check_range
from demur.protocols import Attempt, Needs
from demur.types import Score, TokenLogprob

# A backend's float32 log-softmax can give a near-certain token +1e-7 or so; that is rounding.
LOGPROB_TOLERANCE = 1e-4


def invalid_logprobs(tokens: tuple[TokenLogprob, ...]) -> str | None:
    """Why `tokens` hold a log-probability no probability has (NaN, or above 0), or None."""
    for i, token in enumerate(tokens):
        found = [("", token.logprob), *((" (a top-k alternative)", a.logprob) for a in token.top)]
        for where, logprob in found:
            if not logprob <= LOGPROB_TOLERANCE:  # NaN fails every comparison
                return (
                    f"token {i} has log-probability {logprob:g}{where}, but a log-probability "
                    "is at most 0: the backend's logprobs are invalid, so they give no confidence"
                )
    return None


class TokenLogprobEstimator(EstimatorBase):
    """Base for estimators that are a pure function of the answer's tokens."""

    name: str = "token_logprob"
    needs: Needs = Needs(logprobs=True)
    in_process = True

    @abstractmethod
    def compute(self, tokens: tuple[TokenLogprob, ...]) -> tuple[float, float]:
        """Return (raw value, confidence in [0, 1]) for a non-empty token sequence."""

    def score(self, tokens: tuple[TokenLogprob, ...] | None) -> Score:
        if tokens is None:
            raise EstimatorUnavailable(
                f"{self.name} needs token logprobs, and this backend returned none"
            )
        if not tokens:
            raise EstimatorUnavailable(f"{self.name} cannot score an empty answer")
        invalid = invalid_logprobs(tokens)
        if invalid is not None:
            return Score(estimator=self.name, status="failed", detail=invalid)
        value, confidence = self.compute(tokens)
        # Clamped into [0, 1] (a NaN becomes 0), so the Score needs no validation.
        confidence = min(1.0, max(0.0, confidence))
        return construct(Score, estimator=self.name, value=value, confidence=confidence)

    def estimate(self, attempt: Attempt) -> Score:
        return self.score(attempt.candidate.tokens)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MeanTokenLogprob(TokenLogprobEstimator):
    """Mean token log-probability; confidence is its exponent, the geometric-mean probability."""

    name = "mean_logprob"

    def compute(self, tokens: tuple[TokenLogprob, ...]) -> tuple[float, float]:
        mean = sum(t.logprob for t in tokens) / len(tokens)
        return mean, math.exp(mean)


class MinTokenProb(TokenLogprobEstimator):
    """The probability of the least likely token: one weak token can sink an answer."""

    name = "min_prob"

    def compute(self, tokens: tuple[TokenLogprob, ...]) -> tuple[float, float]:
        lowest = min(t.logprob for t in tokens)
        return math.exp(lowest), math.exp(lowest)


class GreedyNLL(TokenLogprobEstimator):
    """G-NLL: the negative log-likelihood of the greedy answer.

    Confidence is the probability of the whole sequence, exp(-NLL). It falls with length, so
    it suits short answers; prefer mean_logprob for long ones.
    """

    name = "gnll"

    def compute(self, tokens: tuple[TokenLogprob, ...]) -> tuple[float, float]:
        nll = -sum(t.logprob for t in tokens)
        return nll, math.exp(-nll)


def token_entropy(token: TokenLogprob, top_k: int) -> float:
    """The token's entropy over its top-k alternatives, normalised to [0, 1].

    The probability mass outside the top k counts as one more outcome. Needs >= 2 alternatives.
    """
    probs = [math.exp(a.logprob) for a in token.top[:top_k]]
    outcomes = [*probs, max(0.0, 1.0 - sum(probs))]
    return -sum(p * math.log(p) for p in outcomes if p > 0.0) / math.log(len(outcomes))


class MeanTokenEntropy(TokenLogprobEstimator):
    """Mean per-token entropy over the top-k alternatives.

    The probability mass outside the top k counts as one more outcome, so the entropy is a
    lower bound on the true one. Each token's entropy is normalised by log(k + 1); confidence
    is one minus the mean normalised entropy.
    """

    name = "entropy"

    def __init__(self, top_k: int = 5) -> None:
        self.top_k = check_range("MeanTokenEntropy", "top_k", top_k, 2, 20, integer=True)
        self.needs = Needs(logprobs=True, top_logprobs=top_k)

    def compute(self, tokens: tuple[TokenLogprob, ...]) -> tuple[float, float]:
        entropies = []
        for token in tokens:
            if len(token.top) < 2:
                raise EstimatorUnavailable(
                    "entropy needs at least 2 top-k alternatives per token; "
                    "this backend returned fewer"
                )
            entropies.append(token_entropy(token, self.top_k))
        mean = sum(entropies) / len(entropies)
        return mean, 1.0 - mean

    def __repr__(self) -> str:
        return f"MeanTokenEntropy(top_k={self.top_k})"
