"""The embedder protocol: texts in, unit-length vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@runtime_checkable
class Embedder(Protocol):
    """A sentence-embedding model.

    `embed` returns a float32 array of shape (len(texts), dimension) whose rows have unit L2
    norm, so a dot product is the cosine similarity. `kind` says what the text is, for models
    (such as E5) that embed queries and passages differently; others ignore it.
    """

    name: str
    dimension: int

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]: ...
