"""The contracts every component meets: each member the router reads is declared here.

Components may satisfy a protocol structurally, but the simplest way is to subclass the base
class in `demur.bases`, which gives every optional member a real default.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from demur.errors import ConfigError, EstimatorUnavailable
from demur.types import (
    Branch,
    Candidate,
    Decision,
    Document,
    Generation,
    GenerationRequest,
    Query,
    RetrieveMore,
    Score,
    Step,
    Usage,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from demur.prompts import Prompt

# --- models --------------------------------------------------------------------------------


class Price(BaseModel):
    """What a model charges, in the caller's currency per 1,000 tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    input_per_1k: float = Field(default=0.0, ge=0.0)
    output_per_1k: float = Field(default=0.0, ge=0.0)

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input_per_1k + usage.output_tokens * self.output_per_1k
        ) / 1000.0


FREE = Price()


@runtime_checkable
class Model(Protocol):
    """Anything that can answer a GenerationRequest.

    Backends raise `TransientModelError` subclasses for failures worth retrying and
    `PermanentModelError` subclasses for the rest; the router retries and records them.
    `default_prompt` None means the router's default chat prompt; `timeout_s` bounds one call.
    `agenerate` runs on the route's event loop: it must not block it (await I/O; synchronous
    work goes to `asyncio.to_thread`) and must let `asyncio.CancelledError` propagate.
    """

    name: str

    @property
    def provider(self) -> str: ...

    @property
    def price(self) -> Price: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def max_tokens(self) -> int: ...

    @property
    def default_prompt(self) -> Prompt | None: ...

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """Generate `request.n` completions."""
        ...

    async def aclose(self) -> None:
        """Release what the model holds (weights, connections)."""
        ...


# --- embedders, retrievers, calibrators ----------------------------------------------------


@runtime_checkable
class Embedder(Protocol):
    """A sentence-embedding model.

    `embed` returns a float32 array of shape (len(texts), dimension) whose rows have unit L2
    norm, so a dot product is the cosine similarity. `kind` says what the text is, for models
    (such as E5) that embed queries and passages differently; others ignore it.
    """

    name: str
    dimension: int

    def embed(self, texts: Sequence[str], *, kind: str = "passage") -> npt.NDArray[np.float32]: ...


@runtime_checkable
class Retriever(Protocol):
    """Finds the passages most similar to a query.

    `name` identifies the retriever in routes, configs and traces. `aretrieve` returns at most
    `k` documents, most similar first, each with its `score` (higher is closer); it raises
    `RetrievalError` with a message that says what to fix. `cutoff` is a fitted similarity
    cutoff (see `demur.ConformalCutoff`) that `RetrieveMore(cutoff=True)` applies, and
    `languages` says what its embedding model handles ("English" makes the router prefer
    another retriever for a non-English query); None means unknown.
    """

    name: str

    @property
    def cutoff(self) -> float | None: ...

    @property
    def languages(self) -> str | None: ...

    async def aretrieve(self, query: str, k: int) -> tuple[Document, ...]: ...


@runtime_checkable
class Calibrator(Protocol):
    """Maps a raw confidence in [0, 1] to a calibrated probability in [0, 1]."""

    def calibrate(self, confidence: float) -> float: ...


# --- estimators ----------------------------------------------------------------------------


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

ModelCaller = Callable[[GenerationRequest, "Model | str | None"], Awaitable[Generation]]


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

    `in_process` True says `estimate` is a quick computation without I/O: the router calls it
    directly on its event loop instead of awaiting `aestimate` under the estimator timeout.
    """

    name: str

    @property
    def needs(self) -> Needs: ...

    @property
    def in_process(self) -> bool: ...

    def estimate(self, attempt: Attempt) -> Score: ...

    async def aestimate(self, attempt: Attempt) -> Score: ...


# --- policies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouterSpec:
    """What a router offers its policy and grounding: they validate their references against it."""

    models: tuple[str, ...]
    retrievers: tuple[str, ...] = ()
    has_queue: bool = False


@dataclass(frozen=True)
class RouteState:
    """Everything a policy may look at. `steps[-1]` is the step awaiting a decision."""

    query: Query
    steps: tuple[Step, ...]
    models: tuple[str, ...]
    steps_left: int
    cost_left: float = math.inf
    time_left_s: float = math.inf
    has_queue: bool = False

    @property
    def current(self) -> Step:
        return self.steps[-1]

    @property
    def attempted(self) -> frozenset[str]:
        """Models already asked in this route."""
        return frozenset(step.model for step in self.steps)

    def budget_blocker(self) -> str | None:
        """Why another model call is not allowed, or None when it is."""
        if self.steps_left <= 0:
            return "step budget spent"
        if self.cost_left <= 0:
            return "cost budget spent"
        if self.time_left_s <= 0:
            return "deadline passed"
        return None


@runtime_checkable
class Policy(Protocol):
    """Decides what to do with the current step. `decide` must be pure.

    `threshold_for(model)` is the confidence the policy would accept from that model (None if
    it has no such threshold); adaptive sampling stops early once the answer is settled
    against it.
    """

    name: str

    def decide(self, state: RouteState) -> Decision:
        """Return the action to take, with a reason a reviewer can read."""
        ...

    def validate(self, spec: RouterSpec) -> None:
        """Raise ConfigError if the policy refers to something the router lacks."""
        ...

    def threshold_for(self, model: str) -> float | None: ...


# --- groundings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BranchPlan:
    """One answer to write within an attempt.

    - `retriever`: retrieve with this retriever first; None means no retrieval;
    - `k`, `cutoff`, `rewrite`: how many passages, whether to apply the retriever's fitted
      similarity cutoff, whether the model rewrites the question into a search query first;
    - `use_context`: False answers closed-book even when the caller gave context;
    - `question`: the text the model sees instead of the question (self-guided prompts);
    - `documents_from`: reuse the passages another branch retrieved instead of retrieving.
    """

    name: str
    retriever: str | None = None
    k: int = 5
    cutoff: bool = False
    rewrite: bool = False
    use_context: bool = True
    question: str | None = None
    documents_from: str | None = None


@dataclass(frozen=True)
class Selection:
    """The branch to keep (None when no branch produced an answer), its confidence, and why."""

    branch: str | None
    confidence: float | None
    reason: str


@runtime_checkable
class Grounding(Protocol):
    """Plans the branches of an attempt and selects among them. `select` must be pure.

    `followup(query, branches)` may return one more branch to run once the first ones are
    scored (a prompt that shows the model both answers); `needs` is what its selection reads
    from every answer (e.g. token logprobs).
    """

    name: str

    @property
    def needs(self) -> Needs: ...

    def plan(
        self, query: Query, retrievers: Sequence[str], more: RetrieveMore | None
    ) -> tuple[BranchPlan, ...]:
        """The branches for this attempt; `more` is the RetrieveMore that led to it, if any."""
        ...

    def select(self, query: Query, branches: Sequence[Branch]) -> Selection:
        """Which branch's answer to keep, and with what confidence."""
        ...

    def followup(self, query: Query, branches: Sequence[Branch]) -> BranchPlan | None: ...

    def validate(self, spec: RouterSpec) -> None:
        """Raise ConfigError if the grounding names a retriever the router lacks."""
        ...


def missing_members(component: object, protocol: type) -> list[str]:
    """The members of `protocol` that `component` lacks, for an error message."""
    declared = [*protocol.__annotations__, *vars(protocol)]
    public = dict.fromkeys(name for name in declared if not name.startswith("_"))
    return [name for name in public if not hasattr(component, name)]


def check_component(role: str, component: object, protocol: type, base: str) -> None:
    """ConfigError unless `component` has every member of `protocol`, naming those it lacks."""
    missing = missing_members(component, protocol)
    if missing:
        raise ConfigError(
            f"{role} {type(component).__name__} is not a demur {protocol.__name__}: it lacks "
            f"{', '.join(missing)}. Subclass demur.{base}, which gives every member a default."
        )


__all__ = [
    "FREE",
    "NOTHING",
    "Attempt",
    "BranchPlan",
    "Calibrator",
    "Embedder",
    "Estimator",
    "Grounding",
    "Model",
    "ModelCaller",
    "Needs",
    "Policy",
    "Price",
    "Retriever",
    "RouteState",
    "RouterSpec",
    "Selection",
    "check_component",
    "missing_members",
]
