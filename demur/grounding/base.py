"""How an attempt grounds its answer: which answers to write, from which passages, and which
one to keep.

A `Grounding` plans one or more branches for an attempt (closed-book, with the passages of one
embedding model, ...), the router carries each out (retrieve, answer, score), and the
grounding's pure `select` picks the answer to keep and the confidence it deserves. The policy
then decides on that answer as on any other.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from demur.types import Branch, Query, RetrieveMore


@dataclass(frozen=True)
class BranchPlan:
    """One answer to write within an attempt.

    - `retriever`: retrieve with this retriever first; None means no retrieval;
    - `k`, `cutoff`, `rewrite`: how many passages, whether to apply the retriever's fitted
      similarity cutoff, whether the model rewrites the question into a search query first;
    - `use_context`: False answers closed-book even when the caller gave context;
    - `question`: the text the model sees instead of the question (self-guided prompts);
    - `documents_from`: reuse the passages another branch retrieved instead of retrieving.
    """

    name: str
    retriever: str | None = None
    k: int = 5
    cutoff: bool = False
    rewrite: bool = False
    use_context: bool = True
    question: str | None = None
    documents_from: str | None = None


@dataclass(frozen=True)
class Selection:
    """The branch to keep (None when no branch produced an answer), its confidence, and why."""

    branch: str | None
    confidence: float | None
    reason: str


@runtime_checkable
class Grounding(Protocol):
    """Plans the branches of an attempt and selects among them. `select` must be pure.

    A grounding may also define `followup(query, branches) -> BranchPlan | None`: one more
    branch to run once the first ones are scored (a prompt that shows the model both answers).
    """

    name: str

    def plan(
        self, query: Query, retrievers: Sequence[str], more: RetrieveMore | None
    ) -> tuple[BranchPlan, ...]:
        """The branches for this attempt; `more` is the RetrieveMore that led to it, if any."""
        ...

    def select(self, query: Query, branches: Sequence[Branch]) -> Selection:
        """Which branch's answer to keep, and with what confidence."""
        ...

    def validate(self, retrievers: Collection[str]) -> None:
        """Raise ConfigError if the grounding names a retriever the router lacks."""
        ...


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
