"""k-nearest neighbours over question embeddings: a model's success rate among the k most
similar questions it answered, pulled towards its overall rate when neighbours are few."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from demur.calibration.files import validated
from demur.errors import ConfigError, check_range
from demur.pregen.base import Predictor
from demur.pregen.features import QueryFeatures
from demur.pregen.files import REFIT, EncodedArray
from demur.protocols import Embedder

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

# Queries compared with the training rows at once (bounds the similarity matrix's memory).
_CHUNK = 1024


class _KnnState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embeddings: EncodedArray
    labels: dict[str, EncodedArray]
    base_rates: dict[str, float]


class KnnPredictor(Predictor):
    """Cosine k-nearest neighbours over the questions' embeddings (numpy only).

    P(success) = (successes among the k nearest rows that have the model + prior * base
    rate) / (k + prior), where the base rate is the model's success rate over all its rows:
    `prior` rows' worth of smoothing keeps a few neighbours from deciding alone.
    """

    learner = "knn"

    def __init__(
        self,
        embedder: Embedder | str = "minilm-l6",
        *,
        k: int = 25,
        prior: float = 2.0,
        similarity: bool = True,
        min_rows: int = 20,
    ) -> None:
        super().__init__(embedder, similarity=similarity, min_rows=min_rows)
        self.k = check_range("KnnPredictor", "k", k, 1, integer=True)
        self.prior = float(check_range("KnnPredictor", "prior", prior, 0))
        self._embeddings: FloatArray | None = None
        self._labels: dict[str, FloatArray] = {}
        self._base_rates: dict[str, float] = {}

    @property
    def predicted_models(self) -> tuple[str, ...]:
        return tuple(self._labels)

    def learner_options(self) -> dict[str, Any]:
        return {"k": self.k, "prior": self.prior}

    def _fit(self, features: QueryFeatures, labels: Mapping[str, FloatArray]) -> None:
        import numpy as np

        self._embeddings = np.asarray(features.embedding, dtype=np.float64)
        self._labels, self._base_rates = {}, {}
        for model, y in labels.items():
            if self.usable(y):
                self._labels[model] = y
                self._base_rates[model] = float(np.nanmean(y))

    def _predict(self, features: QueryFeatures) -> dict[str, FloatArray]:
        import numpy as np

        assert self._embeddings is not None
        out = {model: np.empty(len(features)) for model in self._labels}
        for start in range(0, len(features), _CHUNK):
            similarity = features.embedding[start : start + _CHUNK] @ self._embeddings.T
            for model, y in self._labels.items():
                known = ~np.isnan(y)
                sims, labels = similarity[:, known], y[known]
                k = min(self.k, labels.size)
                nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
                successes = labels[nearest].sum(axis=1)
                rate = self._base_rates[model]
                out[model][start : start + _CHUNK] = (successes + self.prior * rate) / (
                    k + self.prior
                )
        return out

    def _state(self) -> dict[str, Any]:
        import numpy as np

        assert self._embeddings is not None
        labels = {model: np.where(np.isnan(y), -1, y) for model, y in self._labels.items()}
        return _KnnState(
            embeddings=EncodedArray.encode(self._embeddings, "float32"),
            labels={model: EncodedArray.encode(y, "int8") for model, y in labels.items()},
            base_rates=self._base_rates,
        ).model_dump(mode="json")

    def _load_state(self, state: Mapping[str, Any], what: str) -> None:
        import numpy as np

        parsed = validated(_KnnState, state, what)
        embeddings = parsed.embeddings.decode(f"{what}.embeddings").astype(np.float64)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dimension:
            raise ConfigError(
                f"{what}.embeddings must have shape (rows, {self.dimension}), the embedder's "
                f"dimension; got {list(embeddings.shape)}: {REFIT}"
            )
        self._embeddings = embeddings
        self._labels = {}
        for model, encoded in parsed.labels.items():
            y = encoded.decode(f"{what}.labels.{model}").astype(np.float64)
            if y.shape != (len(embeddings),) or not np.isin(y, (-1, 0, 1)).all():
                raise ConfigError(
                    f"{what}.labels.{model} must hold one label (-1, 0 or 1) per embedding "
                    f"({len(embeddings)}): {REFIT}"
                )
            self._labels[model] = np.where(y < 0, np.nan, y)
        missing = set(self._labels) - set(parsed.base_rates)
        if missing:
            raise ConfigError(f"{what}.base_rates lacks {', '.join(sorted(missing))}: {REFIT}")
        self._base_rates = {model: parsed.base_rates[model] for model in self._labels}


__all__ = ["KnnPredictor"]
