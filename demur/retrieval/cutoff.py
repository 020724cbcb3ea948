"""A similarity cutoff that keeps the passage holding the answer with probability >= 1 - alpha.

After CONFLARE (Rouzrokh et al., 2024, "Conformal retrieval augmented generation"): on
calibration questions whose gold passage (the one that holds the answer) is known, record the
gold passage's similarity to its question; the cutoff is a low quantile of those similarities,
chosen by split conformal prediction. Retrieving every passage whose similarity clears the
cutoff then keeps the gold passage of a new question with probability at least 1 - alpha.

    sims = gold_similarities(embedder, questions, gold_passages)
    cutoff = ConformalCutoff.fit(sims, alpha=0.1, embedder=embedder.name, data="squad-dev")
    cutoff.save("cutoff.json")
    kept = ConformalCutoff.load("cutoff.json").keep(documents)

The cutoff belongs to one embedding model (similarities of different models are not
comparable) and holds for questions like the calibration ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from demur.calibration.files import (
    JsonDocument,
    utc_now,
)
from demur.errors import ConfigError
from demur.types import Document

if TYPE_CHECKING:
    from demur.protocols import Embedder

FloatArray = npt.NDArray[np.float64]


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ConfigError(
            f"alpha must be a number strictly between 0 and 1, got {alpha!r}: it is the share "
            "of questions whose gold passage may fall below the cutoff, e.g. alpha=0.1"
        )
    return float(alpha)


def _rank(alpha: float, n: int) -> int:
    """⌊alpha·(n+1)⌋, computed on the decimal alpha was written as (0.29 · 100 is 29, not 28)."""
    return math.floor(Fraction(repr(alpha)) * (n + 1))


def examples_needed(alpha: float) -> int:
    """The least n with ⌊alpha·(n+1)⌋ >= 1, i.e. n >= 1/alpha - 1."""
    alpha = _check_alpha(alpha)
    n = max(1, math.ceil(1 / alpha) - 1)
    while n > 1 and _rank(alpha, n - 1) >= 1:
        n -= 1
    while _rank(alpha, n) < 1:
        n += 1
    return n


def _similarities(values: Sequence[float] | npt.ArrayLike, what: str) -> FloatArray:
    """`values` as a 1-D float array with no NaN or infinity; ConfigError says what is wrong."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be a sequence of numbers: {exc}") from None
    if array.ndim != 1:
        raise ConfigError(f"{what} must be one-dimensional, one per question; got {array.shape}")
    nan = int(np.isnan(array).sum())
    if nan:
        raise ConfigError(
            f"{nan} of the {len(array)} {what} are NaN; drop those questions or fix how their "
            "similarity was computed (an empty passage or a failed embedding)"
        )
    infinite = int(np.isinf(array).sum())
    if infinite:
        raise ConfigError(f"{infinite} of the {len(array)} {what} are infinite; drop them")
    return array


class ConformalCutoff(JsonDocument):
    """A retrieval similarity cutoff, fitted so that the gold passage clears it w.p. >= 1 - alpha.

    `cutoff` goes to a retriever (its `cutoff` attribute) or filters documents with `keep`.
    `n` is the number of calibration questions; `embedder` names the embedding model whose
    similarities they were and `data` the calibration set; `fitted_at` is ISO-8601 UTC.
    """

    document_kind: ClassVar[str] = "conformal_cutoff"
    document_name: ClassVar[str] = "conformal cutoff"

    cutoff: float = Field(allow_inf_nan=False)
    alpha: float = Field(gt=0.0, lt=1.0)
    n: int = Field(ge=1)
    embedder: str | None = None
    data: str | None = None
    fitted_at: str | None = None

    @classmethod
    def fit(
        cls,
        gold_similarities: Sequence[float] | npt.ArrayLike,
        alpha: float,
        *,
        embedder: str | None = None,
        data: str | None = None,
    ) -> ConformalCutoff:
        """The cutoff at the ⌊alpha·(n+1)⌋-th smallest of the n gold similarities.

        Why this covers: let s_1..s_n be the calibration questions' gold similarities and
        s_new a new question's, all exchangeable (the new question is drawn like the others).
        Then the rank of s_new among the n+1 values is uniform on 1..n+1 (ties broken at
        random), so s_new falls below the k-th smallest s_i, which needs its rank to be <= k,
        with probability at most k/(n+1). With k = ⌊alpha·(n+1)⌋ that is at most alpha, hence
        P(s_new >= cutoff) >= 1 - alpha, marginally over calibration sets and questions.
        Ties only help, since `keep` keeps a passage at the cutoff. For continuous
        similarities coverage is also at most 1 - alpha + 1/(n+1), so the cutoff is not
        needlessly low. The plug-in quantile (the alpha-quantile of the n values) ignores
        the new question's own rank and falls short of 1 - alpha on small calibration sets.

        Raises ConfigError when alpha is not in (0, 1), a similarity is NaN or infinite, or
        there are too few questions for this alpha (⌊alpha·(n+1)⌋ = 0: even the smallest gold
        similarity would not give the guarantee).
        """
        alpha = _check_alpha(alpha)
        values = _similarities(gold_similarities, "gold similarities")
        n = len(values)
        k = _rank(alpha, n)
        if k == 0:
            raise ConfigError(
                f"a conformal cutoff at alpha={alpha:g} needs at least {examples_needed(alpha)} "
                f"calibration questions (n >= 1/alpha - 1), got {n}; add questions with known "
                "gold passages, or raise alpha"
            )
        cutoff = float(np.partition(values, k - 1)[k - 1])
        return cls(
            cutoff=cutoff, alpha=alpha, n=n, embedder=embedder, data=data, fitted_at=utc_now()
        )

    def keep(self, documents: Iterable[Document]) -> tuple[Document, ...]:
        """The documents whose score is >= the cutoff, in their order.

        ConfigError for a document without a score: the cutoff cannot judge it.
        """
        kept = []
        for document in documents:
            if document.score is None:
                raise ConfigError(
                    f"document '{document.id}' has no score, so the similarity cutoff cannot "
                    "judge it; apply the cutoff to retrieved documents, which carry their "
                    "similarity as `score`"
                )
            if document.score >= self.cutoff:
                kept.append(document)
        return tuple(kept)


def gold_similarities(
    embedder: Embedder | str,
    questions: Sequence[str],
    gold_passages: Sequence[str],
) -> FloatArray:
    """The cosine similarity of each question to its gold passage, as a retriever scores it.

    Questions are embedded as queries and passages as passages (E5 prefixes them differently),
    so the similarity is the one a chromadb cosine collection reports as 1 - distance.
    `embedder` is an Embedder or a built-in's name, e.g. "minilm-l6".
    """
    if isinstance(questions, str) or isinstance(gold_passages, str):
        raise ConfigError(
            "gold_similarities takes a sequence of questions and one of passages, not a string"
        )
    if len(questions) != len(gold_passages):
        raise ConfigError(
            f"gold_similarities needs one gold passage per question: got {len(questions)} "
            f"questions and {len(gold_passages)} passages"
        )
    if isinstance(embedder, str):
        from demur.embedders import shared_embedder

        embedder = shared_embedder(embedder)
    if not questions:
        return np.zeros(0, dtype=np.float64)
    q = np.asarray(embedder.embed(list(questions), kind="query"), dtype=np.float64)
    p = np.asarray(embedder.embed(list(gold_passages), kind="passage"), dtype=np.float64)
    if q.shape != p.shape or q.shape[0] != len(questions):
        raise ConfigError(
            f"embedder {embedder.name!r} returned shapes {q.shape} and {p.shape} for "
            f"{len(questions)} questions and passages; expected ({len(questions)}, dimension)"
        )
    # The protocol promises unit rows; normalising again keeps the cosine exact.
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    p /= np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    similarities: FloatArray = np.einsum("ij,ij->i", q, p)
    return similarities


def realised_coverage(
    cutoff: ConformalCutoff | float, similarities: Sequence[float] | npt.ArrayLike
) -> float:
    """The share of gold similarities that clear the cutoff (>=): the coverage on that data."""
    threshold = cutoff.cutoff if isinstance(cutoff, ConformalCutoff) else float(cutoff)
    values = _similarities(similarities, "similarities")
    if len(values) == 0:
        raise ConfigError("realised_coverage needs at least one similarity, got none")
    return float(np.mean(values >= threshold))


__all__ = ["ConformalCutoff", "examples_needed", "gold_similarities", "realised_coverage"]
