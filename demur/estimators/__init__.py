"""Confidence estimators."""

from demur.estimators.base import Attempt, Estimator, Needs
from demur.estimators.logprob import (
    GreedyNLL,
    MeanTokenEntropy,
    MeanTokenLogprob,
    MinTokenProb,
    TokenLogprobEstimator,
)

__all__ = [
    "Attempt",
    "Estimator",
    "GreedyNLL",
    "MeanTokenEntropy",
    "MeanTokenLogprob",
    "MinTokenProb",
    "Needs",
    "TokenLogprobEstimator",
]
