"""What every pre-generation predictor shares: fitting from rows, predicting, saving, loading.

A learner (`KnnPredictor`, `LogisticPredictor`) fits one classifier per model on the rows that
have that model's outcome, and predicts the probability that the model's answer will succeed
(be accepted and correct). A model with fewer than `min_rows` labelled rows, or whose rows all
share one label, gets no prediction (None): the router never skips a model it knows nothing
about.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

from demur.calibration.files import PathLike, utc_now
from demur.errors import ConfigError, check_range
from demur.pregen.features import Featurizer, QueryFeatures
from demur.pregen.files import (
    FORMAT_VERSION,
    KIND,
    REFIT,
    PredictorDocument,
    TrainingData,
    read_document,
    write_document,
)
from demur.pregen.rows import (
    RoutingRow,
    check_rows,
    fingerprint,
    mean_seconds,
    row_models,
    success_labels,
)
from demur.protocols import Embedder
from demur.types import Query

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

_LEARNERS: dict[str, type[Predictor]] = {}


class Predictor(ABC):
    """Predicts, from the query alone, P(each model's answer is accepted and correct).

    predictor = KnnPredictor("minilm-l6", k=25).fit(rows)
    predictor.predict(Query("Who wrote Emma?"))   # {"weak": 0.31, "strong": 0.74}
    predictor.save("predictor.json"); Predictor.load("predictor.json")
    """

    learner: ClassVar[str]

    def __init__(
        self, embedder: Embedder | str = "minilm-l6", *, similarity: bool = True, min_rows: int = 20
    ) -> None:
        self.featurizer = Featurizer(embedder, similarity=similarity)
        self.min_rows = check_range(type(self).__name__, "min_rows", min_rows, 2, integer=True)
        self.models: tuple[str, ...] = ()
        self.costs: dict[str, float | None] = {}
        self.training: TrainingData | None = None
        self.dimension: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "learner" in cls.__dict__:
            _LEARNERS[cls.learner] = cls

    # --- what each learner implements ---------------------------------------------------------

    @abstractmethod
    def _fit(self, features: QueryFeatures, labels: Mapping[str, FloatArray]) -> None:
        """Fit on every row; `labels[model]` is 1/0 for success/failure and NaN where unknown.
        Models `usable` rejects get no prediction."""

    @abstractmethod
    def _predict(self, features: QueryFeatures) -> dict[str, FloatArray]:
        """P(success) per fitted model, one per row."""

    @property
    @abstractmethod
    def predicted_models(self) -> tuple[str, ...]:
        """The models with a fitted classifier (the others get no prediction)."""

    @abstractmethod
    def learner_options(self) -> dict[str, Any]:
        """The learner's own options, as its constructor takes them."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """What fitting learnt, as JSON (arrays as EncodedArray dicts)."""

    @abstractmethod
    def _load_state(self, state: Mapping[str, Any], what: str) -> None:
        """Restore what `_state` wrote; ConfigError naming the field when it does not fit."""

    # --- fitting ------------------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        return self.training is not None

    def options(self) -> dict[str, Any]:
        """Every constructor option but the embedder, as saved in the file."""
        return {
            "similarity": self.featurizer.similarity,
            "min_rows": self.min_rows,
            **self.learner_options(),
        }

    def unfitted_copy(self) -> Self:
        """A new, unfitted predictor with the same embedder and options."""
        return type(self)(self.featurizer.source, **self.options())

    def usable(self, y: FloatArray) -> bool:
        """Whether labels `y` (NaN: unknown) are enough to fit a model on."""
        import numpy as np

        known = y[~np.isnan(y)]
        return len(known) >= self.min_rows and 0 < known.sum() < len(known)

    def fit(self, rows: Sequence[RoutingRow], *, data: str | None = None) -> Self:
        """Embed the rows' questions and fit; `data` says where the rows came from."""
        check_rows(rows, f"{type(self).__name__}.fit")
        features = self.featurizer.features(
            [row.question for row in rows], [row.context for row in rows]
        )
        models = row_models(rows)
        return self.fit_features(
            features,
            {model: success_labels(rows, model) for model in models},
            costs={model: mean_seconds(rows, model) for model in models},
            sha256=fingerprint(rows),
            data=data,
        )

    def fit_features(
        self,
        features: QueryFeatures,
        labels: Mapping[str, FloatArray],
        *,
        costs: Mapping[str, float | None] | None = None,
        sha256: str = "",
        data: str | None = None,
    ) -> Self:
        """Fit on features already computed (by this predictor's featurizer) and their labels."""
        import numpy as np

        self._check_features(features)
        if not labels:
            raise ConfigError(f"{type(self).__name__}.fit got no model labels to fit")
        arrays = {model: np.asarray(y, dtype=np.float64) for model, y in labels.items()}
        for model, y in arrays.items():
            if y.shape != (len(features),):
                raise ConfigError(
                    f"labels['{model}'] has shape {y.shape}; pass one label per row "
                    f"({len(features)}), NaN where the row lacks the model"
                )
        self._fit(features, arrays)
        self.models = tuple(arrays)
        self.costs = {model: (costs or {}).get(model) for model in arrays}
        self.dimension = int(features.embedding.shape[1])
        known = {model: ~np.isnan(y) for model, y in arrays.items()}
        self.training = TrainingData(
            rows=len(features),
            sha256=sha256,
            per_model={model: int(k.sum()) for model, k in known.items()},
            successes={model: int(arrays[model][k].sum()) for model, k in known.items()},
            data=data,
            fitted_at=utc_now(),
        )
        return self

    def _check_features(self, features: QueryFeatures) -> None:
        if features.names != self.featurizer.names:
            raise ConfigError(
                f"the features are {list(features.names)}, but this predictor uses "
                f"{list(self.featurizer.names)}; compute them with its featurizer "
                "(predictor.featurizer.features(...))"
            )
        if self.dimension is not None and features.embedding.shape[1] != self.dimension:
            raise ConfigError(
                f"the predictor was fitted on {self.dimension}-d embeddings from "
                f"'{self.featurizer.embedder_name}', and got {features.embedding.shape[1]}-d "
                "ones; load it with the embedder it was fitted with"
            )

    # --- predicting ---------------------------------------------------------------------------

    def predict_features(self, features: QueryFeatures) -> dict[str, FloatArray]:
        """P(success) per model, one per row; NaN for a model with no prediction."""
        import numpy as np

        self._require_fitted()
        self._check_features(features)
        predicted = self._predict(features)
        return {
            model: predicted.get(model, np.full(len(features), np.nan)) for model in self.models
        }

    def predict_many(
        self, questions: Sequence[str], contexts: Sequence[Sequence[str]] | None = None
    ) -> dict[str, FloatArray]:
        """P(success) per model for each question (with its passages); NaN where unknown."""
        return self.predict_features(self.featurizer.features(questions, contexts))

    def predict(self, query: Query | str) -> dict[str, float | None]:
        """P(success) of each model's answer to `query` (None: no prediction for that model)."""
        query = Query.coerce(query)
        predicted = self.predict_many([query.question], [query.context])
        return {model: None if math.isnan(p[0]) else float(p[0]) for model, p in predicted.items()}

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ConfigError(
                f"{type(self).__name__} is not fitted; call .fit(rows) or load a saved one "
                "with Predictor.load(path)"
            )

    def describe(self) -> str:
        """e.g. "knn(k=25) on minilm-l6"."""
        options = ", ".join(f"{k}={v}" for k, v in self.learner_options().items())
        return f"{self.learner}({options}) on {self.featurizer.embedder_name}"

    def __repr__(self) -> str:
        fitted = f"fitted on {self.training.rows} rows" if self.training else "not fitted"
        return f"<{type(self).__name__} {self.describe()}, {fitted}>"

    # --- files --------------------------------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """Write the fitted predictor as one JSON file (see demur.pregen.files)."""
        self._require_fitted()
        assert self.training is not None and self.dimension is not None
        write_document(
            path,
            PredictorDocument(
                kind=KIND,
                version=FORMAT_VERSION,
                learner=self.learner,
                options=self.options(),
                embedder=self.featurizer.embedder_name,
                dimension=self.dimension,
                features=self.featurizer.names,
                models=self.models,
                costs=self.costs,
                training=self.training,
                state=self._state(),
            ),
        )

    @classmethod
    def load(cls, path: PathLike, *, embedder: Embedder | str | None = None) -> Predictor:
        """Read a file written by `save`. `Predictor.load` reads any learner; a learner's class
        reads only its own. `embedder` replaces the saved embedder name (e.g. an object)."""
        import demur.pregen.knn
        import demur.pregen.logistic  # noqa: F401  (each registers its learner)

        what = f"the predictor file '{path}'"
        document = read_document(path)
        learner = _LEARNERS.get(document.learner)
        if learner is None:
            raise ConfigError(
                f"{what}: learner {document.learner!r} is unknown; known learners: "
                f"{', '.join(sorted(_LEARNERS))}"
            )
        if cls is not Predictor and learner is not cls:
            raise ConfigError(
                f"{what} holds a {document.learner!r} predictor; load it with "
                f"{learner.__name__}.load or Predictor.load"
            )
        try:
            predictor = learner(embedder or document.embedder, **document.options)
        except TypeError as exc:
            raise ConfigError(
                f"{what}: its options do not fit {learner.__name__} ({exc}): {REFIT}"
            ) from None
        except ConfigError as exc:
            raise ConfigError(f"{what}: bad options: {exc}: {REFIT}") from None
        if tuple(document.features) != predictor.featurizer.names:
            raise ConfigError(
                f"{what}: features {list(document.features)} do not match the options "
                f"(which give {list(predictor.featurizer.names)}); the file is damaged: refit it"
            )
        predictor.dimension = document.dimension
        predictor._load_state(document.state, f"{what}: state")
        predictor.models = tuple(document.models)
        predictor.costs = dict(document.costs)
        predictor.training = document.training
        return predictor


def learners() -> dict[str, type[Predictor]]:
    """The predictor classes by learner name ("knn", "logistic")."""
    return dict(_LEARNERS)


__all__ = ["Predictor", "learners"]
