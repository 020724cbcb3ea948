"""Verdicts built by hand, and route logs of simulated traffic, for route-log and drift tests."""

from __future__ import annotations

import math
import random
from pathlib import Path

from demur import Abstain, Accept, Candidate, Decision, Query, Score, Step, TokenLogprob, Verdict
from demur.routelog import RouteLog


def verdict(confidence: float, *, threshold: float = 0.5, text: str = "Paris") -> Verdict:
    """One step scored `confidence` by mean_logprob; answered when it clears `threshold`."""
    logprob = math.log(max(confidence, 1e-9))
    accepted = confidence >= threshold
    step = Step(
        index=0,
        model="m",
        candidate=Candidate(
            text=text, model="m", tokens=(TokenLogprob(token=text, logprob=logprob),)
        ),
        scores=(Score(estimator="mean_logprob", value=logprob, confidence=confidence),),
        raw_confidence=confidence,
        confidence=confidence,
        decision=Decision(
            action=Accept() if accepted else Abstain(),
            reason="test",
            threshold=threshold,
        ),
    )
    if accepted:
        return Verdict(
            status="answered", answer=text, confidence=confidence, model="m", steps=(step,)
        )
    return Verdict(status="abstained", message="no", confidence=confidence, steps=(step,))


def simulated_log(
    path: Path,
    routes: int,
    *,
    seed: int = 0,
    error: float = 0.05,
    shifted_error: float | None = None,
    shift_at: int | None = None,
    spot_check: float = 1.0,
) -> RouteLog:
    """A log of `routes` routes whose confidences are uniform on (0, 1): accepted above 0.5,
    each accepted answer spot-checked with probability `spot_check` and wrong with probability
    `error` (`shifted_error` from route `shift_at` on); every declined answer is reviewed and
    wrong with probability 1 - confidence."""
    rng = random.Random(seed)
    log = RouteLog(path)
    for i in range(routes):
        confidence = rng.uniform(0.01, 0.99)
        v = verdict(confidence)
        route_id = log.record(Query(f"question {i}", id=f"q{i}"), v)
        if v.status == "answered":
            p = shifted_error if shift_at is not None and i >= shift_at else error
            if rng.random() < spot_check:
                log.record_outcome(route_id, rng.random() >= p, source="spot_check")
        else:
            log.record_outcome(route_id, rng.random() < confidence, source="human")
    log.close()
    return log
