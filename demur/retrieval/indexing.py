"""Read documents, chunk them, and keep one chroma collection per embedding model in step.

Indexing syncs each collection with its source documents (files, keyed by resolved path; see
`demur.retrieval.sync`): an unchanged file is not embedded again, a changed one replaces its
chunks, the same content under two paths is stored once, and with `prune` a file no longer
found under the indexed paths is deleted. Chunk ids follow the content (a JSONL row's own id,
else a hash), and every batch is committed as it goes: re-running a command that stopped
halfway embeds only what is still missing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demur.adapters.embeddings import Embedder
from demur.embedders import shared_embedder
from demur.errors import ConfigError, RetrievalError
from demur.retrieval.chunking import check_chunking, chunk_text
from demur.retrieval.sync import (
    DocumentCounts,
    StoredChunk,
    content_hash,
    drop_conflicts,
    plan_sync,
)

if TYPE_CHECKING:
    from demur.retrieval.chroma import ChromaStore, DemurEmbeddingFunction

logger = logging.getLogger("demur.retrieval")

SUFFIXES = (".txt", ".md", ".markdown", ".jsonl")
Scalar = str | int | float | bool


@dataclass(frozen=True)
class SourceChunk:
    """One chunk to index: a stable `id`, its `text`, where it came from, and its metadata.

    `document` is the key of the source document it was cut from (`read_sources` gives the
    resolved file path): indexing replaces and deletes chunks document by document. Chunks
    without one are only ever added or replaced. `content_hash` identifies what the chunk
    holds, its text and the metadata that belongs to it but not where it was found (a path, a
    line); by default it is a hash of the text, source and metadata.
    """

    id: str
    text: str
    source: str
    metadata: dict[str, Scalar] = field(default_factory=dict)
    document: str | None = None
    content_hash: str | None = None


@dataclass(frozen=True)
class BadRow:
    """An input row (or a whole file, `line` None) that was skipped, and why."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class FailedChunk:
    """A chunk that `embedder` could not embed, even alone; it was skipped."""

    embedder: str
    id: str
    source: str
    error: str


@dataclass(frozen=True)
class IndexProgress:
    """How far indexing into one embedder's collection has got: `done` of the `total` chunks
    it has to embed (those already stored are not counted)."""

    embedder: str
    done: int
    total: int


@dataclass
class IndexReport:
    """What an indexing run did, per embedder: documents added, updated, removed, unchanged
    (`documents`), and chunks embedded, already present, deleted and failed."""

    files: int = 0
    chunks: int = 0
    added: dict[str, int] = field(default_factory=dict)
    """Chunks embedded and written."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Chunks not embedded: already in the collection, or repeated in this run."""
    deleted: dict[str, int] = field(default_factory=dict)
    """Chunks deleted: old versions of changed documents, and removed documents."""
    documents: dict[str, DocumentCounts] = field(default_factory=dict)
    failed: list[FailedChunk] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)


# --- reading ----------------------------------------------------------------------------------


def source_files(paths: Iterable[str | Path]) -> list[Path]:
    """The .txt, .md, .markdown and .jsonl files among `paths`, folders searched recursively.

    Hidden files and folders are left out of folders. ConfigError names a path that does not
    exist, an explicit file of another kind, and inputs holding no file to index.
    """
    files: dict[Path, Path] = {}
    given = [Path(path) for path in paths]
    for path in given:
        if path.is_dir():
            found = sorted(
                child
                for child in path.rglob("*")
                if child.suffix.lower() in SUFFIXES
                and child.is_file()
                and not any(part.startswith(".") for part in child.relative_to(path).parts)
            )
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise ConfigError(
                    f"cannot index {path}: demur reads {', '.join(SUFFIXES)} files "
                    "(JSONL rows need a 'text' field)"
                )
            found = [path]
        else:
            raise ConfigError(f"cannot index {path}: no such file or folder")
        for file in found:
            files.setdefault(file.resolve(), file)
    if not files:
        shown = ", ".join(str(path) for path in given) or "(no path given)"
        raise ConfigError(f"no {', '.join(SUFFIXES)} file to index in {shown}")
    return list(files.values())


def read_sources(
    paths: Iterable[str | Path],
    *,
    chunk_size: int = 200,
    overlap: int = 40,
    on_bad_row: Callable[[BadRow], None] | None = None,
) -> Iterator[SourceChunk]:
    """The chunks of every .txt, .md and .jsonl file in `paths` (folders recursively).

    Text and Markdown files are chunked whole (a Markdown file's first heading becomes its
    "title"). Each JSONL row needs a "text" field; "id" and "title" are optional and its other
    scalar fields become metadata, "source" replacing the file name as the chunk's source.
    Rows that cannot be used go to `on_bad_row` (logged as warnings by default) and are
    skipped. Each chunk's `document` is its file's resolved path; its id is the row's "id",
    else a hash of its text and metadata, so a copy of a file has the same ids. Paths and
    chunk sizes are checked before the first chunk is read.
    """
    check_chunking(chunk_size, overlap)
    files = source_files(paths)
    report = on_bad_row or (lambda row: logger.warning("skipped %s", row))
    return _read(files, chunk_size, overlap, report)


def _read(
    files: list[Path], size: int, overlap: int, on_bad_row: Callable[[BadRow], None]
) -> Iterator[SourceChunk]:
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            on_bad_row(BadRow(str(file), None, f"cannot read the file: {exc}"))
            continue
        if file.suffix.lower() == ".jsonl":
            yield from _jsonl_chunks(file, text, size, overlap, on_bad_row)
        else:
            yield from _file_chunks(file, text, size, overlap)


def document_key(file: str | Path) -> str:
    """The key of the document `file` in a collection: its resolved path."""
    return Path(file).resolve().as_posix()


def _file_chunks(file: Path, text: str, size: int, overlap: int) -> Iterator[SourceChunk]:
    source = file.as_posix()
    title = _markdown_title(text) if file.suffix.lower() in (".md", ".markdown") else None
    key = document_key(file)
    for index, chunk in enumerate(chunk_text(text, size=size, overlap=overlap)):
        metadata: dict[str, Scalar] = {"source": source, "chunk": index}
        if title:
            metadata["title"] = title
        # Ids follow the content, not the path: a copy of a file shares its chunks.
        digest = content_hash(chunk, title)
        yield SourceChunk(digest[:32], chunk, source, metadata, key, digest)


def _markdown_title(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip() or None
    return None


def _jsonl_chunks(
    file: Path, text: str, size: int, overlap: int, on_bad_row: Callable[[BadRow], None]
) -> Iterator[SourceChunk]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            on_bad_row(BadRow(str(file), number, f"not valid JSON: {exc}"))
            continue
        problem = _row_problem(row)
        if problem:
            on_bad_row(BadRow(str(file), number, problem))
            continue
        yield from _row_chunks(file, number, row, size, overlap)


def _row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return f"a row must be a JSON object with a 'text' field, got {type(row).__name__}"
    text = row.get("text")
    if text is None:
        return "no 'text' field: each row needs the passage to index in 'text'"
    if not isinstance(text, str) or not text.strip():
        return f"'text' must be a non-empty string, got {text!r:.60}"
    row_id = row.get("id")
    if row_id is not None and (isinstance(row_id, bool) or not isinstance(row_id, str | int)):
        return f"'id' must be a string or an integer, got {row_id!r:.60}"
    if isinstance(row_id, str) and not row_id.strip():
        return "'id' is empty: give a non-empty id or leave it out"
    return None


def _row_chunks(
    file: Path, number: int, row: dict[str, Any], size: int, overlap: int
) -> Iterator[SourceChunk]:
    fields = {
        key: value
        for key, value in row.items()
        if key not in ("text", "id") and isinstance(value, Scalar)
    }
    source = fields.get("source")
    source = source if isinstance(source, str) and source else file.as_posix()
    chunks = chunk_text(row["text"], size=size, overlap=overlap)
    row_id = row.get("id")
    key = document_key(file)
    for index, chunk in enumerate(chunks):
        # The line and the file are left out: rows added above a row do not make it new.
        digest = content_hash(chunk, row_id, fields)
        if row_id is None:
            chunk_id = digest[:32]
        else:
            chunk_id = str(row_id) if len(chunks) == 1 else f"{row_id}#{index}"
        metadata: dict[str, Scalar] = {"line": number, "chunk": index, **fields, "source": source}
        if row_id is not None:
            metadata["row_id"] = str(row_id)
        yield SourceChunk(chunk_id, chunk, source, metadata, key, digest)


# --- indexing ---------------------------------------------------------------------------------


def index_paths(
    paths: Iterable[str | Path],
    store: ChromaStore,
    embedders: Sequence[Embedder | str],
    *,
    chunk_size: int = 200,
    overlap: int = 40,
    batch_size: int = 64,
    prune: bool = False,
    on_progress: Callable[[IndexProgress], None] | None = None,
) -> IndexReport:
    """Read and chunk `paths`, and sync them into `store`, one collection per embedder.

    Each file is a document: unchanged ones are skipped without embedding, changed ones
    replace their chunks, and a file identical to one already indexed is stored once. With
    `prune`, documents under `paths` that were indexed before and are no longer found are
    deleted; without it they are kept and counted as `missing`. Files that cannot be read are
    left as they are. Example: `index_paths(["docs/"], ChromaStore(), ["minilm-l6"])`.
    See `index_chunks` for batches, progress and errors.
    """
    check_chunking(chunk_size, overlap)
    _check_batch_size(batch_size)
    models = _resolve(embedders)
    given = list(paths)
    files = source_files(given)
    bad_rows: list[BadRow] = []
    chunks = list(
        read_sources(files, chunk_size=chunk_size, overlap=overlap, on_bad_row=bad_rows.append)
    )
    found = {document_key(file) for file in files}
    unreadable = {document_key(row.file) for row in bad_rows if row.line is None}
    roots = [document_key(path) for path in given]

    def gone(key: str) -> bool:
        """Indexed from under `paths` before, and no longer a file to index (hidden ones stay)."""
        under = any(key == root or key.startswith(root.rstrip("/") + "/") for root in roots)
        return under and key not in found and not _indexable(Path(key))

    unique = drop_conflicts(chunks, lambda dropped, kept: _conflict(dropped, kept, bad_rows))
    report = IndexReport(files=len(files), chunks=len(chunks), bad_rows=bad_rows)
    for embedder in models:
        _sync_one(
            unique,
            len(chunks),
            store,
            embedder,
            _Sync(batch_size, found - unreadable, gone, prune),
            report,
            on_progress,
        )
    return report


def index_chunks(
    chunks: Iterable[SourceChunk],
    store: ChromaStore,
    embedders: Sequence[Embedder | str],
    *,
    batch_size: int = 64,
    on_progress: Callable[[IndexProgress], None] | None = None,
) -> IndexReport:
    """Embed `chunks` with each embedder and write them to its collection in `store`.

    Chunks already stored with the same content are not embedded again; a chunk whose id is
    stored with other content replaces it. The chunks of each `document` named are taken to
    be all of it: its chunks that are not among them are deleted. Each batch of `batch_size`
    is embedded and committed before the next (deletions come last), so an interrupted run
    keeps what it wrote and a rerun resumes. A batch that fails to embed is retried one chunk
    at a time; chunks that still fail are recorded in the report's `failed` and skipped.
    `on_progress` hears after every batch. Raises RetrievalError when the store fails, and
    ConfigError for a misconfigured embedder.
    """
    _check_batch_size(batch_size)
    models = _resolve(embedders)
    items = list(chunks)
    unique = drop_conflicts(items, _log_conflict)
    report = IndexReport(chunks=len(items))
    for embedder in models:
        sync = _Sync(batch_size, set(), None, False)
        _sync_one(unique, len(items), store, embedder, sync, report, on_progress)
    return report


def _indexable(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES and path.is_file()


def _conflict(dropped: SourceChunk, kept: SourceChunk, bad_rows: list[BadRow]) -> None:
    line = dropped.metadata.get("line")
    row = BadRow(
        dropped.document or dropped.source,
        line if isinstance(line, int) else None,
        f"id '{dropped.metadata.get('row_id', dropped.id)}' is already used by another "
        f"passage ({kept.source}): ids must be unique across the indexed files; skipped",
    )
    if row not in bad_rows:
        bad_rows.append(row)


def _log_conflict(dropped: SourceChunk, kept: SourceChunk) -> None:
    logger.warning(
        "skipped chunk %r from %s: its id is already used by other text from %s",
        dropped.id,
        dropped.source,
        kept.source,
    )


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(
            f"batch_size must be a positive integer (--batch-size), got {batch_size!r}"
        )


def _resolve(embedders: Sequence[Embedder | str]) -> list[Embedder]:
    if isinstance(embedders, str):
        embedders = [name.strip() for name in embedders.split(",") if name.strip()]
    resolved: dict[str, Embedder] = {}
    for embedder in embedders:
        model = shared_embedder(embedder) if isinstance(embedder, str) else embedder
        resolved.setdefault(model.name, model)
    if not resolved:
        raise ConfigError("embedders is empty: name at least one, e.g. --embedders minilm-l6")
    return list(resolved.values())


@dataclass(frozen=True)
class _Sync:
    """How to sync: the batch size, the documents read in full, which are gone, prune or not."""

    batch_size: int
    read: set[str]
    gone: Callable[[str], bool] | None
    prune: bool


# Chunks fetched, relabelled or deleted per call: well under chroma's batch limit (5461).
_PAGE = 1000


def _sync_one(
    chunks: list[SourceChunk],
    given: int,
    store: ChromaStore,
    embedder: Embedder,
    sync: _Sync,
    report: IndexReport,
    on_progress: Callable[[IndexProgress], None] | None,
) -> None:
    from demur.retrieval.chroma import DemurEmbeddingFunction

    name = embedder.name
    function = DemurEmbeddingFunction(embedder)
    collection = store.collection(embedder, create=True)
    where = f"the chroma collection '{collection.name}' in {store.location}"
    plan = plan_sync(
        chunks, _stored(collection, where), read=sync.read, gone=sync.gone, prune=sync.prune
    )
    report.documents[name] = plan.documents
    report.added[name] = 0
    report.skipped[name] = given - len(plan.embed)
    report.deleted[name] = 0
    total = len(plan.embed)
    if on_progress:
        on_progress(IndexProgress(name, 0, total))
    for start in range(0, total, sync.batch_size):
        batch = plan.embed[start : start + sync.batch_size]
        metadata = {chunk.id: written for chunk, written in batch}
        kept, vectors = _embed(function, [chunk for chunk, _ in batch], report)
        if kept:
            _write(
                where,
                f"write {len(kept)} chunks to",
                collection.upsert,
                ids=[chunk.id for chunk in kept],
                documents=[chunk.text for chunk in kept],
                metadatas=[metadata[chunk.id] for chunk in kept],
                embeddings=vectors,
            )
            report.added[name] += len(kept)
        if on_progress:
            on_progress(IndexProgress(name, start + len(batch), total))
    for start in range(0, len(plan.relabel), _PAGE):
        page = plan.relabel[start : start + _PAGE]
        _write(
            where,
            f"update the metadata of {len(page)} chunks in",
            collection.update,
            ids=[chunk_id for chunk_id, _ in page],
            metadatas=[written for _, written in page],
        )
    for start in range(0, len(plan.delete), _PAGE):
        ids = plan.delete[start : start + _PAGE]
        _write(where, f"delete {len(ids)} chunks from", collection.delete, ids=ids)
        report.deleted[name] += len(ids)


def _stored(collection: Any, where: str) -> list[StoredChunk]:
    """Every chunk's id and metadata in `collection`, page by page."""
    stored: list[StoredChunk] = []
    try:
        while True:
            page = collection.get(include=["metadatas"], limit=_PAGE, offset=len(stored))
            metadatas = page.get("metadatas") or [None] * len(page["ids"])
            stored += [
                StoredChunk(chunk_id, metadata or {})
                for chunk_id, metadata in zip(page["ids"], metadatas, strict=True)
            ]
            if len(page["ids"]) < _PAGE:
                return stored
    except Exception as exc:
        raise RetrievalError(
            f"could not read the chunks of {where}: {type(exc).__name__}: {exc}"
        ) from exc


def _write(where: str, what: str, method: Callable[..., object], **arguments: Any) -> None:
    try:
        method(**arguments)
    except Exception as exc:
        raise RetrievalError(
            f"could not {what} {where}: {type(exc).__name__}: {exc}. What was written before "
            "is kept; rerun to resume"
        ) from exc


def _embed(
    function: DemurEmbeddingFunction, chunks: list[SourceChunk], report: IndexReport
) -> tuple[list[SourceChunk], list[Any]]:
    """The chunks that embedded and their vectors; a failed batch is retried chunk by chunk."""
    if not chunks:
        return [], []
    try:
        return chunks, list(function([chunk.text for chunk in chunks]))
    except ConfigError:
        raise  # a missing package or a wrong setting fails every chunk alike
    except Exception:
        pass
    kept: list[SourceChunk] = []
    vectors: list[Any] = []
    for chunk in chunks:
        try:
            vectors.extend(function([chunk.text]))
        except ConfigError:
            raise
        except Exception as exc:
            report.failed.append(
                FailedChunk(
                    function.embedder_name, chunk.id, chunk.source, f"{type(exc).__name__}: {exc}"
                )
            )
            continue
        kept.append(chunk)
    return kept, vectors
