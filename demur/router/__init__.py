"""The route engine: the loop, budgets, retries and tracing."""

from demur.router.budget import Budget
from demur.router.combine import ScoreCombiner
from demur.router.retry import RetryPolicy
from demur.router.router import Router

__all__ = ["Budget", "RetryPolicy", "Router", "ScoreCombiner"]
