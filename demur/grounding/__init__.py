"""Groundings: how an attempt grounds its answer in retrieved passages, and which answer to keep.

- `Rag`: retrieve with one retriever and answer (the default);
- `ConfidentRag`: answer once per embedding model, keep the most confident;
- `Situated`: answer closed-book and with context, trust the context only when it wins.
"""

from typing import TYPE_CHECKING

from demur._lazy import lazy_exports as _lazy_exports
from demur.grounding.rag import Rag
from demur.protocols import BranchPlan, Grounding, Selection

if TYPE_CHECKING:
    from demur.grounding.confident_rag import ConfidentRag, answers_agree
    from demur.grounding.situated import Situated

# Exported lazily: the router only needs the protocol and the default grounding.
_LAZY = {
    "ConfidentRag": "demur.grounding.confident_rag",
    "answers_agree": "demur.grounding.confident_rag",
    "Situated": "demur.grounding.situated",
}


__getattr__, __dir__ = _lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "BranchPlan",
    "ConfidentRag",
    "Grounding",
    "Rag",
    "Selection",
    "Situated",
    "answers_agree",
]
