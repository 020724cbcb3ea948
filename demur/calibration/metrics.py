"""How good are confidence scores? Discrimination, selective risk and calibration metrics.

Every function takes `confidence` (floats in [0, 1], higher meaning more likely correct) and
`correct` (bools, or 0/1), one entry per labelled answer. AUROC and AUPRC use scikit-learn
(`pip install 'demur[eval]'`), imported only when called; the rest is numpy.

Metrics that need both correct and wrong answers (AUROC, AUPRC, PRR) raise
`UndefinedMetricError` when all labels agree, rather than return a NaN that would slip into
averages unnoticed. `summarize` catches it and reports the reason under "missing".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypedDict

import numpy as np
import numpy.typing as npt

from demur.errors import ConfigError, MissingDependencyError
from demur.errors import UndefinedMetricError as UndefinedMetricError  # re-exported

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
BinStrategy = Literal["uniform", "quantile"]


# --- input checks -----------------------------------------------------------------------------


def drop_nan(confidence: npt.ArrayLike) -> BoolArray:
    """The mask of finite confidences: `keep = drop_nan(c); metric(c[keep], correct[keep])`."""
    return np.asarray(np.isfinite(np.asarray(confidence, dtype=np.float64)), dtype=np.bool_)


def _indices(mask: BoolArray, limit: int = 10) -> str:
    where = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in where[:limit])
    return shown + (f", ... ({len(where) - limit} more)" if len(where) > limit else "")


def check_confidence(confidence: npt.ArrayLike) -> FloatArray:
    """Confidences as a float array (any shape); ConfigError for NaN, inf, or outside [0, 1]."""
    try:
        c = np.asarray(confidence, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"confidence must be an array of numbers: {exc}") from None
    flat = c.reshape(-1)
    bad = ~np.isfinite(flat)
    if bad.any():
        raise ConfigError(
            f"{int(bad.sum())} of {flat.size} confidences are NaN or infinite (at indices "
            f"{_indices(bad)}). Drop them first: keep = demur.calibration.metrics.drop_nan("
            "confidence), then pass confidence[keep] (and correct[keep])."
        )
    outside = (flat < 0.0) | (flat > 1.0)
    if outside.any():
        raise ConfigError(
            f"{int(outside.sum())} confidences lie outside [0, 1] (at indices "
            f"{_indices(outside)}, e.g. {flat[outside][0]!r}); confidences are probabilities: "
            "map raw scores into [0, 1] first, e.g. with a sigmoid"
        )
    return c


def check_inputs(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> tuple[FloatArray, BoolArray]:
    """Validate and convert the two inputs; ConfigError says what is wrong and how to fix it."""
    c = check_confidence(confidence)
    y_raw = np.asarray(correct)
    if c.ndim != 1 or y_raw.ndim != 1:
        raise ConfigError(
            f"confidence and correct must be 1-D, one entry per answer; got shapes "
            f"{c.shape} and {y_raw.shape}. Flatten them, e.g. np.ravel(x)."
        )
    if len(c) != len(y_raw):
        raise ConfigError(
            f"confidence has {len(c)} entries but correct has {len(y_raw)}; "
            "pass one label per confidence, in the same order"
        )
    if len(c) == 0:
        raise ConfigError("no examples: confidence and correct are empty; pass labelled answers")
    if y_raw.dtype == np.bool_:
        return c, y_raw
    try:
        y_num = y_raw.astype(np.float64)
    except (TypeError, ValueError):
        raise ConfigError(
            f"correct must hold booleans or 0/1, got values like {y_raw[0]!r}"
        ) from None
    not_binary = (y_num != 0.0) & (y_num != 1.0)
    if not_binary.any():
        raise ConfigError(
            f"correct must hold booleans or 0/1; {int(not_binary.sum())} entries are neither "
            f"(at indices {_indices(not_binary)}, e.g. {y_raw[not_binary][0]!r})"
        )
    return c, y_num == 1.0


def _require_both_classes(metric: str, y: BoolArray) -> None:
    n_right = int(y.sum())
    if n_right in (0, len(y)):
        which = "correct" if n_right else "wrong"
        raise UndefinedMetricError(
            f"{metric} is undefined: all {len(y)} answers are {which}, and it compares correct "
            "with wrong answers. Add labelled answers of the other kind, or use ECE or the "
            "Brier score, which are defined here."
        )


def _check_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(f"n_bins must be a positive integer, got {n_bins!r}; e.g. n_bins=10")


# --- discrimination ---------------------------------------------------------------------------


def auroc(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Area under the ROC curve: the chance a correct answer outscores a wrong one (ties: 1/2)."""
    c, y = check_inputs(confidence, correct)
    _require_both_classes("AUROC", y)
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        raise MissingDependencyError("scikit-learn", "eval", "auroc") from None
    return float(roc_auc_score(y, c))


def auprc(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Average precision of finding the correct answers by confidence (positives = correct)."""
    c, y = check_inputs(confidence, correct)
    _require_both_classes("AUPRC", y)
    try:
        from sklearn.metrics import average_precision_score
    except ImportError:
        raise MissingDependencyError("scikit-learn", "eval", "auprc") from None
    return float(average_precision_score(y, c))


# --- selective risk ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskCoverage:
    """The risk-coverage curve, one point per number of accepted answers k = 1..n.

    `coverage[k-1] = k/n`; `risk[k-1]` is the error rate among the k most confident answers;
    `threshold[k-1]` is the confidence of the k-th. Inside a group of tied confidences no
    threshold can separate the answers, so there the risk is its expectation over random
    orders of the group; at the end of each group it is exact.
    """

    threshold: FloatArray
    coverage: FloatArray
    risk: FloatArray


def _risk_curve(c: FloatArray, y: BoolArray) -> RiskCoverage:
    n = len(c)
    order = np.argsort(-c, kind="stable")
    sorted_c = c[order]
    wrong = (~y[order]).astype(np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_c[1:] != sorted_c[:-1]])
    ends = np.r_[starts[1:], n]
    cum_wrong = np.r_[0.0, np.cumsum(wrong)]
    sizes = ends - starts
    group_rate = (cum_wrong[ends] - cum_wrong[starts]) / sizes
    group = np.repeat(np.arange(len(starts)), sizes)
    k = np.arange(1, n + 1, dtype=np.float64)
    expected_wrong = cum_wrong[starts][group] + (k - starts[group]) * group_rate[group]
    return RiskCoverage(threshold=sorted_c, coverage=k / n, risk=expected_wrong / k)


def risk_coverage_curve(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> RiskCoverage:
    """Coverage and selective risk when answers are accepted most confident first."""
    return _risk_curve(*check_inputs(confidence, correct))


def _aurc(c: FloatArray, y: BoolArray) -> float:
    return float(_risk_curve(c, y).risk.mean())


def aurc(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Area under the risk-coverage curve: the mean selective risk over k = 1..n (lower is better).

    A constant confidence scores the error rate; a perfect ranking scores the least possible.
    """
    return _aurc(*check_inputs(confidence, correct))


def _prr(c: FloatArray, y: BoolArray) -> float:
    _require_both_classes("PRR", y)
    random = 1.0 - float(y.mean())  # a random order's expected AURC is the error rate
    oracle = _aurc(y.astype(np.float64), y)
    return (random - _aurc(c, y)) / (random - oracle)


def prr(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Prediction rejection ratio: (AURC_random - AURC) / (AURC_random - AURC_oracle).

    1 for a perfect ranking, 0 for one no better than chance, negative when worse.
    """
    return _prr(*check_inputs(confidence, correct))


# --- calibration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReliabilityBins:
    """What a reliability diagram plots: per bin, its range, mean confidence, accuracy, count.

    A bin holds confidences in [lower, upper) (the last one also holds `upper`). Empty bins
    (possible with uniform bins) have count 0 and NaN mean confidence and accuracy.
    """

    lower: FloatArray
    upper: FloatArray
    mean_confidence: FloatArray
    accuracy: FloatArray
    count: npt.NDArray[np.int64]

    def ece(self) -> float:
        """The count-weighted mean gap |accuracy - mean confidence| over non-empty bins."""
        used = self.count > 0
        gaps = np.abs(self.accuracy[used] - self.mean_confidence[used])
        return float(np.sum(gaps * self.count[used]) / np.sum(self.count[used]))

    def accuracy_interval(self, z: float = 1.96) -> tuple[FloatArray, FloatArray]:
        """Per bin, the Wilson score interval of its accuracy (95% with z=1.96; NaN if empty)."""
        right = np.rint(np.nan_to_num(self.accuracy) * self.count)
        return wilson_interval(right, self.count, z)


def wilson_interval(
    successes: npt.ArrayLike, trials: npt.ArrayLike, z: float = 1.96
) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval of a proportion, elementwise: (lower, upper); NaN where no trials.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n successes,
    which is what small reliability bins need.
    """
    k, n = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        z2 = z * z
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # Exact at the ends: no successes (all successes) put the lower (upper) bound at 0 (1).
    lower = np.where(k <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    upper = np.where(k >= n, 1.0, np.clip(centre + half, 0.0, 1.0))
    return np.where(n > 0, lower, np.nan), np.where(n > 0, upper, np.nan)


def _interior_edges(c: FloatArray, n_bins: int, strategy: BinStrategy) -> FloatArray:
    if strategy == "uniform":
        # i / n is correctly rounded, so e.g. 0.57 falls in the bin that starts at 0.57.
        return np.arange(1, n_bins, dtype=np.float64) / n_bins
    # Equal mass: cut every n / n_bins answers, but never inside a group of tied confidences;
    # such a cut moves to whichever end of the group is nearer, so bins stay near equal size.
    sorted_c = np.sort(c)
    n = len(sorted_c)
    cuts = (np.arange(1, n_bins) * n) // n_bins
    start = np.searchsorted(sorted_c, sorted_c[np.minimum(cuts, n - 1)], side="left")
    end = np.searchsorted(sorted_c, sorted_c[np.minimum(cuts, n - 1)], side="right")
    moved = np.where(cuts - start <= end - cuts, start, end)
    moved = moved[(moved > 0) & (moved < n)]
    edges: FloatArray = np.unique(sorted_c[moved])
    return edges


def _reliability(
    c: FloatArray, y: BoolArray, n_bins: int, strategy: BinStrategy
) -> ReliabilityBins:
    _check_bins(n_bins)
    if strategy not in ("uniform", "quantile"):
        raise ConfigError(f"unknown bin strategy {strategy!r}; use 'uniform' or 'quantile'")
    interior = _interior_edges(c, n_bins, strategy)
    which = np.searchsorted(interior, c, side="right")
    size = len(interior) + 1
    count = np.bincount(which, minlength=size).astype(np.int64)
    conf_sum = np.bincount(which, weights=c, minlength=size)
    right_sum = np.bincount(which, weights=y.astype(np.float64), minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(count > 0, conf_sum / count, np.nan)
        accuracy = np.where(count > 0, right_sum / count, np.nan)
    return ReliabilityBins(
        lower=np.r_[0.0, interior],
        upper=np.r_[interior, 1.0],
        mean_confidence=mean_confidence,
        accuracy=accuracy,
        count=count,
    )


def reliability_bins(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    n_bins: int = 10,
    strategy: BinStrategy = "uniform",
) -> ReliabilityBins:
    """Bin the answers by confidence: equal-width bins ("uniform") or equal-mass ("quantile")."""
    c, y = check_inputs(confidence, correct)
    return _reliability(c, y, n_bins, strategy)


def ece(confidence: npt.ArrayLike, correct: npt.ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over `n_bins` equal-width bins of [0, 1]."""
    c, y = check_inputs(confidence, correct)
    return _reliability(c, y, n_bins, "uniform").ece()


def adaptive_ece(confidence: npt.ArrayLike, correct: npt.ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over `n_bins` equal-mass bins (ties stay in one bin)."""
    c, y = check_inputs(confidence, correct)
    return _reliability(c, y, n_bins, "quantile").ece()


def brier(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Mean squared gap between confidence and the 0/1 outcome (lower is better)."""
    c, y = check_inputs(confidence, correct)
    return float(np.mean((c - y) ** 2))


# --- all at once ------------------------------------------------------------------------------


class Summary(TypedDict):
    """Every metric at once. A metric that could not be computed is NaN, and `missing` says why."""

    n: int
    accuracy: float
    auroc: float
    auprc: float
    aurc: float
    prr: float
    ece: float
    adaptive_ece: float
    brier: float
    missing: dict[str, str]


def summarize(confidence: npt.ArrayLike, correct: npt.ArrayLike, n_bins: int = 10) -> Summary:
    """All metrics for one set of labelled confidences; never fails on one-class labels."""
    c, y = check_inputs(confidence, correct)
    _check_bins(n_bins)
    missing: dict[str, str] = {}

    def attempt(name: str, metric: Callable[[], float]) -> float:
        try:
            return metric()
        except (UndefinedMetricError, MissingDependencyError) as exc:
            missing[name] = str(exc)
            return float("nan")

    return Summary(
        n=len(c),
        accuracy=float(y.mean()),
        auroc=attempt("auroc", lambda: auroc(c, y)),
        auprc=attempt("auprc", lambda: auprc(c, y)),
        aurc=_aurc(c, y),
        prr=attempt("prr", lambda: _prr(c, y)),
        ece=_reliability(c, y, n_bins, "uniform").ece(),
        adaptive_ece=_reliability(c, y, n_bins, "quantile").ece(),
        brier=float(np.mean((c - y) ** 2)),
        missing=missing,
    )
