"""The route loop on scripted models: every action, budget, timeout, retry and failure path."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from demur import (
    Abstain,
    AskHuman,
    Budget,
    ConfigError,
    ContextOverflowError,
    DemurError,
    Escalate,
    EstimatorUnavailable,
    InvalidQueryError,
    Ladder,
    MeanTokenLogprob,
    MinTokenProb,
    ModelNotFoundError,
    Needs,
    Price,
    Query,
    RateLimitError,
    Reply,
    RetryPolicy,
    Router,
    Score,
    ScriptedModel,
    ServerError,
    SqliteQueue,
    UsageError,
)
from demur.bases import EstimatorBase, PolicyBase
from demur.errors import QueueUnavailable
from demur.estimators.base import Attempt

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002)


def weak_strong(weak_p: float = 0.3, strong_p: float = 0.9) -> tuple[ScriptedModel, ScriptedModel]:
    return (
        ScriptedModel("weak", [Reply.confident("Lyon", weak_p)]),
        ScriptedModel("strong", [Reply.confident("Paris", strong_p)]),
    )


def ladder(*rungs: Escalate | AskHuman | Abstain, threshold: float = 0.6) -> Ladder:
    return Ladder(threshold, rungs=rungs or (Abstain(),))


class StaticEstimator(EstimatorBase):
    """Returns a fixed confidence, after an optional delay, or raises."""

    def __init__(
        self,
        name: str,
        confidence: float = 0.5,
        *,
        delay_s: float = 0.0,
        error: BaseException | None = None,
    ) -> None:
        self.name = name
        self.needs = Needs()
        self.confidence = confidence
        self.delay_s = delay_s
        self.error = error

    async def aestimate(self, attempt: Attempt) -> Score:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return Score(estimator=self.name, value=self.confidence, confidence=self.confidence)


# --- the four actions --------------------------------------------------------------------------


def test_confident_first_answer_is_accepted_without_escalating():
    weak, strong = weak_strong(weak_p=0.9)
    router = Router(
        [weak, strong], estimators=[MeanTokenLogprob()], policy=ladder(Escalate("strong"))
    )
    verdict = router.route("What is the capital of France?")
    assert verdict.status == "answered"
    assert verdict.answer == "Lyon"
    assert verdict.model == "weak"
    assert verdict.confidence == pytest.approx(0.9)
    assert verdict.action == "accept"
    assert len(verdict.steps) == 1
    assert strong.calls == []


def test_low_confidence_escalates_to_the_stronger_model():
    weak, strong = weak_strong()
    router = Router(
        [weak, strong], estimators=[MeanTokenLogprob()], policy=ladder(Escalate("strong"))
    )
    verdict = router.route("What is the capital of France?")
    assert verdict.status == "answered"
    assert verdict.answer == "Paris"
    assert verdict.model == "strong"
    assert verdict.escalated
    first, second = verdict.steps
    assert first.decision is not None and first.decision.action == Escalate("strong")
    assert "0.300 < threshold 0.600" in first.decision.reason
    assert second.decision is not None and second.decision.action.kind == "accept"


def test_low_confidence_everywhere_goes_to_a_person(tmp_path):
    weak, strong = weak_strong(weak_p=0.2, strong_p=0.3)
    queue = SqliteQueue(tmp_path / "queue.db")
    router = Router(
        [weak, strong],
        estimators=[MeanTokenLogprob()],
        policy=ladder(Escalate("strong"), AskHuman(priority=2)),
        queue=queue,
    )
    verdict = router.route(Query("Capital of France?", context=("France's capital is Paris.",)))
    assert verdict.status == "pending"
    assert verdict.answer is None
    assert verdict.action == "ask_human"
    ticket = queue.get(verdict.ticket_id)
    assert ticket.question == "Capital of France?"
    assert ticket.context == ("France's capital is Paris.",)
    assert ticket.priority == 2
    assert [c.text for c in ticket.candidates] == ["Lyon", "Paris"]
    assert ticket.candidates[1].scores["mean_logprob"] == pytest.approx(0.3)
    assert "threshold" in ticket.reason


def test_abstains_with_the_configured_message_when_no_rung_is_left():
    weak, _ = weak_strong()
    router = Router(
        [weak], estimators=[MeanTokenLogprob()], policy=ladder(Abstain("Ask a librarian."))
    )
    verdict = router.route("Capital of France?")
    assert verdict.status == "abstained"
    assert verdict.answer is None
    assert verdict.message == "Ask a librarian."


def test_default_abstain_message_comes_from_the_router():
    weak, _ = weak_strong()
    router = Router(
        [weak], estimators=[MeanTokenLogprob()], policy=ladder(), abstain_message="No idea."
    )
    assert router.route("Capital?").message == "No idea."


async def test_aroute_is_the_async_twin():
    weak, strong = weak_strong()
    router = Router(
        [weak, strong], estimators=[MeanTokenLogprob()], policy=ladder(Escalate("strong"))
    )
    verdict = await router.aroute("Capital of France?")
    assert verdict.answer == "Paris"


async def test_route_inside_a_running_loop_explains_to_use_aroute():
    weak, _ = weak_strong()
    router = Router([weak], policy=ladder())
    with pytest.raises(DemurError, match="await router.aroute"):
        router.route("Capital?")


def test_start_model_can_be_chosen():
    weak, strong = weak_strong(strong_p=0.95)
    router = Router(
        [weak, strong], start="strong", estimators=[MeanTokenLogprob()], policy=ladder()
    )
    verdict = router.route("Capital?")
    assert verdict.model == "strong"
    assert weak.calls == []


# --- confidence: combination and calibration ------------------------------------------------


def test_scores_are_combined_and_calibrated():
    model = ScriptedModel(
        "m", [Reply(text="Paris France", logprobs=(math.log(0.9), math.log(0.4)))]
    )

    class Halve:
        def calibrate(self, confidence: float) -> float:
            return confidence / 2

    router = Router(
        [model],
        estimators=[MeanTokenLogprob(), MinTokenProb()],
        combine="min",
        calibrator=Halve(),
        policy=Ladder(0.1),
    )
    verdict = router.route("Capital?")
    step = verdict.steps[0]
    assert step.raw_confidence == pytest.approx(0.4)
    assert step.confidence == pytest.approx(0.2)
    assert step.calibrated and verdict.calibrated
    assert {s.estimator for s in step.scores} == {"mean_logprob", "min_prob"}


def test_unavailable_logprobs_are_recorded_and_the_policy_carries_on():
    weak = ScriptedModel("weak", [Reply(text="Lyon")])  # no logprobs from this backend
    strong = ScriptedModel("strong", [Reply.confident("Paris", 0.9)])
    router = Router(
        [weak, strong], estimators=[MeanTokenLogprob()], policy=ladder(Escalate("strong"))
    )
    verdict = router.route("Capital?")
    first = verdict.steps[0]
    assert first.scores[0].status == "unavailable"
    assert "logprobs" in (first.scores[0].detail or "")
    assert first.confidence is None
    assert first.decision is not None
    assert first.decision.reason.startswith("no estimator could score")
    assert verdict.answer == "Paris"


def test_the_router_asks_backends_for_what_estimators_need():
    from demur import MeanTokenEntropy

    model = ScriptedModel("m", [Reply.confident("Paris", 0.9)])
    Router([model], estimators=[MeanTokenEntropy(top_k=4)], policy=Ladder(0.5)).route("Q?")
    assert model.calls[0].logprobs is True
    assert model.calls[0].top_logprobs == 4
    bare = ScriptedModel("m", [Reply.confident("Paris", 0.9)])
    Router([bare], policy=Ladder(0.5)).route("Q?")
    assert bare.calls[0].logprobs is False


# --- estimator failures and timeouts --------------------------------------------------------


def test_a_failing_estimator_is_recorded_and_skipped():
    model = ScriptedModel("m", [Reply.confident("Paris", 0.9)])
    broken = StaticEstimator("broken", error=RuntimeError("disk on fire"))
    router = Router([model], estimators=[broken, MeanTokenLogprob()], policy=Ladder(0.5))
    verdict = router.route("Capital?")
    failed, ok = verdict.steps[0].scores
    assert failed.status == "failed"
    assert (failed.detail, failed.error_type) == ("broken raised RuntimeError", "RuntimeError")
    assert ok.status == "ok"
    assert verdict.confidence == pytest.approx(0.9)
    assert verdict.status == "answered"


def test_a_slow_estimator_times_out_and_the_route_goes_on():
    model = ScriptedModel("m", [Reply.confident("Paris", 0.9)])
    slow = StaticEstimator("slow", 1.0, delay_s=5.0)
    router = Router(
        [model],
        estimators=[slow, MeanTokenLogprob()],
        estimator_timeout_s=0.05,
        policy=Ladder(0.5),
    )
    verdict = router.route("Capital?")
    timed_out = verdict.steps[0].scores[0]
    assert timed_out.status == "timeout"
    assert timed_out.confidence is None
    assert verdict.confidence == pytest.approx(0.9)


def test_estimators_run_concurrently():
    started = asyncio.Event()

    class Waiter(StaticEstimator):
        async def aestimate(self, attempt: Attempt) -> Score:
            await asyncio.wait_for(started.wait(), timeout=2.0)
            return await super().aestimate(attempt)

    class Starter(StaticEstimator):
        async def aestimate(self, attempt: Attempt) -> Score:
            started.set()
            return await super().aestimate(attempt)

    model = ScriptedModel("m", [Reply.confident("Paris", 0.9)])
    router = Router(
        [model], estimators=[Waiter("waiter", 0.8), Starter("starter", 0.6)], policy=Ladder(0.5)
    )
    verdict = router.route("Capital?")
    # The waiter only finishes if the starter ran while it waited.
    assert [s.status for s in verdict.steps[0].scores] == ["ok", "ok"]
    assert verdict.confidence == pytest.approx(0.7)


def test_estimator_raising_unavailable_is_not_a_failure():
    model = ScriptedModel("m", [Reply.confident("Paris", 0.9)])
    shy = StaticEstimator("shy", error=EstimatorUnavailable("needs a judge model"))
    verdict = Router([model], estimators=[shy], policy=Ladder(0.5)).route("Capital?")
    assert verdict.steps[0].scores[0].status == "unavailable"
    assert verdict.status == "abstained"


# --- model failures, retries, timeouts ------------------------------------------------------


def test_transient_errors_are_retried_then_succeed():
    model = ScriptedModel(
        "m",
        [
            ServerError("502 from upstream"),
            RateLimitError("slow down"),
            Reply.confident("Paris", 0.9),
        ],
    )
    router = Router([model], estimators=[MeanTokenLogprob()], policy=Ladder(0.5), retry=FAST_RETRY)
    verdict = router.route("Capital?")
    assert verdict.answer == "Paris"
    assert verdict.steps[0].retries == 2
    assert len(model.calls) == 3


def test_retries_are_bounded_and_the_failure_is_recorded():
    weak = ScriptedModel("weak", [ServerError("503 unavailable")])
    strong = ScriptedModel("strong", [Reply.confident("Paris", 0.9)])
    router = Router(
        [weak, strong],
        estimators=[MeanTokenLogprob()],
        policy=ladder(Escalate("strong")),
        retry=FAST_RETRY,
    )
    verdict = router.route("Capital?")
    first = verdict.steps[0]
    assert first.error_type == "ServerError"
    assert first.error == "503 unavailable"
    assert first.retries == 2
    assert len(weak.calls) == 3
    assert first.decision is not None and "weak failed (ServerError)" in first.decision.reason
    assert verdict.answer == "Paris"


def test_permanent_errors_are_not_retried():
    model = ScriptedModel("m", [ModelNotFoundError("no such model 'gpt-9'")])
    router = Router([model], estimators=[MeanTokenLogprob()], policy=Ladder(0.5), retry=FAST_RETRY)
    verdict = router.route("Capital?")
    assert verdict.status == "abstained"
    assert verdict.steps[0].error_type == "ModelNotFoundError"
    assert len(model.calls) == 1


def test_a_model_that_hangs_is_cut_by_its_timeout_and_retried():
    model = ScriptedModel(
        "m", [Reply(text="late", delay_s=5.0), Reply.confident("Paris", 0.9)], timeout_s=0.05
    )
    router = Router([model], estimators=[MeanTokenLogprob()], policy=Ladder(0.5), retry=FAST_RETRY)
    verdict = router.route("Capital?")
    assert verdict.answer == "Paris"
    assert verdict.steps[0].retries == 1


def test_a_backend_raising_a_foreign_exception_is_a_failed_step_that_explains():
    model = ScriptedModel("m", [KeyError("boom: the prompt was 'Capital?'")])
    verdict = Router([model], policy=Ladder(0.5)).route("Capital?")
    assert verdict.status == "abstained"
    step = verdict.steps[0]
    assert step.error_type == "ModelContractError"
    assert (step.error or "").startswith("model 'm' raised KeyError. Backends must raise")
    # Its message can quote the prompt: it stays on the cause, out of the step's error.
    assert "boom" not in verdict.model_dump_json()


def test_context_overflow_on_every_model_is_raised_to_the_caller():
    message = "prompt is 5000 tokens but m's context window is 2048; shorten the question"
    model = ScriptedModel("m", [ContextOverflowError(message)])
    router = Router([model], policy=Ladder(0.5))
    with pytest.raises(ContextOverflowError, match="shorten the question"):
        router.route("a very long question " * 10)


def test_context_overflow_on_the_weak_model_escalates():
    weak = ScriptedModel("weak", [ContextOverflowError("too long for weak")])
    strong = ScriptedModel("strong", [Reply.confident("Paris", 0.9)])
    router = Router(
        [weak, strong], estimators=[MeanTokenLogprob()], policy=ladder(Escalate("strong"))
    )
    verdict = router.route("Capital?")
    assert verdict.answer == "Paris"
    assert verdict.steps[0].error_type == "ContextOverflowError"


# --- budgets --------------------------------------------------------------------------------


def test_step_budget_stops_escalation():
    a = ScriptedModel("a", [Reply.confident("x", 0.1)])
    b = ScriptedModel("b", [Reply.confident("y", 0.1)])
    c = ScriptedModel("c", [Reply.confident("z", 0.9)])
    router = Router(
        [a, b, c],
        estimators=[MeanTokenLogprob()],
        policy=ladder(Escalate("b"), Escalate("c"), Abstain("out of budget")),
        budget=Budget(max_steps=2),
    )
    verdict = router.route("Q?")
    assert [s.model for s in verdict.steps] == ["a", "b"]
    assert verdict.status == "abstained"
    decision = verdict.steps[-1].decision
    assert decision is not None and "step budget spent" in decision.reason
    assert c.calls == []


def test_cost_budget_stops_escalation_and_cost_is_reported():
    price = Price(input_per_1k=1000.0, output_per_1k=1000.0)  # 1 per token
    weak = ScriptedModel("weak", [Reply.confident("Lyon", 0.1)], price=price)
    strong = ScriptedModel("strong", [Reply.confident("Paris", 0.9)], price=price)
    router = Router(
        [weak, strong],
        estimators=[MeanTokenLogprob()],
        policy=ladder(Escalate("strong")),
        budget=Budget(max_cost=2.0),
    )
    verdict = router.route("Capital of France?")
    usage = verdict.steps[0].candidate.usage
    assert verdict.steps[0].cost == pytest.approx(usage.input_tokens + usage.output_tokens)
    assert verdict.cost == verdict.steps[0].cost > 2.0
    assert verdict.status == "abstained"
    assert strong.calls == []


def test_deadline_stops_a_slow_route_and_nothing_hangs():
    slow = ScriptedModel("slow", [Reply(text="late", delay_s=5.0)], timeout_s=30)
    strong = ScriptedModel("strong", [Reply.confident("Paris", 0.9)])
    router = Router(
        [slow, strong],
        estimators=[MeanTokenLogprob()],
        policy=ladder(Escalate("strong"), Abstain("timed out")),
        budget=Budget(deadline_s=0.1),
        retry=FAST_RETRY,
    )
    verdict = router.route("Q?")
    assert verdict.steps[0].error_type == "DeadlineExceededError"
    assert "deadline of 0.1s" in (verdict.steps[0].error or "")
    assert verdict.status == "abstained"
    assert strong.calls == []
    assert verdict.latency_s < 4.0  # the model alone would take 5 s


def test_a_policy_cannot_escalate_past_the_budget():
    class Greedy(PolicyBase):
        name = "greedy"

        def decide(self, state):
            from demur import Decision

            return Decision(action=Escalate("m"), reason="always escalate")

    model = ScriptedModel("m", [Reply.confident("x", 0.9)])
    router = Router([model], policy=Greedy(), budget=Budget(max_steps=3))
    verdict = router.route("Q?")
    assert len(verdict.steps) == 3
    assert verdict.status == "abstained"
    assert "escalation refused: step budget spent" in (verdict.steps[-1].decision.reason or "")


# --- the queue ------------------------------------------------------------------------------


def test_a_broken_queue_loses_nothing_and_abstains_with_the_reason(tmp_path):
    class BrokenQueue:
        def enqueue(self, request):
            raise OSError("disk full")

        def get(self, ticket_id):
            raise NotImplementedError

        def pending(self, limit=100):
            return []

        def resolve(self, ticket_id, answer, reviewer, note=None):
            raise NotImplementedError

    weak, _ = weak_strong()
    router = Router(
        [weak], estimators=[MeanTokenLogprob()], policy=ladder(AskHuman()), queue=BrokenQueue()
    )
    verdict = router.route("Q?")
    assert verdict.status == "abstained"
    decision = verdict.steps[-1].decision
    assert decision is not None and "review queue failed: queue_failed (OSError)" in decision.reason
    assert "disk full" not in decision.reason
    assert verdict.steps[0].candidate is not None  # the model's answer is still on the verdict


class UnavailableQueue(SqliteQueue):
    """A queue whose database is gone: its error names the file, as real ones do."""

    def enqueue(self, request):
        raise QueueUnavailable("cannot open the review queue /srv/private/queue.db: disk I/O")


def test_a_queue_failure_gives_a_code_to_the_caller_and_the_path_to_the_log(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="demur.router")
    weak, _ = weak_strong()
    router = Router(
        [weak],
        estimators=[MeanTokenLogprob()],
        policy=ladder(AskHuman()),
        queue=UnavailableQueue(tmp_path / "q.db"),
    )
    verdict = router.route("Q?")
    assert verdict.status == "abstained"
    assert "/srv/private" not in verdict.model_dump_json()
    reason = verdict.steps[-1].decision.reason
    assert "review queue failed: queue_unavailable (QueueUnavailable)" in reason
    logged = [r.getMessage() for r in caplog.records if r.name == "demur.router"]
    assert any(
        "(queue_unavailable)" in line and "/srv/private/queue.db: disk I/O" in line
        for line in logged
    )


def test_a_ticket_the_queue_refuses_is_ticket_invalid(tmp_path):
    class Urgent(PolicyBase):
        name = "urgent"

        def decide(self, state):
            from demur import Decision

            return Decision(action=AskHuman(priority=2**31), reason="very urgent")

    model = ScriptedModel("m", [Reply.confident("x", 0.9)])
    queue = SqliteQueue(tmp_path / "q.db")
    verdict = Router([model], policy=Urgent(), queue=queue).route("Q?")
    assert verdict.status == "abstained"
    reason = verdict.steps[-1].decision.reason
    assert reason.startswith("very urgent; review queue failed: ticket_invalid (InvalidPayload)")
    assert queue.stats().total == 0


# --- bad input and bad setup ----------------------------------------------------------------


@pytest.mark.parametrize("question", ["", "   ", "\n"])
def test_empty_question_is_refused_with_a_clear_error(question):
    weak, _ = weak_strong()
    router = Router([weak], policy=ladder())
    with pytest.raises(InvalidQueryError, match="the question is empty"):
        router.route(question)
    assert weak.calls == []


def test_query_of_the_wrong_type_is_refused():
    weak, _ = weak_strong()
    router = Router([weak], policy=ladder())
    with pytest.raises(InvalidQueryError, match="got int"):
        router.route(42)  # type: ignore[arg-type]


def test_unknown_model_names_are_config_errors_with_a_hint():
    weak, strong = weak_strong()
    with pytest.raises(ConfigError, match="Did you mean 'strong'"):
        Router([weak, strong], policy=ladder(Escalate("strnog")))
    with pytest.raises(ConfigError, match="start model 'wek'"):
        Router([weak, strong], start="wek", policy=ladder())


def test_ask_human_without_a_queue_is_a_config_error():
    weak, _ = weak_strong()
    with pytest.raises(ConfigError, match="SqliteQueue"):
        Router([weak], policy=ladder(AskHuman()))


def test_duplicate_names_are_config_errors():
    with pytest.raises(ConfigError, match="two models are named 'weak'"):
        Router([weak_strong()[0], weak_strong()[0]], policy=ladder())
    with pytest.raises(ConfigError, match="repeated: mean_logprob"):
        Router(
            [weak_strong()[0]],
            estimators=[MeanTokenLogprob(), MeanTokenLogprob()],
            policy=ladder(),
        )


def test_an_object_that_is_not_a_model_is_refused():
    class NotAModel:
        name = "x"

    with pytest.raises(ConfigError, match="lacks .*agenerate.*Subclass demur.ModelBase"):
        Router([NotAModel()], policy=ladder())  # type: ignore[list-item]


def test_unknown_combine_method_is_a_config_error():
    with pytest.raises(ConfigError, match="Did you mean 'mean'"):
        Router([weak_strong()[0]], policy=ladder(), combine="maen")  # type: ignore[arg-type]


def test_verdicts_serialise_to_json_and_back():
    from demur import Verdict

    weak, strong = weak_strong()
    router = Router(
        [weak, strong], estimators=[MeanTokenLogprob()], policy=ladder(Escalate("strong"))
    )
    verdict = router.route("Capital?")
    again = Verdict.model_validate_json(verdict.model_dump_json())
    assert again == verdict


def test_an_estimator_returning_garbage_is_recorded_as_failed():
    class Garbage(StaticEstimator):
        async def aestimate(self, attempt: Attempt) -> Score:
            return 0.9  # type: ignore[return-value]

    model = ScriptedModel("m", [Reply.confident("Paris", 0.9)])
    verdict = Router([model], estimators=[Garbage("garbage")], policy=Ladder(0.5)).route("Q?")
    score = verdict.steps[0].scores[0]
    assert score.status == "failed"
    assert score.detail == "NotAScoreError: returned float, not a demur.Score"


def test_replace_derives_a_router_with_some_options_changed():
    weak, strong = weak_strong(weak_p=0.3, strong_p=0.9)
    queue = SqliteQueue(":memory:")
    router = Router(
        [weak, strong], policy=ladder(Escalate("strong")), estimators=[MeanTokenLogprob()]
    )
    started_strong = router.replace(start="strong")
    assert started_strong.start == "strong" and router.start == "weak"
    assert started_strong.estimators == router.estimators and started_strong.policy is router.policy
    verdict = started_strong.route("Capital of France?")
    assert [s.model for s in verdict.steps] == ["strong"]
    # Validation runs again: a human rung needs a queue, so the new router must get one.
    with pytest.raises(ConfigError, match="no review queue"):
        router.replace(policy=ladder(AskHuman()))
    assert router.replace(policy=ladder(AskHuman()), queue=queue).queue is queue


def test_replace_names_an_unknown_option():
    router = Router(list(weak_strong()), policy=ladder())
    with pytest.raises(ConfigError, match="unknown option 'strat'. Did you mean 'start'"):
        router.replace(strat="strong")


def test_a_component_missing_members_is_refused_with_what_it_lacks():
    class HalfEstimator:
        name = "half"

        async def aestimate(self, attempt):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(ConfigError, match="lacks needs, in_process, estimate.*EstimatorBase"):
        Router(list(weak_strong()), policy=ladder(), estimators=[HalfEstimator()])  # type: ignore[list-item]

    class OldPolicy:
        name = "old"

        def decide(self, state):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(ConfigError, match="policy OldPolicy .*lacks validate, threshold_for"):
        Router(list(weak_strong()), policy=OldPolicy())  # type: ignore[arg-type]


def test_the_sync_facade_inside_a_running_loop_is_a_usage_error():
    router = Router(list(weak_strong()), policy=ladder())

    async def misuse() -> None:
        router.route("Q?")

    with pytest.raises(UsageError, match=r"await router.aroute\(query\)"):
        asyncio.run(misuse())
