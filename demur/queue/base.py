"""The review-queue protocol: where the router hands questions it will not answer alone."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

TicketStatus = Literal["pending", "resolved"]


class CandidateAnswer(BaseModel):
    """A model's answer as a reviewer sees it."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    model: str
    text: str
    confidence: float | None = None
    scores: dict[str, float | None] = Field(default_factory=dict)


class TicketRequest(BaseModel):
    """What the router sends to the queue."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    question: str
    context: tuple[str, ...] = ()
    candidates: tuple[CandidateAnswer, ...] = ()
    reason: str = ""
    trace_id: str | None = None
    priority: int = 0


class Ticket(TicketRequest):
    """A question waiting for, or answered by, a person."""

    id: str
    status: TicketStatus = "pending"
    created_at: datetime
    answer: str | None = None
    reviewer: str | None = None
    note: str | None = None
    resolved_at: datetime | None = None


@runtime_checkable
class ReviewQueue(Protocol):
    """A durable store of tickets. Methods are synchronous; the router calls them in a thread."""

    def enqueue(self, request: TicketRequest) -> Ticket: ...

    def get(self, ticket_id: str) -> Ticket: ...

    def pending(self, limit: int = 100) -> list[Ticket]: ...

    def resolve(
        self, ticket_id: str, answer: str, reviewer: str, note: str | None = None
    ) -> Ticket: ...
