"""Fitting an Ensemble on labelled answers: which members to keep, and their weights.

The combination is an L2-regularised logistic regression on the logits of the members'
confidences, clipped to [CLIP, 1 - CLIP] first so that a confidence of exactly 0 or 1 (an
agreement of none or all samples) counts as a strong signal rather than an infinite one.
Fitting, with `select` on (the default):

1. each member alone is Platt-scaled and scored out of fold by inner cross-validation
   (stratified, `folds` folds): AUROC, then log-loss, ranks them;
2. members are pruned, best first: one that is constant, or whose column correlates with
   an already kept one at |r| > PRUNE_CORRELATION, is dropped (degree's confidence is an affine
   function of agreement's, for one);
3. C, the inverse L2 strength, is the one of C_GRID with the lowest inner-CV log-loss on the
   kept members' standardised logits;
4. the combination is kept only when its inner-CV log-loss is lower than the best member's
   (log-loss is what the fit minimises, and it scores ranking and calibration together);
   otherwise the ensemble falls back to that member alone, Platt-scaled. Both AUROCs and
   log-losses are recorded in `Selection.inner_cv`.

scikit-learn is imported inside the functions that fit; applying the weights needs numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from demur.calibration.calibrators import MIN_EXAMPLES, sigmoid
from demur.calibration.metrics import FloatArray, UndefinedMetricError, auroc, brier, ece
from demur.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from demur.estimators.ensemble import Ensemble

Row = Mapping[str, float | None]
Labels = npt.NDArray[np.bool_]

CLIP = 1e-3
PRUNE_CORRELATION = 0.98
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
DEFAULT_FOLDS = 5
# A Platt fit of one standardised member: the penalty is negligible at this C.
_PLATT_C = 1e4


def clipped_logit(p: FloatArray, clip: float = CLIP) -> FloatArray:
    """log(p / (1 - p)) with p clipped to [clip, 1 - clip]; NaN stays NaN."""
    q = np.clip(p, clip, 1.0 - clip)
    out: FloatArray = np.log(q) - np.log1p(-q)
    return out


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


def stratified_folds(y: Labels, folds: int, seed: int) -> npt.NDArray[np.intp]:
    """A fold number per row, each fold holding its share of correct and of wrong answers."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.intp)
    offset = 0
    for kind in (False, True):
        where = np.flatnonzero(y == kind)
        fold[rng.permutation(where)] = (np.arange(len(where)) + offset) % folds
        offset += len(where)
    return fold


# --- the fit ----------------------------------------------------------------------------------


class Selection(BaseModel):
    """What fitting chose, and why: saved with the ensemble."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chosen: Literal["ensemble", "member"]
    member: str | None = Field(default=None, description="the member fallen back to")
    candidates: tuple[str, ...]
    kept: tuple[str, ...]
    dropped: dict[str, str] = Field(default_factory=dict)
    C: float | None = None
    folds: int = 0
    seed: int = 0
    inner_cv: dict[str, dict[str, float]] = Field(default_factory=dict)


@dataclass(frozen=True)
class Combination:
    """Fitted weights over the kept columns (`kept` indexes the candidates)."""

    kept: tuple[int, ...]
    weights: FloatArray
    intercept: float
    imputation: FloatArray
    selection: Selection


def _logistic(features: FloatArray, y: Labels, C: float) -> tuple[FloatArray, float]:
    """(weights, intercept) of an L2 logistic regression, fitted on standardised columns and
    given back for the raw ones."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise MissingDependencyError("scikit-learn", "eval", "Ensemble.fit") from None
    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    regression = LogisticRegression(C=C, max_iter=1000).fit((features - mean) / scale, y)
    weights = np.asarray(regression.coef_[0], dtype=np.float64) / scale
    return weights, float(regression.intercept_[0] - weights @ mean)


def _out_of_fold(
    features: FloatArray, y: Labels, C: float, fold: npt.NDArray[np.intp]
) -> FloatArray:
    predicted = np.empty(len(y))
    for k in np.unique(fold):
        train = fold != k
        weights, intercept = _logistic(features[train], y[train], C)
        predicted[~train] = sigmoid(intercept + features[~train] @ weights)
    return predicted


def _scores(p: FloatArray, y: Labels) -> dict[str, float]:
    q = np.clip(p, 1e-12, 1.0 - 1e-12)
    log_loss = float(-np.mean(np.where(y, np.log(q), np.log1p(-q))))
    return {"auroc": auroc(p, y), "log_loss": log_loss}


def _prune(
    columns: Sequence[FloatArray], order: Sequence[int], names: Sequence[str]
) -> tuple[list[int], dict[str, str]]:
    """Columns kept in `order`, dropping constant ones and those that correlate with a kept
    one at |r| > PRUNE_CORRELATION in any of `columns` (confidences, logits: an affine map of
    confidences is not one of logits)."""
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant column has no r
        correlations = [np.atleast_2d(np.nan_to_num(np.corrcoef(c, rowvar=False))) for c in columns]
    kept: list[int] = []
    dropped: dict[str, str] = {}
    for j in order:
        if np.ptp(columns[0][:, j]) == 0:
            dropped[names[j]] = "constant on the fitting data"
            continue
        for i in kept:
            r = max((float(c[i, j]) for c in correlations), key=abs)
            if abs(r) > PRUNE_CORRELATION:
                dropped[names[j]] = f"collinear with {names[i]} (r={r:.3f})"
                break
        else:
            kept.append(j)
    return kept, dropped


def _ranked(
    features: FloatArray, y: Labels, names: Sequence[str], fold: npt.NDArray[np.intp]
) -> tuple[list[int], dict[str, dict[str, float]]]:
    """Member columns best first by inner-CV AUROC (then log-loss) of each Platt-scaled alone,
    and those scores by name."""
    scores = {
        name: _scores(_out_of_fold(features[:, [j]], y, _PLATT_C, fold), y)
        for j, name in enumerate(names)
    }
    order = sorted(
        range(len(names)), key=lambda j: (-scores[names[j]]["auroc"], scores[names[j]]["log_loss"])
    )
    return order, scores


def _tuned(
    features: FloatArray, y: Labels, fold: npt.NDArray[np.intp], C: float | None
) -> tuple[float, dict[str, float]]:
    """C (the given one, or the one of C_GRID with the lowest inner-CV log-loss) and the
    combination's inner-CV scores with it."""
    grid = C_GRID if C is None else (C,)
    scored = {c: _scores(_out_of_fold(features, y, c, fold), y) for c in grid}
    best = min(scored, key=lambda c: scored[c]["log_loss"])
    return best, scored[best]


def fit_combination(
    matrix: FloatArray,
    y: Labels,
    names: Sequence[str],
    *,
    C: float | None = None,
    select: bool = True,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    clip: float = CLIP,
) -> Combination:
    """Choose members and fit weights on member confidences (NaN where missing), as the
    module docstring describes. A missing confidence is imputed with the member's mean logit.

    `C=None` chooses C by inner cross-validation; `select=False` keeps every member and never
    falls back. With fewer than 2 answers of one kind there is no inner cross-validation: every
    member is kept, with C=1 unless given.
    """
    raw = clipped_logit(matrix, clip)
    mean_logit = np.nanmean(raw, axis=0)
    features = np.where(np.isnan(raw), mean_logit, raw)
    k = min(folds, int(y.sum()), int((~y).sum()))
    fold = stratified_folds(y, k, seed) if k >= 2 else None
    kept: list[int] = list(range(len(names)))
    dropped: dict[str, str] = {}
    inner: dict[str, dict[str, float]] = {}
    order = kept
    if select and fold is not None:
        order, inner = _ranked(features, y, names, fold)
        confidences = np.where(np.isnan(matrix), sigmoid(mean_logit), matrix)
        kept, dropped = _prune([features, confidences], order, names)
        if not kept:  # every column is constant: one can still learn the base rate
            kept = [order[0]]
            dropped.pop(names[order[0]])
    chosen_C = C
    if fold is not None and len(kept) > 1 and (select or C is None):
        chosen_C, inner["ensemble"] = _tuned(features[:, kept], y, fold, C)
    fall_back = len(kept) == 1
    if select and "ensemble" in inner:
        best, combined = inner[names[order[0]]], inner["ensemble"]
        if not combined["log_loss"] < best["log_loss"]:
            fall_back = True
            for j in kept:
                if j != order[0]:
                    dropped[names[j]] = f"the combination did not beat {names[order[0]]} alone"
            kept = [order[0]]
    kept.sort()  # the deployed ensemble keeps its members in their given order
    C_used = _PLATT_C if fall_back else (chosen_C or 1.0)
    weights, intercept = _logistic(features[:, kept], y, C_used)
    selection = Selection(
        chosen="member" if fall_back else "ensemble",
        member=names[kept[0]] if fall_back else None,
        candidates=tuple(names),
        kept=tuple(names[j] for j in kept),
        dropped=dropped,
        C=None if fall_back else C_used,
        folds=k if fold is not None else 0,
        seed=seed,
        inner_cv=inner,
    )
    return Combination(
        kept=tuple(kept),
        weights=weights,
        intercept=intercept,
        imputation=sigmoid(mean_logit[kept]),
        selection=selection,
    )


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
        select: bool = True,
        folds: int = DEFAULT_FOLDS,
        seed: int = 0,
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
            select: bool = True,
            folds: int = DEFAULT_FOLDS,
            seed: int = 0,
        ) -> Ensemble:
            ensemble = owner.by_name(row_names(rows))
            return ensemble._fit(
                rows, correct, model=model, data=data, select=select, folds=folds, seed=seed
            )

        fit.__doc__ = owner._fit.__doc__
        return fit


__all__ = [
    "CLIP",
    "C_GRID",
    "DEFAULT_FOLDS",
    "PRUNE_CORRELATION",
    "Combination",
    "FitMethod",
    "Row",
    "Selection",
    "check_labels",
    "clipped_logit",
    "fit_combination",
    "fit_metrics",
    "fitting_rows",
    "row_names",
    "stratified_folds",
]
