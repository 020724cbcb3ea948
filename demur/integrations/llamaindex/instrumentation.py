"""Observe LlamaIndex's LLM calls: score every answer and trace it with OpenTelemetry.

    handle = instrument()                 # on LlamaIndex's root dispatcher
    response = index.as_query_engine(llm=llm).query("Who wrote Emma?")
    handle.detach()                       # or: with instrument(): ...

Two handlers on a LlamaIndex dispatcher (llama_index.core.instrumentation):

- `DemurSpanHandler` mirrors the dispatcher's spans (query, retrieve, synthesize, chat, ...) as
  OpenTelemetry spans named `llama_index {Class.method}`. A span without a LlamaIndex parent
  nests under the caller's active OpenTelemetry span; a span that fails ends with an error
  status and the exception.
- `DemurEventHandler` scores every LLM chat and completion end event with estimators that need
  no model call (MeanTokenLogprob and MinTokenProb by default) and emits a `demur.evaluate`
  span: gen_ai.operation.name, gen_ai.request.model, token usage when known, demur.confidence
  (the scores combined) and demur.score.{estimator}, as routes record them, and one
  gen_ai.evaluation.result event per score through the OpenTelemetry Logs API. An LLM that
  gives no logprobs has its scores recorded as "unavailable". The span's parent, and the
  events' as the GenAI conventions ask, is the mirrored span of the LLM call when a
  DemurSpanHandler is attached; else the caller's active span holds the span, and the span
  the events. A call LlamaIndex reports several times (CustomLLM's `achat` calls
  `chat`, which calls `complete`) is scored once, from the innermost report, which keeps the
  logprobs. A call already running when the handler was attached is not scored: only calls
  whose start it observed are.

Both observe only: they never change what LlamaIndex returns, and a failure inside them is
logged at DEBUG and dropped (LlamaIndex's dispatcher drops handler errors too). Prompt and
answer text never enter the spans.
"""

from __future__ import annotations

import collections
import contextvars
import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.span import BaseSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.dispatcher import Dispatcher
from opentelemetry import trace
from opentelemetry._logs import LoggerProvider
from opentelemetry.trace import Span, Status, StatusCode
from pydantic import PrivateAttr

from demur._version import __version__
from demur.errors import ConfigError
from demur.integrations.llamaindex.llm import to_completion, usage_of
from demur.protocols import Attempt, Estimator
from demur.router.tracing import RouteTracing
from demur.scoring import CombineMethod, ScoreCombiner, score_in_process
from demur.types import Candidate, Query, Score

logger = logging.getLogger("demur.llamaindex")

# Start events remembered while their calls run; a call whose end never comes is forgotten
# once this many are pending.
_MAX_PENDING = 1024


@dataclass(frozen=True)
class LLMEvaluation:
    """The scores of one LLM call, as handed to `on_evaluation`.

    `span_id` is LlamaIndex's span of the call; `trace_id` the OpenTelemetry trace it joined.
    """

    model: str
    operation: str
    text: str
    scores: tuple[Score, ...]
    confidence: float | None
    span_id: str | None
    trace_id: str | None


# --- spans ---------------------------------------------------------------------------------------


class MirroredSpan(BaseSpan):
    """A LlamaIndex span and the OpenTelemetry span that mirrors it."""

    otel: Any = None


class DemurSpanHandler(BaseSpanHandler[MirroredSpan]):
    """Mirrors LlamaIndex dispatcher spans as OpenTelemetry spans (`llama_index {Class.method}`)."""

    _tracer: trace.Tracer = PrivateAttr()

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        super().__init__(open_spans={}, completed_spans=[], dropped_spans=[], current_span_ids={})
        self._tracer = trace.get_tracer("demur", __version__, tracer_provider)

    @classmethod
    def class_name(cls) -> str:
        return "DemurSpanHandler"

    def otel_span(self, span_id: str | None) -> Span | None:
        """The OpenTelemetry span mirroring LlamaIndex's span `span_id`, while it is open."""
        mirrored = self.open_spans.get(span_id) if span_id else None
        return mirrored.otel if mirrored is not None else None

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> MirroredSpan | None:
        try:
            parent = self.otel_span(parent_span_id)
            # Without a LlamaIndex parent the current context is the caller's: nest under it.
            context = trace.set_span_in_context(parent) if parent is not None else None
            name = id_.split("-", 1)[0]  # "Class.method-<uuid4>"
            otel = self._tracer.start_span(
                f"llama_index {name}",
                context=context,
                attributes={"llama_index.span_id": id_, "llama_index.operation": name},
            )
            return MirroredSpan(id_=id_, parent_id=parent_span_id, tags=tags or {}, otel=otel)
        except Exception:
            logger.debug("could not mirror LlamaIndex span %s", id_, exc_info=True)
            return None

    def prepare_to_exit_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> MirroredSpan | None:
        mirrored = self.open_spans.get(id_)
        if mirrored is not None:
            mirrored.otel.end()
        return mirrored

    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> MirroredSpan | None:
        mirrored = self.open_spans.get(id_)
        if mirrored is not None:
            otel: Span = mirrored.otel
            if err is not None:
                otel.record_exception(err)
                otel.set_attribute("error.type", type(err).__qualname__)
            otel.set_status(Status(StatusCode.ERROR, str(err) if err is not None else "dropped"))
            otel.end()
        return mirrored


# --- events --------------------------------------------------------------------------------------

# The LLM call open in this context. LlamaIndex reports one call several times when a method
# calls another (CustomLLM: achat -> chat -> complete); the innermost is scored, as it keeps the
# logprobs, and the calls around it are skipped.
_OPEN_CALL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "demur_llamaindex_open_call", default=None
)


def _default_estimators() -> tuple[Estimator, ...]:
    from demur.estimators.logprob import MeanTokenLogprob, MinTokenProb

    return (MeanTokenLogprob(), MinTokenProb())


def _check_estimators(estimators: Sequence[Estimator]) -> tuple[Estimator, ...]:
    for estimator in estimators:
        if not estimator.in_process or estimator.needs.samples:
            raise ConfigError(
                f"DemurEventHandler scores inside the LLM call and cannot make model calls; "
                f"estimator '{estimator.name}' ({type(estimator).__name__}) asks a model or "
                "needs samples. Use in-process estimators (in_process = True, e.g. "
                "MeanTokenLogprob, MinTokenProb, MeanTokenEntropy, GreedyNLL)."
            )
    names = [e.name for e in estimators]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"estimator names must be unique; repeated: {', '.join(repeated)}")
    return tuple(estimators)


def _model_name(model_dict: dict[str, Any]) -> str:
    for key in ("model", "model_name", "class_name"):
        value = model_dict.get(key)
        if isinstance(value, str) and value:
            return value
    return "llm"


def _question(event: BaseEvent) -> str:
    """The text the LLM answered: the last user message, or the prompt."""
    if isinstance(event, LLMChatEndEvent):
        for message in reversed(event.messages):
            if message.role.value == "user" and message.content:
                return message.content
        return next((m.content for m in reversed(event.messages) if m.content), "") or ""
    return getattr(event, "prompt", "") or ""


class DemurEventHandler(BaseEventHandler):
    """Scores LlamaIndex LLM chat and completion end events and emits `demur.evaluate` spans.

    `estimators` must run in-process (the default: MeanTokenLogprob, MinTokenProb); `combine`
    says how their confidences combine. `span_handler` (a DemurSpanHandler) gives each
    evaluation the mirrored span of its LLM call as parent. `on_evaluation` receives every
    LLMEvaluation; errors it raises are logged and dropped.
    """

    _estimators: tuple[Estimator, ...] = PrivateAttr()
    _combiner: ScoreCombiner = PrivateAttr()
    _tracing: RouteTracing = PrivateAttr()
    _span_handler: DemurSpanHandler | None = PrivateAttr(default=None)
    _on_evaluation: Callable[[LLMEvaluation], object] | None = PrivateAttr(default=None)
    _models: collections.OrderedDict[str, str] = PrivateAttr()
    _covered: set[str] = PrivateAttr()
    _nested: dict[str, str] = PrivateAttr()
    _lock: threading.Lock = PrivateAttr()

    def __init__(
        self,
        estimators: Sequence[Estimator] | None = None,
        *,
        combine: CombineMethod | ScoreCombiner = "mean",
        tracer_provider: trace.TracerProvider | None = None,
        logger_provider: LoggerProvider | None = None,
        span_handler: DemurSpanHandler | None = None,
        on_evaluation: Callable[[LLMEvaluation], object] | None = None,
    ) -> None:
        super().__init__()
        chosen = _default_estimators() if estimators is None else tuple(estimators)
        self._estimators = _check_estimators(chosen)
        self._combiner = combine if isinstance(combine, ScoreCombiner) else ScoreCombiner(combine)
        self._tracing = RouteTracing(
            tracer_provider=tracer_provider, logger_provider=logger_provider
        )
        self._span_handler = span_handler
        self._on_evaluation = on_evaluation
        self._models = collections.OrderedDict()
        self._covered = set()
        self._nested = {}
        self._lock = threading.Lock()

    @classmethod
    def class_name(cls) -> str:
        return "DemurEventHandler"

    @property
    def estimators(self) -> tuple[Estimator, ...]:
        return self._estimators

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        try:
            if isinstance(event, LLMChatStartEvent | LLMCompletionStartEvent):
                self._started(event)
            elif isinstance(event, LLMChatEndEvent | LLMCompletionEndEvent):
                self._ended(event)
        except Exception:
            logger.debug("could not score LlamaIndex event %s", event.class_name(), exc_info=True)

    def _started(self, event: LLMChatStartEvent | LLMCompletionStartEvent) -> None:
        key = event.span_id or event.id_
        parent = _OPEN_CALL.get()
        with self._lock:
            self._models[key] = _model_name(event.model_dict)
            while len(self._models) > _MAX_PENDING:
                self._models.popitem(last=False)
            if parent is not None and parent != key:
                self._nested[key] = parent
            # Calls that failed never end; forget them rather than grow without bound.
            while len(self._nested) > _MAX_PENDING:
                del self._nested[next(iter(self._nested))]
            if len(self._covered) > _MAX_PENDING:
                self._covered.clear()
        _OPEN_CALL.set(key)

    def _ended(self, event: LLMChatEndEvent | LLMCompletionEndEvent) -> None:
        key = event.span_id or event.id_
        with self._lock:
            model = self._models.pop(key, None)
            parent = self._nested.pop(key, None)
            if parent is not None:
                self._covered.add(parent)  # the enclosing call is this one, scored here
            if key in self._covered:
                self._covered.discard(key)
                skip = True
            else:
                # A call whose start this handler never saw began before it was attached (or
                # was forgotten among too many pending calls): it is not this handler's to score.
                skip = model is None or event.response is None
        _OPEN_CALL.set(parent)
        if not skip and model is not None:
            self._evaluate(event, model)

    def _evaluate(self, event: LLMChatEndEvent | LLMCompletionEndEvent, model: str) -> None:
        operation = "chat" if isinstance(event, LLMChatEndEvent) else "text_completion"
        try:
            completion = to_completion(event.response)
        except TypeError as exc:
            text = ""
            scores = tuple(
                Score(estimator=e.name, status="unavailable", detail=str(exc))
                for e in self._estimators
            )
        else:
            text = completion.text.strip()
            candidate = Candidate(text=text, model=model, tokens=completion.tokens)
            question = Query(_question(event).strip() or "(none)")
            attempt = Attempt(query=question, candidate=candidate)
            scores = tuple(score_in_process(e, attempt) for e in self._estimators)
        confidence = self._combiner.combine(scores)
        trace_id = self._emit(event, model, operation, scores, confidence)
        if self._on_evaluation is not None:
            evaluation = LLMEvaluation(
                model=model,
                operation=operation,
                text=text,
                scores=scores,
                confidence=confidence,
                span_id=event.span_id,
                trace_id=trace_id,
            )
            try:
                self._on_evaluation(evaluation)
            except Exception:
                logger.debug("on_evaluation raised", exc_info=True)

    def _emit(
        self,
        event: LLMChatEndEvent | LLMCompletionEndEvent,
        model: str,
        operation: str,
        scores: tuple[Score, ...],
        confidence: float | None,
    ) -> str | None:
        parent = self._span_handler.otel_span(event.span_id) if self._span_handler else None
        context = trace.set_span_in_context(parent) if parent is not None else None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": "llama_index",
            "gen_ai.request.model": model,
            "demur.scores": len(scores),
        }
        if event.span_id:
            attributes["llama_index.span_id"] = event.span_id
        usage = usage_of(event.response)
        if usage.input_tokens or usage.output_tokens:
            attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        if confidence is not None:
            attributes["demur.confidence"] = confidence
        span = self._tracing.tracer.start_span(
            f"demur.evaluate {model}", context=context, attributes=attributes
        )
        evaluated = parent.get_span_context() if parent is not None else None
        for score in scores:
            self._tracing.record_score(span, score, evaluated)
        span.end()
        span_context = span.get_span_context()
        return format(span_context.trace_id, "032x") if span_context.is_valid else None


# --- attaching -----------------------------------------------------------------------------------


class Instrumentation:
    """Handlers attached to a dispatcher by `instrument`; `detach()` removes them."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        event_handler: DemurEventHandler,
        span_handler: DemurSpanHandler | None,
    ) -> None:
        self.dispatcher = dispatcher
        self.event_handler = event_handler
        self.span_handler = span_handler

    def detach(self) -> None:
        """Remove the handlers from the dispatcher; spans still open end as they exit."""
        d = self.dispatcher
        d.event_handlers = [h for h in d.event_handlers if h is not self.event_handler]
        if self.span_handler is not None:
            d.span_handlers = [h for h in d.span_handlers if h is not self.span_handler]

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


def instrument(
    estimators: Sequence[Estimator] | None = None,
    *,
    dispatcher: Dispatcher | None = None,
    spans: bool = True,
    combine: CombineMethod | ScoreCombiner = "mean",
    tracer_provider: trace.TracerProvider | None = None,
    logger_provider: LoggerProvider | None = None,
    on_evaluation: Callable[[LLMEvaluation], object] | None = None,
) -> Instrumentation:
    """Attach a DemurEventHandler (and, with `spans`, a DemurSpanHandler) to `dispatcher`.

    The root dispatcher by default, which every LlamaIndex component reports to. Pass
    `spans=False` when another tool (OpenInference, say) already traces LlamaIndex's spans.
    """
    target = dispatcher if dispatcher is not None else get_dispatcher()
    span_handler = DemurSpanHandler(tracer_provider=tracer_provider) if spans else None
    event_handler = DemurEventHandler(
        estimators,
        combine=combine,
        tracer_provider=tracer_provider,
        logger_provider=logger_provider,
        span_handler=span_handler,
        on_evaluation=on_evaluation,
    )
    if span_handler is not None:
        target.add_span_handler(span_handler)
    target.add_event_handler(event_handler)
    return Instrumentation(target, event_handler, span_handler)


__all__ = [
    "DemurEventHandler",
    "DemurSpanHandler",
    "Instrumentation",
    "LLMEvaluation",
    "MirroredSpan",
    "instrument",
]
