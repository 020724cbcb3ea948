"""CLAP NQ dev, shared by the retrieval and RAG benchmarks: the rows, and the indexed store."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from demur.adapters.embeddings import Embedder, load_embedder
from demur.retrieval import ChromaStore, SourceChunk, index_chunks

DATA = Path(__file__).resolve().parent / "data" / "clapnq"
EMBEDDERS = ("minilm-l6", "e5-small", "mpnet-base")
PREFIX = "clapnq"


def load_rows(per_file: int = 300) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first `per_file` answerable rows and the first `per_file` unanswerable ones."""

    def read(name: str) -> list[dict[str, Any]]:
        lines = (DATA / f"clapnq_dev_{name}.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines[:per_file]]

    return read("answerable"), read("unanswerable")


def chunks(rows: Sequence[dict[str, Any]]) -> list[SourceChunk]:
    """One chunk per row: the row's passage under the row's id, its title as metadata."""
    return [
        SourceChunk(
            id=row["id"],
            text=row["passage"],
            source="clapnq-dev",
            metadata={"title": row["title"], "answerable": bool(row["answer"])},
        )
        for row in rows
    ]


class CachedEmbedder:
    """An embedder that remembers the vectors it computed, so a passage is embedded once.

    Indexing embeds every passage; the cutoff's gold similarities embed the answerable ones
    again. The vectors are the same, and on two CPU cores mpnet needs seconds per passage.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.inner = embedder
        self.name = embedder.name
        self.dimension = embedder.dimension
        self._cache: dict[tuple[str, str], npt.NDArray[np.float32]] = {}

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        missing = list(dict.fromkeys(t for t in texts if (kind, t) not in self._cache))
        if missing:
            vectors = np.asarray(self.inner.embed(missing, kind=kind), dtype=np.float32)
            for text, vector in zip(missing, vectors, strict=True):
                self._cache[(kind, text)] = vector
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._cache[(kind, t)] for t in texts])


def index(
    store: ChromaStore,
    rows: Sequence[dict[str, Any]],
    embedders: Sequence[Embedder],
    *,
    fresh: bool = False,
) -> dict[str, dict[str, Any]]:
    """Index `rows` into one collection per embedder; `fresh` deletes the collections first.

    Returns, per embedder, the seconds indexing took and how many passages were added,
    already there, and failed.
    """
    report: dict[str, dict[str, Any]] = {}
    items = chunks(rows)
    for embedder in embedders:
        if fresh:
            store.delete(embedder.name)
        started = time.perf_counter()
        result = index_chunks(items, store, [embedder], batch_size=32)
        seconds = time.perf_counter() - started
        report[embedder.name] = {
            "seconds": round(seconds, 1),
            "added": result.added.get(embedder.name, 0),
            "already_present": result.skipped.get(embedder.name, 0),
            "failed": len(result.failed),
            "collection_size": store.count(embedder.name),
        }
        added = report[embedder.name]["added"]
        if added:
            report[embedder.name]["passages_per_second"] = round(added / seconds, 2)
    return report


def embedders(names: Sequence[str] = EMBEDDERS) -> list[CachedEmbedder]:
    return [CachedEmbedder(load_embedder(name)) for name in names]
