"""What llama.cpp's extra (repacked) buffer types are worth on this CPU.

demur turns them off on CPUs with AMX, where they can crash, and keeps them elsewhere. This
measures the cost of turning them off: the same greedy requests, each model loaded twice
(extra buffers on and off, in this process), alternating request by request; medians.

    python -m benchmarks.bench_extra_buffers [--requests 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from benchmarks.common import halueval_rows, report
from benchmarks.ladder_records import question_pool
from demur import LlamaCppModel, Query
from demur.adapters.models import cpu_flags, decide_extra_buffers

MODELS = ("qwen2.5-0.5b", "qwen2.5-1.5b")


async def measure(requests: int) -> dict[str, object]:
    rows = halueval_rows()
    picked = [rows[i] for i in question_pool(seed=1)[:requests]]
    result: dict[str, object] = {
        "requests": requests,
        "this_cpu": decide_extra_buffers(None, cpu_flags()).reason,
        "models": {},
    }
    for name in MODELS:
        on = LlamaCppModel(name, builtin=name, isolation="thread", extra_buffers=True)
        off = LlamaCppModel(name, builtin=name, isolation="thread", extra_buffers=False)
        seconds: dict[bool, list[float]] = {True: [], False: []}
        try:
            for model in (on, off):
                await model.aload()
            for row in picked:
                query = Query(row["question"], context=(row["knowledge"],))
                for enabled, model in ((True, on), (False, off)):
                    request = model.default_prompt.render(query).model_copy(
                        update={"max_tokens": 24}
                    )
                    started = time.perf_counter()
                    await model.agenerate(request)
                    seconds[enabled].append(time.perf_counter() - started)
        finally:
            for model in (on, off):
                await model.aclose()
        median_on, median_off = (statistics.median(seconds[k]) for k in (True, False))
        result["models"][name] = {  # type: ignore[index]
            "median_s_extra_buffers_on": round(median_on, 3),
            "median_s_extra_buffers_off": round(median_off, 3),
            "off_over_on": round(median_off / median_on, 3),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--json")
    args = parser.parse_args()
    report(asyncio.run(measure(args.requests)), args.json)


if __name__ == "__main__":
    main()
