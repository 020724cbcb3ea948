"""Retrieval: the `Retriever` protocol, a chromadb retriever, indexing, and retrieval cutoffs.

Importing this package does not import chromadb; the chroma adapter (`ChromaStore`,
`ChromaRetriever`, `DemurEmbeddingFunction`) loads it on first access.
"""

from typing import TYPE_CHECKING

from demur._lazy import lazy_exports as _lazy_exports
from demur.protocols import Retriever

if TYPE_CHECKING:
    from demur.retrieval.chroma import ChromaRetriever, ChromaStore, DemurEmbeddingFunction
    from demur.retrieval.chunking import chunk_text
    from demur.retrieval.cutoff import ConformalCutoff, gold_similarities, realised_coverage
    from demur.retrieval.indexing import (
        BadRow,
        FailedChunk,
        IndexProgress,
        IndexReport,
        SourceChunk,
        index_chunks,
        index_paths,
        read_sources,
        source_files,
    )
    from demur.retrieval.sync import DocumentCounts

# Exported lazily: the router needs only the protocol. The chroma classes import chromadb
# (most of a second); indexing and cutoffs are needed only to build or fit.
_LAZY = {
    "ChromaRetriever": "demur.retrieval.chroma",
    "ChromaStore": "demur.retrieval.chroma",
    "DemurEmbeddingFunction": "demur.retrieval.chroma",
    **dict.fromkeys(
        ("ConformalCutoff", "gold_similarities", "realised_coverage"), "demur.retrieval.cutoff"
    ),
    "chunk_text": "demur.retrieval.chunking",
    **dict.fromkeys(
        (
            "BadRow",
            "FailedChunk",
            "IndexProgress",
            "IndexReport",
            "SourceChunk",
            "index_chunks",
            "index_paths",
            "read_sources",
            "source_files",
        ),
        "demur.retrieval.indexing",
    ),
    "DocumentCounts": "demur.retrieval.sync",
}


__getattr__, __dir__ = _lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "BadRow",
    "ChromaRetriever",
    "ChromaStore",
    "ConformalCutoff",
    "DemurEmbeddingFunction",
    "DocumentCounts",
    "FailedChunk",
    "IndexProgress",
    "IndexReport",
    "Retriever",
    "SourceChunk",
    "chunk_text",
    "gold_similarities",
    "index_chunks",
    "index_paths",
    "read_sources",
    "realised_coverage",
    "source_files",
]
