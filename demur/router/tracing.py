"""Spans, events and metrics for routes, written against the OpenTelemetry API only.

demur never installs an SDK here: a host application's tracer, meter and logger providers are
honoured, and without one every call is a cheap no-op. `demur.telemetry` sets up an SDK for
the CLI and the server.

Spans go where they inform: the route, each attempt, each branch of an attempt that compares
answers, each retrieval and model call, and each estimator that calls a model itself. The rest
is recorded as attributes and events:

    demur.route                       demur.policy, demur.action, demur.confidence, demur.cost ...
    │                                 one `demur.decision` event per step (action, reason, ...)
    ├── demur.attempt                 demur.step, demur.model, demur.confidence,
    │   │                             demur.score.{estimator} (and .status when not ok)
    │   ├── retrieval                 GenAI retrieval conventions (gen_ai.data_source.id, ...)
    │   ├── chat {model id}           GenAI client span (gen_ai.request.model is the model's id;
    │   │                             the router's name for it is demur.model)
    │   └── demur.estimate {name}     only for an estimator that calls a model
    ├── demur.attempt                 with several branches (Confident RAG, situated), one
    │   ├── demur.branch {name}       span per branch holds its retrieval, calls and scores
    │   └── ...
    └── ...

Every score is also a `gen_ai.evaluation.result` event, emitted through the OpenTelemetry
Logs API as the GenAI semantic conventions define it: parented to the model call that wrote
the answer, with `gen_ai.response.id` when the model gave one.

A route whose root span is not recording (no SDK installed, or sampled out) makes no child
spans and no evaluation events: nothing would keep them, and skipping them is most of what
tracing costs. Metrics are recorded either way.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable
from types import TracebackType
from typing import Any

from opentelemetry import _logs, context, metrics, trace
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)

from demur._version import __version__
from demur.router._exceptions import describe_exception, mark_failed, record_exception
from demur.types import (
    Decision,
    Generation,
    GenerationRequest,
    Retrieval,
    Score,
    Step,
    Verdict,
)

Redactor = Callable[[str], str]

# The SDK's default histogram buckets (0, 5, 10, 25, ... 10000) suit milliseconds: every
# confidence would land in one bucket, and most routes in the first two.
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
# The GenAI semantic conventions' advice for gen_ai.client.operation.duration.
DURATION_BUCKETS_S = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
)  # fmt: skip
EVALUATION_EVENT = "gen_ai.evaluation.result"

# Whether the route running in this context records spans; set by RouteTracing.route.
_RECORDING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "demur_route_recording", default=True
)


class SpanScope:
    """A started span made current for a `with` block, then ended.

    The exception leaving the block is recorded on the span with an ERROR status and
    `error.type`, as the GenAI conventions ask; its message only when `tracing` captures
    content. A small class rather than the API's generator context managers: routes open
    several of these, and they are on every route's path.
    """

    __slots__ = ("_span", "_token", "_tracing")

    def __init__(self, span: Span, tracing: RouteTracing | None = None) -> None:
        self._span = span
        self._token: object = None
        self._tracing = tracing

    def __enter__(self) -> Span:
        self._token = context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span = self._span
        context.detach(self._token)  # type: ignore[arg-type]
        if isinstance(exc, Exception) and span.is_recording():
            tracing = self._tracing
            if tracing is None:
                mark_failed(span, exc, False, str)
            else:
                mark_failed(span, exc, tracing.capture_content, tracing.redact)
        span.end()


class _Untraced:
    """The scope of a span nobody records: enters to the invalid span and does nothing."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


UNTRACED = _Untraced()


class RouteScope(SpanScope):
    """The route's root span; while it is current, child spans are made only if it records."""

    __slots__ = ("_recording",)

    def __enter__(self) -> Span:
        self._recording = _RECORDING.set(self._span.is_recording())
        return super().__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, traceback)
        _RECORDING.reset(self._recording)


def recording() -> bool:
    """Whether the route running in this context records its spans."""
    return _RECORDING.get()


class RouteTracing:
    """Creates demur's spans and evaluation events, and records its metrics.

    Prompt and answer text enter spans only when `capture_content` is True, and then pass
    through `redact` first; so do exceptions' messages, which can quote them.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        logger_provider: _logs.LoggerProvider | None = None,
        capture_content: bool = False,
        redact: Redactor | None = None,
    ) -> None:
        self.tracer = trace.get_tracer("demur", __version__, tracer_provider)
        self.logger = _logs.get_logger("demur", __version__, logger_provider=logger_provider)
        meter = metrics.get_meter("demur", __version__, meter_provider)
        self.capture_content = capture_content
        self.redact: Redactor = redact or (lambda text: text)
        self.decisions = meter.create_counter(
            "demur.decisions", unit="{decision}", description="Routing decisions by action"
        )
        self.confidence = meter.create_histogram(
            "demur.confidence",
            unit="1",
            description="Confidence of each step's answer",
            explicit_bucket_boundaries_advisory=CONFIDENCE_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "demur.route.duration",
            unit="s",
            description="Wall time of whole routes",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.cost = meter.create_counter(
            "demur.route.cost", unit="{currency}", description="Model cost spent by routes"
        )

    # --- errors ------------------------------------------------------------------------------

    def describe(self, exc: BaseException) -> str:
        """`exc` for a log line: its message (redacted) only when content is captured."""
        return describe_exception(exc, self.capture_content, self.redact)

    def record_error(self, span: Span, exc: BaseException) -> None:
        """An `exception` event on `span`: its message (redacted) only as captured content."""
        record_exception(span, exc, self.capture_content, self.redact)

    # --- spans -------------------------------------------------------------------------------

    def route(self, policy: str) -> RouteScope:
        span = self.tracer.start_span(
            "demur.route", kind=SpanKind.INTERNAL, attributes={"demur.policy": policy}
        )
        return RouteScope(span, self)

    def finish_route(self, span: Span, verdict: Verdict, policy: str) -> None:
        if span.is_recording():
            attributes: dict[str, Any] = {
                "demur.action": verdict.action,
                "demur.status": verdict.status,
                "demur.steps": len(verdict.steps),
                "demur.cost": verdict.cost,
            }
            if verdict.confidence is not None:
                attributes["demur.confidence"] = verdict.confidence
            if verdict.model is not None:
                attributes["demur.model"] = verdict.model
            if verdict.ticket_id is not None:
                attributes["demur.ticket_id"] = verdict.ticket_id
            span.set_attributes(attributes)
        outcome = {"demur.policy": policy, "demur.action": verdict.action}
        self.duration.record(verdict.latency_s, outcome)
        if verdict.cost:
            self.cost.add(verdict.cost, outcome)

    def attempt(self, index: int, model: str) -> SpanScope | _Untraced:
        if not _RECORDING.get():
            return UNTRACED
        span = self.tracer.start_span(
            "demur.attempt", attributes={"demur.step": index, "demur.model": model}
        )
        return SpanScope(span, self)

    def model_call(
        self, model: str, model_id: str, provider: str, request: GenerationRequest
    ) -> SpanScope | _Untraced:
        """A GenAI client span: `model` is the router's name for it, `model_id` the model's own."""
        if not _RECORDING.get():
            return UNTRACED
        operation = "chat" if request.messages is not None else "text_completion"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model_id,
            "gen_ai.request.max_tokens": request.max_tokens,
            "gen_ai.request.temperature": request.temperature,
            "demur.model": model,
        }
        if request.n != 1:
            attributes["gen_ai.request.choice.count"] = request.n
        if request.seed is not None:
            attributes["gen_ai.request.seed"] = request.seed
        if self.capture_content:
            attributes["gen_ai.input.messages"] = self._input_messages(request)
        span = self.tracer.start_span(
            f"{operation} {model_id}", kind=SpanKind.CLIENT, attributes=attributes
        )
        return SpanScope(span, self)

    def record_generation(self, span: Span, generation: Generation, model_id: str) -> None:
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {
            "gen_ai.response.model": generation.response_model or model_id,
            "gen_ai.usage.input_tokens": generation.usage.input_tokens,
            "gen_ai.usage.output_tokens": generation.usage.output_tokens,
            "gen_ai.response.finish_reasons": [
                c.finish_reason or "unknown" for c in generation.completions
            ],
        }
        if generation.response_id is not None:
            attributes["gen_ai.response.id"] = generation.response_id
        if self.capture_content:
            attributes["gen_ai.output.messages"] = json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": self.redact(c.text)}],
                        "finish_reason": c.finish_reason or "unknown",
                    }
                    for c in generation.completions
                ]
            )
        span.set_attributes(attributes)

    def _input_messages(self, request: GenerationRequest) -> str:
        if request.messages is not None:
            messages = [
                {"role": m.role, "parts": [{"type": "text", "content": self.redact(m.content)}]}
                for m in request.messages
            ]
        else:
            text = self.redact(request.prompt or "")
            messages = [{"role": "user", "parts": [{"type": "text", "content": text}]}]
        return json.dumps(messages)

    def branch(self, name: str) -> SpanScope | _Untraced:
        """One branch of an attempt that compares several answers."""
        if not _RECORDING.get():
            return UNTRACED
        span = self.tracer.start_span(f"demur.branch {name}", attributes={"demur.branch": name})
        return SpanScope(span, self)

    def retrieval(self, retriever: str, k: int, query: str) -> SpanScope | _Untraced:
        """A retrieval span after the GenAI retrieval conventions."""
        if not _RECORDING.get():
            return UNTRACED
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "retrieval",
            "gen_ai.data_source.id": retriever,
            "gen_ai.retrieval.top_k": k,
        }
        if self.capture_content:
            attributes["gen_ai.retrieval.query.text"] = self.redact(query)
        span = self.tracer.start_span("retrieval", kind=SpanKind.INTERNAL, attributes=attributes)
        return SpanScope(span, self)

    def record_retrieval(self, span: Span, retrieval: Retrieval) -> None:
        if not span.is_recording():
            return
        span.set_attribute("gen_ai.data_source.id", retrieval.retriever)
        span.set_attribute(
            "gen_ai.retrieval.documents",
            json.dumps([{"id": d.id, "score": d.score} for d in retrieval.documents]),
        )
        if retrieval.cutoff is not None:
            span.set_attribute("demur.retrieval.cutoff", retrieval.cutoff)
        if retrieval.rewritten:
            span.set_attribute("demur.retrieval.rewritten", True)
        if retrieval.note:
            span.set_attribute("demur.retrieval.note", retrieval.note)
        if retrieval.error is not None:
            span.set_attribute("error.type", retrieval.error.split(":", 1)[0])
            span.set_status(Status(StatusCode.ERROR, retrieval.error))

    def estimator(self, name: str) -> SpanScope | _Untraced:
        """The span of an estimator that calls a model: its calls nest under it."""
        if not _RECORDING.get():
            return UNTRACED
        span = self.tracer.start_span(
            f"demur.estimate {name}", attributes={"demur.estimator": name}
        )
        return SpanScope(span, self)

    # --- scores and decisions ----------------------------------------------------------------

    def record_score(
        self,
        span: Span,
        score: Score,
        evaluated: SpanContext | None = None,
        response_id: str | None = None,
    ) -> None:
        """Put `score` on `span` and emit its `gen_ai.evaluation.result` event.

        The event's parent is `evaluated`, the model call that wrote the answer, or else
        `span`. Nothing is recorded when `span` does not record.
        """
        if not span.is_recording():
            return
        name = score.estimator
        if score.confidence is not None:
            span.set_attribute(f"demur.score.{name}", score.confidence)
        if score.status != "ok":
            span.set_attribute(f"demur.score.{name}.status", score.status)
        event: dict[str, Any] = {"gen_ai.evaluation.name": name}
        if score.confidence is not None:
            event["gen_ai.evaluation.score.value"] = score.confidence
        if score.status != "ok":
            event["gen_ai.evaluation.score.label"] = score.status
            if score.detail:
                event["gen_ai.evaluation.explanation"] = score.detail
        if score.status in ("failed", "timeout"):
            event["error.type"] = score.status
        if response_id is not None:
            event["gen_ai.response.id"] = response_id
        parent = NonRecordingSpan(evaluated) if evaluated is not None else span
        self.logger.emit(
            event_name=EVALUATION_EVENT,
            attributes=event,
            context=trace.set_span_in_context(parent),
        )

    def finish_attempt(self, span: Span, step: Step) -> None:
        if step.confidence is not None:
            self.confidence.record(step.confidence, {"demur.model": step.model})
        if not span.is_recording():
            return
        if step.confidence is not None:
            span.set_attribute("demur.confidence", step.confidence)
        if step.cost:
            span.set_attribute("demur.cost", step.cost)
        if step.retries:
            span.set_attribute("demur.retries", step.retries)
        if step.error_type is not None:
            span.set_attribute("error.type", step.error_type)
            span.set_status(Status(StatusCode.ERROR, step.error or step.error_type))

    def decision(self, route: Span, policy: str, step: Step, decision: Decision) -> None:
        """A `demur.decision` event on the route's span, and the decisions counter."""
        action = decision.action.kind
        self.decisions.add(1, {"demur.action": action, "demur.policy": policy})
        if not route.is_recording():
            return
        attributes: dict[str, Any] = {
            "demur.step": step.index,
            "demur.model": step.model,
            "demur.action": action,
            "demur.reason": decision.reason,
        }
        if step.confidence is not None:
            attributes["demur.confidence"] = step.confidence
        if decision.threshold is not None:
            attributes["demur.threshold"] = decision.threshold
        if action == "escalate":
            attributes["demur.escalate.model"] = decision.action.model  # type: ignore[union-attr]
        if step.branch is not None:
            attributes["demur.branch"] = step.branch
        route.add_event("demur.decision", attributes)


def span_context_of(span: Span) -> SpanContext | None:
    """The span's context when it is a real one, else None."""
    span_context = span.get_span_context()
    return span_context if span_context.is_valid else None
