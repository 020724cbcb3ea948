"""CLAP NQ dev, shared by the retrieval and RAG benchmarks: the rows, and the indexed store."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from demur import CachedEmbedder, shared_embedder
from demur.adapters.embeddings import Embedder
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
    """The shared embedders: indexing and the cutoff's gold similarities embed a passage once."""
    return [shared_embedder(name) for name in names]
