"""The route engine's pure rules, tested with plain values: no models, no event loop."""

from __future__ import annotations

import pytest

from demur import (
    Abstain,
    Accept,
    AskHuman,
    ContextOverflowError,
    Decision,
    Escalate,
    Query,
    RetrieveMore,
    RouteError,
    RouteState,
    Step,
)
from demur.errors import InvalidPayload, QueueUnavailable
from demur.protocols import RouterSpec
from demur.router import _engine
from demur.types import Candidate, Score

SPEC = RouterSpec(models=("weak", "strong"), retrievers=("minilm-l6",), has_queue=True)


def answered(index: int = 0, model: str = "weak", confidence: float = 0.4) -> Step:
    return Step(
        index=index,
        model=model,
        candidate=Candidate(text=f"answer {index}", model=model),
        confidence=confidence,
        scores=(Score(estimator="mean_logprob", confidence=confidence),),
    )


def state(*steps: Step, steps_left: int = 3) -> RouteState:
    return RouteState(query=Query("Q?"), steps=steps, models=SPEC.models, steps_left=steps_left)


def decide(action: object, reason: str = "policy says so") -> Decision:
    return Decision(action=action, reason=reason, threshold=0.6)  # type: ignore[arg-type]


def test_a_decision_within_limits_is_kept() -> None:
    for action in (Accept(), Escalate("strong"), RetrieveMore(k=10), AskHuman(), Abstain()):
        decision = decide(action)
        assert _engine.enforce(decision, state(answered()), SPEC, "p") is decision


def test_a_call_the_budget_cannot_pay_for_becomes_an_abstention_that_says_why() -> None:
    spent = state(answered(), steps_left=0)
    for action, what in ((Escalate("strong"), "escalation"), (RetrieveMore(), "retrieving more")):
        decision = _engine.enforce(decide(action), spent, SPEC, "p")
        assert decision.action == Abstain()
        assert decision.reason == f"policy says so; {what} refused: step budget spent"
        assert decision.threshold == 0.6


@pytest.mark.parametrize(
    ("action", "spec", "message"),
    [
        (Escalate("huge"), SPEC, "escalated to unknown model 'huge'"),
        (RetrieveMore(retriever="bm25"), SPEC, "unknown retriever 'bm25'"),
        (RetrieveMore(model="huge"), SPEC, "asked unknown model 'huge'"),
        (RetrieveMore(), RouterSpec(models=("weak",)), "has no retriever"),
        (AskHuman(), RouterSpec(models=("weak",)), "there is no queue"),
        (Accept(step=3), SPEC, "accepted step 3, which has no answer"),
    ],
)
def test_a_decision_the_router_cannot_carry_out_is_a_route_error(
    action: object, spec: RouterSpec, message: str
) -> None:
    with pytest.raises(RouteError, match=message):
        _engine.enforce(decide(action), state(answered()), spec, "p")


def test_an_accepted_verdict_carries_the_chosen_steps_answer() -> None:
    steps = [answered(0, "weak", 0.7), answered(1, "strong", 0.5)]
    verdict = _engine.answered_verdict(Accept(step=0), steps, trace_id=None, cost=0.0)
    assert (verdict.status, verdict.answer, verdict.model) == ("answered", "answer 0", "weak")
    assert verdict.confidence == 0.7 and len(verdict.steps) == 2


def test_an_abstention_where_every_step_overflowed_is_an_error_not_an_answer() -> None:
    overflow = Step(index=0, model="weak", error="too long", error_type="ContextOverflowError")
    with pytest.raises(ContextOverflowError, match="does not fit any model"):
        _engine.abstained_verdict("no", [overflow])
    mixed = [overflow, answered(1)]
    assert _engine.abstained_verdict("no", mixed).message == "no"


def test_a_ticket_holds_every_answer_written_and_the_reason() -> None:
    failed = Step(index=1, model="weak", error="boom", error_type="ServerError")
    last = answered(2, "strong").model_copy(
        update={"decision": decide(AskHuman(priority=2), "too unsure")}
    )
    query = Query("Q?", metadata={"idempotency_key": 7})
    request = _engine.ticket_request(
        AskHuman(priority=2), query, [answered(), failed, last], "t", "s"
    )
    assert [c.model for c in request.candidates] == ["weak", "strong"]
    assert request.candidates[0].scores == {"mean_logprob": 0.4}
    assert (request.reason, request.priority, request.idempotency_key) == ("too unsure", 2, "7")


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (
            QueueUnavailable("review queue /srv/private/queue.db: database is locked"),
            "queue_unavailable (QueueUnavailable)",
        ),
        (InvalidPayload("ticket.priority is 2147483648, outside ..."), "ticket_invalid"),
        (OSError("cannot write /srv/private/queue.db"), "queue_failed (OSError)"),
    ],
)
def test_a_queue_failure_turns_the_hand_off_into_an_abstention_with_a_code(error, failure):
    steps = [answered().model_copy(update={"decision": decide(AskHuman(), "unsure")})]
    _engine.with_queue_failure(steps, error)
    decision = steps[-1].decision
    assert decision is not None and decision.action == Abstain()
    assert decision.reason.startswith(f"unsure; review queue failed: {failure}")
    assert decision.reason.endswith(", so no person was asked")
    # The error's message (a path, a value) stays out: the reason reaches API clients.
    assert "/srv/private" not in decision.reason and "2147483648" not in decision.reason
