"""Run a sentence-transformers model folder with sentence-transformers on CPU PyTorch.

The packaged folders hold the weights, the tokenizer and sentence-transformers' own settings
(the maximum sequence length and the pooling), but not always `modules.json`: the pipeline is
built here from those settings (transformer, pooling, normalisation), exactly as
sentence-transformers builds it from `modules.json`. Nothing is fetched from a hub: the
folder is read from disk. Only imported when a model loads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demur.adapters.embeddings._common import require_module

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from sentence_transformers import SentenceTransformer

PACKAGE = "sentence-transformers"
INSTALL = "pip install 'demur[embeddings]'"
"""sentence-transformers brings PyTorch; for the CPU-only build (about 200 MB rather than
several GB), install torch first from PyTorch's CPU index."""

_POOLING_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
}


def check_runtime(model: str) -> None:
    """Raise MissingEmbedderPackageError unless sentence-transformers can be imported."""
    require_module("sentence_transformers", PACKAGE, model, INSTALL)


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def pooling_modes(model_dir: Path) -> tuple[str, ...]:
    """The pooling modes that the folder's `1_Pooling/config.json` switches on."""
    config = _read_json(model_dir / "1_Pooling" / "config.json")
    modes = tuple(mode for key, mode in _POOLING_MODES.items() if config.get(key))
    if not modes:
        raise ValueError(f"{model_dir}/1_Pooling/config.json switches on no pooling mode")
    return modes


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Without transformers' per-load progress bar, restored afterwards for the caller's code."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def load_sentence_transformer(model_dir: Path, dimension: int) -> SentenceTransformer:
    """The folder's model as a CPU SentenceTransformer that returns unit vectors."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Normalize,
        Pooling,
        Transformer,
    )

    settings = _read_json(model_dir / "sentence_bert_config.json")
    with _quiet_loading():
        transformer = Transformer(
            str(model_dir),
            max_seq_length=int(settings["max_seq_length"]),
            do_lower_case=bool(settings.get("do_lower_case", False)),
            model_kwargs={"local_files_only": True},
            processor_kwargs={"local_files_only": True},
            config_kwargs={"local_files_only": True},
        )
    pooling = Pooling(dimension, pooling_modes(model_dir))
    model = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
    model.eval()
    return model


def encode(
    model: SentenceTransformer, texts: list[str], batch_size: int
) -> npt.NDArray[np.float32]:
    """Unit vectors of `texts`, batched by similar length, as a float32 array."""
    import numpy as np

    vectors = model.encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        show_progress_bar=False,
        normalize_embeddings=False,
    )
    result: npt.NDArray[np.float32] = np.asarray(vectors, dtype=np.float32)
    return result
