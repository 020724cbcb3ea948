"""Retries of transient model failures, with jittered exponential backoff (tenacity)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from demur.errors import TransientModelError

if TYPE_CHECKING:
    from tenacity import AsyncRetrying


class RetryPolicy(BaseModel):
    """How often and how patiently to retry a model call that failed transiently.

    Only `TransientModelError`s (timeouts, rate limits, 5xx, lost connections) are retried;
    retries never run past the route's deadline.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_backoff_s: float = Field(default=0.25, ge=0)
    max_backoff_s: float = Field(default=8.0, ge=0)

    def retrying(self, time_left_s: float) -> AsyncRetrying:
        # Imported here: tenacity is only needed once a call has failed.
        from tenacity import (
            AsyncRetrying,
            retry_if_exception_type,
            stop_after_attempt,
            stop_before_delay,
            wait_random_exponential,
        )

        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(time_left_s),
            wait=wait_random_exponential(multiplier=self.initial_backoff_s, max=self.max_backoff_s),
            retry=retry_if_exception_type(TransientModelError),
            reraise=True,
        )
