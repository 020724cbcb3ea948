"""The route engine: the loop, budgets, retries and tracing."""

from demur.router.budget import Budget
from demur.router.retry import RetryPolicy
from demur.router.router import Router
from demur.router.sampling import Sampling
from demur.scoring import ScoreCombiner

__all__ = ["Budget", "RetryPolicy", "Router", "Sampling", "ScoreCombiner"]
