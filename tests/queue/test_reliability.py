"""Reliability, for both backends: concurrent reviewers, and processes killed mid-operation."""

from __future__ import annotations

import itertools
import multiprocessing
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from demur.queue import Resolution, TicketRequest
from tests.queue._workers import LEASE_S, resolve_until_empty

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 8
TICKETS = 200


@pytest.mark.timeout(240)
def test_concurrent_workers_resolve_every_ticket_exactly_once(store):
    queue = store.open()
    ids = {
        queue.enqueue(TicketRequest(question=f"q{i}", priority=i % 3)).id for i in range(TICKETS)
    }
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(WORKERS) as pool:
        start = manager.Barrier(WORKERS, timeout=120)
        first_claimed = manager.Event()
        work = pool.starmap_async(
            resolve_until_empty,
            [(store.kind, store.location, w, 0.5, start, first_claimed) for w in range(WORKERS)],
        )
        results = work.get(timeout=200)
    resolved = [ticket_id for done, _lost, _leases in results for ticket_id in done]
    lost = sum(lost for _done, lost, _leases in results)
    leases: dict[str, list[tuple[datetime, datetime]]] = {}
    for _done, _lost, got in results:
        for ticket_id, start, end in got:
            leases.setdefault(ticket_id, []).append((start, end))
    for ticket_id, held in leases.items():
        held.sort()
        for (_, end), (start, _) in itertools.pairwise(held):
            assert start >= end, f"two live leases on ticket {ticket_id} at once"
    assert len(resolved) == TICKETS, "a ticket was resolved twice, or lost"
    assert set(resolved) == ids
    assert lost >= 1  # worker 0 outslept its lease: its late resolve was refused
    assert sum(1 for done, _, _ in results if done) >= 2  # the work was really shared
    tickets = queue.tickets(limit=TICKETS + 1)
    assert Counter(t.status for t in tickets) == {"resolved": TICKETS}
    winner = {ticket_id: w for w, (done, _, _) in enumerate(results) for ticket_id in done}
    for ticket in tickets:
        # The stored answer is the one whose resolve call succeeded, not a refused one.
        assert ticket.answer == f"by w{winner[ticket.id]}" == f"by {ticket.reviewer}"
    stats = queue.stats()
    assert stats.counts["resolved"] == TICKETS and stats.resolutions == {"answer": TICKETS}


def _run_and_kill(store, action: str, argument: str, acks_before_kill: int) -> list[str]:
    """Start a worker process, SIGKILL it mid-loop, and return what it acknowledged."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.queue._workers",
            action,
            store.kind,
            store.location,
            argument,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[str] = []
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY", child.stderr and child.stderr.read()
        while len(acked) < acks_before_kill:
            line = child.stdout.readline()
            assert line, f"the worker died early: {child.stderr and child.stderr.read()}"
            acked.append(line.split()[1])
        time.sleep(random.uniform(0, 0.03))  # land the kill anywhere in the loop
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        acked += [line.split()[1] for line in child.stdout if line.startswith("ACK ")]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return acked


def _check_integrity(store) -> None:
    if store.kind == "sqlite":
        db = sqlite3.connect(store.location)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()


def _check_consistent(tickets) -> None:
    """No ticket is half-resolved: each state carries exactly the fields it should."""
    for t in tickets:
        if t.status == "resolved":
            assert t.resolution == "answer" and t.answer and t.reviewer and t.note, t
            assert t.resolved_at is not None and t.answer == f"answer {t.reviewer}", t
            assert (t.claimed_by, t.lease_expires_at) == (None, None), t
        else:
            assert t.status in ("pending", "claimed"), t
            assert (t.resolution, t.answer, t.reviewer, t.resolved_at) == (None,) * 4, t


@pytest.mark.timeout(180)
def test_every_acknowledged_enqueue_survives_sigkill(store):
    acked: list[str] = []
    first = 0
    for _round in range(3):
        acked += _run_and_kill(store, "enqueue", str(first), acks_before_kill=40)
        first += 10_000  # the next process uses new keys
        _check_integrity(store)
    queue = store.open()
    keys = Counter(t.idempotency_key for t in queue.tickets(limit=10_000))
    assert len(acked) >= 120
    missing = [key for key in acked if key not in keys]
    assert missing == [], f"acknowledged but lost: {missing[:10]}"
    assert max(keys.values()) == 1
    # The queue is fully usable after the kills.
    assert queue.claim("ana") is not None


@pytest.mark.timeout(180)
def test_a_kill_mid_resolve_leaves_no_half_applied_resolution(store):
    queue = store.open()
    total = 400
    for i in range(total):
        queue.enqueue(TicketRequest(question=f"q{i}"))
    acked: dict[str, str] = {}
    for cycle in range(3):
        tag = f"cycle{cycle}"
        for ticket_id in _run_and_kill(store, "resolve", tag, acks_before_kill=25):
            assert ticket_id not in acked, "one ticket resolved by two kills' workers"
            acked[ticket_id] = tag
        _check_integrity(store)
        _check_consistent(queue.tickets(limit=total))
    tickets = {t.id: t for t in queue.tickets(limit=total)}
    for ticket_id, tag in acked.items():
        assert tickets[ticket_id].status == "resolved"
        assert tickets[ticket_id].answer == f"answer {tag}"
    # Claims the killed workers held expire and the tickets go back to the queue.
    time.sleep(LEASE_S + 0.1)
    finisher = store.open(lease_s=30)
    while (claim := finisher.claim("finisher")) is not None:
        finisher.resolve(
            claim.ticket.id, claim.token, Resolution.answer("answer finisher"), note="n"
        )
    final = finisher.tickets(limit=total + 1)
    _check_consistent(final)
    assert Counter(t.status for t in final) == {"resolved": total}
    assert sum(1 for t in final if t.reviewer != "finisher") >= len(acked)
