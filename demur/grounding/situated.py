"""Situated faithfulness: trust a retrieved context only when it beats the model's own knowledge.

The model answers twice, closed-book and with the passages. Each answer is scored by the
router's estimators; the context answer also gets context signals: how similar the passages are
to the question, how far they support the answer, and the Confidence Gain (after CK-PLUG): how
much the answer tokens' entropy drops when the context is added. Then:

- RCR (rule-based confidence reasoning) picks the internal answer, the context answer, or
  neither (both weak or too close to call: the confidence drops, so the policy retrieves more
  or abstains);
- SCR (self-guided confidence reasoning) shows the model both answers and the passages in one
  prompt and lets it weigh them.

These follow Huang et al. (2024), "To Trust or Not to Trust? Enhancing Large Language Models'
Situated Faithfulness to External Contexts". Everything here is pure; the router does the calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from demur.bases import GroundingBase
from demur.correctness import normalize_answer
from demur.errors import ConfigError
from demur.estimators.logprob import token_entropy
from demur.grounding.base import apply_more, check_retrievers
from demur.grounding.confident_rag import answers_agree
from demur.protocols import BranchPlan, Needs, RouterSpec, Selection
from demur.types import Branch, Candidate, Query, RetrieveMore, TokenLogprob

INTERNAL, CONTEXT, SELF_GUIDED = "closed_book", "context", "self_guided"
TOP_K = 5


def mean_entropy(tokens: Sequence[TokenLogprob] | None, top_k: int = TOP_K) -> float | None:
    """Mean per-token entropy over the top-k alternatives, normalised to [0, 1]; None if unknown.

    The mass outside the top k counts as one more outcome, as in MeanTokenEntropy.
    """
    if not tokens or any(len(t.top) < 2 for t in tokens):
        return None
    return sum(token_entropy(token, top_k) for token in tokens) / len(tokens)


def confidence_gain(internal: Candidate | None, context: Candidate | None) -> float | None:
    """Entropy of the closed-book answer minus that of the context answer, in [-1, 1].

    Positive when the context made the model surer. CK-PLUG compares the entropy of the same
    positions with and without context; demur compares the two generated answers' mean token
    entropies, which needs no second forward pass over the same tokens.
    """
    if internal is None or context is None:
        return None
    before, after = mean_entropy(internal.tokens), mean_entropy(context.tokens)
    if before is None or after is None:
        return None
    return before - after


def lexical_support(answer: str, passages: Sequence[str]) -> float | None:
    """The share of the answer's words that appear in the passages; None without passages."""
    words = normalize_answer(answer).split()
    if not words or not passages:
        return None
    vocabulary = set(normalize_answer(" ".join(passages)).split())
    return sum(w in vocabulary for w in words) / len(words)


def top_similarity(candidate: Candidate | None) -> float | None:
    """The best retrieval similarity among the candidate's passages, if they carry scores."""
    if candidate is None:
        return None
    scores = [d.score for d in candidate.documents if d.score is not None]
    return max(scores) if scores else None


@dataclass(frozen=True)
class ContextSignals:
    """What speaks for the context answer besides its own confidence."""

    similarity: float | None
    support: float | None
    gain: float | None

    def describe(self) -> str:
        parts = [
            f"{name} {value:.2f}"
            for name, value in (
                ("similarity", self.similarity),
                ("support", self.support),
                ("gain", self.gain),
            )
            if value is not None
        ]
        return ", ".join(parts) or "no context signal"


def context_signals(internal: Branch | None, context: Branch) -> ContextSignals:
    """Retrieval similarity, support (a groundedness score if one ran, else lexical), gain."""
    candidate = context.candidate
    support = None
    for score in context.scores:
        if score.estimator.startswith("groundedness") and score.confidence is not None:
            support = score.confidence
            break
    if support is None and candidate is not None:
        support = lexical_support(candidate.text, [d.text for d in candidate.documents])
    return ContextSignals(
        similarity=top_similarity(candidate),
        support=support,
        gain=confidence_gain(internal.candidate if internal else None, candidate),
    )


SCR_TEMPLATE = (
    "{question}\n"
    "Without the passage, the answer would be: {internal}\n"
    "From the passage, the answer would be: {context}\n"
    "Trust the passage only if it is reliable and relevant. Give the right answer only."
)


class Situated(GroundingBase):
    """Answer closed-book and with context, then trust whichever deserves it.

    `method="rcr"` applies the rules below; `method="scr"` adds a third, self-guided answer
    written from a prompt that shows both answers and keeps it (falling back to the rules when
    it fails).

    The RCR rules, with c_int and c_ctx the two answers' confidences:
    1. if only one answer exists, keep it; if both agree, keep the context answer with the
       higher of the two confidences;
    2. the context's evidence is c_ctx + support_weight·(support − 0.5) + gain_weight·gain;
       keep the context answer when its evidence beats c_int by `margin`, the internal one
       when c_int beats the evidence by `margin`;
    3. otherwise the conflict is unresolved: keep the better one but with the lower of the two
       confidences, so the policy retrieves more, escalates or abstains.
    """

    name = "situated"
    # The names of the branches a step records, to read them back from a verdict.
    INTERNAL = INTERNAL
    CONTEXT = CONTEXT
    SELF_GUIDED = SELF_GUIDED

    def __init__(
        self,
        method: Literal["rcr", "scr"] = "rcr",
        *,
        retriever: str | None = None,
        k: int = 3,
        margin: float = 0.1,
        support_weight: float = 0.3,
        gain_weight: float = 0.5,
    ) -> None:
        if method not in ("rcr", "scr"):
            raise ConfigError(f"Situated method must be 'rcr' or 'scr', got {method!r}")
        if k < 1:
            raise ConfigError(f"Situated k must be >= 1 passages, got {k}")
        for field, value in (
            ("margin", margin),
            ("support_weight", support_weight),
            ("gain_weight", gain_weight),
        ):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"Situated {field} must lie in [0, 1], got {value}")
        self.method = method
        self.retriever = retriever
        self.k = k
        self.margin = margin
        self.support_weight = support_weight
        self.gain_weight = gain_weight
        # The Confidence Gain compares token entropies: both answers need top-k logprobs.
        self.needs = Needs(logprobs=True, top_logprobs=TOP_K)

    def validate(self, spec: RouterSpec) -> None:
        named = [self.retriever] if self.retriever else []
        check_retrievers("Situated", named, spec.retrievers)

    def plan(
        self, query: Query, retrievers: Sequence[str], more: RetrieveMore | None
    ) -> tuple[BranchPlan, ...]:
        internal = BranchPlan(name=INTERNAL, use_context=False)
        retriever = (more.retriever if more else None) or self.retriever
        if retriever is None and retrievers and (more is not None or not query.context):
            retriever = retrievers[0]
        if retriever is None or (more is None and query.context):
            return internal, BranchPlan(name=CONTEXT)  # the caller's context
        context = BranchPlan(name=CONTEXT, retriever=retriever, k=self.k)
        return internal, apply_more(context, more)

    def followup(self, query: Query, branches: Sequence[Branch]) -> BranchPlan | None:
        """SCR's third answer: a prompt that shows the model both answers and the passages."""
        if self.method != "scr":
            return None
        by_name = {b.name: b for b in branches}
        internal, context = by_name.get(INTERNAL), by_name.get(CONTEXT)
        if internal is None or context is None:
            return None
        if internal.candidate is None or context.candidate is None:
            return None
        if not context.candidate.documents:
            return None
        question = SCR_TEMPLATE.format(
            question=query.question,
            internal=internal.candidate.text or "(no answer)",
            context=context.candidate.text or "(no answer)",
        )
        return BranchPlan(name=SELF_GUIDED, question=question, documents_from=CONTEXT)

    def select(self, query: Query, branches: Sequence[Branch]) -> Selection:
        by_name = {b.name: b for b in branches}
        guided = by_name.get(SELF_GUIDED)
        if guided is not None and guided.candidate is not None:
            return Selection(SELF_GUIDED, guided.confidence, "self-guided answer weighing both")
        return self.rcr(by_name.get(INTERNAL), by_name.get(CONTEXT))

    def rcr(self, internal: Branch | None, context: Branch | None) -> Selection:
        """The rule-based choice between the closed-book and the context answer."""
        has_int = internal is not None and internal.candidate is not None
        has_ctx = (
            context is not None
            and context.candidate is not None
            and bool(context.candidate.documents)
        )
        if not has_int and not has_ctx:
            if context is not None and context.candidate is not None:
                return Selection(CONTEXT, context.confidence, "no passage was found")
            return Selection(None, None, "neither answer was produced")
        if not has_ctx:
            assert internal is not None
            return Selection(INTERNAL, internal.confidence, "no context answer: kept own knowledge")
        assert context is not None and context.candidate is not None
        if not has_int:
            return Selection(CONTEXT, context.confidence, "no closed-book answer: kept context")
        assert internal is not None and internal.candidate is not None
        c_int = internal.confidence if internal.confidence is not None else 0.0
        c_ctx = context.confidence if context.confidence is not None else 0.0
        signals = context_signals(internal, context)
        about = f"own {c_int:.3f}, context {c_ctx:.3f} ({signals.describe()})"
        if answers_agree(internal.candidate.text, context.candidate.text):
            return Selection(CONTEXT, max(c_int, c_ctx), f"both answers agree: {about}")
        evidence = c_ctx
        if signals.support is not None:
            evidence += self.support_weight * (signals.support - 0.5)
        if signals.gain is not None:
            evidence += self.gain_weight * signals.gain
        if evidence >= c_int + self.margin:
            return Selection(CONTEXT, c_ctx, f"context beats own knowledge: {about}")
        if c_int >= evidence + self.margin:
            return Selection(INTERNAL, c_int, f"own knowledge beats the context: {about}")
        kept = CONTEXT if evidence >= c_int else INTERNAL
        return Selection(
            kept, min(c_int, c_ctx), f"conflict unresolved, both too close or weak: {about}"
        )

    def __repr__(self) -> str:
        return (
            f"Situated({self.method!r}, retriever={self.retriever!r}, k={self.k}, "
            f"margin={self.margin})"
        )
