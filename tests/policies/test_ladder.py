"""The ladder policy is a pure function of the route state: no models needed."""

from __future__ import annotations

import math

import pytest

from demur import Abstain, AskHuman, ConfigError, Escalate, Ladder, Query, RouteState, Step
from demur.protocols import RouterSpec
from demur.types import Candidate


def state(*steps: Step, steps_left: int = 3, cost_left: float = math.inf, time_left: float = 60):
    return RouteState(
        query=Query("Q?"),
        steps=steps,
        models=("weak", "mid", "strong"),
        steps_left=steps_left,
        cost_left=cost_left,
        time_left_s=time_left,
        has_queue=True,
    )


def step(model: str, confidence: float | None, index: int = 0, error: str | None = None) -> Step:
    candidate = None if error else Candidate(text="x", model=model)
    return Step(
        index=index,
        model=model,
        candidate=candidate,
        confidence=confidence,
        error=error,
        error_type="ServerError" if error else None,
    )


LADDER = Ladder(0.6, rungs=[Escalate("mid"), Escalate("strong"), AskHuman(), Abstain("no")])


def test_accepts_at_or_above_threshold():
    decision = LADDER.decide(state(step("weak", 0.6)))
    assert decision.action.kind == "accept"
    assert decision.threshold == 0.6


def test_climbs_rungs_in_order():
    assert LADDER.decide(state(step("weak", 0.5))).action == Escalate("mid")
    two = state(step("weak", 0.5), step("mid", 0.4, 1))
    assert LADDER.decide(two).action == Escalate("strong")
    three = state(step("weak", 0.5), step("mid", 0.4, 1), step("strong", 0.1, 2))
    assert LADDER.decide(three).action == AskHuman()


def test_skips_escalations_the_budget_cannot_pay_for():
    for kwargs, why in [
        ({"steps_left": 0}, "step budget spent"),
        ({"cost_left": 0.0}, "cost budget spent"),
        ({"time_left": -1.0}, "deadline passed"),
    ]:
        decision = LADDER.decide(state(step("weak", 0.1), **kwargs))
        assert decision.action == AskHuman()
        assert why in decision.reason


def test_per_model_thresholds():
    ladder = Ladder(0.9, per_model={"strong": 0.3}, rungs=[Escalate("strong")])
    assert ladder.decide(state(step("weak", 0.5))).action == Escalate("strong")
    assert ladder.decide(state(step("strong", 0.5))).action.kind == "accept"


def test_missing_confidence_counts_as_below_threshold():
    decision = LADDER.decide(state(step("weak", None)))
    assert decision.action == Escalate("mid")
    assert decision.reason.startswith("no estimator could score")
    failed = LADDER.decide(state(step("weak", None, error="boom")))
    assert failed.reason.startswith("weak failed (ServerError)")


def test_abstains_when_rungs_run_out():
    ladder = Ladder(0.6, rungs=[Escalate("strong")])
    decision = ladder.decide(state(step("weak", 0.1), step("strong", 0.1, 1)))
    assert decision.action == Abstain()
    assert "no rung left" in decision.reason


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, "0.5", True])
def test_thresholds_outside_the_unit_interval_are_refused(bad):
    with pytest.raises(ConfigError, match="threshold"):
        Ladder(bad)
    with pytest.raises(ConfigError, match="per_model"):
        Ladder(0.5, per_model={"strong": bad})


def test_validate_names_missing_models_and_queue():
    with pytest.raises(ConfigError, match="Did you mean 'strong'"):
        Ladder(0.5, rungs=[Escalate("strnog")]).validate(
            RouterSpec(models=("weak", "strong"), has_queue=True)
        )
    with pytest.raises(ConfigError, match="no review queue"):
        Ladder(0.5, rungs=[AskHuman()]).validate(RouterSpec(models=("weak",)))


def test_rungs_must_be_actions():
    with pytest.raises(ConfigError, match="Escalate, RetrieveMore, AskHuman or Abstain"):
        Ladder(0.5, rungs=["escalate"])  # type: ignore[list-item]
