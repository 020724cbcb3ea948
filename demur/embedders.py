"""Embedders by name, one shared instance each, with one embedding per unique text.

Several estimators, a groundedness check and retrieval often embed the same texts in one route
(the answer, its samples, the query); an eval run does so for every row. `shared_embedder`
returns one `CachedEmbedder` per name (or per embedder object) for the whole process, so each
model loads once and each (kind, text) is embedded once while it stays in the cache.

Names resolve through `register_embedder` and, for the built-ins and plugins, through the
`demur.embedders` entry points of installed distributions, each a callable that takes no
argument and returns an Embedder. Importing this module imports nothing heavy.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from demur.errors import ConfigError, unknown_name
from demur.protocols import Embedder

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

ENTRY_POINT_GROUP = "demur.embedders"
DEFAULT_CACHE_TEXTS = 16_384
"""About 25 MB of 384-d vectors, or 50 MB of 768-d ones."""

EmbedderFactory = Callable[[], Embedder]


class CachedEmbedder:
    """An Embedder that embeds each (kind, text) once and keeps the most recent vectors.

    A call embeds only the texts it has not seen (each once, however often it repeats) and
    answers the rest from a least-recently-used cache of `max_texts` vectors. Safe to share
    between threads: lookups run concurrently, but misses reach the wrapped embedder one call
    at a time, so threads asking for the same new text embed it once. `hits` and `misses`
    count texts.
    """

    def __init__(self, embedder: Embedder, *, max_texts: int = DEFAULT_CACHE_TEXTS) -> None:
        if isinstance(max_texts, bool) or not isinstance(max_texts, int) or max_texts < 0:
            raise ConfigError(f"max_texts must be a non-negative integer, got {max_texts!r}")
        self.inner = embedder
        self.name: str = embedder.name
        self.dimension: int = embedder.dimension
        self.max_texts = max_texts
        self.hits = 0
        self.misses = 0
        self._vectors: OrderedDict[tuple[str, str], npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()
        self._embedding = threading.Lock()

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]:
        """Vectors of `texts`, in order; only texts not in the cache reach the model."""
        import numpy as np

        if isinstance(texts, str):
            raise ConfigError(
                f"the embedder '{self.name}' takes a sequence of texts, not one string: "
                "call embed([text]) instead of embed(text)"
            )
        items = list(texts)
        found: dict[str, npt.NDArray[np.float32]] = {}
        self._look_up(items, kind, found)
        missing = [text for text in dict.fromkeys(items) if text not in found]
        if missing:
            with self._embedding:
                # Another thread may have embedded some of them while this one waited.
                self._look_up(missing, kind, found)
                missing = [text for text in missing if text not in found]
                if missing:
                    self._embed_missing(missing, kind, found)
        with self._lock:
            self.misses += len(missing)
            self.hits += len(items) - len(missing)
        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[text] for text in items])

    def _look_up(
        self, texts: Sequence[str], kind: str, found: dict[str, npt.NDArray[np.float32]]
    ) -> None:
        """Put the cached vectors of `texts` into `found`."""
        with self._lock:
            for text in texts:
                vector = self._vectors.get((kind, text))
                if vector is not None:
                    self._vectors.move_to_end((kind, text))
                    found[text] = vector

    def _embed_missing(
        self, missing: list[str], kind: str, found: dict[str, npt.NDArray[np.float32]]
    ) -> None:
        """Embed `missing` with the wrapped embedder; cache the vectors and put them in `found`."""
        import numpy as np

        vectors = np.asarray(self.inner.embed(missing, kind=kind), dtype=np.float32)
        if vectors.shape != (len(missing), self.dimension):
            raise ConfigError(
                f"the embedder '{self.name}' returned shape {vectors.shape} for "
                f"{len(missing)} texts; expected ({len(missing)}, {self.dimension})"
            )
        with self._lock:
            for text, vector in zip(missing, vectors, strict=True):
                vector.setflags(write=False)
                found[text] = vector
                self._remember((kind, text), vector)

    def _remember(self, key: tuple[str, str], vector: npt.NDArray[np.float32]) -> None:
        if self.max_texts == 0:
            return
        self._vectors[key] = vector
        self._vectors.move_to_end(key)
        while len(self._vectors) > self.max_texts:
            self._vectors.popitem(last=False)

    def clear(self) -> None:
        """Forget every cached vector (the counters stay)."""
        with self._lock:
            self._vectors.clear()

    def __len__(self) -> int:
        return len(self._vectors)

    def __repr__(self) -> str:
        return (
            f"CachedEmbedder({self.inner!r}, {len(self)}/{self.max_texts} texts, "
            f"hits={self.hits}, misses={self.misses})"
        )


_registered: dict[str, EmbedderFactory] = {}
_by_name: dict[str, CachedEmbedder] = {}
_by_object: weakref.WeakKeyDictionary[Embedder, CachedEmbedder] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def register_embedder(name: str, factory: EmbedderFactory, *, replace: bool = False) -> None:
    """Make `name` usable wherever an embedder is named (configs, CLI options, estimators).

    `factory` takes no argument and returns an Embedder; it runs on the first use of the name.
    Registering a name twice is a ConfigError unless `replace` is true.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"an embedder's name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ConfigError(f"register_embedder({name!r}, ...) needs a callable factory")
    with _lock:
        if name in _registered and not replace:
            raise ConfigError(
                f"an embedder named {name!r} is already registered; pass replace=True to replace it"
            )
        _registered[name] = factory
        _by_name.pop(name, None)


def embedder_names() -> list[str]:
    """Every name `shared_embedder` resolves: registered ones, then installed entry points."""
    return sorted({*_registered, *(point.name for point in entry_points(group=ENTRY_POINT_GROUP))})


def _factory(name: str) -> EmbedderFactory:
    if name in _registered:
        return _registered[name]
    for point in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            loaded = point.load()
        except ImportError as exc:
            raise ConfigError(
                f"embedder {name!r} is provided by {point.value!r}, which cannot be imported "
                f"({exc}); reinstall the package that provides it, or pass an Embedder object "
                "instead of the name"
            ) from None
        if not callable(loaded):
            raise ConfigError(
                f"the entry point {point.value!r} of embedder {name!r} is not callable"
            )
        factory: EmbedderFactory = loaded
        return factory
    raise unknown_name("embedder", name, embedder_names())


def shared_embedder(embedder: Embedder | str) -> CachedEmbedder:
    """The process's one cached instance of this embedder, by name or by object.

    A name is resolved once (registered names first, then the `demur.embedders` entry points)
    and its embedder is reused by every later caller; an object gets one cache, shared by
    every caller that passes the same object. A CachedEmbedder is returned as it is.
    """
    if isinstance(embedder, CachedEmbedder):
        return embedder
    if isinstance(embedder, str):
        with _lock:
            cached = _by_name.get(embedder)
            if cached is not None:
                return cached
            factory = _factory(embedder)
        built = factory()
        if not isinstance(built, Embedder):
            raise ConfigError(
                f"the factory of embedder {embedder!r} returned a {type(built).__name__}, "
                "not an Embedder (name, dimension, embed())"
            )
        with _lock:
            return _by_name.setdefault(embedder, CachedEmbedder(built))
    if not isinstance(embedder, Embedder):
        raise ConfigError(
            f"embedder must be a demur Embedder (name, dimension, embed()) or an embedder's "
            f"name, got {type(embedder).__name__}"
        )
    return shared_embedder_of(embedder)


def shared_embedder_of(embedder: Embedder) -> CachedEmbedder:
    """The one CachedEmbedder of this object (a new one where it cannot be weakly referenced)."""
    if isinstance(embedder, CachedEmbedder):
        return embedder
    with _lock:
        try:
            cached = _by_object.get(embedder)
            if cached is None:
                cached = _by_object.setdefault(embedder, CachedEmbedder(embedder))
        except TypeError:
            return CachedEmbedder(embedder)
    return cached


__all__ = [
    "DEFAULT_CACHE_TEXTS",
    "ENTRY_POINT_GROUP",
    "CachedEmbedder",
    "EmbedderFactory",
    "embedder_names",
    "register_embedder",
    "shared_embedder",
    "shared_embedder_of",
]
