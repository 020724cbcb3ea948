"""Relevance-weighted token NLL (SAR): relevance by embedding or lexically, and the weighting."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from demur import (
    EstimatorUnavailable,
    Ladder,
    MeanTokenLogprob,
    Query,
    Reply,
    Router,
    ScriptedModel,
    TokenLogprob,
)
from demur.adapters.embeddings.base import Embedder
from demur.estimators.sar import (
    CONTENT,
    FUNCTION,
    PUNCTUATION,
    RelevanceWeightedNLL,
    embedding_relevance,
    lexical_relevance,
)

# --- a fake embedder --------------------------------------------------------------------------

VOCABULARY = ["the", "capital", "of", "france", "is", "paris", "jane", "austen", "wrote", "emma"]
FUNCTION_WEIGHT = {"the": 0.1, "of": 0.1, "is": 0.1}


class BagOfWords:
    """A deterministic stand-in for a sentence embedder: IDF-like weighted word counts.

    Function words weigh little, as they do in real sentence embeddings, so removing one
    barely moves the vector while removing a content word moves it a lot.
    """

    name = "bag-of-words"
    dimension = len(VOCABULARY) + 1

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            vectors[row, -1] = 0.05  # keeps empty texts away from the zero vector
            for word in re.findall(r"\w+", text.lower()):
                column = VOCABULARY.index(word) if word in VOCABULARY else len(VOCABULARY)
                vectors[row, column] += FUNCTION_WEIGHT.get(word, 1.0)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_the_fake_is_an_embedder() -> None:
    assert isinstance(BagOfWords(), Embedder)


def tokens(*pairs: tuple[str, float]) -> tuple[TokenLogprob, ...]:
    """Tokens from (piece, probability) pairs; pieces carry their spaces, as backends give them."""
    return tuple(TokenLogprob(token=t, logprob=math.log(p)) for t, p in pairs)


ANSWER = ["The", " capital", " of", " France", " is", " Paris", "."]

# --- relevance --------------------------------------------------------------------------------


def test_lexical_relevance_separates_content_function_and_punctuation() -> None:
    assert lexical_relevance(ANSWER) == [
        FUNCTION,
        CONTENT,
        FUNCTION,
        CONTENT,
        FUNCTION,
        CONTENT,
        PUNCTUATION,
    ]


def test_subword_pieces_take_the_class_of_their_word() -> None:
    pieces = [" Jane", " Aust", "en", "'s", " the", " 18", "15", " not", "\n"]
    assert lexical_relevance(pieces) == [
        CONTENT,
        CONTENT,
        CONTENT,
        CONTENT,  # "Austen's" is one word
        FUNCTION,
        CONTENT,
        CONTENT,  # numbers carry answers
        CONTENT,  # negations flip meaning
        PUNCTUATION,
    ]


def test_embedding_relevance_is_one_minus_the_similarity_to_the_ablated_answer() -> None:
    embedder = BagOfWords()
    relevance = embedding_relevance(ANSWER, embedder)
    assert embedder.calls == [
        [
            "The capital of France is Paris.",
            "capital of France is Paris.",
            "The of France is Paris.",
            "The capital France is Paris.",
            "The capital of is Paris.",
            "The capital of France Paris.",
            "The capital of France is.",
            "The capital of France is Paris",
        ]
    ]
    paris, the, full_stop = relevance[5], relevance[0], relevance[6]
    assert paris > 10 * the
    assert full_stop == pytest.approx(0.0, abs=1e-6)
    assert all(0.0 <= r <= 1.0 for r in relevance)


def test_a_one_token_answer_needs_no_embedding() -> None:
    embedder = BagOfWords()
    assert embedding_relevance(["Paris"], embedder) == [1.0]
    assert embedder.calls == []


def test_an_embedder_returning_the_wrong_count_is_an_error() -> None:
    class Short(BagOfWords):
        def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
            return super().embed(texts[:1])

    with pytest.raises(ValueError, match="returned 1 vectors for 3 texts"):
        embedding_relevance(["a", " b"], Short())


# --- the weighting ----------------------------------------------------------------------------


@pytest.mark.parametrize("embedder", [None, BagOfWords()], ids=["lexical", "embedding"])
def test_doubt_on_the_answer_token_costs_more_than_doubt_on_a_function_word(
    embedder: BagOfWords | None,
) -> None:
    sar = RelevanceWeightedNLL(embedder)
    doubt_on_paris = tokens(("The", 0.9), (" capital", 0.9), (" is", 0.9), (" Paris", 0.2))
    doubt_on_the = tokens(("The", 0.2), (" capital", 0.9), (" is", 0.9), (" Paris", 0.9))
    on_paris = sar.score(doubt_on_paris).confidence
    on_the = sar.score(doubt_on_the).confidence
    assert on_paris is not None and on_the is not None
    assert on_paris < on_the
    # The plain mean cannot tell the two apart.
    mean = MeanTokenLogprob()
    assert mean.score(doubt_on_paris).confidence == pytest.approx(
        mean.score(doubt_on_the).confidence
    )
    # The answer token's weight is well above a function word's.
    weights = sar.relevance([t.token for t in doubt_on_paris])
    assert weights[3] > 5 * weights[0]


def test_value_is_the_weighted_mean_nll_and_confidence_its_exponent() -> None:
    sar = RelevanceWeightedNLL()
    score = sar.score(tokens(("The", 0.5), (" Paris", 0.8), (".", 0.1)))
    expected = (FUNCTION * -math.log(0.5) + CONTENT * -math.log(0.8)) / (FUNCTION + CONTENT)
    assert score.value == pytest.approx(expected)
    assert score.confidence == pytest.approx(math.exp(-expected))


def test_an_answer_without_relevant_tokens_falls_back_to_the_plain_mean() -> None:
    score = RelevanceWeightedNLL().score(tokens(("?", 0.5), ("!", 0.2)))
    assert score.value == pytest.approx(-(math.log(0.5) + math.log(0.2)) / 2)


def test_missing_or_empty_tokens_are_unavailable() -> None:
    sar = RelevanceWeightedNLL()
    with pytest.raises(EstimatorUnavailable, match="needs token logprobs"):
        sar.score(None)
    with pytest.raises(EstimatorUnavailable, match="empty answer"):
        sar.score(())


def test_it_needs_logprobs_and_computes_synchronously() -> None:
    sar = RelevanceWeightedNLL()
    assert sar.name == "sar"
    assert sar.needs.logprobs
    assert callable(sar.estimate)
    assert (
        repr(RelevanceWeightedNLL(BagOfWords())) == "RelevanceWeightedNLL(embedder='bag-of-words')"
    )


# --- through the router -----------------------------------------------------------------------


def test_through_the_router_it_asks_for_logprobs_and_scores_the_answer() -> None:
    model = ScriptedModel("m", [Reply(text="Paris", logprobs=(math.log(0.8),))])
    verdict = Router([model], estimators=[RelevanceWeightedNLL()], policy=Ladder(0.5)).route("Q?")
    score = verdict.steps[0].scores[0]
    assert (score.status, score.confidence) == ("ok", pytest.approx(0.8))
    assert model.calls[0].logprobs
    assert verdict.steps[0].calls == 1  # no model call of its own


def test_through_the_router_missing_logprobs_are_unavailable() -> None:
    model = ScriptedModel("m", [Reply(text="Paris")])
    verdict = Router([model], estimators=[RelevanceWeightedNLL()], policy=Ladder(0.5)).route("Q?")
    score = verdict.steps[0].scores[0]
    assert score.status == "unavailable"
    assert "needs token logprobs" in (score.detail or "")


# --- a real model -----------------------------------------------------------------------------


@pytest.mark.local_model
async def test_a_real_answer_is_scored_and_real_token_pieces_are_grouped_into_words() -> None:
    from demur import GenerationRequest, LlamaCppModel, Message

    model = LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=24)
    router = Router(
        [model], estimators=[RelevanceWeightedNLL(), MeanTokenLogprob()], policy=Ladder(0.0)
    )
    query = Query(
        "Which novel did Jane Austen publish in 1815?",
        context=("Jane Austen published Emma in December 1815; it was her fourth novel.",),
    )
    try:
        verdict = await router.aroute(query)
        sar = verdict.steps[0].scores[0]
        assert sar.status == "ok", sar.detail
        assert sar.confidence is not None and 0.0 <= sar.confidence <= 1.0

        # A whole sentence in the real tokenizer's pieces (leading spaces, subwords).
        request = GenerationRequest(
            messages=(
                Message(
                    role="user",
                    content="In one full sentence: which novel did Jane Austen publish in 1815?",
                ),
            ),
            max_tokens=24,
            logprobs=True,
        )
        generation = await model.agenerate(request)
    finally:
        await router.aclose()
    real = generation.completions[0].tokens
    assert real
    pieces = [t.token for t in real]
    relevance = RelevanceWeightedNLL().relevance(pieces)
    for i, piece in enumerate(pieces):
        ends_word = i + 1 == len(pieces) or not pieces[i + 1][:1].isalnum()
        starts_word = piece[:1].isspace() or i == 0
        if starts_word and ends_word and piece.strip().lower() in ("the", "in", "a", "was", "of"):
            assert relevance[i] == FUNCTION, (piece, pieces)
    assert CONTENT in relevance, pieces
    score = RelevanceWeightedNLL().score(real)
    assert score.confidence is not None and 0.0 <= score.confidence <= 1.0
