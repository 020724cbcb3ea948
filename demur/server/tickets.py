"""Hand-offs to a person through the gateway: one ticket per retried request, and its answer.

Every question the gateway routes carries an idempotency key scoped to the caller's API key:
`gateway:<key id>:<Idempotency-Key header>`, or the request's id without the header. A retried
request with the same header therefore files one ticket, two callers never share one, and
`GET /v1/demur/tickets/{id}` shows a ticket only to the key that filed it (404 otherwise, as
for an unknown id). Without API keys every caller is "anonymous".
"""

from __future__ import annotations

import asyncio
import logging

from starlette.datastructures import Headers

from demur.errors import QueueError, TicketNotFound
from demur.queue.base import ReviewQueue, Ticket
from demur.queue.waiting import verdict_from_ticket
from demur.server.errors import ApiError
from demur.server.openai_schema import TicketAnswer, ticket_path

logger = logging.getLogger("demur.server")

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 200  # characters; the queue stores keys of up to 256 bytes
_SCOPE = "gateway"


def owner_of(key_id: str | None) -> str:
    return key_id or "anonymous"


def idempotency_key(headers: Headers, owner: str, request_id: str) -> str:
    """The queue's idempotency key for a request; 400 for a malformed Idempotency-Key."""
    given = headers.get(IDEMPOTENCY_HEADER)
    if given is None:
        return f"{_SCOPE}:{owner}:{request_id}"
    key = given.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not (key.isascii() and key.isprintable()):
        raise ApiError(
            400,
            f"the {IDEMPOTENCY_HEADER} header must be 1 to {MAX_IDEMPOTENCY_KEY} printable "
            "ASCII characters, e.g. a UUID; send the same value when retrying a request",
            code="invalid_idempotency_key",
            param=IDEMPOTENCY_HEADER,
        )
    return f"{_SCOPE}:{owner}:{key}"


async def ticket_answer(queue: ReviewQueue | None, ticket_id: str, owner: str) -> TicketAnswer:
    """The ticket as its filer sees it; 404 when unknown or filed by another key."""
    not_found = ApiError(
        404,
        f"no hand-off '{ticket_id[:64]}' was filed with this API key; use the ticket_id of a "
        "chat completion that finished with 'human_review'",
        code="ticket_not_found",
        param="ticket_id",
    )
    if queue is None:
        raise ApiError(
            404,
            "this gateway hands no question to a person: its router has no review queue",
            code="ticket_not_found",
            param="ticket_id",
        )
    try:
        ticket = await asyncio.to_thread(queue.get, ticket_id)
    except TicketNotFound:
        raise not_found from None
    except QueueError as exc:
        logger.error("review queue failed reading a ticket: %s: %s", type(exc).__name__, exc)
        raise ApiError(
            503,
            "the review queue is unavailable; retry later",
            type="server_error",
            code="queue_unavailable",
            headers={"Retry-After": "5"},
        ) from None
    if not (ticket.idempotency_key or "").startswith(f"{_SCOPE}:{owner}:"):
        raise not_found
    return answer_of(ticket)


def answer_of(ticket: Ticket) -> TicketAnswer:
    """The client's view of a ticket: pending, or the person's answer, or why there is none."""
    verdict = verdict_from_ticket(ticket)
    poll = ticket_path(ticket.id)
    assert poll is not None
    created = int(ticket.created_at.timestamp())
    if verdict is None:
        return TicketAnswer(id=ticket.id, status="pending", created=created, poll=poll)
    closed = ticket.resolved_at or ticket.updated_at
    return TicketAnswer(
        id=ticket.id,
        status="answered" if verdict.status == "answered" else "abstained",
        content=verdict.text,
        model=verdict.model,
        created=created,
        resolved=int(closed.timestamp()) if closed is not None else None,
        poll=poll,
    )


__all__ = ["IDEMPOTENCY_HEADER", "answer_of", "idempotency_key", "owner_of", "ticket_answer"]
