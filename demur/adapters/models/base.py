"""The model protocol: one async method that turns a GenerationRequest into a Generation."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from demur.types import Generation, GenerationRequest, Usage


class Price(BaseModel):
    """What a model charges, in the caller's currency per 1,000 tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    input_per_1k: float = Field(default=0.0, ge=0.0)
    output_per_1k: float = Field(default=0.0, ge=0.0)

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input_per_1k + usage.output_tokens * self.output_per_1k
        ) / 1000.0


FREE = Price()


@runtime_checkable
class Model(Protocol):
    """Anything that can answer a GenerationRequest.

    Backends raise `TransientModelError` subclasses for failures worth retrying and
    `PermanentModelError` subclasses for the rest; the router retries and records them.
    Optional attributes the router reads when present: `price` (a Price), `default_prompt`
    (a Prompt), `max_tokens` (int), `timeout_s` (float), `supports_logprobs` (bool).
    """

    name: str

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """Generate `request.n` completions."""
        ...
