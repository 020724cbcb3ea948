"""Routes through the real local models (llama.cpp), checking logprobs and a real trace."""

from __future__ import annotations

import math

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from demur import (
    AskHuman,
    Escalate,
    Ladder,
    LlamaCppModel,
    MeanTokenEntropy,
    MeanTokenLogprob,
    MinTokenProb,
    Query,
    Router,
    SqliteQueue,
)

pytestmark = pytest.mark.local_model

QUERY = Query(
    "Which novel did Jane Austen publish in 1815?",
    context=("Jane Austen published Emma in December 1815; it was her fourth novel.",),
)


@pytest.fixture(scope="module")
def models():
    weak = LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=24)
    strong = LlamaCppModel("strong", builtin="gemma-3-270m", max_tokens=24)
    yield weak, strong


def traced_router(
    models, tmp_path, threshold: float
) -> tuple[Router, InMemorySpanExporter, InMemoryLogRecordExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    router = Router(
        list(models),
        estimators=[MeanTokenLogprob(), MinTokenProb(), MeanTokenEntropy(top_k=5)],
        policy=Ladder(threshold, rungs=[Escalate("strong"), AskHuman()]),
        queue=SqliteQueue(tmp_path / "queue.db"),
        tracer_provider=provider,
        logger_provider=logger_provider,
    )
    return router, exporter, logs


async def test_a_real_route_carries_logprobs_scores_and_a_trace(models, tmp_path):
    # Threshold 1.0 forces every rung: weak, then strong, then a person.
    router, exporter, logs = traced_router(models, tmp_path, threshold=1.0)
    verdict = await router.aroute(QUERY)

    assert verdict.status == "pending"
    assert [s.model for s in verdict.steps] == ["weak", "strong"]
    for step in verdict.steps:
        candidate = step.candidate
        assert candidate is not None and candidate.text
        assert candidate.tokens, "llama.cpp must return per-token logprobs"
        assert all(t.logprob <= 0.0 for t in candidate.tokens)
        assert all(len(t.top) == 5 for t in candidate.tokens)
        assert all(s.status == "ok" for s in step.scores)
        mean = sum(t.logprob for t in candidate.tokens) / len(candidate.tokens)
        assert step.scores[0].confidence == pytest.approx(math.exp(mean))
        assert 0.0 < (step.confidence or 0.0) <= 1.0
        assert candidate.usage.input_tokens > 20 and candidate.usage.output_tokens > 0

    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    assert {"demur.route", "demur.attempt"} <= set(by_name)
    chat = by_name["chat smollm2-135m"]  # SmolLM2 is a chat model
    completion = by_name["text_completion gemma-3-270m"]  # Gemma-3 base is prompted few-shot
    assert chat.attributes["gen_ai.provider.name"] == "llama.cpp"
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert chat.attributes["demur.model"] == "weak"
    assert completion.attributes["gen_ai.request.model"] == "gemma-3-270m"
    assert completion.attributes["demur.model"] == "strong"
    assert {format(s.context.trace_id, "032x") for s in spans} == {verdict.trace_id}
    route = by_name["demur.route"]
    assert len([e for e in route.events if e.name == "demur.decision"]) == 2
    assert len(logs.get_finished_logs()) == 6  # three estimators on each of two attempts


async def test_a_confident_real_answer_is_accepted_without_escalation(models, tmp_path):
    router, _, _ = traced_router(models, tmp_path, threshold=0.0)
    verdict = await router.aroute(QUERY)
    assert verdict.status == "answered"
    assert verdict.model == "weak"
    assert verdict.answer
