"""The spans, events and metrics a route emits, checked with the real OpenTelemetry SDK."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from demur import (
    Abstain,
    Attempt,
    Decision,
    Escalate,
    Ladder,
    MeanTokenLogprob,
    MinTokenProb,
    ModelTimeoutError,
    Needs,
    Price,
    Reply,
    RetryPolicy,
    RouteError,
    Router,
    RouteState,
    Score,
    ScriptedModel,
    Verdict,
)
from demur.bases import EstimatorBase

QUESTION = "Who wrote the novel Emma?"
WEAK_ANSWER = "Charlotte Bronte perhaps"
STRONG_ANSWER = "Jane Austen"


@dataclass
class Otel:
    """SDK tracer, meter and logger providers whose output the test can read."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    logs: InMemoryLogRecordExporter

    @property
    def providers(self) -> dict[str, Any]:
        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
            "logger_provider": self.logger_provider,
        }

    def evaluations(self) -> list[ReadableLogRecord]:
        return [
            r
            for r in self.logs.get_finished_logs()
            if r.log_record.event_name == "gen_ai.evaluation.result"
        ]

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one {name!r} span, got {[s.name for s in found]}"
        return found[0]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for m in scope.metrics
            if m.name == metric
            for point in m.data.data_points
        ]


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    yield Otel(tracer_provider, meter_provider, logger_provider, spans, reader, logs)
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()


def escalating_router(otel: Otel, **options: Any) -> Router:
    """weak answers unsure (p=0.3) and escalates to strong, which answers sure (p=0.95)."""
    weak = ScriptedModel("weak", [Reply.confident(WEAK_ANSWER, 0.3)])
    strong = ScriptedModel(
        "strong",
        [Reply.confident(STRONG_ANSWER, 0.95)],
        price=Price(input_per_1k=1.0, output_per_1k=2.0),
    )
    options.setdefault("estimators", [MeanTokenLogprob(), MinTokenProb()])
    return Router(
        [weak, strong],
        policy=Ladder(threshold=0.6, rungs=[Escalate("strong"), Abstain()]),
        **otel.providers,
        **options,
    )


def single_router(otel: Otel, estimators: Sequence[Any], **options: Any) -> Router:
    model = ScriptedModel("only", [Reply.confident(STRONG_ANSWER, 0.9)])
    return Router(
        [model],
        policy=Ladder(threshold=0.5),
        estimators=estimators,
        **otel.providers,
        **options,
    )


def attrs(item: ReadableSpan | Event) -> dict[str, Any]:
    """A span's or an event's attributes as a plain dict."""
    return dict(item.attributes or {})


def all_text(span: ReadableSpan) -> list[str]:
    """Every attribute value of a span and of its events, as strings."""
    values: list[Any] = [span.name, *attrs(span).values()]
    for event in span.events:
        values += [event.name, *attrs(event).values()]
    return [json.dumps(v) if isinstance(v, tuple | list) else str(v) for v in values]


# --- the span tree ---------------------------------------------------------------------------


def test_escalating_route_builds_one_trace_with_the_documented_span_tree(otel: Otel) -> None:
    verdict = escalating_router(otel).route(QUESTION)
    assert verdict.status == "answered" and verdict.answer == STRONG_ANSWER

    root = otel.one("demur.route")
    assert root.parent is None
    attributes = attrs(root)
    assert attributes["demur.policy"] == "ladder"
    assert attributes["demur.action"] == "accept"
    assert attributes["demur.status"] == "answered"
    assert attributes["demur.steps"] == 2
    assert attributes["demur.model"] == "strong"
    assert attributes["demur.confidence"] == pytest.approx(verdict.confidence)
    assert attributes["demur.cost"] == pytest.approx(verdict.cost)
    assert verdict.cost > 0

    trace_id = root.context.trace_id
    assert {s.context.trace_id for s in otel.finished()} == {trace_id}
    assert verdict.trace_id == format(trace_id, "032x")

    attempts = sorted(otel.named("demur.attempt"), key=lambda s: attrs(s)["demur.step"])
    assert [attrs(a).get("demur.model") for a in attempts] == ["weak", "strong"]
    assert [attrs(a).get("demur.step") for a in attempts] == [0, 1]
    for attempt in attempts:
        assert attempt.parent is not None and attempt.parent.span_id == root.context.span_id
        children = [
            s for s in otel.finished() if s.parent and s.parent.span_id == attempt.context.span_id
        ]
        model = attrs(attempt)["demur.model"]
        # Estimators that compute in-process are attributes and events, not spans.
        assert [s.name for s in children] == [f"chat {model}"]


def test_model_call_span_follows_the_genai_conventions(otel: Otel) -> None:
    escalating_router(otel).route(QUESTION)
    chat = otel.one("chat strong")
    assert chat.kind is SpanKind.CLIENT
    attributes = attrs(chat)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "ScriptedModel"
    assert attributes["gen_ai.request.model"] == "strong"
    assert attributes["gen_ai.response.model"] == "strong"
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] == len(STRONG_ANSWER.split())
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.request.max_tokens"] == 64


def test_scores_are_attempt_attributes_and_evaluation_events_of_the_model_call(
    otel: Otel,
) -> None:
    escalating_router(otel).route(QUESTION)
    assert not [s for s in otel.finished() if s.name.startswith("demur.estimate")]
    weak = next(s for s in otel.named("demur.attempt") if attrs(s)["demur.step"] == 0)
    assert attrs(weak)["demur.score.mean_logprob"] == pytest.approx(0.3)
    assert attrs(weak)["demur.score.min_prob"] == pytest.approx(0.3)
    assert "demur.score.mean_logprob.status" not in attrs(weak)
    assert attrs(weak)["demur.confidence"] == pytest.approx(0.3)

    # The GenAI conventions parent gen_ai.evaluation.result to the call that was evaluated.
    chat = otel.one("chat weak")
    events = [
        r.log_record for r in otel.evaluations() if r.log_record.span_id == chat.context.span_id
    ]
    by_name = {e.attributes["gen_ai.evaluation.name"]: dict(e.attributes) for e in events}
    assert set(by_name) == {"mean_logprob", "min_prob"}
    assert by_name["mean_logprob"]["gen_ai.evaluation.score.value"] == pytest.approx(0.3)
    assert "gen_ai.evaluation.score.label" not in by_name["mean_logprob"]
    assert all(e.trace_id == chat.context.trace_id for e in events)
    assert len(otel.evaluations()) == 4  # two estimators, two attempts


def test_each_decision_is_an_event_on_the_route_span(otel: Otel) -> None:
    escalating_router(otel).route(QUESTION)
    root = otel.one("demur.route")
    decisions = [attrs(e) for e in root.events if e.name == "demur.decision"]
    first, last = sorted(decisions, key=lambda d: d["demur.step"])
    assert first["demur.action"] == "escalate"
    assert first["demur.model"] == "weak"
    assert first["demur.escalate.model"] == "strong"
    assert first["demur.confidence"] == pytest.approx(0.3)
    assert first["demur.threshold"] == 0.6
    assert "0.300 < threshold 0.600" in first["demur.reason"]
    assert last["demur.action"] == "accept"
    assert last["demur.confidence"] == pytest.approx(0.95)
    assert last["demur.threshold"] == 0.6


class NamedModel(ScriptedModel):
    """A scripted model with an id of its own, as built-in and HTTP backends have."""

    @property
    def model_id(self) -> str:
        return "qwen2.5-1.5b"


def test_genai_model_attributes_carry_the_models_id_and_demur_model_the_alias(
    otel: Otel,
) -> None:
    model = NamedModel("strong", [Reply.confident(STRONG_ANSWER, 0.9)])
    router = Router([model], policy=Ladder(0.5), estimators=[MeanTokenLogprob()], **otel.providers)
    verdict = router.route(QUESTION)
    assert verdict.model == "strong"
    chat = otel.one("chat qwen2.5-1.5b")
    assert attrs(chat)["gen_ai.request.model"] == "qwen2.5-1.5b"
    assert attrs(chat)["gen_ai.response.model"] == "qwen2.5-1.5b"
    assert attrs(chat)["demur.model"] == "strong"


def test_a_route_without_a_recording_tracer_makes_no_spans_or_events(otel: Otel) -> None:
    sampled_out = TracerProvider(sampler=ALWAYS_OFF)
    sampled_out.add_span_processor(SimpleSpanProcessor(otel.spans))
    for tracer_provider in (sampled_out, NoOpTracerProvider()):
        router = Router(
            [ScriptedModel("only", [Reply.confident(STRONG_ANSWER, 0.9)])],
            policy=Ladder(threshold=0.5),
            estimators=[MeanTokenLogprob()],
            tracer_provider=tracer_provider,
            meter_provider=otel.meter_provider,
            logger_provider=otel.logger_provider,
        )
        verdict = router.route(QUESTION)
        assert verdict.status == "answered"
    assert otel.finished() == [] and otel.evaluations() == []
    # Metrics are still recorded.
    assert sum(p.value for p in otel.points("demur.decisions")) == 2


def test_failed_model_call_marks_its_spans_as_errors(otel: Otel) -> None:
    broken = ScriptedModel("broken", [ModelTimeoutError("took too long", model="broken")])
    router = Router(
        [broken],
        policy=Ladder(threshold=0.5),
        **otel.providers,
        retry=RetryPolicy(max_attempts=2, initial_backoff_s=0),
    )
    verdict = router.route(QUESTION)
    assert verdict.status == "abstained"
    calls = otel.named("chat broken")
    assert len(calls) == 2  # one span per try
    for call in calls:
        assert call.status.status_code is StatusCode.ERROR
        assert attrs(call)["error.type"] == "ModelTimeoutError"
        assert any(e.name == "exception" for e in call.events)
    attempt = otel.one("demur.attempt")
    assert attempt.status.status_code is StatusCode.ERROR
    assert attrs(attempt)["error.type"] == "ModelTimeoutError"
    assert attrs(attempt)["demur.retries"] == 1


def test_a_route_that_raises_leaves_an_error_root_span(otel: Otel) -> None:
    class Buggy(Ladder):
        def decide(self, state: RouteState) -> Decision:
            return Decision(action=Escalate("nowhere"), reason="a bug")

    model = ScriptedModel("m", [Reply.confident(STRONG_ANSWER, 0.9)])
    router = Router([model], policy=Buggy(threshold=0.5), **otel.providers)
    with pytest.raises(RouteError):
        router.route(QUESTION)
    span = otel.one("demur.route")
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "RouteError"


def test_a_model_raising_a_foreign_exception_fails_its_call_span_not_the_route(otel: Otel) -> None:
    buggy = ScriptedModel("buggy", [KeyError("not a ModelError")])
    router = Router([buggy], policy=Ladder(threshold=0.5), **otel.providers)
    assert router.route(QUESTION).status == "abstained"
    call = otel.one("chat buggy")
    assert call.status.status_code is StatusCode.ERROR
    assert attrs(call)["error.type"] == "ModelContractError"
    assert otel.one("demur.route").status.status_code is not StatusCode.ERROR


# --- content capture -------------------------------------------------------------------------


def test_no_prompt_or_answer_text_in_spans_by_default(otel: Otel) -> None:
    escalating_router(otel).route(QUESTION)
    for span in otel.finished():
        for text in all_text(span):
            for secret in (QUESTION, WEAK_ANSWER, STRONG_ANSWER, "Emma", "Austen"):
                assert secret not in text, f"{secret!r} leaked into span {span.name}: {text}"
        assert "gen_ai.input.messages" not in attrs(span)
        assert "gen_ai.output.messages" not in attrs(span)
    for record in otel.evaluations():
        for value in (record.log_record.attributes or {}).values():
            assert not any(secret in str(value) for secret in (QUESTION, STRONG_ANSWER))


def test_capture_content_records_messages_on_model_spans(otel: Otel) -> None:
    escalating_router(otel, capture_content=True).route(QUESTION)
    chat = otel.one("chat strong")
    inputs = json.loads(str(attrs(chat)["gen_ai.input.messages"]))
    outputs = json.loads(str(attrs(chat)["gen_ai.output.messages"]))
    assert inputs[-1]["role"] == "user"
    assert QUESTION in inputs[-1]["parts"][0]["content"]
    assert outputs == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": STRONG_ANSWER}],
            "finish_reason": "stop",
        }
    ]


def test_redact_replaces_captured_text(otel: Otel) -> None:
    escalating_router(otel, capture_content=True, redact=lambda text: "[redacted]").route(QUESTION)
    chat = otel.one("chat weak")
    inputs = json.loads(str(attrs(chat)["gen_ai.input.messages"]))
    outputs = json.loads(str(attrs(chat)["gen_ai.output.messages"]))
    assert {part["content"] for m in inputs for part in m["parts"]} == {"[redacted]"}
    assert outputs[0]["parts"][0]["content"] == "[redacted]"
    for span in otel.finished():
        assert not any(QUESTION in t or WEAK_ANSWER in t for t in all_text(span))


# --- estimators that do not score ------------------------------------------------------------


class Exploding(EstimatorBase):
    name = "exploding"
    needs = Needs()

    async def aestimate(self, attempt: Attempt) -> Score:
        raise ValueError("estimator bug")


class Sleepy(EstimatorBase):
    name = "sleepy"
    needs = Needs()

    async def aestimate(self, attempt: Attempt) -> Score:
        await asyncio.sleep(5)
        return Score(estimator=self.name, confidence=1.0)


def evaluation(otel: Otel, estimator: str) -> dict[str, Any]:
    for record in otel.evaluations():
        attributes = dict(record.log_record.attributes or {})
        if attributes["gen_ai.evaluation.name"] == estimator:
            return attributes
    raise AssertionError(f"no gen_ai.evaluation.result event for {estimator}")


def test_failing_and_timing_out_estimators_give_error_spans_and_labels(otel: Otel) -> None:
    router = single_router(
        otel, [Exploding(), Sleepy(), MeanTokenLogprob()], estimator_timeout_s=0.05
    )
    verdict = router.route(QUESTION)
    assert verdict.status == "answered"  # the working estimator still decides

    attempt = attrs(otel.one("demur.attempt"))
    exploding = otel.one("demur.estimate exploding")  # estimators that await get a span
    assert exploding.status.status_code is StatusCode.ERROR
    assert exploding.status.description == "exploding raised ValueError"
    assert any(e.name == "exception" for e in exploding.events)
    assert attempt["demur.score.exploding.status"] == "failed"
    assert "demur.score.exploding" not in attempt
    failed = evaluation(otel, "exploding")
    assert failed["gen_ai.evaluation.score.label"] == "failed"
    assert failed["error.type"] == "failed"
    assert "gen_ai.evaluation.score.value" not in failed

    sleepy = otel.one("demur.estimate sleepy")
    assert sleepy.status.status_code is StatusCode.ERROR
    assert attempt["demur.score.sleepy.status"] == "timeout"
    timed_out = evaluation(otel, "sleepy")
    assert timed_out["gen_ai.evaluation.score.label"] == "timeout"
    assert "0.05s" in timed_out["gen_ai.evaluation.explanation"]

    ok = evaluation(otel, "mean_logprob")
    assert ok["gen_ai.evaluation.score.value"] == pytest.approx(0.9)
    assert attempt["demur.score.mean_logprob"] == pytest.approx(0.9)


class Leaky(EstimatorBase):
    """Fails with a message that quotes the question, as a parser's error might."""

    name = "leaky"
    needs = Needs()

    async def aestimate(self, attempt: Attempt) -> Score:
        raise ValueError(f"could not parse {attempt.query.question!r}")


def test_an_exceptions_message_stays_out_of_spans_scores_and_logs_by_default(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="demur.router")
    verdict = single_router(otel, [Leaky(), MeanTokenLogprob()]).route(QUESTION)
    score = verdict.steps[0].scores[0]
    assert (score.status, score.error_type, score.detail) == (
        "failed",
        "ValueError",
        "leaky raised ValueError",
    )
    # The question is in the message only; the stack's source lines are code, not content.
    for span in otel.finished():
        assert not any("Emma" in text for text in all_text(span)), span.name
    events = [e for e in otel.one("demur.estimate leaky").events if e.name == "exception"]
    assert len(events) == 1
    event = attrs(events[0])
    assert event["exception.type"] == "ValueError" and "exception.message" not in event
    assert "aestimate" in event["exception.stacktrace"]  # the frames, without the message
    for record in otel.evaluations():
        assert "Emma" not in str(record.log_record.attributes)
    logged = [r.getMessage() for r in caplog.records if r.name == "demur.router"]
    assert any(line.startswith("estimator leaky failed: ValueError") for line in logged)
    assert not any("Emma" in line for line in logged)


def test_capture_content_records_an_exceptions_message_redacted(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="demur.router")
    router = single_router(
        otel,
        [Leaky()],
        capture_content=True,
        redact=lambda text: text.replace("Emma", "[title]"),
    )
    router.route(QUESTION)
    span = otel.one("demur.estimate leaky")
    event = attrs(next(e for e in span.events if e.name == "exception"))
    assert event["exception.message"] == "could not parse 'Who wrote the novel [title]?'"
    assert "Emma" not in event["exception.stacktrace"]
    logged = [r.getMessage() for r in caplog.records if r.name == "demur.router"]
    assert "estimator leaky failed: ValueError: could not parse 'Who wrote the novel [title]?'" in (
        logged
    )
    # Scores never carry it, whatever capture_content says.
    assert evaluation(otel, "leaky")["gen_ai.evaluation.explanation"] == "leaky raised ValueError"


def test_estimator_without_logprobs_is_labelled_unavailable(otel: Otel) -> None:
    model = ScriptedModel("plain", [Reply(text=STRONG_ANSWER)])  # no logprobs
    router = Router(
        [model],
        policy=Ladder(threshold=0.5),
        estimators=[MeanTokenLogprob()],
        **otel.providers,
    )
    verdict = router.route(QUESTION)
    assert verdict.status == "abstained"
    attempt = otel.one("demur.attempt")
    assert attrs(attempt)["demur.score.mean_logprob.status"] == "unavailable"
    event = evaluation(otel, "mean_logprob")
    assert event["gen_ai.evaluation.score.label"] == "unavailable"
    assert "logprobs" in event["gen_ai.evaluation.explanation"]
    assert "error.type" not in event


# --- metrics ---------------------------------------------------------------------------------


def test_route_metrics(otel: Otel) -> None:
    router = escalating_router(otel)
    verdicts: list[Verdict] = [router.route(QUESTION), router.route(QUESTION)]

    decisions = {p.attributes["demur.action"]: p.value for p in otel.points("demur.decisions")}
    assert decisions == {"escalate": 2, "accept": 2}
    assert all(p.attributes["demur.policy"] == "ladder" for p in otel.points("demur.decisions"))

    confidence = otel.points("demur.confidence")
    by_model = {p.attributes["demur.model"]: p for p in confidence}
    assert by_model["weak"].count == 2 and by_model["weak"].sum == pytest.approx(0.6)
    assert by_model["strong"].count == 2 and by_model["strong"].sum == pytest.approx(1.9)
    # Buckets suited to [0, 1]: the two confidences fall in different buckets.
    assert by_model["weak"].bucket_counts != by_model["strong"].bucket_counts

    (duration,) = otel.points("demur.route.duration")
    assert duration.count == 2
    assert duration.sum == pytest.approx(sum(v.latency_s for v in verdicts))
    assert duration.attributes == {"demur.policy": "ladder", "demur.action": "accept"}

    (cost,) = otel.points("demur.route.cost")
    assert cost.value == pytest.approx(sum(v.cost for v in verdicts))
    assert cost.value > 0


# --- context propagation ---------------------------------------------------------------------


def test_route_spans_nest_under_the_callers_span(otel: Otel) -> None:
    router = escalating_router(otel)
    tracer = otel.tracer_provider.get_tracer("host-app")
    with tracer.start_as_current_span("handle request") as outer:
        verdict = router.route(QUESTION)
    host = outer.get_span_context()
    root = otel.one("demur.route")
    assert root.parent is not None and root.parent.span_id == host.span_id
    assert {s.context.trace_id for s in otel.finished()} == {host.trace_id}
    assert verdict.trace_id == format(host.trace_id, "032x")


async def test_async_routes_nest_under_the_callers_span(otel: Otel) -> None:
    router = escalating_router(otel)
    tracer = otel.tracer_provider.get_tracer("host-app")
    with tracer.start_as_current_span("handle request") as outer:
        verdicts = await asyncio.gather(router.aroute(QUESTION), router.aroute(QUESTION))
    roots = otel.named("demur.route")
    assert len(roots) == 2
    assert all(r.parent and r.parent.span_id == outer.get_span_context().span_id for r in roots)
    assert {v.trace_id for v in verdicts} == {format(outer.get_span_context().trace_id, "032x")}
    # Concurrent routes keep their own subtrees.
    for root in roots:
        attempts = [
            s
            for s in otel.named("demur.attempt")
            if s.parent and s.parent.span_id == root.context.span_id
        ]
        assert len(attempts) == 2
