"""The estimator protocol: score how far a candidate answer can be trusted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from demur.types import Candidate, Query, Score


class Needs(BaseModel):
    """What an estimator needs from the attempt, so the router can fetch it once for all."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)

    def merge(self, other: Needs) -> Needs:
        return Needs(
            logprobs=self.logprobs or other.logprobs,
            top_logprobs=max(self.top_logprobs, other.top_logprobs),
        )


NOTHING = Needs()


@dataclass(frozen=True)
class Attempt:
    """What an estimator sees: the query and the candidate answer to score."""

    query: Query
    candidate: Candidate


@runtime_checkable
class Estimator(Protocol):
    """Scores a candidate. Returns a Score whose confidence lies in [0, 1], higher is better.

    Raise `EstimatorUnavailable` when an input is missing (e.g. the backend gave no
    logprobs); any other exception is recorded as a failure. Neither stops the route.

    An estimator that computes in-process, without I/O, may also define a synchronous
    `estimate(attempt) -> Score`; the router then calls that directly and skips the timeout
    machinery, which could not interrupt a synchronous computation anyway.
    """

    name: str
    needs: Needs

    async def aestimate(self, attempt: Attempt) -> Score: ...
