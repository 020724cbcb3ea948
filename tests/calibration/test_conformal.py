"""The conformal threshold: its scan, its bound, its errors, and its guarantee in simulation."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from demur import ConfigError, DataError, Ladder
from demur.calibration.conformal import (
    ConformalThreshold,
    NoValidThresholdError,
    examples_needed,
)

stats = pytest.importorskip("scipy.stats")

ALPHA, DELTA = 0.1, 0.1


def synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Confidence uniform on [0, 1]; right with probability 0.5 + 0.5 c^2 (rises with c)."""
    confidence = rng.uniform(size=n)
    return confidence, rng.uniform(size=n) < 0.5 + 0.5 * confidence**2


def true_error(t: float) -> float:
    """The population error rate among answers with confidence >= t, for `synthetic`."""
    return 0.5 * (1 - (1 + t + t * t) / 3)  # mean of 0.5 - 0.5 c^2 over [t, 1]


ORACLE_COVERAGE = 1 - (-1 + math.sqrt(1 + 4 * 1.4)) / 2  # true_error(t) = 0.1 at t + t^2 = 1.4


def reference_threshold(c: np.ndarray, y: np.ndarray, alpha: float, delta: float) -> float | None:
    """The same scan written plainly, with scipy's binomial tail instead of beta quantiles."""
    one_error = next(k for k in range(1, 10_000) if stats.binom.cdf(1, k, alpha) <= delta)
    start = one_error if len(c) >= one_error else examples_needed(alpha, delta)
    chosen = None
    for t in sorted(set(c.tolist()), reverse=True):
        accepted = c >= t
        k, errors = int(accepted.sum()), int((~y[accepted]).sum())
        if k < start:
            continue
        if stats.binom.cdf(errors, k, alpha) > delta:  # bound > alpha
            break
        chosen = t
    return chosen


@pytest.mark.parametrize("seed", range(8))
def test_scan_matches_a_plain_reference(seed):
    c, y = synthetic(1500, np.random.default_rng(seed))
    expected = reference_threshold(c, y, ALPHA, DELTA)
    if expected is None:
        with pytest.raises(NoValidThresholdError):
            ConformalThreshold.fit(c, y, ALPHA, DELTA)
        return
    fitted = ConformalThreshold.fit(c, y, ALPHA, DELTA)
    assert fitted.threshold == expected
    accepted = c >= fitted.threshold
    assert fitted.n == 1500
    assert fitted.accepted == accepted.sum()
    assert fitted.errors == (~y[accepted]).sum()
    assert fitted.empirical_error == pytest.approx(fitted.errors / fitted.accepted)
    assert fitted.coverage == pytest.approx(accepted.mean())
    assert fitted.bound <= ALPHA
    expected = stats.beta.ppf(1 - DELTA, fitted.errors + 1, fitted.accepted - fitted.errors)
    assert fitted.bound == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_numpy_fallback_matches_scipy(seed, monkeypatch):
    c, y = synthetic(2000, np.random.default_rng(seed))
    with_scipy = ConformalThreshold.fit(c, y, ALPHA, DELTA)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # `import scipy.stats` now fails
    without = ConformalThreshold.fit(c, y, ALPHA, DELTA)
    assert without.threshold == with_scipy.threshold
    assert without.bound == pytest.approx(with_scipy.bound, rel=1e-9)


def test_zero_errors_need_ln_delta_over_ln_one_minus_alpha_examples():
    assert examples_needed(0.05, 0.1) == 45  # ln(0.1) / ln(0.95) = 44.9
    assert examples_needed(0.1, 0.1) == 22
    k = examples_needed(0.05, 0.1)
    assert 1 - 0.1 ** (1 / k) <= 0.05 < 1 - 0.1 ** (1 / (k - 1))
    # All correct: the whole set is accepted, and the bound is 1 - delta ** (1 / n).
    fitted = ConformalThreshold.fit(np.linspace(0.5, 1, 45), np.ones(45, bool), 0.05, 0.1)
    assert (fitted.threshold, fitted.accepted, fitted.errors) == (0.5, 45, 0)
    assert fitted.bound == pytest.approx(1 - 0.1 ** (1 / 45))


def test_too_few_examples_says_how_many_are_needed():
    c, y = synthetic(20, np.random.default_rng(0))
    with pytest.raises(NoValidThresholdError, match=r"at least 45 accepted examples.*ln\(delta\)"):
        ConformalThreshold.fit(c, y, alpha=0.05, delta=0.1)
    try:
        ConformalThreshold.fit(c, y, alpha=0.05, delta=0.1)
    except NoValidThresholdError as exc:
        assert exc.needed == 45
        assert isinstance(exc, DataError)  # a data problem, not a config mistake
        assert not isinstance(exc, ConfigError)


def test_wrong_answers_at_the_top_are_reported():
    # Every fourth answer is wrong, the most confident included: no threshold can pass.
    c = np.linspace(1, 0, 100)
    y = np.ones(100, dtype=bool)
    y[::4] = False
    with pytest.raises(
        NoValidThresholdError, match=r"the 38 most confident answers .* include 10 wrong"
    ):
        ConformalThreshold.fit(c, y, ALPHA, DELTA)


def test_all_wrong_labels_are_refused_with_a_hint():
    with pytest.raises(NoValidThresholdError, match=r"all 50 .* labelled wrong.*True means"):
        ConformalThreshold.fit(np.linspace(0, 1, 50), np.zeros(50, bool), ALPHA, DELTA)


@pytest.mark.parametrize(("alpha", "delta"), [(0, 0.1), (1.2, 0.1), (0.1, 0.0), (0.1, True)])
def test_alpha_and_delta_must_lie_strictly_between_0_and_1(alpha, delta):
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        ConformalThreshold.fit([0.5] * 30, [True] * 30, alpha, delta)


def test_grid_and_min_accepted():
    c, y = synthetic(2000, np.random.default_rng(5))
    grid = np.linspace(0, 1, 101)
    fitted = ConformalThreshold.fit(c, y, ALPHA, DELTA, grid=grid)
    assert np.isclose(grid, fitted.threshold).any()
    assert fitted.bound <= ALPHA
    with pytest.raises(NoValidThresholdError, match="min_accepted=5000"):
        ConformalThreshold.fit(c, y, ALPHA, DELTA, min_accepted=5000)


def test_the_threshold_goes_into_a_ladder_and_survives_json(tmp_path):
    c, y = synthetic(2000, np.random.default_rng(6))
    fitted = ConformalThreshold.fit(c, y, ALPHA, DELTA, estimators=["mean_logprob"], model="weak")
    assert Ladder(fitted.threshold).threshold == fitted.threshold
    assert fitted.accepts(fitted.threshold) and not fitted.accepts(fitted.threshold - 1e-9)
    assert ConformalThreshold.from_json(fitted.to_json()) == fitted
    fitted.save(tmp_path / "threshold.json")
    loaded = ConformalThreshold.load(tmp_path / "threshold.json")
    assert loaded == fitted
    assert loaded.metadata is not None and loaded.metadata.estimators == ("mean_logprob",)
    with pytest.raises(ConfigError, match="holds kind 'platt'"):
        ConformalThreshold.from_dict({**fitted.to_dict(), "kind": "platt"})


# --- the guarantee ----------------------------------------------------------------------------


def test_guarantee_holds_over_random_calibration_test_splits():
    """P(error among accepted > alpha) <= delta, checked over many calibration/test draws.

    Tolerances:
    - Monte Carlo: each split violates or not, independently, with some probability p <= delta;
      over S splits the observed share has standard deviation sqrt(p (1 - p) / S) <= 0.015 at
      S = 400. We allow delta + 3 such deviations.
    - Finite test set: the test error only estimates the true error of the chosen threshold.
      A threshold whose true error is exactly alpha would look like a violation on half the
      test sets. So on the test set a split counts as violating only when its error exceeds
      alpha by 2 standard errors, sqrt(alpha (1 - alpha) / accepted) (about 0.013 with ~2000
      accepted test answers); a split that truly meets alpha gets past that margin with
      probability about 2%. Violations smaller than the margin are still caught by the exact
      check, which uses the population error rate of the synthetic data and so has no test
      noise at all.

    A plug-in threshold (the lowest with empirical error <= alpha) fails the same check about
    half the time, which shows the simulation can tell a guarantee from none.
    """
    rng = np.random.default_rng(2026)
    splits = 400
    tolerance = 3 * math.sqrt(DELTA * (1 - DELTA) / splits)
    exact = on_test = plug_in = 0
    coverage = []
    for _ in range(splits):
        c, y = synthetic(2000, rng)
        test_c, test_y = synthetic(20_000, rng)
        try:
            t = ConformalThreshold.fit(c, y, ALPHA, DELTA).threshold
        except NoValidThresholdError:
            coverage.append(0.0)  # accepts nothing, so it cannot err
            continue
        accepted = test_c >= t
        error = 1 - test_y[accepted].mean()
        margin = 2 * math.sqrt(ALPHA * (1 - ALPHA) / accepted.sum())
        exact += true_error(t) > ALPHA
        on_test += error > ALPHA + margin
        coverage.append(accepted.mean())

        order = np.argsort(-c)
        empirical = np.cumsum(~y[order]) / np.arange(1, len(c) + 1)
        plug_in += true_error(c[order][np.flatnonzero(empirical <= ALPHA)[-1]]) > ALPHA

    report = (
        f"violations: exact {exact / splits:.3f}, on test sets {on_test / splits:.3f}, "
        f"plug-in {plug_in / splits:.3f}; mean coverage {np.mean(coverage):.3f} "
        f"(oracle {ORACLE_COVERAGE:.3f})"
    )
    print(report)
    assert exact / splits <= DELTA + tolerance, report
    assert on_test / splits <= DELTA + tolerance, report
    assert plug_in / splits > 0.3, report
    assert np.mean(coverage) > 0.5 * ORACLE_COVERAGE, report
