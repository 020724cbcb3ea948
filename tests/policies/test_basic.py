"""Small policies and rules, and FirstOf: pure functions of the route state."""

from __future__ import annotations

import pytest

from demur import (
    Abstain,
    Accept,
    Always,
    AskHuman,
    ConfigError,
    Escalate,
    FirstOf,
    HandBackOn,
    Ladder,
    Query,
    RouteState,
    Step,
    Threshold,
)
from demur.protocols import Policy, RouterSpec
from demur.types import Candidate


def state(step: Step) -> RouteState:
    return RouteState(query=Query("Q?"), steps=(step,), models=("weak", "strong"), steps_left=3)


def answered(confidence: float | None) -> Step:
    return Step(
        index=0, model="weak", candidate=Candidate(text="x", model="weak"), confidence=confidence
    )


def failed(error_type: str) -> Step:
    return Step(index=0, model="weak", error="it broke", error_type=error_type)


def test_always_takes_its_action_and_is_a_full_policy() -> None:
    policy = Always(Accept(), "score everything", name="accept-everything")
    assert isinstance(policy, Policy)
    decision = policy.decide(state(answered(0.1)))
    assert decision.action == Accept() and decision.reason == "score everything"
    assert policy.name == "accept-everything" and policy.threshold_for("weak") is None
    assert Always(Abstain("no")).decide(state(answered(0.9))).action == Abstain("no")


def test_always_refuses_actions_that_would_loop_or_flood_the_queue() -> None:
    with pytest.raises(ConfigError, match="use a Ladder"):
        Always(Escalate("strong"))
    with pytest.raises(ConfigError, match="use a Ladder"):
        Always(AskHuman())


def test_threshold_accepts_at_or_above_and_passes_otherwise() -> None:
    rule = Threshold(0.7)
    assert rule.decide(state(answered(0.7))) is not None
    assert rule.decide(state(answered(0.69))) is None
    assert rule.decide(state(answered(None))) is None
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        Threshold(1.5)


def test_hand_back_on_matches_the_error_type_by_class_or_name() -> None:
    class ToolCalls(Exception):
        pass

    for rule in (HandBackOn(ToolCalls, "{model} wants tools"), HandBackOn("ToolCalls")):
        decision = rule.decide(state(failed("ToolCalls")))
        assert decision is not None and decision.action == Abstain()
        assert rule.decide(state(failed("ServerError"))) is None
        assert rule.decide(state(answered(0.9))) is None
    named = HandBackOn(ToolCalls, "{model} wants tools").decide(state(failed("ToolCalls")))
    assert named is not None and named.reason == "weak wants tools"


def test_first_of_takes_the_first_rule_that_decides_then_the_policy() -> None:
    ladder = Ladder(0.9, rungs=[Escalate("strong")])
    policy = FirstOf(HandBackOn("ToolCalls"), Threshold(0.5), ladder)
    assert policy.name == "ladder"
    assert policy.decide(state(failed("ToolCalls"))).action == Abstain()
    assert policy.decide(state(answered(0.6))).action == Accept()  # the rule, before the ladder
    assert policy.decide(state(answered(0.4))).action == Escalate("strong")
    assert policy.threshold_for("weak") == 0.9  # the full policy's threshold comes first


def test_first_of_validates_its_policies_and_needs_one_last() -> None:
    policy = FirstOf(Threshold(0.5), Ladder(0.9, rungs=[Escalate("nope")]))
    with pytest.raises(ConfigError, match="'nope'"):
        policy.validate(RouterSpec(models=("weak",)))
    with pytest.raises(ConfigError, match="full policy last"):
        FirstOf(Threshold(0.5))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="full policy last"):
        FirstOf()
