"""The human review queue: durable tickets, leases, resolutions, and waiting for them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demur.queue.base import (
    CandidateAnswer,
    Claim,
    PayloadLimits,
    QueueStats,
    Resolution,
    ReviewQueue,
    Ticket,
    TicketRequest,
)
from demur.queue.errors import (
    InvalidPayload,
    InvalidSignature,
    InvalidTransition,
    LeaseExpired,
    QueueUnavailable,
    TicketNotFound,
)
from demur.queue.sqlite import SqliteQueue
from demur.queue.waiting import (
    ResolutionWatcher,
    Webhook,
    await_verdict,
    sign_webhook,
    verdict_from_ticket,
    verify_webhook,
    wait_verdict,
)

if TYPE_CHECKING:
    from demur.queue.postgres import PostgresQueue


def __getattr__(name: str) -> Any:
    # psycopg is an optional extra: import the PostgreSQL backend only when asked for.
    if name == "PostgresQueue":
        from demur.queue.postgres import PostgresQueue

        return PostgresQueue
    raise AttributeError(f"module 'demur.queue' has no attribute {name!r}")


__all__ = [
    "CandidateAnswer",
    "Claim",
    "InvalidPayload",
    "InvalidSignature",
    "InvalidTransition",
    "LeaseExpired",
    "PayloadLimits",
    "PostgresQueue",
    "QueueStats",
    "QueueUnavailable",
    "Resolution",
    "ResolutionWatcher",
    "ReviewQueue",
    "SqliteQueue",
    "Ticket",
    "TicketNotFound",
    "TicketRequest",
    "Webhook",
    "await_verdict",
    "sign_webhook",
    "verdict_from_ticket",
    "verify_webhook",
    "wait_verdict",
]
