"""Cross-fitting: each row scored by an ensemble or calibrator fitted on the other rows.

    table = member_table(results.graded(), ["mean_logprob", "agreement_rougeL"])
    out = cross_fit_ensemble(table, correct, folds=5, seed=0)
    out.confidence  # one out-of-fold confidence per row
    calibrated = cross_fit_calibrated(out.confidence, correct, method="isotonic")

The rows are split into `folds` folds, each holding its share of correct and of wrong answers
(shuffled by `seed`); the ensemble or calibrator fitted on the other folds scores the held-out
one. The figures computed on these confidences say how the procedure does on data like this,
not how well it memorises its own training set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from demur.calibration.metrics import FloatArray
from demur.errors import ConfigError, DataError, check_range
from demur.estimators._ensemble_fit import DEFAULT_FOLDS, Row, row_names, stratified_folds
from demur.estimators.ensemble import Ensemble


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold confidences of a cross-fitted ensemble.

    `confidence[i]` comes from the ensemble fitted without row i's fold (NaN where every
    member is missing); `fold[i]` is that fold; `chosen[k]` is what fold k's fit chose: the
    combination ("ensemble") or the one member it fell back to.
    """

    confidence: FloatArray
    fold: npt.NDArray[np.intp]
    chosen: tuple[str, ...]
    members: tuple[str, ...]


def member_table(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> list[dict[str, float | None]]:
    """{member name: confidence or None} for each eval row (`row["scores"][name]`)."""
    return [
        {name: (row.get("scores") or {}).get(name, {}).get("confidence") for name in names}
        for row in rows
    ]


def _labels(correct: npt.ArrayLike, n: int) -> npt.NDArray[np.bool_]:
    y = np.asarray(correct)
    if y.ndim != 1 or len(y) != n:
        raise ConfigError(f"got {n} rows but {y.size} labels; pass one label per row")
    return y.astype(bool)


def _folds(y: npt.NDArray[np.bool_], folds: int, seed: int) -> npt.NDArray[np.intp]:
    check_range("cross-fitting", "folds", folds, 2, integer=True)
    fewest = int(min(y.sum(), (~y).sum()))
    if fewest < folds:
        raise DataError(
            f"cross-fitting with {folds} folds needs at least {folds} correct and {folds} wrong "
            f"answers, got {int(y.sum())} correct and {int((~y).sum())} wrong; use fewer folds "
            "or label more answers"
        )
    return stratified_folds(y, folds, seed)


def cross_fit_ensemble(
    rows: Sequence[Row],
    correct: npt.ArrayLike,
    *,
    members: Sequence[str] | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    C: float | None = None,
    select: bool = True,
    clip: float | None = None,
) -> OutOfFold:
    """Out-of-fold confidences of `Ensemble.fit` on `rows` ({member name: confidence}).

    `members` names the columns to combine (default: every key some row scores); the other
    options are those of `Ensemble` and `Ensemble.fit`, the inner cross-validation using the
    same `folds` and `seed`.
    """
    y = _labels(correct, len(rows))
    names = list(members) if members is not None else row_names(rows)
    fold = _folds(y, folds, seed)
    confidence = np.full(len(rows), np.nan)
    chosen = []
    options: dict[str, Any] = {"C": C} if clip is None else {"C": C, "clip": clip}
    for k in range(folds):
        train = np.flatnonzero(fold != k).tolist()
        held_out = np.flatnonzero(fold == k).tolist()
        ensemble = Ensemble.by_name(names, **options).fit(
            [rows[i] for i in train], y[train], select=select, folds=folds, seed=seed
        )
        confidence[held_out] = ensemble.combine_many([rows[i] for i in held_out])
        selection = ensemble.selection
        chosen.append(selection.member if selection and selection.member else "ensemble")
    return OutOfFold(confidence=confidence, fold=fold, chosen=tuple(chosen), members=tuple(names))


def cross_fit_calibrated(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    *,
    method: str = "isotonic",
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> FloatArray:
    """Out-of-fold calibrated confidences: a `method` calibrator ("platt", "isotonic" or
    "histogram") fitted on the other folds. Confidences must all be present (not NaN)."""
    from demur.calibration.calibrators import (
        HistogramBinningCalibrator,
        IsotonicCalibrator,
        PlattCalibrator,
    )

    kinds = {
        "platt": PlattCalibrator,
        "isotonic": IsotonicCalibrator,
        "histogram": HistogramBinningCalibrator,
    }
    if method not in kinds:
        raise ConfigError(f"unknown calibration method {method!r}; use one of {', '.join(kinds)}")
    c = np.asarray(confidence, dtype=np.float64)
    y = _labels(correct, len(c))
    fold = _folds(y, folds, seed)
    calibrated = np.empty_like(c)
    for k in range(folds):
        train, held_out = fold != k, fold == k
        calibrator = kinds[method]().fit(c[train], y[train])
        calibrated[held_out] = calibrator.calibrate_many(c[held_out])
    return calibrated


__all__ = [
    "OutOfFold",
    "cross_fit_calibrated",
    "cross_fit_ensemble",
    "member_table",
]
