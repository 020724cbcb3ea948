"""Pairwise answer similarities: hand-checked values, the matrix, and the embedder plumbing."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

import demur.embedders
from demur.adapters.embeddings.base import Embedder
from demur.correctness import normalize_answer
from demur.embedders import CachedEmbedder
from demur.errors import ConfigError
from demur.estimators.similarity import (
    SIMILARITIES,
    check_similarity,
    embedding_similarity,
    exact_match,
    jaccard,
    resolve_embedder,
    rouge_l,
    similarities_to,
    similarity,
    similarity_matrix,
)


class BagOfWordsEmbedder:
    """A deterministic fake embedder: normalised word counts, one dimension per word.

    Its cosine is the bag-of-words cosine, so expected values can be worked out by hand;
    an empty text gets a dimension of its own.
    """

    name = "bag-of-words"
    dimension = 256

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}
        self.calls: list[tuple[tuple[str, ...], str]] = []

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        self.calls.append((tuple(texts), kind))
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            words = normalize_answer(text).split()
            if not words:
                vectors[i, 0] = 1.0
            for word in words:
                index = self.vocabulary.setdefault(word, 1 + len(self.vocabulary))
                vectors[i, index] += 1.0
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class TableEmbedder:
    """Returns the vectors it is given, by text: to test clipping and shape checks."""

    name = "table"

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.dimension = len(next(iter(table.values())))

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def test_the_fakes_are_embedders() -> None:
    assert isinstance(BagOfWordsEmbedder(), Embedder)
    assert isinstance(TableEmbedder({"x": [1.0]}), Embedder)


# --- each measure on known pairs -------------------------------------------------------------


def test_exact_match_compares_normalised_answers() -> None:
    assert exact_match("The Eiffel Tower.", "eiffel   tower") == 1.0
    assert exact_match("Eiffel Tower", "Tower of London") == 0.0
    assert exact_match("", "") == 1.0
    assert exact_match("", "Paris") == 0.0


def test_jaccard_on_token_sets() -> None:
    assert jaccard("Jane Austen", "Austen") == pytest.approx(1 / 2)
    assert jaccard("x y z", "z y x") == 1.0  # order does not matter
    assert jaccard("x y", "y w") == pytest.approx(1 / 3)
    assert jaccard("Paris", "Lyon") == 0.0
    assert jaccard("", "") == 1.0
    assert jaccard("", "Paris") == 0.0


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # The ROUGE paper's example: LCS "police gunman" of 3 tokens each, articles dropped.
        ("police killed the gunman", "police kill the gunman", 2 / 3),
        ("police killed the gunman", "the gunman kill police", 1 / 3),
        # "cat sat on mat" against "cat on mat": LCS 3, precision 1, recall 3/4.
        ("the cat sat on the mat", "the cat on the mat", 6 / 7),
        # CLRS's LCS example (ABCBDAB, BDCABA, LCS 4) with letters as words: F = 8/13.
        ("p q r q s p q", "q s r p q p", 8 / 13),
        ("x y z", "z y x", 1 / 3),  # order matters, unlike Jaccard
        ("Jane Austen", "Austen", 2 / 3),
        ("Jane Austen.", "jane austen", 1.0),
        ("Paris", "Lyon", 0.0),
        ("", "", 1.0),
        ("", "Paris", 0.0),
        ("The", "An", 1.0),  # both normalise to nothing
    ],
)
def test_rouge_l_on_known_pairs(a: str, b: str, expected: float) -> None:
    assert rouge_l(a, b) == pytest.approx(expected)
    assert rouge_l(b, a) == pytest.approx(expected)


def test_embedding_similarity_is_the_cosine() -> None:
    embedder = BagOfWordsEmbedder()
    assert embedding_similarity("Jane Austen", "Austen", embedder) == pytest.approx(2**-0.5)
    assert embedding_similarity("Paris", "paris.", embedder) == pytest.approx(1.0)
    assert embedding_similarity("Paris", "Lyon", embedder) == pytest.approx(0.0)


def test_negative_cosines_are_clipped_to_zero() -> None:
    embedder = TableEmbedder({"up": [0.0, 1.0], "down": [0.0, -1.0], "side": [1.0, 0.0]})
    assert embedding_similarity("up", "down", embedder) == 0.0
    assert embedding_similarity("up", "side", embedder) == pytest.approx(0.0)


def test_similarity_dispatches_by_name() -> None:
    assert similarity("Jane Austen", "Austen", "jaccard") == pytest.approx(0.5)
    assert similarity("Jane Austen", "Austen", "rougeL") == pytest.approx(2 / 3)
    assert similarity("Jane Austen", "Austen", "exact") == 0.0
    assert similarity("Jane Austen", "Austen", "embedding", BagOfWordsEmbedder()) == pytest.approx(
        2**-0.5
    )


# --- the matrix ------------------------------------------------------------------------------

TEXTS = ["Jane Austen", "Austen", "Charles Dickens", "", "jane austen."]


@pytest.mark.parametrize("measure", SIMILARITIES)
def test_matrix_is_symmetric_in_the_unit_interval_with_a_unit_diagonal(measure: str) -> None:
    embedder = BagOfWordsEmbedder() if measure == "embedding" else None
    matrix = similarity_matrix(TEXTS, check_similarity(measure, embedder), embedder)
    assert matrix.shape == (5, 5) and matrix.dtype == np.float64
    assert np.array_equal(matrix, matrix.T)
    assert np.all(np.diag(matrix) == 1.0)
    assert np.all((matrix >= 0.0) & (matrix <= 1.0))
    assert matrix[0, 4] == pytest.approx(1.0)  # the same answer, written differently
    assert matrix[0, 2] == 0.0 and matrix[0, 3] == 0.0
    for i in range(5):
        for j in range(5):
            pair = similarity(TEXTS[i], TEXTS[j], check_similarity(measure, embedder), embedder)
            assert matrix[i, j] == pytest.approx(pair)


def test_the_embedding_matrix_embeds_every_text_once_as_a_query() -> None:
    embedder = BagOfWordsEmbedder()
    similarity_matrix(TEXTS, "embedding", embedder)
    assert embedder.calls == [(tuple(TEXTS), "query")]


def test_an_empty_list_gives_an_empty_matrix() -> None:
    assert similarity_matrix([], "rougeL").shape == (0, 0)
    assert similarity_matrix([], "embedding", BagOfWordsEmbedder()).shape == (0, 0)


def test_an_embedder_returning_the_wrong_shape_is_named() -> None:
    class Short(BagOfWordsEmbedder):
        def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
            return super().embed(texts[:1], kind=kind)

    with pytest.raises(ValueError, match=r"embedder 'bag-of-words' returned shape \(1, 256\)"):
        similarity_matrix(["a", "b"], "embedding", Short())


@pytest.mark.parametrize("measure", SIMILARITIES)
def test_similarities_to_a_reference_match_the_matrix(measure: str) -> None:
    embedder = BagOfWordsEmbedder() if measure == "embedding" else None
    checked = check_similarity(measure, embedder)
    row = similarities_to(TEXTS[0], TEXTS[1:], checked, embedder)
    assert row == pytest.approx(similarity_matrix(TEXTS, checked, embedder)[0, 1:])


# --- validation ------------------------------------------------------------------------------


def test_unknown_measure_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown similarity 'rouge'\. Did you mean 'rougeL'"):
        check_similarity("rouge")


def test_embedding_measure_needs_an_embedder() -> None:
    with pytest.raises(ConfigError, match="needs an embedder"):
        check_similarity("embedding")


def test_an_embedder_with_a_lexical_measure_is_a_mistake() -> None:
    with pytest.raises(ConfigError, match="does not use one"):
        check_similarity("rougeL", BagOfWordsEmbedder())


def test_an_object_that_is_not_an_embedder_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a demur Embedder"):
        check_similarity("embedding", object())  # type: ignore[arg-type]


def test_an_embedder_object_resolves_to_its_one_shared_cache() -> None:
    embedder = BagOfWordsEmbedder()
    resolved = resolve_embedder(embedder)
    assert isinstance(resolved, CachedEmbedder) and resolved.inner is embedder
    assert resolve_embedder(embedder) is resolved
    assert resolve_embedder(None) is None


def test_an_embedder_name_without_the_catalog_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demur.embedders, "_by_name", {})  # nothing resolved yet
    monkeypatch.setitem(sys.modules, "demur.adapters.embeddings.catalog", None)
    with pytest.raises(ConfigError, match="cannot be imported.*pass an Embedder object instead"):
        resolve_embedder("mpnet-base")


# --- a real embedding model ------------------------------------------------------------------


def test_real_minilm_ranks_a_paraphrase_above_another_answer() -> None:
    try:
        catalog = importlib.import_module("demur.adapters.embeddings.catalog")
    except ImportError as exc:
        pytest.skip(f"demur.adapters.embeddings.catalog is not importable yet ({exc})")
    try:
        embedder = catalog.load_embedder("minilm-l6")
    except ImportError as exc:  # MissingDependencyError: the model's extra is not installed
        pytest.skip(f"the MiniLM embedder is not installed: {exc}")
    texts = ["Jane Austen", "It was written by Jane Austen.", "Charles Dickens"]
    matrix = similarity_matrix(texts, "embedding", embedder)
    assert np.all((matrix >= 0.0) & (matrix <= 1.0)) and np.all(np.diag(matrix) == 1.0)
    assert matrix[0, 1] > matrix[0, 2]
    assert resolve_embedder("minilm-l6") is not None
