"""DemurEmbeddings: demur's embedders as LangChain Embeddings, in a real vector store."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore

from demur import ConfigError
from demur.embedders import shared_embedder
from demur.integrations.langchain import DemurEmbeddings
from tests.integrations.recording_embedder import PASSAGES, QUESTION, RecordingEmbedder
from tests.retrieval import requires


@requires("minilm-l6")
def test_an_in_memory_store_over_minilm_finds_the_passage_that_answers():
    embeddings = DemurEmbeddings("minilm-l6")
    store = InMemoryVectorStore(embeddings)
    store.add_documents([Document(page_content=p) for p in PASSAGES])
    [best] = store.similarity_search(QUESTION, k=1)
    assert best.page_content == PASSAGES[0]
    assert embeddings.embedder is shared_embedder("minilm-l6") and embeddings.dimension == 384


@requires("minilm-l6")
async def test_the_async_store_methods_find_it_too():
    store = InMemoryVectorStore(DemurEmbeddings("minilm-l6"))
    await store.aadd_texts(list(PASSAGES))
    [best] = await store.asimilarity_search(QUESTION, k=1)
    assert best.page_content == PASSAGES[0]
    # The sync methods work inside a running event loop as well.
    [best] = store.similarity_search(QUESTION, k=1)
    assert best.page_content == PASSAGES[0]


@requires("e5-small")
def test_e5_embeds_queries_and_documents_with_their_own_prefixes():
    embeddings = DemurEmbeddings("e5-small")
    text = "Jane Austen published Emma in 1815."
    shared = shared_embedder("e5-small")
    assert embeddings.embed_query(text) == pytest.approx(
        shared.embed([text], kind="query")[0].tolist(), abs=1e-6
    )
    assert embeddings.embed_documents([text])[0] == pytest.approx(
        shared.embed([text], kind="passage")[0].tolist(), abs=1e-6
    )


async def test_queries_and_documents_reach_the_embedder_as_their_kinds():
    recording = RecordingEmbedder()
    embeddings = DemurEmbeddings(recording)
    vectors = embeddings.embed_documents(["a", "bb"])
    assert len(vectors) == 2 and all(isinstance(x, float) for x in vectors[0])
    assert len(embeddings.embed_query("q1")) == recording.dimension
    await embeddings.aembed_documents(["ccc"])
    await embeddings.aembed_query("q2")
    assert recording.calls == [
        ("passage", ["a", "bb"]),
        ("query", ["q1"]),
        ("passage", ["ccc"]),
        ("query", ["q2"]),
    ]


async def test_async_embedding_leaves_the_event_loop_free():
    embeddings = DemurEmbeddings(RecordingEmbedder(delay_s=0.3))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await embeddings.aembed_query("a question")
        await embeddings.aembed_documents(["a passage", "another"])
    finally:
        ticker.cancel()
    assert ticks >= 10  # the loop ran on while the encoder slept in a worker thread


def test_a_string_instead_of_a_list_of_documents_is_refused():
    with pytest.raises(ConfigError, match=r"not one string"):
        DemurEmbeddings(RecordingEmbedder()).embed_documents("one text")  # type: ignore[arg-type]


def test_an_unknown_embedder_name_names_the_argument_and_the_known_ones():
    with pytest.raises(ConfigError, match=r"DemurEmbeddings\(embedder=\.\.\.\).*'e5'") as info:
        DemurEmbeddings("e5")
    assert "e5-small, minilm-l6, mpnet-base" in str(info.value)
