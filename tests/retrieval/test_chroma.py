"""ChromaStore and ChromaRetriever against real chromadb stores and real embedders."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("chromadb")

import demur.retrieval
from demur.adapters.embeddings import Embedder, EmbeddingError
from demur.errors import ConfigError, EmptyCollectionError, RetrievalError
from demur.retrieval import ChromaRetriever, ChromaStore, DemurEmbeddingFunction, Retriever
from demur.types import Document
from tests.retrieval import real_embedder, requires

PASSAGES = {
    "paris": "Paris is the capital and largest city of France.",
    "everest": "Mount Everest, in the Himalayas, is the highest mountain above sea level.",
    "photosynthesis": "Photosynthesis lets plants turn sunlight, water and CO2 into sugar.",
    "python": "Python is a programming language first released by Guido van Rossum in 1991.",
    "cats": "Cats are small carnivorous mammals that many people keep as pets.",
}
QUESTIONS = {
    "What is the capital of France?": "paris",
    "Which mountain is the tallest in the world?": "everest",
    "How do plants make food from light?": "photosynthesis",
    "Who created the Python language?": "python",
}


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


@pytest.fixture
def store(tmp_path: Path) -> ChromaStore:
    return ChromaStore(tmp_path / "chroma")


def fill(store: ChromaStore, embedder: Embedder, passages: dict[str, str] = PASSAGES) -> None:
    """Add passages as chroma users do: documents only, embedded by the collection's function."""
    store.collection(embedder, create=True).add(
        ids=list(passages),
        documents=list(passages.values()),
        metadatas=[{"source": f"{key}.txt", "topic": key} for key in passages],
    )


class Recording:
    """A real embedder that remembers which kinds it was asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.kinds: list[str] = []

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        self.kinds.append(kind)
        return self.inner.embed(texts, kind=kind)


class Hashing:
    """A tiny deterministic embedder: unit vectors from a hash of the text (or a failure)."""

    def __init__(self, name: str, dimension: int, fail: bool = False) -> None:
        self.name = name
        self.dimension = dimension
        self.fail = fail

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        if self.fail:
            raise EmbeddingError("the model file is corrupt", model=self.name)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(f"{kind}:{text}".encode()).digest()[:4], "big")
            row = np.random.default_rng(seed).normal(size=self.dimension)
            rows.append(row / np.linalg.norm(row))
        return np.asarray(rows, dtype=np.float32)


def _check_ranking(documents: tuple[Document, ...], expected: str, name: str) -> None:
    assert documents[0].id == expected
    scores = [document.score for document in documents if document.score is not None]
    assert len(scores) == len(documents)
    assert all(-1.0 <= score <= 1.0 for score in scores)
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > scores[1] + 0.05
    top = documents[0]
    assert top.text == PASSAGES[expected]
    assert top.source == f"{expected}.txt"
    assert top.retriever == name
    assert top.metadata == {"source": f"{expected}.txt", "topic": expected}


# --- retrieval with real models -----------------------------------------------------------


@requires("minilm-l6")
def test_the_relevant_passage_comes_first_with_sorted_cosine_scores(store: ChromaStore) -> None:
    fill(store, real_embedder("minilm-l6"))
    retriever = store.retriever("minilm-l6")
    assert isinstance(retriever, Retriever)
    assert retriever.name == "minilm-l6"
    for question, expected in QUESTIONS.items():
        documents = retriever.retrieve(question, 3)
        assert len(documents) == 3
        _check_ranking(documents, expected, "minilm-l6")


@requires("minilm-l6")
async def test_aretrieve_gives_what_retrieve_gives(store: ChromaStore) -> None:
    embedder = real_embedder("minilm-l6")
    fill(store, embedder)
    retriever = store.retriever(embedder, cutoff=0.3)
    assert retriever.cutoff == 0.3
    retriever.cutoff = 0.4  # settable: a fitted cutoff is assigned after construction
    found = await retriever.aretrieve("What is the capital of France?", 2)
    assert found == retriever.retrieve("What is the capital of France?", 2)
    assert found[0].id == "paris"


@requires("minilm-l6")
def test_k_larger_than_the_collection_returns_every_passage(store: ChromaStore) -> None:
    fill(store, real_embedder("minilm-l6"))
    retriever = store.retriever("minilm-l6")
    assert {d.id for d in retriever.retrieve("capital of France", 50)} == set(PASSAGES)
    assert [d.id for d in retriever.retrieve("capital of France", 1)] == ["paris"]


@requires("e5-small")
def test_e5_scores_are_the_cosine_of_query_and_passage_embeddings(store: ChromaStore) -> None:
    e5 = real_embedder("e5-small")
    fill(store, e5)
    question = "Which mountain is the tallest in the world?"
    documents = store.retriever(e5).retrieve(question, 5)
    _check_ranking(documents, "everest", "e5-small")
    query = e5.embed([question], kind="query")[0]
    for document in documents:
        passage = e5.embed([document.text], kind="passage")[0]
        assert document.score == pytest.approx(float(query @ passage), abs=1e-4)
    # The kinds matter: E5 embeds the same text differently as a query and as a passage.
    as_passage = e5.embed([question], kind="passage")[0]
    assert float(query @ as_passage) < 0.99


@requires("e5-small")
def test_e5_collections_store_passage_vectors_and_search_with_query_vectors(
    store: ChromaStore,
) -> None:
    e5 = Recording(real_embedder("e5-small"))
    fill(store, e5)
    assert e5.kinds == ["passage"]
    stored = store.collection(e5).get(ids=["cats"], include=["embeddings"])["embeddings"]
    expected = e5.inner.embed([PASSAGES["cats"]], kind="passage")[0]
    np.testing.assert_allclose(np.asarray(stored)[0], expected, atol=1e-5)
    e5.kinds.clear()
    store.retriever(e5).retrieve("pets", 1)
    assert e5.kinds == ["query"]


@requires("e5-small")
def test_the_embedding_function_embeds_passages_and_queries_as_such() -> None:
    e5 = real_embedder("e5-small")
    function = DemurEmbeddingFunction(e5)
    texts = ["query and passage prefixes differ", "second text"]
    np.testing.assert_allclose(function(texts), e5.embed(texts, kind="passage"), atol=1e-6)
    np.testing.assert_allclose(
        function.embed_query(texts), e5.embed(texts, kind="query"), atol=1e-6
    )


@requires("minilm-l6")
def test_chroma_query_texts_go_through_the_demur_function_never_chromas_default(
    store: ChromaStore,
) -> None:
    embedder = Recording(real_embedder("minilm-l6"))
    fill(store, embedder)
    result = store.collection(embedder).query(query_texts=["capital of France"], n_results=1)
    assert result["ids"] == [["paris"]]
    assert embedder.kinds == ["passage", "query"]


@requires("minilm-l6", "mpnet-base")
def test_each_embedder_has_its_own_collection_in_one_store(store: ChromaStore) -> None:
    fill(store, real_embedder("minilm-l6"))
    fill(store, real_embedder("mpnet-base"), {k: PASSAGES[k] for k in ("paris", "python", "cats")})
    assert store.count("minilm-l6") == 5
    assert store.count("mpnet-base") == 3
    mpnet = store.retriever("mpnet-base")
    assert mpnet.name == "mpnet-base"
    documents = mpnet.retrieve("Who created the Python language?", 3)
    assert [d.retriever for d in documents] == ["mpnet-base"] * 3
    assert documents[0].id == "python"
    assert [d.score for d in documents] == sorted((d.score or 0.0 for d in documents), reverse=True)
    assert (
        len(
            store.collection("mpnet-base").get(ids=["paris"], include=["embeddings"])["embeddings"][
                0
            ]
        )
        == 768
    )


@requires("minilm-l6")
def test_a_fresh_process_reopens_the_store_and_its_embedding_function(store: ChromaStore) -> None:
    fill(store, real_embedder("minilm-l6"))
    code = textwrap.dedent(
        f"""
        from demur.retrieval import ChromaStore
        store = ChromaStore({str(store.path)!r})
        print(store.retriever("minilm-l6").retrieve("What is the capital of France?", 1)[0].id)
        collection = store.client.get_collection("demur-minilm-l6")
        function = collection.configuration["embedding_function"]
        print(type(function).__name__, function.embedder_name)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["paris", "DemurEmbeddingFunction", "minilm-l6"]


def test_collections_record_the_demur_function_and_cosine_space(store: ChromaStore) -> None:
    collection = store.collection(Hashing("toy", 8), create=True)
    assert collection.name == "demur-toy"
    configuration = collection.configuration_json
    assert configuration["embedding_function"] == {
        "type": "known",
        "name": "demur",
        "config": {"embedder": "toy"},
    }
    assert configuration["hnsw"]["space"] == "cosine"


def test_the_embedding_function_config_round_trips_without_loading_a_model() -> None:
    function = DemurEmbeddingFunction(Hashing("toy", 8))
    assert DemurEmbeddingFunction.name() == "demur"
    assert function.get_config() == {"embedder": "toy"}
    assert not function.is_legacy()
    assert function.default_space() == "cosine"
    rebuilt = DemurEmbeddingFunction.build_from_config({"embedder": "minilm-l6"})
    assert rebuilt.embedder_name == "minilm-l6"
    with pytest.raises(ValueError, match="'embedder'"):
        DemurEmbeddingFunction.build_from_config({})
    with pytest.raises(ValueError, match="cannot switch"):
        function.validate_config_update({"embedder": "toy"}, {"embedder": "other"})
    unknown = DemurEmbeddingFunction.build_from_config({"embedder": "my-own-model"})
    with pytest.raises(ConfigError, match="unknown embedder 'my-own-model'"):
        unknown(["text"])


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, True, 1.5, "3", None])
async def test_k_must_be_a_positive_integer(store: ChromaStore, k: object) -> None:
    retriever = store.retriever(Hashing("toy", 8))
    with pytest.raises(ConfigError, match="k .* must be an integer >= 1"):
        retriever.retrieve("question", k)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="k .* must be an integer >= 1"):
        await retriever.aretrieve("question", k)  # type: ignore[arg-type]


def test_a_missing_collection_names_it_and_the_index_command(store: ChromaStore) -> None:
    retriever = store.retriever("minilm-l6")
    with pytest.raises(RetrievalError) as caught:
        retriever.retrieve("question", 3)
    assert not isinstance(caught.value, EmptyCollectionError)
    message = str(caught.value)
    assert "'demur-minilm-l6' does not exist" in message
    assert f"demur index PATH --embedders minilm-l6 --store {store.path}" in message


async def test_an_empty_collection_says_so_with_the_same_fix(store: ChromaStore) -> None:
    embedder = Hashing("toy", 8)
    store.collection(embedder, create=True)
    with pytest.raises(EmptyCollectionError, match="'demur-toy' .* is empty") as caught:
        await store.retriever(embedder).aretrieve("question", 3)
    assert "demur index PATH --embedders toy" in str(caught.value)


def test_a_store_that_does_not_exist_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    store = ChromaStore(tmp_path / "chrom")  # a typo for "chroma"
    with pytest.raises(RetrievalError) as caught:
        store.retriever(Hashing("toy", 8)).retrieve("question", 1)
    message = str(caught.value)
    assert f"'demur-toy' does not exist in {store.path}: there is no store there" in message
    assert f"demur index PATH --embedders toy --store {store.path}" in message
    with pytest.raises(RetrievalError, match="no store there"):
        store.check_indexed("toy")
    assert store.count("toy") == 0
    store.delete("toy")
    assert not store.path.exists()


def test_check_indexed_refuses_missing_and_empty_collections(store: ChromaStore) -> None:
    store.collection(Hashing("other", 8), create=True)  # the store exists, not this collection
    with pytest.raises(RetrievalError, match="'demur-toy' does not exist") as missing:
        store.check_indexed("toy")
    assert not isinstance(missing.value, EmptyCollectionError)
    store.collection(Hashing("toy", 8), create=True)
    with pytest.raises(EmptyCollectionError, match="'demur-toy' .* is empty. Index your"):
        store.check_indexed("toy")
    fill(store, Hashing("toy", 8))
    assert store.check_indexed("toy") == len(PASSAGES)


def test_the_default_store_needs_no_store_flag_in_the_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RetrievalError) as caught:
        ChromaStore().retriever(Hashing("toy", 8)).retrieve("question", 1)
    assert str(caught.value).endswith("demur index PATH --embedders toy")
    assert not (tmp_path / ".demur").exists()  # querying creates no store


def test_chroma_failures_are_wrapped_with_what_failed(store: ChromaStore) -> None:
    fill(store, Hashing("toy", 8))
    wrong_size = store.retriever(Hashing("toy", 16))  # same name, other dimension
    with pytest.raises(RetrievalError, match="could not query the chroma collection 'demur-toy'"):
        wrong_size.retrieve("question", 2)


def test_a_failing_query_embedding_is_a_retrieval_error(store: ChromaStore) -> None:
    fill(store, Hashing("toy", 8))
    broken = store.retriever(Hashing("toy", 8, fail=True))
    with pytest.raises(RetrievalError, match="could not embed the query with 'toy'.*corrupt"):
        broken.retrieve("question", 2)


def test_count_and_delete(store: ChromaStore) -> None:
    assert store.count("toy") == 0
    store.delete("toy")  # absent: nothing happens
    fill(store, Hashing("toy", 8))
    assert store.count("toy") == len(PASSAGES)
    store.delete("toy")
    assert store.count("toy") == 0
    with pytest.raises(RetrievalError, match="does not exist"):
        store.retriever(Hashing("toy", 8)).retrieve("question", 1)


def test_collection_names_and_prefixes(tmp_path: Path) -> None:
    store = ChromaStore(tmp_path, prefix="kb.v2")
    assert store.collection_name("minilm-l6") == "kb.v2-minilm-l6"
    assert store.collection_name("BAAI/bge small") == "kb.v2-BAAI-bge-small"
    assert store.retriever(Hashing("e5", 8)).collection_name == "kb.v2-e5"
    for prefix in ("", "-x", "a b", "kb/1"):
        with pytest.raises(ConfigError, match="prefix must start with a letter or digit"):
            ChromaStore(tmp_path, prefix=prefix)
    assert "path=" in repr(store)
    assert isinstance(store.retriever(Hashing("e5", 8)), ChromaRetriever)


@pytest.mark.parametrize(
    "url", ["localhost:8000", "ftp://host:1", "http://", "http://host:notaport", "http://h:1/api"]
)
def test_a_malformed_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"url must look like http://host:port"):
        ChromaStore(url=url)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_an_unreachable_server_is_a_retrieval_error_naming_it() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    store = ChromaStore(url=url)
    assert store.location == url
    with pytest.raises(RetrievalError, match=f"could not open the chroma store at {url}"):
        store.count("minilm-l6")


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    """A real `chroma run` server on a free port, stopped after the test."""
    executable = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    if not Path(executable).is_file():
        pytest.skip("the chroma CLI (shipped with the chromadb package) is not installed")
    port = _free_port()
    log = tmp_path / "chroma-server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [executable, "run", "--path", str(tmp_path / "server"), "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"`chroma run` did not start here: {log.read_text()[-500:]}")
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@requires("minilm-l6")
def test_a_chroma_server_given_by_url(chroma_server: str) -> None:
    store = ChromaStore(url=chroma_server)
    fill(store, real_embedder("minilm-l6"))
    assert store.count("minilm-l6") == len(PASSAGES)
    documents = store.retriever("minilm-l6").retrieve("What is the capital of France?", 3)
    _check_ranking(documents, "paris", "minilm-l6")
    with pytest.raises(RetrievalError) as caught:
        store.retriever("e5-small").retrieve("question", 1)
    assert f"--embedders e5-small --url {chroma_server}" in str(caught.value)


# --- the package ------------------------------------------------------------------------------


def test_importing_demur_retrieval_does_not_import_chromadb() -> None:
    code = (
        "import sys, demur.retrieval\n"
        "print('chromadb' in sys.modules, 'numpy' in sys.modules)\n"
        "demur.retrieval.ChromaStore\n"
        "print('chromadb' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["False", "False", "True"]


def test_the_package_exports_are_sorted_and_resolve() -> None:
    exported = demur.retrieval.__all__
    assert exported == sorted(exported)
    for name in exported:
        assert getattr(demur.retrieval, name).__name__ == name
    assert set(exported) <= set(dir(demur.retrieval))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        demur.retrieval.Nope  # noqa: B018
