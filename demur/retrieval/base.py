"""The retriever contract, re-exported from `demur.protocols` (where it is defined)."""

from demur.bases import RetrieverBase
from demur.protocols import Retriever

__all__ = ["Retriever", "RetrieverBase"]
