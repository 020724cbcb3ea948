"""Model calls as the router makes them: under the deadline, timed out, retried, traced, counted.

A model runs on the route's event loop, guarded (`demur._loop_guard.Guarded`): at its timeout
or the route's deadline the route stops waiting, even for a model that ignores cancellation.
A model whose synchronous work blocks the loop is reported; once a step has blocked it for
`OFFLOAD_S` or more a second time, the model's calls run on a worker thread, where its blocking
holds up neither its own timeouts nor other routes. Whatever a model returns other than a
Generation, and whatever it raises that is not demur's, is a `ModelContractError`: a failed step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import NamedTuple

from opentelemetry.trace import SpanContext

from demur._loop_guard import BLOCKING_S, Guarded, warn_once
from demur.errors import (
    DeadlineExceededError,
    DemurError,
    ModelContractError,
    ModelError,
    ModelTimeoutError,
    TransientModelError,
)
from demur.protocols import Model
from demur.router._offload import LoopThread
from demur.router.retry import RetryPolicy
from demur.router.tracing import RouteTracing, span_context_of
from demur.types import Generation, GenerationRequest

logger = logging.getLogger("demur.router")

# A model whose step of agenerate blocked the loop this long, a second time, makes synchronous
# calls (not a moment's parsing, nor the machine pausing once): it moves to a worker thread.
OFFLOAD_S = 1.0
_FIX = (
    "A model must not block the event loop: await its I/O, or run synchronous work with "
    "`await asyncio.to_thread(...)` inside agenerate."
)


class Call(NamedTuple):
    """A model call as made: its generation, the retries it took, and its span's context."""

    generation: Generation
    retries: int
    span: SpanContext | None


class Ledger:
    """Counts the model calls of one attempt and what they cost."""

    def __init__(self) -> None:
        self.calls = 0
        self.cost = 0.0

    def add(self, model: Model, generation: Generation) -> None:
        self.calls += 1
        self.cost += model.price.cost(generation.usage)


class ModelCalls:
    """Calls models for one router: per-call timeout, route deadline, retries and spans."""

    def __init__(self, retry: RetryPolicy, deadline_s: float, tracing: RouteTracing) -> None:
        self.retry = retry
        self.deadline_s = deadline_s
        self.tracing = tracing
        self._threads: dict[str, LoopThread] = {}  # models moved off the loop, by name
        self._long_blocks: dict[str, int] = {}

    async def generate(self, model: Model, request: GenerationRequest, deadline: float) -> Call:
        """Call the model, retrying transient failures, never past the route deadline.

        The first call runs outside tenacity, which only steps in after a transient failure:
        the common case stays cheap, and the retry schedule is the same either way.
        """
        try:
            return await self._traced(model, request, deadline, 0)
        except TransientModelError as exc:
            first_failure: TransientModelError | None = exc
        tries = 1
        try:
            async for attempt in self.retry.retrying(deadline - time.monotonic()):
                with attempt:
                    if first_failure is not None:
                        failure, first_failure = first_failure, None
                        raise failure  # lets tenacity count it and back off
                    tries += 1
                    call = await self._traced(model, request, deadline, tries - 1)
            return call
        except ModelError as exc:
            exc.retries = tries - 1
            raise

    async def _traced(
        self, model: Model, request: GenerationRequest, deadline: float, retries: int
    ) -> Call:
        time_left = deadline - time.monotonic()
        if time_left <= 0:
            raise DeadlineExceededError(
                f"route deadline of {self.deadline_s:g}s passed before {model.name} could answer"
            )
        model_id = getattr(model, "model_id", None) or model.name
        with self.tracing.model_call(model.name, model_id, model.provider, request) as span:
            generation = await self._once(model, request, time_left)
            self.tracing.record_generation(span, generation, model_id)
        return Call(generation, retries, span_context_of(span))

    async def _once(self, model: Model, request: GenerationRequest, time_left: float) -> Generation:
        call_timeout = float(model.timeout_s)
        limit = min(call_timeout, time_left)
        thread = self._threads.get(model.name) if self._threads else None
        guard: Guarded[Generation] | None = None
        try:
            async with asyncio.timeout(limit) as scope:
                if thread is not None:
                    generation = await thread.run(model.agenerate(request))
                else:
                    what = f"model '{model.name}'"
                    guard = Guarded(model.agenerate(request), what, expires=scope.when())
                    generation = await guard
        except TimeoutError:
            if limit < call_timeout:
                raise DeadlineExceededError(
                    f"route deadline of {self.deadline_s:g}s passed while waiting for {model.name}"
                ) from None
            raise ModelTimeoutError(
                f"{model.name} did not answer within its timeout of {call_timeout:g}s",
                model=model.name,
            ) from None
        except DemurError:
            raise  # a ModelError fails the step; demur's others (a RouteError) end the route
        except Exception as exc:
            # Its message can quote the prompt: it stays on the cause, out of this error's text.
            raise ModelContractError(
                f"model '{model.name}' raised {type(exc).__name__}. Backends must raise "
                "demur.ModelError subclasses (TransientModelError for failures worth retrying).",
                model=model.name,
            ) from exc
        finally:
            if guard is not None and guard.blocked_s > BLOCKING_S:
                self._blocked(model, guard.blocked_s)
        if not isinstance(generation, Generation):
            raise ModelContractError(
                f"model '{model.name}' returned {type(generation).__name__}, not a "
                "demur.Generation; agenerate must return Generation(model=..., "
                "completions=(Completion(text=...),))",
                model=model.name,
            )
        if not generation.completions:
            raise ModelContractError(
                f"model '{model.name}' returned a Generation with no completion; it must hold "
                "at least one",
                model=model.name,
            )
        return generation

    def _blocked(self, model: Model, seconds: float) -> None:
        """Report a model that blocked the loop; move it to a thread if it blocked it long twice."""
        what = f"model '{model.name}'"
        message = (
            f"{what} blocked the event loop for {seconds:.2f}s in one step of agenerate; "
            f"every route on the loop waited, its timeouts included. {_FIX}"
        )
        if seconds < OFFLOAD_S:
            warn_once(what, "blocking", message, after=2)
            return
        blocks = self._long_blocks[model.name] = self._long_blocks.get(model.name, 0) + 1
        if blocks < 2:
            warn_once(what, "blocking long", message)
            return
        if model.name not in self._threads:
            self._threads[model.name] = LoopThread(f"demur-model-{model.name}")
            logger.warning("%s Its calls run on a worker thread from now on.", message)

    def close(self) -> None:
        """Stop the worker threads of models that were moved off the loop."""
        while self._threads:
            self._threads.popitem()[1].close()
