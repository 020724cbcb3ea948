"""The router's own cost per route, against calling the same instant model directly.

Tracing is on: real SDK tracer and meter providers, spans batched to an exporter that drops
them, so the figure includes span creation, attributes, events and metric recording.
Both loops run in one process, interleaved in rounds, and we report medians over rounds.

    python benchmarks/bench_overhead.py [--routes 2000] [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from demur import Escalate, Ladder, MeanTokenLogprob, Query, Reply, Router, ScriptedModel


class DroppingExporter(SpanExporter):
    """Receives batches like a real exporter and throws them away."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(routes: int, rounds: int) -> dict[str, object]:
    exporter = DroppingExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65536))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    model = ScriptedModel("weak", [Reply.confident("Paris", 0.9)])
    strong = ScriptedModel("strong", [Reply.confident("Paris", 0.9)])
    router = Router(
        [model, strong],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.5, rungs=[Escalate("strong")]),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    query = Query("What is the capital of France?")
    request = router.request_for("weak", query)

    direct_us: list[float] = []
    routed_us: list[float] = []
    direct_round_medians: list[float] = []
    routed_round_medians: list[float] = []
    for round_index in range(rounds + 1):
        direct, routed = [], []
        for _ in range(routes):
            t0 = time.perf_counter()
            await model.agenerate(request)
            t1 = time.perf_counter()
            await router.aroute(query)
            t2 = time.perf_counter()
            direct.append((t1 - t0) * 1e6)
            routed.append((t2 - t1) * 1e6)
        model.calls.clear()
        if round_index == 0:
            continue  # warm-up
        direct_us += direct
        routed_us += routed
        direct_round_medians.append(statistics.median(direct))
        routed_round_medians.append(statistics.median(routed))
    tracer_provider.shutdown()
    direct_median = statistics.median(direct_round_medians)
    routed_median = statistics.median(routed_round_medians)
    return {
        "routes_per_round": routes,
        "rounds": rounds,
        "direct_median_us": round(direct_median, 1),
        "direct_p99_us": round(percentile(direct_us, 0.99), 1),
        "routed_median_us": round(routed_median, 1),
        "routed_p99_us": round(percentile(routed_us, 0.99), 1),
        "overhead_median_us": round(routed_median - direct_median, 1),
        "overhead_p99_us": round(percentile(routed_us, 0.99) - percentile(direct_us, 0.99), 1),
        "ratio_median": round(routed_median / direct_median, 1),
        "spans_exported": exporter.spans,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--routes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = asyncio.run(measure(args.routes, args.rounds))
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
