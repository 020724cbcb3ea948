"""A confidence threshold with a finite-sample guarantee on the error rate of accepted answers.

`ConformalThreshold.fit(confidence, correct, alpha, delta)` picks the lowest threshold t such
that, with probability at least 1 - delta over the calibration sample, the error rate among
answers with confidence >= t is at most alpha. It follows Learn-then-Test (Angelopoulos et al.,
2021) with fixed-sequence testing:

1. candidate thresholds (by default the distinct calibration confidences) are scanned from
   the highest down, starting at the first that accepts enough answers for the bound to pass
   with one error (`min_accepted`; with fewer examples, enough to pass with none). Higher up,
   a single wrong answer among a handful would end the scan before it starts. The start
   depends on the number of examples alone, never on the labels;
2. at each candidate, the errors among the k accepted calibration answers give a one-sided
   Clopper-Pearson (exact binomial) upper bound on the error rate, at level delta;
3. the scan continues while the bound is <= alpha and stops at the first failure.

Why this controls the error without a union bound: to end below the highest threshold whose
error rate is still <= alpha, the scan must first pass the candidate just below it, whose test
errs with probability <= delta. That argument assumes answers do not get more often right as
their confidence falls (P(correct | confidence) non-decreasing), which is what a confidence
score is for; `tests/calibration/test_conformal.py` checks the guarantee by simulation.

When no threshold passes, `fit` raises `NoValidThresholdError` rather than return a threshold
that accepts nothing: a router built on that would quietly escalate or abstain on every
question. The message says how many examples the guarantee needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from demur.calibration.files import (
    FitMetadata,
    JsonDocument,
    utc_now,
)
from demur.calibration.metrics import FloatArray, check_inputs
from demur.errors import ConfigError
from demur.errors import NoValidThresholdError as NoValidThresholdError  # re-exported

IntArray = npt.NDArray[np.int64]


def examples_needed(alpha: float, delta: float) -> int:
    """The least k whose bound can pass at all (zero errors): k >= ln(delta) / ln(1 - alpha)."""
    k = max(1, math.ceil(math.log(delta) / math.log1p(-alpha)))
    # Guard against rounding in the logarithms: step to the exact least k.
    while k > 1 and 1.0 - math.pow(delta, 1.0 / (k - 1)) <= alpha:
        k -= 1
    while 1.0 - math.pow(delta, 1.0 / k) > alpha:
        k += 1
    return k


def _examples_for_one_error(alpha: float, delta: float, needed: int) -> int:
    """The least k at which one error in k still passes: P(Binomial(k, alpha) <= 1) <= delta."""
    k = needed
    while (1 - alpha) ** (k - 1) * (1 - alpha + k * alpha) > delta:
        k += 1
    return k


# --- the binomial bound -----------------------------------------------------------------------


def _binom_cdf(errors: int, k: int, p: float) -> float:
    """P(Binomial(k, p) <= errors), summed in log space with numpy."""
    if p <= 0.0 or errors >= k:
        return 1.0
    if p >= 1.0:
        return 0.0
    j = np.arange(1, errors + 1, dtype=np.float64)
    log_choose = np.r_[0.0, np.cumsum(np.log(k - j + 1) - np.log(j))]
    j = np.arange(errors + 1, dtype=np.float64)
    log_terms = log_choose + j * math.log(p) + (k - j) * math.log1p(-p)
    top = float(log_terms.max())
    return min(1.0, math.exp(top) * float(np.exp(log_terms - top).sum()))


def _upper_bound_numpy(errors: int, k: int, delta: float) -> float:
    """The one-sided Clopper-Pearson upper bound, by bisection on the binomial tail."""
    if k == 0 or errors >= k:
        return 1.0
    if errors == 0:
        return 1.0 - math.pow(delta, 1.0 / k)
    low, high = errors / k, 1.0
    for _ in range(100):
        mid = (low + high) / 2
        if _binom_cdf(errors, k, mid) > delta:
            low = mid
        else:
            high = mid
    return high


def error_upper_bound(errors: int, n: int, delta: float) -> float:
    """The error rate that `errors` wrong answers out of `n` rule out with confidence 1 - delta
    (one-sided Clopper-Pearson)."""
    return _upper_bound_numpy(errors, n, delta)


def _upper_bounds_scipy(errors: IntArray, k: IntArray, delta: float) -> FloatArray | None:
    """Vectorised Clopper-Pearson upper bounds with scipy, or None when scipy is missing."""
    try:
        from scipy.stats import beta
    except ImportError:
        return None
    bounds = np.ones(len(k), dtype=np.float64)
    some_right = (k > 0) & (errors < k)
    bounds[some_right] = beta.ppf(1.0 - delta, errors[some_right] + 1, (k - errors)[some_right])
    return bounds


def _last_passing(errors: IntArray, k: IntArray, alpha: float, delta: float) -> tuple[int, float]:
    """Index of the last candidate before the first failure (-1 if the first fails), its bound."""
    bounds = _upper_bounds_scipy(errors, k, delta)
    if bounds is not None:
        failed = np.flatnonzero(~(bounds <= alpha))
        last = (int(failed[0]) if len(failed) else len(k)) - 1
        return last, float(bounds[max(last, 0)])
    last = -1
    for i in range(len(k)):
        # bound <= alpha exactly when P(Binomial(k, alpha) <= errors) <= delta.
        if _binom_cdf(int(errors[i]), int(k[i]), alpha) > delta:
            break
        last = i
    shown = max(last, 0)
    return last, _upper_bound_numpy(int(errors[shown]), int(k[shown]), delta)


# --- the threshold ----------------------------------------------------------------------------


def _check_level(name: str, value: float, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ConfigError(
            f"{name} must be a number strictly between 0 and 1, got {value!r}; e.g. {example}"
        )
    return float(value)


class ConformalThreshold(JsonDocument):
    """A threshold whose accepted answers err at most `alpha` of the time, w.p. >= 1 - delta.

    `threshold` goes straight into a policy: `Ladder(fitted.threshold, rungs=[...])`.
    `accepted`, `errors`, `empirical_error` and `coverage` describe the calibration data at the
    threshold; `bound` is the Clopper-Pearson upper bound on the error rate there.
    """

    document_kind: ClassVar[str] = "conformal_threshold"
    document_name: ClassVar[str] = "conformal threshold"

    threshold: float
    alpha: float
    delta: float
    n: int
    accepted: int
    errors: int
    empirical_error: float
    coverage: float
    bound: float
    metadata: FitMetadata | None = None

    @classmethod
    def fit(
        cls,
        confidence: npt.ArrayLike,
        correct: npt.ArrayLike,
        alpha: float,
        delta: float,
        *,
        grid: Sequence[float] | None = None,
        min_accepted: int | None = None,
        estimators: Sequence[str] = (),
        model: str | None = None,
        data: str | None = None,
    ) -> ConformalThreshold:
        """The lowest threshold meeting the guarantee; NoValidThresholdError when none does.

        `grid`: candidate thresholds to consider instead of the observed confidences, e.g.
        np.linspace(0, 1, 101) for round numbers. `min_accepted`: start the scan at the first
        candidate accepting at least this many calibration answers (see the module docstring;
        never fewer than `examples_needed(alpha, delta)`). Raise it when you expect many
        answers to be safe: a later start is less likely to stop early. Choose it without
        looking at the labels, or the guarantee is void.
        """
        alpha = _check_level("alpha (the error rate to allow)", alpha, "alpha=0.1")
        delta = _check_level("delta (the chance the guarantee may fail)", delta, "delta=0.1")
        c, y = check_inputs(confidence, correct)
        n = len(c)
        ascending = np.sort(c)
        wrong_by_rank = np.r_[0, np.cumsum(~y[np.argsort(-c, kind="stable")])].astype(np.int64)
        if grid is None:
            candidates = np.unique(c)[::-1]
        else:
            candidates = np.unique(np.asarray(grid, dtype=np.float64))[::-1]
            if len(candidates) == 0 or not np.all((candidates >= 0) & (candidates <= 1)):
                raise ConfigError("grid must be a non-empty list of thresholds in [0, 1]")
        # Answers with confidence >= t are the k most confident; sorting keeps ties together.
        k = (n - np.searchsorted(ascending, candidates, side="left")).astype(np.int64)
        if not y.any():
            raise NoValidThresholdError(
                f"all {n} calibration answers are labelled wrong, so no threshold can keep the "
                f"error rate <= alpha={alpha:g}. Check the labels (True means correct).",
                examples_needed(alpha, delta),
            )
        needed = examples_needed(alpha, delta)
        if min_accepted is not None:
            if isinstance(min_accepted, bool) or not isinstance(min_accepted, int):
                raise ConfigError(f"min_accepted must be an integer, got {min_accepted!r}")
            start = max(needed, min_accepted)
        else:
            one_error = _examples_for_one_error(alpha, delta, needed)
            start = one_error if n >= one_error else needed
        testable = k >= start  # a suffix: k grows as the threshold falls
        if not testable.any():
            raise _too_few(int(k[-1]), n, start, needed, alpha, delta)
        first = int(np.argmax(testable))
        candidates, k = candidates[first:], k[first:]
        errors = wrong_by_rank[k]
        last, bound = _last_passing(errors, k, alpha, delta)
        if last < 0:
            raise _first_fails(
                float(candidates[0]), int(k[0]), int(errors[0]), bound, n, needed, alpha, delta
            )
        accepted, wrong = int(k[last]), int(errors[last])
        return cls(
            threshold=float(candidates[last]),
            alpha=alpha,
            delta=delta,
            n=n,
            accepted=accepted,
            errors=wrong,
            empirical_error=wrong / accepted,
            coverage=accepted / n,
            bound=bound,
            metadata=FitMetadata(
                estimators=tuple(estimators), model=model, data=data, fitted_at=utc_now(), n=n
            ),
        )

    def accepts(self, confidence: float) -> bool:
        """True when an answer with this confidence clears the threshold."""
        return confidence >= self.threshold


def smallest_alpha(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    delta: float,
    *,
    grid: Sequence[float] | None = None,
) -> float | None:
    """The least alpha on `grid` (by default 0.01, 0.02, ... 0.99) for which these examples give
    a threshold at this delta, or None when none does: what to ask for when alpha is too strict.
    """
    alphas = np.round(np.arange(1, 100) / 100, 2) if grid is None else np.sort(np.asarray(grid))
    for alpha in alphas:
        try:
            ConformalThreshold.fit(confidence, correct, float(alpha), delta)
        except NoValidThresholdError:
            continue
        return float(alpha)
    return None


def _guarantee(alpha: float, delta: float, n: int) -> str:
    return (
        f"no confidence threshold keeps the error rate of accepted answers <= alpha={alpha:g} "
        f"with probability >= {1 - delta:g} on these {n} calibration examples"
    )


def _too_few(
    most: int, n: int, start: int, needed: int, alpha: float, delta: float
) -> NoValidThresholdError:
    accepted = "" if most == n else f" (the lowest threshold accepts {most})"
    asked = f" You asked for min_accepted={start}." if start > needed else ""
    return NoValidThresholdError(
        f"{_guarantee(alpha, delta, n)}: too few examples{accepted}. Even with zero errors the "
        f"guarantee needs at least {needed} accepted examples (n >= ln(delta) / ln(1 - alpha))."
        f"{asked} Label more examples, or relax alpha or delta.",
        needed,
    )


def _first_fails(
    top: float, k: int, errors: int, bound: float, n: int, needed: int, alpha: float, delta: float
) -> NoValidThresholdError:
    return NoValidThresholdError(
        f"{_guarantee(alpha, delta, n)}: the {k} most confident answers (confidence >= "
        f"{top:.4g}) include {errors} wrong ones, an error bound of {bound:.3g} > alpha. The "
        f"guarantee needs at least {needed} accepted examples even with zero errors (n >= "
        "ln(delta) / ln(1 - alpha)), more with some. Label more examples, relax alpha or delta, "
        "or use a confidence score that ranks wrong answers lower.",
        needed,
    )
