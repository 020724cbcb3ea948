"""A config's retrieval store must hold what it names: a mistyped path or an unindexed collection
is an error at start-up, and answering closed-book instead is an explicit choice."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("chromadb")

from demur import EmptyCollectionError, RetrievalError
from demur.cli import main
from demur.config import build_router, load_config
from demur.retrieval import ChromaStore, SourceChunk, index_chunks
from tests.retrieval import Counting

CONFIG = """\
models:
  weak: {kind: scripted, replies: [{text: "Paris", logprobs: [-0.05]}]}
estimators: [mean_logprob]
policy: {threshold: 0.5, rungs: [abstain]}
retrieval: {store: STORE, embedders: [minilm-l6]EXTRA}
tracing: {exporter: none}
"""


def _config(tmp_path: Path, store: Path, extra: str = "") -> Path:
    path = tmp_path / "demur.yaml"
    path.write_text(CONFIG.replace("STORE", str(store)).replace("EXTRA", extra))
    return path


def test_a_store_path_that_does_not_exist_stops_the_build_and_is_not_created(
    tmp_path: Path,
) -> None:
    store = tmp_path / "chrom"
    with pytest.raises(RetrievalError) as caught:
        build_router(load_config(_config(tmp_path, store)))
    message = str(caught.value)
    assert message.startswith("retrieval: the chroma collection 'demur-minilm-l6' does not exist")
    assert f"{store}: there is no store there" in message
    assert f"demur index PATH --embedders minilm-l6 --store {store}" in message
    assert "allow_empty_store: true" in message and "--allow-empty-store" in message
    assert not store.exists()


def test_an_empty_or_missing_collection_stops_the_build(tmp_path: Path) -> None:
    store = ChromaStore(tmp_path / "chroma")
    store.collection(Counting("e5-small"), create=True)  # another embedder's collection
    with pytest.raises(RetrievalError, match="'demur-minilm-l6' does not exist"):
        build_router(load_config(_config(tmp_path, store.path)))
    store.collection(Counting("minilm-l6"), create=True)
    with pytest.raises(EmptyCollectionError, match="'demur-minilm-l6' .* is empty"):
        build_router(load_config(_config(tmp_path, store.path)))
    index_chunks([SourceChunk("p", "Paris is in France.", "x")], store, [Counting("minilm-l6")])
    assert "minilm-l6" in build_router(load_config(_config(tmp_path, store.path))).retrievers


def test_allow_empty_store_answers_closed_book_and_records_why(tmp_path: Path) -> None:
    store = tmp_path / "chrom"
    config = load_config(_config(tmp_path, store, ", allow_empty_store: true"))
    with build_router(config) as router:
        verdict = router.route("What is the capital of France?")
    [step] = verdict.steps
    assert step.candidate is not None and step.candidate.text == "Paris"
    assert step.retrieval is not None and "no store there" in (step.retrieval.error or "")
    assert not store.exists()


def test_the_cli_refuses_a_missing_store_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "chrom"
    config = str(_config(tmp_path, store))
    assert main(["ask", "What is the capital of France?", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "demur: error: retrieval: the chroma collection 'demur-minilm-l6'" in err
    assert not store.exists()
    argv = ["ask", "What is the capital of France?", "--config", config, "--allow-empty-store"]
    assert main([*argv, "--json"]) == 0
    assert "no store there" in capsys.readouterr().out
    assert not store.exists()
