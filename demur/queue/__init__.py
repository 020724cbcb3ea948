"""The human review queue: durable tickets, leases, resolutions, and waiting for them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from demur._lazy import lazy_exports as _lazy_exports
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

if TYPE_CHECKING:
    from demur.queue.postgres import PostgresQueue
    from demur.queue.sqlite import SqliteQueue
    from demur.queue.waiting import await_verdict, verdict_from_ticket, wait_verdict
    from demur.queue.watcher import ResolutionWatcher, Webhook, sign_webhook, verify_webhook

# The backends, waiting and webhooks load on first use: a router only needs the base types, and
# psycopg (the PostgreSQL backend) is an optional extra.
__getattr__, __dir__ = _lazy_exports(
    __name__,
    globals(),
    {
        "PostgresQueue": "demur.queue.postgres",
        "SqliteQueue": "demur.queue.sqlite",
        "await_verdict": "demur.queue.waiting",
        "verdict_from_ticket": "demur.queue.waiting",
        "wait_verdict": "demur.queue.waiting",
        "ResolutionWatcher": "demur.queue.watcher",
        "Webhook": "demur.queue.watcher",
        "sign_webhook": "demur.queue.watcher",
        "verify_webhook": "demur.queue.watcher",
    },
)

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
