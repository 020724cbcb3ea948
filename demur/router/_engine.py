"""The route engine's pure half: hold a policy's decision to the router's limits, build verdicts.

Nothing here awaits, calls a model or touches a queue, so every rule can be tested with
plain values: the `Router` carries out what these functions decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from demur._construct import construct
from demur.errors import ContextOverflowError, InvalidPayload, QueueUnavailable, RouteError
from demur.protocols import RouterSpec, RouteState
from demur.types import (
    Abstain,
    Accept,
    AskHuman,
    Decision,
    Escalate,
    Query,
    RetrieveMore,
    Step,
    Verdict,
)

if TYPE_CHECKING:
    from demur.queue.base import TicketRequest

# Verdicts are built with `construct`: every field comes from values already validated
# (Steps, Scores, a Decision), and validating again costs on every route.


def enforce(decision: Decision, state: RouteState, spec: RouterSpec, policy: str) -> Decision:
    """Hold a policy's decision to the router's limits, whatever the policy decided.

    A reference the router cannot carry out is a RouteError (a bug in the policy); a call
    the budget no longer allows becomes an abstention that says why.
    """
    action = decision.action
    if isinstance(action, Escalate):
        if action.model not in spec.models:
            raise RouteError(f"policy {policy!r} escalated to unknown model '{action.model}'")
        return _within_budget(decision, state, "escalation")
    if isinstance(action, RetrieveMore):
        _check_retrieve_more(action, spec, policy)
        return _within_budget(decision, state, "retrieving more")
    if isinstance(action, Accept):
        index = state.current.index if action.step is None else action.step
        if not 0 <= index < len(state.steps) or state.steps[index].candidate is None:
            raise RouteError(f"policy {policy!r} accepted step {index}, which has no answer")
    if isinstance(action, AskHuman) and not spec.has_queue:
        raise RouteError(f"policy {policy!r} asked a human but there is no queue")
    return decision


def _within_budget(decision: Decision, state: RouteState, what: str) -> Decision:
    blocker = state.budget_blocker()
    if blocker is None:
        return decision
    return Decision(
        action=Abstain(),
        reason=f"{decision.reason}; {what} refused: {blocker}",
        threshold=decision.threshold,
    )


def _check_retrieve_more(action: RetrieveMore, spec: RouterSpec, policy: str) -> None:
    if not spec.retrievers:
        raise RouteError(
            f"policy {policy!r} asked to retrieve more but the router has no retriever"
        )
    if action.retriever is not None and action.retriever not in spec.retrievers:
        raise RouteError(
            f"policy {policy!r} asked to retrieve with unknown retriever '{action.retriever}'"
        )
    if action.model is not None and action.model not in spec.models:
        raise RouteError(f"policy {policy!r} asked unknown model '{action.model}' to answer")


def queue_failure_code(error: BaseException) -> str:
    """A stable code for why the queue took no ticket."""
    if isinstance(error, QueueUnavailable):
        return "queue_unavailable"
    if isinstance(error, InvalidPayload):
        return "ticket_invalid"
    return "queue_failed"


def with_queue_failure(steps: list[Step], error: BaseException) -> None:
    """Turn the last step's AskHuman into an abstention that says the queue failed.

    The reason carries a code and the error's type, never its message: that can hold the
    queue's file path or the question, and reasons reach API clients. The router logs it.
    """
    decision = steps[-1].decision
    assert decision is not None
    failure = f"{queue_failure_code(error)} ({type(error).__name__})"
    steps[-1] = steps[-1].model_copy(
        update={
            "decision": Decision(
                action=Abstain(),
                reason=f"{decision.reason}; review queue failed: {failure}, so no person was asked",
                threshold=decision.threshold,
            )
        }
    )


def ticket_request(
    action: AskHuman,
    query: Query,
    steps: Sequence[Step],
    trace_id: str | None,
    span_id: str | None,
) -> TicketRequest:
    """The review ticket for a route handed to a person: every answer written, and why."""
    from demur.queue.base import CandidateAnswer, TicketRequest  # loaded by the first hand-off

    decision = steps[-1].decision
    key = query.metadata.get("idempotency_key")
    return TicketRequest(
        question=query.question,
        context=query.context,
        candidates=tuple(
            CandidateAnswer(
                model=s.model,
                text=s.candidate.text,
                confidence=s.confidence,
                scores={sc.estimator: sc.confidence for sc in s.scores},
                details=s.scores,
            )
            for s in steps
            if s.candidate is not None
        ),
        reason=decision.reason if decision is not None else "",
        trace_id=trace_id,
        span_id=span_id,
        priority=action.priority,
        # A caller that retries a route can pass the same key: one ticket, not two.
        idempotency_key=str(key) if key is not None else None,
    )


def pending_verdict(ticket_id: str, steps: Sequence[Step], **common: Any) -> Verdict:
    return construct(
        Verdict,
        status="pending",
        ticket_id=ticket_id,
        message="A person will review this question.",
        confidence=steps[-1].confidence,
        calibrated=steps[-1].calibrated,
        steps=tuple(steps),
        **common,
    )


def answered_verdict(action: Accept, steps: Sequence[Step], **common: Any) -> Verdict:
    chosen = steps[steps[-1].index if action.step is None else action.step]
    assert chosen.candidate is not None
    return construct(
        Verdict,
        status="answered",
        answer=chosen.candidate.text,
        confidence=chosen.confidence,
        calibrated=chosen.calibrated,
        model=chosen.model,
        steps=tuple(steps),
        **common,
    )


def abstained_verdict(message: str, steps: Sequence[Step], **common: Any) -> Verdict:
    """An abstention; a ContextOverflowError when every step failed for a too-long prompt."""
    if steps and all(s.error_type == "ContextOverflowError" for s in steps):
        overflow = "; ".join(s.error or "" for s in steps)
        raise ContextOverflowError(
            f"the question does not fit any model that was tried: {overflow}"
        )
    return construct(
        Verdict,
        status="abstained",
        message=message,
        confidence=steps[-1].confidence,
        calibrated=steps[-1].calibrated,
        steps=tuple(steps),
        **common,
    )


__all__ = [
    "abstained_verdict",
    "answered_verdict",
    "enforce",
    "pending_verdict",
    "queue_failure_code",
    "ticket_request",
    "with_queue_failure",
]
