"""How an attempt grounds its answer: which answers to write, from which passages, and which
one to keep.

A `Grounding` plans one or more branches for an attempt (closed-book, with the passages of one
embedding model, ...), the router carries each out (retrieve, answer, score), and the
grounding's pure `select` picks the answer to keep and the confidence it deserves. The policy
then decides on that answer as on any other.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from demur.bases import GroundingBase
from demur.protocols import BranchPlan, Grounding, Selection
from demur.types import Branch, RetrieveMore


def apply_more(plan: BranchPlan, more: RetrieveMore | None) -> BranchPlan:
    """A retrieving branch plan with a RetrieveMore's overrides applied."""
    if more is None or plan.retriever is None:
        return plan
    return BranchPlan(
        name=plan.name,
        retriever=plan.retriever,
        k=more.k if more.k is not None else plan.k,
        cutoff=more.cutoff or plan.cutoff,
        rewrite=more.rewrite or plan.rewrite,
        use_context=plan.use_context,
        question=plan.question,
        documents_from=plan.documents_from,
    )


def best_answered(branches: Sequence[Branch]) -> Branch | None:
    """The answered branch with the highest confidence (an unscored answer ranks last)."""
    answered = [b for b in branches if b.candidate is not None]
    if not answered:
        return None
    return max(answered, key=lambda b: -1.0 if b.confidence is None else b.confidence)


def check_retrievers(owner: str, named: Sequence[str], retrievers: Collection[str]) -> None:
    """ConfigError when `owner` names a retriever the router does not have."""
    from demur.errors import ConfigError, did_you_mean

    for name in named:
        if name not in retrievers:
            known = ", ".join(retrievers) or "(none: pass retrievers=[...] to the Router)"
            raise ConfigError(
                f"{owner} refers to retriever '{name}', which the router does not have."
                f"{did_you_mean(name, retrievers)} Retrievers: {known}."
            )


__all__ = [
    "BranchPlan",
    "Grounding",
    "GroundingBase",
    "Selection",
    "apply_more",
    "best_answered",
    "check_retrievers",
]
