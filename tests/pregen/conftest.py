"""A tiny deterministic embedder and labelled rows whose outcome depends on the topic."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from demur.embedders import register_embedder
from demur.pregen import Outcome, RoutingRow

TOPICS = ("football", "painting", "chemistry")
EMBEDDER = "test-topics"


class TopicEmbedder:
    """One axis per topic word, plus a little per-text noise; unit length."""

    name = EMBEDDER
    dimension = len(TOPICS) + 2

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> np.ndarray:
        self.calls.append((kind, len(texts)))
        out = np.zeros((len(texts), self.dimension), np.float32)
        for i, text in enumerate(texts):
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            out[i, len(TOPICS) :] = np.random.default_rng(seed).normal(0, 0.2, 2)
            for j, topic in enumerate(TOPICS):
                if topic in text:
                    out[i, j] = 1.0
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


@pytest.fixture
def topic_embedder() -> TopicEmbedder:
    embedder = TopicEmbedder()
    register_embedder(EMBEDDER, lambda: embedder, replace=True)
    return embedder


def topic_rows(per_topic: int = 30) -> list[RoutingRow]:
    """Weak succeeds on football only; strong on football and painting; both fail chemistry."""
    rows = []
    for topic in TOPICS:
        for i in range(per_topic):
            # one in ten goes against its topic, so no topic is all one label
            flip = i % 10 == 0
            weak_ok = (topic == "football") != flip
            strong_ok = (topic in ("football", "painting")) != flip
            rows.append(
                RoutingRow(
                    f"question {i} about {topic} number {i * 7}",
                    context=(f"a passage on {topic}",),
                    outcomes={
                        "weak": Outcome(correct=weak_ok, seconds=1.0),
                        "strong": Outcome(correct=strong_ok, seconds=3.0),
                    },
                )
            )
    return rows


@pytest.fixture
def rows() -> list[RoutingRow]:
    return topic_rows()
