"""Running one estimator safely: the one place an estimator's failure becomes a Score."""

from __future__ import annotations

import asyncio

import pytest

from demur import Attempt, ConfigError, EstimatorBase, EstimatorUnavailable, Query, Score
from demur.scoring import failure_score, run_estimator, score_in_process
from demur.types import Candidate

ATTEMPT = Attempt(query=Query("Q?"), candidate=Candidate(text="Paris", model="m"))


class Fixed(EstimatorBase):
    name = "fixed"
    in_process = True

    def __init__(self, outcome: object) -> None:
        self.outcome = outcome

    def estimate(self, attempt: Attempt) -> Score:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome  # type: ignore[return-value]


class Slow(EstimatorBase):
    name = "slow"

    async def aestimate(self, attempt: Attempt) -> Score:
        await asyncio.sleep(5)
        return Score(estimator=self.name, confidence=1.0)


def test_an_in_process_estimator_is_called_directly() -> None:
    score = asyncio.run(run_estimator(Fixed(Score(estimator="fixed", confidence=0.8)), ATTEMPT, 1))
    assert score.confidence == 0.8


@pytest.mark.parametrize(
    ("outcome", "status", "detail", "error_type"),
    [
        (EstimatorUnavailable("no logprobs"), "unavailable", "no logprobs", None),
        (RuntimeError("boom"), "failed", "fixed raised RuntimeError", "RuntimeError"),
        (
            0.5,
            "failed",
            "NotAScoreError: returned float, not a demur.Score",
            "NotAScoreError",
        ),
        (
            ConfigError("unknown model 'strnog'"),
            "failed",
            "ConfigError: unknown model 'strnog'",
            "ConfigError",
        ),
    ],
)
def test_every_failure_becomes_a_score_with_its_status(
    outcome: object, status: str, detail: str, error_type: str | None
) -> None:
    seen: list[BaseException] = []
    score = score_in_process(Fixed(outcome), ATTEMPT, seen.append)
    assert (score.estimator, score.status, score.detail, score.confidence) == (
        "fixed",
        status,
        detail,
        None,
    )
    assert score.error_type == error_type
    # A missing input is expected; only real failures reach the error hook (a span, a log).
    assert len(seen) == (0 if status == "unavailable" else 1)


def test_a_slow_estimator_times_out_into_a_score() -> None:
    seen: list[BaseException] = []
    score = asyncio.run(run_estimator(Slow(), ATTEMPT, 0.05, seen.append))
    assert (score.status, score.detail) == ("timeout", "no score within 0.05s")
    assert seen == []


def test_failure_score_names_the_estimator() -> None:
    assert failure_score("x", TimeoutError()).detail == "no score in time"
    assert failure_score("x", TimeoutError()).error_type == "TimeoutError"
    assert failure_score("x", ValueError("bad")).status == "failed"


def test_a_failures_message_stays_out_of_the_score() -> None:
    secret = ValueError("could not parse 'my SSN is 078-05-1120' at /home/ana/prompts.txt")
    score = failure_score("verbal", secret)
    assert (score.status, score.error_type, score.detail) == (
        "failed",
        "ValueError",
        "verbal raised ValueError",
    )
    assert "078-05-1120" not in score.model_dump_json()
