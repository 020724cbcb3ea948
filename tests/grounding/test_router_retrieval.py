"""Retrieval through the router on scripted models: what is retrieved, what the model sees,
what happens when retrieval fails, and how RetrieveMore, Confident RAG and situated
faithfulness drive a route."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from demur import (
    Abstain,
    ConfidentRag,
    ConfigError,
    ContextOverflowError,
    Escalate,
    GenerationRequest,
    Ladder,
    MeanTokenLogprob,
    Reply,
    RetrievalError,
    RetrieveMore,
    RouteError,
    Router,
    ScriptedModel,
    Situated,
)
from demur.bases import PolicyBase
from tests.grounding.fakes import KeywordRetriever

PASSAGES = {
    "france": "Paris is the capital of France.",
    "germany": "Berlin is the capital of Germany.",
    "cheese": "France makes hundreds of cheeses.",
}


def seen(request: GenerationRequest) -> str:
    if request.prompt is not None:
        return request.prompt
    return "\n".join(m.content for m in request.messages or ())


def by_passage(request: GenerationRequest) -> Reply:
    """Answers 'Paris' confidently when the Paris passage is in the prompt, else guesses."""
    text = seen(request)
    if "Rewrite the question" in text:
        return Reply.confident("France capital city", 0.9)
    if "Paris is the capital" in text:
        return Reply.confident("Paris", 0.9)
    return Reply.confident("Lyon", 0.3)


def router(*retrievers: KeywordRetriever, **options: object) -> Router:
    options.setdefault("policy", Ladder(0.6, rungs=[Abstain()]))
    options.setdefault("estimators", [MeanTokenLogprob()])
    return Router(
        [ScriptedModel("weak", by_passage)],
        retrievers=list(retrievers),
        **options,  # type: ignore[arg-type]
    )


def test_the_retrieved_passages_reach_the_model_and_the_step():
    retriever = KeywordRetriever("minilm-l6", PASSAGES)
    verdict = router(retriever).route("What is the capital of France?")
    assert verdict.answer == "Paris"
    step = verdict.steps[0]
    assert step.retrieval is not None and step.retrieval.retriever == "minilm-l6"
    assert step.retrieval.documents[0].id == "france"
    assert step.candidate is not None and step.candidate.documents[0].id == "france"
    assert retriever.queries == [("What is the capital of France?", 5)]


def test_callers_context_is_used_without_retrieving():
    retriever = KeywordRetriever("minilm-l6", PASSAGES)
    verdict = router(retriever).route(
        __import__("demur").Query("Capital?", context=("Paris is the capital of France.",))
    )
    assert verdict.answer == "Paris" and retriever.queries == []
    assert verdict.steps[0].candidate.documents[0].id == "context-0"


def test_a_failed_retrieval_is_recorded_and_the_model_answers_closed_book():
    broken = KeywordRetriever("minilm-l6", PASSAGES, error=RetrievalError("chroma is down"))
    verdict = router(broken).route("What is the capital of France?")
    step = verdict.steps[0]
    assert step.retrieval is not None and "chroma is down" in (step.retrieval.error or "")
    assert step.candidate is not None and step.candidate.text == "Lyon"
    assert step.candidate.documents == ()
    assert verdict.status == "abstained"


def test_an_empty_collection_is_recorded_not_raised():
    verdict = router(KeywordRetriever("minilm-l6", {})).route("capital of France?")
    assert "EmptyCollectionError" in (verdict.steps[0].retrieval.error or "")


def test_retrieve_more_with_a_larger_k_then_accepts():
    retriever = KeywordRetriever(
        "minilm-l6", {"cheese": PASSAGES["cheese"], "zz": PASSAGES["france"]}
    )
    policy = Ladder(0.6, rungs=[RetrieveMore(k=1, retriever=None), Abstain()])
    r = router(retriever, policy=policy, grounding=__import__("demur").Rag(k=1))
    # "France" ranks the cheese passage first: with k=1 the answer is a guess.
    verdict = r.route("France capital Paris?")
    assert verdict.status == "answered"
    first = verdict.steps[0]
    assert first.retrieval is not None and [d.id for d in first.retrieval.documents] == ["zz"]


def test_ladder_climbs_retrieve_more_rungs_in_order_and_takes_each_once():
    retriever = KeywordRetriever(
        "minilm-l6", {"cheese": PASSAGES["cheese"], "france": PASSAGES["france"]}
    )
    policy = Ladder(0.6, rungs=[RetrieveMore(k=2), Abstain("no")])
    model = ScriptedModel("weak", by_passage)
    r = Router(
        [model],
        retrievers=[retriever],
        estimators=[MeanTokenLogprob()],
        policy=policy,
        grounding=__import__("demur").Rag(k=1),
    )
    verdict = r.route("Which cheeses does France make?")
    # k=1 finds the cheese passage only: a guess; k=2 adds the capital passage: accepted.
    assert [s.decision.action.kind for s in verdict.steps] == ["retrieve_more", "accept"]
    assert [q[1] for q in retriever.queries] == [1, 2]
    assert verdict.answer == "Paris"


def test_retrieve_more_with_another_retriever():
    bad = KeywordRetriever("minilm-l6", {"germany": PASSAGES["germany"]})
    good = KeywordRetriever("mpnet-base", PASSAGES)
    policy = Ladder(0.6, rungs=[RetrieveMore(retriever="mpnet-base"), Abstain()])
    verdict = router(bad, good, policy=policy).route("What is the capital of France?")
    assert [s.retrieval.retriever for s in verdict.steps] == ["minilm-l6", "mpnet-base"]
    assert verdict.answer == "Paris"


def test_retrieve_more_with_a_query_rewritten_by_the_model():
    retriever = KeywordRetriever("minilm-l6", PASSAGES)
    policy = Ladder(0.95, rungs=[RetrieveMore(rewrite=True), Abstain()])
    verdict = router(retriever, policy=policy).route("Where does the French government sit?")
    second = verdict.steps[1]
    assert second.retrieval is not None and second.retrieval.rewritten
    assert second.retrieval.query.startswith("France capital city")
    assert second.calls == 2  # the rewrite and the answer


def test_retrieve_more_with_the_cutoff_keeps_only_passages_that_clear_it():
    retriever = KeywordRetriever("minilm-l6", PASSAGES, cutoff=0.9)
    policy = Ladder(0.95, rungs=[RetrieveMore(cutoff=True), Abstain()])
    verdict = router(retriever, policy=policy).route("capital of France")
    second = verdict.steps[1].retrieval
    assert second is not None and second.cutoff == 0.9
    assert all(d.score is not None and d.score >= 0.9 for d in second.documents)
    assert len(second.documents) < len(verdict.steps[0].retrieval.documents)


def test_retrieve_more_without_a_fitted_cutoff_says_so():
    retriever = KeywordRetriever("minilm-l6", PASSAGES)
    policy = Ladder(0.95, rungs=[RetrieveMore(cutoff=True), Abstain()])
    verdict = router(retriever, policy=policy).route("capital of France")
    assert "no fitted cutoff" in (verdict.steps[1].retrieval.note or "")


def test_retrieve_more_respects_the_step_budget():
    from demur import Budget

    retriever = KeywordRetriever("minilm-l6", {"germany": PASSAGES["germany"]})
    policy = Ladder(0.6, rungs=[RetrieveMore(k=9), Abstain()])
    verdict = router(retriever, policy=policy, budget=Budget(max_steps=1)).route("France?")
    decision = verdict.steps[-1].decision
    assert decision is not None and decision.action.kind == "abstain"
    assert "step budget spent" in decision.reason


def test_retrieve_more_rungs_are_checked_against_the_retrievers():
    with pytest.raises(ConfigError, match="no retriever"):
        router(policy=Ladder(0.6, rungs=[RetrieveMore(k=9)]))
    with pytest.raises(ConfigError, match="retriever 'mpnet'"):
        router(
            KeywordRetriever("minilm-l6", PASSAGES),
            policy=Ladder(0.6, rungs=[RetrieveMore(retriever="mpnet")]),
        )


def test_a_policy_asking_an_unknown_retriever_is_a_route_error():
    class Rogue(PolicyBase):
        name = "rogue"

        def decide(self, state):  # type: ignore[no-untyped-def]
            from demur import Decision

            return Decision(action=RetrieveMore(retriever="nope"), reason="x")

    with pytest.raises(RouteError, match="unknown retriever 'nope'"):
        router(KeywordRetriever("minilm-l6", PASSAGES), policy=Rogue()).route("France?")


def test_passages_that_overflow_the_context_window_are_dropped_one_by_one():
    def small_window(request: GenerationRequest) -> Reply:
        if "Berlin" in seen(request) or "cheeses" in seen(request):
            raise ContextOverflowError("prompt of 900 tokens exceeds the 512-token window")
        return by_passage(request)

    retriever = KeywordRetriever("minilm-l6", PASSAGES)
    r = Router(
        [ScriptedModel("weak", small_window)],
        retrievers=[retriever],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Abstain()]),
    )
    verdict = r.route("What is the capital of France?")
    step = verdict.steps[0]
    assert verdict.answer == "Paris"
    assert len(step.candidate.documents) == 1
    assert "passage(s) dropped to fit" in (step.retrieval.note or "")


def test_a_non_english_query_falls_back_to_the_multilingual_retriever():
    english = KeywordRetriever("minilm-l6", PASSAGES)
    multilingual = KeywordRetriever("e5-small", PASSAGES, languages="about 100 languages")
    verdict = router(english, multilingual).route("Какая столица Франции?")
    retrieval = verdict.steps[0].retrieval
    assert retrieval is not None and retrieval.retriever == "e5-small"
    assert "non-English" in (retrieval.note or "") and english.queries == []


def test_a_non_english_query_without_a_multilingual_retriever_is_noted():
    verdict = router(KeywordRetriever("minilm-l6", PASSAGES)).route("Какая столица Франции?")
    assert "English only" in (verdict.steps[0].retrieval.note or "")


# --- Confident RAG ------------------------------------------------------------------------------


def test_confident_rag_answers_once_per_retriever_and_keeps_the_most_confident():
    retrievers = [
        KeywordRetriever("minilm-l6", {"germany": PASSAGES["germany"]}),
        KeywordRetriever("e5-small", {"cheese": PASSAGES["cheese"]}),
        KeywordRetriever("mpnet-base", PASSAGES),
    ]
    r = router(*retrievers, grounding=ConfidentRag(k=1))
    verdict = r.route("What is the capital of France?")
    step = verdict.steps[0]
    assert verdict.answer == "Paris" and step.branch == "mpnet-base"
    assert [b.name for b in step.branches] == ["minilm-l6", "e5-small", "mpnet-base"]
    assert all(b.retrieval is not None for b in step.branches)
    assert step.calls == 3
    assert "most confident" in (step.selection or "")


def test_confident_rag_survives_a_failing_retriever_and_a_failing_branch():
    def flaky(request: GenerationRequest) -> Reply:
        if "Berlin" in seen(request):
            raise ContextOverflowError("too long")
        return by_passage(request)

    retrievers = [
        KeywordRetriever("minilm-l6", PASSAGES, error=RetrievalError("down")),
        KeywordRetriever("e5-small", {"germany": PASSAGES["germany"]}),
        KeywordRetriever("mpnet-base", PASSAGES),
    ]
    r = Router(
        [ScriptedModel("weak", flaky)],
        retrievers=retrievers,
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Abstain()]),
        grounding=ConfidentRag(k=1),
    )
    step = r.route("What is the capital of France?").steps[0]
    by_name = {b.name: b for b in step.branches}
    assert by_name["minilm-l6"].retrieval.error is not None
    assert by_name["e5-small"].candidate is not None  # overflow dropped the passage instead
    assert step.branch == "mpnet-base"


def test_confident_rag_when_every_branch_fails_records_the_error_and_abstains():
    from demur import PermanentModelError

    r = Router(
        [ScriptedModel("weak", [Reply(error=PermanentModelError("bad request"))])],
        retrievers=[KeywordRetriever("a", PASSAGES), KeywordRetriever("b", PASSAGES)],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Abstain()]),
        grounding=ConfidentRag(),
    )
    verdict = r.route("France?")
    step = verdict.steps[0]
    assert verdict.status == "abstained" and step.candidate is None
    assert step.error_type == "PermanentModelError" and "bad request" in (step.error or "")
    assert [b.error_type for b in step.branches] == ["PermanentModelError"] * 2
    assert step.calls == 2


def test_confident_rag_then_escalates_when_even_the_best_answer_is_weak():
    retrievers = [
        KeywordRetriever("a", {"germany": PASSAGES["germany"]}),
        KeywordRetriever("b", {"cheese": PASSAGES["cheese"]}),
    ]
    strong = ScriptedModel("strong", [Reply.confident("Paris", 0.95)])
    r = Router(
        [ScriptedModel("weak", by_passage), strong],
        retrievers=retrievers,
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Escalate("strong"), Abstain()]),
        grounding=ConfidentRag(k=1),
    )
    verdict = r.route("What is the capital of France?")
    assert verdict.model == "strong" and len(verdict.steps[1].branches) == 2


# --- situated faithfulness ----------------------------------------------------------------------


def situated_model(request: GenerationRequest) -> Reply:
    """Knows Paris closed-book; a misleading passage says Lyon, with less certainty."""
    text = seen(request)
    if "From the passage" in text:
        return Reply.confident("Paris", 0.8)
    if "Lyon is the capital" in text:
        return Reply(text="Lyon", logprobs=(-0.7,), top=((("Lyon", -0.7), ("Paris", -0.9)),))
    return Reply(text="Paris", logprobs=(-0.05,), top=((("Paris", -0.05), ("Lyon", -3.0)),))


def test_rcr_keeps_own_knowledge_against_a_misleading_passage():
    misleading = KeywordRetriever("minilm-l6", {"lie": "Lyon is the capital of France."})
    r = Router(
        [ScriptedModel("weak", situated_model)],
        retrievers=[misleading],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Abstain()]),
        grounding=Situated("rcr"),
    )
    verdict = r.route("What is the capital of France?")
    step = verdict.steps[0]
    assert verdict.answer == "Paris" and step.branch == "closed_book"
    assert [b.name for b in step.branches] == ["closed_book", "context"]
    closed = step.branches[0]
    assert closed.candidate is not None and closed.candidate.documents == ()
    assert "own knowledge" in (step.selection or "")


def test_scr_adds_a_self_guided_answer_that_sees_both():
    misleading = KeywordRetriever("minilm-l6", {"lie": "Lyon is the capital of France."})
    model = ScriptedModel("weak", situated_model)
    r = Router(
        [model],
        retrievers=[misleading],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Abstain()]),
        grounding=Situated("scr"),
    )
    step = r.route("What is the capital of France?").steps[0]
    assert [b.name for b in step.branches] == ["closed_book", "context", "self_guided"]
    assert step.branch == "self_guided"
    last = seen(model.calls[-1])
    assert (
        "Lyon is the capital" in last and "Without the passage, the answer would be: Paris" in last
    )


def test_situated_requests_top_logprobs_for_the_confidence_gain():
    r = router(KeywordRetriever("minilm-l6", PASSAGES), grounding=Situated())
    assert r.needs.top_logprobs >= 5 and r.needs.logprobs


# --- tracing ------------------------------------------------------------------------------------


def test_retrieval_and_branches_are_traced_without_content_by_default():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    retrievers = [KeywordRetriever("a", PASSAGES), KeywordRetriever("b", PASSAGES)]
    r = router(*retrievers, grounding=ConfidentRag(), tracer_provider=provider)
    r.route("What is the capital of France?")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    retrievals = [s for s in exporter.get_finished_spans() if s.name == "retrieval"]
    assert len(retrievals) == 2
    attributes = retrievals[0].attributes
    assert attributes["gen_ai.operation.name"] == "retrieval"
    assert attributes["gen_ai.data_source.id"] in {"a", "b"}
    assert attributes["gen_ai.retrieval.top_k"] == 5
    assert '"id": "france"' in attributes["gen_ai.retrieval.documents"]
    assert "gen_ai.retrieval.query.text" not in attributes
    branch = spans["demur.branch a"]
    assert retrievals[0].parent.span_id in {
        spans["demur.branch a"].context.span_id,
        spans["demur.branch b"].context.span_id,
    }
    assert branch.parent.span_id == spans["demur.attempt"].context.span_id
    [decision] = [e for e in spans["demur.route"].events if e.name == "demur.decision"]
    assert decision.attributes["demur.branch"] in {"a", "b"}


def test_retrieval_signals_and_groundedness_score_the_retrieved_passages():
    from demur.estimators.groundedness import Groundedness
    from demur.estimators.retrieval import RetrievalSimilarity

    retriever = KeywordRetriever("minilm-l6", PASSAGES)
    r = router(
        retriever,
        estimators=[RetrievalSimilarity("top1"), RetrievalSimilarity("margin"), Groundedness()],
        grounding=Situated(),
    )
    step = r.route("What is the capital of France?").steps[0]
    closed, context = step.branches
    by_name = {s.estimator: s for s in context.scores}
    assert by_name["retrieval_top1"].value == pytest.approx(5 / 6)  # 5 of the 6 query words
    assert by_name["retrieval_margin"].ok
    assert by_name["groundedness_lexical"].confidence == pytest.approx(1.0)  # "Paris" is there
    assert {s.status for s in closed.scores} == {"unavailable"}  # closed-book: no passages


def test_each_branch_records_its_own_latency():
    def slow_for_b(request: GenerationRequest) -> Reply:
        reply = by_passage(request)
        if "Berlin" in seen(request):
            return Reply(text=reply.text, logprobs=reply.logprobs, delay_s=0.05)
        return reply

    retrievers = [
        KeywordRetriever("a", {"france": PASSAGES["france"]}),
        KeywordRetriever("b", {"germany": PASSAGES["germany"]}),
    ]
    r = Router(
        [ScriptedModel("weak", slow_for_b)],
        retrievers=retrievers,
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.6, rungs=[Abstain()]),
        grounding=ConfidentRag(k=1),
    )
    step = r.route("capital?").steps[0]
    fast, slow = step.branches
    assert slow.latency_s >= 0.05 > fast.latency_s
    assert step.latency_s >= slow.latency_s
