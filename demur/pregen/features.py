"""What the pre-generation predictor knows about a query before any model answers it.

The question's embedding (by a named embedder, unit length) and a few cheap numbers: the
question's length in words, how many passages come with it and how long they are, and, when
there are passages, how similar the closest and the average passage are to the question.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from demur.embedders import CachedEmbedder, shared_embedder
from demur.errors import ConfigError
from demur.protocols import Embedder

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

CHEAP_FEATURES = (
    "question_words",  # log(1 + words)
    "passages",  # log(1 + passages)
    "passage_words",  # log(1 + mean words per passage)
    "similarity_max",  # cosine of the closest passage to the question (0 without passages)
    "similarity_mean",  # mean cosine of the passages to the question (0 without passages)
)
WITHOUT_SIMILARITY = CHEAP_FEATURES[:3]


@dataclass(frozen=True)
class QueryFeatures:
    """Features of n queries: unit embeddings (n, dimension) and cheap numbers (n, len(names))."""

    embedding: FloatArray
    cheap: FloatArray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.embedding.shape[0])

    def take(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> QueryFeatures:
        """The features of the rows at `index` (an index array or a boolean mask)."""
        return QueryFeatures(self.embedding[index], self.cheap[index], self.names)


class Featurizer:
    """Turns questions and their passages into QueryFeatures.

    `embedder` is a name `demur.embedders.shared_embedder` resolves ("minilm-l6") or an
    Embedder object; `similarity=False` leaves out the passage similarities (which embed every
    passage, the costliest part when passages are long).
    """

    def __init__(self, embedder: Embedder | str = "minilm-l6", *, similarity: bool = True) -> None:
        if not isinstance(embedder, str | Embedder):
            raise ConfigError(
                f"Featurizer(embedder={embedder!r}): pass an embedder name such as 'minilm-l6' "
                "or an Embedder object (name, dimension, embed())"
            )
        self.source: Embedder | str = embedder
        self.embedder_name = embedder if isinstance(embedder, str) else embedder.name
        self.similarity = bool(similarity)
        self.names = CHEAP_FEATURES if self.similarity else WITHOUT_SIMILARITY

    @property
    def embedder(self) -> CachedEmbedder:
        """The shared, cached embedder (loaded on first use)."""
        return shared_embedder(self.source)

    def features(
        self, questions: Sequence[str], contexts: Sequence[Sequence[str]] | None = None
    ) -> QueryFeatures:
        """Features of each question, with its passages (`contexts[i]`, possibly empty)."""
        import numpy as np

        if isinstance(questions, str):
            raise ConfigError("Featurizer.features takes a list of questions, not one string")
        contexts = [()] * len(questions) if contexts is None else contexts
        if len(contexts) != len(questions):
            raise ConfigError(
                f"Featurizer.features got {len(questions)} questions and {len(contexts)} "
                "contexts; pass one context (a possibly empty list of passages) per question"
            )
        embedding = np.asarray(self.embedder.embed(list(questions), kind="query"), np.float64)
        cheap = np.array(
            [_lengths(q, c) for q, c in zip(questions, contexts, strict=True)], dtype=np.float64
        ).reshape(len(questions), len(WITHOUT_SIMILARITY))
        if self.similarity:
            cheap = np.hstack([cheap, self._similarities(embedding, contexts)])
        return QueryFeatures(embedding=embedding, cheap=cheap, names=self.names)

    def _similarities(self, embedding: FloatArray, contexts: Sequence[Sequence[str]]) -> FloatArray:
        import numpy as np

        passages = [p for context in contexts for p in context]
        vectors = (
            np.asarray(self.embedder.embed(passages, kind="passage"), np.float64)
            if passages
            else np.zeros((0, embedding.shape[1]))
        )
        out = np.zeros((len(contexts), 2))
        start = 0
        for i, context in enumerate(contexts):
            if context:
                cosines = vectors[start : start + len(context)] @ embedding[i]
                out[i] = cosines.max(), cosines.mean()
                start += len(context)
        return out

    def __repr__(self) -> str:
        return f"Featurizer({self.embedder_name!r}, similarity={self.similarity})"


def _lengths(question: str, context: Sequence[str]) -> tuple[float, float, float]:
    words = [len(p.split()) for p in context]
    mean_words = sum(words) / len(words) if words else 0.0
    return math.log1p(len(question.split())), math.log1p(len(context)), math.log1p(mean_words)


__all__ = ["CHEAP_FEATURES", "WITHOUT_SIMILARITY", "Featurizer", "QueryFeatures"]
