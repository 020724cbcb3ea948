"""Handing a route to the review queue within its deadline, and never half-way.

The queue works in a thread, told the time the route has left (`timeout_s`): it stops waiting
on its locks then. Should it still be busy when the route stops waiting, the route withdraws the
ticket: the queue asks `commit_if` just before its commit, and rolls back on False. So a route
that abstains has filed nothing, and one that filed returns the ticket's id: a caller never
misses a ticket. (A retry of the route with the same idempotency key finds the first ticket
only if it was committed.) A queue whose `enqueue` takes neither keyword is waited for.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
from typing import TYPE_CHECKING

from demur.errors import QueueUnavailable

if TYPE_CHECKING:
    from demur.queue.base import ReviewQueue, Ticket, TicketRequest

logger = logging.getLogger("demur.router")

# How long past the time it was given the route still waits for the queue: its own timeout
# error, which says why, arrives first.
QUEUE_SLACK_S = 0.25


class Handoff:
    """Whether the queue may still commit a route's ticket: until the route stops waiting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "waiting"

    def commit(self) -> bool:
        """The queue's `commit_if`: True, and the route waits for the commit; or withdrawn."""
        with self._lock:
            if self._state == "withdrawn":
                return False
            self._state = "committing"
            return True

    def withdraw(self) -> bool:
        """Withdraw the ticket; False when the queue is already committing it."""
        with self._lock:
            if self._state == "committing":
                return False
            self._state = "withdrawn"
            return True


async def hand_off(queue: ReviewQueue, request: TicketRequest, time_left: float) -> Ticket:
    """File `request` in `queue` within `time_left` seconds, or raise having filed nothing."""
    if not _takes_bounds(type(queue)):
        return await asyncio.to_thread(queue.enqueue, request)
    if time_left <= 0:
        raise QueueUnavailable("the route's deadline passed before its ticket could be filed")
    handoff = Handoff()
    enqueue = functools.partial(
        queue.enqueue, request, timeout_s=time_left, commit_if=handoff.commit
    )
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, contextvars.copy_context().run, enqueue)
    try:
        done, _ = await asyncio.wait((future,), timeout=time_left + QUEUE_SLACK_S)
    except asyncio.CancelledError:
        _abandon(future, handoff)
        raise
    if done:
        return future.result()
    if not handoff.withdraw():
        return await future  # being committed: the ticket stands, and the route says so
    future.add_done_callback(_ended)
    raise QueueUnavailable(
        f"the review queue took no ticket within the {time_left:.3g}s the route had left; "
        "it was withdrawn, so none was stored"
    )


def _abandon(future: asyncio.Future[Ticket], handoff: Handoff) -> None:
    """The route itself was cancelled: withdraw its ticket if the queue has not committed it."""
    future.add_done_callback(_ended)
    if not handoff.withdraw():
        logger.warning(
            "a route was cancelled while the review queue committed its ticket; the ticket "
            "stands, but its caller will not hear of it"
        )


def _ended(future: asyncio.Future[Ticket]) -> None:
    """Collect the outcome of an enqueue the route stopped waiting for."""
    if not future.cancelled() and future.exception() is None:
        logger.warning("ticket %s was filed after its route stopped waiting", future.result().id)


@functools.cache
def _takes_bounds(kind: type[ReviewQueue]) -> bool:
    """Whether the queue class's `enqueue` accepts `timeout_s` and `commit_if`."""
    try:
        parameters = inspect.signature(kind.enqueue).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return True
    return "timeout_s" in parameters and "commit_if" in parameters
