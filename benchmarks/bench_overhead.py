"""The router's own cost per route, against calling the same instant model directly.

Tracing is on: real SDK tracer, meter and logger providers, spans and evaluation events
batched to exporters that drop them, so the figure includes span creation, attributes,
events and metric recording. For context the same router also runs with OpenTelemetry's
no-op providers (tracing off), and the SDK alone replays what one route records (its spans,
nested as they were, their attributes and events, and its evaluation log records; no metrics),
which is the SDK's own floor. The loops run in one process, interleaved call by call, and we
report the median of the per-round medians.

    python -m benchmarks.bench_overhead [--routes 2000] [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, Tracer

from benchmarks.common import report
from demur import Escalate, Ladder, MeanTokenLogprob, Query, Reply, Router, ScriptedModel


class DroppingExporter(SpanExporter):
    """Receives batches like a real exporter and throws them away."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class DroppingLogExporter(LogRecordExporter):
    """Receives batches of events like a real exporter and throws them away."""

    def __init__(self) -> None:
        self.records = 0

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.records += len(batch)
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        return None


async def recorded_route(query: Query, build: Any) -> tuple[list[ReadableSpan], list[Any]]:
    """The spans and evaluation log records one route writes, captured in memory."""
    spans, records = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(records))
    await build(tracer_provider, NoOpMeterProvider(), logger_provider).aroute(query)
    return list(spans.get_finished_spans()), [r.log_record for r in records.get_finished_logs()]


def replayer(
    tracer: Tracer, logger: Any, spans: list[ReadableSpan], records: list[Any]
) -> Callable[[], None]:
    """What the SDK alone does for one route: the same spans, nested as they were, with the
    same attributes and events, and the same log records; no demur code runs."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent, []).append(span)

    def replay(span: ReadableSpan) -> None:
        with tracer.start_as_current_span(span.name, attributes=span.attributes) as live:
            for child in children.get(span.context.span_id, []):
                replay(child)
            for event in span.events:
                live.add_event(event.name, event.attributes)
            if span.parent is not None and not children.get(span.context.span_id):
                for record in records:
                    logger.emit(event_name=record.event_name, attributes=record.attributes)

    roots = children[None]

    def run() -> None:
        for root in roots:
            replay(root)

    return run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(routes: int, rounds: int) -> dict[str, object]:
    exporter = DroppingExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65536))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    events = DroppingLogExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(events, max_queue_size=65536))
    model = ScriptedModel("weak", [Reply.confident("Paris", 0.9)])
    strong = ScriptedModel("strong", [Reply.confident("Paris", 0.9)])

    def router(tracer: object, meter: object, logger: object = None) -> Router:
        return Router(
            [model, strong],
            estimators=[MeanTokenLogprob()],
            policy=Ladder(0.5, rungs=[Escalate("strong")]),
            tracer_provider=tracer,  # type: ignore[arg-type]
            meter_provider=meter,  # type: ignore[arg-type]
            logger_provider=logger,  # type: ignore[arg-type]
        )

    traced = router(tracer_provider, meter_provider, logger_provider)
    untraced = router(NoOpTracerProvider(), NoOpMeterProvider())
    query = Query("What is the capital of France?")
    request = traced.request_for("weak", query)
    floor_provider = TracerProvider()
    floor_provider.add_span_processor(BatchSpanProcessor(DroppingExporter(), max_queue_size=65536))
    floor_logs = LoggerProvider()
    floor_logs.add_log_record_processor(
        BatchLogRecordProcessor(DroppingLogExporter(), max_queue_size=65536)
    )
    sdk_alone = replayer(
        floor_provider.get_tracer("bench"),
        floor_logs.get_logger("bench"),
        *(await recorded_route(query, router)),
    )

    kinds = ("direct", "traced", "untraced", "sdk_alone")
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    medians: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_index in range(rounds + 1):
        this_round: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(routes):
            t0 = time.perf_counter()
            await model.agenerate(request)
            t1 = time.perf_counter()
            await traced.aroute(query)
            t2 = time.perf_counter()
            await untraced.aroute(query)
            t3 = time.perf_counter()
            sdk_alone()
            t4 = time.perf_counter()
            this_round["direct"].append((t1 - t0) * 1e6)
            this_round["traced"].append((t2 - t1) * 1e6)
            this_round["untraced"].append((t3 - t2) * 1e6)
            this_round["sdk_alone"].append((t4 - t3) * 1e6)
        model.calls.clear()
        await asyncio.sleep(0)  # let the loop drop the cancelled timeout handles
        if round_index == 0:
            continue  # warm-up
        for key, values in this_round.items():
            samples[key] += values
            medians[key].append(statistics.median(values))
    for provider in (tracer_provider, logger_provider, floor_provider, floor_logs):
        provider.shutdown()
    direct = statistics.median(medians["direct"])
    traced_median = statistics.median(medians["traced"])
    untraced_median = statistics.median(medians["untraced"])
    p99 = {key: percentile(values, 0.99) for key, values in samples.items()}
    return {
        "routes_per_round": routes,
        "rounds": rounds,
        "direct_median_us": round(direct, 1),
        "direct_p99_us": round(p99["direct"], 1),
        "routed_median_us": round(traced_median, 1),
        "routed_p99_us": round(p99["traced"], 1),
        "overhead_median_us": round(traced_median - direct, 1),
        "overhead_p99_us": round(p99["traced"] - p99["direct"], 1),
        "ratio_median": round(traced_median / direct, 1),
        "untraced_routed_median_us": round(untraced_median, 1),
        "untraced_overhead_median_us": round(untraced_median - direct, 1),
        # The SDK alone, replaying one route's spans, events and log records (no metrics).
        "sdk_alone_median_us": round(statistics.median(medians["sdk_alone"]), 1),
        "spans_per_route": exporter.spans // max(1, routes * (rounds + 1)),
        "events_per_route": events.records // max(1, routes * (rounds + 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--routes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = asyncio.run(measure(args.routes, args.rounds))
    report(result, args.json)


if __name__ == "__main__":
    main()
