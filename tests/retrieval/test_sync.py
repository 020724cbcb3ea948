"""Indexing keeps each collection in step with its files: edits replace, copies are stored once,
removed files are pruned, counts are reported, and interrupted runs resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("chromadb")

from demur.retrieval import (
    ChromaStore,
    DocumentCounts,
    SourceChunk,
    index_chunks,
    index_paths,
)
from demur.retrieval.sync import CONTENT_HASH, DOCUMENTS, StoredChunk, plan_sync
from tests.retrieval import Counting, real_embedder, requires

CATS = "Cats are small carnivorous mammals that many people keep as pets."
PARIS = "Paris is the capital and largest city of France."
RHINE = "The Rhine flows from the Swiss Alps to the North Sea."


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "kb" / "docs"
    root.mkdir(parents=True)
    (root / "cats.txt").write_text(CATS, encoding="utf-8")
    (root / "paris.txt").write_text(PARIS, encoding="utf-8")
    return root


@pytest.fixture
def store(tmp_path: Path) -> ChromaStore:
    return ChromaStore(tmp_path / "chroma")


def _stored(store: ChromaStore, name: str = "toy") -> dict[str, dict[str, object]]:
    """Each stored text with its metadata."""
    got = store.collection(name).get(include=["documents", "metadatas"])
    return {
        text: dict(metadata or {})
        for text, metadata in zip(got["documents"] or [], got["metadatas"] or [], strict=True)
    }


def _key(path: Path) -> str:
    return path.resolve().as_posix()


def test_an_edited_file_replaces_its_passage_and_only_it_is_embedded(
    docs: Path, store: ChromaStore
) -> None:
    first = Counting()
    report = index_paths([docs], store, [first])
    assert report.documents == {"toy": DocumentCounts(added=2)}
    assert sorted(first.texts) == sorted([CATS, PARIS])

    (docs / "paris.txt").write_text(PARIS + " It lies on the Seine.", encoding="utf-8")
    second = Counting()
    report = index_paths([docs], store, [second])
    assert report.documents == {"toy": DocumentCounts(updated=1, unchanged=1)}
    assert second.texts == [PARIS + " It lies on the Seine."]  # the cat file is not embedded
    assert (report.added, report.deleted) == ({"toy": 1}, {"toy": 1})
    assert sorted(_stored(store)) == sorted([CATS, PARIS + " It lies on the Seine."])

    third = Counting()
    report = index_paths([docs], store, [third])
    assert report.documents == {"toy": DocumentCounts(unchanged=2)}
    assert third.texts == []
    assert (report.added, report.skipped, report.deleted) == ({"toy": 0}, {"toy": 2}, {"toy": 0})


@requires("minilm-l6")
def test_after_an_edit_only_the_new_passage_is_retrieved(docs: Path, store: ChromaStore) -> None:
    minilm = real_embedder("minilm-l6")
    index_paths([docs], store, [minilm])
    (docs / "paris.txt").write_text(
        "Paris was the capital of France until the government moved to Lyon.", encoding="utf-8"
    )
    index_paths([docs], store, [minilm])
    found = store.retriever(minilm).retrieve("What is the capital of France?", 5)
    assert [document.text for document in found if "Paris" in document.text] == [
        "Paris was the capital of France until the government moved to Lyon."
    ]
    assert len(found) == 2
    assert not {DOCUMENTS, CONTENT_HASH} & set(found[0].metadata)  # bookkeeping stays inside


def test_a_copy_of_the_folder_is_stored_once_and_kept_while_either_holds_it(
    docs: Path, store: ChromaStore
) -> None:
    root = docs.parent
    index_paths([docs], store, [Counting()])
    copy = root / "copy"
    shutil.copytree(docs, copy)
    embedder = Counting()
    report = index_paths([copy], store, [embedder])
    assert report.documents == {"toy": DocumentCounts(added=2)}
    assert embedder.texts == []
    assert store.count("toy") == 2
    assert _stored(store)[CATS][DOCUMENTS] == [_key(docs / "cats.txt"), _key(copy / "cats.txt")]
    assert _stored(store)[CATS]["source"] == (docs / "cats.txt").as_posix()  # the first's

    # The original changes: the copy still holds the old text, so it stays.
    (docs / "cats.txt").write_text(RHINE, encoding="utf-8")
    report = index_paths([docs], store, [Counting()])
    assert report.documents == {"toy": DocumentCounts(updated=1, unchanged=1)}
    assert _stored(store)[CATS][DOCUMENTS] == [_key(copy / "cats.txt")]
    assert store.count("toy") == 3

    # The copy is deleted and pruned: its old cat text goes, the shared Paris text stays.
    shutil.rmtree(copy)
    report = index_paths([root], store, [Counting()], prune=True)
    assert report.documents == {"toy": DocumentCounts(removed=2, unchanged=2)}
    assert sorted(_stored(store)) == sorted([PARIS, RHINE])
    assert _stored(store)[PARIS][DOCUMENTS] == [_key(docs / "paris.txt")]


def test_identical_files_in_one_run_are_embedded_once(docs: Path, store: ChromaStore) -> None:
    (docs / "cats-again.txt").write_text(CATS, encoding="utf-8")
    embedder = Counting()
    report = index_paths([docs], store, [embedder])
    assert report.documents == {"toy": DocumentCounts(added=3)}
    assert sorted(embedder.texts) == sorted([CATS, PARIS])
    assert (report.added, report.skipped) == ({"toy": 2}, {"toy": 1})
    assert store.count("toy") == 2


def test_a_removed_file_is_kept_and_counted_missing_until_pruned(
    docs: Path, store: ChromaStore
) -> None:
    index_paths([docs], store, [Counting()])
    (docs / "paris.txt").unlink()
    report = index_paths([docs], store, [Counting()])
    assert report.documents == {"toy": DocumentCounts(unchanged=1, missing=1)}
    assert PARIS in _stored(store)

    report = index_paths([docs], store, [Counting()], prune=True)
    assert report.documents == {"toy": DocumentCounts(unchanged=1, removed=1)}
    assert (report.deleted, store.count("toy")) == ({"toy": 1}, 1)
    assert list(_stored(store)) == [CATS]


def test_prune_stays_under_the_indexed_paths(
    docs: Path, tmp_path: Path, store: ChromaStore
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "rhine.txt").write_text(RHINE, encoding="utf-8")
    index_paths([docs, other], store, [Counting()])
    (other / "rhine.txt").unlink()
    report = index_paths([docs], store, [Counting()], prune=True)
    assert report.documents == {"toy": DocumentCounts(unchanged=2)}
    assert RHINE in _stored(store)  # other/ was not indexed this time: not pruned


def test_a_file_that_cannot_be_read_keeps_its_passages(docs: Path, store: ChromaStore) -> None:
    index_paths([docs], store, [Counting()])
    (docs / "paris.txt").write_bytes("Paris, café".encode("latin-1"))
    report = index_paths([docs], store, [Counting()], prune=True)
    assert "cannot read the file" in str(report.bad_rows[0])
    assert report.documents == {"toy": DocumentCounts(unchanged=1)}
    assert PARIS in _stored(store)


def _rows(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def test_jsonl_rows_are_synced_row_by_row(tmp_path: Path, store: ChromaStore) -> None:
    path = tmp_path / "facts.jsonl"
    rows: list[dict[str, object]] = [
        {"id": "paris", "text": PARIS},
        {"text": CATS, "topic": "pets"},
        {"text": RHINE},
    ]
    _rows(path, rows)
    index_paths([path], store, [Counting()])

    # A row added above, one edited (by id), one removed, one's field changed.
    _rows(
        path,
        [
            {"text": "Mount Fuji is in Japan."},
            {"id": "paris", "text": PARIS + " It lies on the Seine."},
            {"text": CATS, "topic": "animals"},
        ],
    )
    embedder = Counting()
    report = index_paths([path], store, [embedder])
    assert sorted(embedder.texts) == sorted(
        ["Mount Fuji is in Japan.", PARIS + " It lies on the Seine.", CATS]
    )
    assert report.documents == {"toy": DocumentCounts(updated=1)}
    stored = _stored(store)
    assert sorted(stored) == sorted(
        ["Mount Fuji is in Japan.", PARIS + " It lies on the Seine.", CATS]
    )
    assert stored[CATS]["topic"] == "animals" and stored[CATS]["line"] == 3
    assert store.collection("toy").get(ids=["paris"])["documents"] == [
        PARIS + " It lies on the Seine."
    ]

    # Moving rows changes their line, not their passage: relabelled, not embedded.
    _rows(path, [{"text": CATS, "topic": "animals"}, {"text": "Mount Fuji is in Japan."}])
    (tmp_path / "facts.jsonl").write_text(
        path.read_text(encoding="utf-8")
        + json.dumps({"id": "paris", "text": PARIS + " It lies on the Seine."})
        + "\n",
        encoding="utf-8",
    )
    embedder = Counting()
    report = index_paths([path], store, [embedder])
    assert embedder.texts == []
    assert report.documents == {"toy": DocumentCounts(unchanged=1)}
    assert _stored(store)[CATS]["line"] == 1


def test_an_id_given_twice_with_other_text_is_a_bad_row(tmp_path: Path, store: ChromaStore) -> None:
    _rows(tmp_path / "a.jsonl", [{"id": "x", "text": PARIS}])
    _rows(tmp_path / "b.jsonl", [{"id": "x", "text": CATS}, {"id": "y", "text": RHINE}])
    report = index_paths([tmp_path], store, [Counting()])
    [row] = report.bad_rows
    assert (Path(row.file).name, row.line) == ("b.jsonl", 1)
    assert "id 'x' is already used by another passage" in row.message
    assert sorted(_stored(store)) == sorted([PARIS, RHINE])


def test_an_interrupted_sync_keeps_what_it_wrote_and_a_rerun_finishes(
    docs: Path, store: ChromaStore
) -> None:
    (docs / "rhine.txt").write_text(RHINE, encoding="utf-8")
    index_paths([docs], store, [Counting()])
    for name in ("cats.txt", "paris.txt", "rhine.txt"):
        path = docs / name
        path.write_text(path.read_text(encoding="utf-8") + " (revised)", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        index_paths([docs], store, [Counting(interrupt_at=2)], batch_size=1)
    stored = _stored(store)
    assert len(stored) == 4  # one new passage written; the old ones go only at the end
    assert sum(text.endswith("(revised)") for text in stored) == 1

    embedder = Counting()
    report = index_paths([docs], store, [embedder], batch_size=1)
    assert len(embedder.texts) == 2  # the written one is not embedded again
    assert report.documents == {"toy": DocumentCounts(updated=3)}
    assert report.deleted == {"toy": 3}
    assert all(text.endswith("(revised)") for text in _stored(store))
    assert store.count("toy") == 3


def test_passages_of_an_older_index_are_replaced_not_doubled(
    docs: Path, store: ChromaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(docs.parent)
    old = Counting()
    # What an older demur wrote: ids from the path and text, the path as given, no bookkeeping.
    store.collection(old, create=True).add(
        ids=["0123456789abcdef0123456789abcdef"],
        documents=[CATS],
        metadatas=[{"source": "docs/cats.txt", "chunk": 0}],
        embeddings=old.embed([CATS]).tolist(),
    )
    report = index_paths([Path("docs")], store, [Counting()])
    assert report.documents == {"toy": DocumentCounts(added=1, updated=1)}
    assert sorted(_stored(store)) == sorted([CATS, PARIS])
    assert _stored(store)[CATS][DOCUMENTS] == [_key(docs / "cats.txt")]


def test_index_chunks_replaces_changed_chunks_and_deletes_nothing_untracked(
    store: ChromaStore,
) -> None:
    index_chunks(
        [SourceChunk("a", CATS, "hand", {"n": 1}), SourceChunk("b", PARIS, "hand")],
        store,
        [Counting()],
    )
    embedder = Counting()
    report = index_chunks([SourceChunk("a", RHINE, "hand")], store, [embedder])
    assert embedder.texts == [RHINE]
    assert (report.added, report.deleted) == ({"toy": 1}, {"toy": 0})
    stored = _stored(store)
    assert sorted(stored) == sorted([PARIS, RHINE])
    assert "n" not in stored[RHINE]  # the old metadata does not linger


def test_the_plan_for_a_shared_chunk_keeps_the_first_documents_metadata() -> None:
    a = SourceChunk("c1", CATS, "a.txt", {"chunk": 0}, "/a.txt", "h1")
    b = SourceChunk("c1", CATS, "b.txt", {"chunk": 0}, "/b.txt", "h1")
    stored = StoredChunk(
        "c1", {"source": "b.txt", "chunk": 0, CONTENT_HASH: "h1", DOCUMENTS: ["/b.txt"]}
    )
    plan = plan_sync([a, b], [stored])
    assert plan.embed == [] and plan.delete == []
    [(chunk_id, metadata)] = plan.relabel
    assert chunk_id == "c1"
    assert metadata[DOCUMENTS] == ["/b.txt", "/a.txt"]
    assert metadata["source"] == "b.txt"  # the document that held it first
    assert plan.documents == DocumentCounts(added=1, unchanged=1)
