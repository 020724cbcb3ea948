"""The retriever protocol: a query in, the k most similar passages out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from demur.types import Document


@runtime_checkable
class Retriever(Protocol):
    """Finds the passages most similar to a query.

    `name` identifies the retriever in routes, configs and traces (demur's chroma retriever is
    named after its embedding model). `aretrieve` returns at most `k` documents, most similar
    first, each with its `score` (higher is closer). It raises `RetrievalError` (or its
    subclass `EmptyCollectionError`) with a message that says what to fix.

    A retriever may also offer `cutoff: float | None`, a fitted similarity cutoff (see
    `demur.ConformalCutoff`) that `RetrieveMore(cutoff=True)` applies.
    """

    name: str

    async def aretrieve(self, query: str, k: int) -> tuple[Document, ...]: ...
