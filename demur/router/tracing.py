"""Spans, events and metrics for routes, written against the OpenTelemetry API only.

demur never installs an SDK here: a host application's tracer and meter providers are honoured,
and without one every call is a cheap no-op. `demur.telemetry` sets up an SDK for the CLI and
the server.

Span tree of one route:

    demur.route                       demur.policy, demur.action, demur.confidence, demur.cost ...
    ├── demur.attempt                 demur.step, demur.model; gen_ai.evaluation.result events
    │   ├── retrieval                 GenAI retrieval conventions (gen_ai.data_source.id, ...)
    │   ├── chat {model}              GenAI semantic conventions (gen_ai.*)
    │   ├── demur.estimate {name}     demur.estimator, demur.score.status
    │   └── ...
    ├── demur.attempt                 with several branches (Confident RAG, situated), one
    │   ├── demur.branch {name}       span per branch holds its retrieval, calls and estimates
    │   └── ...
    ├── demur.decide                  demur.action, demur.confidence, demur.threshold, demur.reason
    └── ...
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from demur._version import __version__
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


class RouteTracing:
    """Creates demur's spans and records its metrics.

    Prompt and answer text enter spans only when `capture_content` is True, and then pass
    through `redact` first.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_content: bool = False,
        redact: Redactor | None = None,
    ) -> None:
        self.tracer = trace.get_tracer("demur", __version__, tracer_provider)
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

    @contextmanager
    def route(self, policy: str) -> Iterator[Span]:
        with (
            self.tracer.start_as_current_span(
                "demur.route", kind=SpanKind.INTERNAL, attributes={"demur.policy": policy}
            ) as span,
            _error_type(span),
        ):
            yield span

    def finish_route(self, span: Span, verdict: Verdict, policy: str) -> None:
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

    @contextmanager
    def attempt(self, index: int, model: str) -> Iterator[Span]:
        with self.tracer.start_as_current_span(
            "demur.attempt", attributes={"demur.step": index, "demur.model": model}
        ) as span:
            yield span

    @contextmanager
    def model_call(self, model: str, provider: str, request: GenerationRequest) -> Iterator[Span]:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat" if request.messages is not None else "text_completion",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": request.max_tokens,
            "gen_ai.request.temperature": request.temperature,
        }
        if request.n != 1:
            attributes["gen_ai.request.choice.count"] = request.n
        if request.seed is not None:
            attributes["gen_ai.request.seed"] = request.seed
        if self.capture_content:
            attributes["gen_ai.input.messages"] = self._input_messages(request)
        operation = attributes["gen_ai.operation.name"]
        with (
            self.tracer.start_as_current_span(
                f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attributes
            ) as span,
            _error_type(span),
        ):
            yield span

    def record_generation(self, span: Span, generation: Generation) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.response.model": generation.model,
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

    @contextmanager
    def branch(self, name: str) -> Iterator[Span]:
        """One branch of an attempt that compares several answers."""
        with self.tracer.start_as_current_span(
            f"demur.branch {name}", attributes={"demur.branch": name}
        ) as span:
            yield span

    @contextmanager
    def retrieval(self, retriever: str, k: int, query: str) -> Iterator[Span]:
        """A retrieval span after the GenAI retrieval conventions."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "retrieval",
            "gen_ai.data_source.id": retriever,
            "gen_ai.retrieval.top_k": k,
        }
        if self.capture_content:
            attributes["gen_ai.retrieval.query.text"] = self.redact(query)
        with self.tracer.start_as_current_span(
            "retrieval", kind=SpanKind.INTERNAL, attributes=attributes
        ) as span:
            yield span

    def record_retrieval(self, span: Span, retrieval: Retrieval) -> None:
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

    @contextmanager
    def estimator(self, name: str, *, current: bool = True) -> Iterator[Span]:
        """An estimator's span; `current=False` skips making it the active span, which only
        matters when the estimator makes calls of its own (a judge model, say)."""
        span_name, attributes = f"demur.estimate {name}", {"demur.estimator": name}
        if current:
            with self.tracer.start_as_current_span(span_name, attributes=attributes) as span:
                yield span
            return
        span = self.tracer.start_span(span_name, attributes=attributes)
        try:
            yield span
        finally:
            span.end()

    def record_score(self, attempt_span: Span, estimator_span: Span, score: Score) -> None:
        estimator_span.set_attribute("demur.score.status", score.status)
        if score.status in ("failed", "timeout"):
            estimator_span.set_status(Status(StatusCode.ERROR, score.detail or score.status))
        event: dict[str, Any] = {"gen_ai.evaluation.name": score.estimator}
        if score.confidence is not None:
            event["gen_ai.evaluation.score.value"] = score.confidence
            estimator_span.set_attribute("demur.confidence", score.confidence)
        if score.value is not None:
            estimator_span.set_attribute("demur.score.value", score.value)
        if score.status != "ok":
            event["gen_ai.evaluation.score.label"] = score.status
            if score.detail:
                event["gen_ai.evaluation.explanation"] = score.detail
        if score.status in ("failed", "timeout"):
            event["error.type"] = score.status
        attempt_span.add_event("gen_ai.evaluation.result", event)

    def finish_attempt(self, span: Span, step: Step) -> None:
        if step.confidence is not None:
            span.set_attribute("demur.confidence", step.confidence)
            self.confidence.record(step.confidence, {"demur.model": step.model})
        if step.cost:
            span.set_attribute("demur.cost", step.cost)
        if step.retries:
            span.set_attribute("demur.retries", step.retries)
        if step.error_type is not None:
            span.set_attribute("error.type", step.error_type)
            span.set_status(Status(StatusCode.ERROR, step.error or step.error_type))

    def decision(self, policy: str, step: Step, decision: Decision) -> None:
        action = decision.action.kind
        attributes: dict[str, Any] = {
            "demur.policy": policy,
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
        self.tracer.start_span("demur.decide", attributes=attributes).end()
        self.decisions.add(1, {"demur.action": action, "demur.policy": policy})


@contextmanager
def _error_type(span: Span) -> Iterator[None]:
    """Set `error.type` to the exception's class name when the block fails.

    The span itself records the exception and the ERROR status; the semantic conventions also
    ask for `error.type`, which backends group failures by.
    """
    try:
        yield
    except Exception as exc:
        span.set_attribute("error.type", type(exc).__qualname__)
        raise
