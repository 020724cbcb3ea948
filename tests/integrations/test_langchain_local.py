"""The gate in LangChain chains over the real local models (llama.cpp), and the example script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from demur import LlamaCppModel, MeanTokenLogprob, MinTokenProb
from demur.integrations.langchain import gate

pytestmark = pytest.mark.local_model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_gate.py"
PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "You answer questions with a short phrase. Do not explain."),
        ("human", "Passage: {passage}\n\nQuestion: {question}"),
    ]
)
INPUT = {
    "question": "Which novel did Jane Austen publish in 1815?",
    "passage": "Jane Austen published Emma in December 1815; it was her fourth novel.",
}


@pytest.fixture(scope="module")
def models():
    weak = LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=16)
    strong = LlamaCppModel("strong", builtin="gemma-3-270m", max_tokens=16)
    yield weak, strong


def test_a_prompt_piped_into_the_gate_reaches_smollm2_with_real_logprobs(models):
    weak, _ = models
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    chain = PROMPT | gate(
        weak,
        estimators=[MeanTokenLogprob(), MinTokenProb()],
        threshold=0.0,  # accept whatever SmolLM2 says: this test is about the plumbing
        with_verdict=True,
        tracer_provider=provider,
    )
    out = chain.invoke(INPUT)
    message, verdict = out["output"], out["verdict"]
    assert isinstance(message, AIMessage) and message.content == verdict.answer
    assert verdict.status == "answered" and verdict.model == "weak"
    candidate = verdict.steps[0].candidate
    assert candidate.tokens, "llama.cpp must return per-token logprobs"
    assert all(t.logprob <= 0.0 for t in candidate.tokens)
    assert [s.status for s in verdict.steps[0].scores] == ["ok", "ok"]
    assert candidate.usage.input_tokens > 20  # the template's system and human turns
    assert "chat smollm2-135m" in {s.name for s in exporter.get_finished_spans()}


async def test_streaming_through_both_models_releases_one_gated_chunk(models):
    weak, strong = models
    gated = gate(
        weak,
        fallback=strong,
        estimators=[MeanTokenLogprob()],
        threshold=1.0,  # nothing is good enough: both answer, then the gate abstains
        abstain_message="Not sure.",
    )
    chunks = [c async for c in (PROMPT | gated).astream(INPUT)]
    assert len(chunks) == 1
    assert chunks[0].content == "Not sure."
    summary = chunks[0].response_metadata["demur"]
    assert summary["status"] == "abstained" and summary["steps"] == 2


def test_the_example_runs():
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "weak:" in result.stdout
    assert "verdict: " in result.stdout
    assert result.stdout.count("released: ") == 1
