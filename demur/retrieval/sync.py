"""Keeping a collection in step with its source documents: what to embed, relabel and delete.

Every chunk written by `demur index` records the documents it belongs to (`DOCUMENTS`: their
keys, a resolved file path each) and a hash of its content (`CONTENT_HASH`). Chunk ids follow
the content, so the same text under two paths is stored once and lists both paths; the first
path's metadata (source, line) is kept. `plan_sync` compares the chunks read in a run with the
chunks a collection holds:

- a chunk not stored, or stored with other content, is embedded (`SyncPlan.embed`);
- a stored chunk that gains or loses a document, or moved (a line), is relabelled (`relabel`);
- a chunk that no document refers to any more is deleted (`delete`).

A document read in the run gives up the chunks it no longer has; one that was not found
under the indexed paths gives up all of them only when pruning. Chunks indexed without a
document key (`index_chunks` of hand-made chunks) are replaced when their content changes
and never deleted. This module does no I/O.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from demur.retrieval.indexing import SourceChunk

logger = logging.getLogger("demur.retrieval")

DOCUMENTS = "demur_documents"
"""Chunk metadata: the keys of the documents the chunk belongs to, the first one's metadata kept."""
CONTENT_HASH = "demur_hash"
"""Chunk metadata: the hash of its content (text, and metadata that is not about where)."""
BOOKKEEPING = (DOCUMENTS, CONTENT_HASH)


def content_hash(*parts: object) -> str:
    """A hex SHA-256 of `parts` (JSON-encoded with sorted keys): stable across runs."""
    encoded = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def chunk_hash(chunk: SourceChunk) -> str:
    """The chunk's own content hash, else one of its text, source and metadata."""
    if chunk.content_hash is not None:
        return chunk.content_hash
    return content_hash(chunk.text, chunk.source, chunk.metadata)


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as a collection holds it: its id and metadata (bookkeeping included)."""

    id: str
    metadata: Mapping[str, Any]

    @property
    def content_hash(self) -> str | None:
        value = self.metadata.get(CONTENT_HASH)
        return value if isinstance(value, str) else None

    @property
    def documents(self) -> tuple[str, ...]:
        """The document keys; for a chunk indexed before keys were recorded, its source path."""
        value = self.metadata.get(DOCUMENTS)
        if isinstance(value, list | tuple):
            return tuple(str(key) for key in value)
        source = self.metadata.get("source")
        if self.content_hash is None and isinstance(source, str) and "://" not in source:
            return (Path(source).resolve().as_posix(),)
        return ()


@dataclass
class DocumentCounts:
    """What a run did to one collection's documents (files, keyed by resolved path)."""

    added: int = 0
    updated: int = 0
    """Documents whose content changed: their old chunks were replaced."""
    removed: int = 0
    """Documents deleted with prune, or read with no usable passage left."""
    unchanged: int = 0
    missing: int = 0
    """Documents under the indexed paths that were not found and were kept (prune deletes)."""


@dataclass
class SyncPlan:
    """The writes that bring a collection in step with what was read."""

    embed: list[tuple[SourceChunk, dict[str, Any]]] = field(default_factory=list)
    """Chunks to embed and write, each with the metadata to write (None deletes a key)."""
    relabel: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Stored chunks whose metadata changes, by id: no embedding."""
    delete: list[str] = field(default_factory=list)
    documents: DocumentCounts = field(default_factory=DocumentCounts)


def drop_conflicts(
    chunks: Iterable[SourceChunk], on_conflict: Callable[[SourceChunk, SourceChunk], None]
) -> list[SourceChunk]:
    """`chunks` without those whose id an earlier chunk of other content already took.

    `on_conflict(dropped, kept)` hears each one. The same content under one id (a file
    indexed twice, a copy) is no conflict.
    """
    first: dict[str, tuple[SourceChunk, str]] = {}
    kept: list[SourceChunk] = []
    for chunk in chunks:
        digest = chunk_hash(chunk)
        earlier = first.setdefault(chunk.id, (chunk, digest))
        if earlier[1] != digest:
            on_conflict(chunk, earlier[0])
            continue
        kept.append(chunk)
    return kept


@dataclass
class _Wanted:
    """One chunk id as read in this run: its first chunk, and its chunk per document."""

    first: SourceChunk
    digest: str
    by_document: dict[str, SourceChunk] = field(default_factory=dict)


def plan_sync(
    chunks: Sequence[SourceChunk],
    stored: Iterable[StoredChunk],
    *,
    read: Collection[str] = (),
    gone: Callable[[str], bool] | None = None,
    prune: bool = False,
) -> SyncPlan:
    """The writes that make a collection holding `stored` hold `chunks`.

    `chunks` must not reuse an id for other content (see `drop_conflicts`). `read` are the
    keys of the documents read in full (a file with no usable passage left included);
    `gone(key)` says whether a stored document was looked for under the indexed paths and
    not found. Gone documents are deleted with `prune`, else counted as missing.
    """
    stored_by_id = {chunk.id: chunk for chunk in stored}
    wanted: dict[str, _Wanted] = {}
    for chunk in chunks:
        entry = wanted.setdefault(chunk.id, _Wanted(chunk, chunk_hash(chunk)))
        if chunk.document is not None:
            entry.by_document.setdefault(chunk.document, chunk)
    read_keys = set(read) | {key for entry in wanted.values() for key in entry.by_document}
    known = {key for chunk in stored_by_id.values() for key in chunk.documents}
    gone_keys = {key for key in known - read_keys if gone is not None and gone(key)}
    dropped = read_keys | (gone_keys if prune else set())

    plan = SyncPlan()
    for chunk_id, entry in wanted.items():
        _plan_wanted(plan, entry, stored_by_id.get(chunk_id), dropped)
    for chunk_id, held in stored_by_id.items():
        if chunk_id in wanted or not held.documents:
            continue
        documents = [key for key in held.documents if key not in dropped]
        if not documents:
            plan.delete.append(chunk_id)
        elif tuple(documents) != held.documents:
            plan.relabel.append((chunk_id, {DOCUMENTS: documents}))  # chroma merges the rest
    plan.documents = _count(wanted, stored_by_id.values(), read_keys, gone_keys, prune)
    return plan


def _plan_wanted(
    plan: SyncPlan, entry: _Wanted, held: StoredChunk | None, dropped: set[str]
) -> None:
    own = list(entry.by_document)
    if held is None:
        plan.embed.append((entry.first, _metadata(entry.first, entry.digest, own)))
        return
    if held.content_hash is None and held.metadata.get(DOCUMENTS) is None and not own:
        return  # a hand-made chunk indexed before hashes were recorded: as it was
    if held.content_hash != entry.digest:
        metadata = _metadata(entry.first, entry.digest, own)
        plan.embed.append((entry.first, _with_removals(metadata, held.metadata)))
        return
    documents = [key for key in held.documents if key not in dropped or key in own]
    documents += [key for key in own if key not in documents]
    # The first document's chunk gives the metadata (source, line), so copies do not take turns.
    chunk = entry.by_document.get(documents[0]) if documents else entry.first
    if chunk is not None:
        metadata = _metadata(chunk, entry.digest, documents)
    else:
        metadata = {**_content(held.metadata), CONTENT_HASH: entry.digest, DOCUMENTS: documents}
    if metadata != _normal(held.metadata):
        plan.relabel.append((entry.first.id, _with_removals(metadata, held.metadata)))


def _metadata(chunk: SourceChunk, digest: str, documents: list[str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {**chunk.metadata, "source": chunk.source, CONTENT_HASH: digest}
    if documents:
        metadata[DOCUMENTS] = list(documents)
    return metadata


def _content(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metadata.items() if key not in BOOKKEEPING}


def _normal(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in metadata.items()
    }


def _with_removals(metadata: dict[str, Any], held: Mapping[str, Any]) -> dict[str, Any]:
    """`metadata`, with None for the keys only `held` has: chroma merges metadata on writes."""
    return {**dict.fromkeys(set(held) - set(metadata)), **metadata}


def _count(
    wanted: Mapping[str, _Wanted],
    stored: Iterable[StoredChunk],
    read: set[str],
    gone: set[str],
    prune: bool,
) -> DocumentCounts:
    before: dict[str, set[tuple[str, str | None]]] = {}
    for chunk in stored:
        for key in chunk.documents:
            before.setdefault(key, set()).add((chunk.id, chunk.content_hash))
    after: dict[str, set[tuple[str, str | None]]] = {}
    for chunk_id, entry in wanted.items():
        for key in entry.by_document:
            after.setdefault(key, set()).add((chunk_id, entry.digest))
    counts = DocumentCounts()
    for key in read:
        old, new = before.get(key, set()), after.get(key, set())
        if old == new:
            counts.unchanged += 1
        elif not old:
            counts.added += 1
        elif not new:
            counts.removed += 1
        else:
            counts.updated += 1
    if prune:
        counts.removed += len(gone)
    else:
        counts.missing += len(gone)
    return counts
