"""The groundings' pure parts: plans and selections, without models or retrievers."""

from __future__ import annotations

import math

import pytest

from demur import (
    Branch,
    Candidate,
    ConfidentRag,
    ConfigError,
    Document,
    Query,
    Rag,
    RetrieveMore,
    Score,
    Situated,
    TokenAlternative,
    TokenLogprob,
)
from demur.grounding.situated import confidence_gain, lexical_support, mean_entropy
from demur.protocols import RouterSpec

DOC = Document(id="d1", text="Paris is the capital of France.", score=0.8)


def branch(
    name: str,
    text: str | None,
    confidence: float | None,
    *,
    documents: tuple[Document, ...] = (),
    tokens: tuple[TokenLogprob, ...] | None = None,
    scores: tuple[Score, ...] = (),
) -> Branch:
    candidate = (
        None
        if text is None
        else Candidate(text=text, model="m", documents=documents, tokens=tokens)
    )
    return Branch(
        name=name,
        candidate=candidate,
        confidence=confidence,
        scores=scores,
        error=None if text is not None else "failed",
    )


def peaked(p: float, n: int = 2) -> tuple[TokenLogprob, ...]:
    """n tokens whose top-2 alternatives carry p and 1 - p."""
    top = (
        TokenAlternative(token="a", logprob=math.log(p)),
        TokenAlternative(token="b", logprob=math.log(1 - p)),
    )
    return tuple(TokenLogprob(token="a", logprob=math.log(p), top=top) for _ in range(n))


# --- Rag ---------------------------------------------------------------------------------------


def test_rag_retrieves_with_the_first_retriever_by_default():
    plans = Rag(k=4).plan(Query("q"), ("minilm-l6", "mpnet-base"), None)
    assert [(p.retriever, p.k) for p in plans] == [("minilm-l6", 4)]


def test_rag_uses_the_callers_context_until_asked_to_retrieve_more():
    query = Query("q", context=("given",))
    assert Rag().plan(query, ("minilm-l6",), None)[0].retriever is None
    more = Rag().plan(query, ("minilm-l6",), RetrieveMore(k=9))[0]
    assert (more.retriever, more.k) == ("minilm-l6", 9)


def test_rag_switches_retriever_on_request_and_without_retrievers_answers_directly():
    plan = Rag().plan(Query("q"), ("a", "b"), RetrieveMore(retriever="b", rewrite=True))[0]
    assert (plan.retriever, plan.rewrite) == ("b", True)
    assert Rag().plan(Query("q"), (), None)[0].retriever is None


def test_rag_rejects_an_unknown_retriever_and_bad_k():
    with pytest.raises(ConfigError, match="retriever 'mpnet'.*Did you mean 'mpnet-base'"):
        Rag("mpnet").validate(RouterSpec(models=("m",), retrievers=("minilm-l6", "mpnet-base")))
    with pytest.raises(ConfigError, match="k must be >= 1"):
        Rag(k=0)


# --- Confident RAG -----------------------------------------------------------------------------


def test_confident_rag_plans_one_branch_per_retriever_with_retrieve_more_applied():
    plans = ConfidentRag(k=3).plan(Query("q"), ("a", "b", "c"), RetrieveMore(k=8, cutoff=True))
    assert [(p.name, p.k, p.cutoff) for p in plans] == [
        ("a", 8, True),
        ("b", 8, True),
        ("c", 8, True),
    ]


def test_confident_rag_keeps_the_most_confident_answer():
    selection = ConfidentRag().select(
        Query("q"), [branch("a", "Lyon", 0.4), branch("b", "Paris", 0.7), branch("c", None, None)]
    )
    assert (selection.branch, selection.confidence) == ("b", 0.7)
    assert "a 0.400" in selection.reason and "no answer from c" in selection.reason


def test_agreement_bonus_can_overturn_a_lone_confident_answer():
    branches = [branch("a", "Paris", 0.55), branch("b", "paris", 0.5), branch("c", "Lyon", 0.6)]
    assert ConfidentRag().select(Query("q"), branches).branch == "c"
    selection = ConfidentRag(agreement_bonus=0.2).select(Query("q"), branches)
    assert selection.branch == "a"
    assert selection.confidence == pytest.approx(0.55 + 0.2 * 0.5)


def test_confident_rag_without_any_answer_selects_nothing():
    selection = ConfidentRag().select(
        Query("q"), [branch("a", None, None), branch("b", None, None)]
    )
    assert selection.branch is None and selection.confidence is None


def test_confident_rag_needs_two_retrievers():
    with pytest.raises(ConfigError, match="at least 2 retrievers"):
        ConfidentRag().validate(RouterSpec(models=("m",), retrievers=("only",)))
    with pytest.raises(ConfigError, match="at least 2 retrievers"):
        ConfidentRag(["only"])
    with pytest.raises(ConfigError, match="agreement_bonus"):
        ConfidentRag(agreement_bonus=2)


# --- Situated: signals -------------------------------------------------------------------------


def test_mean_entropy_is_zero_for_certain_tokens_and_none_without_alternatives():
    assert mean_entropy(peaked(0.999999)) == pytest.approx(0.0, abs=1e-4)
    assert mean_entropy(peaked(0.5)) > 0.5
    assert mean_entropy(None) is None
    lone = (TokenLogprob(token="a", logprob=0.0, top=(TokenAlternative(token="a", logprob=0.0),)),)
    assert mean_entropy(lone) is None


def test_confidence_gain_is_positive_when_the_context_makes_the_model_surer():
    unsure = Candidate(text="x", model="m", tokens=peaked(0.5))
    sure = Candidate(text="y", model="m", tokens=peaked(0.99))
    assert confidence_gain(unsure, sure) > 0.5
    assert confidence_gain(sure, unsure) < -0.5
    assert confidence_gain(None, sure) is None


def test_lexical_support_counts_the_answer_words_found_in_the_passages():
    assert lexical_support("Paris", [DOC.text]) == 1.0
    assert lexical_support("Lyon France", [DOC.text]) == 0.5
    assert lexical_support("Paris", []) is None


# --- Situated: RCR -----------------------------------------------------------------------------


def test_situated_plans_closed_book_and_context_branches():
    plans = Situated(k=2).plan(Query("q"), ("minilm-l6",), None)
    assert [(p.name, p.retriever, p.use_context) for p in plans] == [
        ("closed_book", None, False),
        ("context", "minilm-l6", True),
    ]
    caller = Situated().plan(Query("q", context=("c",)), ("minilm-l6",), None)
    assert [(p.retriever, p.use_context) for p in caller] == [(None, False), (None, True)]


def test_rcr_keeps_the_context_when_both_agree():
    selection = Situated().rcr(
        branch("closed_book", "Paris", 0.3), branch("context", "Paris.", 0.6, documents=(DOC,))
    )
    assert (selection.branch, selection.confidence) == ("context", 0.6)
    assert "agree" in selection.reason


def test_rcr_trusts_a_context_that_beats_own_knowledge():
    selection = Situated().rcr(
        branch("closed_book", "Lyon", 0.3), branch("context", "Paris", 0.7, documents=(DOC,))
    )
    assert (selection.branch, selection.confidence) == ("context", 0.7)


def test_rcr_keeps_own_knowledge_against_a_weak_unsupporting_context():
    wrong = Document(id="d2", text="Berlin hosts many museums.", score=0.2)
    selection = Situated().rcr(
        branch("closed_book", "Paris", 0.8, tokens=peaked(0.95)),
        branch("context", "Lyon", 0.5, documents=(wrong,), tokens=peaked(0.6)),
    )
    assert (selection.branch, selection.confidence) == ("closed_book", 0.8)
    assert "own knowledge beats the context" in selection.reason


def test_rcr_lowers_the_confidence_of_an_unresolved_conflict():
    selection = Situated().rcr(
        branch("closed_book", "Lyon", 0.55),
        branch("context", "France", 0.45, documents=(DOC,)),
    )
    assert selection.confidence == 0.45
    assert "unresolved" in selection.reason


def test_rcr_confidence_gain_tips_the_balance_to_the_context():
    internal = branch("closed_book", "Lyon", 0.5, tokens=peaked(0.5))
    context = branch("context", "Nice", 0.5, documents=(DOC,), tokens=peaked(0.99))
    assert Situated(gain_weight=0.0).rcr(internal, context).branch == "closed_book"
    selection = Situated(gain_weight=0.5).rcr(internal, context)
    assert selection.branch == "context" and "beats own knowledge" in selection.reason


def test_rcr_prefers_a_groundedness_score_over_lexical_support():
    grounded = Score(estimator="groundedness", value=0.0, confidence=0.0)
    internal = branch("closed_book", "Lyon", 0.5)
    supported = branch("context", "Paris", 0.55, documents=(DOC,))
    judged_unsupported = branch("context", "Paris", 0.55, documents=(DOC,), scores=(grounded,))
    assert Situated().rcr(internal, supported).branch == "context"
    assert "support 0.00" in Situated().rcr(internal, judged_unsupported).reason


def test_rcr_falls_back_to_whichever_answer_exists():
    assert (
        Situated().rcr(branch("closed_book", "Paris", 0.4), branch("context", None, None)).branch
        == "closed_book"
    )
    no_docs = branch("context", "Paris", 0.9)
    assert Situated().rcr(branch("closed_book", "Lyon", 0.4), no_docs).branch == "closed_book"
    assert (
        Situated()
        .rcr(branch("closed_book", None, None), branch("context", "P", 0.5, documents=(DOC,)))
        .branch
        == "context"
    )
    assert Situated().rcr(None, None).branch is None


def test_scr_follows_up_with_a_prompt_showing_both_answers():
    situated = Situated("scr")
    branches = [
        branch("closed_book", "Lyon", 0.4),
        branch("context", "Paris", 0.6, documents=(DOC,)),
    ]
    plan = situated.followup(Query("Capital of France?"), branches)
    assert plan is not None and plan.documents_from == "context"
    assert (
        "Lyon" in plan.question
        and "Paris" in plan.question
        and "Capital of France?" in plan.question
    )
    assert Situated("rcr").followup(Query("q"), branches) is None
    chosen = situated.select(Query("q"), [*branches, branch("self_guided", "Paris", 0.7)])
    assert (chosen.branch, chosen.confidence) == ("self_guided", 0.7)
    fallback = situated.select(Query("q"), [*branches, branch("self_guided", None, None)])
    assert fallback.branch == "context"


def test_situated_checks_its_options():
    with pytest.raises(ConfigError, match="'rcr' or 'scr'"):
        Situated("vote")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="margin must lie in"):
        Situated(margin=2)
