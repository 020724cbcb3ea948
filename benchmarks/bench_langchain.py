"""The gated LangChain runnable's cost per call, against the bare runnable it gates.

The runnable is an instant fake chat model (it answers at once, sync and async, with
OpenAI-shaped logprobs); the gate adds one logprob estimator and a ladder that accepts its
answer. Bare and gated calls alternate in one process, for `invoke` and `ainvoke`, with the
gate's tracing off (OpenTelemetry's no-op providers, as in a LangChain app without an SDK) and
on (real SDK tracer and meter providers, spans batched to an exporter that drops them). We
report the median of the per-round medians, and gated / bare as a ratio. For scale, the same
route over an instant scripted model (no LangChain at all) is timed too: no gate can cost
less than the bare call plus that.

    python -m benchmarks.bench_langchain [--calls 1000] [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider

from benchmarks.common import report
from demur import Ladder, MeanTokenLogprob, Reply, Router, ScriptedModel
from demur.integrations.langchain import DemurRunnable, gate

QUESTION = "What is the capital of France?"
LOGPROBS = {"content": [{"token": "Paris", "logprob": -0.05, "top_logprobs": []}]}


class InstantChat(BaseChatModel):
    """Answers "Paris" at once, with logprobs, from both the sync and the async API."""

    @property
    def _llm_type(self) -> str:
        return "instant"

    def _result(self) -> ChatResult:
        message = AIMessage(content="Paris", response_metadata={"logprobs": LOGPROBS})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        return self._result()

    async def _agenerate(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> ChatResult:
        return self._result()


class DroppingExporter(SpanExporter):
    """Receives batches like a real exporter and throws them away."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def gated(model: InstantChat, tracer: Any, meter: Any) -> DemurRunnable:
    return gate(
        model,
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.5),
        tracer_provider=tracer,
        meter_provider=meter,
    )


Timings = dict[str, list[float]]


def summarise(rounds: list[Timings]) -> dict[str, float]:
    """The median over rounds of each round's median; the first round is a warm-up."""
    medians: dict[str, list[float]] = {}
    for timings in rounds[1:]:
        for key, values in timings.items():
            medians.setdefault(key, []).append(statistics.median(values))
    return {key: statistics.median(values) for key, values in medians.items()}


def measure(calls: int, rounds: int) -> dict[str, object]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DroppingExporter(), max_queue_size=65536))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    model = InstantChat()
    off = gated(model, NoOpTracerProvider(), NoOpMeterProvider())
    on = gated(model, tracer_provider, meter_provider)
    # The floor under any gate: a route over an instant scripted model, tracing off.
    router = Router(
        [ScriptedModel("scripted", [Reply.confident("Paris", 0.95)])],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.5),
        tracer_provider=NoOpTracerProvider(),
        meter_provider=NoOpMeterProvider(),
    )
    assert off.invoke(QUESTION) == on.invoke(QUESTION) == model.invoke(QUESTION).content

    def sync_round(n: int) -> Timings:
        timings: Timings = {"bare": [], "off": [], "on": []}
        for _ in range(n):
            t0 = time.perf_counter()
            model.invoke(QUESTION)
            t1 = time.perf_counter()
            off.invoke(QUESTION)
            t2 = time.perf_counter()
            on.invoke(QUESTION)
            t3 = time.perf_counter()
            timings["bare"].append((t1 - t0) * 1e6)
            timings["off"].append((t2 - t1) * 1e6)
            timings["on"].append((t3 - t2) * 1e6)
        return timings

    async def async_round(n: int) -> Timings:
        timings: Timings = {"bare": [], "off": [], "on": [], "router": []}
        for _ in range(n):
            t0 = time.perf_counter()
            await model.ainvoke(QUESTION)
            t1 = time.perf_counter()
            await off.ainvoke(QUESTION)
            t2 = time.perf_counter()
            await on.ainvoke(QUESTION)
            t3 = time.perf_counter()
            await router.aroute(QUESTION)
            t4 = time.perf_counter()
            timings["bare"].append((t1 - t0) * 1e6)
            timings["off"].append((t2 - t1) * 1e6)
            timings["on"].append((t3 - t2) * 1e6)
            timings["router"].append((t4 - t3) * 1e6)
        await asyncio.sleep(0)
        return timings

    sync = summarise([sync_round(calls) for _ in range(rounds + 1)])

    async def async_rounds() -> list[Timings]:
        return [await async_round(calls) for _ in range(rounds + 1)]

    asynchronous = summarise(asyncio.run(async_rounds()))
    tracer_provider.shutdown()
    result: dict[str, object] = {"calls_per_round": calls, "rounds": rounds}
    for api, figures in (("invoke", sync), ("ainvoke", asynchronous)):
        bare = figures["bare"]
        result[f"{api}_bare_median_us"] = round(bare, 1)
        result[f"{api}_gated_median_us"] = round(figures["off"], 1)
        result[f"{api}_gated_traced_median_us"] = round(figures["on"], 1)
        result[f"{api}_ratio_median"] = round(figures["off"] / bare, 2)
        result[f"{api}_traced_ratio_median"] = round(figures["on"] / bare, 2)
        result[f"{api}_overhead_median_us"] = round(figures["off"] - bare, 1)
    result["router_alone_median_us"] = round(asynchronous["router"], 1)
    result["ratio_median"] = result["invoke_ratio_median"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    report(measure(args.calls, args.rounds), args.json)


if __name__ == "__main__":
    main()
