"""The LlamaIndex integration on LlamaIndex's own mock components: no weights, no network."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

pytest.importorskip("llama_index.core")
from llama_index.core import Document as LlamaDocument
from llama_index.core import VectorStoreIndex
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    LogProb,
)
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    PydanticResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import CustomLLM, MockLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore, TextNode
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import Field

from demur import (
    Abstain,
    AskHuman,
    ConfigError,
    ContextOverflowError,
    Escalate,
    GenerationRequest,
    Groundedness,
    InvalidQueryError,
    Ladder,
    MeanTokenLogprob,
    Message,
    MinTokenProb,
    ModelNotFoundError,
    ModelTimeoutError,
    PermanentModelError,
    RateLimitError,
    RetrievalSimilarity,
    RetryPolicy,
    Router,
    ServerError,
    SqliteQueue,
)
from demur.estimators.verbal import VerbalizedConfidence
from demur.integrations.llamaindex import (
    VERDICT_KEY,
    DemurQueryEngine,
    LlamaIndexLLM,
    UnsupportedResponseError,
    instrument,
    openai_kwargs,
)
from demur.prompts import ChatPrompt, CompletionPrompt

QUESTION = "Which novel did Jane Austen publish in 1815?"
PASSAGES = (
    "Jane Austen published Emma in December 1815; it was her fourth novel.",
    "Pride and Prejudice, Jane Austen's second novel, appeared in 1813.",
    "Charlotte Bronte published Jane Eyre in 1847.",
)
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002)


@pytest.fixture(autouse=True)
def bundled_llama_index_data(monkeypatch):
    # LlamaIndex downloads NLTK data and tiktoken files into these folders when they are set
    # and empty; unset, it uses the copies that ship in llama-index-core.
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)


# --- LlamaIndex components for the tests ----------------------------------------------------


def logprobs_for(text: str, probability: float | None) -> list[list[LogProb]] | None:
    """One LogProb per word (with its leading space), each of the given probability."""
    if probability is None:
        return None
    words = text.split(" ")
    tokens = [w if i == 0 else f" {w}" for i, w in enumerate(words)]
    return [[LogProb(token=t, logprob=math.log(probability))] for t in tokens]


class FixedLLM(CustomLLM):
    """Answers every prompt with `answer`, with per-word logprobs unless `probability` is None."""

    answer: str = "Emma"
    probability: float | None = 0.9
    chat_model: bool = False
    error: Any = None
    fail_times: int = 0
    delay_s: float = 0.0
    seen: list[str] = Field(default_factory=list)
    seen_kwargs: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="fixed", is_chat_model=self.chat_model)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.seen.append(prompt)
        self.seen_kwargs.append(kwargs)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.error is not None and len(self.seen) <= (self.fail_times or 10**9):
            raise self.error
        return CompletionResponse(
            text=self.answer, logprobs=logprobs_for(self.answer, self.probability)
        )

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        raise NotImplementedError


class ChatLLM(CustomLLM):
    """A chat-native LLM: its own chat and achat return `reply` with `logprobs`."""

    reply: str | None = "Paris"
    logprobs: Any = None

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="chatty", is_chat_model=True)

    def _response(self) -> ChatResponse:
        message = ChatMessage(role="assistant", content=self.reply)
        return ChatResponse(message=message, logprobs=self.logprobs)

    @llm_chat_callback()
    def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:
        return self._response()

    @llm_chat_callback()
    async def achat(self, messages: Any, **kwargs: Any) -> ChatResponse:
        return self._response()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise AssertionError("a chat request must not go to complete")

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        raise NotImplementedError


class StaticEngine(CustomQueryEngine):
    """Returns `result` (or raises it) for every query."""

    result: Any = None

    def custom_query(self, query_str: str) -> Any:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def node(text: str, score: float | None, id_: str) -> NodeWithScore:
    return NodeWithScore(node=TextNode(text=text, id_=id_), score=score)


def static_engine(answer: str, *scored: tuple[str, float | None]) -> StaticEngine:
    nodes = [node(text, score, f"n{i}") for i, (text, score) in enumerate(scored)]
    return StaticEngine(result=Response(response=answer, source_nodes=nodes, metadata={"k": 1}))


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(
        [LlamaDocument(text=p) for p in PASSAGES], embed_model=MockEmbedding(embed_dim=8)
    )


@pytest.fixture
def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def logged() -> tuple[LoggerProvider, InMemoryLogRecordExporter]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return provider, exporter


def gate(engine: Any, threshold: float = 0.5, **options: Any) -> DemurQueryEngine:
    options.setdefault("estimators", [Groundedness(), RetrievalSimilarity(), MeanTokenLogprob()])
    options.setdefault("policy", Ladder(threshold, rungs=[Abstain("I could not check that.")]))
    return DemurQueryEngine(engine, **options)


# --- the gating query engine ----------------------------------------------------------------


def test_sync_query_gates_the_answer_with_its_source_nodes(index):
    engine = index.as_query_engine(llm=FixedLLM(), similarity_top_k=3)
    gated = gate(engine)
    assert isinstance(gated, BaseQueryEngine)
    response = gated.query(QUESTION)
    verdict = response.metadata[VERDICT_KEY]
    assert response.response == "Emma"
    assert verdict.status == "answered" and verdict.model == "query_engine"
    candidate = verdict.steps[0].candidate
    assert [d.id for d in candidate.documents] == [n.node.node_id for n in response.source_nodes]
    assert sorted(d.text for d in candidate.documents) == sorted(PASSAGES)
    assert all(d.score == pytest.approx(1.0) for d in candidate.documents)  # mock embeddings
    assert all(d.source is not None for d in candidate.documents)  # the source documents
    scores = {s.estimator: s for s in verdict.steps[0].scores}
    assert scores["groundedness_lexical"].confidence == 1.0
    assert scores["retrieval_top1"].confidence == pytest.approx(1.0)
    assert scores["mean_logprob"].confidence == pytest.approx(0.9)


async def test_async_query_is_the_twin(index):
    engine = index.as_query_engine(llm=FixedLLM(), similarity_top_k=3)
    response = await gate(engine).aquery(QUESTION)
    verdict = response.metadata[VERDICT_KEY]
    assert response.response == "Emma" and verdict.status == "answered"
    assert len(verdict.steps[0].candidate.documents) == 3
    assert len(response.source_nodes) == 3


async def test_concurrent_queries_keep_their_own_answers():
    engines = [static_engine(f"answer {i}", (f"answer {i} is here", 0.9)) for i in range(4)]
    gated = [gate(e) for e in engines]
    responses = await asyncio.gather(*(g.aquery(f"question {i}?") for i, g in enumerate(gated)))
    assert [r.response for r in responses] == [f"answer {i}" for i in range(4)]


def test_source_nodes_reach_groundedness_and_an_unsupported_answer_abstains():
    engine = static_engine("Charles Dickens", (PASSAGES[0], 0.83), (PASSAGES[1], 0.41))
    response = gate(engine, estimators=[Groundedness()]).query(QUESTION)
    verdict = response.metadata[VERDICT_KEY]
    score = verdict.steps[0].scores[0]
    assert score.confidence == 0.0 and "missing: charles, dickens" in score.detail
    assert verdict.status == "abstained"
    assert response.response == "I could not check that."
    assert [n.node.node_id for n in response.source_nodes] == ["n0", "n1"]
    assert response.metadata["k"] == 1  # the engine's own metadata is kept


def test_retrieval_scores_come_from_the_source_nodes():
    engine = static_engine("Emma", (PASSAGES[0], 0.83), (PASSAGES[1], 0.41))
    gated = gate(engine, estimators=[RetrievalSimilarity("margin")], threshold=0.3)
    verdict = gated.query(QUESTION).metadata[VERDICT_KEY]
    score = verdict.steps[0].scores[0]
    assert score.value == pytest.approx(0.42)
    assert verdict.status == "answered"


def test_low_confidence_escalates_to_a_llamaindex_llm_answering_from_the_source_nodes():
    strong_llm = FixedLLM(answer="Emma", probability=0.95, chat_model=True)
    strong = LlamaIndexLLM(strong_llm, name="strong")
    engine = static_engine("Pride and Prejudice", (PASSAGES[0], 0.83))
    gated = gate(
        engine,
        estimators=[Groundedness()],
        policy=Ladder(0.5, rungs=[Escalate("strong"), Abstain()]),
        models=[strong],
    )
    response = gated.query(QUESTION)
    verdict = response.metadata[VERDICT_KEY]
    assert [s.model for s in verdict.steps] == ["query_engine", "strong"]
    assert verdict.escalated and verdict.model == "strong"
    assert response.response == "Emma"
    assert PASSAGES[0] in strong_llm.seen[0]  # the strong model saw the engine's passages
    assert verdict.steps[1].candidate.documents[0].id == "n0"


def test_a_router_serves_as_template(traced):
    provider, exporter = traced
    strong = LlamaIndexLLM(FixedLLM(answer="Emma", chat_model=True), name="strong")
    template = Router(
        [strong],
        estimators=[Groundedness()],
        policy=Ladder(0.5, rungs=[Escalate("strong"), Abstain()]),
        prompts={"strong": ChatPrompt(user_with_context="DOCS: {context}\nQ: {question}")},
        tracer_provider=provider,
    )
    gated = DemurQueryEngine(static_engine("Dickens", (PASSAGES[0], 0.8)), router=template)
    verdict = gated.query(QUESTION).metadata[VERDICT_KEY]
    assert verdict.model == "strong"
    assert strong.llm.seen[0].count("DOCS: Jane Austen published Emma") == 1  # template prompt
    assert {s.name for s in exporter.get_finished_spans()} >= {"demur.route", "chat strong"}


def test_hand_over_to_a_person_returns_the_pending_message(tmp_path):
    queue = SqliteQueue(tmp_path / "queue.db")
    gated = gate(
        static_engine("Dickens", (PASSAGES[0], 0.8)),
        estimators=[Groundedness()],
        policy=Ladder(0.5, rungs=[AskHuman()]),
        queue=queue,
    )
    response = gated.query(QUESTION)
    verdict = response.metadata[VERDICT_KEY]
    assert verdict.status == "pending"
    assert response.response == verdict.message
    ticket = queue.get(verdict.ticket_id)
    assert ticket.candidates[0].text == "Dickens"


def test_engine_llm_without_logprobs_leaves_logprob_estimators_unavailable(index):
    engine = index.as_query_engine(llm=MockLLM(max_tokens=4), similarity_top_k=3)
    gated = gate(engine, estimators=[MeanTokenLogprob(), RetrievalSimilarity()])
    verdict = gated.query(QUESTION).metadata[VERDICT_KEY]
    scores = {s.estimator: s for s in verdict.steps[0].scores}
    assert scores["mean_logprob"].status == "unavailable"
    assert "returned none" in scores["mean_logprob"].detail
    assert scores["retrieval_top1"].status == "ok"
    assert verdict.confidence == pytest.approx(1.0)  # decided on what was available


def test_estimators_that_ask_the_engine_again_fail_with_a_clear_reason():
    gated = gate(
        static_engine("Emma", (PASSAGES[0], 0.8)),
        estimators=[VerbalizedConfidence(), Groundedness()],
    )
    verdict = gated.query(QUESTION).metadata[VERDICT_KEY]
    verbal, grounded = verdict.steps[0].scores
    assert (verbal.status, verbal.error_type) == ("failed", "EstimatorError")
    assert verbal.detail == "verbal raised EstimatorError"  # logged with capture_content
    assert grounded.status == "ok" and verdict.status == "answered"


@pytest.mark.parametrize(
    ("result", "fix"),
    [
        (StreamingResponse(response_gen=iter(["never", "read"])), "streaming=False"),
        (PydanticResponse(response=None), "output_cls"),
        (Response(response=42), "int, not str"),  # type: ignore[arg-type]
        (42, "returned int"),
    ],
)
def test_an_engine_that_does_not_return_text_is_refused_clearly(result, fix):
    gated = gate(StaticEngine(result=result))
    started = time.perf_counter()
    with pytest.raises(UnsupportedResponseError, match=fix) as info:
        gated.query(QUESTION)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, TypeError)
    assert time.perf_counter() - started < 5
    if isinstance(result, StreamingResponse):
        assert next(result.response_gen) == "never"  # the stream was left unread


async def test_an_async_stream_is_refused_without_being_read():
    async def tokens():
        yield "never"

    stream = AsyncStreamingResponse(response_gen=tokens())
    with pytest.raises(UnsupportedResponseError, match="AsyncStreamingResponse"):
        await gate(StaticEngine(result=stream)).aquery(QUESTION)
    assert stream.response_txt is None


def test_the_wrapped_engines_own_errors_reach_the_caller_unchanged():
    with pytest.raises(KeyError, match="index offline"):
        gate(StaticEngine(result=KeyError("index offline"))).query(QUESTION)


def test_an_empty_question_is_refused_before_the_engine_runs():
    engine = StaticEngine(result=AssertionError("the engine must not run"))
    with pytest.raises(InvalidQueryError, match="empty"):
        gate(engine).query("   ")


def test_configuration_mistakes_are_explained():
    engine = static_engine("Emma")
    with pytest.raises(ConfigError, match="needs a policy"):
        DemurQueryEngine(engine, estimators=[Groundedness()])
    with pytest.raises(ConfigError, match="wraps a LlamaIndex query engine"):
        DemurQueryEngine(object(), policy=Ladder(0.5))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sets grounding itself"):
        DemurQueryEngine(engine, policy=Ladder(0.5), grounding=None)
    with pytest.raises(ConfigError, match="no prompt reaches"):
        DemurQueryEngine(engine, policy=Ladder(0.5), prompts={"query_engine": ChatPrompt()})
    template = Router([LlamaIndexLLM(FixedLLM(), name="query_engine")], policy=Ladder(0.5))
    with pytest.raises(ConfigError, match="name='...'"):
        DemurQueryEngine(engine, router=template)
    with pytest.raises(ConfigError, match="not both"):
        DemurQueryEngine(engine, router=template, policy=Ladder(0.5), name="qe")


async def test_sync_query_from_async_code_still_works_and_nests(traced):
    provider, exporter = traced
    gated = gate(static_engine("Emma", (PASSAGES[0], 0.9)), tracer_provider=provider)
    with provider.get_tracer("app").start_as_current_span("caller") as caller:
        response = gated.query(QUESTION)  # a running loop: routed in a worker thread
    assert response.response == "Emma"
    route = next(s for s in exporter.get_finished_spans() if s.name == "demur.route")
    assert route.context.trace_id == caller.get_span_context().trace_id


# --- trace continuity ----------------------------------------------------------------------


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, Any]:
    return {s.name: s for s in exporter.get_finished_spans()}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_demur_spans_nest_under_the_callers_span(index, traced, mode):
    provider, exporter = traced
    engine = index.as_query_engine(llm=FixedLLM(), similarity_top_k=3)
    gated = gate(engine, tracer_provider=provider)
    run = gated.query if mode == "sync" else lambda q: asyncio.run(gated.aquery(q))
    with provider.get_tracer("app").start_as_current_span("caller") as caller:
        response = run(QUESTION)
    spans = spans_by_name(exporter)
    caller_context = caller.get_span_context()
    outer = spans["demur.query_engine"]
    assert outer.parent.span_id == caller_context.span_id
    assert spans["demur.route"].parent.span_id == outer.context.span_id
    assert spans["demur.attempt"].parent.span_id == spans["demur.route"].context.span_id
    assert {s.context.trace_id for s in spans.values()} == {caller_context.trace_id}
    assert outer.attributes["demur.source_nodes"] == 3
    assert outer.attributes["demur.status"] == "answered"
    assert response.metadata[VERDICT_KEY].trace_id == format(caller_context.trace_id, "032x")


# --- the LLM adapter -------------------------------------------------------------------------


def chat_request(**settings: Any) -> GenerationRequest:
    messages = (Message(role="user", content="Capital of France?"),)
    return GenerationRequest(messages=messages, **settings)


async def test_chat_requests_go_to_chat_with_logprobs_and_alternatives():
    logprobs = [
        [LogProb(token="Paris", logprob=-0.1), LogProb(token="Lyon", logprob=-2.5)],
        [LogProb(token="\n", logprob=-0.2)],
        [LogProb(token="The", logprob=-1.0)],
    ]
    model = LlamaIndexLLM(ChatLLM(reply="Paris\nThe capital", logprobs=logprobs))
    assert model.name == "chatty" and isinstance(model.default_prompt, ChatPrompt)
    generation = await model.agenerate(chat_request(logprobs=True, stop=("\n",)))
    [completion] = generation.completions
    assert completion.text == "Paris" and completion.finish_reason == "stop"
    assert [t.token for t in completion.tokens] == ["Paris"]
    assert [a.token for a in completion.tokens[0].top] == ["Paris", "Lyon"]


async def test_the_token_taken_is_the_one_the_text_continues_with():
    logprobs = [[LogProb(token="Paris", logprob=-0.1), LogProb(token="Lyon", logprob=-2.5)]]
    model = LlamaIndexLLM(ChatLLM(reply="Lyon", logprobs=logprobs))
    [completion] = (await model.agenerate(chat_request(logprobs=True))).completions
    assert completion.tokens[0].token == "Lyon"
    assert completion.tokens[0].logprob == pytest.approx(-2.5)


async def test_customllm_default_chat_keeps_the_completions_logprobs():
    llm = FixedLLM(answer="Jane Austen", probability=0.5)
    model = LlamaIndexLLM(llm, name="fixed", default_prompt=ChatPrompt())
    [completion] = (await model.agenerate(chat_request(logprobs=True))).completions
    assert completion.text == "Jane Austen"
    assert [t.token for t in completion.tokens] == ["Jane", " Austen"]
    assert "Capital of France?" in llm.seen[0]  # rendered by messages_to_prompt


async def test_prompts_go_to_complete_and_n_samples_are_repeated_calls():
    llm = FixedLLM(answer="Emma")
    seen: list[GenerationRequest] = []

    def kwargs(request: GenerationRequest) -> dict[str, Any]:
        seen.append(request)
        return {"temperature": request.temperature}

    model = LlamaIndexLLM(llm, name="fixed", request_kwargs=kwargs)
    assert isinstance(model.default_prompt, CompletionPrompt)
    request = GenerationRequest(prompt="Q: Who wrote Emma?\nA:", n=3, seed=7, temperature=1.0)
    generation = await model.agenerate(request)
    assert [c.text for c in generation.completions] == ["Emma"] * 3
    assert all(c.tokens is None for c in generation.completions)  # not asked for
    assert [r.seed for r in seen] == [7, 8, 9] and all(r.n == 1 for r in seen)
    assert llm.seen == ["Q: Who wrote Emma?\nA:"] * 3
    assert llm.seen_kwargs == [{"temperature": 1.0}] * 3


def test_an_llm_without_logprobs_is_scored_unavailable_and_the_route_goes_on():
    model = LlamaIndexLLM(MockLLM(max_tokens=3))
    assert model.name == "MockLLM"
    router = Router(
        [model],
        estimators=[MeanTokenLogprob(), MinTokenProb()],
        policy=Ladder(0.5, rungs=[Abstain("No logprobs, no answer.")]),
    )
    verdict = router.route("Who wrote Emma?")
    assert [s.status for s in verdict.steps[0].scores] == ["unavailable", "unavailable"]
    assert "returned none" in verdict.steps[0].scores[0].detail
    assert verdict.status == "abstained" and verdict.message == "No logprobs, no answer."


class ProviderError(Exception):
    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class APITimeoutError(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TimeoutError("slow"), ModelTimeoutError),
        (APITimeoutError("request timed out"), ModelTimeoutError),
        (ProviderError("too many requests", 429), RateLimitError),
        (ProviderError("bad gateway", 502), ServerError),
        (ConnectionError("connection reset"), ServerError),
        (ValueError("Requested tokens (3000) exceed context window of 2048"), ContextOverflowError),
        (ProviderError("maximum context length is 8192 tokens", 400), ContextOverflowError),
        (ProviderError("no such model", 404), ModelNotFoundError),
        (ProviderError("invalid api key", 401), PermanentModelError),
        (RuntimeError("boom"), PermanentModelError),
    ],
)
async def test_llm_errors_map_onto_demurs_error_tree(error, expected):
    model = LlamaIndexLLM(FixedLLM(error=error), name="x")
    with pytest.raises(expected) as info:
        await model.agenerate(GenerationRequest(prompt="hi"))
    assert type(info.value) is expected
    assert str(info.value).startswith(f"x: the LlamaIndex LLM raised {type(error).__name__}")
    assert info.value.model == "x"


def test_transient_llm_errors_are_retried_by_the_router():
    llm = FixedLLM(answer="Emma", error=TimeoutError("slow"), fail_times=1)
    router = Router(
        [LlamaIndexLLM(llm, name="x")],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.5),
        retry=FAST_RETRY,
    )
    verdict = router.route("Who wrote Emma?")
    assert verdict.answer == "Emma" and verdict.steps[0].retries == 1


def test_a_hanging_sync_llm_times_out_instead_of_blocking_the_route():
    model = LlamaIndexLLM(FixedLLM(delay_s=6.0), name="slow", timeout_s=0.1)
    router = Router([model], policy=Ladder(0.5), retry=RetryPolicy(max_attempts=1), estimators=[])
    started = time.perf_counter()
    verdict = router.route("Who wrote Emma?")
    assert time.perf_counter() - started < 4  # far from the 6 s the LLM would hang
    assert verdict.status == "abstained"
    assert verdict.steps[0].error_type == "ModelTimeoutError"


async def test_a_reply_without_text_is_a_permanent_error():
    model = LlamaIndexLLM(ChatLLM(reply=None))
    with pytest.raises(PermanentModelError, match="no text"):
        await model.agenerate(chat_request())


def test_llm_adapter_configuration_mistakes():
    with pytest.raises(ConfigError, match="wraps a LlamaIndex LLM"):
        LlamaIndexLLM(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="timeout_s"):
        LlamaIndexLLM(MockLLM(), timeout_s=0)


def test_openai_kwargs_forward_the_request_settings():
    request = chat_request(max_tokens=8, temperature=0.5, stop=("\n",), seed=3, logprobs=True)
    assert openai_kwargs(request) == {
        "max_tokens": 8,
        "temperature": 0.5,
        "stop": ["\n"],
        "seed": 3,
        "logprobs": True,
        "top_logprobs": 1,
    }


# --- instrumentation ------------------------------------------------------------------------


def chain_up(span: Any, by_id: dict[int, Any]) -> list[str]:
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def test_instrumentation_scores_llm_calls_and_nests_under_the_callers_span(index, traced):
    provider, exporter = traced
    evaluations: list[Any] = []
    engine = index.as_query_engine(llm=FixedLLM(probability=0.9), similarity_top_k=3)
    logger_provider, logs = logged()
    with (
        instrument(
            tracer_provider=provider,
            logger_provider=logger_provider,
            on_evaluation=evaluations.append,
        ),
        provider.get_tracer("app").start_as_current_span("caller"),
    ):
        response = engine.query(QUESTION)
    assert str(response) == "Emma"  # observed, not changed
    [evaluation] = evaluations
    assert evaluation.model == "fixed" and evaluation.operation == "text_completion"
    assert evaluation.confidence == pytest.approx(0.9)
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    [evaluate] = [s for s in spans if s.name == "demur.evaluate fixed"]
    ancestors = chain_up(evaluate, by_id)
    assert ancestors[0] == "llama_index FixedLLM.complete"
    assert "llama_index RetrieverQueryEngine.query" in ancestors
    assert ancestors[-1] == "caller"
    assert evaluate.attributes["demur.confidence"] == pytest.approx(0.9)
    assert evaluate.attributes["demur.score.mean_logprob"] == pytest.approx(0.9)
    # The evaluation events belong to the LLM call they score, as the GenAI conventions ask.
    [call] = [s for s in spans if s.name == "llama_index FixedLLM.complete"]
    records = [r.log_record for r in logs.get_finished_logs()]
    assert {r.span_id for r in records} == {call.context.span_id}
    results = {r.attributes["gen_ai.evaluation.name"]: r.attributes for r in records}
    assert results["mean_logprob"]["gen_ai.evaluation.score.value"] == pytest.approx(0.9)
    assert evaluation.trace_id == format(evaluate.context.trace_id, "032x")


def test_instrumentation_records_unavailable_scores_without_logprobs(traced):
    provider, exporter = traced
    evaluations: list[Any] = []
    logger_provider, logs = logged()
    with (
        instrument(
            tracer_provider=provider,
            logger_provider=logger_provider,
            spans=False,
            on_evaluation=evaluations.append,
        ),
        provider.get_tracer("app").start_as_current_span("caller") as caller,
    ):
        MockLLM(max_tokens=3).complete("Who wrote Emma?")
    [evaluation] = evaluations
    assert evaluation.confidence is None
    assert [s.status for s in evaluation.scores] == ["unavailable", "unavailable"]
    [evaluate] = [s for s in exporter.get_finished_spans() if s.name.startswith("demur.eval")]
    assert evaluate.parent.span_id == caller.get_span_context().span_id
    assert "demur.confidence" not in evaluate.attributes
    records = [r.log_record for r in logs.get_finished_logs()]
    assert {r.span_id for r in records} == {evaluate.context.span_id}  # no LLM span to parent
    labels = [r.attributes["gen_ai.evaluation.score.label"] for r in records]
    assert labels == ["unavailable", "unavailable"]


async def test_a_call_reported_several_times_is_scored_once():
    evaluations: list[Any] = []
    llm = FixedLLM(probability=0.8, chat_model=True)
    with instrument(spans=False, on_evaluation=evaluations.append):
        # achat -> chat -> complete: three start and end events for one call
        await llm.achat([ChatMessage(role="user", content="Who wrote Emma?")])
        llm.chat([ChatMessage(role="user", content="Who wrote Emma?")])
    assert len(evaluations) == 2
    assert all(e.confidence == pytest.approx(0.8) for e in evaluations)


def test_a_call_already_running_when_instrumented_is_not_scored():
    slow = FixedLLM(answer="Persuasion", delay_s=0.5)
    running = threading.Thread(target=slow.complete, args=("Which novel came last?",))
    running.start()
    time.sleep(0.1)  # its start event is dispatched before the handler is attached
    evaluations: list[Any] = []
    with instrument(spans=False, on_evaluation=evaluations.append):
        FixedLLM(answer="Emma").complete("Who wrote Emma?")
        running.join()
    assert [e.text for e in evaluations] == ["Emma"]


def test_instrumentation_only_observes():
    def broken(evaluation: Any) -> None:
        raise RuntimeError("a broken callback")

    llm = FixedLLM(answer="Emma")
    with instrument(spans=True, on_evaluation=broken) as handle:
        assert llm.complete("Who wrote Emma?").text == "Emma"
        dispatcher = get_dispatcher()
        assert handle.event_handler in dispatcher.event_handlers
        assert handle.span_handler in dispatcher.span_handlers
    assert handle.event_handler not in dispatcher.event_handlers
    assert handle.span_handler not in dispatcher.span_handlers
    assert not handle.span_handler.open_spans


def test_instrumentation_refuses_estimators_that_call_models():
    with pytest.raises(ConfigError, match="asks a model or needs samples"):
        instrument(estimators=[VerbalizedConfidence()])


def test_a_failed_llm_call_ends_its_span_with_the_error(traced):
    provider, exporter = traced
    with instrument(tracer_provider=provider), pytest.raises(ValueError):
        FixedLLM(error=ValueError("broken")).complete("hi")
    [failed] = [s for s in exporter.get_finished_spans() if s.name.endswith(".complete")]
    assert failed.status.status_code.name == "ERROR"
    assert failed.attributes["error.type"] == "ValueError"


# --- imports and the network ----------------------------------------------------------------


def test_import_demur_does_not_import_llama_index():
    code = (
        "import sys, demur, demur.integrations\n"
        "from demur import Router, Groundedness\n"
        "print('llama_index' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_llama_index_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['llama_index'] = None\n"
        "try:\n"
        "    import demur.integrations.llamaindex\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("MissingDependencyError")
    assert "pip install 'demur[llamaindex]'" in out.stdout


OFFLINE = """
import asyncio, socket, sys

def refuse(*args, **kwargs):
    raise OSError(f"network use: {args}")

socket.socket.connect = refuse
socket.create_connection = refuse

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from demur import Groundedness, Ladder, MeanTokenLogprob
from demur.integrations.llamaindex import DemurQueryEngine, instrument

docs = [Document(text="Jane Austen published Emma in 1815. " * 40), Document(text="Paris.")]
index = VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=8))
engine = index.as_query_engine(llm=MockLLM(max_tokens=5), similarity_top_k=2)
gated = DemurQueryEngine(
    engine, estimators=[Groundedness(), MeanTokenLogprob()], policy=Ladder(0.5)
)
with instrument():
    sync = gated.query("Who wrote Emma?")
    asyncio.run(gated.aquery("Who wrote Emma?"))
print("verdict", sync.metadata["demur_verdict"].status)
"""


def test_everything_runs_with_the_network_refused():
    env = {k: v for k, v in os.environ.items() if k not in ("NLTK_DATA", "TIKTOKEN_CACHE_DIR")}
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "verdict" in result.stdout
    assert "download" not in (result.stdout + result.stderr).lower()
