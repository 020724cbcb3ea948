"""Small policies and rules, and `FirstOf`, which composes them.

A rule is a partial policy: it decides some states and passes on the rest (returns None).
`FirstOf(rule, ..., policy)` asks each in turn and takes the first decision:

    FirstOf(HandBackOn("AgentToolCalls"), Ladder(0.8, rungs=[AskHuman()]))
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from demur.bases import PolicyBase
from demur.errors import ConfigError
from demur.protocols import Policy, RouterSpec, RouteState
from demur.types import Abstain, Accept, Action, AskHuman, Decision, Escalate


@runtime_checkable
class Rule(Protocol):
    """A partial policy: a Decision for the states it covers, None for the rest."""

    name: str

    def decide(self, state: RouteState) -> Decision | None: ...


class Always(PolicyBase):
    """Take the same action on every step; `Always(Accept())` scores every answer it sees."""

    def __init__(self, action: Action, reason: str | None = None, *, name: str | None = None):
        if isinstance(action, Escalate | AskHuman):
            raise ConfigError(
                f"Always({type(action).__name__}(...)) would loop or send every question "
                "to review; use a Ladder for that"
            )
        self.action = action
        self.reason = reason or f"always {action.kind}"
        self.name = name or f"always-{action.kind}"

    def decide(self, state: RouteState) -> Decision:
        return Decision(action=self.action, reason=self.reason)

    def __repr__(self) -> str:
        return f"Always({self.action!r})"


class Threshold:
    """A rule: accept the current answer when its confidence reaches `threshold`."""

    name = "threshold"

    def __init__(self, threshold: float) -> None:
        if isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"Threshold({threshold!r}): the threshold is a number in [0, 1]")
        self.threshold = float(threshold)

    def decide(self, state: RouteState) -> Decision | None:
        confidence = state.current.confidence
        if confidence is None or confidence < self.threshold:
            return None
        return Decision(
            action=Accept(),
            reason=f"confidence {confidence:.3f} >= threshold {self.threshold:.3f}",
            threshold=self.threshold,
        )

    def threshold_for(self, model: str) -> float | None:
        return self.threshold

    def __repr__(self) -> str:
        return f"Threshold({self.threshold})"


class HandBackOn:
    """A rule: end the route, abstaining, when the current step failed with `error_type`.

    For failures that are answers to pass back rather than to escalate (a chat model that
    answered with tool calls goes back to the agent that asked). `reason` may name the step's
    model as `{model}`.
    """

    def __init__(self, error_type: str | type[BaseException], reason: str | None = None) -> None:
        self.error_type = error_type if isinstance(error_type, str) else error_type.__name__
        self.reason = reason
        self.name = f"hand-back-on-{self.error_type}"

    def decide(self, state: RouteState) -> Decision | None:
        step = state.current
        if step.error_type != self.error_type:
            return None
        return Decision(
            action=Abstain(),
            reason=(
                self.reason or "{model} failed with " + self.error_type + ": handed back"
            ).replace("{model}", step.model),
        )

    def __repr__(self) -> str:
        return f"HandBackOn({self.error_type!r})"


class FirstOf(PolicyBase):
    """Ask rules in order; the first decision wins, and the last part must be a full Policy."""

    def __init__(self, *parts: Rule | Policy) -> None:
        if not parts or not isinstance(parts[-1], Policy):
            raise ConfigError(
                "FirstOf(...) needs a full policy last (e.g. a Ladder or Always(Abstain())), "
                "so that every state gets a decision"
            )
        self.parts = parts
        self.policy: Policy = parts[-1]
        self.name = self.policy.name

    def decide(self, state: RouteState) -> Decision:
        for part in self.parts[:-1]:
            decision = part.decide(state)
            if decision is not None:
                return decision
        return self.policy.decide(state)

    def validate(self, spec: RouterSpec) -> None:
        for part in self.parts:
            if isinstance(part, Policy):
                part.validate(spec)

    def threshold_for(self, model: str) -> float | None:
        for part in reversed(self.parts):
            threshold = part.threshold_for(model) if isinstance(part, Policy | Threshold) else None
            if threshold is not None:
                return threshold
        return None

    def __repr__(self) -> str:
        return f"FirstOf({', '.join(repr(part) for part in self.parts)})"


__all__ = ["Always", "FirstOf", "HandBackOn", "Rule", "Threshold"]
