"""Deadlines are hard bounds, and every fault of a model or an estimator is a failed step.

Timing bounds are generous (machines are noisy); each still sits well below what the faulty
component alone would take, so a route that waited for it fails the test.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import pytest

from demur import (
    Abstain,
    Budget,
    Escalate,
    Ladder,
    MeanTokenLogprob,
    Needs,
    Reply,
    RetryPolicy,
    Router,
    Score,
    ScriptedModel,
)
from demur.bases import EstimatorBase, ModelBase
from demur.errors import ConfigError
from demur.estimators.base import Attempt
from demur.types import Completion, Generation, GenerationRequest

SLACK_S = 1.0  # what a route may take past its deadline on a busy machine


def answer(name: str, text: str = "Paris") -> Generation:
    return Generation(model=name, completions=(Completion(text=text),))


class Behaving(ModelBase):
    """A model whose every call runs `behave(call number)`."""

    def __init__(self, name: str, behave: Callable[[int], object]) -> None:
        self.name = name
        self.behave = behave
        self.calls = 0

    async def agenerate(self, request: GenerationRequest) -> Generation:
        self.calls += 1
        result = self.behave(self.calls)
        if asyncio.iscoroutine(result):
            result = await result
        return result  # type: ignore[return-value]


def escalating(first: ModelBase, **options: object) -> Router:
    strong = ScriptedModel("strong", [Reply.confident("Paris", 0.9)])
    return Router(
        [first, strong],
        estimators=[MeanTokenLogprob()],
        policy=Ladder(0.5, rungs=[Escalate("strong"), Abstain()]),
        **options,  # type: ignore[arg-type]
    )


# --- models that break the contract --------------------------------------------------------


def _raise(exc: Exception) -> Callable[[int], object]:
    def behave(call: int) -> object:
        raise exc

    return behave


@pytest.mark.parametrize(
    ("behave", "says"),
    [
        (lambda call: None, "returned NoneType, not a demur.Generation"),
        (lambda call: "Paris", "returned str, not a demur.Generation"),
        (lambda call: Generation.model_construct(model="w", completions=()), "no completion"),
        (_raise(ValueError("the prompt was secret")), "raised ValueError. Backends must raise"),
    ],
    ids=["none", "str", "no-completion", "foreign-exception"],
)
def test_a_model_breaking_its_contract_fails_its_step_and_the_ladder_escalates(behave, says):
    verdict = escalating(Behaving("weak", behave)).route("Capital of France?")
    assert (verdict.status, verdict.answer, verdict.model) == ("answered", "Paris", "strong")
    failed = verdict.steps[0]
    assert failed.error_type == "ModelContractError"
    assert says in (failed.error or "")
    assert "secret" not in verdict.model_dump_json()


def test_a_model_raising_demurs_own_non_model_error_ends_the_route():
    missing = ConfigError("this backend needs an extra: pip install 'demur[x]'")
    with pytest.raises(ConfigError, match="pip install"):
        escalating(Behaving("weak", _raise(missing))).route("Capital of France?")


# --- models that ignore cancellation -------------------------------------------------------


def swallowing(seconds: float) -> Callable[[int], object]:
    async def behave(call: int) -> Generation:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            await asyncio.sleep(seconds)  # ignores it, and answers late
        return answer("deaf")

    return lambda call: behave(call)


def test_a_model_that_swallows_cancellation_is_left_behind_at_the_deadline(caplog):
    caplog.set_level(logging.WARNING, logger="demur")
    router = escalating(Behaving("deaf", swallowing(3.0)), budget=Budget(deadline_s=0.3))
    started = time.monotonic()
    verdict = router.route("Capital of France?")
    assert time.monotonic() - started < 0.3 + SLACK_S  # the model alone takes 6 s
    assert verdict.status == "abstained"
    assert verdict.steps[0].error_type == "DeadlineExceededError"
    assert any(
        "model 'deaf' did not stop" in r.getMessage() and "CancelledError" in r.getMessage()
        for r in caplog.records
    )


def inner_scope(call: int) -> object:
    """A backend whose own cancel scope cancels and catches its work, as httpx's connection
    attempts do under anyio, then goes on awaiting well past the cancellation grace."""

    async def behave() -> Generation:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_later(0.01, task.cancel)
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            task.uncancel()  # its own cancellation, caught and taken back
        await asyncio.sleep(0.3)
        return answer("inner")

    return behave()


def test_a_cancellation_the_model_makes_and_catches_itself_is_not_a_timeout():
    router = escalating(Behaving("inner", inner_scope), budget=Budget(deadline_s=5))
    verdict = router.route("Capital of France?")
    assert verdict.steps[0].error_type is None
    assert verdict.steps[0].candidate is not None
    assert verdict.steps[0].candidate.text == "Paris"


def test_a_model_that_swallows_cancellation_at_its_timeout_fails_and_the_ladder_escalates():
    deaf = Behaving("deaf", swallowing(3.0))
    deaf.timeout_s = 0.2
    router = escalating(deaf, retry=RetryPolicy(max_attempts=1))
    started = time.monotonic()
    verdict = router.route("Capital of France?")
    assert time.monotonic() - started < 0.2 + SLACK_S
    assert verdict.steps[0].error_type == "ModelTimeoutError"
    assert (verdict.status, verdict.model) == ("answered", "strong")


# --- models that block the event loop ------------------------------------------------------


def blocking(first_s: float, then_s: float, first_calls: int = 2) -> Callable[[int], object]:
    """Synchronous sleeps inside agenerate: `first_s` on the first calls, then `then_s`."""

    def behave(call: int) -> Generation:
        time.sleep(first_s if call <= first_calls else then_s)
        return answer("sync")

    return behave


async def test_a_model_that_blocks_the_loop_moves_to_a_thread_and_its_deadline_holds(caplog):
    caplog.set_level(logging.WARNING, logger="demur")
    sync = Behaving("sync", blocking(1.05, 2.5))
    router = escalating(sync, budget=Budget(deadline_s=0.3))
    bystander = Router([ScriptedModel("fast", ["Paris"])], policy=Ladder(0.5))

    await router.aroute("Capital of France?")  # a block cannot be cut short
    warned = [r.getMessage() for r in caplog.records if "'sync' blocked" in r.getMessage()]
    assert len(warned) == 1 and "asyncio.to_thread" in warned[0]
    assert "worker thread" not in warned[0]  # once could be the machine pausing the process
    await router.aroute("Capital of France?")
    moved = [r.getMessage() for r in caplog.records if "worker thread" in r.getMessage()]
    assert moved and "model 'sync' blocked the event loop for 1.0" in moved[0]

    async def timed(route: Router) -> tuple[float, object]:
        started = time.monotonic()
        verdict = await route.aroute("Capital of France?")
        return time.monotonic() - started, verdict

    (slow_s, verdict), (bystander_s, _) = await asyncio.gather(timed(router), timed(bystander))
    assert slow_s < 0.3 + SLACK_S  # the model now sleeps 2.5 s, on its own thread
    assert verdict.steps[0].error_type == "DeadlineExceededError"  # type: ignore[attr-defined]
    assert bystander_s < SLACK_S  # an unrelated route on the same loop is not held up
    assert sync.calls == 3


def test_a_model_that_blocks_the_loop_briefly_is_reported_once_and_stays(caplog):
    caplog.set_level(logging.DEBUG, logger="demur")
    router = escalating(Behaving("brief", blocking(0.12, 0.12)))
    for _ in range(3):
        router.route("Capital of France?")
    reports = [
        r for r in caplog.records if "model 'brief' blocked the event loop" in r.getMessage()
    ]
    assert [r.levelno for r in reports] == [logging.DEBUG, logging.WARNING, logging.DEBUG]
    assert "worker thread" not in reports[1].getMessage()
    assert router._attempts.calls._threads == {}


# --- estimators ----------------------------------------------------------------------------


class Sleepy(EstimatorBase):
    """Sleeps synchronously in `estimate`; where it runs is recorded."""

    def __init__(self, name: str, seconds: float, *, in_process: bool) -> None:
        self.name = name
        self.needs = Needs()
        self.in_process = in_process
        self.seconds = seconds
        self.threads: list[threading.Thread] = []

    def estimate(self, attempt: Attempt) -> Score:
        self.threads.append(threading.current_thread())
        time.sleep(self.seconds)
        return Score(estimator=self.name, value=0.9, confidence=0.9)


def test_a_blocking_in_process_estimator_is_reported_once_with_the_fix(caplog):
    caplog.set_level(logging.DEBUG, logger="demur")
    model = ScriptedModel("m", ["Paris"])
    router = Router(
        [model], estimators=[Sleepy("sleepy", 0.08, in_process=True)], policy=Ladder(0.5)
    )
    for _ in range(3):
        assert router.route("Capital of France?").status == "answered"
    reports = [r for r in caplog.records if "'sleepy' blocked the event loop" in r.getMessage()]
    assert [r.levelno for r in reports] == [logging.DEBUG, logging.WARNING, logging.DEBUG]
    assert "in-process estimators must not block: set in_process = False" in reports[1].getMessage()


def test_an_estimator_not_in_process_runs_its_estimate_in_a_thread_under_the_timeout():
    sleepy = Sleepy("sleepy", 2.0, in_process=False)
    model = ScriptedModel("m", ["Paris"])
    router = Router([model], estimators=[sleepy], policy=Ladder(0.5), estimator_timeout_s=0.2)
    started = time.monotonic()
    verdict = router.route("Capital of France?")
    assert time.monotonic() - started < 0.2 + SLACK_S
    assert verdict.steps[0].scores[0].status == "timeout"
    assert sleepy.threads and sleepy.threads[0] is not threading.main_thread()


class Deaf(EstimatorBase):
    """An estimator that swallows cancellation and scores late."""

    name = "deaf"

    async def aestimate(self, attempt: Attempt) -> Score:
        try:
            await asyncio.sleep(3.0)
        except asyncio.CancelledError:
            await asyncio.sleep(3.0)
        return Score(estimator=self.name, value=1.0, confidence=1.0)


def test_an_estimator_that_swallows_cancellation_times_out_on_time():
    model = ScriptedModel("m", ["Paris"])
    router = Router([model], estimators=[Deaf()], policy=Ladder(0.5), estimator_timeout_s=0.2)
    started = time.monotonic()
    verdict = router.route("Capital of France?")
    assert time.monotonic() - started < 0.2 + SLACK_S
    assert verdict.steps[0].scores[0].status == "timeout"


def test_estimators_stop_at_the_route_deadline_too():
    model = ScriptedModel("m", ["Paris"])
    slow = Sleepy("slow", 3.0, in_process=False)
    router = Router(
        [model],
        estimators=[slow],
        policy=Ladder(0.5),
        estimator_timeout_s=30.0,
        budget=Budget(deadline_s=0.3),
    )
    started = time.monotonic()
    verdict = router.route("Capital of France?")
    assert time.monotonic() - started < 0.3 + SLACK_S
    assert verdict.steps[0].scores[0].status == "timeout"
