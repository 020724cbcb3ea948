"""The hand-off to the review queue: within the route's time, and never half-way."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from demur.errors import QueueUnavailable, TicketWithdrawn
from demur.queue.base import Ticket, TicketRequest
from demur.router._handoff import QUEUE_SLACK_S, hand_off

REQUEST = TicketRequest(question="Who wrote Emma?")


class SlowQueue:
    """Takes `work_s` to store a ticket, and ignores `timeout_s`; asks `commit_if` as told."""

    def __init__(self, work_s: float, *, ask_first: bool = False) -> None:
        self.work_s = work_s
        self.ask_first = ask_first  # ask commit_if before the slow part (a slow commit)
        self.stored: list[Ticket] = []
        self.done = threading.Event()

    def enqueue(
        self,
        request: TicketRequest,
        *,
        timeout_s: float | None = None,
        commit_if: Callable[[], bool] | None = None,
    ) -> Ticket:
        try:
            go_on = commit_if is None or not self.ask_first or commit_if()
            time.sleep(self.work_s)
            if not self.ask_first and commit_if is not None:
                go_on = commit_if()
            if not go_on:
                raise TicketWithdrawn("withdrawn before the commit; nothing stored")
            ticket = Ticket(id=f"t{len(self.stored)}", question="q", created_at=datetime.now(UTC))
            self.stored.append(ticket)
            return ticket
        finally:
            self.done.set()


async def test_a_queue_too_slow_for_the_route_has_its_ticket_withdrawn():
    queue = SlowQueue(1.0)
    started = time.monotonic()
    with pytest.raises(QueueUnavailable, match="withdrawn, so none was stored"):
        await hand_off(queue, REQUEST, 0.2)  # type: ignore[arg-type]
    assert time.monotonic() - started < 0.2 + QUEUE_SLACK_S + 0.5
    assert queue.done.wait(5)
    assert queue.stored == []  # it would have committed after the route gave up


async def test_a_ticket_already_being_committed_is_waited_for_and_stands():
    queue = SlowQueue(0.6, ask_first=True)
    ticket = await hand_off(queue, REQUEST, 0.05)  # type: ignore[arg-type]
    assert [t.id for t in queue.stored] == [ticket.id]


async def test_a_queue_in_time_files_the_ticket():
    queue = SlowQueue(0.0)
    ticket = await hand_off(queue, REQUEST, 5.0)  # type: ignore[arg-type]
    assert queue.stored == [ticket]


async def test_no_time_left_files_nothing():
    queue = SlowQueue(0.0)
    with pytest.raises(QueueUnavailable, match="deadline passed before its ticket"):
        await hand_off(queue, REQUEST, 0.0)  # type: ignore[arg-type]
    assert queue.stored == []


async def test_a_queue_without_the_bounds_is_waited_for():
    class Plain:
        def enqueue(self, request: TicketRequest) -> Ticket:
            time.sleep(0.3)
            return Ticket(id="plain", question="q", created_at=datetime.now(UTC))

    ticket = await hand_off(Plain(), REQUEST, 0.01)  # type: ignore[arg-type]
    assert ticket.id == "plain"
