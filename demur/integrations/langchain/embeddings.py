"""demur's embedders as LangChain `Embeddings`, offline and shared with demur's estimators.

    store = InMemoryVectorStore(DemurEmbeddings("minilm-l6"))

Queries are embedded as `kind="query"` and documents as `kind="passage"`, so models that embed
the two differently (E5's prefixes) are used as trained. The embedder is the process's shared
one (`demur.embedders.shared_embedder`): the model loads once and each text is embedded once,
whether LangChain or a demur estimator asks. The async methods run the encoder in a worker
thread, so they never block the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from langchain_core.embeddings import Embeddings

from demur.embedders import CachedEmbedder, embedder_names, shared_embedder
from demur.errors import ConfigError, unknown_name
from demur.protocols import Embedder

DEFAULT_EMBEDDER = "minilm-l6"


class DemurEmbeddings(Embeddings):
    """LangChain embeddings over a demur embedder, given by name or as an object.

    `embedder` is a name `demur.embedders.embedder_names()` lists ("minilm-l6", "e5-small",
    "mpnet-base", or one registered with `register_embedder`) or any demur Embedder; an
    unknown name is a ConfigError that lists the valid ones.
    """

    def __init__(self, embedder: Embedder | str = DEFAULT_EMBEDDER) -> None:
        if isinstance(embedder, str) and embedder not in (names := embedder_names()):
            raise ConfigError(
                f"DemurEmbeddings(embedder=...): {unknown_name('embedder', embedder, names)}"
            )
        self.embedder: CachedEmbedder = shared_embedder(embedder)

    @property
    def dimension(self) -> int:
        """The length of every vector."""
        return self.embedder.dimension

    def _embed(self, texts: Sequence[str], kind: str) -> list[list[float]]:
        vectors: list[list[float]] = self.embedder.embed(texts, kind=kind).tolist()
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts, "passage")

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text], "query")[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._embed, texts, "passage")

    async def aembed_query(self, text: str) -> list[float]:
        return (await asyncio.to_thread(self._embed, [text], "query"))[0]

    def __repr__(self) -> str:
        return f"DemurEmbeddings({self.embedder.name!r}, dimension={self.dimension})"


__all__ = ["DEFAULT_EMBEDDER", "DemurEmbeddings"]
