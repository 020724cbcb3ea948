"""How long `import demur` takes, in fresh interpreters, and what it drags in.

The baseline is what demur cannot do without: pydantic's BaseModel, the OpenTelemetry trace
API and asyncio, imported in a fresh interpreter the same way. The two probes alternate, and
the ratio is of their medians.

python -m benchmarks.bench_import [--repeats 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from benchmarks.common import report

HEAVY = (
    "llama_cpp",
    "httpx",
    "yaml",
    "rich",
    "chromadb",
    "llama_index",
    "langchain_core",
    "numpy",
    "tenacity",
    "opentelemetry.sdk",
)

BASELINE = "from pydantic import BaseModel; from opentelemetry import trace; import asyncio"

PROBE = """
import sys, time
t = time.perf_counter()
{statement}
elapsed = time.perf_counter() - t
heavy = [m for m in {heavy!r} if m in sys.modules]
print(elapsed * 1000, ",".join(heavy))
"""


def probe(statement: str) -> tuple[float, str]:
    code = PROBE.format(statement=statement, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), out[1] if len(out) > 1 else ""


def measure(repeats: int) -> dict[str, object]:
    times, baseline, heavy = [], [], ""
    for _ in range(repeats):
        elapsed, heavy = probe("import demur")
        times.append(elapsed)
        baseline.append(probe(BASELINE)[0])
    median, base = statistics.median(times), statistics.median(baseline)
    return {
        "repeats": repeats,
        "median_ms": round(median, 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
        "baseline": BASELINE,
        "baseline_median_ms": round(base, 1),
        "ratio_to_baseline": round(median / base, 2),
        "heavy_modules_imported": heavy.split(",") if heavy else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = measure(args.repeats)
    report(result, args.json)


if __name__ == "__main__":
    main()
