"""Routing policies: pure functions from the route state to an action."""

from demur.policies.base import Policy, RouteState
from demur.policies.ladder import Ladder

__all__ = ["Ladder", "Policy", "RouteState"]
