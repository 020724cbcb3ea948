"""Read documents, chunk them, and add them to one chroma collection per embedding model.

Indexing is resumable: chunk ids are stable (a row's own id, else a hash of the file and the
chunk's text), ids already in a collection are skipped, and every batch is committed as it
goes. Re-running the same command after a crash, or after editing a few files, embeds only
what is new.
"""

from __future__ import annotations

import hashlib
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

if TYPE_CHECKING:
    from demur.retrieval.chroma import ChromaStore, DemurEmbeddingFunction

logger = logging.getLogger("demur.retrieval")

SUFFIXES = (".txt", ".md", ".markdown", ".jsonl")
Scalar = str | int | float | bool


@dataclass(frozen=True)
class SourceChunk:
    """One chunk to index: a stable `id`, its `text`, where it came from, and its metadata."""

    id: str
    text: str
    source: str
    metadata: dict[str, Scalar] = field(default_factory=dict)


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
    """How far indexing into one embedder's collection has got: `done` of `total` chunks."""

    embedder: str
    done: int
    total: int


@dataclass
class IndexReport:
    """What an indexing run did, per embedder: chunks added, already present, failed."""

    files: int = 0
    chunks: int = 0
    added: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    """Chunks already in the collection (from an earlier run, or repeated in this one)."""
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
    skipped. Paths and chunk sizes are checked before the first chunk is read.
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


def _hash_id(file: Path, text: str) -> str:
    key = f"{file.resolve().as_posix()}\n{text}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def _file_chunks(file: Path, text: str, size: int, overlap: int) -> Iterator[SourceChunk]:
    source = file.as_posix()
    title = _markdown_title(text) if file.suffix.lower() in (".md", ".markdown") else None
    for index, chunk in enumerate(chunk_text(text, size=size, overlap=overlap)):
        metadata: dict[str, Scalar] = {"source": source, "chunk": index}
        if title:
            metadata["title"] = title
        yield SourceChunk(_hash_id(file, chunk), chunk, source, metadata)


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
    for index, chunk in enumerate(chunks):
        if row_id is None:
            chunk_id = _hash_id(file, chunk)
        else:
            chunk_id = str(row_id) if len(chunks) == 1 else f"{row_id}#{index}"
        metadata: dict[str, Scalar] = {"line": number, "chunk": index, **fields, "source": source}
        if row_id is not None:
            metadata["row_id"] = str(row_id)
        yield SourceChunk(chunk_id, chunk, source, metadata)


# --- indexing ---------------------------------------------------------------------------------


def index_paths(
    paths: Iterable[str | Path],
    store: ChromaStore,
    embedders: Sequence[Embedder | str],
    *,
    chunk_size: int = 200,
    overlap: int = 40,
    batch_size: int = 64,
    on_progress: Callable[[IndexProgress], None] | None = None,
) -> IndexReport:
    """Read, chunk and index `paths` into `store`, one collection per embedder.

    Example: `index_paths(["docs/"], ChromaStore(), ["minilm-l6"])`. See `index_chunks`.
    """
    check_chunking(chunk_size, overlap)
    _check_batch_size(batch_size)
    models = _resolve(embedders)
    files = source_files(paths)
    bad_rows: list[BadRow] = []
    chunks = list(
        read_sources(files, chunk_size=chunk_size, overlap=overlap, on_bad_row=bad_rows.append)
    )
    report = index_chunks(chunks, store, models, batch_size=batch_size, on_progress=on_progress)
    report.files = len(files)
    report.bad_rows = bad_rows
    return report


def index_chunks(
    chunks: Iterable[SourceChunk],
    store: ChromaStore,
    embedders: Sequence[Embedder | str],
    *,
    batch_size: int = 64,
    on_progress: Callable[[IndexProgress], None] | None = None,
) -> IndexReport:
    """Embed `chunks` with each embedder and add them to its collection in `store`.

    Ids already in a collection are skipped; each batch of `batch_size` is embedded and
    committed before the next, so an interrupted run keeps what it added and a rerun resumes.
    A batch that fails to embed is retried one chunk at a time; chunks that still fail are
    recorded in the report's `failed` and skipped. `on_progress` hears after every batch.
    Raises RetrievalError when the store fails, and ConfigError for a misconfigured embedder.
    """
    _check_batch_size(batch_size)
    models = _resolve(embedders)
    items = list(chunks)
    report = IndexReport(chunks=len(items))
    for embedder in models:
        _index_one(items, store, embedder, batch_size, report, on_progress)
    return report


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


def _index_one(
    chunks: list[SourceChunk],
    store: ChromaStore,
    embedder: Embedder,
    batch_size: int,
    report: IndexReport,
    on_progress: Callable[[IndexProgress], None] | None,
) -> None:
    from demur.retrieval.chroma import DemurEmbeddingFunction

    name = embedder.name
    report.added.setdefault(name, 0)
    report.skipped.setdefault(name, 0)
    function = DemurEmbeddingFunction(embedder)
    collection = store.collection(embedder, create=True)
    where = f"the chroma collection '{collection.name}' in {store.location}"
    seen: set[str] = set()
    if on_progress:
        on_progress(IndexProgress(name, 0, len(chunks)))
    for start in range(0, len(chunks), batch_size):
        batch = chunks[start : start + batch_size]
        fresh = list({chunk.id: chunk for chunk in batch if chunk.id not in seen}.values())
        seen.update(chunk.id for chunk in batch)
        try:
            present = (
                set(collection.get(ids=[c.id for c in fresh], include=[])["ids"])
                if fresh
                else set()
            )
        except Exception as exc:
            raise RetrievalError(
                f"could not look up chunk ids in {where}: {type(exc).__name__}: {exc}"
            ) from exc
        new = [chunk for chunk in fresh if chunk.id not in present]
        report.skipped[name] += len(batch) - len(new)
        kept, vectors = _embed(function, new, report)
        if kept:
            try:
                collection.add(
                    ids=[chunk.id for chunk in kept],
                    documents=[chunk.text for chunk in kept],
                    metadatas=[{**chunk.metadata, "source": chunk.source} for chunk in kept],
                    embeddings=vectors,
                )
            except Exception as exc:
                raise RetrievalError(
                    f"could not add {len(kept)} chunks to {where}: {type(exc).__name__}: "
                    f"{exc}. What was added before is kept; rerun to resume"
                ) from exc
            report.added[name] += len(kept)
        if on_progress:
            on_progress(IndexProgress(name, start + len(batch), len(chunks)))


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
