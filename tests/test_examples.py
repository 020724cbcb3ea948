"""The scripts in examples/ run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quickstart():
    out = run("quickstart.py")
    assert "verdict: answered, 'Paris' from strong" in out


@pytest.mark.local_model
def test_local_cascade():
    out = run("local_cascade.py")
    assert "weak:" in out
    assert "sent to a person" in out or "answered" in out


@pytest.mark.local_model
def test_confident_rag():
    out = run("confident_rag.py")
    assert "indexed 4 passages into 3 collections" in out
    assert out.count("passage=eiffel") == 3  # every embedding model found the right passage
    assert "Confident RAG kept" in out and "situated: kept the" in out


def test_custom_components():
    out = run("custom_components.py")
    assert "capital of France? -> answered: Paris (weak)" in out
    assert "capital of Italy? -> answered: Rome (strong)" in out  # escalated, then accepted
