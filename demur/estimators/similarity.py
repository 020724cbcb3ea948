"""How alike two answers are, in [0, 1]: the yardstick of the black-box estimators.

Four measures, by name:

- "exact": 1 when the answers are equal after SQuAD-style normalisation, else 0;
- "jaccard": overlap of the sets of normalised tokens;
- "rougeL": ROUGE-L F-measure, the longest common subsequence of normalised tokens;
- "embedding": cosine of sentence embeddings (an `Embedder`), clipped to [0, 1].

Every measure is symmetric and gives 1 for a text and itself, empty texts included, so a
similarity matrix has a unit diagonal. The embedding measure needs an embedder, passed
separately; `similarity_matrix` embeds each text once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from demur.correctness import normalize_answer
from demur.embedders import shared_embedder
from demur.errors import ConfigError, unknown_name
from demur.protocols import Embedder

Similarity = Literal["exact", "jaccard", "rougeL", "embedding"]
SIMILARITIES: tuple[Similarity, ...] = get_args(Similarity)

Matrix = npt.NDArray[np.float64]

# E5-style models embed both sides of a symmetric comparison as queries; others ignore `kind`.
_EMBED_KIND = "query"


def check_similarity(measure: str, embedder: Embedder | None = None) -> Similarity:
    """`measure` as a Similarity; ConfigError when it is unknown or its embedder is amiss."""
    if measure not in SIMILARITIES:
        raise unknown_name("similarity", measure, SIMILARITIES)
    if measure == "embedding" and embedder is None:
        raise ConfigError(
            "the 'embedding' similarity needs an embedder: pass embedder=<a demur Embedder> "
            "or an embedder name such as 'minilm-l6'"
        )
    if measure != "embedding" and embedder is not None:
        raise ConfigError(
            f"an embedder was given, but similarity={measure!r} does not use one; "
            "pass similarity='embedding' or drop the embedder"
        )
    if embedder is not None and not isinstance(embedder, Embedder):
        raise ConfigError(
            f"embedder must be a demur Embedder (name, dimension, embed()), "
            f"got {type(embedder).__name__}"
        )
    return measure


def resolve_embedder(embedder: Embedder | str | None) -> Embedder | None:
    """The process's shared, cached embedder for an object or a name (as a config gives it).

    Every estimator that names the same embedder (or passes the same object) gets the same
    `demur.embedders.CachedEmbedder`, so each text is embedded once per route or eval row.
    """
    if embedder is None:
        return None
    return shared_embedder(embedder)


# --- lexical measures ------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def _jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    left, right = set(a), set(b)
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, by dynamic programming over one row."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)  # row[j]: LCS of the prefix of `a` seen so far and b[:j]
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if x == y else max(above, row[j - 1])
            diagonal = above
    return row[-1]


def _rouge_l(a: Sequence[str], b: Sequence[str]) -> float:
    if not a and not b:
        return 1.0
    lcs = _lcs_length(a, b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(b), lcs / len(a)
    return 2 * precision * recall / (precision + recall)


def exact_match(a: str, b: str) -> float:
    """1.0 when the normalised answers are equal, else 0.0."""
    return 1.0 if normalize_answer(a) == normalize_answer(b) else 0.0


def jaccard(a: str, b: str) -> float:
    """Jaccard index of the sets of normalised tokens (1.0 when both are empty)."""
    return _jaccard(_tokens(a), _tokens(b))


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1: LCS of normalised tokens over their lengths (1.0 when both are empty)."""
    return _rouge_l(_tokens(a), _tokens(b))


def embedding_similarity(a: str, b: str, embedder: Embedder) -> float:
    """Cosine of the two texts' embeddings, clipped to [0, 1]."""
    return float(similarity_matrix([a, b], "embedding", embedder)[0, 1])


def similarity(a: str, b: str, measure: Similarity, embedder: Embedder | None = None) -> float:
    """The similarity of two texts under `measure`."""
    return float(similarity_matrix([a, b], measure, embedder)[0, 1])


# --- many texts at once ----------------------------------------------------------------------


def _embed(texts: Sequence[str], embedder: Embedder) -> Matrix:
    vectors = np.asarray(embedder.embed(list(texts), kind=_EMBED_KIND), dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(
            f"embedder {getattr(embedder, 'name', type(embedder).__name__)!r} returned shape "
            f"{vectors.shape} for {len(texts)} texts; expected ({len(texts)}, dimension)"
        )
    # The protocol promises unit rows; renormalising is cheap and keeps cosines honest.
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def similarity_matrix(
    texts: Sequence[str], measure: Similarity, embedder: Embedder | None = None
) -> Matrix:
    """The symmetric (n, n) matrix of pairwise similarities, with a unit diagonal."""
    measure = check_similarity(measure, embedder)
    n = len(texts)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float64)
    if measure == "embedding":
        assert embedder is not None
        vectors = _embed(texts, embedder)
        matrix = np.clip(vectors @ vectors.T, 0.0, 1.0)
        matrix = (matrix + matrix.T) / 2
    else:
        matrix = np.empty((n, n), dtype=np.float64)
        if measure == "exact":
            keys = [normalize_answer(t) for t in texts]
            for i in range(n):
                for j in range(i + 1, n):
                    matrix[i, j] = matrix[j, i] = 1.0 if keys[i] == keys[j] else 0.0
        else:
            pair = _jaccard if measure == "jaccard" else _rouge_l
            tokens = [_tokens(t) for t in texts]
            for i in range(n):
                for j in range(i + 1, n):
                    matrix[i, j] = matrix[j, i] = pair(tokens[i], tokens[j])
    np.fill_diagonal(matrix, 1.0)
    return matrix


def similarities_to(
    reference: str, texts: Sequence[str], measure: Similarity, embedder: Embedder | None = None
) -> npt.NDArray[np.float64]:
    """The similarity of each text to `reference`, as a vector of length len(texts)."""
    measure = check_similarity(measure, embedder)
    if measure == "embedding":
        return similarity_matrix([reference, *texts], measure, embedder)[0, 1:]
    if measure == "exact":
        key = normalize_answer(reference)
        return np.array([1.0 if normalize_answer(t) == key else 0.0 for t in texts])
    pair = _jaccard if measure == "jaccard" else _rouge_l
    target = _tokens(reference)
    return np.array([pair(target, _tokens(t)) for t in texts], dtype=np.float64)


__all__ = [
    "SIMILARITIES",
    "Similarity",
    "check_similarity",
    "embedding_similarity",
    "exact_match",
    "jaccard",
    "resolve_embedder",
    "rouge_l",
    "similarities_to",
    "similarity",
    "similarity_matrix",
]
