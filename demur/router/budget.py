"""Limits on one route: how many model calls, how much money, how much time."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field


class Budget(BaseModel):
    """Per-route limits. A policy cannot escalate past them; the router enforces them too."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    max_steps: int = Field(default=4, ge=1, description="model attempts per route")
    max_cost: float = Field(default=math.inf, gt=0, description="model cost per route")
    deadline_s: float = Field(default=120.0, gt=0, description="wall time per route, seconds")
