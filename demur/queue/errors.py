"""What the review queue refuses: the `QueueError` subclasses, re-exported from `demur.errors`.

`demur.errors` defines them and draws them in the whole tree, with what the caller can do about
each (`TicketNotFound`: check the id; `LeaseExpired`: claim the ticket again; ...).
"""

from __future__ import annotations

from demur.errors import (
    InvalidPayload,
    InvalidSignature,
    InvalidTransition,
    LeaseExpired,
    QueueUnavailable,
    TicketNotFound,
    TicketWithdrawn,
)

__all__ = [
    "InvalidPayload",
    "InvalidSignature",
    "InvalidTransition",
    "LeaseExpired",
    "QueueUnavailable",
    "TicketNotFound",
    "TicketWithdrawn",
]
