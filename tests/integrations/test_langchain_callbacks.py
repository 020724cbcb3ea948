"""The callback handler: it scores and traces model calls anywhere, and only observes."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from demur import ConfigError, EstimatorUnavailable, MeanTokenLogprob, MinTokenProb, Needs, Score
from demur.bases import EstimatorBase
from demur.estimators.base import Attempt
from demur.estimators.consistency import SampleAgreement
from demur.integrations.langchain import DemurCallbackHandler, ScoredCall
from tests.integrations.langchain_messages import reply

QUESTION = "What is the capital of France?"


def chat(message: AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=itertools.repeat(message))


def chain(message: AIMessage) -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")])
    return prompt | chat(message) | StrOutputParser()


def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_it_scores_each_answer_in_a_chain_from_its_logprobs():
    handler = DemurCallbackHandler([MeanTokenLogprob(), MinTokenProb()], threshold=0.5)
    out = chain(reply("Paris France", [0.9, 0.4])).invoke(
        {"question": QUESTION}, config={"callbacks": [handler]}
    )
    assert out == "Paris France"
    (record,) = handler.records
    assert isinstance(record, ScoredCall)
    assert record.question == QUESTION
    assert record.answer == "Paris France"
    assert record.model == "GenericFakeChatModel"
    assert [s.estimator for s in record.scores] == ["mean_logprob", "min_prob"]
    mean = math.sqrt(0.9 * 0.4)
    assert record.scores[0].confidence == pytest.approx(mean)
    assert record.scores[1].confidence == pytest.approx(0.4)
    assert record.confidence == pytest.approx((mean + 0.4) / 2)
    assert record.below_threshold is False
    assert handler.last is record


async def test_it_scores_async_calls_too():
    handler = DemurCallbackHandler()
    await chain(reply("Paris", [0.9])).ainvoke(
        {"question": QUESTION}, config={"callbacks": [handler]}
    )
    assert handler.last is not None and handler.last.confidence == pytest.approx(0.9)


def test_without_logprobs_the_scores_say_unavailable():
    handler = DemurCallbackHandler(threshold=0.5)
    chain(reply("Paris")).invoke({"question": QUESTION}, config={"callbacks": [handler]})
    record = handler.last
    assert record is not None
    assert [s.status for s in record.scores] == ["unavailable", "unavailable"]
    assert "needs token logprobs" in (record.scores[0].detail or "")
    assert record.confidence is None and record.below_threshold is True


def test_plain_llms_are_scored_as_well():
    handler = DemurCallbackHandler()
    FakeListLLM(responses=["Paris"]).invoke(QUESTION, config={"callbacks": [handler]})
    record = handler.last
    assert record is not None and record.answer == "Paris" and record.question == QUESTION


class Exploding(EstimatorBase):
    in_process = True
    name = "exploding"
    needs = Needs()

    def estimate(self, attempt: Attempt) -> Score:
        raise RuntimeError("estimator bug")

    async def aestimate(self, attempt: Attempt) -> Score:
        return self.estimate(attempt)


def test_it_never_changes_the_flow_even_when_scoring_fails():
    def on_score(record: ScoredCall) -> None:
        raise RuntimeError("observer bug")

    handler = DemurCallbackHandler([Exploding()], on_score=on_score)
    out = chain(reply("Paris", [0.9])).invoke(
        {"question": QUESTION}, config={"callbacks": [handler]}
    )
    assert out == "Paris"
    assert handler.last is not None
    assert handler.last.scores[0].status == "failed"
    assert handler.last.scores[0].error_type == "RuntimeError"
    assert "estimator bug" not in (handler.last.scores[0].detail or "")


class Unavailable(EstimatorBase):
    in_process = True
    name = "unavailable"
    needs = Needs()

    def estimate(self, attempt: Attempt) -> Score:
        raise EstimatorUnavailable("nothing to go on")


def test_it_refuses_estimators_that_would_call_a_model():
    with pytest.raises(ConfigError, match="needs samples or a model call"):
        DemurCallbackHandler([SampleAgreement(samples=3)])

    class AsksAModel(EstimatorBase):
        name = "judge"
        needs = Needs()

        async def aestimate(self, attempt: Attempt) -> Score:
            raise AssertionError

    with pytest.raises(ConfigError, match="'judge'"):
        DemurCallbackHandler([AsksAModel()])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="threshold"):
        DemurCallbackHandler(threshold=2.0)


def test_spans_nest_under_the_callers_span_with_one_event_per_score():
    provider, exporter = traced()
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    handler = DemurCallbackHandler(
        [MeanTokenLogprob(), Unavailable()],
        tracer_provider=provider,
        logger_provider=logger_provider,
    )
    with provider.get_tracer("app").start_as_current_span("app") as app:
        chain(reply("Paris", [0.9])).invoke({"question": QUESTION}, config={"callbacks": [handler]})
    spans = {s.name: s for s in exporter.get_finished_spans()}
    score = spans["demur.score GenericFakeChatModel"]
    assert score.parent is not None and score.parent.span_id == app.get_span_context().span_id
    assert score.attributes["demur.confidence"] == pytest.approx(0.9)
    assert score.attributes["demur.score.mean_logprob"] == pytest.approx(0.9)
    assert score.attributes["demur.score.unavailable.status"] == "unavailable"
    records = [r.log_record for r in logs.get_finished_logs()]
    assert all(r.event_name == "gen_ai.evaluation.result" for r in records)
    assert all(r.span_id == score.context.span_id for r in records)
    events = [dict(r.attributes or {}) for r in records]
    assert [e["gen_ai.evaluation.name"] for e in events] == ["mean_logprob", "unavailable"]
    assert events[1]["gen_ai.evaluation.score.label"] == "unavailable"
    assert handler.last is not None
    assert handler.last.trace_id == format(app.get_span_context().trace_id, "032x")


async def test_async_spans_nest_under_the_callers_span():
    provider, exporter = traced()
    handler = DemurCallbackHandler(tracer_provider=provider)
    with provider.get_tracer("app").start_as_current_span("app") as app:
        await chain(reply("Paris", [0.9])).ainvoke(
            {"question": QUESTION}, config={"callbacks": [handler]}
        )
    (score,) = [s for s in exporter.get_finished_spans() if s.name.startswith("demur.score")]
    assert score.parent is not None and score.parent.span_id == app.get_span_context().span_id


def test_it_sees_every_model_call_of_an_agent():
    handler = DemurCallbackHandler()
    agent = create_agent(chat(reply("Paris", [0.8])))
    agent.invoke({"messages": [("human", QUESTION)]}, config={"callbacks": [handler]})
    assert [r.answer for r in handler.records] == ["Paris"]
    assert handler.records[0].confidence == pytest.approx(0.8)


def test_only_the_latest_records_are_kept():
    handler = DemurCallbackHandler(keep=2)
    runnable = chain(reply("Paris", [0.9]))
    for _ in range(3):
        runnable.invoke({"question": QUESTION}, config={"callbacks": [handler]})
    assert len(handler.records) == 2
