"""How well a predictor does on rows it was not fitted on: cross-fitted predictions, their
AUROC, and the accuracy a two-model ladder gets when it skips the weak model by them.

    features = predictor.featurizer.features(questions, contexts)
    oof = cross_fit(predictor, features, labels, folds=5, seed=0)   # {model: P per row}
    skip_curve(oof["weak"], labels["weak"], labels["strong"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from demur.errors import DataError, check_range
from demur.pregen.base import Predictor
from demur.pregen.features import QueryFeatures

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]


def fold_of(n: int, folds: int, seed: int = 0) -> npt.NDArray[np.intp]:
    """A fold number in 0..folds-1 for each of n rows, in shuffled, near-equal folds."""
    import numpy as np

    check_range("cross-fitting", "folds", folds, 2, integer=True)
    if n < folds:
        raise DataError(f"cross-fitting with {folds} folds needs at least {folds} rows, got {n}")
    fold = np.empty(n, dtype=np.intp)
    for k, rows in enumerate(np.array_split(np.random.default_rng(seed).permutation(n), folds)):
        fold[rows] = k
    return fold


def cross_fit(
    predictor: Predictor,
    features: QueryFeatures,
    labels: Mapping[str, FloatArray],
    *,
    folds: int = 5,
    seed: int = 0,
    fold: npt.NDArray[np.intp] | None = None,
) -> dict[str, FloatArray]:
    """P(success) per model for every row, each from a copy of `predictor` fitted on the
    other folds (NaN where that copy had too few rows for the model)."""
    import numpy as np

    fold = fold_of(len(features), folds, seed) if fold is None else fold
    out = {model: np.full(len(features), np.nan) for model in labels}
    for k in np.unique(fold):
        train, held = fold != k, fold == k
        fitted = predictor.unfitted_copy().fit_features(
            features.take(train), {model: np.asarray(y)[train] for model, y in labels.items()}
        )
        for model, p in fitted.predict_features(features.take(held)).items():
            out[model][held] = p
    return out


@dataclass(frozen=True)
class SkipPoint:
    """The ladder weak -> strong when the `share` of questions with the lowest P(weak) skip
    straight to strong and the rest keep weak's answer (no post-generation check)."""

    share: float
    accuracy: float


def skip_curve(
    p_weak: FloatArray,
    ok_weak: FloatArray,
    ok_strong: FloatArray,
    shares: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
) -> list[SkipPoint]:
    """Accuracy at each strong-call share, on the rows where both outcomes are known."""
    import numpy as np

    known = ~(np.isnan(p_weak) | np.isnan(ok_weak) | np.isnan(ok_strong))
    p, weak, strong = p_weak[known], ok_weak[known], ok_strong[known]
    order = np.argsort(p, kind="stable")
    points = []
    for share in shares:
        chosen = weak.copy()
        skipped = order[: round(share * len(p))]
        chosen[skipped] = strong[skipped]
        points.append(SkipPoint(share=float(share), accuracy=float(chosen.mean())))
    return points


__all__ = ["SkipPoint", "cross_fit", "fold_of", "skip_curve"]
