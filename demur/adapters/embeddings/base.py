"""The embedder contract, re-exported from `demur.protocols` (where it is defined)."""

from demur.protocols import Embedder

__all__ = ["Embedder"]
