"""Base classes for custom components: one method to write, real defaults for the rest.

    class Echo(ModelBase):
        name = "echo"

        async def agenerate(self, request):
            return Generation(model=self.name, completions=(Completion(text=request.prompt or ""),))

Each base satisfies its protocol in `demur.protocols`, so the router reads every member
directly and `mypy --strict` checks a subclass like any other class.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from demur.protocols import (
    FREE,
    NOTHING,
    Attempt,
    BranchPlan,
    Needs,
    Price,
    RouterSpec,
    RouteState,
    Selection,
)
from demur.types import Branch, Decision, Document, Generation, GenerationRequest, Query, Score

if TYPE_CHECKING:
    from demur.prompts import Prompt
    from demur.types import RetrieveMore


class ModelBase(ABC):
    """A model backend: write `agenerate`; price, timeout, prompt and close have defaults.

    `provider` defaults to the class name; it names the backend in traces, and `model_id`
    the model itself (the router's `name` for it is an alias such as "weak").
    """

    name: str
    provider: str = ""
    price: Price = FREE
    timeout_s: float = 60.0
    max_tokens: int = 64
    default_prompt: Prompt | None = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.provider:
            cls.provider = cls.__name__

    @abstractmethod
    async def agenerate(self, request: GenerationRequest) -> Generation:
        """Generate `request.n` completions."""

    @property
    def model_id(self) -> str:
        """The model's own id, for `gen_ai.request.model` in traces; its name by default."""
        return self.name

    async def aclose(self) -> None:
        """Release what the model holds; nothing by default."""
        return None


class EstimatorBase(ABC):
    """An estimator: write `aestimate`, or `estimate` and set `in_process = True`.

    An in-process estimator computes quickly without I/O: the router calls `estimate` on its
    event loop, and `aestimate` delegates to it. Otherwise `aestimate` runs `estimate` in a
    thread, under the estimator timeout: write `estimate` alone for synchronous work that
    blocks (a model on the CPU, a blocking client).
    """

    name: str
    needs: Needs = NOTHING
    in_process: bool = False

    def estimate(self, attempt: Attempt) -> Score:
        raise NotImplementedError(
            f"{type(self).__name__} scores asynchronously only: await its aestimate()"
        )

    async def aestimate(self, attempt: Attempt) -> Score:
        if self.in_process:
            return self.estimate(attempt)
        return await asyncio.to_thread(self.estimate, attempt)


class PolicyBase(ABC):
    """A policy: write `decide`; it refers to nothing to validate and has no threshold."""

    name: str

    @abstractmethod
    def decide(self, state: RouteState) -> Decision:
        """Return the action to take, with a reason a reviewer can read."""

    def validate(self, spec: RouterSpec) -> None:
        """Raise ConfigError if the policy refers to something the router lacks."""
        return None

    def threshold_for(self, model: str) -> float | None:
        return None


class GroundingBase(ABC):
    """A grounding: write `plan` and `select`; no follow-up branch and nothing to validate."""

    name: str
    needs: Needs = NOTHING

    @abstractmethod
    def plan(
        self, query: Query, retrievers: Sequence[str], more: RetrieveMore | None
    ) -> tuple[BranchPlan, ...]:
        """The branches for this attempt; `more` is the RetrieveMore that led to it, if any."""

    @abstractmethod
    def select(self, query: Query, branches: Sequence[Branch]) -> Selection:
        """Which branch's answer to keep, and with what confidence."""

    def followup(self, query: Query, branches: Sequence[Branch]) -> BranchPlan | None:
        return None

    def validate(self, spec: RouterSpec) -> None:
        """Raise ConfigError if the grounding names a retriever the router lacks."""
        return None


class RetrieverBase(ABC):
    """A retriever: write `aretrieve`; no fitted cutoff and unknown languages by default."""

    name: str
    cutoff: float | None = None
    languages: str | None = None

    @abstractmethod
    async def aretrieve(self, query: str, k: int) -> tuple[Document, ...]:
        """At most `k` documents, most similar first."""


__all__ = ["EstimatorBase", "GroundingBase", "ModelBase", "PolicyBase", "RetrieverBase"]
