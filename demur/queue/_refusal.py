"""Why a conditional update of a ticket matched nothing, as the specific QueueError to raise.

The SQL queue changes a ticket with one conditional statement; when it changes nothing, the
ticket's row is read back and `refusal` says what stood in the way and what to do instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from demur.errors import QueueError
from demur.queue.errors import InvalidTransition, LeaseExpired, TicketNotFound


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "an unknown time"


def refusal(
    ticket_id: str,
    row: Mapping[str, Any] | None,
    verb: str,
    token: str | None,
    now: datetime,
    *,
    where: str,
    to_datetime: Callable[[Any], datetime | None],
) -> QueueError:
    """The error for a ticket that could not be `verb` ("claimed", "resolved", ...).

    `row` is the ticket's row as read back (None when there is no such ticket), `token` the
    lease token given, `where` the queue's location, and `to_datetime` reads the row's times.
    """
    if row is None:
        return TicketNotFound(
            f"no ticket with id '{ticket_id}' in {where}; "
            "list tickets with queue.tickets() or `demur queue list`"
        )
    status = row["status"]
    if status == "resolved":
        return InvalidTransition(
            f"ticket '{ticket_id}' is already resolved ({row['resolution']} by "
            f"'{row['reviewer']}' at {_when(to_datetime(row['resolved_at']))}); "
            f"a resolved ticket cannot be {verb}"
        )
    if status == "cancelled":
        return InvalidTransition(
            f"ticket '{ticket_id}' was cancelled at {_when(to_datetime(row['resolved_at']))}; "
            f"a cancelled ticket cannot be {verb}"
        )
    expires = to_datetime(row["lease_expires_at"])
    live = status == "claimed" and expires is not None and expires > now
    if verb == "claimed":
        return InvalidTransition(
            f"ticket '{ticket_id}' is claimed by '{row['claimed_by']}' until "
            f"{_when(expires)}; wait for the lease to expire or claim another ticket"
        )
    if token is not None and token == row["lease_token"]:
        return LeaseExpired(
            f"your lease on ticket '{ticket_id}' expired at {_when(expires)}; claim it "
            f"again with queue.claim(reviewer, ticket_id='{ticket_id}') and use the new token"
        )
    if live:
        return LeaseExpired(
            f"ticket '{ticket_id}' is claimed by '{row['claimed_by']}' until "
            f"{_when(expires)} and the lease token given is not theirs (a lease that "
            "expired was taken over); claim another ticket"
        )
    return InvalidTransition(
        f"ticket '{ticket_id}' is pending: nobody holds a lease on it, so it cannot be "
        f"{verb}; claim it first with queue.claim(reviewer, ticket_id='{ticket_id}') and "
        "pass the claim's token"
    )


__all__ = ["refusal"]
