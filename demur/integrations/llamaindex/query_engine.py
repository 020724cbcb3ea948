"""Gate a LlamaIndex query engine: its answer is released only when demur trusts it.

    engine = DemurQueryEngine(
        index.as_query_engine(llm=llm),
        estimators=[Groundedness(), RetrievalSimilarity()],
        policy=Ladder(0.5, rungs=[Abstain("I could not find a reliable answer.")]),
    )
    response = engine.query("Who wrote Emma?")
    response.response                        # the answer, or the abstention message
    response.metadata["demur_verdict"]       # the demur Verdict: status, confidence, steps

How it works. The wrapped engine answers first, as it would alone; its own errors reach the
caller unchanged. Its answer then goes through a demur Router whose first model (named
`name`, "query_engine" by default) replays that answer, and whose one retriever
("source_nodes") returns the response's source nodes as Documents: node id, text, similarity
score, the source document's id, metadata. Estimators therefore see the passages: groundedness
checks the answer against them, retrieval similarity reads their scores. Logprob estimators
get the token logprobs of the engine's last LLM call when that LLM gives them and its text is
the answer (caught from LlamaIndex's instrumentation events); otherwise they report
"unavailable". The policy then accepts, escalates to one of `models` (which answers from the
same source nodes), hands the question to the review queue, or abstains.

Limits. The engine answers once: it draws no samples and answers no other prompt, so
estimators that need samples or ask the answering model (agreement, semantic entropy, verbal,
P(True), a judge without `judge=`) fail or report unavailable on its answer; give judges
another model. `RetrieveMore` finds nothing new: the source nodes are all the engine found.
Streaming and structured (`output_cls`) engines are refused with UnsupportedResponseError:
demur must read the whole answer, as text, before releasing it.

Traces: `demur.query_engine` (the engine's run and the route) nests under the caller's active
OpenTelemetry span, and `demur.route` under it.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    PydanticResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index.core.prompts.mixin import PromptDictType, PromptMixin, PromptMixinType
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from llama_index_instrumentation import get_dispatcher
from opentelemetry.trace import Span

from demur.bases import ModelBase, RetrieverBase
from demur.errors import (
    ConfigError,
    PermanentModelError,
    RetrievalError,
    UnsupportedResponseError,
)
from demur.grounding.rag import Rag
from demur.integrations.llamaindex.llm import response_text, tokens_from_logprobs
from demur.protocols import Estimator, Model, Policy
from demur.router.router import Router
from demur.types import (
    Completion,
    Document,
    Generation,
    GenerationRequest,
    Query,
    TokenLogprob,
    Verdict,
)

VERDICT_KEY = "demur_verdict"
SOURCE_RETRIEVER = "source_nodes"
# Router options the wrapper sets itself: the engine answers first, from its own source nodes.
_RESERVED = frozenset({"start", "retrievers", "grounding"})


# --- one engine run ----------------------------------------------------------------------------


@dataclass
class _EngineRun:
    """The wrapped engine's answer to one query, as the route replays it."""

    question: str
    text: str
    documents: tuple[Document, ...]
    tokens: tuple[TokenLogprob, ...] | None = None


# The run of the query being routed, and the LLM responses seen during the engine's run. Context
# variables keep concurrent queries apart; the router's sync facade copies the caller's context.
_RUN: contextvars.ContextVar[_EngineRun | None] = contextvars.ContextVar(
    "demur_llamaindex_run", default=None
)
_CAPTURED: contextvars.ContextVar[list[object] | None] = contextvars.ContextVar(
    "demur_llamaindex_captured", default=None
)


class _LLMCapture(BaseEventHandler):
    """Keeps the LLM responses of the engine run in progress in this context; observes only."""

    @classmethod
    def class_name(cls) -> str:
        return "DemurLLMCapture"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        sink = _CAPTURED.get()
        if sink is None or not isinstance(event, LLMChatEndEvent | LLMCompletionEndEvent):
            return
        if event.response is not None:
            sink.append(event.response)


_capture_lock = threading.Lock()
_capture_installed = False


def _install_capture() -> None:
    """Attach the capture handler to LlamaIndex's root dispatcher, once per process."""
    global _capture_installed
    with _capture_lock:
        if not _capture_installed:
            get_dispatcher().add_event_handler(_LLMCapture())
            _capture_installed = True


def _answer_tokens(answer: str, captured: Sequence[object]) -> tuple[TokenLogprob, ...] | None:
    """The logprobs of the last LLM call whose text is the answer, when it gave any."""
    for response in reversed(captured):
        try:
            text = response_text(response)
        except TypeError:
            continue
        if text.strip() == answer.strip() and getattr(response, "logprobs", None):
            return tokens_from_logprobs(text, getattr(response, "logprobs", None))
    return None


def documents_from_nodes(nodes: Sequence[NodeWithScore]) -> tuple[Document, ...]:
    """demur Documents from LlamaIndex source nodes, in their order, with their scores."""
    documents = []
    for i, item in enumerate(nodes):
        node = item.node
        score = item.score
        metadata = node.metadata if isinstance(node.metadata, dict) else {}
        documents.append(
            Document(
                id=node.node_id or f"node-{i}",
                text=node.get_content(metadata_mode=MetadataMode.NONE),
                score=float(score) if score is not None and math.isfinite(score) else None,
                source=node.ref_doc_id,
                retriever=SOURCE_RETRIEVER,
                metadata=dict(metadata),
            )
        )
    return tuple(documents)


def _read_response(engine: object, response: object) -> tuple[str, list[NodeWithScore]]:
    """The answer text and source nodes of an engine's response; refuses anything else."""
    name = type(engine).__name__
    if isinstance(response, StreamingResponse | AsyncStreamingResponse):
        raise UnsupportedResponseError(
            f"DemurQueryEngine needs the whole answer as text, but {name} returned a "
            f"{type(response).__name__}: demur must score an answer before releasing it. "
            "Build the engine with streaming=False, e.g. index.as_query_engine(streaming=False)."
        )
    if isinstance(response, PydanticResponse):
        raise UnsupportedResponseError(
            f"DemurQueryEngine gates text answers, but {name} returned a PydanticResponse "
            "(structured output from output_cls=...). Build the engine without output_cls."
        )
    if isinstance(response, str):
        return response, []
    if isinstance(response, Response):
        text = response.response
        if text is None:
            return "", list(response.source_nodes)
        if isinstance(text, str):
            return text, list(response.source_nodes)
        raise UnsupportedResponseError(
            f"DemurQueryEngine gates text answers, but {name} returned a Response whose "
            f"answer is {type(text).__name__}, not str."
        )
    raise UnsupportedResponseError(
        f"DemurQueryEngine gates text answers, but {name} returned "
        f"{type(response).__name__}; a query engine returns a llama_index Response."
    )


# --- the engine as the route sees it -----------------------------------------------------------


class _QuestionPrompt:
    """The engine's "prompt" is the bare question: it was answered before the route began."""

    def render(self, query: Query) -> GenerationRequest:
        return GenerationRequest(prompt=query.question)


class _EngineAnswer(ModelBase):
    """A demur model that replays the wrapped engine's answer to the query being routed."""

    provider = "llama_index"
    supports_logprobs = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.default_prompt = _QuestionPrompt()

    async def agenerate(self, request: GenerationRequest) -> Generation:
        run = _RUN.get()
        if run is None:
            raise PermanentModelError(
                f"{self.name} replays a query engine's answer and answers only inside "
                "DemurQueryEngine.query() or aquery()",
                model=self.name,
            )
        if request.prompt != run.question or request.n != 1 or request.temperature != 0.0:
            raise PermanentModelError(
                f"{self.name} is a LlamaIndex query engine: it answered the question once and "
                "cannot answer other prompts or draw samples, so estimators that ask the "
                "answering model (samples, verbal, ptrue, a judge without judge=) do not "
                "apply to it; give a judge another model with judge=...",
                model=self.name,
            )
        tokens = run.tokens if request.logprobs else None
        completion = Completion(text=run.text, tokens=tokens, finish_reason="stop")
        return Generation(model=self.name, completions=(completion,))


class _SourceNodes(RetrieverBase):
    """A demur retriever that returns the source nodes of the engine's answer."""

    name = SOURCE_RETRIEVER
    languages = "any"  # the engine retrieved already; no language fallback applies

    async def aretrieve(self, query: str, k: int) -> tuple[Document, ...]:
        run = _RUN.get()
        if run is None:
            raise RetrievalError(
                "the source nodes are known only inside DemurQueryEngine.query() or aquery()"
            )
        return run.documents[:k]


# --- the wrapper -------------------------------------------------------------------------------


class DemurQueryEngine(BaseQueryEngine):
    """A LlamaIndex query engine whose answers pass through demur's gate.

        gated = DemurQueryEngine(
            engine,
            estimators=[Groundedness(), RetrievalSimilarity()],
            policy=Ladder(0.6, rungs=[Escalate("strong"), Abstain()]),
            models=[LlamaIndexLLM(strong_llm, name="strong")],
        )
        response = gated.query("Who wrote Emma?")     # or: await gated.aquery(...)
        verdict = response.metadata["demur_verdict"]

    Pass either `router`, a demur Router whose policy, estimators, models, prompts, queue,
    budget, retry, calibrator, sampling and tracing are used (its start, retrievers and
    grounding are not), or `policy` with `estimators`, `models` (escalation targets) and any
    other Router option (`queue`, `budget`, `calibrator`, `combine`, `tracer_provider`,
    `abstain_message`, ...). The engine answers first, as the model `name`; `max_passages`
    caps the source nodes passed on. The returned Response carries the accepted answer, or
    the verdict's message (abstention, hand-over), the engine's source nodes, and the Verdict
    under `metadata["demur_verdict"]`. See the module docstring for how it works.
    """

    def __init__(
        self,
        query_engine: BaseQueryEngine,
        router: Router | None = None,
        *,
        estimators: Sequence[Estimator] = (),
        policy: Policy | None = None,
        models: Sequence[Model] | Mapping[str, Model] = (),
        name: str = "query_engine",
        max_passages: int = 64,
        callback_manager: CallbackManager | None = None,
        **router_options: Any,
    ) -> None:
        if not (
            callable(getattr(query_engine, "query", None))
            and callable(getattr(query_engine, "aquery", None))
        ):
            raise ConfigError(
                "DemurQueryEngine wraps a LlamaIndex query engine (with query() and aquery(), "
                f"e.g. index.as_query_engine()), got {type(query_engine).__name__}"
            )
        if not name:
            raise ConfigError("DemurQueryEngine needs a non-empty name for the engine's answers")
        if max_passages < 1:
            raise ConfigError(f"max_passages must be >= 1, got {max_passages}")
        super().__init__(
            callback_manager=callback_manager or getattr(query_engine, "callback_manager", None)
        )
        self.query_engine = query_engine
        self.name = name
        self.router = self._build_router(
            router, estimators, policy, models, max_passages, router_options
        )
        _install_capture()

    def _build_router(
        self,
        template: Router | None,
        estimators: Sequence[Estimator],
        policy: Policy | None,
        models: Sequence[Model] | Mapping[str, Model],
        max_passages: int,
        options: dict[str, Any],
    ) -> Router:
        reserved = sorted(_RESERVED & set(options))
        if reserved:
            raise ConfigError(
                f"DemurQueryEngine sets {', '.join(reserved)} itself: the engine answers "
                "first, from its own source nodes"
            )
        if self.name in (options.get("prompts") or {}):
            raise ConfigError(
                f"prompts were given for '{self.name}', the engine's answers, which no prompt "
                "reaches: the engine answers the question itself"
            )
        engine = _EngineAnswer(self.name)
        retrievers = {SOURCE_RETRIEVER: _SourceNodes()}
        grounding = Rag(SOURCE_RETRIEVER, k=max_passages)
        if template is not None:
            if policy is not None or estimators or models or options:
                raise ConfigError(
                    "pass DemurQueryEngine either router=... or policy=/estimators=/models= "
                    "and Router options, not both"
                )
            self._check_name(template.models)
            # The template's prompts, providers and options carry over; a new option too.
            return template.replace(
                models={self.name: engine, **template.models},
                start=self.name,
                retrievers=retrievers,
                grounding=grounding,
            )
        if policy is None:
            raise ConfigError(
                "DemurQueryEngine needs a policy, e.g. policy=Ladder(0.6, rungs=[Abstain()]), "
                "or a router=Router(...) to take the policy and estimators from"
            )
        names = list(models) if isinstance(models, Mapping) else [m.name for m in models]
        self._check_name(names)
        merged = {self.name: engine, **models} if isinstance(models, Mapping) else [engine, *models]
        return Router(
            merged,
            policy=policy,
            estimators=estimators,
            start=self.name,
            retrievers=retrievers,
            grounding=grounding,
            **options,
        )

    def _check_name(self, models: Iterable[str]) -> None:
        if self.name in models:
            raise ConfigError(
                f"the router already has a model named '{self.name}', the name of the "
                "engine's answers; pass DemurQueryEngine(..., name='...') to rename them"
            )

    # --- LlamaIndex's query engine interface ---------------------------------------------------

    def _get_prompts(self) -> dict[str, Any]:
        return {}

    def _get_prompt_modules(self) -> PromptMixinType:
        if isinstance(self.query_engine, PromptMixin):
            return {"query_engine": self.query_engine}
        return {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        """The wrapped engine's prompts are updated through its own module."""

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """The wrapped engine's retrieval, ungated (there is no answer to gate)."""
        return self.query_engine.retrieve(query_bundle)

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        query = Query.coerce(query_bundle.query_str)
        with self._span() as span:
            captured: list[object] = []
            token = _CAPTURED.set(captured)
            try:
                response = self.query_engine.query(query_bundle)
            finally:
                _CAPTURED.reset(token)
            run = self._run(query, response, captured)
            token_run = _RUN.set(run)
            try:
                verdict = self._route_sync(query)
            finally:
                _RUN.reset(token_run)
            return self._finish(span, response, run, verdict)

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        query = Query.coerce(query_bundle.query_str)
        with self._span() as span:
            captured: list[object] = []
            token = _CAPTURED.set(captured)
            try:
                response = await self.query_engine.aquery(query_bundle)
            finally:
                _CAPTURED.reset(token)
            run = self._run(query, response, captured)
            token_run = _RUN.set(run)
            try:
                verdict = await self.router.aroute(query)
            finally:
                _RUN.reset(token_run)
            return self._finish(span, response, run, verdict)

    # --- helpers -------------------------------------------------------------------------------

    def _run(self, query: Query, response: object, captured: Sequence[object]) -> _EngineRun:
        text, nodes = _read_response(self.query_engine, response)
        return _EngineRun(
            question=query.question,
            text=text,
            documents=documents_from_nodes(nodes),
            tokens=_answer_tokens(text, captured),
        )

    def _route_sync(self, query: Query) -> Verdict:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.router.route(query)
        # Called synchronously from async code (a notebook, say): the router's sync facade
        # needs a thread without a running loop, and the caller's context for its spans.
        context = contextvars.copy_context()
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(context.run, self.router.route, query).result()

    @contextmanager
    def _span(self) -> Iterator[Span]:
        tracer = self.router.tracing.tracer
        with tracer.start_as_current_span(
            "demur.query_engine",
            attributes={"demur.engine": type(self.query_engine).__name__, "demur.model": self.name},
        ) as span:
            yield span

    def _finish(self, span: Span, response: object, run: _EngineRun, verdict: Verdict) -> Response:
        span.set_attribute("demur.source_nodes", len(run.documents))
        span.set_attribute("demur.status", verdict.status)
        if verdict.confidence is not None:
            span.set_attribute("demur.confidence", verdict.confidence)
        nodes = list(response.source_nodes) if isinstance(response, Response) else []
        metadata = dict(response.metadata or {}) if isinstance(response, Response) else {}
        metadata[VERDICT_KEY] = verdict
        return Response(response=verdict.text, source_nodes=nodes, metadata=metadata)

    def __repr__(self) -> str:
        return f"DemurQueryEngine({type(self.query_engine).__name__}, router={self.router!r})"


__all__ = [
    "SOURCE_RETRIEVER",
    "VERDICT_KEY",
    "DemurQueryEngine",
    "UnsupportedResponseError",
    "documents_from_nodes",
]
