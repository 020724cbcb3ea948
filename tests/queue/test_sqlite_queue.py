"""The simple SQLite review queue."""

from __future__ import annotations

import pytest

from demur import QueueError, SqliteQueue, TicketRequest
from demur.queue.base import CandidateAnswer


def request(question: str = "Q?", priority: int = 0) -> TicketRequest:
    return TicketRequest(
        question=question,
        candidates=(
            CandidateAnswer(model="weak", text="<script>alert(1)</script>", confidence=0.2),
        ),
        reason="confidence 0.2 < 0.6",
        priority=priority,
    )


def test_enqueue_get_and_resolve(tmp_path):
    queue = SqliteQueue(tmp_path / "q.db")
    ticket = queue.enqueue(request())
    stored = queue.get(ticket.id)
    assert stored.status == "pending"
    assert stored.candidates[0].text == "<script>alert(1)</script>"  # stored verbatim
    resolved = queue.resolve(ticket.id, "Paris", reviewer="ana", note="checked atlas")
    assert (resolved.status, resolved.answer, resolved.reviewer) == ("resolved", "Paris", "ana")
    assert resolved.resolved_at is not None


def test_pending_orders_by_priority_then_age(tmp_path):
    queue = SqliteQueue(tmp_path / "q.db")
    low = queue.enqueue(request("low", 0))
    high = queue.enqueue(request("high", 5))
    later_low = queue.enqueue(request("low2", 0))
    assert [t.id for t in queue.pending()] == [high.id, low.id, later_low.id]


def test_invalid_operations_are_queue_errors(tmp_path):
    queue = SqliteQueue(tmp_path / "q.db")
    ticket = queue.enqueue(request())
    queue.resolve(ticket.id, "Paris", reviewer="ana")
    with pytest.raises(QueueError, match="already resolved"):
        queue.resolve(ticket.id, "Lyon", reviewer="bo")
    with pytest.raises(QueueError, match="no ticket with id"):
        queue.get("nope")
    with pytest.raises(QueueError, match="non-empty answer"):
        queue.resolve(queue.enqueue(request()).id, "  ", reviewer="ana")


def test_tickets_survive_reopening_the_file(tmp_path):
    path = tmp_path / "q.db"
    ticket = SqliteQueue(path).enqueue(request())
    assert SqliteQueue(path).get(ticket.id).question == "Q?"
