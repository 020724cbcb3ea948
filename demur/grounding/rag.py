"""Plain RAG: retrieve with one retriever and answer from its passages."""

from __future__ import annotations

from collections.abc import Sequence

from demur.bases import GroundingBase
from demur.errors import ConfigError
from demur.grounding.base import apply_more, check_retrievers
from demur.protocols import BranchPlan, RouterSpec, Selection
from demur.types import Branch, Query, RetrieveMore


class Rag(GroundingBase):
    """Answer from the passages of one retriever (the router's first, unless named).

    Without retrievers, or when the caller passed context with the query, the model answers
    from that context (or closed-book) and nothing is retrieved, until a policy asks to
    RetrieveMore. `RetrieveMore(retriever=...)` switches to another retriever for that attempt.
    """

    name = "rag"

    def __init__(self, retriever: str | None = None, *, k: int = 5) -> None:
        if k < 1:
            raise ConfigError(f"Rag k must be >= 1 passages, got {k}")
        self.retriever = retriever
        self.k = k

    def validate(self, spec: RouterSpec) -> None:
        check_retrievers("Rag", [self.retriever] if self.retriever else [], spec.retrievers)

    def plan(
        self, query: Query, retrievers: Sequence[str], more: RetrieveMore | None
    ) -> tuple[BranchPlan, ...]:
        retriever = (more.retriever if more else None) or self.retriever
        if retriever is None and retrievers and (more is not None or not query.context):
            retriever = retrievers[0]
        if retriever is None or (more is None and query.context):
            return (BranchPlan(name="answer"),)
        return (apply_more(BranchPlan(name=retriever, retriever=retriever, k=self.k), more),)

    def select(self, query: Query, branches: Sequence[Branch]) -> Selection:
        branch = branches[0]
        return Selection(branch.name, branch.confidence, "single answer")

    def __repr__(self) -> str:
        return f"Rag(retriever={self.retriever!r}, k={self.k})"
