"""Fitting an Ensemble: pruning, the choice of C, falling back to the best member, clipping,
and the saved file (every member kind with its options, the version, the fingerprint)."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

from demur import (
    ConfigError,
    Degree,
    MeanTokenEntropy,
    MeanTokenLogprob,
    MinTokenProb,
    NumSets,
    Query,
    SampleAgreement,
    load_ensemble,
)
from demur.estimators._ensemble_fit import CLIP, fit_combination
from demur.estimators.base import Attempt
from demur.estimators.ensemble import Ensemble
from demur.types import Candidate, Completion

pytest.importorskip("sklearn")


def signals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two independent signals and labels that depend on both."""
    rng = np.random.default_rng(seed)
    s1, s2 = rng.normal(size=n), rng.normal(size=n)
    correct = rng.uniform(size=n) < 1 / (1 + np.exp(-(1.5 * s1 + 1.5 * s2)))
    return s1, s2, correct


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def test_two_complementary_members_are_combined():
    s1, s2, correct = signals(1500, seed=0)
    matrix = np.column_stack([sigmoid(s1), sigmoid(s2)])
    fitted = fit_combination(matrix, correct, ["a", "b"])
    assert fitted.selection.chosen == "ensemble"
    assert fitted.kept == (0, 1)
    assert fitted.selection.C in (0.01, 0.1, 1.0, 10.0, 100.0)
    inner = fitted.selection.inner_cv
    assert inner["ensemble"]["auroc"] > max(inner["a"]["auroc"], inner["b"]["auroc"])


def test_a_collinear_member_is_pruned_and_the_better_one_kept():
    s1, s2, correct = signals(1500, seed=1)
    agreement = np.round(sigmoid(s1) * 5) / 5  # as with 5 samples: 0, 0.2, ..., 1
    degree = (1 + 5 * agreement) / 6  # an affine function of agreement
    matrix = np.column_stack([degree, agreement, sigmoid(s2)])
    fitted = fit_combination(matrix, correct, ["degree", "agreement", "other"])
    dropped = fitted.selection.dropped
    assert len([n for n in ("degree", "agreement") if n in dropped]) == 1
    assert "collinear with" in next(iter(dropped.values()))
    assert fitted.selection.chosen == "ensemble" and len(fitted.kept) == 2


def test_a_useless_member_makes_the_ensemble_fall_back_to_the_best_one():
    s1, _, correct = signals(1500, seed=2)
    noise = np.random.default_rng(9).uniform(0.05, 0.95, size=len(s1))
    matrix = np.column_stack([noise, sigmoid(s1)])
    fitted = fit_combination(matrix, correct, ["noise", "signal"])
    assert fitted.selection.chosen == "member"
    assert fitted.selection.member == "signal" and fitted.kept == (1,)
    assert "did not beat signal alone" in fitted.selection.dropped["noise"]
    assert fitted.weights[0] > 0  # Platt scaling of the member


def test_select_false_keeps_every_member_in_order():
    s1, _, correct = signals(400, seed=3)
    noise = np.random.default_rng(4).uniform(0.05, 0.95, size=len(s1))
    matrix = np.column_stack([noise, sigmoid(s1), sigmoid(s1)])
    fitted = fit_combination(matrix, correct, ["n", "a", "b"], select=False, C=1.0)
    assert fitted.kept == (0, 1, 2) and fitted.selection.chosen == "ensemble"
    assert fitted.selection.C == 1.0


def test_confidences_of_exactly_0_and_1_are_clipped_before_the_logit():
    s1, s2, correct = signals(600, seed=5)
    agreement = (sigmoid(3 * s1) > 0.5).astype(float)  # only 0 and 1
    matrix = np.column_stack([agreement, sigmoid(s2)])
    fitted = fit_combination(matrix, correct, ["agreement", "other"], select=False, C=1.0)
    ensemble = Ensemble(["mean_logprob", "min_prob"], weights=[1.0, 0.0])
    assert ensemble.clip == CLIP
    assert ensemble.combine({"mean_logprob": 1.0, "min_prob": 0.5}) == pytest.approx(1 - CLIP)
    assert np.all(np.isfinite(fitted.weights))


def test_fit_drops_members_from_the_ensemble_and_records_the_choice():
    s1, _, correct = signals(800, seed=6)
    noise = np.random.default_rng(1).uniform(0.05, 0.95, size=len(s1))
    rows = [
        {"mean_logprob": float(a), "min_prob": float(b)}
        for a, b in zip(noise, sigmoid(s1), strict=True)
    ]
    ensemble = Ensemble([MeanTokenLogprob(), MinTokenProb()]).fit(rows, correct)
    assert ensemble.names == ("min_prob",)
    assert ensemble.selection is not None and ensemble.selection.member == "min_prob"
    assert ensemble.selection.candidates == ("mean_logprob", "min_prob")
    assert ensemble.needs == MinTokenProb().needs
    assert ensemble.metadata is not None and set(ensemble.metadata.metrics) == {
        "ensemble",
        "mean_logprob",
        "min_prob",
    }


def test_the_fingerprint_is_that_of_the_rows_used():
    s1, s2, correct = signals(300, seed=7)
    rows = [
        {"mean_logprob": float(a), "min_prob": float(b)}
        for a, b in zip(sigmoid(s1), sigmoid(s2), strict=True)
    ]
    first = Ensemble(["mean_logprob", "min_prob"]).fit(rows, correct)
    again = Ensemble(["mean_logprob", "min_prob"]).fit([dict(r) for r in rows], correct.copy())
    flipped = correct.copy()
    flipped[0] = not flipped[0]
    other = Ensemble(["mean_logprob", "min_prob"]).fit(rows, flipped)
    assert first.training is not None and again.training is not None and other.training
    assert first.training.sha256 == again.training.sha256 != other.training.sha256
    assert first.training.rows == 300
    assert first.training.columns == ("mean_logprob", "min_prob")


# --- saving every kind of member ----------------------------------------------------------------


def attempt_with_samples(answer: str, samples: list[str]) -> Attempt:
    candidate = Candidate(
        text=answer,
        model="m",
        samples=tuple(Completion(text=s) for s in samples),
    )
    return Attempt(query=Query("Capital of France?"), candidate=candidate)


def test_members_with_options_come_back_with_them_and_still_score(tmp_path):
    members = [
        SampleAgreement(similarity="jaccard", samples=7),
        NumSets(similarity="jaccard", samples=19),
        Degree(samples=3),
        MeanTokenEntropy(top_k=3),
    ]
    ensemble = Ensemble(members, weights=[1.0, 0.5, 0.2, 0.1])
    path = tmp_path / "ensemble.json"
    ensemble.save(path)
    document = json.loads(path.read_text())
    assert document["members"][1] == {
        "name": "num_sets",
        "kind": "num_sets",
        "options": {"similarity": "jaccard", "samples": 19, "embedder": None, "threshold": 0.5},
    }
    loaded = load_ensemble(str(path))
    assert not loaded.unbuilt
    assert [repr(m) for m in loaded.members] == [repr(m) for m in members]
    assert loaded.needs == ensemble.needs
    one = attempt_with_samples("Paris", ["Paris", "Paris France", "Lyon"])
    assert asyncio.run(loaded.aestimate(one)) == asyncio.run(ensemble.aestimate(one))


def test_an_embedding_member_is_saved_by_its_embedder_name(tmp_path):
    member = SampleAgreement(similarity="embedding", samples=3, embedder="minilm-l6")
    path = tmp_path / "ensemble.json"
    Ensemble([member, "mean_logprob"], weights=[1.0, 1.0]).save(path)
    saved = json.loads(path.read_text())["members"][0]
    assert saved["options"]["embedder"] == "minilm-l6"
    loaded = Ensemble.load(path)
    assert not loaded.unbuilt
    assert loaded.members[0].embedder.name == "minilm-l6"  # type: ignore[attr-defined]


class Unnamed:
    name = "my-embedder"
    dimension = 2

    def embed(self, texts, *, kind="passage"):
        return np.ones((len(texts), 2), dtype=np.float32) / math.sqrt(2)


def test_an_embedder_without_a_known_name_cannot_be_saved_and_says_why():
    member = SampleAgreement(similarity="embedding", embedder=Unnamed())
    ensemble = Ensemble([member], weights=[1.0])
    with pytest.raises(ConfigError, match="'my-embedder' has no name demur can rebuild") as info:
        ensemble.to_dict()
    assert "embedder='minilm-l6'" in str(info.value)
    assert "register_embedder" in str(info.value)


def test_version_1_files_still_load_and_unknown_versions_are_refused(tmp_path):
    version_1 = {
        "kind": "ensemble",
        "version": 1,
        "name": "ensemble",
        "members": [
            {"name": "mean_logprob", "options": {}},
            {"name": "entropy", "options": {"top_k": 3}},
        ],
        "weights": [1.0, 0.5],
        "intercept": 0.1,
        "imputation": [0.5, 0.5],
        "options": {"member_timeout_s": None, "C": 1.0},
        "metadata": None,
    }
    old = Ensemble.from_dict(version_1)
    assert old.members[1].top_k == 3  # type: ignore[attr-defined]
    assert old.clip == 1e-9  # as it was fitted
    assert old.combine({"mean_logprob": 1.0, "entropy": 0.5}) > 1 - 1e-6
    path = tmp_path / "future.json"
    path.write_text(json.dumps({**version_1, "version": 3}))
    with pytest.raises(ConfigError, match=r"format version 3; this demur reads ensemble versions"):
        Ensemble.load(path)
    with pytest.raises(ConfigError, match="holds kind 'platt', not 'ensemble'"):
        Ensemble.from_dict({**version_1, "kind": "platt"})


def test_a_row_key_that_takes_options_is_known_by_name_only_after_a_class_level_fit():
    s1, s2, correct = signals(400, seed=8)
    rows = [
        {"mean_logprob": float(a), "num_sets": float(b)}
        for a, b in zip(sigmoid(s1), sigmoid(s2), strict=True)
    ]
    ensemble = Ensemble.fit(rows, correct, select=False)
    assert isinstance(ensemble.members[0], MeanTokenLogprob)
    assert ensemble.unbuilt.keys() == {"num_sets"}  # not silently NumSets(rougeL, 5 samples)
    assert math.isfinite(ensemble.combine({"mean_logprob": 0.7, "num_sets": 0.4}))
    with pytest.raises(ConfigError, match=r"num_sets are known by name only.*do not record"):
        asyncio.run(ensemble.aestimate(attempt_with_samples("Paris", ["Paris"])))
    saved = Ensemble.from_json(ensemble.to_json())
    assert saved.unbuilt.keys() == {"num_sets"}
    again = Ensemble.from_json(ensemble.to_json(), members=[NumSets(samples=3)])
    assert not again.unbuilt
