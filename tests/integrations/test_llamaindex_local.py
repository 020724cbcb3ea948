"""The LlamaIndex integration through a real local model (SmolLM2 on llama.cpp)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")
from llama_index.core import Document as LlamaDocument
from llama_index.core import VectorStoreIndex

from demur import Abstain, Groundedness, Ladder, LlamaCppModel, MeanTokenLogprob, Router
from demur.integrations.llamaindex import (
    VERDICT_KEY,
    DemurEmbedding,
    DemurLLM,
    DemurQueryEngine,
    LlamaIndexLLM,
    instrument,
)
from tests.retrieval import requires

pytestmark = pytest.mark.local_model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llamaindex_gate.py"
PASSAGES = (
    "Jane Austen published Emma in December 1815; it was her fourth novel.",
    "Charlotte Bronte published Jane Eyre in 1847.",
)


@pytest.fixture(scope="module")
def weak():
    return LlamaCppModel("weak", builtin="smollm2-135m", max_tokens=16)


@requires("minilm-l6")
async def test_a_real_query_engine_is_gated_with_logprobs_and_source_nodes(weak):
    index = VectorStoreIndex.from_documents(
        [LlamaDocument(text=p) for p in PASSAGES], embed_model=DemurEmbedding("minilm-l6")
    )
    engine = index.as_query_engine(llm=DemurLLM(weak), similarity_top_k=2)
    gated = DemurQueryEngine(
        engine,
        estimators=[MeanTokenLogprob(), Groundedness()],
        policy=Ladder(0.5, rungs=[Abstain("Not sure.")]),
    )
    evaluations: list[Any] = []
    with instrument(spans=False, on_evaluation=evaluations.append):
        response = await gated.aquery("Which novel did Jane Austen publish in 1815?")
    verdict = response.metadata[VERDICT_KEY]
    step = verdict.steps[0]
    assert step.candidate is not None and step.candidate.text
    scores = {s.estimator: s for s in step.scores}
    # The engine's LLM logprobs travelled through LlamaIndex's events to the estimator.
    assert scores["mean_logprob"].status == "ok"
    assert 0.0 < scores["mean_logprob"].confidence <= 1.0
    assert scores["groundedness_lexical"].status == "ok"
    assert sorted(d.text for d in step.candidate.documents) == sorted(PASSAGES)
    assert verdict.status in ("answered", "abstained")
    expected = step.candidate.text if verdict.status == "answered" else "Not sure."
    assert response.response == expected
    [evaluation] = evaluations  # the same LLM call, scored as it happened
    observed = {s.estimator: s for s in evaluation.scores}
    assert observed["mean_logprob"].confidence == pytest.approx(scores["mean_logprob"].confidence)


async def test_a_llamaindex_llm_over_the_local_model_serves_a_router(weak):
    model = LlamaIndexLLM(DemurLLM(weak), name="smollm2")
    router = Router([model], estimators=[MeanTokenLogprob()], policy=Ladder(0.0))
    verdict = await router.aroute("What is the capital of France?")
    assert verdict.status == "answered" and verdict.answer
    [score] = verdict.steps[0].scores
    assert score.status == "ok" and 0.0 < score.confidence <= 1.0


@requires("minilm-l6")
async def test_a_sync_query_inside_a_running_event_loop_gets_the_local_models_logprobs(weak):
    index = VectorStoreIndex.from_documents(
        [LlamaDocument(text=p) for p in PASSAGES], embed_model=DemurEmbedding("minilm-l6")
    )
    engine = index.as_query_engine(llm=DemurLLM(weak), similarity_top_k=1)
    gated = DemurQueryEngine(engine, estimators=[MeanTokenLogprob()], policy=Ladder(0.0))
    response = gated.query("Which novel did Jane Austen publish in 1815?")  # sync, in a loop
    [node] = response.source_nodes
    assert node.node.get_content() == PASSAGES[0]
    verdict = response.metadata[VERDICT_KEY]
    assert verdict.status == "answered" and response.response == verdict.answer
    [score] = verdict.steps[0].scores
    assert score.status == "ok" and 0.0 < score.confidence <= 1.0


def test_a_builtin_name_gives_the_llm_that_models_settings():
    llm = DemurLLM("smollm2-135m")
    assert isinstance(llm.model, LlamaCppModel) and llm.model.builtin == "smollm2-135m"
    meta = llm.metadata
    assert (meta.model_name, meta.context_window, meta.is_chat_model) == (
        "smollm2-135m",
        2048,
        True,
    )


@requires("minilm-l6")
def test_the_example_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "source nodes: 3" in out
    engine_line = next(line for line in out.splitlines() if line.startswith("query_engine:"))
    assert "mean_logprob=ok" in engine_line and "groundedness_lexical=ok" in engine_line
    assert "verdict: " in out
