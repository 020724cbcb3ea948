"""Trace continuity: demur's spans nest under the caller's active span on every path."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from demur import MeanTokenLogprob
from demur.integrations.langchain import DemurMiddleware, DemurRunnable, gate
from tests.integrations.langchain_messages import reply

QUESTION = "What is the capital of France?"


def chat(message: AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=itertools.repeat(message))


class Traced:
    """An SDK tracer provider with an in-memory exporter, and the app's own tracer."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("app")

    def gated(self) -> DemurRunnable:
        return gate(
            chat(reply("Lyon", 0.3)),
            fallback=chat(reply("Paris", 0.9)),
            estimators=[MeanTokenLogprob()],
            threshold=0.6,
            tracer_provider=self.provider,
        )

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def assert_routes_nest_under(self, app_span: Any, routes: int = 1) -> None:
        found = self.spans("demur.route")
        assert len(found) == routes
        app = app_span.get_span_context()
        for route in found:
            assert route.parent is not None, "demur.route started a trace of its own"
            assert route.parent.span_id == app.span_id
            assert route.context.trace_id == app.trace_id
        by_id = {s.context.span_id: s for s in self.exporter.get_finished_spans()}
        for chat_span in [
            s for s in self.exporter.get_finished_spans() if s.name.startswith("chat ")
        ]:
            attempt = by_id[chat_span.parent.span_id]
            assert attempt.name == "demur.attempt"


@pytest.fixture
def traced() -> Traced:
    return Traced()


SYNC_CALLS: dict[str, Callable[[DemurRunnable], Any]] = {
    "invoke": lambda g: g.invoke(QUESTION),
    "stream": lambda g: list(g.stream(QUESTION)),
    "chain": lambda g: (
        ChatPromptTemplate.from_messages([("human", "{q}")]) | g | StrOutputParser()
    ).invoke({"q": QUESTION}),
    "streamed chain": lambda g: list(
        (ChatPromptTemplate.from_messages([("human", "{q}")]) | g | StrOutputParser()).stream(
            {"q": QUESTION}
        )
    ),
}


@pytest.mark.parametrize("call", list(SYNC_CALLS))
def test_sync_calls_nest_under_the_callers_span(traced, call):
    gated = traced.gated()
    with traced.tracer.start_as_current_span("app") as app:
        SYNC_CALLS[call](gated)
    traced.assert_routes_nest_under(app)


def test_batch_routes_nest_under_the_callers_span(traced):
    gated = traced.gated()
    with traced.tracer.start_as_current_span("app") as app:
        assert gated.batch([QUESTION] * 3) == ["Paris"] * 3
    traced.assert_routes_nest_under(app, routes=3)


async def test_async_calls_nest_under_the_callers_span(traced):
    gated = traced.gated()
    with traced.tracer.start_as_current_span("app") as app:
        await gated.ainvoke(QUESTION)
        await gated.abatch([QUESTION, QUESTION])
        assert [c async for c in gated.astream(QUESTION)] == ["Paris"]
    traced.assert_routes_nest_under(app, routes=4)


def test_a_sync_call_from_a_running_loop_keeps_the_span(traced):
    gated = traced.gated()

    async def main() -> None:
        with traced.tracer.start_as_current_span("app") as app:
            gated.invoke(QUESTION)  # runs on a worker thread, in the caller's context
        traced.assert_routes_nest_under(app)

    asyncio.run(main())


def test_concurrent_threads_each_keep_their_own_span(traced):
    from concurrent.futures import ThreadPoolExecutor

    gated = traced.gated()

    def one(i: int) -> tuple[int, int]:
        with traced.tracer.start_as_current_span(f"app {i}") as app:
            gated.invoke(QUESTION)
            return app.get_span_context().span_id, app.get_span_context().trace_id

    with ThreadPoolExecutor(4) as pool:
        apps = dict(pool.map(one, range(8)))
    routes = traced.spans("demur.route")
    assert len(routes) == 8
    for route in routes:
        assert apps[route.parent.span_id] == route.context.trace_id


def agent_with(traced: Traced) -> Any:
    middleware = DemurMiddleware(
        estimators=[MeanTokenLogprob()],
        threshold=0.6,
        fallback=chat(reply("Paris", 0.9)),
        tracer_provider=traced.provider,
    )
    return create_agent(chat(reply("Lyon", 0.3)), middleware=[middleware])


def test_the_middleware_routes_nest_under_the_callers_span(traced):
    with traced.tracer.start_as_current_span("app") as app:
        result = agent_with(traced).invoke({"messages": [("human", QUESTION)]})
    assert result["messages"][-1].content == "Paris"
    traced.assert_routes_nest_under(app)
    (route,) = traced.spans("demur.route")
    assert route.attributes["demur.model"] == "fallback"


async def test_the_async_middleware_routes_nest_under_the_callers_span(traced):
    with traced.tracer.start_as_current_span("app") as app:
        await agent_with(traced).ainvoke({"messages": [("human", QUESTION)]})
    traced.assert_routes_nest_under(app)
