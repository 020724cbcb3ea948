"""The policy protocol and the route state it decides on.

A policy is a pure function of the route state: it reads the steps so far and the budget left,
and returns a Decision. It never calls a model; the router carries the action out.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from demur.types import Decision, Query, Step


@dataclass(frozen=True)
class RouteState:
    """Everything a policy may look at. `steps[-1]` is the step awaiting a decision."""

    query: Query
    steps: tuple[Step, ...]
    models: tuple[str, ...]
    steps_left: int
    cost_left: float = math.inf
    time_left_s: float = math.inf
    has_queue: bool = False

    @property
    def current(self) -> Step:
        return self.steps[-1]

    @property
    def attempted(self) -> frozenset[str]:
        """Models already asked in this route."""
        return frozenset(step.model for step in self.steps)

    def budget_blocker(self) -> str | None:
        """Why another model call is not allowed, or None when it is."""
        if self.steps_left <= 0:
            return "step budget spent"
        if self.cost_left <= 0:
            return "cost budget spent"
        if self.time_left_s <= 0:
            return "deadline passed"
        return None


@runtime_checkable
class Policy(Protocol):
    """Decides what to do with the current step."""

    name: str

    def decide(self, state: RouteState) -> Decision:
        """Return the action to take, with a reason a reviewer can read."""
        ...

    def validate(self, models: Collection[str], has_queue: bool) -> None:
        """Raise ConfigError if the policy refers to a model or queue the router lacks."""
        ...
