"""The estimator protocol: score how far a candidate answer can be trusted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from demur.errors import EstimatorUnavailable
from demur.types import Candidate, Generation, GenerationRequest, Query, Score

if TYPE_CHECKING:
    from demur.adapters.models.base import Model


class Needs(BaseModel):
    """What an estimator needs from the attempt, so the router can fetch it once for all.

    - `logprobs`, `top_logprobs`: token log-probabilities of the answer (and top-k alternatives);
    - `samples`: how many extra answers, sampled at the router's temperature, it wants;
      the router draws the largest number any estimator asks for, once, and shares them;
    - `sample_logprobs`: token logprobs on those samples too (e.g. to weight by sequence
      probability).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)
    samples: int = Field(default=0, ge=0, le=100)
    sample_logprobs: bool = False

    def merge(self, other: Needs) -> Needs:
        return Needs(
            logprobs=self.logprobs or other.logprobs,
            top_logprobs=max(self.top_logprobs, other.top_logprobs),
            samples=max(self.samples, other.samples),
            sample_logprobs=self.sample_logprobs or other.sample_logprobs,
        )


NOTHING = Needs()

ModelCaller = Callable[["GenerationRequest", "Model | str | None"], Awaitable[Generation]]


@dataclass(frozen=True)
class Attempt:
    """What an estimator sees: the query, the candidate answer to score, and a way to ask models.

    `ask` sends a request through the router, with its retries, timeouts, tracing and cost
    accounting, to the model that wrote the candidate (default), another router model by name,
    or any Model object (a judge that is not part of the cascade).
    """

    query: Query
    candidate: Candidate
    caller: ModelCaller | None = field(default=None, repr=False, compare=False)

    async def ask(self, request: GenerationRequest, model: Model | str | None = None) -> Generation:
        if self.caller is None:
            raise EstimatorUnavailable("this attempt has no model to ask (scored offline)")
        return await self.caller(request, model)


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
