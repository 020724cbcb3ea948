"""Logistic regression on the question's embedding and its cheap features, one per model.

Fitting uses scikit-learn (`pip install 'demur[eval]'`), imported only inside `fit`; a fitted
or loaded predictor applies its weights with numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from demur.calibration.files import validated
from demur.errors import ConfigError, MissingDependencyError, check_range
from demur.pregen.base import Predictor
from demur.pregen.features import QueryFeatures
from demur.pregen.files import REFIT
from demur.protocols import Embedder

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]


# Standardised cheap features are clipped to +-CLIP standard deviations.
CLIP = 4.0


class _Weights(BaseModel):
    model_config = ConfigDict(extra="forbid")
    coef: list[float]
    intercept: float


class _LogisticState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mean: list[float]
    scale: list[float]
    weights: dict[str, _Weights]


class LogisticPredictor(Predictor):
    """L2-regularised logistic regression on [embedding, standardised cheap features].

    `C` is scikit-learn's inverse regularisation strength: with a few hundred rows and a
    384-d embedding, strong regularisation (the default 0.1) keeps it from memorising them.
    """

    learner = "logistic"

    def __init__(
        self,
        embedder: Embedder | str = "minilm-l6",
        *,
        C: float = 0.1,
        similarity: bool = True,
        min_rows: int = 20,
    ) -> None:
        super().__init__(embedder, similarity=similarity, min_rows=min_rows)
        self.C = float(check_range("LogisticPredictor", "C", C, 0, lo_open=True, hint="e.g. 0.1"))
        self._mean: FloatArray | None = None
        self._scale: FloatArray | None = None
        self._weights: dict[str, _Weights] = {}

    @property
    def predicted_models(self) -> tuple[str, ...]:
        return tuple(self._weights)

    def learner_options(self) -> dict[str, Any]:
        return {"C": self.C}

    def _design(self, features: QueryFeatures) -> FloatArray:
        import numpy as np

        assert self._mean is not None and self._scale is not None
        # A query far outside the training range (no passages where every training question
        # had one) must not push the logit to infinity on a near-constant feature.
        z = np.clip((features.cheap - self._mean) / self._scale, -CLIP, CLIP)
        return np.hstack([features.embedding, z])

    def _fit(self, features: QueryFeatures, labels: Mapping[str, FloatArray]) -> None:
        import numpy as np

        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError:
            raise MissingDependencyError("scikit-learn", "eval", "LogisticPredictor.fit") from None
        self._mean = features.cheap.mean(axis=0)
        scale = features.cheap.std(axis=0)
        self._scale = np.where(scale > 1e-6, scale, 1.0)
        x = self._design(features)
        self._weights = {}
        for model, y in labels.items():
            if not self.usable(y):
                continue
            known = ~np.isnan(y)
            fitted = LogisticRegression(C=self.C, max_iter=2000).fit(x[known], y[known] > 0.5)
            self._weights[model] = _Weights(
                coef=fitted.coef_[0].tolist(), intercept=float(fitted.intercept_[0])
            )

    def _predict(self, features: QueryFeatures) -> dict[str, FloatArray]:
        import numpy as np

        x = self._design(features)
        return {
            model: np.exp(-np.logaddexp(0.0, -(x @ np.asarray(w.coef) + w.intercept)))
            for model, w in self._weights.items()
        }

    def _state(self) -> dict[str, Any]:
        assert self._mean is not None and self._scale is not None
        return _LogisticState(
            mean=self._mean.tolist(), scale=self._scale.tolist(), weights=self._weights
        ).model_dump(mode="json")

    def _load_state(self, state: Mapping[str, Any], what: str) -> None:
        import numpy as np

        parsed = validated(_LogisticState, state, what)
        width = len(self.featurizer.names)
        _check_length(f"{what}.mean", parsed.mean, width)
        _check_length(f"{what}.scale", parsed.scale, width)
        if not all(s > 0 for s in parsed.scale):
            raise ConfigError(f"{what}.scale must be positive numbers: {REFIT}")
        expected = (self.dimension or 0) + width
        for model, weights in parsed.weights.items():
            if len(weights.coef) != expected:
                raise ConfigError(
                    f"{what}.weights.{model}.coef has {len(weights.coef)} values; it needs one "
                    f"per embedding dimension and cheap feature ({expected}): {REFIT}"
                )
        self._mean, self._scale = np.asarray(parsed.mean), np.asarray(parsed.scale)
        self._weights = dict(parsed.weights)


def _check_length(where: str, values: Sequence[float], width: int) -> None:
    if len(values) != width:
        raise ConfigError(f"{where} has {len(values)} values for {width} cheap features: {REFIT}")


__all__ = ["LogisticPredictor"]
