"""Scores: running one estimator safely, and combining several scores into one confidence.

`run_estimator` and `score_in_process` are the one place where an estimator's failure becomes
a `Score`: unavailable (a missing input), timeout, or failed. The router, the ensemble and the
LangChain and LlamaIndex observers all score through them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter
from typing import Literal

from pydantic import ValidationError

from demur._loop_guard import BLOCKING_S, Guarded, loop_running, warn_once
from demur.errors import ConfigError, EstimatorUnavailable, did_you_mean
from demur.protocols import Attempt, Estimator
from demur.types import Score

ErrorHook = Callable[[BaseException], None]


class NotAScoreError(TypeError):
    """An estimator returned something other than a Score."""


def failure_score(name: str, exc: BaseException, timeout_s: float | None = None) -> Score:
    """The Score that records why estimator `name` gave no confidence.

    A failure's detail names the exception's type, not its message: the message can quote
    the prompt or the answer, and scores reach API clients, tickets and traces. Errors demur
    wrote about a setup mistake keep theirs (`DemurError.public_message`: a ConfigError, a
    NotAScoreError, an invalid Score's validation), with the fix.
    """
    if isinstance(exc, EstimatorUnavailable):
        return Score(estimator=name, status="unavailable", detail=str(exc))
    kind = type(exc).__name__
    if isinstance(exc, TimeoutError):
        detail = "no score in time" if timeout_s is None else f"no score within {timeout_s:g}s"
        return Score(estimator=name, status="timeout", detail=detail, error_type=kind)
    if isinstance(exc, ValidationError) and exc.title == "Score":
        # The estimator built an invalid Score: the validators' own words quote no input.
        problems = "; ".join(error["msg"] for error in exc.errors())
        detail = f"{name} built an invalid Score: {problems}"
        return Score(estimator=name, status="failed", detail=detail, error_type=kind)
    own = isinstance(exc, NotAScoreError) or getattr(exc, "public_message", False)
    detail = f"{kind}: {exc}" if own else f"{name} raised {kind}"
    return Score(estimator=name, status="failed", detail=detail, error_type=kind)


def _checked(result: object) -> Score:
    if not isinstance(result, Score):
        raise NotAScoreError(f"returned {type(result).__name__}, not a demur.Score")
    return result


def score_in_process(
    estimator: Estimator, attempt: Attempt, on_error: ErrorHook | None = None
) -> Score:
    """`estimator.estimate(attempt)`, with any failure recorded as a Score.

    On an event loop, an estimate that blocks it longer than `BLOCKING_S` is reported (once).
    """
    started = perf_counter()
    try:
        return _checked(estimator.estimate(attempt))
    except Exception as exc:
        if on_error is not None and not isinstance(exc, EstimatorUnavailable):
            on_error(exc)
        return failure_score(estimator.name, exc)
    finally:
        spent = perf_counter() - started
        if spent > BLOCKING_S and loop_running():
            what = f"in-process estimator '{estimator.name}'"
            warn_once(
                what,
                "blocking",
                f"{what} blocked the event loop for {spent:.2f}s; in-process estimators must "
                "not block: set in_process = False to run it in a thread",
                after=2,
            )


async def run_estimator(
    estimator: Estimator,
    attempt: Attempt,
    timeout_s: float | None,
    on_error: ErrorHook | None = None,
) -> Score:
    """Score one attempt: in-process estimators directly, others awaited under `timeout_s`.

    A synchronous computation cannot be interrupted by a timeout, so in-process estimators run
    without one. `aestimate` is guarded (`demur._loop_guard`): the timeout holds even if it
    ignores cancellation, and a step that blocks the loop is reported. `on_error` sees every
    exception except a missing input and a timeout.
    """
    if estimator.in_process:
        return score_in_process(estimator, attempt, on_error)
    guard: Guarded[Score] | None = None
    try:
        async with asyncio.timeout(timeout_s) as scope:
            what = f"estimator '{estimator.name}'"
            guard = Guarded(estimator.aestimate(attempt), what, expires=scope.when())
            return _checked(await guard)
    except Exception as exc:
        if on_error is not None and not isinstance(exc, EstimatorUnavailable | TimeoutError):
            on_error(exc)
        return failure_score(estimator.name, exc, timeout_s)
    finally:
        if guard is not None and guard.blocked_s > BLOCKING_S:
            warn_once(
                guard.what,
                "blocking",
                f"{guard.what} blocked the event loop for {guard.blocked_s:.2f}s in one step "
                "of aestimate: await its I/O, or run synchronous work with "
                "`await asyncio.to_thread(...)`",
                after=2,
            )


CombineMethod = Literal["mean", "min", "max", "first"]
COMBINE_METHODS: tuple[str, ...] = ("mean", "min", "max", "first")


class ScoreCombiner:
    """Combines the confidences of the estimators that succeeded.

    - "mean", "min", "max": over the available confidences ("min" is the most cautious);
    - "first": the first estimator, in configured order, that produced a confidence;
    - `weights`: a weighted mean, renormalised over the estimators that succeeded.

    Returns None when no estimator produced a confidence.
    """

    def __init__(
        self, method: CombineMethod = "mean", weights: Mapping[str, float] | None = None
    ) -> None:
        if method not in COMBINE_METHODS:
            raise ConfigError(
                f"unknown combine method '{method}'.{did_you_mean(method, COMBINE_METHODS)} "
                f"Use one of: {', '.join(COMBINE_METHODS)}."
            )
        if weights is not None:
            bad = {k: v for k, v in weights.items() if not v >= 0}
            if bad or not any(weights.values()):
                raise ConfigError(
                    f"combine weights must be >= 0 with at least one > 0, got {dict(weights)}"
                )
        self.method = method
        self.weights = dict(weights) if weights is not None else None

    def combine(self, scores: Sequence[Score]) -> float | None:
        available = [(s.estimator, s.confidence) for s in scores if s.confidence is not None]
        if not available:
            return None
        if self.weights is not None:
            pairs = [(self.weights.get(name, 0.0), c) for name, c in available]
            total = sum(w for w, _ in pairs)
            if total == 0:
                return None
            return sum(w * c for w, c in pairs) / total
        values = [c for _, c in available]
        if self.method == "mean":
            return sum(values) / len(values)
        if self.method == "min":
            return min(values)
        if self.method == "max":
            return max(values)
        return values[0]

    def __repr__(self) -> str:
        return f"ScoreCombiner({self.method!r}, weights={self.weights!r})"


__all__ = [
    "COMBINE_METHODS",
    "CombineMethod",
    "NotAScoreError",
    "ScoreCombiner",
    "failure_score",
    "run_estimator",
    "score_in_process",
]
