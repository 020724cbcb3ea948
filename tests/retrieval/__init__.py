"""Tests of retrieval: chunking, reading and indexing sources, the chroma store and retriever.

Stores are real chromadb folders under tmp_path. Embedders are the real built-in models, each
loaded once per session (a test that needs a missing model skips, naming the install command),
or `Counting`, a toy one that records what it embeds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from demur.adapters.embeddings import BUILTIN_EMBEDDERS, Embedder, load_embedder
from demur.errors import MissingDependencyError


def installed(name: str) -> bool:
    """Whether the built-in embedder's packages are installed."""
    try:
        BUILTIN_EMBEDDERS[name].check()
    except MissingDependencyError:
        return False
    return True


def requires(*names: str) -> pytest.MarkDecorator:
    """Skip unless these built-in embedders (and chromadb) are installed."""
    missing = [name for name in names if not installed(name)]
    return pytest.mark.skipif(
        bool(missing),
        reason="; ".join(f"{name}: {BUILTIN_EMBEDDERS[name].install}" for name in missing),
    )


_loaded: dict[str, Embedder] = {}


def real_embedder(name: str) -> Embedder:
    """The built-in embedder `name`, loaded once per session."""
    if name not in _loaded:
        _loaded[name] = load_embedder(name, batch_size=16)
    return _loaded[name]


class Counting:
    """A deterministic toy embedder (unit vectors from a hash) that records what it embeds."""

    def __init__(self, name: str = "toy", *, interrupt_at: int | None = None) -> None:
        self.name = name
        self.dimension = 8
        self.texts: list[str] = []
        self.calls = 0
        self.interrupt_at = interrupt_at

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.texts += list(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
            row = np.random.default_rng(seed).normal(size=self.dimension)
            rows.append(row / np.linalg.norm(row))
        return np.asarray(rows, dtype=np.float32)
