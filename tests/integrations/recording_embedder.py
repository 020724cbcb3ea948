"""Passages, a question, and an embedder that records how it is called: the offline
LlamaIndex and LangChain embedding tests share them."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

PASSAGES = (
    "Jane Austen published Emma in December 1815; it was her fourth novel.",
    "The Eiffel Tower was completed in Paris in 1889 for the World's Fair.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
)
QUESTION = "Which novel did Jane Austen publish in 1815?"


class RecordingEmbedder:
    """A demur Embedder that records each call's kind and texts, optionally slowly."""

    name = "recording"
    dimension = 3

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[tuple[str, list[str]]] = []

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        self.calls.append((kind, list(texts)))
        time.sleep(self.delay_s)  # a blocking encoder, as the real ones are
        rows = [[float(len(t)) + 1.0, 1.0 if kind == "query" else 0.0, 1.0] for t in texts]
        vectors = np.asarray(rows, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
