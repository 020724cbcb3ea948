"""Cross-fitting: out-of-fold ensembles and calibrators, and the eval summary built on them."""

from __future__ import annotations

import numpy as np
import pytest

from demur import DataError
from demur.calibration.metrics import auroc, ece
from demur.evaluation import (
    OutOfFold,
    cross_fit_calibrated,
    cross_fit_ensemble,
    member_table,
)

pytest.importorskip("sklearn")


def complementary(n: int, seed: int) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    s1, s2 = rng.normal(size=n), rng.normal(size=n)
    correct = rng.uniform(size=n) < 1 / (1 + np.exp(-(1.5 * s1 + 1.5 * s2)))
    rows = [
        {"a": float(x), "b": float(y), "c": None if i % 7 == 0 else float(z)}
        for i, (x, y, z) in enumerate(
            zip(
                1 / (1 + np.exp(-s1)),
                1 / (1 + np.exp(-s2)),
                rng.uniform(0.1, 0.9, size=n),
                strict=True,
            )
        )
    ]
    return rows, correct


def test_cross_fitted_ensemble_beats_each_member_and_is_calibrated():
    rows, correct = complementary(1200, seed=0)
    out = cross_fit_ensemble(rows, correct, folds=5, seed=3)
    assert isinstance(out, OutOfFold)
    assert out.members == ("a", "b", "c") and len(out.chosen) == 5
    assert set(out.fold.tolist()) == set(range(5))
    for k in range(5):  # stratified: each fold holds its share of correct answers
        assert abs(correct[out.fold == k].mean() - correct.mean()) < 0.02
    combined = auroc(out.confidence, correct)
    for name in ("a", "b"):
        assert combined > auroc([r[name] for r in rows], correct) + 0.05
    assert ece(out.confidence, correct) < 0.05
    calibrated = cross_fit_calibrated(out.confidence, correct, method="platt", folds=5, seed=1)
    assert ece(calibrated, correct) < 0.05


def test_the_same_seed_gives_the_same_folds_and_another_seed_others():
    rows, correct = complementary(300, seed=1)
    first = cross_fit_ensemble(rows, correct, members=["a", "b"], folds=3, seed=7)
    again = cross_fit_ensemble(rows, correct, members=["a", "b"], folds=3, seed=7)
    other = cross_fit_ensemble(rows, correct, members=["a", "b"], folds=3, seed=8)
    assert np.array_equal(first.confidence, again.confidence)
    assert not np.array_equal(first.fold, other.fold)


def test_too_few_answers_of_one_kind_for_the_folds_is_explained():
    rows, _ = complementary(40, seed=2)
    correct = np.zeros(40, dtype=bool)
    correct[:3] = True
    with pytest.raises(DataError, match="needs at least 5 correct and 5 wrong answers, got 3"):
        cross_fit_ensemble(rows, correct, folds=5)
    with pytest.raises(DataError, match="use fewer folds"):
        cross_fit_calibrated(np.linspace(0, 1, 40), correct, folds=5)


def test_member_table_reads_eval_rows():
    rows = [
        {"scores": {"a": {"confidence": 0.5}, "b": {"confidence": None, "status": "failed"}}},
        {"scores": {}},
    ]
    assert member_table(rows, ["a", "b"]) == [{"a": 0.5, "b": None}, {"a": None, "b": None}]
