"""How the scores of several estimators become one confidence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from demur.errors import ConfigError, did_you_mean
from demur.types import Score

CombineMethod = Literal["mean", "min", "max", "first"]
COMBINE_METHODS: tuple[str, ...] = ("mean", "min", "max", "first")


class ScoreCombiner:
    """Combines the confidences of the estimators that succeeded.

    - "mean", "min", "max": over the available confidences ("min" is the most cautious);
    - "first": the first estimator, in configured order, that produced a confidence;
    - `weights`: a weighted mean, renormalised over the estimators that succeeded.

    Returns None when no estimator produced a confidence.
    """

    def __init__(
        self, method: CombineMethod = "mean", weights: Mapping[str, float] | None = None
    ) -> None:
        if method not in COMBINE_METHODS:
            raise ConfigError(
                f"unknown combine method '{method}'.{did_you_mean(method, COMBINE_METHODS)} "
                f"Use one of: {', '.join(COMBINE_METHODS)}."
            )
        if weights is not None:
            bad = {k: v for k, v in weights.items() if not v >= 0}
            if bad or not any(weights.values()):
                raise ConfigError(
                    f"combine weights must be >= 0 with at least one > 0, got {dict(weights)}"
                )
        self.method = method
        self.weights = dict(weights) if weights is not None else None

    def combine(self, scores: Sequence[Score]) -> float | None:
        available = [(s.estimator, s.confidence) for s in scores if s.confidence is not None]
        if not available:
            return None
        if self.weights is not None:
            pairs = [(self.weights.get(name, 0.0), c) for name, c in available]
            total = sum(w for w, _ in pairs)
            if total == 0:
                return None
            return sum(w * c for w, c in pairs) / total
        values = [c for _, c in available]
        if self.method == "mean":
            return sum(values) / len(values)
        if self.method == "min":
            return min(values)
        if self.method == "max":
            return max(values)
        return values[0]

    def __repr__(self) -> str:
        return f"ScoreCombiner({self.method!r}, weights={self.weights!r})"
