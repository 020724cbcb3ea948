"""Worker processes for the reliability tests (run with multiprocessing, or as a script).

    python -m tests.queue._workers enqueue KIND LOCATION FIRST_KEY
    python -m tests.queue._workers resolve KIND LOCATION TAG

Each prints `ACK <key or id>` right after the queue acknowledged an operation, so the parent
knows which operations a SIGKILL must not lose.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import datetime
from typing import Any

from demur.queue import InvalidTransition, Resolution, TicketRequest

LEASE_S = 1.0  # the resolve loop's lease: after a kill, its claims come back this fast


def open_queue(kind: str, location: str, **options: Any) -> Any:
    if kind == "sqlite":
        from demur.queue.sqlite import SqliteQueue

        return SqliteQueue(location, **options)
    from demur.queue.postgres import PostgresQueue

    return PostgresQueue(location, **options)


def _hold_until_taken_over(queue: Any, ticket_id: str, me: str, limit_s: float = 60) -> None:
    """Sleep on a claim until its lease has expired and another worker has the ticket."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        ticket = queue.get(ticket_id)
        if ticket.status == "resolved" or (ticket.status == "claimed" and ticket.claimed_by != me):
            return
        time.sleep(0.05)


def resolve_until_empty(
    kind: str,
    location: str,
    worker: int,
    lease_s: float,
    start: Any = None,
    first_claimed: Any = None,
) -> tuple[list[str], int, list[tuple[str, datetime, datetime]]]:
    """Claim and resolve until no ticket is open.

    Returns the ids this worker resolved, how many leases it lost, and every lease it got
    (ticket id, from, until).

    Worker 0 holds its first claim past its lease until another worker takes the ticket
    over, so worker 0's late resolve must be refused. With `first_claimed` (an Event) the
    other workers wait for worker 0's first claim: on a busy machine they could otherwise
    resolve every ticket before worker 0 gets one.
    """
    queue = open_queue(kind, location, lease_s=lease_s)
    if start is not None:
        start.wait()  # a barrier: every worker begins at once, however slow its start-up
    if first_claimed is not None and worker != 0:
        first_claimed.wait(120)
    rng = random.Random(worker)
    resolved: list[str] = []
    leases: list[tuple[str, datetime, datetime]] = []
    lost = 0
    stalled = False
    while True:
        claim = queue.claim(f"w{worker}")
        if claim is None:
            counts = queue.stats().counts
            if counts["pending"] + counts["claimed"] == 0:
                break
            time.sleep(0.02)  # some lease is still live; it may yet expire
            continue
        assert claim.ticket.claimed_at is not None
        leases.append((claim.ticket.id, claim.ticket.claimed_at, claim.expires_at))
        if worker == 0 and not stalled:
            stalled = True
            if first_claimed is not None:
                first_claimed.set()
            _hold_until_taken_over(queue, claim.ticket.id, f"w{worker}")
        elif rng.random() < 0.05:
            time.sleep(rng.random() * 0.01)
        try:
            queue.resolve(claim.ticket.id, claim.token, Resolution.answer(f"by w{worker}"))
        except InvalidTransition:  # LeaseExpired, or "already resolved" by the new holder
            lost += 1
        else:
            resolved.append(claim.ticket.id)
    queue.close()
    return resolved, lost, leases


def _enqueue_forever(kind: str, location: str, first: int) -> None:
    queue = open_queue(kind, location)
    key = first
    while True:
        queue.enqueue(TicketRequest(question=f"question {key}", idempotency_key=f"k{key}"))
        print(f"ACK k{key}", flush=True)
        key += 1


def _resolve_forever(kind: str, location: str, tag: str) -> None:
    queue = open_queue(kind, location, lease_s=LEASE_S)
    while True:
        claim = queue.claim(tag)
        if claim is None:
            time.sleep(0.01)
            continue
        try:
            queue.resolve(
                claim.ticket.id,
                claim.token,
                Resolution.answer(f"answer {tag}"),
                note=f"note {tag}",
            )
        except InvalidTransition:
            continue  # a loaded machine outslept the lease: not acknowledged, so not owed
        print(f"ACK {claim.ticket.id}", flush=True)


if __name__ == "__main__":
    action, kind, location, argument = sys.argv[1:5]
    print("READY", flush=True)
    if action == "enqueue":
        _enqueue_forever(kind, location, int(argument))
    else:
        _resolve_forever(kind, location, argument)
