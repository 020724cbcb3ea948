"""Estimators that run an embedding model do it in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from demur import Candidate, Completion, Document, Query
from demur.bases import EstimatorBase
from demur.estimators.base import Attempt
from demur.estimators.consistency import SampleAgreement
from demur.estimators.groundedness import Groundedness
from demur.estimators.semantic import EigV, SemanticEntropy
from demur.scoring import run_estimator
from tests.estimators.test_similarity import BagOfWordsEmbedder


class ThreadRecordingEmbedder(BagOfWordsEmbedder):
    """The bag-of-words embedder, noting the thread of every call."""

    name = "thread-recording"

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        self.threads.append(threading.get_ident())
        return super().embed(texts, kind=kind)


def sampled_attempt() -> Attempt:
    samples = tuple(Completion(text=t) for t in ("Paris", "Paris, France", "Lyon"))
    candidate = Candidate(
        text="Paris",
        model="m",
        samples=samples,
        documents=(Document(id="d0", text="Paris is the capital of France."),),
    )
    return Attempt(query=Query("What is the capital of France?"), candidate=candidate)


ESTIMATORS = {
    "SampleAgreement": lambda e: SampleAgreement("embedding", samples=3, embedder=e),
    "SemanticEntropy": lambda e: SemanticEntropy("embedding", samples=3, embedder=e),
    "EigV": lambda e: EigV("embedding", samples=3, embedder=e),
    "Groundedness": lambda e: Groundedness("embedding", e),
}


@pytest.mark.parametrize("build", ESTIMATORS.values(), ids=ESTIMATORS.keys())
def test_the_embedding_model_runs_off_the_event_loop(build) -> None:  # type: ignore[no-untyped-def]
    embedder = ThreadRecordingEmbedder()
    estimator: EstimatorBase = build(embedder)
    assert not estimator.in_process
    case = sampled_attempt()

    async def score() -> tuple[int, float]:
        result = await run_estimator(estimator, case, timeout_s=30.0)
        return threading.get_ident(), result.confidence

    loop_thread, confidence = asyncio.run(score())
    assert embedder.threads, "the estimator never embedded"
    assert loop_thread not in embedder.threads
    # Called directly, outside any loop, it still scores synchronously, to the same value.
    assert estimator.estimate(case).confidence == pytest.approx(confidence)


@pytest.mark.parametrize("similarity", ["exact", "rougeL"])
def test_without_an_embedder_the_measures_stay_in_process(similarity: str) -> None:
    assert SampleAgreement(similarity).in_process
    assert SemanticEntropy(similarity).in_process
    assert Groundedness().in_process
