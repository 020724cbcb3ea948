"""Scoring one answer: every estimator concurrently, each traced, timed and its calls counted."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

from opentelemetry.trace import Span

from demur.protocols import Attempt, Estimator, Model
from demur.router.tracing import RouteTracing
from demur.scoring import run_estimator
from demur.types import Generation, GenerationRequest, Score


async def estimate_all(
    estimators: Sequence[Estimator],
    attempt: Attempt,
    attempt_span: Span,
    tracing: RouteTracing,
    timeout_s: float,
) -> tuple[Score, ...]:
    """The estimators' scores, in their order; a failure is a Score, never an exception."""
    if not estimators:
        return ()
    if len(estimators) == 1:
        return (await _estimate(estimators[0], attempt, attempt_span, tracing, timeout_s),)
    return tuple(
        await asyncio.gather(
            *(_estimate(e, attempt, attempt_span, tracing, timeout_s) for e in estimators)
        )
    )


async def _estimate(
    estimator: Estimator,
    attempt: Attempt,
    attempt_span: Span,
    tracing: RouteTracing,
    timeout_s: float,
) -> Score:
    calls = 0
    if not estimator.in_process and attempt.caller is not None:
        outer = attempt.caller

        async def counted(
            request: GenerationRequest, target: Model | str | None = None
        ) -> Generation:
            nonlocal calls
            generation = await outer(request, target)
            calls += 1  # counted like the step's ledger: calls that returned
            return generation

        attempt = dataclasses.replace(attempt, caller=counted)
    with tracing.estimator(estimator.name, current=not estimator.in_process) as span:
        started = time.perf_counter()
        score = await run_estimator(estimator, attempt, timeout_s, span.record_exception)
        score = score.model_copy(
            update={"duration_s": time.perf_counter() - started, "calls": calls}
        )
        tracing.record_score(attempt_span, span, score)
        return score
