"""The demo's figures: the embedded default router over the 80 bundled HaluEval-QA questions.

Accuracy of answered questions, coverage, escalations, hand-offs, the questions each model was
asked, whether the default thresholds' error guarantee held, and model-seconds, against always
asking one model.

    python -m benchmarks.bench_demo [--limit N] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from benchmarks.common import report
from demur.config import build_router, default_config
from demur.demo import default_guarantee, load_questions, run_demo


async def measure(limit: int | None) -> dict[str, object]:
    config = default_config()
    with tempfile.TemporaryDirectory() as scratch:
        assert config.queue is not None
        queue = config.queue.model_copy(update={"path": str(Path(scratch) / "queue.db")})
        router = build_router(config.model_copy(update={"queue": queue}))
        try:
            questions = load_questions(limit=limit)
            report = await run_demo(router, questions, guarantee=default_guarantee())
        finally:
            await router.aclose()
    return report.to_json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = asyncio.run(measure(args.limit))
    report(result, args.json)


if __name__ == "__main__":
    main()
