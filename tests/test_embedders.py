"""Embedders by name and the shared cache: each model loads once, each text is embedded once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pytest

from demur import Ladder, Router
from demur.embedders import (
    CachedEmbedder,
    embedder_names,
    register_embedder,
    shared_embedder,
)
from demur.errors import ConfigError, MissingDependencyError
from demur.estimators.consistency import SampleAgreement
from demur.estimators.groundedness import Groundedness
from demur.estimators.semantic import EigV, NumSets, SemanticEntropy
from demur.testing import Reply, ScriptedModel
from demur.types import GenerationRequest, Query
from tests.estimators.test_similarity import BagOfWordsEmbedder


class CountingEmbedder:
    """Wraps an embedder and records every text that reaches it."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name: str = inner.name  # type: ignore[attr-defined]
        self.dimension: int = inner.dimension  # type: ignore[attr-defined]
        self.seen: list[tuple[str, str]] = []

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        self.seen += [(kind, text) for text in texts]
        vectors: npt.NDArray[np.float32] = self.inner.embed(texts, kind=kind)  # type: ignore[attr-defined]
        return vectors


@pytest.fixture
def counting() -> CountingEmbedder:
    return CountingEmbedder(BagOfWordsEmbedder())


@pytest.fixture
def registered_name() -> Iterator[str]:
    name = f"test-embedder-{threading.get_ident()}"
    yield name
    register_embedder(name, BagOfWordsEmbedder, replace=True)


# --- the cache ------------------------------------------------------------------------------


def test_each_text_reaches_the_model_once(counting: CountingEmbedder) -> None:
    cached = CachedEmbedder(counting)
    first = cached.embed(["a cat", "a dog", "a cat"])
    second = cached.embed(["a dog", "a bird"])
    assert counting.seen == [("passage", "a cat"), ("passage", "a dog"), ("passage", "a bird")]
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(first[1], second[0])
    np.testing.assert_array_equal(second, counting.inner.embed(["a dog", "a bird"]))
    assert (cached.hits, cached.misses) == (2, 3)


def test_threads_asking_for_the_same_new_texts_embed_them_once(counting: CountingEmbedder) -> None:
    cached = CachedEmbedder(counting)
    inner_embed = counting.embed
    entered = threading.Event()

    def slow_embed(texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        entered.set()
        time.sleep(0.05)  # long enough for the other threads to miss the cache meanwhile
        return inner_embed(texts, kind=kind)

    counting.embed = slow_embed  # type: ignore[method-assign]
    texts = ["a cat", "a dog", "a bird"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: cached.embed(texts), range(4)))
    assert entered.is_set()
    assert sorted(text for _, text in counting.seen) == sorted(texts)
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])
    assert (cached.hits, cached.misses) == (9, 3)


def test_queries_and_passages_are_cached_apart(counting: CountingEmbedder) -> None:
    cached = CachedEmbedder(counting)
    cached.embed(["a cat"], kind="query")
    cached.embed(["a cat"], kind="passage")
    assert counting.seen == [("query", "a cat"), ("passage", "a cat")]


def test_the_least_recently_used_text_is_evicted(counting: CountingEmbedder) -> None:
    cached = CachedEmbedder(counting, max_texts=2)
    cached.embed(["one", "two"])
    cached.embed(["one"])  # "two" is now the least recently used
    cached.embed(["three"])
    cached.embed(["one", "two"])
    assert [text for _, text in counting.seen] == ["one", "two", "three", "two"]
    assert len(cached) == 2


def test_a_zero_sized_cache_still_deduplicates_within_a_call(counting: CountingEmbedder) -> None:
    cached = CachedEmbedder(counting, max_texts=0)
    cached.embed(["x", "x"])
    cached.embed(["x"])
    assert counting.seen == [("passage", "x"), ("passage", "x")]


def test_cached_vectors_cannot_be_changed_by_a_caller(counting: CountingEmbedder) -> None:
    cached = CachedEmbedder(counting)
    cached.embed(["a cat"])[0, 0] = 99.0  # the stacked result is the caller's own copy
    assert cached.embed(["a cat"])[0, 0] != 99.0


def test_empty_input_and_usage_mistakes(counting: CountingEmbedder) -> None:
    cached = CachedEmbedder(counting)
    assert cached.embed([]).shape == (0, counting.dimension)
    with pytest.raises(ConfigError, match=r"embed\(\[text\]\)"):
        cached.embed("a cat")
    with pytest.raises(ConfigError, match="max_texts must be a non-negative integer"):
        CachedEmbedder(counting, max_texts=-1)


def test_a_wrong_shape_from_the_model_is_named(counting: CountingEmbedder) -> None:
    class Broken(CountingEmbedder):
        def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
            return np.zeros((1, self.dimension), dtype=np.float32)

    with pytest.raises(ConfigError, match=r"returned shape \(1, \d+\) for 2 texts"):
        CachedEmbedder(Broken(BagOfWordsEmbedder())).embed(["a", "b"])


def test_concurrent_callers_get_the_same_vectors(counting: CountingEmbedder) -> None:
    cached = CachedEmbedder(counting, max_texts=8)
    texts = [f"text {i % 12}" for i in range(60)]
    expected = counting.inner.embed(texts)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                np.testing.assert_allclose(cached.embed(texts), expected)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cached) <= 8


# --- one instance per name or object --------------------------------------------------------


def test_a_name_resolves_to_one_shared_instance(registered_name: str) -> None:
    built: list[BagOfWordsEmbedder] = []

    def factory() -> BagOfWordsEmbedder:
        built.append(BagOfWordsEmbedder())
        return built[-1]

    register_embedder(registered_name, factory, replace=True)
    first = shared_embedder(registered_name)
    assert shared_embedder(registered_name) is first
    assert len(built) == 1 and first.inner is built[0]
    assert registered_name in embedder_names()


def test_an_object_gets_one_cache_and_a_cache_is_kept(counting: CountingEmbedder) -> None:
    assert shared_embedder(counting) is shared_embedder(counting)
    cached = CachedEmbedder(counting)
    assert shared_embedder(cached) is cached


def test_registration_mistakes_and_unknown_names(registered_name: str) -> None:
    register_embedder(registered_name, BagOfWordsEmbedder, replace=True)
    with pytest.raises(ConfigError, match="already registered; pass replace=True"):
        register_embedder(registered_name, BagOfWordsEmbedder)
    with pytest.raises(ConfigError, match="unknown embedder 'no-such-model'.*minilm-l6"):
        shared_embedder("no-such-model")
    with pytest.raises(ConfigError, match="or an embedder's name, got int"):
        shared_embedder(3)  # type: ignore[arg-type]

    register_embedder(registered_name, lambda: "not an embedder", replace=True)  # type: ignore[arg-type, return-value]
    with pytest.raises(ConfigError, match="returned a str, not an Embedder"):
        shared_embedder(registered_name)


def test_the_builtins_are_found_through_entry_points() -> None:
    assert {"minilm-l6", "e5-small", "mpnet-base"} <= set(embedder_names())


# --- through estimators and a route ---------------------------------------------------------


def test_estimators_naming_one_embedder_share_it(registered_name: str) -> None:
    register_embedder(registered_name, BagOfWordsEmbedder, replace=True)
    estimators = [
        SampleAgreement(similarity="embedding", embedder=registered_name),
        NumSets(similarity="embedding", embedder=registered_name),
        Groundedness(method="embedding", embedder=registered_name),
    ]
    assert len({id(e.embedder) for e in estimators}) == 1


def test_a_route_embeds_each_text_once_across_estimators(counting: CountingEmbedder) -> None:
    samples = iter(["Paris", "paris", "Lyon", "Paris, France", "Paris"])

    def script(request: GenerationRequest) -> Reply:
        if request.temperature == 0:
            return Reply.confident("Paris", 0.9)
        return Reply(text=next(samples))

    estimators = [
        SampleAgreement(similarity="embedding", embedder=counting, samples=5),
        NumSets(similarity="embedding", embedder=counting, samples=5),
        EigV(similarity="embedding", embedder=counting, samples=5),
        SemanticEntropy(similarity="embedding", embedder=counting, samples=5),
    ]
    router = Router([ScriptedModel("m", script)], estimators=estimators, policy=Ladder(0.5))
    verdict = router.route(Query(question="Capital of France?"))
    assert all(score.status == "ok" for score in verdict.steps[0].scores)
    assert sorted(text for _, text in counting.seen) == ["Lyon", "Paris", "Paris, France", "paris"]


def test_a_real_model_is_loaded_once_for_every_estimator_and_the_retriever_path() -> None:
    try:
        shared = shared_embedder("minilm-l6")
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    groundedness = Groundedness(method="embedding", embedder="minilm-l6")
    agreement = SampleAgreement(similarity="embedding", embedder="minilm-l6")
    assert groundedness.embedder is shared and agreement.embedder is shared
    before = shared.misses
    for _ in range(2):
        vectors = shared.embed(["Paris", "Paris is the capital of France."])
    assert shared.misses - before <= 2
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
