"""Confident RAG: answer once per embedding model, keep the most confident answer.

Each embedding model retrieves different passages for the same question; the model answers
from each set concurrently, every answer is scored by the router's estimators, and the most
confident one is kept. Optionally, answers that several embedding models agree on earn a bonus:
agreement across independent retrievals is evidence too.
"""

from __future__ import annotations

from collections.abc import Sequence

from demur.bases import GroundingBase
from demur.correctness import normalize_answer, token_f1
from demur.errors import ConfigError
from demur.grounding.base import apply_more, check_retrievers
from demur.protocols import BranchPlan, RouterSpec, Selection
from demur.types import Branch, Query, RetrieveMore


def answers_agree(a: str, b: str, *, f1: float = 0.5) -> bool:
    """Two short answers agree when equal after normalisation or token F1 >= `f1`."""
    na, nb = normalize_answer(a), normalize_answer(b)
    if not na or not nb:
        return False
    return na == nb or token_f1(a, b) >= f1


class ConfidentRag(GroundingBase):
    """One branch per retriever (all the router's, unless named); keep the most confident.

    `agreement_bonus` adds bonus × (share of the other branches whose answer agrees) to each
    branch's confidence before choosing, capped at 1; 0 is plain best-of-N. A RetrieveMore
    applies its k, cutoff and rewrite to every branch.
    """

    name = "confident_rag"

    def __init__(
        self,
        retrievers: Sequence[str] | None = None,
        *,
        k: int = 5,
        agreement_bonus: float = 0.0,
    ) -> None:
        if k < 1:
            raise ConfigError(f"ConfidentRag k must be >= 1 passages, got {k}")
        if not 0.0 <= agreement_bonus <= 1.0:
            raise ConfigError(
                f"ConfidentRag agreement_bonus must lie in [0, 1], got {agreement_bonus}"
            )
        if retrievers is not None and len(retrievers) < 2:
            raise ConfigError(
                "ConfidentRag compares the answers of at least 2 retrievers (one per embedding "
                f"model), got {list(retrievers)}; use Rag() for a single retriever"
            )
        self.retrievers = tuple(retrievers) if retrievers is not None else None
        self.k = k
        self.agreement_bonus = agreement_bonus

    def validate(self, spec: RouterSpec) -> None:
        retrievers = spec.retrievers
        if self.retrievers is not None:
            check_retrievers("ConfidentRag", self.retrievers, retrievers)
        elif len(retrievers) < 2:
            raise ConfigError(
                "ConfidentRag needs at least 2 retrievers (one per embedding model); the router "
                f"has {len(retrievers)}. Pass retrievers=[...] to the Router."
            )

    def plan(
        self, query: Query, retrievers: Sequence[str], more: RetrieveMore | None
    ) -> tuple[BranchPlan, ...]:
        names = self.retrievers or tuple(retrievers)
        return tuple(
            apply_more(BranchPlan(name=name, retriever=name, k=self.k), more) for name in names
        )

    def select(self, query: Query, branches: Sequence[Branch]) -> Selection:
        answered = [b for b in branches if b.candidate is not None]
        if not answered:
            return Selection(None, None, "no retriever's branch produced an answer")
        adjusted: dict[str, float] = {}
        notes = []
        for branch in answered:
            assert branch.candidate is not None
            base = branch.confidence if branch.confidence is not None else 0.0
            others = [b for b in answered if b is not branch]
            if self.agreement_bonus and others:
                agree = sum(
                    answers_agree(branch.candidate.text, o.candidate.text)  # type: ignore[union-attr]
                    for o in others
                )
                base = min(1.0, base + self.agreement_bonus * agree / len(others))
            adjusted[branch.name] = base
            shown = "none" if branch.confidence is None else f"{branch.confidence:.3f}"
            notes.append(f"{branch.name} {shown}")
        best = max(answered, key=lambda b: adjusted[b.name])
        confidence = adjusted[best.name] if best.confidence is not None else None
        failed = [b.name for b in branches if b.candidate is None]
        reason = f"most confident of {', '.join(notes)}: {best.name}"
        if self.agreement_bonus:
            reason += f" (with agreement bonus {adjusted[best.name]:.3f})"
        if failed:
            reason += f"; no answer from {', '.join(failed)}"
        return Selection(best.name, confidence, reason)

    def __repr__(self) -> str:
        return (
            f"ConfidentRag(retrievers={self.retrievers!r}, k={self.k}, "
            f"agreement_bonus={self.agreement_bonus})"
        )
