"""Why each step went as it did, as API clients see it: a stable code and a safe message.

A decision's reason is written for operators. When the review queue refused a hand-off it
says how, and an error's text may name the queue's file; clients get the code and a fixed
sentence instead, while the log keeps the reason in full (`internal_details`).
"""

from __future__ import annotations

from demur.types import Step

# What the router appends to a reason when the queue took no ticket, followed by a code
# (demur.router._engine.with_queue_failure).
_QUEUE_FAILED = "; review queue failed:"
_QUEUE_MESSAGES = {
    "queue_unavailable": "the review queue was unavailable, so no person was asked",
    "ticket_invalid": "the review queue refused the ticket, so no person was asked",
    "queue_failed": "the review queue failed, so no person was asked",
}

REASON_CODES = (
    "above_threshold",  # confidence at or above the policy's threshold
    "below_threshold",  # confidence under it
    "unscored",  # no estimator could score the answer
    "model_failed",  # the model call failed (see error_type)
    "policy",  # a policy decision without a threshold to compare with
    *_QUEUE_MESSAGES,  # the policy asked a person, but the review queue took no ticket
)


def step_reason(step: Step) -> tuple[str | None, str | None]:
    """The step's reason code and the message a client may see (None, None: no decision)."""
    decision = step.decision
    if decision is None:
        return None, None
    reason = decision.reason
    head, failed, tail = reason.partition(_QUEUE_FAILED)
    if failed:
        code = tail.split()[0] if tail.split() else ""
        code = code if code in _QUEUE_MESSAGES else "queue_failed"
        message = _QUEUE_MESSAGES[code]
        return code, f"{head}; {message}" if head else message
    if step.error_type is not None:
        return "model_failed", reason
    if step.confidence is None:
        return "unscored", reason
    if decision.threshold is None:
        return "policy", reason
    code = "above_threshold" if step.confidence >= decision.threshold else "below_threshold"
    return code, reason


def internal_details(steps: tuple[Step, ...]) -> list[str]:
    """The reasons `step_reason` shortened for clients, in full, for the log."""
    return [
        s.decision.reason
        for s in steps
        if s.decision is not None and _QUEUE_FAILED in s.decision.reason
    ]


__all__ = ["REASON_CODES", "internal_details", "step_reason"]
