"""The conformal retrieval cutoff: the split-conformal rank, its coverage, its checks, its file."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from demur import ConfigError
from demur.retrieval.cutoff import (
    ConformalCutoff,
    examples_needed,
    gold_similarities,
    realised_coverage,
)
from demur.types import Document

# --- the fitted cutoff ------------------------------------------------------------------------


def test_the_cutoff_is_the_floor_alpha_n_plus_1_th_smallest_similarity() -> None:
    similarities = [0.9, 0.35, 0.8, 0.5, 0.7, 0.45, 0.6, 0.55, 0.65, 0.75]  # n = 10
    fitted = ConformalCutoff.fit(similarities, alpha=0.2)
    # ⌊0.2 · 11⌋ = 2: the second smallest.
    assert fitted.cutoff == 0.45
    assert (fitted.alpha, fitted.n) == (0.2, 10)
    assert ConformalCutoff.fit(similarities, alpha=0.1).cutoff == 0.35  # ⌊1.1⌋ = 1
    assert ConformalCutoff.fit(similarities, alpha=0.5).cutoff == 0.6  # ⌊5.5⌋ = 5


@pytest.mark.parametrize("n", [9, 10, 19, 20, 49, 99, 100, 101, 999])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.2, 0.29, 0.5])
def test_the_rank_matches_the_formula(n: int, alpha: float) -> None:
    values = np.arange(1, n + 1, dtype=np.float64)  # the k-th smallest is k
    rng = np.random.default_rng(n)
    k = math.floor(round(alpha * (n + 1), 9))
    if k == 0:
        with pytest.raises(ConfigError):
            ConformalCutoff.fit(rng.permutation(values), alpha)
        return
    assert ConformalCutoff.fit(rng.permutation(values), alpha).cutoff == k


def test_decimal_alphas_are_not_lost_to_rounding() -> None:
    # 0.29 · 100 is 28.999999999999996 in floating point; the rank is still 29.
    assert ConformalCutoff.fit(np.arange(1.0, 100.0), alpha=0.29).cutoff == 29.0


def test_metadata_is_recorded() -> None:
    fitted = ConformalCutoff.fit([0.5] * 20, 0.1, embedder="minilm-l6", data="squad-dev")
    assert (fitted.embedder, fitted.data) == ("minilm-l6", "squad-dev")
    assert fitted.fitted_at is not None and fitted.fitted_at.endswith("Z")


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan"), True, "0.1", None])
def test_alpha_must_lie_strictly_between_0_and_1(alpha: object) -> None:
    with pytest.raises(ConfigError, match="alpha must be a number strictly between 0 and 1"):
        ConformalCutoff.fit([0.5] * 100, alpha)  # type: ignore[arg-type]


@pytest.mark.parametrize(("alpha", "needed"), [(0.1, 9), (0.05, 19), (0.2, 4), (0.3, 3), (0.5, 1)])
def test_too_few_examples_says_how_many_are_needed(alpha: float, needed: int) -> None:
    assert examples_needed(alpha) == needed
    ConformalCutoff.fit([0.5] * needed, alpha)  # enough
    with pytest.raises(ConfigError, match=f"needs at least {needed} calibration questions"):
        ConformalCutoff.fit([0.5] * (needed - 1), alpha)


def test_no_examples_is_too_few() -> None:
    with pytest.raises(ConfigError, match="got 0"):
        ConformalCutoff.fit([], 0.1)


def test_nan_similarities_are_an_error_that_counts_them() -> None:
    values = [0.5] * 20 + [float("nan")] * 3
    with pytest.raises(ConfigError, match="3 of the 23 gold similarities are NaN"):
        ConformalCutoff.fit(values, 0.1)


def test_infinite_and_malformed_similarities_are_errors() -> None:
    with pytest.raises(ConfigError, match="1 of the 21 gold similarities are infinite"):
        ConformalCutoff.fit([0.5] * 20 + [math.inf], 0.1)
    with pytest.raises(ConfigError, match="one-dimensional"):
        ConformalCutoff.fit([[0.5, 0.6]] * 20, 0.1)
    with pytest.raises(ConfigError, match="sequence of numbers"):
        ConformalCutoff.fit(["high"] * 20, 0.1)


# --- keep -------------------------------------------------------------------------------------


def test_keep_filters_by_score_at_or_above_the_cutoff_in_order() -> None:
    cutoff = ConformalCutoff(cutoff=0.5, alpha=0.1, n=100)
    documents = [
        Document(id="a", text="a", score=0.9),
        Document(id="b", text="b", score=0.2),
        Document(id="c", text="c", score=0.5),
        Document(id="d", text="d", score=0.7),
    ]
    assert [d.id for d in cutoff.keep(documents)] == ["a", "c", "d"]
    assert cutoff.keep([]) == ()


def test_keep_refuses_a_document_without_a_score() -> None:
    cutoff = ConformalCutoff(cutoff=0.5, alpha=0.1, n=100)
    with pytest.raises(ConfigError, match="document 'ctx' has no score"):
        cutoff.keep([Document(id="ctx", text="the caller's context")])


# --- coverage ---------------------------------------------------------------------------------


def test_realised_coverage_is_the_share_at_or_above_the_cutoff() -> None:
    similarities = [0.1, 0.4, 0.5, 0.9]
    assert realised_coverage(0.5, similarities) == 0.5
    assert realised_coverage(ConformalCutoff(cutoff=0.05, alpha=0.1, n=9), similarities) == 1.0
    with pytest.raises(ConfigError, match="at least one"):
        realised_coverage(0.5, [])
    with pytest.raises(ConfigError, match="1 of the 2 similarities are NaN"):
        realised_coverage(0.5, [0.3, float("nan")])


Fit = Callable[[npt.NDArray[np.float64], float], float]


def conformal(calibration: npt.NDArray[np.float64], alpha: float) -> float:
    return ConformalCutoff.fit(calibration, alpha).cutoff


def plug_in(calibration: npt.NDArray[np.float64], alpha: float) -> float:
    """The naive cutoff: the empirical alpha-quantile of the calibration similarities."""
    return float(np.quantile(calibration, alpha))


def mean_coverage(fit: Fit, n: int, alpha: float, splits: int = 2000, seed: int = 0) -> float:
    """Mean held-out coverage over random calibration/test splits of synthetic similarities.

    The gold similarities are skewed like real cosines (most high, a long tail of hard
    questions); each split calibrates on `n` of them and measures coverage on the rest.
    """
    rng = np.random.default_rng(seed)
    pool = 0.2 + 0.7 * rng.beta(5.0, 2.0, size=n + 400)
    coverages = []
    for _ in range(splits):
        shuffled = rng.permutation(pool)
        calibration, test = shuffled[:n], shuffled[n:]
        coverages.append(realised_coverage(fit(calibration, alpha), test))
    return float(np.mean(coverages))


# With k = ⌊alpha·(n+1)⌋ and continuous similarities the expected coverage is exactly
# 1 - k/(n+1), which lies in [1 - alpha, 1 - alpha + 1/(n+1)). 2000 splits estimate it to
# about ±0.002, so a tolerance of 0.01 tells the right rank from one off by one either way
# (at n = 19, alpha = 0.1: 0.90 against 0.85 and 0.95).
TOLERANCE = 0.01


def covers(coverage: float, n: int, alpha: float) -> bool:
    """Coverage at least 1 - alpha, and as close to the exact 1 - k/(n+1) as sampling allows."""
    exact = 1 - math.floor(round(alpha * (n + 1), 9)) / (n + 1)
    return coverage >= 1 - alpha - TOLERANCE and abs(coverage - exact) <= TOLERANCE


@pytest.mark.parametrize(("n", "alpha"), [(19, 0.1), (29, 0.2), (50, 0.1), (200, 0.05)])
def test_the_cutoff_holds_its_coverage_on_held_out_questions(n: int, alpha: float) -> None:
    coverage = mean_coverage(conformal, n, alpha)
    assert coverage >= 1 - alpha - TOLERANCE
    assert covers(coverage, n, alpha), coverage


@pytest.mark.parametrize(("n", "alpha"), [(19, 0.1), (29, 0.2)])
def test_the_coverage_check_catches_the_plug_in_quantile(n: int, alpha: float) -> None:
    # The naive alpha-quantile ignores the new question's own rank and interpolates above the
    # conformal order statistic, so on small calibration sets it covers less than 1 - alpha.
    coverage = mean_coverage(plug_in, n, alpha)
    assert coverage < 1 - alpha - TOLERANCE
    assert not covers(coverage, n, alpha)


def test_the_coverage_check_catches_an_off_by_one_rank() -> None:
    def shifted(by: int) -> Fit:
        def fit(calibration: npt.NDArray[np.float64], alpha: float) -> float:
            k = math.floor(round(alpha * (len(calibration) + 1), 9))
            return float(np.sort(calibration)[k - 1 + by])

        return fit

    assert covers(mean_coverage(shifted(0), 19, 0.1), 19, 0.1)
    assert not covers(mean_coverage(shifted(+1), 19, 0.1), 19, 0.1)  # covers too little
    assert not covers(mean_coverage(shifted(-1), 19, 0.1), 19, 0.1)  # needlessly low


# --- the file ---------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    fitted = ConformalCutoff.fit(np.linspace(0.3, 0.9, 50), 0.1, embedder="e5-small", data="nq")
    path = tmp_path / "cutoffs" / "e5.json"
    fitted.save(path)
    document = json.loads(path.read_text())
    assert (document["kind"], document["version"]) == ("conformal_cutoff", 1)
    assert document["embedder"] == "e5-small" and document["n"] == 50
    assert ConformalCutoff.load(path) == fitted
    assert ConformalCutoff.from_json(fitted.to_json()) == fitted


def test_loading_another_kind_of_file_explains(tmp_path: Path) -> None:
    path = tmp_path / "threshold.json"
    path.write_text(json.dumps({"kind": "conformal_threshold", "version": 1}))
    with pytest.raises(ConfigError, match="holds kind 'conformal_threshold'"):
        ConformalCutoff.load(path)


def test_loading_a_malformed_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "cutoff.json"
    document = ConformalCutoff(cutoff=0.5, alpha=0.1, n=10).to_dict()
    path.write_text(json.dumps({**document, "alpha": 1.5}))
    with pytest.raises(ConfigError, match="alpha: Input should be less than 1"):
        ConformalCutoff.load(path)
    with pytest.raises(ConfigError, match="cannot read the conformal cutoff file"):
        ConformalCutoff.load(tmp_path / "missing.json")


# --- gold similarities ------------------------------------------------------------------------


class KindAwareEmbedder:
    """A fake embedder with fixed vectors per text; records which kind each text was embedded as."""

    name = "fake"
    dimension = 2

    def __init__(self, vectors: dict[str, tuple[float, float]]) -> None:
        self.vectors = vectors
        self.kinds: dict[str, str] = {}

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        rows = []
        for text in texts:
            self.kinds[text] = kind
            rows.append(self.vectors[text])
        array = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = (array / norms).astype(np.float32)
        return unit


def test_gold_similarities_are_query_to_passage_cosines() -> None:
    embedder = KindAwareEmbedder(
        {"q1": (1.0, 0.0), "p1": (1.0, 1.0), "q2": (0.0, 2.0), "p2": (-1.0, 0.0)}
    )
    similarities = gold_similarities(embedder, ["q1", "q2"], ["p1", "p2"])
    np.testing.assert_allclose(similarities, [1 / math.sqrt(2), 0.0], atol=1e-6)
    assert embedder.kinds == {"q1": "query", "q2": "query", "p1": "passage", "p2": "passage"}


def test_gold_similarities_need_one_passage_per_question() -> None:
    embedder = KindAwareEmbedder({})
    with pytest.raises(ConfigError, match="got 2 questions and 1 passages"):
        gold_similarities(embedder, ["q1", "q2"], ["p1"])
    with pytest.raises(ConfigError, match="not a string"):
        gold_similarities(embedder, "q1", "p1")
    assert gold_similarities(embedder, [], []).shape == (0,)


def test_real_minilm_gold_passages_clear_a_fitted_cutoff() -> None:
    try:
        from demur.adapters.embeddings.catalog import load_embedder

        embedder = load_embedder("minilm-l6")
    except ImportError as exc:  # MissingDependencyError: the embeddings extra is not installed
        pytest.skip(f"the MiniLM embedder is not installed: {exc}")
    questions = [
        "Who wrote Emma?",
        "How high is Mount Kilimanjaro?",
        "What is the capital of Peru?",
    ]
    gold = [
        "Emma is a novel by Jane Austen, published in 1815.",
        "Mount Kilimanjaro rises 5,895 metres above sea level.",
        "Lima is the capital and largest city of Peru.",
    ]
    matched = gold_similarities("minilm-l6", questions, gold)
    mismatched = gold_similarities(embedder, questions, [*gold[1:], gold[0]])
    assert np.all(matched > mismatched)
    assert np.all((matched > -1.0) & (matched <= 1.0 + 1e-6))
    fitted = ConformalCutoff.fit(matched, alpha=0.5, embedder=embedder.name)
    assert fitted.cutoff == pytest.approx(float(np.sort(matched)[1]))  # ⌊0.5 · 4⌋ = 2
    assert fitted.embedder == "minilm-l6"
