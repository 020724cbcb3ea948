"""DemurEmbedding and DemurLLM: LlamaIndex indexes and query engines on demur's own parts.

The embedders are the real built-ins (a test skips, naming the install command, when one is
missing) or a recording one; the LLM runs over a ScriptedModel. The same LLM over a real
llama.cpp model is in test_llamaindex_local.py.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")
from llama_index.core import Document as LlamaDocument
from llama_index.core import VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, LogProb, MessageRole

from demur import (
    CompletionPrompt,
    ConfigError,
    GenerationRequest,
    Ladder,
    MeanTokenLogprob,
    Reply,
    ScriptedModel,
)
from demur.embedders import shared_embedder
from demur.integrations.llamaindex import (
    VERDICT_KEY,
    DemurEmbedding,
    DemurLLM,
    DemurQueryEngine,
    LlamaIndexLLM,
)
from tests.integrations.recording_embedder import PASSAGES, QUESTION, RecordingEmbedder
from tests.retrieval import requires


def scripted(**kwargs: Any) -> ScriptedModel:
    top = ((("Emma", -0.1), ("Anne", -2.5)), (("1815", -0.4), ("1816", -1.6)))
    return ScriptedModel("weak", [Reply("Emma 1815", logprobs=(-0.1, -0.4), top=top)], **kwargs)


# --- DemurEmbedding ----------------------------------------------------------------------------


@requires("minilm-l6")
def test_an_index_built_with_minilm_retrieves_the_passage_that_answers():
    embed_model = DemurEmbedding("minilm-l6")
    index = VectorStoreIndex.from_documents(
        [LlamaDocument(text=p) for p in PASSAGES], embed_model=embed_model
    )
    [best] = index.as_retriever(similarity_top_k=1).retrieve(QUESTION)
    assert best.node.get_content() == PASSAGES[0]
    assert embed_model.model_name == "minilm-l6" and embed_model.dimension == 384
    # LlamaIndex and demur's estimators share one embedder, and its cache.
    assert embed_model.embedder is shared_embedder("minilm-l6")


@requires("minilm-l6")
async def test_the_async_retriever_finds_the_same_passage():
    index = VectorStoreIndex.from_documents(
        [LlamaDocument(text=p) for p in PASSAGES], embed_model=DemurEmbedding("minilm-l6")
    )
    [best] = await index.as_retriever(similarity_top_k=1).aretrieve(QUESTION)
    assert best.node.get_content() == PASSAGES[0]


@requires("e5-small")
def test_e5_embeds_queries_and_passages_with_their_own_prefixes():
    embed_model = DemurEmbedding("e5-small")
    text = "Jane Austen published Emma in 1815."
    as_query = np.asarray(embed_model.get_query_embedding(text))
    as_passage = np.asarray(embed_model.get_text_embedding(text))
    shared = shared_embedder("e5-small")
    assert as_query == pytest.approx(shared.embed([text], kind="query")[0], abs=1e-6)
    assert as_passage == pytest.approx(shared.embed([text], kind="passage")[0], abs=1e-6)
    assert float(as_query @ as_passage) < 0.999


async def test_queries_and_texts_reach_the_embedder_as_their_kinds():
    recording = RecordingEmbedder()
    embed_model = DemurEmbedding(recording, embed_batch_size=2)
    assert embed_model.get_query_embedding("q1") != embed_model.get_text_embedding("q1")
    embed_model.get_text_embedding_batch(["a", "bb", "ccc"])
    await embed_model.aget_query_embedding("q2")
    await embed_model.aget_text_embedding("dddd")
    await embed_model.aget_text_embedding_batch(["eeeee", "ffffff"])
    assert recording.calls == [
        ("query", ["q1"]),
        ("passage", ["q1"]),
        ("passage", ["a", "bb"]),
        ("passage", ["ccc"]),
        ("query", ["q2"]),
        ("passage", ["dddd"]),
        ("passage", ["eeeee", "ffffff"]),
    ]
    assert embed_model.model_name == "recording" and embed_model.dimension == 3


async def test_async_embedding_leaves_the_event_loop_free():
    embed_model = DemurEmbedding(RecordingEmbedder(delay_s=0.3))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await embed_model.aget_query_embedding("a question")
        await embed_model.aget_text_embedding_batch(["a passage", "another"])
    finally:
        ticker.cancel()
    assert ticks >= 10  # the loop ran on while the encoder slept in a worker thread


def test_an_unknown_embedder_name_names_the_argument_and_the_known_ones():
    with pytest.raises(ConfigError, match=r"DemurEmbedding\(embedder=\.\.\.\).*'minilm'") as info:
        DemurEmbedding("minilm")
    assert "Did you mean 'minilm-l6'?" in str(info.value)
    assert "e5-small, minilm-l6, mpnet-base" in str(info.value)


# --- DemurLLM: requests and responses ------------------------------------------------------------


def test_metadata_follows_the_model_and_can_be_overridden():
    model = scripted(max_tokens=24)
    model.n_ctx = 2048  # type: ignore[attr-defined]
    llm = DemurLLM(model)
    meta = llm.metadata
    assert (meta.model_name, meta.num_output, meta.context_window) == ("weak", 24, 2048)
    assert meta.is_chat_model and not meta.is_function_calling_model
    llm = DemurLLM(scripted(default_prompt=CompletionPrompt()), max_tokens=8, context_window=512)
    meta = llm.metadata
    assert (meta.num_output, meta.context_window, meta.is_chat_model) == (8, 512, False)
    assert llm.model.name == "weak"


def test_a_chat_model_takes_messages_as_they_are_and_a_prompt_as_one_user_message():
    model = scripted()
    llm = DemurLLM(model)
    llm.chat(
        [
            ChatMessage(role=MessageRole.SYSTEM, content="Answer briefly."),
            ChatMessage(role=MessageRole.USER, content=QUESTION),
        ]
    )
    llm.complete("Say hi.")
    chat, complete = model.calls
    assert chat.messages is not None and [(m.role, m.content) for m in chat.messages] == [
        ("system", "Answer briefly."),
        ("user", QUESTION),
    ]
    assert complete.messages is not None and complete.messages[0].content == "Say hi."
    assert chat.logprobs and chat.temperature == 0.0 and chat.max_tokens == 64


def test_a_completion_model_takes_prompts_and_rendered_messages():
    model = scripted(default_prompt=CompletionPrompt())
    llm = DemurLLM(model)
    messages = [ChatMessage(role=MessageRole.USER, content=QUESTION)]
    llm.chat(messages)
    llm.complete("Q: 2+2?\nA:")
    chat, complete = model.calls
    assert chat.prompt == llm.messages_to_prompt(messages) and chat.messages is None
    assert complete.prompt == "Q: 2+2?\nA:"


def test_call_arguments_override_the_settings_for_that_call():
    model = scripted()
    llm = DemurLLM(model, temperature=0.7, seed=3, top_logprobs=2)
    llm.complete("x", max_tokens=5, stop=["."], temperature=0.0)
    llm.complete("y")
    first, second = model.calls
    assert (first.max_tokens, first.stop, first.temperature, first.seed) == (5, (".",), 0.0, 3)
    assert (second.max_tokens, second.stop, second.temperature) == (64, (), 0.7)
    assert second.top_logprobs == 2


def test_responses_carry_logprobs_usage_and_the_finish_reason():
    response = DemurLLM(scripted(), top_logprobs=2).complete("x")
    assert response.text == "Emma 1815"
    assert response.logprobs == [
        [LogProb(token="Emma", logprob=-0.1), LogProb(token="Anne", logprob=-2.5)],
        [LogProb(token="1815", logprob=-0.4), LogProb(token="1816", logprob=-1.6)],
    ]
    assert set(response.additional_kwargs) == {"prompt_tokens", "completion_tokens"}
    assert response.raw is not None and response.raw["model"] == "weak"


async def test_token_logprobs_survive_the_round_trip_through_llamaindex():
    model = scripted()
    request = GenerationRequest(prompt="x", logprobs=True, top_logprobs=2)
    direct = (await model.agenerate(request)).completions[0]
    back = await LlamaIndexLLM(DemurLLM(model, top_logprobs=2), name="weak").agenerate(request)
    assert back.completions[0].text == direct.text
    assert back.completions[0].tokens == direct.tokens


def test_a_tool_message_is_refused_with_its_position():
    llm = DemurLLM(scripted())
    messages = [
        ChatMessage(role=MessageRole.USER, content="Weather?"),
        ChatMessage(role=MessageRole.TOOL, content="sunny"),
    ]
    with pytest.raises(ConfigError, match=r"message 1 is a 'tool' message"):
        llm.chat(messages)


def test_a_model_that_is_not_a_demur_model_or_a_builtin_name_is_refused():
    with pytest.raises(ConfigError, match=r"lacks name, .*agenerate"):
        DemurLLM(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"DemurLLM\(model=\.\.\.\).*'gpt-5'.*smollm2-135m"):
        DemurLLM("gpt-5")


# --- DemurLLM: sync, async and streaming -------------------------------------------------------


async def test_sync_calls_work_inside_a_running_event_loop():
    llm = DemurLLM(scripted())
    assert llm.complete("x").text == "Emma 1815"
    assert llm.chat([ChatMessage(role=MessageRole.USER, content="x")]).message.content == (
        "Emma 1815"
    )
    assert (await llm.acomplete("x")).text == "Emma 1815"
    response = await llm.achat([ChatMessage(role=MessageRole.USER, content="x")])
    assert response.message.content == "Emma 1815" and response.logprobs


async def test_streams_yield_the_whole_answer_as_one_chunk():
    llm = DemurLLM(scripted())
    messages = [ChatMessage(role=MessageRole.USER, content="x")]
    [chunk] = list(llm.stream_complete("x"))
    assert chunk.text == chunk.delta == "Emma 1815" and chunk.logprobs
    [chunk] = list(llm.stream_chat(messages))
    assert chunk.message.content == chunk.delta == "Emma 1815"
    [chunk] = [c async for c in await llm.astream_complete("x")]
    assert chunk.delta == "Emma 1815"
    [chunk] = [c async for c in await llm.astream_chat(messages)]
    assert chunk.delta == "Emma 1815" and chunk.logprobs


# --- both, in a gated query engine ---------------------------------------------------------------


def gated_engine(model: ScriptedModel) -> DemurQueryEngine:
    index = VectorStoreIndex.from_documents(
        [LlamaDocument(text=p) for p in PASSAGES], embed_model=DemurEmbedding(RecordingEmbedder())
    )
    engine = index.as_query_engine(llm=DemurLLM(model), similarity_top_k=2)
    return DemurQueryEngine(engine, estimators=[MeanTokenLogprob()], policy=Ladder(0.0))


def check_logprobs_reached_the_estimator(response: Any) -> None:
    verdict = response.metadata[VERDICT_KEY]
    assert verdict.status == "answered" and response.response == "Emma 1815"
    [score] = verdict.steps[0].scores
    assert score.status == "ok" and score.value == pytest.approx((-0.1 - 0.4) / 2)
    assert score.confidence == pytest.approx(math.exp(-0.25))
    assert len(response.source_nodes) == 2


def test_a_sync_query_scores_the_engines_llm_by_its_logprobs():
    check_logprobs_reached_the_estimator(gated_engine(scripted()).query(QUESTION))


async def test_an_async_query_scores_the_engines_llm_by_its_logprobs():
    check_logprobs_reached_the_estimator(await gated_engine(scripted()).aquery(QUESTION))


async def test_a_sync_query_inside_a_running_event_loop_scores_it_too():
    check_logprobs_reached_the_estimator(gated_engine(scripted()).query(QUESTION))
