"""Model calls as the router makes them: under the deadline, timed out, retried, traced, counted."""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

from opentelemetry.trace import SpanContext

from demur.errors import (
    DeadlineExceededError,
    ModelError,
    ModelTimeoutError,
    RouteError,
    TransientModelError,
)
from demur.protocols import Model
from demur.router.retry import RetryPolicy
from demur.router.tracing import RouteTracing, span_context_of
from demur.types import Generation, GenerationRequest


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
        try:
            async with asyncio.timeout(limit):
                generation = await model.agenerate(request)
        except TimeoutError:
            if limit < call_timeout:
                raise DeadlineExceededError(
                    f"route deadline of {self.deadline_s:g}s passed while waiting for {model.name}"
                ) from None
            raise ModelTimeoutError(
                f"{model.name} did not answer within its timeout of {call_timeout:g}s",
                model=model.name,
            ) from None
        except ModelError:
            raise
        except Exception as exc:
            raise RouteError(
                f"model '{model.name}' raised {type(exc).__name__}: {exc}. Backends must raise "
                "demur.ModelError subclasses so the router can retry or record the failure."
            ) from exc
        if not generation.completions:
            raise RouteError(f"model '{model.name}' returned no completion")
        return generation
