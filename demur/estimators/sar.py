"""Relevance-weighted token NLL, in the spirit of SAR (Duan et al., 2024).

"Shifting Attention to Relevance" observes that an answer's uncertainty lives in a few tokens:
in "The capital of France is Paris" an unlikely "Paris" matters, an unlikely "The" does not.
Token-level SAR weights each token's negative log-likelihood by its relevance, how far the
meaning of the answer moves when the token is removed:

    relevance_i = 1 - similarity(answer, answer without token i)

and the confidence is exp(-weighted mean NLL). With an `Embedder` the similarity is the cosine
of sentence embeddings (the paper uses a cross-encoder, and puts the question in front of the
answer). Without one, a lexical fallback stands in: a token in a content word (a name, a
number, a noun, a verb, a negation) has relevance 1, one in a function word ("the", "of",
"is") 0.1, and whitespace or punctuation 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from demur.estimators.logprob import TokenLogprobEstimator
from demur.protocols import Needs
from demur.types import TokenLogprob

if TYPE_CHECKING:
    from demur.protocols import Embedder

CONTENT = 1.0
FUNCTION = 0.1
PUNCTUATION = 0.0

# English function words. Negations (not, no, never, nor) are left out on purpose: they flip
# an answer's meaning, so they count as content.
_FUNCTION_WORDS = """
    a an the this that these those some any each every either neither both all such
    i me my mine we us our ours you your yours he him his she her hers it its they them their
    theirs who whom whose which what one ones
    am is are was were be been being have has had having do does did doing
    will would shall should can could may might must
    of in on at by for with about against between into through during before after above
    below to from up down out off over under again further than as until while per via
    and or but if so then because though although yet also just only very too quite
    there here when where why how
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())

_WORD = re.compile(r"\w+(?:['’]\w+)*")


def lexical_relevance(pieces: Sequence[str]) -> list[float]:
    """Each token's relevance from the word it belongs to (see the module docstring).

    Tokens are pieces of the answer's text; subword pieces ("Aust", "en") take the class of
    their whole word ("Austen").
    """
    starts = []
    position = 0
    for piece in pieces:
        starts.append(position)
        position += len(piece)
    text = "".join(pieces)
    weights = [PUNCTUATION] * len(pieces)
    for word in _WORD.finditer(text):
        weight = FUNCTION if word.group(0).lower() in FUNCTION_WORDS else CONTENT
        for i, start in enumerate(starts):
            end = start + len(pieces[i])
            if start < word.end() and word.start() < end:
                weights[i] = max(weights[i], weight)
    return weights


def embedding_relevance(pieces: Sequence[str], embedder: Embedder) -> list[float]:
    """1 - cosine(answer, answer without token i), for each token, clipped to [0, 1]."""
    pieces = list(pieces)
    if len(pieces) == 1:
        return [1.0]
    full = "".join(pieces).strip()
    ablated = ["".join(pieces[:i] + pieces[i + 1 :]).strip() for i in range(len(pieces))]
    vectors = np.asarray(embedder.embed([full, *ablated]), dtype=np.float64)
    if vectors.shape[0] != len(pieces) + 1:
        raise ValueError(
            f"embedder {embedder.name!r} returned {vectors.shape[0]} vectors for "
            f"{len(pieces) + 1} texts"
        )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms > 0, norms, 1.0)
    similarity = vectors[1:] @ vectors[0]
    return [float(r) for r in np.clip(1.0 - similarity, 0.0, 1.0)]


class RelevanceWeightedNLL(TokenLogprobEstimator):
    """SAR-style confidence: exp(-relevance-weighted mean token NLL).

    `embedder` (any `demur.adapters.embeddings.base.Embedder`) measures relevance by how far
    removing a token moves the answer's embedding; without one, relevance is lexical (content
    words 1, function words 0.1, punctuation 0). The value is the weighted mean NLL. When no
    token has any relevance (an answer of punctuation), the weights fall back to uniform, which
    makes this the plain mean token NLL.
    """

    name = "sar"
    needs = Needs(logprobs=True)

    def __init__(self, embedder: Embedder | str | None = None) -> None:
        from demur.estimators.similarity import resolve_embedder

        self.embedder = resolve_embedder(embedder)

    def relevance(self, pieces: Sequence[str]) -> list[float]:
        """Each token's relevance, by the embedder when there is one, else lexically."""
        if self.embedder is None:
            return lexical_relevance(pieces)
        return embedding_relevance(pieces, self.embedder)

    def compute(self, tokens: tuple[TokenLogprob, ...]) -> tuple[float, float]:
        weights = self.relevance([t.token for t in tokens])
        total = sum(weights)
        if total <= 0.0:
            weights, total = [1.0] * len(tokens), float(len(tokens))
        nll = sum(w * -t.logprob for w, t in zip(weights, tokens, strict=True)) / total
        return nll, math.exp(-nll)

    def __repr__(self) -> str:
        source = f"embedder={self.embedder.name!r}" if self.embedder is not None else ""
        return f"RelevanceWeightedNLL({source})"
