"""The policy contract, re-exported from `demur.protocols` (where it is defined).

A policy is a pure function of the route state: it reads the steps so far and the budget left,
and returns a Decision. It never calls a model; the router carries the action out.
"""

from demur.bases import PolicyBase
from demur.protocols import Policy, RouterSpec, RouteState

__all__ = ["Policy", "PolicyBase", "RouteState", "RouterSpec"]
