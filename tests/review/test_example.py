"""examples/review_queue.py runs as written: routed, reviewed over HTTP, answered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "review_queue.py"


def test_review_queue_example():
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=50
    )
    assert result.returncode == 0, result.stderr
    assert "verdict: pending, ticket" in result.stdout
    assert "verdict: answered, 'Paris, the capital of France'" in result.stdout
