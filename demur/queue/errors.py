"""What the review queue refuses, grouped by what the caller can do about it.

QueueError                       (demur.errors) the review queue refused an operation
├── TicketNotFound               no ticket has that id: check the id, or the queue it came from
├── InvalidTransition            the ticket is not in a state that allows the operation
│   └── LeaseExpired             the claim's lease ran out or was taken over: claim it again
├── InvalidPayload               the ticket or resolution is too large, not UTF-8, or malformed
├── InvalidSignature             a webhook's signature does not match, or is too old
└── QueueUnavailable             the database cannot be opened, reached, or migrated
"""

from __future__ import annotations

from demur.errors import QueueError


class TicketNotFound(QueueError, KeyError):
    """No ticket has the given id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidTransition(QueueError):
    """The operation does not apply to the ticket's current state (e.g. resolving it unclaimed)."""


class LeaseExpired(InvalidTransition):
    """The lease presented has expired, or another reviewer claimed the ticket since."""


class InvalidPayload(QueueError, ValueError):
    """A ticket or a resolution breaks a size limit, is not valid UTF-8, or is malformed."""


class InvalidSignature(QueueError, ValueError):
    """A webhook delivery's signature is missing, wrong, or outside the allowed time window."""


class QueueUnavailable(QueueError):
    """The queue's database cannot be opened, reached or migrated."""


__all__ = [
    "InvalidPayload",
    "InvalidSignature",
    "InvalidTransition",
    "LeaseExpired",
    "QueueUnavailable",
    "TicketNotFound",
]
