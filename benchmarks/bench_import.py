"""How long `import demur` takes, in fresh interpreters, and what it drags in.

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

PROBE = f"""
import sys, time
t = time.perf_counter()
import demur
elapsed = time.perf_counter() - t
heavy = [m for m in {HEAVY!r} if m in sys.modules]
print(elapsed * 1000, ",".join(heavy))
"""


def measure(repeats: int) -> dict[str, object]:
    times, heavy = [], ""
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
        ).stdout.split()
        times.append(float(out[0]))
        heavy = out[1] if len(out) > 1 else ""
    return {
        "repeats": repeats,
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
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
