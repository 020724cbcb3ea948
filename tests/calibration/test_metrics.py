"""Metrics on hand-computed cases, against scikit-learn, and on bad input."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from demur import ConfigError, MissingDependencyError
from demur.calibration.metrics import (
    UndefinedMetricError,
    adaptive_ece,
    auprc,
    aurc,
    auroc,
    brier,
    drop_nan,
    ece,
    prr,
    reliability_bins,
    risk_coverage_curve,
    summarize,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")

# Four answers, most confident first: right, wrong, right, wrong.
CONF = [0.9, 0.8, 0.7, 0.6]
RIGHT = [True, False, True, False]


def random_data(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    confidence = np.round(rng.uniform(size=n), 2)  # rounding makes ties
    correct = rng.uniform(size=n) < confidence
    return confidence, correct


# --- discrimination ---------------------------------------------------------------------------


def test_auroc_counts_correctly_ordered_pairs():
    # pairs (right, wrong): (.9,.8) (.9,.6) (.7,.6) are ordered, (.7,.8) is not: 3 of 4.
    assert auroc(CONF, RIGHT) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [True, False]) == pytest.approx(0.5)  # a tie counts half


def test_auprc_is_average_precision_over_the_correct_answers():
    # Precision at the two correct answers: 1/1 and 2/3; each is half the recall.
    assert auprc(CONF, RIGHT) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_auprc_agree_with_scikit_learn_and_mann_whitney(seed):
    c, y = random_data(seed)
    assert auroc(c, y) == pytest.approx(sklearn_metrics.roc_auc_score(y, c))
    assert auprc(c, y) == pytest.approx(sklearn_metrics.average_precision_score(y, c))
    right, wrong = c[y], c[~y]
    pairs = (right[:, None] > wrong[None, :]) + 0.5 * (right[:, None] == wrong[None, :])
    assert auroc(c, y) == pytest.approx(pairs.mean())


# --- selective risk ---------------------------------------------------------------------------


def test_risk_coverage_curve_by_hand():
    curve = risk_coverage_curve(CONF, RIGHT)
    np.testing.assert_allclose(curve.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.risk, [0, 1 / 2, 1 / 3, 2 / 4])
    np.testing.assert_allclose(curve.threshold, [0.9, 0.8, 0.7, 0.6])
    assert aurc(CONF, RIGHT) == pytest.approx((0 + 1 / 2 + 1 / 3 + 2 / 4) / 4)


def test_tied_confidences_give_the_expected_risk_whatever_the_input_order():
    # The three tied at 0.8 hold one error: inside the group risk is its expectation.
    conf = [0.9, 0.8, 0.8, 0.8, 0.1]
    right = [True, True, False, True, False]
    curve = risk_coverage_curve(conf, right)
    np.testing.assert_allclose(curve.risk, [0, (1 / 3) / 2, (2 / 3) / 3, 1 / 4, 2 / 5])
    order = [4, 2, 0, 3, 1]
    shuffled = risk_coverage_curve(np.array(conf)[order], np.array(right)[order])
    np.testing.assert_allclose(shuffled.risk, curve.risk)


def test_constant_confidence_scores_the_error_rate():
    right = [True, False, False, True, True]
    assert aurc([0.5] * 5, right) == pytest.approx(0.4)
    assert prr([0.5] * 5, right) == pytest.approx(0.0)


def test_prr_is_one_for_a_perfect_ranking_and_negative_for_a_reversed_one():
    # AURC random = 0.5; oracle = (0 + 0 + 1/3 + 1/2) / 4; ours = (0 + 1/2 + 1/3 + 1/2) / 4.
    oracle = (1 / 3 + 1 / 2) / 4
    assert prr(CONF, RIGHT) == pytest.approx((0.5 - aurc(CONF, RIGHT)) / (0.5 - oracle))
    assert prr(CONF, RIGHT) == pytest.approx(4 / 7)
    perfect = [True, True, False, False]
    assert prr(CONF, perfect) == pytest.approx(1.0)
    assert prr(CONF, perfect[::-1]) < 0


# --- calibration ------------------------------------------------------------------------------


def test_ece_by_hand():
    # Bin [0.1, 0.2): mean 0.125, accuracy 0.5; bin [0.9, 1.0]: mean 0.925, accuracy 1.
    conf, right = [0.1, 0.15, 0.9, 0.95], [False, True, True, True]
    assert ece(conf, right) == pytest.approx(0.5 * 0.375 + 0.5 * 0.075)
    # One bin holds everything: |mean confidence - accuracy| = |0.525 - 0.75|.
    assert ece(conf, right, n_bins=1) == pytest.approx(0.225)


def test_bin_edges_belong_to_the_upper_bin_and_one_to_the_last():
    bins = reliability_bins([0.0, 0.3, 0.57, 1.0], [True] * 4, n_bins=10)
    assert bins.count.tolist() == [1, 0, 0, 1, 0, 1, 0, 0, 0, 1]
    bins = reliability_bins([0.57], [True], n_bins=100)
    assert bins.count[57] == 1


def test_reliability_bins_report_what_a_diagram_needs():
    bins = reliability_bins([0.1, 0.15, 0.9, 0.95], [False, True, True, True], n_bins=10)
    np.testing.assert_allclose(bins.lower, np.arange(10) / 10)
    np.testing.assert_allclose(bins.upper, np.arange(1, 11) / 10)
    assert bins.count.tolist() == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins.mean_confidence[1] == pytest.approx(0.125)
    assert bins.accuracy[9] == pytest.approx(1.0)
    assert math.isnan(bins.mean_confidence[0]) and math.isnan(bins.accuracy[0])


def test_adaptive_ece_uses_equal_mass_bins_and_keeps_ties_together():
    # Two bins of two: (0.1, 0.2) mean 0.15 accuracy 0.5; (0.3, 0.4) mean 0.35 accuracy 1.
    conf, right = [0.4, 0.1, 0.3, 0.2], [True, False, True, True]
    assert adaptive_ece(conf, right, n_bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.65)
    tied = reliability_bins([0.5, 0.5, 0.5, 0.9], [True, False, True, True], 2, "quantile")
    assert tied.count.tolist() == [3, 1]
    c, y = random_data(3, n=1000)
    assert reliability_bins(c, y, 10, "quantile").count.sum() == 1000


def test_brier_by_hand():
    assert brier([1.0, 0.0, 0.5], [True, True, False]) == pytest.approx((0 + 1 + 0.25) / 3)


def test_perfectly_calibrated_data_has_small_ece():
    rng = np.random.default_rng(7)
    p = rng.uniform(size=50_000)
    y = rng.uniform(size=p.size) < p
    assert ece(p, y) < 0.01
    assert adaptive_ece(p, y) < 0.01
    assert ece(p**3, y) > 0.15


# --- summarize --------------------------------------------------------------------------------


def test_summarize_returns_every_metric():
    c, y = random_data(4)
    summary = summarize(c, y)
    assert summary["missing"] == {}
    assert summary["n"] == len(c)
    assert summary["accuracy"] == pytest.approx(y.mean())
    assert summary["auroc"] == pytest.approx(auroc(c, y))
    assert summary["auprc"] == pytest.approx(auprc(c, y))
    assert summary["aurc"] == pytest.approx(aurc(c, y))
    assert summary["prr"] == pytest.approx(prr(c, y))
    assert summary["ece"] == pytest.approx(ece(c, y))
    assert summary["adaptive_ece"] == pytest.approx(adaptive_ece(c, y))
    assert summary["brier"] == pytest.approx(brier(c, y))


def test_summarize_reports_why_a_metric_is_missing_for_one_class_labels():
    summary = summarize([0.9, 0.8, 0.4], [True, True, True])
    assert set(summary["missing"]) == {"auroc", "auprc", "prr"}
    assert all(math.isnan(summary[name]) for name in ("auroc", "auprc", "prr"))
    assert "all 3 answers are correct" in summary["missing"]["auroc"]
    assert summary["aurc"] == 0.0
    assert summary["ece"] == pytest.approx(ece([0.9, 0.8, 0.4], [True] * 3))


@pytest.mark.parametrize("metric", [auroc, auprc, prr])
def test_one_class_metrics_raise_a_clear_error(metric):
    with pytest.raises(UndefinedMetricError, match="all 2 answers are wrong.*ECE or the Brier"):
        metric([0.2, 0.7], [False, False])
    assert issubclass(UndefinedMetricError, ValueError)


def test_without_scikit_learn_auroc_names_the_extra_and_summarize_carries_on(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)
    with pytest.raises(MissingDependencyError, match=r"demur\[eval\]"):
        auroc(CONF, RIGHT)
    summary = summarize(CONF, RIGHT)
    assert "demur[eval]" in summary["missing"]["auroc"]
    assert summary["prr"] == pytest.approx(4 / 7)


# --- bad input --------------------------------------------------------------------------------


def test_mismatched_lengths_are_named():
    with pytest.raises(ConfigError, match="confidence has 3 entries but correct has 2"):
        ece([0.1, 0.2, 0.3], [True, False])


def test_nan_and_inf_are_counted_located_and_drop_nan_is_suggested():
    conf = np.array([0.1, np.nan, 0.5, np.inf, 0.9])
    right = np.array([True, False, True, True, False])
    with pytest.raises(
        ConfigError,
        match=r"2 of 5 confidences are NaN or infinite \(at indices "
        r"1, 3\).*drop_nan",
    ):
        aurc(conf, right)
    keep = drop_nan(conf)
    assert keep.tolist() == [True, False, True, False, True]
    assert aurc(conf[keep], right[keep]) == pytest.approx(aurc([0.1, 0.5, 0.9], [1, 1, 0]))


@pytest.mark.parametrize(
    ("conf", "right", "message"),
    [
        ([], [], "no examples"),
        ([0.2, 1.3], [True, False], r"outside \[0, 1\].*sigmoid"),
        ([0.2, 0.3], [1, 2], "booleans or 0/1"),
        ([[0.2, 0.3]], [[1, 0]], "1-D"),
        (["a"], [True], "array of numbers"),
    ],
)
def test_bad_input_is_explained(conf, right, message):
    with pytest.raises(ConfigError, match=message):
        brier(conf, right)


def test_n_bins_must_be_positive():
    with pytest.raises(ConfigError, match="n_bins must be a positive integer"):
        ece(CONF, RIGHT, n_bins=0)


def test_importing_the_modules_does_not_import_scikit_learn_or_scipy():
    code = (
        "import sys\n"
        "import demur.calibration.metrics, demur.calibration.calibrators\n"
        "import demur.calibration.conformal, demur.estimators.ensemble\n"
        "print(','.join(m for m in ('sklearn', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_wilson_interval_matches_the_textbook_and_handles_edges():
    from demur.calibration.metrics import wilson_interval

    low, high = wilson_interval([0, 5, 10, 0], [10, 10, 10, 0])
    assert low[:3] == pytest.approx([0.0, 0.2366, 0.7225], abs=1e-4)
    assert high[:3] == pytest.approx([0.2775, 0.7634, 1.0], abs=1e-4)
    assert np.isnan(low[3]) and np.isnan(high[3])
    # All right in a bin of 6: the upper bound is exactly 1, not 1 - 1e-16 (an error bar
    # drawn from it would otherwise point the wrong way).
    low, high = wilson_interval([6, 0], [6, 6])
    assert high[0] == 1.0 and low[1] == 0.0
