"""An enqueue bounded by its caller's time, and withdrawn when the caller stops waiting.

A route hands its ticket over with the time it has left (`timeout_s`) and a last word before
the commit (`commit_if`): a locked store makes it abstain on time, and leaves no ticket.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from demur import AskHuman, Budget, Ladder, Reply, Router, ScriptedModel
from demur.errors import QueueUnavailable, TicketWithdrawn
from demur.queue import TicketRequest
from tests.queue.conftest import Store


@contextmanager
def write_locked(store: Store) -> Iterator[None]:
    """Hold the store's write lock from another connection, as a long transaction would."""
    if store.kind == "sqlite":
        db = sqlite3.connect(store.location, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()
        return
    import psycopg

    with psycopg.connect(store.location) as conn:
        conn.execute("LOCK TABLE demur_tickets IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def test_a_withdrawn_enqueue_stores_nothing_and_frees_its_key(store):
    queue = store.open()
    keyed = TicketRequest(question="Q?", idempotency_key="k")
    with pytest.raises(TicketWithdrawn, match="nothing was stored"):
        queue.enqueue(keyed, commit_if=lambda: False)
    assert queue.stats().total == 0
    ticket = queue.enqueue(keyed, commit_if=lambda: True)  # the key was never used
    assert queue.get(ticket.id).status == "pending"
    assert queue.stats().total == 1


def test_an_enqueue_gives_up_on_a_locked_store_within_its_timeout(store):
    queue = store.open()
    with write_locked(store):
        started = time.monotonic()
        with pytest.raises(QueueUnavailable):
            queue.enqueue(TicketRequest(question="Q?"), timeout_s=0.3)
        assert 0.25 < time.monotonic() - started < 2.0
    assert queue.stats().total == 0
    queue.enqueue(TicketRequest(question="Q?"))  # the timeout was for that enqueue only
    if store.kind == "sqlite":
        busy_ms = queue._connect().execute("PRAGMA busy_timeout").fetchone()[0]
        assert busy_ms == round(queue.timeout_s * 1000)


def test_a_route_whose_queue_is_locked_abstains_at_its_deadline_and_files_nothing(store):
    queue = store.open()
    router = Router(
        [ScriptedModel("m", [Reply.confident("Lyon", 0.2)])],
        policy=Ladder(0.6, rungs=[AskHuman()]),
        estimators=[],
        queue=queue,
        budget=Budget(deadline_s=0.5),
    )
    with write_locked(store):
        started = time.monotonic()
        verdict = router.route("Capital of France?")
        assert time.monotonic() - started < 0.5 + 1.0  # the lock is held for good
    assert verdict.status == "abstained" and verdict.ticket_id is None
    assert "review queue failed: queue_unavailable" in (verdict.steps[-1].decision.reason or "")
    time.sleep(0.3)  # nothing commits late, either
    assert queue.stats().total == 0
