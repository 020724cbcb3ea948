"""Calibrators: they fix miscalibration on held-out data, apply with numpy, and round-trip JSON."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pytest

from demur import (
    Calibrator,
    ConfigError,
    Ladder,
    MeanTokenLogprob,
    Reply,
    Router,
    ScriptedModel,
)
from demur.calibration.calibrators import (
    HistogramBinningCalibrator,
    IsotonicCalibrator,
    PlattCalibrator,
    calibrator_from_json,
    load_calibrator,
)
from demur.calibration.metrics import brier, ece

pytest.importorskip("sklearn")

KINDS = [PlattCalibrator, IsotonicCalibrator, HistogramBinningCalibrator]


def miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Answers right with probability p, reported with confidence p**3: far too modest."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    return p**3, rng.uniform(size=n) < p


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    fit_c, fit_y = miscalibrated(2000, seed=0)
    test_c, test_y = miscalibrated(20_000, seed=1)
    return fit_c, fit_y, test_c, test_y


@pytest.mark.parametrize("kind", KINDS)
def test_calibration_reduces_ece_and_brier_on_held_out_data(kind, split):
    fit_c, fit_y, test_c, test_y = split
    calibrator = kind().fit(fit_c, fit_y)
    calibrated = calibrator.calibrate_many(test_c)
    raw_ece = ece(test_c, test_y)
    assert raw_ece > 0.2
    assert ece(calibrated, test_y) < 0.05
    assert brier(calibrated, test_y) < brier(test_c, test_y)


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_records_the_fit(kind, split):
    fit_c, fit_y, *_ = split
    calibrator = kind().fit(
        fit_c, fit_y, estimators=["mean_logprob", "min_prob"], model="weak", data="qa.jsonl"
    )
    meta = calibrator.metadata
    assert meta is not None
    assert meta.estimators == ("mean_logprob", "min_prob")
    assert (meta.model, meta.data, meta.n) == ("weak", "qa.jsonl", 2000)
    assert datetime.fromisoformat(meta.fitted_at).utcoffset().total_seconds() == 0
    assert meta.metrics["before"]["ece"] == pytest.approx(ece(fit_c, fit_y))
    assert meta.metrics["before"]["brier"] == pytest.approx(brier(fit_c, fit_y))
    assert meta.metrics["after"]["ece"] < meta.metrics["before"]["ece"]
    assert meta.metrics["after"]["brier"] < meta.metrics["before"]["brier"]


def test_platt_matches_a_logistic_regression_on_the_logit(split):
    from sklearn.linear_model import LogisticRegression

    fit_c, fit_y, test_c, _ = split
    platt = PlattCalibrator().fit(fit_c, fit_y)

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-9, 1 - 1e-9)
        return np.log(p / (1 - p))

    reference = LogisticRegression().fit(logit(fit_c)[:, None], fit_y)
    expected = reference.predict_proba(logit(test_c)[:, None])[:, 1]
    np.testing.assert_allclose(platt.calibrate_many(test_c), expected, rtol=1e-6)
    assert platt.a is not None and platt.a > 0


def test_isotonic_applies_its_breakpoints_like_scikit_learn(split):
    from sklearn.isotonic import IsotonicRegression

    fit_c, fit_y, test_c, _ = split
    isotonic = IsotonicCalibrator().fit(fit_c, fit_y)
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(fit_c, fit_y)
    np.testing.assert_allclose(isotonic.calibrate_many(test_c), reference.predict(test_c))
    assert np.all(np.diff(isotonic.calibrate_many(np.linspace(0, 1, 101))) >= 0)


def test_histogram_binning_maps_each_bin_to_its_accuracy():
    conf = np.array([0.05, 0.1, 0.15, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 0.95])
    right = np.array([0, 0, 1, 0, 1, 1, 1, 0, 1, 1], dtype=bool)
    calibrator = HistogramBinningCalibrator(n_bins=2).fit(conf, right)
    assert calibrator.edges.tolist() == [0.0, 0.6, 1.0]
    assert calibrator.values.tolist() == [pytest.approx(0.4), pytest.approx(0.8)]
    assert calibrator.calibrate(0.59) == pytest.approx(0.4)
    assert calibrator.calibrate(0.6) == pytest.approx(0.8)


def test_uniform_histogram_keeps_the_midpoint_of_an_empty_bin():
    conf = np.r_[np.full(10, 0.05), np.full(10, 0.95)]
    right = np.r_[np.zeros(9), np.ones(1), np.ones(9), np.zeros(1)].astype(bool)
    calibrator = HistogramBinningCalibrator(n_bins=10, strategy="uniform").fit(conf, right)
    assert calibrator.calibrate(0.05) == pytest.approx(0.1)
    assert calibrator.calibrate(0.55) == pytest.approx(0.55)
    assert calibrator.calibrate(0.95) == pytest.approx(0.9)


@pytest.mark.parametrize("kind", KINDS)
def test_calibrate_agrees_with_calibrate_many_and_keeps_shape(kind, split):
    fit_c, fit_y, *_ = split
    calibrator = kind().fit(fit_c, fit_y)
    assert isinstance(calibrator, Calibrator)
    grid = np.linspace(0, 1, 12).reshape(3, 4)
    many = calibrator.calibrate_many(grid)
    assert many.shape == (3, 4)
    assert np.all((many >= 0) & (many <= 1))
    for x, expected in zip(grid.ravel(), many.ravel(), strict=True):
        value = calibrator.calibrate(float(x))
        assert type(value) is float
        assert value == expected


@pytest.mark.parametrize("kind", KINDS)
def test_json_round_trip_gives_identical_outputs(kind, split, tmp_path):
    fit_c, fit_y, test_c, _ = split
    calibrator = kind().fit(fit_c, fit_y, estimators=["mean_logprob"], model="weak")
    expected = calibrator.calibrate_many(test_c)

    again = kind.from_json(calibrator.to_json())
    assert np.array_equal(again.calibrate_many(test_c), expected)
    assert again.metadata == calibrator.metadata

    path = tmp_path / "sub" / "calibrator.json"
    calibrator.save(path)
    document = json.loads(path.read_text())
    assert document["kind"] == kind.kind
    assert document["metadata"]["estimators"] == ["mean_logprob"]
    for loaded in (kind.load(path), load_calibrator(path), load_calibrator(str(path))):
        assert type(loaded) is kind
        assert np.array_equal(loaded.calibrate_many(test_c), expected)
    assert np.array_equal(calibrator_from_json(path.read_text()).calibrate_many(test_c), expected)


def test_a_fitted_calibrator_calibrates_inside_a_router(split):
    fit_c, fit_y, *_ = split
    calibrator = IsotonicCalibrator().fit(fit_c, fit_y)
    model = ScriptedModel("m", [Reply.confident("Paris", 0.3)])
    router = Router(
        [model], estimators=[MeanTokenLogprob()], calibrator=calibrator, policy=Ladder(0.5)
    )
    step = router.route("Capital of France?").steps[0]
    assert step.raw_confidence == pytest.approx(0.3)
    assert step.calibrated
    assert step.confidence == pytest.approx(calibrator.calibrate(0.3))
    assert step.confidence > 0.5  # 0.3 ** (1/3) is about 0.67


# --- refusals and errors ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_refuses_too_few_examples(kind):
    with pytest.raises(ConfigError, match="at least 10 labelled examples to fit, got 4"):
        kind().fit([0.1, 0.4, 0.6, 0.9], [False, True, False, True])


@pytest.mark.parametrize("kind", KINDS)
def test_refuses_one_class(kind):
    with pytest.raises(ConfigError, match="all 20 examples are correct.*some wrong answers"):
        kind().fit(np.linspace(0, 1, 20), np.ones(20, dtype=bool))


@pytest.mark.parametrize("kind", KINDS)
def test_unfitted_calibrator_says_how_to_fit(kind):
    with pytest.raises(ConfigError, match=r"not fitted; call \.fit\(confidence, correct\)"):
        kind().calibrate(0.5)
    with pytest.raises(ConfigError, match="not fitted"):
        kind().to_json()


def test_bad_confidences_are_refused_when_calibrating(split):
    calibrator = PlattCalibrator().fit(*split[:2])
    with pytest.raises(ConfigError, match=r"1 of 3 confidences are NaN.*indices 1"):
        calibrator.calibrate_many([0.2, math.nan, 0.4])
    with pytest.raises(ConfigError, match=r"outside \[0, 1\]"):
        calibrator.calibrate(1.5)


def test_loading_checks_kind_version_and_shape(split, tmp_path):
    platt = PlattCalibrator().fit(*split[:2])
    document = platt.to_dict()
    with pytest.raises(ConfigError, match="holds kind 'platt', not 'isotonic'"):
        IsotonicCalibrator.from_dict(document)
    with pytest.raises(ConfigError, match="format version 99"):
        PlattCalibrator.from_dict({**document, "version": 99})
    with pytest.raises(ConfigError, match=r"params is malformed: b: Field required"):
        PlattCalibrator.from_dict({**document, "params": {"a": 1.0}})
    with pytest.raises(ConfigError, match="unknown calibrator kind 'plat'. Did you mean 'platt'"):
        calibrator_from_json(json.dumps({**document, "kind": "plat"}))
    with pytest.raises(ConfigError, match="not valid JSON"):
        calibrator_from_json("{")
    with pytest.raises(ConfigError, match="cannot read the calibrator file"):
        load_calibrator(tmp_path / "missing.json")


def test_constructor_options_are_checked():
    with pytest.raises(ConfigError, match="C must be > 0"):
        PlattCalibrator(C=0)
    with pytest.raises(ConfigError, match="n_bins"):
        HistogramBinningCalibrator(n_bins=0)
    with pytest.raises(ConfigError, match="'quantile' or 'uniform'"):
        HistogramBinningCalibrator(strategy="equal")  # type: ignore[arg-type]
