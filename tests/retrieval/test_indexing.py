"""Reading sources, indexing them resumably into chroma, and the `demur index` command."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("chromadb")

import demur.adapters.embeddings
import demur.embedders
from demur.adapters.embeddings import BUILTIN_EMBEDDERS, Embedder, EmbeddingError
from demur.cli import main
from demur.errors import ConfigError, MissingDependencyError
from demur.retrieval import (
    BadRow,
    ChromaStore,
    IndexProgress,
    SourceChunk,
    index_chunks,
    index_paths,
    read_sources,
    source_files,
)
from tests.retrieval import Counting, real_embedder, requires

CATS = "Cats are small carnivorous mammals that many people keep as pets."
PARIS = "Paris is the capital and largest city of France."


@pytest.fixture(scope="session", autouse=True)
def embedder_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder for the session, so mpnet is extracted there and not into ~/.cache."""
    path = tmp_path_factory.mktemp("demur-cache")
    previous = os.environ.get("DEMUR_CACHE_DIR")
    os.environ["DEMUR_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("DEMUR_CACHE_DIR", None)
    else:
        os.environ["DEMUR_CACHE_DIR"] = previous


def _jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.write_text(
        "\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A folder of .md, .txt and .jsonl sources (one bad row), with things to leave out."""
    root = tmp_path / "docs"
    (root / "animals").mkdir(parents=True)
    (root / "animals" / "cats.md").write_text(f"# Cats\n\n{CATS}\n", encoding="utf-8")
    (root / "france.txt").write_text(PARIS, encoding="utf-8")
    _jsonl(
        root / "facts.jsonl",
        [
            {"id": "everest", "text": "Mount Everest is the highest mountain on Earth.", "km": 8.8},
            {"title": "a row without text"},
            {"text": "Python is a programming language by Guido van Rossum.", "tags": ["x"]},
        ],
    )
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.txt").write_text("not indexed", encoding="utf-8")
    (root / "image.png").write_bytes(b"\x89PNG")
    return root


def _ids(store: ChromaStore, embedder: str) -> list[str]:
    return sorted(store.collection(embedder).get(include=[])["ids"])


# --- reading --------------------------------------------------------------------------------


def test_read_sources_reads_text_markdown_and_jsonl_recursively(corpus: Path) -> None:
    bad: list[BadRow] = []
    chunks = list(read_sources([corpus], on_bad_row=bad.append))
    by_source = {chunk.source.rsplit("/", 1)[-1]: chunk for chunk in chunks}
    assert sorted(by_source) == ["cats.md", "facts.jsonl", "france.txt"]
    assert len(chunks) == 4
    cats = by_source["cats.md"]
    assert cats.text == f"# Cats\n\n{CATS}"
    assert cats.metadata == {"source": cats.source, "chunk": 0, "title": "Cats"}
    assert cats.source == (corpus / "animals" / "cats.md").as_posix()
    everest = next(chunk for chunk in chunks if chunk.id == "everest")
    assert everest.metadata == {
        "line": 1,
        "chunk": 0,
        "km": 8.8,
        "source": (corpus / "facts.jsonl").as_posix(),
        "row_id": "everest",
    }
    python = next(chunk for chunk in chunks if chunk.text.startswith("Python"))
    assert "tags" not in python.metadata  # lists are not chroma metadata
    assert python.metadata["line"] == 3
    assert bad == [BadRow(str(corpus / "facts.jsonl"), 2, bad[0].message)]
    assert "no 'text' field" in bad[0].message
    assert str(bad[0]).startswith(f"{corpus / 'facts.jsonl'}:2: ")


def test_ids_are_stable_and_follow_the_text(corpus: Path) -> None:
    first = [chunk.id for chunk in read_sources([corpus])]
    assert [chunk.id for chunk in read_sources([corpus])] == first
    assert len(set(first)) == len(first)
    (corpus / "france.txt").write_text(PARIS + " It lies on the Seine.", encoding="utf-8")
    changed = [chunk.id for chunk in read_sources([corpus])]
    assert len(set(first) - set(changed)) == 1  # only the edited file's chunk has a new id
    assert "everest" in changed


def test_the_same_text_in_another_file_shares_its_ids_but_not_its_document(
    tmp_path: Path,
) -> None:
    for name in ("a.txt", "b.txt", "c.txt", "d.md"):
        (tmp_path / name).write_text(f"# Cats\n\n{CATS}", encoding="utf-8")
    a, b, c, d = read_sources([tmp_path])
    assert a.text == b.text == d.text
    assert a.id == b.id == c.id  # stored once
    assert a.document == (tmp_path / "a.txt").resolve().as_posix()
    assert len({a.document, b.document, c.document}) == 3
    assert d.id != a.id  # the markdown file's chunks carry its title


def test_ids_follow_the_chunking(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(" ".join(f"w{i}" for i in range(30)), encoding="utf-8")
    small = [chunk.id for chunk in read_sources([tmp_path], chunk_size=10, overlap=2)]
    large = [chunk.id for chunk in read_sources([tmp_path], chunk_size=20, overlap=2)]
    assert not set(small) & set(large)


def test_a_long_row_splits_into_numbered_chunks(tmp_path: Path) -> None:
    words = " ".join(f"w{i}" for i in range(25))
    rows = [{"id": 7, "text": words, "source": "https://example.org/doc", "title": "Doc"}]
    chunks = list(read_sources([_jsonl(tmp_path / "rows.jsonl", rows)], chunk_size=10, overlap=2))
    assert [chunk.id for chunk in chunks] == ["7#0", "7#1", "7#2"]
    assert {chunk.source for chunk in chunks} == {"https://example.org/doc"}
    assert [chunk.metadata["chunk"] for chunk in chunks] == [0, 1, 2]
    assert chunks[0].metadata["title"] == "Doc"


def test_unusable_rows_are_reported_with_file_and_line_and_skipped(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "rows.jsonl",
        [
            {"text": "fine"},
            "{not json",
            "[1, 2]",
            {"text": ""},
            {"text": 3},
            {"id": ["a"], "text": "bad id"},
            {"id": " ", "text": "blank id"},
            {"id": True, "text": "boolean id"},
            "",
            {"text": "also fine", "id": "last"},
        ],
    )
    bad: list[BadRow] = []
    chunks = list(read_sources([path], on_bad_row=bad.append))
    assert [chunk.text for chunk in chunks] == ["fine", "also fine"]
    assert [(row.file, row.line) for row in bad] == [(str(path), n) for n in (2, 3, 4, 5, 6, 7, 8)]
    messages = [row.message for row in bad]
    assert "not valid JSON" in messages[0]
    assert "JSON object" in messages[1]
    assert all("'text' must be a non-empty string" in m for m in messages[2:4])
    assert all("'id'" in m for m in messages[4:])


def test_bad_rows_are_logged_when_nobody_listens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _jsonl(tmp_path / "rows.jsonl", [{"title": "no text"}])
    assert list(read_sources([path])) == []
    assert f"{path}:1: no 'text' field" in caplog.text


def test_an_undecodable_file_is_a_bad_row(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "ok.txt").write_text("fine", encoding="utf-8")
    bad: list[BadRow] = []
    assert [chunk.text for chunk in read_sources([tmp_path], on_bad_row=bad.append)] == ["fine"]
    assert bad[0].line is None
    assert "cannot read the file" in str(bad[0])


def test_paths_that_cannot_be_indexed_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder"):
        source_files([tmp_path / "missing"])
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    with pytest.raises(ConfigError, match=r"cannot index .*notes.pdf: demur reads .txt, .md"):
        source_files([tmp_path / "notes.pdf"])
    with pytest.raises(ConfigError, match="no .txt, .md, .markdown, .jsonl file to index"):
        source_files([tmp_path])
    with pytest.raises(ConfigError, match="overlap=50 with size=50"):
        read_sources([tmp_path], chunk_size=50, overlap=50)  # checked before reading


def test_markdown_suffixes_and_titles(tmp_path: Path) -> None:
    (tmp_path / "a.markdown").write_text("Intro line.\n\n# Real Title\n\nBody.", "utf-8")
    (tmp_path / "B.MD").write_text("#not a heading\n\nBody.", "utf-8")
    (tmp_path / "c.txt").write_text("# looks like a heading", "utf-8")
    chunks = {Path(chunk.source).name: chunk for chunk in read_sources([tmp_path])}
    assert sorted(chunks) == ["B.MD", "a.markdown", "c.txt"]
    assert chunks["a.markdown"].metadata["title"] == "Real Title"
    assert "title" not in chunks["B.MD"].metadata
    assert "title" not in chunks["c.txt"].metadata


def test_a_file_given_twice_is_read_once(corpus: Path) -> None:
    files = source_files([corpus, corpus / "france.txt", corpus / "animals"])
    assert len(files) == 3


# --- indexing -------------------------------------------------------------------------------


@requires("minilm-l6")
def test_index_then_reindex_adds_nothing_twice(corpus: Path, tmp_path: Path) -> None:
    store = ChromaStore(tmp_path / "chroma")
    events: list[IndexProgress] = []
    report = index_paths([corpus], store, ["minilm-l6"], batch_size=3, on_progress=events.append)
    assert (report.files, report.chunks) == (3, 4)
    assert report.added == {"minilm-l6": 4}
    assert report.skipped == {"minilm-l6": 0}
    assert report.failed == []
    assert [(row.line, "no 'text' field" in row.message) for row in report.bad_rows] == [(2, True)]
    assert [(e.done, e.total) for e in events] == [(0, 4), (3, 4), (4, 4)]
    ids = _ids(store, "minilm-l6")
    assert len(ids) == 4

    again = index_paths([corpus], store, ["minilm-l6"])
    assert again.added == {"minilm-l6": 0}
    assert again.skipped == {"minilm-l6": 4}
    assert _ids(store, "minilm-l6") == ids

    (corpus / "more.txt").write_text("Mount Fuji is the highest mountain in Japan.", "utf-8")
    third = index_paths([corpus], store, ["minilm-l6"])
    assert (third.added, third.skipped) == ({"minilm-l6": 1}, {"minilm-l6": 4})
    top = store.retriever("minilm-l6").retrieve("What is the tallest mountain in Japan?", 2)
    assert top[0].text.startswith("Mount Fuji")
    assert top[0].source == (corpus / "more.txt").as_posix()


@requires("minilm-l6")
def test_repeated_chunks_in_one_run_are_added_once(tmp_path: Path) -> None:
    store = ChromaStore(tmp_path / "chroma")
    chunk = SourceChunk("same", CATS, "a.txt", {"source": "a.txt"})
    report = index_chunks([chunk, chunk, chunk], store, ["minilm-l6"], batch_size=2)
    assert (report.added, report.skipped) == ({"minilm-l6": 1}, {"minilm-l6": 2})
    assert store.count("minilm-l6") == 1


class Interrupted:
    """A real embedder that is interrupted (as by Ctrl-C) on its `at`-th call."""

    def __init__(self, inner: Embedder, at: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.at = at
        self.calls = 0

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.inner.embed(texts, kind=kind)


class Poisoned:
    """A real embedder that fails on any text containing POISON."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        if any("POISON" in text for text in texts):
            raise EmbeddingError("the tokenizer choked on POISON", model=self.name)
        return self.inner.embed(texts, kind=kind)


def _numbered(n: int) -> list[SourceChunk]:
    facts = [f"Fact number {i}: the {i}th planet has {i} moons." for i in range(n)]
    return [SourceChunk(f"fact-{i}", text, "facts.txt", {"n": i}) for i, text in enumerate(facts)]


@requires("minilm-l6")
def test_an_interrupted_run_keeps_its_batches_and_a_rerun_completes_them(tmp_path: Path) -> None:
    store = ChromaStore(tmp_path / "chroma")
    chunks = _numbered(10)
    minilm = real_embedder("minilm-l6")
    with pytest.raises(KeyboardInterrupt):
        index_chunks(chunks, store, [Interrupted(minilm, at=3)], batch_size=3)
    assert _ids(store, "minilm-l6") == sorted(f"fact-{i}" for i in range(6))

    resumed = index_chunks(chunks, store, [minilm], batch_size=3)
    assert (resumed.added, resumed.skipped) == ({"minilm-l6": 4}, {"minilm-l6": 6})
    assert _ids(store, "minilm-l6") == sorted(chunk.id for chunk in chunks)
    found = store.retriever(minilm).retrieve("How many moons has the 8th planet?", 1)
    assert found[0].metadata == {"n": 8, "source": "facts.txt"}


@requires("minilm-l6")
def test_a_chunk_that_fails_to_embed_is_recorded_and_the_rest_indexed(tmp_path: Path) -> None:
    store = ChromaStore(tmp_path / "chroma")
    chunks = _numbered(7)
    chunks[4] = SourceChunk("poison", "POISON in this one", "bad.txt", {})
    minilm = real_embedder("minilm-l6")
    report = index_chunks(chunks, store, [Poisoned(minilm)], batch_size=3)
    assert report.added == {"minilm-l6": 6}
    [failed] = report.failed
    assert (failed.embedder, failed.id, failed.source) == ("minilm-l6", "poison", "bad.txt")
    assert "EmbeddingError" in failed.error and "POISON" in failed.error
    assert "poison" not in _ids(store, "minilm-l6")
    assert store.count("minilm-l6") == 6

    fixed = index_chunks(chunks, store, [minilm], batch_size=3)
    assert (fixed.added, fixed.failed) == ({"minilm-l6": 1}, [])
    assert store.count("minilm-l6") == 7


def test_a_misconfigured_embedder_stops_the_run_instead_of_failing_every_chunk(
    tmp_path: Path,
) -> None:
    class Unconfigured:
        name = "needs-a-package"
        dimension = 4

        def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
            raise MissingDependencyError("somepackage", "embeddings", "This embedder")

    with pytest.raises(MissingDependencyError, match="pip install 'demur\\[embeddings\\]'"):
        index_chunks(_numbered(3), ChromaStore(tmp_path), [Unconfigured()])


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    store = ChromaStore(tmp_path)
    for batch_size in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
            index_chunks([], store, ["minilm-l6"], batch_size=batch_size)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="embedders is empty"):
        index_chunks([], store, [])
    with pytest.raises(ConfigError, match="unknown embedder 'minilm'"):
        index_chunks([], store, ["minilm"])
    with pytest.raises(ConfigError, match="overlap=9 with size=5"):
        index_paths([tmp_path], store, ["minilm-l6"], chunk_size=5, overlap=9)


# --- demur index ----------------------------------------------------------------------------


def _counts(out: str) -> list[str]:
    """The number columns of the summary table's minilm-l6 row: files added, updated, removed,
    unchanged; chunks embedded, deleted, failed, in collection."""
    row = next(line for line in out.splitlines() if "demur-minilm-l6" in line)
    return [cell.strip() for cell in row.split("│")[3:11]]


@requires("minilm-l6")
def test_demur_index_indexes_syncs_and_prunes(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "chroma"
    argv = ["index", str(corpus), "--embedders", "minilm-l6", "--store", str(store)]
    assert main([*argv, "--batch-size", "2", "--chunk-size", "50", "--overlap", "5"]) == 0
    out = capsys.readouterr().out
    assert "3 file(s), 4 chunk(s)" in out
    assert "demur-minilm-l6" in out
    assert "skipped" in out and "facts.jsonl:2: no 'text' field" in out
    assert _counts(out) == ["3", "0", "0", "0", "4", "0", "0", "4"]

    assert main(argv) == 0  # other chunk sizes, but the same (short) chunks
    assert _counts(capsys.readouterr().out) == ["0", "0", "0", "3", "0", "0", "0", "4"]

    (corpus / "france.txt").write_text(PARIS + " It lies on the Seine.", encoding="utf-8")
    (corpus / "animals" / "cats.md").unlink()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert _counts(out) == ["0", "1", "0", "1", "1", "1", "0", "4"]
    assert "1 file(s) indexed from under these paths before are gone" in " ".join(out.split())
    assert main([*argv, "--prune"]) == 0
    out = capsys.readouterr().out
    assert _counts(out) == ["0", "0", "1", "2", "0", "1", "0", "3"]
    assert "--prune" not in out
    texts = ChromaStore(store).collection("minilm-l6").get()["documents"] or []
    assert [text for text in texts if "Paris" in text] == [PARIS + " It lies on the Seine."]
    assert not any("Cats" in text for text in texts)


@requires("minilm-l6")
def test_demur_index_prints_progress_lines_without_a_terminal(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["index", str(corpus), "--embedders", "minilm-l6", "--store", str(tmp_path / "db")]
    assert main([*argv, "--batch-size", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if line.startswith("embedding with minilm-l6: ")]
    assert [line.split(",")[0] for line in progress] == [
        "embedding with minilm-l6: 0/4 chunks (0%)",
        "embedding with minilm-l6: 1/4 chunks (25%)",
        "embedding with minilm-l6: 2/4 chunks (50%)",
        "embedding with minilm-l6: 3/4 chunks (75%)",
        "embedding with minilm-l6: 4/4 chunks (100%)",
    ]
    assert progress[-1].endswith("s")  # the time taken


def test_an_interrupted_demur_index_says_what_was_saved_and_how_to_resume(
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        demur.embedders, "shared_embedder", lambda name: Counting(name, interrupt_at=3)
    )
    store = tmp_path / "db"
    argv = ["index", str(corpus), "--embedders", "toy", "--store", str(store), "--batch-size", "1"]
    assert main(argv) == 130
    captured = capsys.readouterr()
    out = " ".join(captured.out.split())
    assert (
        f"interrupted: 2 of 4 chunk(s) to embed with toy were written to {store} and are kept. "
        "Rerun the same command to resume" in out
    )
    assert "demur: interrupted" in captured.err
    assert ChromaStore(store).count("toy") == 2

    monkeypatch.setattr(demur.embedders, "shared_embedder", lambda name: Counting(name))
    assert main(argv) == 0
    assert ChromaStore(store).count("toy") == 4


@requires(*BUILTIN_EMBEDDERS)
def test_demur_index_uses_every_built_in_embedder_by_default(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "chroma"
    assert main(["index", str(corpus / "france.txt"), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    for name in ("minilm-l6", "e5-small", "mpnet-base"):
        assert f"demur-{name}" in out
        assert ChromaStore(store).count(name) == 1
    documents = ChromaStore(store).retriever("e5-small").retrieve("capital of France", 1)
    assert documents[0].text == PARIS


@requires("minilm-l6")
def test_demur_index_exits_1_when_chunks_fail_to_embed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ok.txt").write_text(CATS, encoding="utf-8")
    (tmp_path / "bad.txt").write_text("POISON [here]", encoding="utf-8")
    monkeypatch.setattr(
        demur.embedders, "shared_embedder", lambda name: Poisoned(real_embedder(name))
    )
    code = main(
        ["index", str(tmp_path), "--embedders", "minilm-l6", "--store", str(tmp_path / "db")]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "failed to embed minilm-l6" in out and "POISON [here]" not in out
    assert "bad.txt" in out
    assert "1 chunk(s) failed to embed" in out
    assert ChromaStore(tmp_path / "db").count("minilm-l6") == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--embedders", "minilm,e5-small"], "unknown embedder 'minilm'"),
        (["--embedders", " , "], "--embedders is empty"),
        (["--chunk-size", "10", "--overlap", "10"], "lower --overlap or raise --chunk-size"),
        (["--batch-size", "0"], "--batch-size"),
        (["--url", "localhost:8000"], "url must look like http://host:port"),
    ],
)
def test_demur_index_usage_errors_exit_2_with_the_fix(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["index", str(corpus), "--store", str(tmp_path / "db"), *extra]
    if "--embedders" not in extra:
        argv += ["--embedders", "minilm-l6"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("demur: error: ")
    assert message in err


def test_demur_index_of_a_missing_path_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", str(tmp_path / "nope"), "--embedders", "minilm-l6"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
