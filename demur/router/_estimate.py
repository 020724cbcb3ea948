"""Scoring one answer: every estimator concurrently, each traced, timed and its calls counted."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, Status, StatusCode

from demur._construct import replace
from demur.protocols import Attempt, Estimator, Model
from demur.router.tracing import RouteTracing
from demur.scoring import run_estimator
from demur.types import Generation, GenerationRequest, Score

logger = logging.getLogger("demur.router")


async def estimate_all(
    estimators: Sequence[Estimator],
    attempt: Attempt,
    span: Span,
    tracing: RouteTracing,
    timeout_s: float,
    *,
    evaluated: SpanContext | None = None,
) -> tuple[Score, ...]:
    """The estimators' scores, in their order; a failure is a Score, never an exception.

    Each score is recorded on `span` (the attempt's or the branch's) and as an evaluation
    event of `evaluated`, the model call that wrote the answer.
    """
    if not estimators:
        return ()
    response_id = attempt.candidate.response_id
    if len(estimators) == 1:
        scores: Sequence[Score] = (await _estimate(estimators[0], attempt, tracing, timeout_s),)
    else:
        scores = await asyncio.gather(
            *(_estimate(e, attempt, tracing, timeout_s) for e in estimators)
        )
    for score in scores:
        tracing.record_score(span, score, evaluated, response_id)
    return tuple(scores)


async def _estimate(
    estimator: Estimator, attempt: Attempt, tracing: RouteTracing, timeout_s: float
) -> Score:
    started = time.perf_counter()
    if estimator.in_process:

        def on_current_span(exc: BaseException) -> None:
            _failed(tracing, trace.get_current_span(), estimator.name, exc)

        score = await run_estimator(estimator, attempt, timeout_s, on_current_span)
        return replace(score, duration_s=time.perf_counter() - started)
    calls = 0
    outer = attempt.caller
    if outer is not None:

        async def counted(
            request: GenerationRequest, target: Model | str | None = None
        ) -> Generation:
            nonlocal calls
            generation = await outer(request, target)
            calls += 1  # counted like the step's ledger: calls that returned
            return generation

        attempt = dataclasses.replace(attempt, caller=counted)
    # An estimator that awaits (a model, a thread) gets a span: its time and calls show there.
    with tracing.estimator(estimator.name) as span:

        def on_span(exc: BaseException) -> None:
            _failed(tracing, span, estimator.name, exc)

        score = await run_estimator(estimator, attempt, timeout_s, on_span)
        if score.status in ("failed", "timeout") and span.is_recording():
            span.set_status(Status(StatusCode.ERROR, score.detail or score.status))
    return replace(score, duration_s=time.perf_counter() - started, calls=calls)


def _failed(tracing: RouteTracing, span: Span, name: str, exc: BaseException) -> None:
    """An estimator's exception, logged and recorded on `span`, its message only as content.

    An in-process estimator's span is the attempt's (or the branch's) own.
    """
    logger.warning("estimator %s failed: %s", name, tracing.describe(exc))
    tracing.record_error(span, exc)
