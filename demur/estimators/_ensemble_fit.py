"""Fitting an Ensemble's weights on labelled answers, and the JSON document it saves to.

The weights are a logistic regression on the logits of the members' confidences, fitted with
scikit-learn (imported only here, inside `fit_weights`); the ensemble applies them with numpy.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from demur.calibration.calibrators import MIN_EXAMPLES, logit, sigmoid
from demur.calibration.files import FitMetadata
from demur.calibration.metrics import FloatArray, UndefinedMetricError, auroc, brier, ece
from demur.errors import ConfigError, MissingDependencyError
from demur.protocols import Estimator

if TYPE_CHECKING:
    from demur.estimators.ensemble import Ensemble

Row = Mapping[str, float | None]
Labels = npt.NDArray[np.bool_]


# --- the training data ------------------------------------------------------------------------


def row_names(rows: Sequence[Row]) -> list[str]:
    """Member names from the rows' keys, first seen first, skipping ones never scored."""
    names: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                names.setdefault(key)
    if not names:
        raise ConfigError(
            "no row holds any score; rows map estimator names to confidences, "
            "e.g. {'mean_logprob': 0.8, 'min_prob': None}"
        )
    return list(names)


def check_labels(rows: Sequence[Row], correct: npt.ArrayLike) -> npt.NDArray[Any]:
    """The labels as an array, one boolean or 0/1 per row, or a ConfigError."""
    labels = np.asarray(correct)
    if labels.ndim != 1 or len(labels) != len(rows):
        raise ConfigError(f"got {len(rows)} rows but {labels.size} labels; pass one label per row")
    if labels.dtype != np.bool_ and not np.isin(labels, (0, 1)).all():
        raise ConfigError("correct must hold booleans or 0/1, one per row")
    return labels


def fitting_rows(
    matrix: FloatArray, labels: npt.NDArray[Any], names: Sequence[str], rows: Sequence[Row]
) -> tuple[FloatArray, Labels]:
    """The rows to fit on (those where some member scored) and their labels, or a ConfigError
    when there are too few, all of one kind, or a member no row scores."""
    used = ~np.isnan(matrix).all(axis=1)
    matrix, y = matrix[used], labels[used].astype(bool)
    if len(y) < MIN_EXAMPLES:
        raise ConfigError(
            f"Ensemble.fit needs at least {MIN_EXAMPLES} rows with some member score, got "
            f"{len(y)}; label more answers (a few hundred give stable weights)"
        )
    if y.all() or not y.any():
        which = "correct" if y.all() else "wrong"
        raise ConfigError(
            f"Ensemble.fit cannot learn weights: all {len(y)} answers are {which}; "
            "label some of the other kind too"
        )
    never = [n for j, n in enumerate(names) if np.isnan(matrix[:, j]).all()]
    if never:
        seen = sorted({key for row in rows for key in row})
        raise ConfigError(
            f"no row has a score for member(s) {', '.join(never)}; rows hold the keys "
            f"{', '.join(seen)}. Rows must be keyed by member name."
        )
    return matrix, y


# --- the fit ----------------------------------------------------------------------------------


def fit_weights(matrix: FloatArray, y: Labels, C: float) -> tuple[FloatArray, FloatArray, float]:
    """(imputation, weights, intercept) fitted on member confidences (NaN where missing).

    A missing confidence is imputed with the member's mean logit on the fitting data.
    """
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise MissingDependencyError("scikit-learn", "eval", "Ensemble.fit") from None
    features = logit(matrix)
    mean_logit = np.nanmean(features, axis=0)
    imputation = sigmoid(mean_logit)
    filled = np.where(np.isnan(features), logit(imputation), features)
    regression = LogisticRegression(C=C).fit(filled, y)
    weights = np.asarray(regression.coef_[0], dtype=np.float64)
    return imputation, weights, float(regression.intercept_[0])


def fit_metrics(
    name: str, names: Sequence[str], matrix: FloatArray, y: Labels, combined: FloatArray
) -> dict[str, Any]:
    """AUROC, ECE and Brier score on the fitting data: of the ensemble (`combined`, under
    `name`) and of each member on the rows it scored."""

    def describe(c: FloatArray, labels: Labels) -> dict[str, float | None]:
        try:
            area: float | None = auroc(c, labels)
        except UndefinedMetricError:
            area = None
        return {"auroc": area, "ece": ece(c, labels), "brier": brier(c, labels), "n": len(c)}

    metrics = {name: describe(combined, y)}
    for j, member in enumerate(names):
        seen = ~np.isnan(matrix[:, j])
        metrics[member] = describe(matrix[seen, j], y[seen])
    return metrics


class _Fit(Protocol):
    def __call__(
        self,
        rows: Sequence[Row],
        correct: npt.ArrayLike,
        *,
        model: str | None = None,
        data: str | None = None,
    ) -> Ensemble: ...


class FitMethod:
    """`Ensemble.fit(...)` builds the members from the rows' keys; `ensemble.fit(...)` keeps
    the ensemble's own members and fits it in place."""

    def __get__(self, instance: Ensemble | None, owner: type[Ensemble]) -> _Fit:
        if instance is not None:
            return instance._fit

        def fit(
            rows: Sequence[Row],
            correct: npt.ArrayLike,
            *,
            model: str | None = None,
            data: str | None = None,
        ) -> Ensemble:
            return owner(row_names(rows))._fit(rows, correct, model=model, data=data)

        fit.__doc__ = owner._fit.__doc__
        return fit


# --- the saved document -----------------------------------------------------------------------


def member_options(member: Estimator) -> dict[str, Any]:
    """Constructor options read back from same-named attributes (MeanTokenEntropy.top_k)."""
    options: dict[str, Any] = {}
    for parameter in inspect.signature(type(member)).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = getattr(member, parameter.name, parameter.default)
        if value is not parameter.empty and value != parameter.default:
            if not isinstance(value, str | int | float | bool | None):
                raise ConfigError(
                    f"cannot save member {member.name}: its option {parameter.name}={value!r} "
                    "is not a JSON scalar"
                )
            options[parameter.name] = value
    return options


class MemberSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class EnsembleDocument(BaseModel):
    """A saved ensemble, as `Ensemble.to_dict` writes it."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    version: int
    name: str
    members: list[MemberSpec] = Field(min_length=1)
    weights: list[float]
    intercept: float
    imputation: list[float]
    options: dict[str, Any] = Field(default_factory=dict)
    metadata: FitMetadata | None = None


__all__ = [
    "EnsembleDocument",
    "FitMethod",
    "MemberSpec",
    "Row",
    "check_labels",
    "fit_metrics",
    "fit_weights",
    "fitting_rows",
    "member_options",
    "row_names",
]
