"""Groundedness: lexical overlap, claim-to-sentence embeddings, and a judge's P(yes)."""

from __future__ import annotations

import importlib
import math
from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from demur import (
    Candidate,
    CompletionPrompt,
    ConfigError,
    EstimatorUnavailable,
    Generation,
    GenerationRequest,
    Query,
    Reply,
    ScriptedModel,
)
from demur.correctness import normalize_answer
from demur.estimators.base import Attempt, Estimator
from demur.estimators.groundedness import (
    Groundedness,
    content_words,
    is_refusal,
    lexical_support,
    split_sentences,
    words,
)
from demur.estimators.registry import build_estimator
from demur.types import Document, Score

QUESTION = "Which novel did Jane Austen publish in 1815?"
PASSAGES = (
    "Jane Austen published Emma in December 1815; it was her fourth novel.",
    "Austen lived in Chawton, Hampshire, from 1809 until 1817.",
)


def attempt(
    answer: str,
    passages: Sequence[str] = PASSAGES,
    *,
    question: str = QUESTION,
    caller: Callable[[GenerationRequest, object], Awaitable[Generation]] | None = None,
) -> Attempt:
    documents = tuple(Document(id=f"d{i}", text=text) for i, text in enumerate(passages))
    candidate = Candidate(text=answer, model="writer", documents=documents)
    return Attempt(Query(question), candidate, caller)


def estimate(estimator: Groundedness, the_attempt: Attempt) -> Score:
    """The in-process methods' synchronous score."""
    return estimator.estimate(the_attempt)


def confidence(estimator: Groundedness, the_attempt: Attempt) -> float:
    score = estimate(estimator, the_attempt)
    assert score.ok and score.confidence is not None, score.detail
    return score.confidence


# --- words ------------------------------------------------------------------------------------


def test_words_are_lowercased_without_punctuation_and_keep_numbers() -> None:
    assert words("Kilimanjaro rises 5,895 metres (about 3.66 miles)!") == [
        "kilimanjaro",
        "rises",
        "5895",
        "metres",
        "about",
        "3.66",
        "miles",
    ]


def test_content_words_drop_stopwords_but_never_numbers() -> None:
    assert content_words("It was the fourth of the novels, in 1815") == ["fourth", "novels", "1815"]


@pytest.mark.parametrize(
    "text",
    [
        "I don't know.",
        "I cannot answer that from the passage.",
        "The passage does not mention it.",
        "This is not stated in the context.",
        "There is no information about that.",
        "Unanswerable",
        "I’m unable to tell.",
    ],
)
def test_refusals_are_recognised(text: str) -> None:
    assert is_refusal(text)


@pytest.mark.parametrize("text", ["Emma", "No Country for Old Men", "It is known as Emma."])
def test_answers_are_not_refusals(text: str) -> None:
    assert not is_refusal(text)


def test_sentences_split_after_end_marks_and_at_line_breaks() -> None:
    text = "Emma came out in 1815. It sold well!  Was it her best?\nPerhaps 3.5 stars"
    assert split_sentences(text) == [
        "Emma came out in 1815.",
        "It sold well!",
        "Was it her best?",
        "Perhaps 3.5 stars",
    ]


# --- lexical ----------------------------------------------------------------------------------


def test_a_supported_answer_outscores_an_unsupported_one() -> None:
    lexical = Groundedness()
    supported = confidence(lexical, attempt("Jane Austen published Emma in 1815."))
    unsupported = confidence(lexical, attempt("Jane Austen wrote Persuasion in 1818."))
    assert supported == 1.0
    assert unsupported == 0.0  # "jane" and "austen" are in the passages, but the question too


def test_words_repeated_from_the_question_do_not_count_as_support() -> None:
    value, detail = lexical_support(QUESTION, "Austen published Sense and Sensibility", PASSAGES)
    # "austen" comes from the question; "published" is found; "sense", "sensibility" are not.
    assert value == pytest.approx(1 / 3)
    assert "missing: sense, sensibility" in detail


def test_an_answer_that_only_echoes_the_question_is_checked_on_all_its_words() -> None:
    value, detail = lexical_support(QUESTION, "Jane Austen's 1815 novel", PASSAGES)
    assert (value, detail) == (1.0, "4 of 4 content words in the passages")
    value, _ = lexical_support("Who wrote Emma?", "Emma", ["Austen wrote Persuasion."])
    assert value == 0.0


def test_a_wrong_number_is_not_supported() -> None:
    lexical = Groundedness()
    assert confidence(lexical, attempt("In December 1815")) == 1.0
    assert confidence(lexical, attempt("In December 1816")) == pytest.approx(0.5)


def test_a_short_answer_contained_verbatim_is_supported_even_if_all_stopwords() -> None:
    passages = ("The Who formed in London in 1964.",)
    score = estimate(Groundedness(), attempt("The Who", passages, question="Which band?"))
    assert score.confidence == 1.0
    assert "verbatim" in (score.detail or "")
    score = estimate(Groundedness(), attempt("The Who", ("Queen formed in 1970.",)))
    assert score.confidence == 0.0
    assert "no content word" in (score.detail or "")


def test_support_may_come_from_several_passages() -> None:
    score = estimate(Groundedness(), attempt("Emma, written in Chawton"))
    assert score.confidence == pytest.approx(2 / 3)  # emma, chawton found; written is not
    assert "missing: written" in (score.detail or "")


@pytest.mark.parametrize("method", ["lexical", "embedding"])
def test_a_refusal_is_not_grounded(method: str) -> None:
    estimator = Groundedness(method, BagOfWordsEmbedder() if method == "embedding" else None)  # type: ignore[arg-type]
    # Every word of this refusal is in the passages, and it still scores 0.
    refusal = attempt("Jane Austen does not mention it", ("Jane Austen does not mention it.",))
    score = estimate(estimator, refusal)
    assert (score.value, score.confidence) == (0.0, 0.0)
    assert "declines to answer" in (score.detail or "")


@pytest.mark.parametrize("answer", ["", "   ", "\n"])
def test_an_empty_answer_is_unavailable(answer: str) -> None:
    with pytest.raises(EstimatorUnavailable, match="the answer is empty"):
        estimate(Groundedness(), attempt(answer))


def test_no_passages_is_unavailable() -> None:
    with pytest.raises(EstimatorUnavailable, match="closed-book"):
        estimate(Groundedness(), attempt("Emma", ()))


def test_only_empty_passages_is_unavailable() -> None:
    with pytest.raises(EstimatorUnavailable, match="all 2 passages of this answer are empty"):
        estimate(Groundedness(), attempt("Emma", ("", "  ")))


def test_a_bare_yes_is_left_to_the_judge() -> None:
    with pytest.raises(EstimatorUnavailable, match="method='judge'"):
        estimate(Groundedness(), attempt("Yes."))


async def test_the_async_path_gives_the_same_score() -> None:
    lexical = Groundedness()
    the_attempt = attempt("Emma, written in Chawton")
    assert (await lexical.aestimate(the_attempt)) == estimate(lexical, the_attempt)


# --- configuration ----------------------------------------------------------------------------


def test_names_follow_the_method() -> None:
    assert Groundedness().name == "groundedness_lexical"
    assert Groundedness("embedding", BagOfWordsEmbedder()).name == "groundedness_embedding"
    assert Groundedness("judge").name == "groundedness_judge"
    assert Groundedness("judge", judge="strong").name == "groundedness_judge_strong"


def test_it_is_an_estimator_that_needs_nothing_from_the_answer() -> None:
    for estimator in (Groundedness(), Groundedness("judge")):
        assert isinstance(estimator, Estimator)
        assert estimator.needs.logprobs is False and estimator.needs.samples == 0


def test_only_the_lexical_method_computes_on_the_event_loop() -> None:
    assert Groundedness().in_process
    # The embedding method runs its model in a worker thread (test_embedding_off_loop.py).
    assert not Groundedness("embedding", BagOfWordsEmbedder()).in_process
    # The judge asks a model, so the router must await its aestimate.
    judge = Groundedness("judge")
    assert not judge.in_process
    with pytest.raises(NotImplementedError, match="aestimate"):
        judge.estimate(attempt("x", ["y"]))


def test_an_unknown_method_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'lexical'"):
        Groundedness("lexicl")  # type: ignore[arg-type]


def test_an_embedder_or_judge_the_method_does_not_use_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="embedder it does not use"):
        Groundedness("lexical", BagOfWordsEmbedder())
    with pytest.raises(ConfigError, match="judge it does not ask"):
        Groundedness("embedding", BagOfWordsEmbedder(), judge="strong")


def test_an_object_that_is_not_an_embedder_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a demur Embedder"):
        Groundedness("embedding", object())  # type: ignore[arg-type]


def test_an_unknown_embedder_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown embedder 'minilm'.*minilm-l6"):
        Groundedness("embedding", "minilm")


def test_the_registry_builds_it_by_name_with_a_method() -> None:
    assert build_estimator("groundedness").name == "groundedness_lexical"
    built = build_estimator("groundedness", {"method": "judge", "judge": "strong"})
    assert built.name == "groundedness_judge_strong"


# --- embedding --------------------------------------------------------------------------------


class BagOfWordsEmbedder:
    """A deterministic fake embedder: normalised word counts; records what it embedded."""

    name = "bag-of-words"
    dimension = 256

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}
        self.calls: list[tuple[tuple[str, ...], str]] = []

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        self.calls.append((tuple(texts), kind))
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            tokens = normalize_answer(text).split() or [""]
            for token in tokens:
                vectors[i, self.vocabulary.setdefault(token, len(self.vocabulary))] += 1.0
        unit: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit


def test_embedding_scores_the_claim_against_each_passage_sentence() -> None:
    embedder = BagOfWordsEmbedder()
    estimator = Groundedness("embedding", embedder)
    passages = ("Emma is a novel. Paris is in France.",)
    score = estimate(estimator, attempt("Paris", passages, question="Where is Paris?"))
    (texts, kind), *_ = embedder.calls
    assert texts == ("Where is Paris? Paris", "Emma is a novel.", "Paris is in France.")
    assert kind == "query"  # a claim against a statement is a symmetric comparison
    # bag-of-words cosine of {where, is, paris x2} and {paris, is, in, france}
    assert score.value == pytest.approx(3 / (math.sqrt(6) * 2))
    assert "'Paris is in France.'" in (score.detail or "")


def test_embedding_ranks_a_supported_answer_above_an_unsupported_one() -> None:
    estimator = Groundedness("embedding", BagOfWordsEmbedder())
    supported = confidence(estimator, attempt("Emma, in December 1815"))
    unsupported = confidence(estimator, attempt("Persuasion, in the summer of 1817"))
    assert supported > unsupported


def real_minilm() -> object:
    try:
        catalog = importlib.import_module("demur.adapters.embeddings.catalog")
        return catalog.load_embedder("minilm-l6")
    except ImportError as exc:  # MissingDependencyError: the embeddings extra is not installed
        pytest.skip(f"the MiniLM embedder is not installed: {exc}")


@pytest.mark.parametrize(
    ("question", "passages", "supported", "unsupported"),
    [
        (QUESTION, PASSAGES, "Emma", "Moby-Dick"),
        (
            "What is the capital of Australia?",
            (
                "Canberra is the capital city of Australia. Sydney is its largest city.",
                "The federal parliament sits in Canberra.",
            ),
            "Canberra is the capital of Australia.",
            "The capital of Australia is Wellington.",
        ),
        (
            "How high is Mount Kilimanjaro?",
            ("Mount Kilimanjaro, in Tanzania, rises 5,895 metres above sea level.",),
            "It is 5,895 metres high.",
            "It is the tallest building in Dubai.",
        ),
    ],
)
def test_real_minilm_ranks_a_supported_answer_above_an_unsupported_one(
    question: str, passages: tuple[str, ...], supported: str, unsupported: str
) -> None:
    estimator = Groundedness("embedding", real_minilm())  # type: ignore[arg-type]
    high = confidence(estimator, attempt(supported, passages, question=question))
    low = confidence(estimator, attempt(unsupported, passages, question=question))
    assert 0.0 <= low < high <= 1.0


def test_the_default_embedder_is_minilm() -> None:
    real_minilm()
    estimator = Groundedness("embedding")
    assert estimator.embedder is not None and estimator.embedder.name == "minilm-l6"
    assert repr(estimator) == "Groundedness(method='embedding', embedder='minilm-l6')"


# --- judge ------------------------------------------------------------------------------------


def one_token(text: str, *top: tuple[str, float]) -> Reply:
    """A one-token reply with the given top alternatives (token, probability)."""
    chosen = dict(top).get(text, top[0][1])
    return Reply(
        text=text, logprobs=(math.log(chosen),), top=(tuple((t, math.log(p)) for t, p in top),)
    )


def caller_for(
    *models: ScriptedModel,
) -> Callable[[GenerationRequest, object], Awaitable[Generation]]:
    """Sends requests as the router would: None to the first model, a name to that model."""
    by_name = {model.name: model for model in models}

    async def call(request: GenerationRequest, target: object) -> Generation:
        if target is None:
            model = models[0]
        elif isinstance(target, str):
            model = by_name[target]
        else:
            model = target  # type: ignore[assignment]
        return await model.agenerate(request)

    return call


async def test_judge_reads_p_yes_from_the_top_logprobs() -> None:
    writer = ScriptedModel("writer", [one_token(" Yes", (" Yes", 0.5), ("Yes", 0.2), (" No", 0.1))])
    score = await Groundedness("judge").aestimate(attempt("Emma", caller=caller_for(writer)))
    assert (score.estimator, score.status) == ("groundedness_judge", "ok")
    assert score.confidence == pytest.approx(0.7 / 0.8)
    assert "P(yes)=0.7" in (score.detail or "")
    asked = writer.calls[0]
    assert (asked.max_tokens, asked.logprobs, asked.top_logprobs) == (1, True, 20)
    assert asked.messages is not None
    content = asked.messages[-1].content
    assert PASSAGES[0] in content and PASSAGES[1] in content
    assert f"Question: {QUESTION}\nProposed answer: Emma" in content
    assert "support the proposed answer" in content
    assert "supported by the passage" in asked.messages[0].content


async def test_judge_probability_follows_the_judges_mass() -> None:
    supported = ScriptedModel("w", [one_token("yes", ("yes", 0.9), ("no", 0.05))])
    unsupported = ScriptedModel("w", [one_token("no", ("no", 0.8), ("yes", 0.1))])
    high = await Groundedness("judge").aestimate(attempt("Emma", caller=caller_for(supported)))
    low = await Groundedness("judge").aestimate(attempt("Ulysses", caller=caller_for(unsupported)))
    assert high.confidence is not None and low.confidence is not None
    assert high.confidence > 0.9 > 0.2 > low.confidence


async def test_judge_falls_back_to_the_text_without_logprobs() -> None:
    writer = ScriptedModel("writer", [Reply(text="No")])
    score = await Groundedness("judge").aestimate(attempt("Ulysses", caller=caller_for(writer)))
    assert score.confidence == 0.0
    assert "said 'No' (no usable logprobs)" in (score.detail or "")


async def test_judge_with_no_readable_verdict_is_unavailable() -> None:
    writer = ScriptedModel("writer", [one_token("The", ("The", 0.7), ("It", 0.2))])
    with pytest.raises(EstimatorUnavailable, match="no yes or no could be read in writer's reply"):
        await Groundedness("judge").aestimate(attempt("Emma", caller=caller_for(writer)))


async def test_judge_may_be_another_router_model() -> None:
    writer = ScriptedModel("writer", ["unused"])
    strong = ScriptedModel("strong", [one_token("yes", ("yes", 0.6), ("no", 0.4))])
    estimator = Groundedness("judge", judge="strong")
    score = await estimator.aestimate(attempt("Emma", caller=caller_for(writer, strong)))
    assert score.estimator == "groundedness_judge_strong"
    assert score.confidence == pytest.approx(0.6)
    assert (len(writer.calls), len(strong.calls)) == (0, 1)


async def test_a_base_model_judge_gets_a_few_shot_prompt() -> None:
    base = ScriptedModel(
        "base", [one_token(" yes", (" yes", 0.3), (" no", 0.1))], default_prompt=CompletionPrompt()
    )
    writer = ScriptedModel("writer", ["unused"])
    score = await Groundedness("judge", judge=base).aestimate(
        attempt("Emma", caller=caller_for(writer))
    )
    assert score.estimator == "groundedness_judge_base"
    assert score.confidence == pytest.approx(0.75)
    prompt = base.calls[0].prompt or ""
    assert prompt.endswith(
        f"Question: {QUESTION}\nProposed answer: Emma\n"
        "Does the passage support the proposed answer (yes or no)?"
    )
    assert "Proposed answer: Charles Dickens\nDoes the passage support" in prompt
    assert "(yes or no)? no\n\n" in prompt and "(yes or no)? yes\n\n" in prompt
    assert base.calls[0].stop == ("\n",)


async def test_the_judge_is_not_asked_about_a_refusal() -> None:
    writer = ScriptedModel("writer", [one_token("yes", ("yes", 0.99))])
    score = await Groundedness("judge").aestimate(
        attempt("The passage does not say.", caller=caller_for(writer))
    )
    assert score.confidence == 0.0
    assert writer.calls == []


async def test_the_judge_needs_passages_and_an_answer() -> None:
    writer = ScriptedModel("writer", [one_token("yes", ("yes", 0.99))])
    with pytest.raises(EstimatorUnavailable, match="closed-book"):
        await Groundedness("judge").aestimate(attempt("Emma", (), caller=caller_for(writer)))
    with pytest.raises(EstimatorUnavailable, match="the answer is empty"):
        await Groundedness("judge").aestimate(attempt(" ", caller=caller_for(writer)))
    assert writer.calls == []


async def test_an_offline_attempt_cannot_ask_a_judge() -> None:
    with pytest.raises(EstimatorUnavailable, match="no model to ask"):
        await Groundedness("judge").aestimate(attempt("Emma"))


# --- a real model -----------------------------------------------------------------------------


@pytest.mark.local_model
@pytest.mark.parametrize("builtin", ["smollm2-135m", "gemma-3-270m"])
async def test_real_models_judge_support(builtin: str) -> None:
    from demur import LlamaCppModel

    model = LlamaCppModel("m", builtin=builtin, max_tokens=24)

    async def call(request: GenerationRequest, target: object) -> Generation:
        assert target is None
        return await model.agenerate(request)

    try:
        scores = [
            await Groundedness("judge").aestimate(attempt(answer, caller=call))
            for answer in ("Emma", "Moby-Dick, by Herman Melville")
        ]
    finally:
        await model.aclose()
    # Models this small barely tell the two apart; what is checked is that their real top-20
    # logprobs carry a yes/no mass that is read, and that the answer reaches the judge.
    for score in scores:
        assert score.status == "ok", score.detail
        assert score.confidence is not None and 0.0 < score.confidence < 1.0
        assert "P(yes)=" in (score.detail or "")
    assert scores[0].confidence != scores[1].confidence
