"""Routing policies: pure functions from the route state to an action."""

from demur.bases import PolicyBase
from demur.policies.basic import Always, FirstOf, HandBackOn, Rule, Threshold
from demur.policies.ladder import Ladder
from demur.protocols import Policy, RouterSpec, RouteState

__all__ = [
    "Always",
    "FirstOf",
    "HandBackOn",
    "Ladder",
    "Policy",
    "PolicyBase",
    "RouteState",
    "RouterSpec",
    "Rule",
    "Threshold",
]
