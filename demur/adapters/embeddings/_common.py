"""What the built-in embedders share: errors, input checks, and lazy loading under a lock.

Nothing here imports numpy or a model runtime at import time, so importing the embeddings
package stays as cheap as importing demur.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from demur.errors import (
    ConfigError,
    DemurError,
    unknown_name,
)
from demur.errors import EmbeddingError as EmbeddingError  # re-exported
from demur.errors import MissingEmbedderPackageError as MissingEmbedderPackageError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

KINDS = ("passage", "query")
DEFAULT_BATCH_SIZE = 32

M = TypeVar("M")
_SURROGATE = re.compile("[\ud800-\udfff]")


def require_module(module: str, package: str, model: str, fix: str) -> None:
    """Raise MissingEmbedderPackageError unless `module` can be imported; imports nothing."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingEmbedderPackageError(package, model, fix)


def check_texts(texts: Sequence[str], model: str) -> list[str]:
    """The texts as a list; a bare string or a non-string item is a usage mistake.

    Lone surrogates (invalid Unicode, e.g. from a bad decode) become U+FFFD, since no
    tokenizer can encode them.
    """
    if isinstance(texts, str):
        raise ConfigError(
            f"the embedder '{model}' takes a sequence of texts, not one string: "
            "call embed([text]) instead of embed(text)"
        )
    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise ConfigError(
                f"the embedder '{model}' got a {type(text).__name__} at position {index}; "
                "every item must be a str"
            )
    return [_SURROGATE.sub("\ufffd", text) for text in items]


def check_kind(kind: str) -> bool:
    """True for "query", False for "passage"; anything else is a ConfigError."""
    if kind not in KINDS:
        raise unknown_name("embedding kind", kind, KINDS)
    return kind == "query"


def check_batch_size(batch_size: int) -> int:
    """A positive batch size, or ConfigError."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


class LazyEmbedder(ABC, Generic[M]):
    """An embedder whose model loads on the first `embed` (or `load`) call and is then reused.

    One lock serialises loading and embedding: the runtimes already use every core for one
    batch, and neither the tokenizer's settings nor a C engine's handle is documented as safe to
    share between threads. Rows come back float32 with unit L2 norm.
    """

    name: str
    dimension: int
    max_tokens: int
    reinstall_hint: str
    """Appended to load failures: how to repair the model's files."""

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.batch_size = check_batch_size(batch_size)
        self._lock = threading.Lock()
        self._model: M | None = None

    @abstractmethod
    def _load(self) -> M:
        """Load the model; runs once, under the lock."""

    @abstractmethod
    def _embed(self, model: M, texts: list[str], query: bool) -> npt.NDArray[np.float32]:
        """Embed non-empty `texts` in batches of `batch_size`; runs under the lock."""

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    def load(self) -> None:
        """Load the model now rather than on the first `embed` call (to warm a server up)."""
        with self._lock:
            self._ensure_loaded()

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        """Embed `texts` into a float32 array of shape (len(texts), dimension), unit rows."""
        items = check_texts(texts, self.name)
        query = check_kind(kind)
        import numpy as np

        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            model = self._ensure_loaded()
            try:
                rows = np.asarray(self._embed(model, items, query), dtype=np.float32)
            except DemurError:
                raise
            except Exception as exc:
                raise EmbeddingError(
                    f"the embedding model '{self.name}' failed on {len(items)} text(s): "
                    f"{type(exc).__name__}: {exc}",
                    model=self.name,
                ) from exc
        if rows.shape != (len(items), self.dimension):
            raise EmbeddingError(
                f"the embedding model '{self.name}' returned shape {rows.shape}, expected "
                f"({len(items)}, {self.dimension}). {self.reinstall_hint}",
                model=self.name,
            )
        if not np.isfinite(rows).all():
            raise EmbeddingError(
                f"the embedding model '{self.name}' returned NaN or infinite values. "
                f"{self.reinstall_hint}",
                model=self.name,
            )
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = (rows / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit

    def _ensure_loaded(self) -> M:
        if self._model is None:
            try:
                self._model = self._load()
            except DemurError:
                raise
            except Exception as exc:
                raise EmbeddingError(
                    f"could not load the embedding model '{self.name}': "
                    f"{type(exc).__name__}: {exc}. {self.reinstall_hint}",
                    model=self.name,
                ) from exc
        return self._model

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"{type(self).__name__}(name={self.name!r}, dimension={self.dimension}, {state})"
