"""demur's embedders as a LlamaIndex embedding model, offline and shared with demur's estimators.

    index = VectorStoreIndex.from_documents(documents, embed_model=DemurEmbedding("minilm-l6"))

Queries are embedded as `kind="query"` and node texts as `kind="passage"`, so models that embed
the two differently (E5's "query: " and "passage: " prefixes) are used as trained. The embedder
is the process's shared one (`demur.embedders.shared_embedder`): the model loads once and each
text is embedded once, whether LlamaIndex or a demur estimator asks. The async methods run the
encoder in a worker thread, so they never block the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from pydantic import PrivateAttr

from demur.embedders import CachedEmbedder, embedder_names, shared_embedder
from demur.errors import ConfigError, unknown_name
from demur.protocols import Embedder

DEFAULT_EMBEDDER = "minilm-l6"


class DemurEmbedding(BaseEmbedding):
    """A LlamaIndex embedding model over a demur embedder, given by name or as an object.

    `embedder` is a name `demur.embedders.embedder_names()` lists ("minilm-l6", "e5-small",
    "mpnet-base", or one registered with `register_embedder`) or any demur Embedder; an
    unknown name is a ConfigError that lists the valid ones. Other keyword arguments
    (`embed_batch_size`, `callback_manager`, ...) are BaseEmbedding's.
    """

    _embedder: CachedEmbedder = PrivateAttr()

    def __init__(self, embedder: Embedder | str = DEFAULT_EMBEDDER, **kwargs: Any) -> None:
        if isinstance(embedder, str) and embedder not in (names := embedder_names()):
            raise ConfigError(
                f"DemurEmbedding(embedder=...): {unknown_name('embedder', embedder, names)}"
            )
        shared = shared_embedder(embedder)
        kwargs.setdefault("model_name", shared.name)
        super().__init__(**kwargs)
        self._embedder = shared

    @classmethod
    def class_name(cls) -> str:
        return "DemurEmbedding"

    @property
    def embedder(self) -> CachedEmbedder:
        """The shared demur embedder behind this model."""
        return self._embedder

    @property
    def dimension(self) -> int:
        """The length of every vector."""
        return self._embedder.dimension

    def _embed(self, texts: Sequence[str], kind: str) -> list[Embedding]:
        vectors: list[Embedding] = self._embedder.embed(texts, kind=kind).tolist()
        return vectors

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed([query], "query")[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed([text], "passage")[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embed(texts, "passage")

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await asyncio.to_thread(self._embed, [query], "query"))[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await asyncio.to_thread(self._embed, [text], "passage"))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._embed, texts, "passage")

    def __repr__(self) -> str:
        return f"DemurEmbedding({self.model_name!r}, dimension={self.dimension})"


__all__ = ["DEFAULT_EMBEDDER", "DemurEmbedding"]
